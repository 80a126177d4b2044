#!/usr/bin/env bash
# Queue-injection benchmark.
#
# 1. The store through the library (crates/outbox-queue/examples/enqueue_rate.rs), on
#    SQLite in a temp dir AND on PostgreSQL (a fresh database created and dropped through
#    psql on PG_URL's server): N messages of 1 KB batched (BATCH per transaction), SINGLES
#    durable single enqueues one after the other (one commit each: the commit latency),
#    the same SINGLES from CONC concurrent tasks (which share commits), and one bulk
#    message with N recipients. The batched rates are printed against the targets
#    (SQLite 50 000 msg/s, PostgreSQL 20 000 msg/s) and against each other.
# 2. One message per process, as a script or cron job would inject it: `outbox send`
#    (SQLite queue) against Postfix's `sendmail -C DIR -t` into a throwaway Postfix
#    instance (bench/postfix-relay.sh) that relays to smtp-sink. Rounds are interleaved
#    (A B A B ...) because the machine is shared and noisy; the ratio is what to read.
#    Separate processes cannot share a SQLite commit: each pays its own fsync.
#
#   bench/enqueue.sh                          # N=100000 BATCH=1000 SINGLES=2000 INJECT=300 ROUNDS=3
#   N=20000 INJECT=100 ROUNDS=2 bench/enqueue.sh
#   PG_URL=postgres://postgres@127.0.0.1:5432/test bench/enqueue.sh  # the server for part 1 (default)
#   SKIP_POSTGRES=1 bench/enqueue.sh                                    # part 1 on SQLite only
#   SKIP_LIBRARY=1 OUTBOX=path/to/outbox bench/enqueue.sh               # part 2 only, given binary
#   SKIP_INJECT=1 bench/enqueue.sh                                      # part 1 only
set -euo pipefail

N=${N:-100000}
BATCH=${BATCH:-1000}
SINGLES=${SINGLES:-2000}
CONC=${CONC:-32}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
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

# The batched rate ("batched: ... 12345 msg/s") of an enqueue_rate output.
batched_rate() { awk '/^batched:/ {print $(NF-1)}' "$1"; }

if [ -z "${SKIP_LIBRARY:-}" ]; then
  cargo build --quiet --release -p outbox-queue --example enqueue_rate --manifest-path "$root/Cargo.toml"
  rate_bin=$CARGO_TARGET_DIR/release/examples/enqueue_rate
  echo "== 1a. store through the library: SQLite in a temp dir"
  "$rate_bin" "sqlite://$tmp/library.db" "$N" "$BATCH" "$SINGLES" "$CONC" | tee "$tmp/sqlite.out"
  sqlite_rate=$(batched_rate "$tmp/sqlite.out")
  if [ -z "${SKIP_POSTGRES:-}" ]; then
    command -v psql >/dev/null || { echo "enqueue.sh: psql is missing (or set SKIP_POSTGRES=1)" >&2; exit 1; }
    bench_db=outbox_bench_$$
    echo "== 1b. store through the library: PostgreSQL, fresh database $bench_db on ${PG_URL%/*}"
    psql -q -d "$PG_URL" -c "CREATE DATABASE $bench_db" >/dev/null
    pg_drop() { psql -q -d "$PG_URL" -c "DROP DATABASE IF EXISTS $bench_db WITH (FORCE)" >/dev/null || true; }
    status=0
    "$rate_bin" "${PG_URL%/*}/$bench_db" "$N" "$BATCH" "$SINGLES" "$CONC" | tee "$tmp/postgres.out" || status=$?
    pg_drop
    [ "$status" -eq 0 ] || exit "$status"
    pg_rate=$(batched_rate "$tmp/postgres.out")
  fi
  python3 - "$sqlite_rate" "${pg_rate:-}" <<'PY'
import sys
sqlite = float(sys.argv[1])
print(f"batched SQLite {sqlite:.0f} msg/s = {sqlite / 50000:.2f}x the 50 000 target")
if sys.argv[2]:
    pg = float(sys.argv[2])
    print(f"batched PostgreSQL {pg:.0f} msg/s = {pg / 20000:.2f}x the 20 000 target, "
          f"{pg / sqlite:.2f}x SQLite")
PY
fi
[ -n "${SKIP_INJECT:-}" ] && exit 0

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
