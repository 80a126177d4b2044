#!/usr/bin/env bash
# Queue-injection benchmark.
#
# 1. The store through the library (crates/outbox-queue/examples/enqueue_rate.rs), SQLite
#    in a temp dir: N messages of 1 KB batched (BATCH per transaction), SINGLES durable
#    single enqueues (one commit each), and one bulk message with N recipients.
# 2. One message per process, as a script or cron job would inject it: `outbox send`
#    (SQLite queue) against Postfix's `sendmail -C DIR -t` into a throwaway Postfix
#    instance (bench/postfix-relay.sh) that relays to smtp-sink. Rounds are interleaved
#    (A B A B ...) because the machine is shared and noisy; the ratio is what to read.
#
#   bench/enqueue.sh                          # N=100000 BATCH=1000 SINGLES=2000 INJECT=300 ROUNDS=3
#   N=20000 INJECT=100 ROUNDS=2 bench/enqueue.sh
#   DB=postgres://postgres@127.0.0.1:5432/bench bench/enqueue.sh   # part 1 on PostgreSQL
#   SKIP_LIBRARY=1 OUTBOX=path/to/outbox bench/enqueue.sh             # part 2 only, given binary
set -euo pipefail

N=${N:-100000}
BATCH=${BATCH:-1000}
SINGLES=${SINGLES:-2000}
INJECT=${INJECT:-300}
ROUNDS=${ROUNDS:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target-bench}
export PATH=$PATH:/usr/sbin

tmp=$(mktemp -d)
chmod 755 "$tmp"  # Postfix daemons (user postfix) must reach the queue inside
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
rate() { python3 -c "print(f'{$1 / ($3 - $2):.0f}')"; }

if [ -z "${SKIP_LIBRARY:-}" ]; then
  echo "== 1. store through the library (${DB:-SQLite in a temp dir})"
  cargo build --quiet --release -p outbox-queue --example enqueue_rate --manifest-path "$root/Cargo.toml"
  "$CARGO_TARGET_DIR/release/examples/enqueue_rate" "${DB:-sqlite://$tmp/library.db}" "$N" "$BATCH" "$SINGLES"
fi

echo "== 2. one process per message: outbox send vs Postfix sendmail ($INJECT per round, $ROUNDS rounds)"
for tool in smtp-sink postfix sendmail python3; do
  command -v "$tool" >/dev/null || {
    echo "enqueue.sh: $tool is missing (scripts/install-peers.sh installs it)" >&2; exit 1; }
done
if [ -z "${OUTBOX:-}" ]; then
  cargo build --quiet --release -p outbox --manifest-path "$root/Cargo.toml"
  OUTBOX=$CARGO_TARGET_DIR/release/outbox
fi
outbox=$OUTBOX

sink_port=$(free_port)
smtp-sink -u nobody "127.0.0.1:$sink_port" 1024 >"$tmp/sink.out" 2>&1 &
pids+=("$!")
postfix_dir=$tmp/postfix
"$root/bench/postfix-relay.sh" start "$postfix_dir" "$(free_port)" "$sink_port" >/dev/null

# One 1 KB message, headers included.
{
  printf 'From: bench@example.com\nTo: user@example.net\nSubject: bench\n\n'
  head -c 900 /dev/zero | tr '\0' 'x' | fold -w 75
  printf '\n'
} >"$tmp/message.txt"
head -c 900 /dev/zero | tr '\0' 'x' | fold -w 75 >"$tmp/body.txt"

outbox_total=0
postfix_total=0
for round in $(seq 1 "$ROUNDS"); do
  start=$(now)
  for _ in $(seq 1 "$INJECT"); do
    "$outbox" --db "sqlite://$tmp/cli.db" send --from bench@example.com --to user@example.net \
      --subject bench --body-file "$tmp/body.txt" >/dev/null
  done
  end=$(now)
  outbox_rate=$(rate "$INJECT" "$start" "$end")
  outbox_total=$(python3 -c "print($outbox_total + $end - $start)")

  start=$(now)
  for _ in $(seq 1 "$INJECT"); do
    sendmail -C "$postfix_dir/etc" -t <"$tmp/message.txt"
  done
  end=$(now)
  postfix_rate=$(rate "$INJECT" "$start" "$end")
  postfix_total=$(python3 -c "print($postfix_total + $end - $start)")
  echo "round $round: outbox send $outbox_rate msg/s, postfix sendmail $postfix_rate msg/s"
done
python3 - "$INJECT" "$ROUNDS" "$outbox_total" "$postfix_total" <<'PY'
import sys
n, rounds, a, b = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
ra, rb = n * rounds / a, n * rounds / b
print(f"total: outbox send {ra:.0f} msg/s, postfix sendmail {rb:.0f} msg/s, ratio outbox/postfix {ra / rb:.2f}")
PY
