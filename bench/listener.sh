#!/usr/bin/env bash
# End-to-end submission benchmark: Postfix's smtp-source sends N messages of SIZE bytes over
# S sessions into a relay, which delivers them into Postfix's smtp-sink. Measured: the time
# from the first connection until smtp-sink has received all N (its -c counter).
#
#   A: `outbox serve` (submission listener, 127.0.0.1 trusted, SQLite queue in a temp dir,
#      [delivery] defaults, relay = the sink)
#   B: a throwaway Postfix 3.7 instance (bench/postfix-relay.sh), relayhost = the sink
#
# Runs are interleaved (A B A B ...) because this machine is shared and noisy; the script
# prints each run, then the median rates and their ratio.
#
# The fsync-bound limit: a session waits for its message's commit before it sends the
# next, so without shared commits S sessions cannot go faster than S / (commit latency).
# The commit latency is measured in the same run, in the same temp dir: sequential
# durable single enqueues through the library (examples/enqueue_rate.rs, `single:`).
# The outbox rate is printed against that limit; above 1 means commits were shared.
#
#   bench/listener.sh                     # 20 000 x 1 KB, 5 sessions, 1 round
#   N=5000 ROUNDS=3 bench/listener.sh
#   S=50 bench/listener.sh                # 50 sessions (target: 10x Postfix)
#   OUTBOX=path/to/outbox RATE=path/to/enqueue_rate bench/listener.sh
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
N=${N:-20000}
S=${S:-5}
SIZE=${SIZE:-1024}
ROUNDS=${ROUNDS:-1}
need_tools smtp-sink smtp-source postfix
build_outbox
if [ -z "${RATE:-}" ]; then
  cargo build --quiet --release -p outbox-queue --example enqueue_rate --manifest-path "$root/Cargo.toml"
  RATE=$CARGO_TARGET_DIR/release/examples/enqueue_rate
fi

# Sends N messages to 127.0.0.1:$1 and waits until the sink has them all; sets run_rate
# (end to end) and accept_rate (every message answered 250 to smtp-source: queued, not
# yet delivered), in msg/s.
measure() {
  local port=$1 start accepted
  start=$(now)
  smtp-source -s "$S" -m "$N" -l "$SIZE" -f bench@x.test -t sink@y.test "127.0.0.1:$port" >/dev/null
  accepted=$(now)
  sink_wait "$N" 600
  run_rate=$(rate "$N" "$start" "$(now)")
  accept_rate=$(rate "$N" "$start" "$accepted")
}

run_outbox() {
  sink_start
  local dir=$tmp/outbox-$1 port
  mkdir -p "$dir"
  port=$(free_port)
  cat >"$dir/outbox.toml" <<TOML
database = "sqlite://$dir/outbox.db"
[delivery]
relay = "smtp://127.0.0.1:$sink_port?starttls=off"
helo_name = "outbox-bench.localdomain"
[http]
listen = "127.0.0.1:0"
[smtp_listener]
listen = "127.0.0.1:$port"
trusted_networks = ["127.0.0.1/32"]
max_connections_per_client = $((S + 10))
TOML
  serve_start "$dir/outbox.toml" "$dir/serve.log" "$port"
  measure "$port"
  bg_stop "$serve_pid"
  sink_stop
}

run_postfix() {
  sink_start
  local dir=$tmp/postfix-$1 port
  port=$(free_port)
  postfix_start "$dir" "$port" "$sink_port"
  measure "$port"
  postfix_stop "$dir"
  sink_stop
}

# Sequential durable single enqueues in this temp dir: 1 / rate is the commit latency.
commit_latency() {
  singles+=("$("$RATE" "sqlite://$tmp/latency-${#singles[@]}.db" 100 100 300 1 | awk '/^single:/ {print $(NF-1)}')")
}

echo "smtp-source: $N messages x $SIZE bytes, $S sessions, end to end into smtp-sink"
outbox_rates=()
postfix_rates=()
singles=()
for round in $(seq 1 "$ROUNDS"); do
  commit_latency
  run_outbox "$round"; outbox_rates+=("$run_rate")
  echo "round $round: outbox  $run_rate msg/s end to end (accepted at $accept_rate msg/s)"
  run_postfix "$round"; postfix_rates+=("$run_rate")
  echo "round $round: postfix $run_rate msg/s end to end (accepted at $accept_rate msg/s)"
done
o=$(median "${outbox_rates[@]}")
p=$(median "${postfix_rates[@]}")
single=$(median "${singles[@]}")
echo "outbox $(calc "$o") msg/s, postfix $(calc "$p") msg/s"
echo "commit latency $(calc "1000 / $single" %.2f) ms ($(calc "$single") sequential commits/s): fsync-bound limit for $S sessions $(calc "$S * $single") msg/s"
limit=$(calc "$S * $single")
echo "RESULT listener, $S sessions: outbox/postfix $(ratio "$o" "$p")x (target 10x), outbox at $(ratio "$o" "$limit")x the fsync-bound limit"
