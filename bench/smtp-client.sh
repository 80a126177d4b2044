#!/usr/bin/env bash
# The SMTP client's throughput beside Postfix's smtp-source, into one smtp-sink, in the same
# run, interleaved A B A B: 20 000 messages of 1 KB over 5 reused connections each.
# Prints both rates and the ratio (target: outbox-smtp >= 0.8x smtp-source).
# Usage: bench/smtp-client.sh [ROUNDS] [MESSAGES]
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${1:-2}
messages=${2:-20000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --quiet --release -p outbox-smtp --example blast
blast="$CARGO_TARGET_DIR/release/examples/blast"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
/usr/sbin/smtp-sink -u nobody "127.0.0.1:$port" 1024 &
sink=$!
trap 'kill "$sink" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.05
done

now() { date +%s.%N; }
rate() { python3 -c "print(f'{$1/($3-$2):.0f}')"; }

source_rates=()
outbox_rates=()
for round in $(seq "$rounds"); do
  start=$(now)
  /usr/sbin/smtp-source -s 5 -d -m "$messages" -l 1024 -f a@x.test -t b@y.test "127.0.0.1:$port"
  end=$(now)
  r=$(rate "$messages" "$start" "$end")
  source_rates+=("$r")
  echo "round $round  smtp-source: $r msg/s"

  start=$(now)
  "$blast" "127.0.0.1:$port" "$messages" 5 1024 >/dev/null
  end=$(now)
  r=$(rate "$messages" "$start" "$end")
  outbox_rates+=("$r")
  echo "round $round  outbox-smtp: $r msg/s"
done

python3 - "${source_rates[*]}" "${outbox_rates[*]}" <<'PY'
import sys
src = [float(x) for x in sys.argv[1].split()]
out = [float(x) for x in sys.argv[2].split()]
s, o = sum(src) / len(src), sum(out) / len(out)
print(f"mean: smtp-source {s:.0f} msg/s, outbox-smtp {o:.0f} msg/s, ratio {o / s:.2f}x")
PY
