#!/usr/bin/env bash
# Queue-injection benchmark.
#
# 1. The store through the library (crates/outbox-queue/examples/enqueue_rate.rs), on
#    SQLite in a temp dir AND on PostgreSQL (a fresh database created and dropped through
#    psql on $OUTBOX_BENCH_PG, or PG_URL's server): N messages of 1 KB batched (BATCH per transaction), SINGLES
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
#   OUTBOX_BENCH_PG=postgres://postgres@127.0.0.1:5432 bench/enqueue.sh  # the server for part 1 (default)
#   SKIP_POSTGRES=1 bench/enqueue.sh                                    # part 1 on SQLite only
#   SKIP_LIBRARY=1 OUTBOX=path/to/outbox bench/enqueue.sh               # part 2 only, given binary
#   SKIP_INJECT=1 bench/enqueue.sh                                      # part 1 only
set -euo pipefail

# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
N=${N:-100000}
BATCH=${BATCH:-1000}
SINGLES=${SINGLES:-2000}
CONC=${CONC:-32}
INJECT=${INJECT:-300}
ROUNDS=${ROUNDS:-3}

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
    pg_create_db
    echo "== 1b. store through the library: PostgreSQL, fresh database ${pg_url##*/} on $OUTBOX_BENCH_PG"
    "$rate_bin" "$pg_url" "$N" "$BATCH" "$SINGLES" "$CONC" | tee "$tmp/postgres.out"
    pg_rate=$(batched_rate "$tmp/postgres.out")
  fi
  echo "RESULT batched SQLite $(calc "$sqlite_rate") msg/s = $(ratio "$sqlite_rate" 50000)x the 50 000 target"
  if [ -n "${pg_rate:-}" ]; then
    echo "RESULT batched PostgreSQL $(calc "$pg_rate") msg/s = $(ratio "$pg_rate" 20000)x the 20 000 target, $(ratio "$pg_rate" "$sqlite_rate")x SQLite"
  fi
fi
[ -n "${SKIP_INJECT:-}" ] && exit 0

echo "== 2. one process per message: outbox send vs Postfix sendmail ($INJECT per round, $ROUNDS rounds)"
need_tools smtp-sink postfix sendmail
build_outbox

sink_start
postfix_dir=$tmp/postfix
postfix_start "$postfix_dir" "$(free_port)" "$sink_port" >/dev/null

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
  outbox_total=$(calc "$outbox_total + $end - $start" %.6f)

  start=$(now)
  for _ in $(seq 1 "$INJECT"); do
    sendmail -C "$postfix_dir/etc" -t <"$tmp/message.txt"
  done
  end=$(now)
  postfix_rate=$(rate "$INJECT" "$start" "$end")
  postfix_total=$(calc "$postfix_total + $end - $start" %.6f)
  echo "round $round: outbox send $outbox_rate msg/s, postfix sendmail $postfix_rate msg/s"
done
total=$((INJECT * ROUNDS))
outbox_rate=$(rate "$total" 0 "$outbox_total")
postfix_rate=$(rate "$total" 0 "$postfix_total")
echo "total: outbox send $outbox_rate msg/s, postfix sendmail $postfix_rate msg/s"
echo "RESULT outbox send / postfix sendmail: $(ratio "$outbox_rate" "$postfix_rate")x"
