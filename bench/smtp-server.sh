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
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

N=${N:-20000}
S=${S:-5}
SIZE=${SIZE:-1024}
ROUNDS=${ROUNDS:-3}
need_tools smtp-sink smtp-source
cargo build --quiet --release -p outbox-smtp --example sink --manifest-path "$root/Cargo.toml"

# A: our server; it prints its address once it listens.
bg_start "$CARGO_TARGET_DIR/release/examples/sink" 127.0.0.1:0 >"$tmp/ours" 2>/dev/null
for _ in $(seq 1 200); do [ -s "$tmp/ours" ] && break; sleep 0.05; done
read -r ours <"$tmp/ours"
# B: smtp-sink (backlog 1024).
sink_start
theirs=127.0.0.1:$sink_port

run() { # $1 = address; sets run_rate (messages per second)
  local start
  start=$(now)
  smtp-source -s "$S" -d -m "$N" -l "$SIZE" -f a@x.test -t b@y.test "$1"
  run_rate=$(rate "$N" "$start" "$(now)")
}

a_rates=(); b_rates=()
for round in $(seq "$ROUNDS"); do
  run "$ours"; a=$run_rate
  run "$theirs"; b=$run_rate
  a_rates+=("$a"); b_rates+=("$b")
  echo "round $round: outbox-smtp server $a msg/s, smtp-sink $b msg/s"
done
ma=$(median "${a_rates[@]}")
mb=$(median "${b_rates[@]}")
echo "RESULT smtp server, $N x $SIZE B, $S sessions: outbox-smtp server $(calc "$ma") msg/s, smtp-sink $(calc "$mb") msg/s, ratio $(ratio "$ma" "$mb")x (median of $ROUNDS)"
