#!/usr/bin/env bash
# make demo: starts a Raftoral sidecar and the ping-pong app on free loopback
# ports, triggers one workflow over HTTP, prints the answer, and stops both
# processes gracefully. Leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/debug
work=$(mktemp -d)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Waits (up to 20 s) for a file that a process writes once it serves.
wait_for_file() {
  for _ in $(seq 200); do
    [ -s "$1" ] && return 0
    if ! kill -0 "$2" 2>/dev/null; then echo "demo: $3 exited early; its log:" >&2; cat "$4" >&2; exit 1; fi
    sleep 0.1
  done
  echo "demo: $3 did not start in time; its log:" >&2; cat "$4" >&2; exit 1
}

echo "==> starting the Raftoral sidecar (single node, in memory)"
RUST_LOG=warn "$bin/raftoral" serve --sidecar-listen 127.0.0.1:0 --listen 127.0.0.1:0 \
  --addr-file "$work/sidecar.json" 2>"$work/sidecar.log" &
pids+=($!)
wait_for_file "$work/sidecar.json" "${pids[0]}" "the sidecar" "$work/sidecar.log"
sidecar=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sidecar"])' "$work/sidecar.json")
echo "    sidecar app API on $sidecar"

echo "==> starting the ping-pong app"
RAFTORAL_SIDECAR_URL="http://$sidecar" PING_PONG_HTTP_LISTEN=127.0.0.1:0 \
  PING_PONG_ADDR_FILE="$work/app.addr" RUST_LOG=warn "$bin/ping-pong" 2>"$work/app.log" &
pids+=($!)
wait_for_file "$work/app.addr" "${pids[1]}" "the ping-pong app" "$work/app.log"
app=$(cat "$work/app.addr")
echo "    app HTTP on $app"

echo "==> POST /workflow with body 'ping'"
answer=$(curl -sS --fail-with-body -d ping "http://$app/workflow")
echo "$answer"
[ "$answer" = "pong" ] || { echo "demo: expected pong" >&2; exit 1; }

echo "==> workflows known to the sidecar"
"$bin/raftoral" workflow --addr "http://$sidecar" list

echo "==> stopping"
