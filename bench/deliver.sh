#!/usr/bin/env bash
# End-to-end delivery, Outbox beside Postfix, into Postfix's smtp-sink.
#
# Outbox: queue COUNT messages of SIZE bytes into SQLite (examples/fill.rs, batched), then
#   `outbox deliver --until-empty` through `[delivery] relay` into smtp-sink. Every state
#   change is committed (group commit): nothing is held only in memory.
# Postfix 3.7: smtp-source injects the same COUNT x SIZE into a throwaway Postfix
#   (bench/postfix-relay.sh) that relays into smtp-sink; timed until the sink has them all.
# Rounds are interleaved (Outbox, Postfix, Outbox, ...): the machine is shared and noisy, so
# read the ratio. Also prints the raw loopback ceiling (smtp-source -> smtp-sink, 5 sessions)
# and the deliver process's peak RSS.
#
#   bench/deliver.sh                 # COUNT=20000 SIZE=1024 ROUNDS=2
#   COUNT=2000 SIZE=102400 bench/deliver.sh
set -euo pipefail

COUNT=${COUNT:-20000}
SIZE=${SIZE:-1024}
ROUNDS=${ROUNDS:-2}
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target-bench}
export PATH=$PATH:/usr/sbin

"$root/scripts/install-peers.sh"
cargo build --release -q -p outbox
cargo build --release -q -p outbox-queue --example fill
outbox=$CARGO_TARGET_DIR/release/outbox
fill=$CARGO_TARGET_DIR/release/examples/fill

tmp=$(mktemp -d)
chmod 755 "$tmp"  # Postfix daemons (user postfix) must reach their queue inside it
pids=()
postfix_dir=""
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$postfix_dir" ]; then "$root/bench/postfix-relay.sh" stop "$postfix_dir" || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }

# smtp-sink -c writes "sess=N quit=N mesg=N\r" after every message.
sink_count() {
  tail -c 200 "$1" | tr '\r' '\n' | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -n 1
}
start_sink() {
  sink_port=$(free_port)
  sink_log=$tmp/sink.$sink_port
  smtp-sink -c -u nobody "127.0.0.1:$sink_port" 1024 >"$sink_log" 2>&1 &
  sink_pid=$!
  pids+=("$sink_pid")
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$sink_port") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "smtp-sink did not start" >&2
  exit 1
}
stop_sink() { kill "$sink_pid" 2>/dev/null || true; wait "$sink_pid" 2>/dev/null || true; }
wait_sink() {
  local want=$1 deadline=$(( $(date +%s) + 600 ))
  until [ "$(sink_count "$sink_log")" -ge "$want" ] 2>/dev/null; do
    if [ "$(date +%s)" -gt "$deadline" ]; then
      echo "timed out: the sink has $(sink_count "$sink_log") of $want" >&2
      exit 1
    fi
    sleep 0.02
  done
}

outbox_rates=()
postfix_rates=()
for round in $(seq 1 "$ROUNDS"); do
  # Outbox: queue, then deliver.
  start_sink
  db="sqlite://$tmp/outbox-$round.db"
  t0=$(now)
  "$fill" "$db" "$COUNT" "$SIZE" 2>/dev/null
  t1=$(now)
  OUTBOX_DELIVERY_RELAY="127.0.0.1:$sink_port" /usr/bin/time -f "%M" -o "$tmp/rss" \
    "$outbox" deliver --until-empty --db "$db" 2>/dev/null
  t2=$(now)
  got=$(sink_count "$sink_log")
  [ "$got" -ge "$COUNT" ] || { echo "outbox delivered $got of $COUNT" >&2; exit 1; }
  stop_sink
  e2e=$(rate "$COUNT" "$t0" "$t2")
  outbox_rates+=("$e2e")
  echo "round $round outbox:  enqueue $(rate "$COUNT" "$t0" "$t1") msg/s, deliver $(rate "$COUNT" "$t1" "$t2") msg/s, end to end $e2e msg/s, deliver peak RSS $(( $(cat "$tmp/rss") / 1024 )) MB"

  # Postfix: inject with smtp-source, relay to the sink.
  start_sink
  postfix_dir=$tmp/postfix-$round
  smtpd_port=$(free_port)
  "$root/bench/postfix-relay.sh" start "$postfix_dir" "$smtpd_port" "$sink_port"
  t0=$(now)
  smtp-source -s 5 -m "$COUNT" -l "$SIZE" -f bench@example.com -t sink@example.net "127.0.0.1:$smtpd_port"
  wait_sink "$COUNT"
  t2=$(now)
  "$root/bench/postfix-relay.sh" stop "$postfix_dir"
  postfix_dir=""
  stop_sink
  e2e=$(rate "$COUNT" "$t0" "$t2")
  postfix_rates+=("$e2e")
  echo "round $round postfix: end to end $e2e msg/s"
done

# The loopback ceiling: smtp-source straight into smtp-sink.
start_sink
t0=$(now)
smtp-source -s 5 -d -m "$COUNT" -l "$SIZE" -f bench@example.com -t sink@example.net "127.0.0.1:$sink_port"
wait_sink "$COUNT"
t2=$(now)
stop_sink
ceiling=$(rate "$COUNT" "$t0" "$t2")

best() { printf '%s\n' "$@" | sort -n | tail -n 1; }
o=$(best "${outbox_rates[@]}")
p=$(best "${postfix_rates[@]}")
echo "COUNT=$COUNT SIZE=$SIZE: outbox $o msg/s, postfix $p msg/s, ratio $(awk -v a="$o" -v b="$p" 'BEGIN { printf "%.1f", a / b }')x; loopback ceiling $ceiling msg/s, outbox at $(awk -v a="$o" -v b="$ceiling" 'BEGIN { printf "%.0f", 100 * a / b }')% of it"
