#!/usr/bin/env bash
# Runs the Restate peer benchmark: installs the npm packages into this folder,
# starts restate-server (single node, default persistence: its log fsyncs per
# append) on loopback, the steps service, registers it, drives the load,
# stops everything. Prints the driver's JSON.
set -euo pipefail
cd "$(dirname "$0")"
npm install --no-audit --no-fund --no-package-lock --loglevel=error >&2
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
server=$(ls node_modules/@restatedev/restate-server-linux-x64/bin/restate-server)
RESTATE_BASE_DIR="$work" "$server" --no-logo --bind-ip 127.0.0.1 --advertised-host 127.0.0.1 \
  --listen-mode tcp >"$work/server.log" 2>&1 &
pids+=($!)
PORT=9080 node service.mjs >"$work/service.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
  curl -sf http://127.0.0.1:9070/health >/dev/null 2>&1 && break
  sleep 0.1
done
for _ in $(seq 100); do
  curl -sf -X POST http://127.0.0.1:9070/deployments -H 'content-type: application/json' \
    -d '{"uri": "http://127.0.0.1:9080"}' >/dev/null 2>&1 && break
  sleep 0.1
done
node bench.mjs
