#!/usr/bin/env bash
# Memory with a large queue: fill COUNT messages of 1 KB (default 1 000 000) into SQLite,
# then run `outbox deliver` into smtp-sink for SECONDS (default 30) and report the deliver
# process's peak RSS (VmHWM) and how many messages it delivered meanwhile. Target: under
# 100 MB with 1 000 000 queued.
#
#   bench/memory.sh                 # COUNT=1000000 SECONDS=30
set -euo pipefail

COUNT=${COUNT:-1000000}
SECONDS_RUN=${SECONDS:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target-bench}
export PATH=$PATH:/usr/sbin

"$root/scripts/install-peers.sh"
cargo build --release -q -p outbox
cargo build --release -q -p outbox-queue --example fill
outbox=$CARGO_TARGET_DIR/release/outbox
fill=$CARGO_TARGET_DIR/release/examples/fill

tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
smtp-sink -c -u nobody "127.0.0.1:$port" 1024 >"$tmp/sink" 2>&1 &
pids+=($!)

db="sqlite://$tmp/memory.db"
"$fill" "$db" "$COUNT" 1024

OUTBOX_DELIVERY_RELAY="127.0.0.1:$port" "$outbox" deliver --db "$db" 2>/dev/null &
deliver=$!
pids+=("$deliver")
peak=0
for _ in $(seq 1 "$SECONDS_RUN"); do
  sleep 1
  rss=$(awk '/^VmHWM/ { print $2 }' "/proc/$deliver/status" 2>/dev/null || echo 0)
  [ "${rss:-0}" -gt "$peak" ] && peak=$rss
done
sent=$(tail -c 200 "$tmp/sink" | tr '\r' '\n' | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -n 1)
echo "queued $COUNT, delivered ${sent:-0} in ${SECONDS_RUN}s, deliver peak RSS $((peak / 1024)) MB"
