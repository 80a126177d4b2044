#!/usr/bin/env bash
# Server benchmark: Postfix's smtp-source sends N messages of SIZE bytes over S reused
# sessions (-d) into
#   A: outbox-smtp's server (crates/outbox-smtp/examples/sink.rs, a counting sink)
#   B: Postfix's smtp-sink
# Runs are interleaved (A B A B ...) because this machine is shared and noisy; the script
# prints each run, then the median rates and their ratio A/B.
#
#   bench/smtp-server.sh                  # 20 000 x 1 KB, 5 sessions, 3 rounds
#   N=5000 SIZE=102400 ROUNDS=5 bench/smtp-server.sh
set -euo pipefail

N=${N:-20000}
S=${S:-5}
SIZE=${SIZE:-1024}
ROUNDS=${ROUNDS:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target-bench}
cargo build --quiet --release -p outbox-smtp --example sink --manifest-path "$root/Cargo.toml"
SINK_BIN=$CARGO_TARGET_DIR/release/examples/sink
for tool in smtp-sink smtp-source python3; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
    echo "smtp-server.sh: $tool is missing (scripts/install-peers.sh installs it)" >&2; exit 1; }
done
PATH=$PATH:/usr/sbin

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# A: our server; it prints its address once it listens.
exec 3< <("$SINK_BIN" 127.0.0.1:0 2>/dev/null)
pids+=($!)
read -r ours <&3
# B: smtp-sink (backlog 1024), given a moment to bind.
theirs_port=$(free_port)
smtp-sink -u nobody "127.0.0.1:$theirs_port" 1024 &
pids+=($!)
theirs=127.0.0.1:$theirs_port
for _ in $(seq 50); do
  python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$theirs_port),1)" 2>/dev/null && break
  sleep 0.1
done

run() { # $1 = address; prints messages per second
  local start end
  start=$(date +%s.%N)
  smtp-source -s "$S" -d -m "$N" -l "$SIZE" -f a@x.test -t b@y.test "$1"
  end=$(date +%s.%N)
  python3 -c "print(round($N / ($end - $start)))"
}

a_rates=(); b_rates=()
for round in $(seq "$ROUNDS"); do
  a=$(run "$ours"); b=$(run "$theirs")
  a_rates+=("$a"); b_rates+=("$b")
  echo "round $round: outbox-smtp server $a msg/s, smtp-sink $b msg/s"
done
python3 - "${a_rates[*]}" "${b_rates[*]}" "$N" "$SIZE" "$S" <<'PY'
import statistics, sys
a = [float(x) for x in sys.argv[1].split()]
b = [float(x) for x in sys.argv[2].split()]
ma, mb = statistics.median(a), statistics.median(b)
print(f"median over {len(a)} rounds of {sys.argv[3]} x {sys.argv[4]} B, {sys.argv[5]} sessions: "
      f"outbox-smtp server {ma:.0f} msg/s, smtp-sink {mb:.0f} msg/s, ratio {ma/mb:.2f}x")
PY
