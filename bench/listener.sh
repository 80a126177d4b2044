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

N=${N:-20000}
S=${S:-5}
SIZE=${SIZE:-1024}
ROUNDS=${ROUNDS:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target-bench}
if [ -z "${OUTBOX:-}" ]; then
  cargo build --quiet --release -p outbox --manifest-path "$root/Cargo.toml"
  OUTBOX=$CARGO_TARGET_DIR/release/outbox
fi
if [ -z "${RATE:-}" ]; then
  cargo build --quiet --release -p outbox-queue --example enqueue_rate --manifest-path "$root/Cargo.toml"
  RATE=$CARGO_TARGET_DIR/release/examples/enqueue_rate
fi
for tool in smtp-sink smtp-source postfix python3; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
    echo "listener.sh: $tool is missing (scripts/install-peers.sh installs it)" >&2; exit 1; }
done
export PATH=$PATH:/usr/sbin

tmp=$(mktemp -d)
chmod 755 "$tmp"   # Postfix daemons (user postfix) must reach their queue inside it
pids=()
postfix_dir=""
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "$postfix_dir" ]; then "$root/bench/postfix-relay.sh" stop "$postfix_dir"; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

now() { date +%s.%N; }

# Starts smtp-sink on a fresh port; sets sink_port, sink_pid, sink_out.
start_sink() {
  sink_port=$(free_port)
  sink_out=$tmp/sink-$sink_port.out
  smtp-sink -c -u nobody "127.0.0.1:$sink_port" 1024 >"$sink_out" 2>&1 &
  sink_pid=$!
  pids+=("$sink_pid")
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$sink_port") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "listener.sh: smtp-sink did not start" >&2; exit 1
}

# Messages smtp-sink has received so far.
sink_count() {
  tail -c 300 "$sink_out" | tr '\r' '\n' | grep -o 'mesg=[0-9]*' | tail -1 | cut -d= -f2 || true
}

# Sends N messages to 127.0.0.1:$1 and waits until the sink has them all; writes the rate
# (msg/s) to $tmp/rate. (Not run in a $(...) subshell, so that cleanup sees every pid.)
measure() {
  local port=$1 start end count=0 deadline
  start=$(now)
  smtp-source -s "$S" -m "$N" -l "$SIZE" -f bench@x.test -t sink@y.test "127.0.0.1:$port" >/dev/null
  accepted=$(now)
  deadline=$(( $(date +%s) + 600 ))
  while :; do
    count=$(sink_count); count=${count:-0}
    [ "$count" -ge "$N" ] && break
    if [ "$(date +%s)" -gt "$deadline" ]; then
      echo "listener.sh: only $count of $N reached smtp-sink in 10 minutes" >&2; exit 1
    fi
    sleep 0.05
  done
  end=$(now)
  python3 -c "print(f'{$N / ($end - $start):.0f}')" >"$tmp/rate"
  # Accepted: every message answered 250 to smtp-source (queued, not yet delivered).
  python3 -c "print(f'{$N / ($accepted - $start):.0f}')" >"$tmp/accept-rate"
}

run_outbox() {
  start_sink
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
  (cd "$dir" && exec env -u RUST_LOG NO_COLOR=1 "$OUTBOX" --config "$dir/outbox.toml" serve) \
    >"$dir/serve.log" 2>&1 &
  local serve_pid=$!
  pids+=("$serve_pid")
  for _ in $(seq 1 200); do
    grep -q "SMTP submission listener listening" "$dir/serve.log" 2>/dev/null && break
    kill -0 "$serve_pid" 2>/dev/null || { cat "$dir/serve.log" >&2; exit 1; }
    sleep 0.05
  done
  measure "$port"
  kill "$serve_pid" "$sink_pid"; wait "$serve_pid" "$sink_pid" 2>/dev/null || true
}

run_postfix() {
  start_sink
  postfix_dir=$tmp/postfix-$1
  local port
  port=$(free_port)
  "$root/bench/postfix-relay.sh" start "$postfix_dir" "$port" "$sink_port"
  measure "$port"
  "$root/bench/postfix-relay.sh" stop "$postfix_dir"
  postfix_dir=""
  kill "$sink_pid"; wait "$sink_pid" 2>/dev/null || true
}

# Sequential durable single enqueues in this temp dir: 1 / rate is the commit latency.
commit_latency() {
  local out
  out=$("$RATE" "sqlite://$tmp/latency-$1.db" 100 100 300 1 | awk '/^single:/ {print $(NF-1)}')
  echo "$out" >>"$tmp/singles"
}

echo "smtp-source: $N messages x $SIZE bytes, $S sessions, end to end into smtp-sink"
outbox_rates=()
postfix_rates=()
for round in $(seq 1 "$ROUNDS"); do
  commit_latency "$round"
  run_outbox "$round"; rate=$(cat "$tmp/rate"); outbox_rates+=("$rate")
  echo "round $round: outbox  $rate msg/s end to end (accepted at $(cat "$tmp/accept-rate") msg/s)"
  run_postfix "$round"; rate=$(cat "$tmp/rate"); postfix_rates+=("$rate")
  echo "round $round: postfix $rate msg/s end to end (accepted at $(cat "$tmp/accept-rate") msg/s)"
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
o=$(median "${outbox_rates[@]}")
p=$(median "${postfix_rates[@]}")
singles=$(median $(cat "$tmp/singles"))
python3 -c "print(f'outbox {$o:.0f} msg/s, postfix {$p:.0f} msg/s, ratio {$o/$p:.2f}x (target 10x)')"
python3 -c "print(f'commit latency {1000 / $singles:.2f} ms ({$singles:.0f} sequential commits/s): fsync-bound limit for $S sessions {$S * $singles:.0f} msg/s, outbox at {$o / ($S * $singles):.2f}x of it')"
