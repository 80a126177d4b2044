#!/usr/bin/env bash
# Runs every benchmark once, one after the other (never two at a time: they would measure
# each other), keeps each one's full output in LOGDIR, and prints the README's benchmark
# table built from the RESULT lines the scripts print (criterion benches: each benchmark's
# median time). With --write it also replaces the table in README.md (between the
# bench-table markers).
#
#   bench/all.sh                  # every script with its documented defaults (20-30 minutes)
#   bench/all.sh --write          # the same, then README.md's table is regenerated
#   QUICK=1 bench/all.sh          # tiny sizes: checks that every script runs, measures nothing
#   ONLY=memory,http bench/all.sh # only these rows (names below)
#   LOGDIR=dir bench/all.sh       # where the outputs go [bench-logs/DATE]
#   bench/all.sh --from-logs DIR [--write]
#                                 # no run: the table again from the logs of an earlier run
#
# A script that fails is named at the end and the table says "failed (see LOGDIR/NAME.log)";
# the exit status is 1 then.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
write=0
from_logs=
while [ $# -gt 0 ]; do
  case $1 in
    --write) write=1 ;;
    --from-logs) from_logs=${2:?--from-logs needs the directory of an earlier run}; shift ;;
    *) echo "all.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [ -n "$from_logs" ]; then
  LOGDIR=$from_logs
  # The date of the run that wrote the logs, not today's.
  stamp=$(date -u -r "$LOGDIR" +%Y-%m-%d)
else
  stamp=$(date -u +%Y-%m-%d)
  LOGDIR=${LOGDIR:-$root/bench-logs/$(date -u +%Y%m%dT%H%M%S)}
fi
mkdir -p "$LOGDIR"

# name | what | command as documented | the same, tiny (QUICK=1)
rows=(
  "compose|composing vs lettre|cargo bench -p outbox-mime --bench compose|cargo bench -p outbox-mime --bench compose -- --quick"
  "dkim|DKIM signing vs composing the same message|cargo bench -p outbox-mime --bench dkim|cargo bench -p outbox-mime --bench dkim -- --quick"
  "dot|DATA encoder (dot-stuffing)|cargo bench -p outbox-smtp --bench dot|cargo bench -p outbox-smtp --bench dot -- --quick"
  "latency|enqueue-to-accept latency|cargo bench -p outbox-queue --bench latency|cargo bench -p outbox-queue --bench latency -- --quick"
  "smtp-client|SMTP client vs smtp-source|bench/smtp-client.sh|bench/smtp-client.sh 1 500"
  "smtp-server|SMTP server vs smtp-sink|bench/smtp-server.sh|N=500 ROUNDS=1 bench/smtp-server.sh"
  "smtp-server-100k|SMTP server vs smtp-sink, 100 KB|N=5000 SIZE=102400 ROUNDS=3 bench/smtp-server.sh|N=50 SIZE=102400 ROUNDS=1 bench/smtp-server.sh"
  "enqueue|batched enqueue (SQLite, PostgreSQL); \`outbox send\` vs Postfix's sendmail|bench/enqueue.sh|N=2000 SINGLES=50 INJECT=5 ROUNDS=1 bench/enqueue.sh"
  "deliver|delivery end to end vs Postfix and the smtp-source → smtp-sink ceiling|OUTBOX_BENCH_DB=postgres bench/deliver.sh|COUNT=500 ROUNDS=1 OUTBOX_BENCH_DB=postgres bench/deliver.sh"
  "deliver-100k|the same, 100 KB|COUNT=2000 SIZE=102400 OUTBOX_BENCH_DB=postgres bench/deliver.sh|COUNT=50 SIZE=102400 ROUNDS=1 bench/deliver.sh"
  "mx|direct MX delivery to many domains, and the rate limit|bench/mx.sh|COUNT=300 DOMAINS=30 HOSTS=3 RATE_COUNT=100 ROUNDS=1 bench/mx.sh"
  "webhooks|webhooks while delivering: delivery rate with an endpoint / without, events sent per second|bench/webhooks.sh|COUNT=500 ROUNDS=1 bench/webhooks.sh"
  "verp|VERP (one recipient per transaction) / shared transactions|bench/verp.sh|MESSAGES=5 RECIPIENTS=20 ROUNDS=1 bench/verp.sh"
  "recovery|kill -9, then restart: to the first resumed delivery|bench/recovery.sh|N=200 bench/recovery.sh"
  "recovery-pg|the same on PostgreSQL|OUTBOX_BENCH_DB=postgres bench/recovery.sh|N=200 OUTBOX_BENCH_DB=postgres bench/recovery.sh"
  "priority|high priority while 20 000 low drain|bench/priority.sh|LOW=2000 START_AFTER=500 HIGH=10 IDLE=5 ROUNDS=1 bench/priority.sh"
  "priority-pg|the same on PostgreSQL|OUTBOX_BENCH_DB=postgres bench/priority.sh|LOW=2000 START_AFTER=500 HIGH=10 IDLE=5 ROUNDS=1 OUTBOX_BENCH_DB=postgres bench/priority.sh"
  "http|HTTP enqueue, 32 clients|bench/http.sh|N=500 bench/http.sh"
  "http-pg|the same on PostgreSQL|OUTBOX_BENCH_DB=postgres bench/http.sh|N=500 OUTBOX_BENCH_DB=postgres bench/http.sh"
  "memory|memory with 1 000 000 queued|bench/memory.sh|COUNT=20000 RUN_SECONDS=3 bench/memory.sh"
  "listener|submission listener vs Postfix, 5 sessions|bench/listener.sh|N=500 bench/listener.sh"
  "listener-50|submission listener vs Postfix, 50 sessions|S=50 bench/listener.sh|N=500 S=50 bench/listener.sh"
)

# The result column of one run: its RESULT lines (without the word), or for a criterion
# bench each benchmark's median time ("id: 1.23 µs").
summarize() {
  local log=$1
  if grep -q '^RESULT ' "$log"; then
    sed -n 's/^RESULT //p' "$log" | paste -sd ';' | sed 's/;/; /g'
  else
    python3 "$root/bench/criterion_summary.py" "$log"
  fi
}
# Runs the row's command into its log (a failure is marked at the end of the log); with
# --from-logs, looks at the log an earlier run left instead.
ran() {
  if [ -n "$from_logs" ]; then
    [ -s "$LOGDIR/$name.log" ] && ! grep -q '^all.sh: failed' "$LOGDIR/$name.log"
  else
    bash -c "$run" >"$LOGDIR/$name.log" 2>&1 || {
      echo "all.sh: failed" >>"$LOGDIR/$name.log"
      false
    }
  fi
}

failed=()
table=$LOGDIR/table.md
{
  echo "| what | command | measured here (bench/all.sh, $stamp, shared machine) |"
  echo "| --- | --- | --- |"
} >"$table"
for row in "${rows[@]}"; do
  IFS='|' read -r name what command quick <<<"$row"
  if [ -n "${ONLY:-}" ] && [[ ",$ONLY," != *",$name,"* ]]; then continue; fi
  run=$command
  [ -n "${QUICK:-}" ] && run=$quick
  echo "== $name: $run" >&2
  if ran; then
    result=$(summarize "$LOGDIR/$name.log")
    [ -n "$result" ] || result="no result line (see $name.log)"
  else
    failed+=("$name")
    result="failed (see $LOGDIR/$name.log)"
    tail -n 5 "$LOGDIR/$name.log" >&2
  fi
  echo "   $result" >&2
  echo "| $what | \`$command\` | $result |" >>"$table"
done
cat "$table"

if [ "$write" = 1 ]; then
  if [ -n "${QUICK:-}" ] || [ "${#failed[@]}" -gt 0 ]; then
    echo "all.sh: README.md not written (QUICK runs measure nothing; failures: ${failed[*]:-none})" >&2
  else
    python3 - "$root/README.md" "$table" <<'PY'
import re, sys
readme, table = sys.argv[1], open(sys.argv[2]).read()
text = open(readme).read()
begin, end = "<!-- bench-table:begin (bench/all.sh --write) -->\n", "<!-- bench-table:end -->"
i, j = text.index(begin) + len(begin), text.index(end)
open(readme, "w").write(text[:i] + table + text[j:])
PY
    echo "all.sh: README.md's benchmark table regenerated" >&2
  fi
fi
if [ "${#failed[@]}" -gt 0 ]; then
  echo "all.sh: failed: ${failed[*]}" >&2
  exit 1
fi
