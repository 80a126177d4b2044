#!/usr/bin/env bash
# The SMTP client's throughput beside Postfix's smtp-source, into one smtp-sink, in the same
# run, interleaved A B A B: MESSAGES messages of 1 KB over 5 reused connections each.
# Prints both rates and the ratio (target: outbox-smtp >= 0.8x smtp-source).
# Usage: bench/smtp-client.sh [ROUNDS] [MESSAGES]     # defaults: 2 rounds, 20 000 messages
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"

rounds=${1:-2}
messages=${2:-20000}
need_tools smtp-sink smtp-source
cargo build --quiet --release -p outbox-smtp --example blast --manifest-path "$root/Cargo.toml"
blast=$CARGO_TARGET_DIR/release/examples/blast
sink_start

source_rates=()
outbox_rates=()
for round in $(seq "$rounds"); do
  start=$(now)
  smtp-source -s 5 -d -m "$messages" -l 1024 -f a@x.test -t b@y.test "127.0.0.1:$sink_port"
  r=$(rate "$messages" "$start" "$(now)")
  source_rates+=("$r")
  echo "round $round  smtp-source: $r msg/s"

  start=$(now)
  "$blast" "127.0.0.1:$sink_port" "$messages" 5 1024 >/dev/null
  r=$(rate "$messages" "$start" "$(now)")
  outbox_rates+=("$r")
  echo "round $round  outbox-smtp: $r msg/s"
done

s=$(median "${source_rates[@]}")
o=$(median "${outbox_rates[@]}")
echo "RESULT smtp client: smtp-source $(calc "$s") msg/s, outbox-smtp $(calc "$o") msg/s, ratio $(ratio "$o" "$s")x (median of $rounds)"
