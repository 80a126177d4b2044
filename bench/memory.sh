#!/usr/bin/env bash
# Memory with a large queue: fill COUNT messages of 1 KB (default 1 000 000) into SQLite,
# then run `outbox deliver` into smtp-sink for RUN_SECONDS (default 30) and report the
# deliver process's peak RSS (VmHWM) and how many messages it delivered meanwhile. Target:
# under 100 MB with 1 000 000 queued.
#
#   bench/memory.sh                          # COUNT=1000000 RUN_SECONDS=30
#   COUNT=100000 RUN_SECONDS=10 bench/memory.sh
#   OUTBOX=path/to/outbox FILL=path/to/fill bench/memory.sh
# (Not SECONDS: bash sets that variable itself, to the seconds since the shell started.)
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

COUNT=${COUNT:-1000000}
RUN_SECONDS=${RUN_SECONDS:-30}
need_tools smtp-sink
build_outbox fill
sink_start

db="sqlite://$tmp/memory.db"
"$fill" "$db" "$COUNT" 1024

bg_start env OUTBOX_DELIVERY_RELAY="127.0.0.1:$sink_port" "$outbox" deliver --db "$db" 2>"$tmp/deliver.log"
deliver=$bg_pid
peak=0
for _ in $(seq 1 "$RUN_SECONDS"); do
  sleep 1
  kill -0 "$deliver" 2>/dev/null || { echo "memory.sh: outbox deliver exited:" >&2; tail -n 20 "$tmp/deliver.log" >&2; exit 1; }
  rss=$(awk '/^VmHWM/ { print $2 }' "/proc/$deliver/status" 2>/dev/null || echo 0)
  [ "${rss:-0}" -gt "$peak" ] && peak=$rss
done
sent=$(sink_count)
[ "$sent" -gt 0 ] || { echo "memory.sh: nothing was delivered in ${RUN_SECONDS}s" >&2; tail -n 20 "$tmp/deliver.log" >&2; exit 1; }
echo "RESULT memory: queued $COUNT, delivered $sent in ${RUN_SECONDS}s, deliver peak RSS $((peak / 1024)) MB (target < 100 MB)"
