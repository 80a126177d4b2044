#!/usr/bin/env bash
# Webhooks while delivering: COUNT messages of SIZE bytes (bench/deliver.sh's 20 000 x 1 KB)
# queued, then one `outbox deliver` through `[delivery] relay` into Postfix's smtp-sink,
# with and without a `[[webhooks]]` endpoint: a local Python receiver that answers 204 and
# counts the events it gets (it does not verify signatures: crates/outbox/tests/webhooks.rs
# does; here it must cost as little as possible).
#
# "deliver" is COUNT / (deliver start .. the sink has every message); "events" is the
# events (2 per message: queued, sent) / (deliver start .. the receiver has them all).
# Events are recorded in both variants (the event log is always on); "off" has no
# endpoint to send them to. Each round runs both variants, interleaved (the machine is
# shared and noisy): read the ratio. The RESULT lines use the best round of each.
#
#   bench/webhooks.sh                          # COUNT=20000 SIZE=1024 ROUNDS=2, SQLite
#   OUTBOX_BENCH_DB=postgres bench/webhooks.sh # on a fresh PostgreSQL database too
#   OUTBOX=path/to/outbox FILL=path/to/fill ...
#
# Output:
#   round R BACKEND webhooks off: deliver D msg/s
#   round R BACKEND webhooks on: deliver D msg/s, events E events/s (B per request)
#   RESULT ... on / off ratio
set -euo pipefail

COUNT=${COUNT:-20000}
SIZE=${SIZE:-1024}
ROUNDS=${ROUNDS:-2}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
bench_db_and_tools smtp-sink python3
build_outbox fill

# The receiver: prints its port, then serves; GET returns "EVENTS REQUESTS".
receiver_start() {
  local log=$tmp/receiver.log
  bg_start python3 -c '
import http.server, json, sys, threading
lock = threading.Lock()
state = {"events": 0, "requests": 0}
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        payload = json.loads(body)
        n = len(payload) if isinstance(payload, list) else 1
        with lock:
            state["events"] += n
            state["requests"] += 1
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()
    def do_GET(self):
        with lock:
            text = "%d %d" % (state["events"], state["requests"])
        self.send_response(200)
        self.send_header("content-length", str(len(text)))
        self.end_headers()
        self.wfile.write(text.encode())
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
' >"$log" 2>&1
  receiver_pid=$bg_pid
  for _ in $(seq 1 200); do
    receiver_port=$(head -n 1 "$log" 2>/dev/null || true)
    [ -n "$receiver_port" ] && break
    sleep 0.05
  done
  [ -n "$receiver_port" ] || { echo "webhooks.sh: the receiver did not start" >&2; cat "$log" >&2; exit 1; }
}
receiver_counts() {
  python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())' \
    "http://127.0.0.1:$receiver_port/"
}

# run DB_URL on|off: sets run_deliver (msg/s), and with on run_events (events/s) and
# run_batch (events per request).
run() {
  local db=$1 mode=$2 t1 t2 t3 pid counts events requests want=$((2 * COUNT))
  sink_start
  cat >"$tmp/outbox.toml" <<TOML
database = "$db"
[delivery]
relay = "127.0.0.1:$sink_port"
TOML
  if [ "$mode" = on ]; then
    receiver_start
    cat >>"$tmp/outbox.toml" <<TOML
[[webhooks]]
url = "http://127.0.0.1:$receiver_port/hooks"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOML
  fi
  "$fill" "$db" "$COUNT" "$SIZE" 2>"$tmp/fill.log" || { cat "$tmp/fill.log" >&2; exit 1; }
  t1=$(now)
  bg_start "$outbox" --config "$tmp/outbox.toml" deliver 2>"$tmp/deliver.log"
  pid=$bg_pid
  sink_wait "$COUNT"
  t2=$(now)
  run_deliver=$(rate "$COUNT" "$t1" "$t2")
  if [ "$mode" = on ]; then
    local deadline=$(( $(date +%s) + 600 ))
    while :; do
      counts=$(receiver_counts)
      events=${counts% *}
      [ "$events" -ge "$want" ] && break
      if [ "$(date +%s)" -gt "$deadline" ]; then
        echo "webhooks.sh: the receiver has $events of $want events" >&2
        tail -n 20 "$tmp/deliver.log" >&2
        exit 1
      fi
      sleep 0.05
    done
    t3=$(now)
    requests=${counts#* }
    run_events=$(rate "$want" "$t1" "$t3")
    run_batch=$(awk -v e="$events" -v r="$requests" 'BEGIN { printf "%.1f", e / r }')
    bg_stop "$receiver_pid"
  fi
  bg_stop "$pid"
  sink_stop
}

declare -A rates=()
add_rate() { rates[$1]="${rates[$1]:-} $2"; }
backends=(sqlite)
[ "$OUTBOX_BENCH_DB" = postgres ] && backends+=(postgres)

for round in $(seq 1 "$ROUNDS"); do
  for backend in "${backends[@]}"; do
    for mode in off on; do
      if [ "$backend" = sqlite ]; then
        db="sqlite://$tmp/outbox-$round-$mode.db"
      else
        pg_create_db
        db=$pg_url
      fi
      run "$db" "$mode"
      if [ "$backend" = sqlite ]; then rm -f "$tmp/outbox-$round-$mode.db"*; else pg_drop_db "$db"; fi
      add_rate "$backend-$mode" "$run_deliver"
      if [ "$mode" = on ]; then
        add_rate "$backend-events" "$run_events"
        echo "round $round $backend webhooks on: deliver $run_deliver msg/s, events $run_events events/s ($run_batch per request)"
      else
        echo "round $round $backend webhooks off: deliver $run_deliver msg/s"
      fi
    done
  done
done

# shellcheck disable=SC2086 # the lists are space-separated numbers
b() { best ${rates[$1]}; }
for backend in "${backends[@]}"; do
  echo "RESULT COUNT=$COUNT SIZE=$SIZE $backend: deliver with webhooks $(b "$backend-on") msg/s, without $(b "$backend-off") msg/s: on / off $(ratio "$(b "$backend-on")" "$(b "$backend-off")")x; events sent $(b "$backend-events") events/s ($((2 * COUNT)) events)"
done
