#!/usr/bin/env bash
# make demo: starts a local 3-node Raftoral cluster and the ping-pong app on
# free loopback ports, triggers one workflow over HTTP, prints the answer, and
# stops every process gracefully. Leaves nothing running.
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

echo "==> starting a local 3-node Raftoral cluster (in memory)"
# Free loopback ports for node-to-node traffic, picked by the OS.
read -r p1 p2 p3 < <(python3 -c 'import socket
s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
peers="1=127.0.0.1:$p1,2=127.0.0.1:$p2,3=127.0.0.1:$p3"
for id in 1 2 3; do
  port_var="p$id"
  RUST_LOG=warn "$bin/raftoral" serve --node-id "$id" --peers "$peers" \
    --listen "127.0.0.1:${!port_var}" --sidecar-listen 127.0.0.1:0 \
    --addr-file "$work/sidecar$id.json" 2>"$work/sidecar$id.log" &
  pids+=($!)
done
for id in 1 2 3; do
  wait_for_file "$work/sidecar$id.json" "${pids[$((id - 1))]}" "sidecar $id" "$work/sidecar$id.log"
done
sidecar=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sidecar"])' "$work/sidecar1.json")

echo "==> starting the ping-pong app"
RAFTORAL_SIDECAR_URL="http://$sidecar" PING_PONG_HTTP_LISTEN=127.0.0.1:0 \
  PING_PONG_ADDR_FILE="$work/app.addr" RUST_LOG=warn "$bin/ping-pong" 2>"$work/app.log" &
pids+=($!)
wait_for_file "$work/app.addr" "${pids[3]}" "the ping-pong app" "$work/app.log"
app=$(cat "$work/app.addr")
echo "    app HTTP on $app, talking to sidecar 1 at $sidecar"

echo "==> POST /workflow with body 'ping'"
answer=$(curl -sS --fail-with-body -d ping "http://$app/workflow")
echo "$answer"
[ "$answer" = "pong" ] || { echo "demo: expected pong" >&2; exit 1; }

echo "==> the cluster"
"$bin/raftoral" cluster --addr "127.0.0.1:$p1" status

echo "==> workflows known to the cluster"
"$bin/raftoral" workflow --addr "http://$sidecar" list

echo "==> stopping"
