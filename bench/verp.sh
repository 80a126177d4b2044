#!/usr/bin/env bash
# The cost of VERP (`[bounces] domain`): a return path names one recipient, so each
# recipient gets its own transaction instead of sharing one with up to
# max_recipients_per_transaction others. Queues MESSAGES messages of RECIPIENTS recipients
# each (one domain, `outbox sendmail`), then times `outbox deliver --until-empty` through
# `[delivery] relay` into Postfix's smtp-sink, without and with a bounce domain, interleaved
# (the machine is shared and noisy: read the ratio).
#
#   bench/verp.sh                          # MESSAGES=20 RECIPIENTS=100 ROUNDS=3, SQLite
#   OUTBOX=path/to/outbox bench/verp.sh    # a given binary, no build
#
# Output: per round and variant, recipients delivered per second and transactions; then
#   RESULT verp: with/without = R (recipients per second)
set -euo pipefail

MESSAGES=${MESSAGES:-20}
RECIPIENTS=${RECIPIENTS:-100}
ROUNDS=${ROUNDS:-3}

source "$(dirname "$0")/lib.sh"
need_tools smtp-sink python3
build_outbox

sink_start
total=$((MESSAGES * RECIPIENTS))
rcpts=()
for i in $(seq 1 "$RECIPIENTS"); do rcpts+=("r$i@example.net"); done
printf 'From: bench@example.com\r\nSubject: verp bench\r\n\r\n%s\r\n' "$(head -c 700 /dev/zero | tr '\0' x)" >"$tmp/msg.eml"

run() { # run VARIANT ROUND -> prints the rate
  local variant=$1 dir=$tmp/$1.$2
  mkdir -p "$dir"
  {
    echo 'database = "sqlite://outbox.db"'
    echo '[delivery]'
    echo "relay = \"smtp://127.0.0.1:$sink_port?starttls=off\""
    echo 'helo_name = "bench.example.com"'
    echo 'max_connections = 5'
    if [ "$variant" = verp ]; then
      printf '[bounces]\ndomain = "bounces.example.com"\nsecret = "bench-secret-0123456789"\n'
    fi
  } >"$dir/outbox.toml"
  for _ in $(seq 1 "$MESSAGES"); do
    (cd "$dir" && "$outbox" --config outbox.toml sendmail -f bench@example.com "${rcpts[@]}" <"$tmp/msg.eml")
  done
  local before t0 t1
  before=$(sink_count)
  t0=$(now)
  (cd "$dir" && "$outbox" --config outbox.toml deliver --until-empty 2>/dev/null)
  t1=$(now)
  local transactions=$(( $(sink_count) - before ))
  echo "round $2 $variant: $(rate "$total" "$t0" "$t1") recipients/s, $transactions transactions" >&2
  rate "$total" "$t0" "$t1"
}

plain_rates=() verp_rates=()
for round in $(seq 1 "$ROUNDS"); do
  plain_rates+=("$(run plain "$round")")
  verp_rates+=("$(run verp "$round")")
done
plain=$(best "${plain_rates[@]}")
verp=$(best "${verp_rates[@]}")
echo "RESULT verp: $MESSAGES messages x $RECIPIENTS recipients: without $plain recipients/s, with $verp recipients/s, with/without = $(ratio "$verp" "$plain")"
