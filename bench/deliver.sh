#!/usr/bin/env bash
# End-to-end delivery, Outbox beside Postfix, into Postfix's smtp-sink.
#
# Outbox: queue COUNT messages of SIZE bytes (examples/fill.rs, batches of 1 000), then
#   `outbox deliver --until-empty` through `[delivery] relay` into smtp-sink. Every state
#   change is committed: nothing is held only in memory.
#   "deliver" is COUNT / (deliver start .. exit), process start and migrations included;
#   "end to end" also counts the queueing.
# Postfix 3.7: smtp-source injects the same COUNT x SIZE into a throwaway Postfix
#   (bench/postfix-relay.sh) that relays into smtp-sink; timed until the sink has them all.
# Ceiling: smtp-source straight into smtp-sink (5 sessions, connections kept open).
# Each round runs every variant once, interleaved, because the machine is shared and
# noisy: read the ratios. The RESULT lines use the best round of each variant.
#
# With OUTBOX_BENCH_DB=postgres each round also runs Outbox on PostgreSQL (a fresh database
# on $OUTBOX_BENCH_PG, default postgres://postgres@127.0.0.1:5432, created and dropped by
# the script): one `deliver`, then two `deliver` processes on one database.
#
#   bench/deliver.sh                                   # COUNT=20000 SIZE=1024 ROUNDS=2, SQLite
#   COUNT=2000 SIZE=102400 bench/deliver.sh            # 100 KB messages
#   OUTBOX_BENCH_DB=postgres bench/deliver.sh          # SQLite and PostgreSQL side by side
#   SKIP_POSTFIX=1 ...                                 # leave Postfix out (faster)
#   OUTBOX=path/to/outbox FILL=path/to/fill ...        # given binaries, no build
#   PROFILE=DIR OUTBOX_BENCH_DB=postgres bench/deliver.sh
#       instead of the rounds: `perf record -g` of one `deliver` per backend (reports in DIR;
#       PROFILE_CALLGRAPH="--call-graph dwarf" for full stacks), and on PostgreSQL
#       transactions, statements and rows per message (see profile() below)
#
# Output (each rate in msg/s):
#   round R outbox sqlite: enqueue E msg/s, deliver D msg/s, end to end X msg/s, deliver peak RSS M MB
#   round R outbox postgres: (same)
#   round R outbox postgres, 2 deliver processes: deliver D msg/s, end to end X msg/s
#   round R postfix: end to end X msg/s
#   round R ceiling: smtp-source -> smtp-sink C msg/s
#   RESULT ... lines: the ratios against their targets
set -euo pipefail

COUNT=${COUNT:-20000}
SIZE=${SIZE:-1024}
ROUNDS=${ROUNDS:-2}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
tools=(smtp-sink smtp-source python3)
[ -n "${SKIP_POSTFIX:-}" ] || tools+=(postfix postconf script)
[ -z "${PROFILE:-}" ] || tools+=(perf)
bench_db_and_tools "${tools[@]}"
build_outbox fill

# outbox_run DB_URL WORKERS [WRAPPER...]: queues COUNT x SIZE into DB_URL, runs WORKERS
# `deliver --until-empty` processes at once into a fresh smtp-sink. Sets run_enqueue,
# run_deliver, run_e2e (msg/s) and run_rss (MB, the first process's peak).
outbox_run() {
  local db=$1 workers=$2 i t0 t1 t2 pid got
  shift 2
  sink_start
  cat >"$tmp/outbox.toml" <<EOF
database = "$db"
[delivery]
relay = "127.0.0.1:$sink_port"
EOF
  t0=$(now)
  "$fill" "$db" "$COUNT" "$SIZE" 2>"$tmp/fill.log" || { cat "$tmp/fill.log" >&2; exit 1; }
  t1=$(now)
  local run_pids=()
  for i in $(seq 1 "$workers"); do
    bg_start /usr/bin/time -f "%M" -o "$tmp/rss.$i" "$@" \
      "$outbox" --config "$tmp/outbox.toml" deliver --until-empty 2>"$tmp/deliver.$i.log"
    run_pids+=("$bg_pid")
  done
  for i in $(seq 1 "$workers"); do
    pid=${run_pids[$((i - 1))]}
    if ! wait "$pid"; then
      echo "deliver.sh: outbox deliver ($db) failed:" >&2
      tail -n 20 "$tmp/deliver.$i.log" >&2
      exit 1
    fi
  done
  t2=$(now)
  got=$(sink_count)
  sink_stop
  if [ "$got" -lt "$COUNT" ]; then
    echo "deliver.sh: outbox delivered $got of $COUNT ($db)" >&2
    exit 1
  fi
  run_enqueue=$(rate "$COUNT" "$t0" "$t1")
  run_deliver=$(rate "$COUNT" "$t1" "$t2")
  run_e2e=$(rate "$COUNT" "$t0" "$t2")
  run_rss=$(( $(tail -n 1 "$tmp/rss.1") / 1024 ))
}

postfix_run() {
  local dir=$tmp/postfix-$1 t0 t2 smtpd_port
  sink_start
  smtpd_port=$(free_port)
  postfix_start "$dir" "$smtpd_port" "$sink_port"
  t0=$(now)
  smtp-source -s 5 -m "$COUNT" -l "$SIZE" -f bench@example.com -t sink@example.net "127.0.0.1:$smtpd_port"
  sink_wait "$COUNT"
  t2=$(now)
  postfix_stop "$dir"
  sink_stop
  run_e2e=$(rate "$COUNT" "$t0" "$t2")
}

ceiling_run() {
  local t0 t2
  sink_start
  t0=$(now)
  smtp-source -s 5 -d -m "$COUNT" -l "$SIZE" -f bench@example.com -t sink@example.net "127.0.0.1:$sink_port"
  sink_wait "$COUNT"
  t2=$(now)
  sink_stop
  run_e2e=$(rate "$COUNT" "$t0" "$t2")
}

# PROFILE=DIR: one `deliver` per backend under `perf record -g` (DIR/perf.BACKEND.data and
# DIR/perf.BACKEND.txt, the top of `perf report --no-children`), then on PostgreSQL a
# second, smaller run (PROFILE_STATEMENTS messages, default 2 000) with
# log_min_duration_statement = 0 set on its database alone, counting from the server log
# (PROFILE_PGLOG, default /var/log/postgresql/postgresql-15-main.log) the parse, bind,
# execute and simple-query statements of that database; and, for the perf run, the
# database's commits (pg_stat_database) and row changes (pg_stat_user_tables) per message.
profile() {
  local dir=$PROFILE backend db
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  for backend in sqlite ${OUTBOX_BENCH_DB/sqlite/}; do
    if [ "$backend" = sqlite ]; then
      db="sqlite://$tmp/profile.db"
    else
      pg_create_db
      db=$pg_url
    fi
    local before=0
    [ "$backend" = sqlite ] || before=$(pg_commits "$db")
    # shellcheck disable=SC2086 # PROFILE_CALLGRAPH is a list of perf options
    outbox_run "$db" 1 perf record ${PROFILE_CALLGRAPH:--g} -q -o "$dir/perf.$backend.data" --
    echo "profile $backend: deliver $run_deliver msg/s under perf (COUNT=$COUNT SIZE=$SIZE)"
    perf report -i "$dir/perf.$backend.data" --no-children --sort dso,symbol --stdio -g none \
      --percent-limit 0.2 2>/dev/null >"$dir/perf.$backend.txt" || true
    # awk, not head: head would end the pipe early, and perf's SIGPIPE would stop the script.
    perf report -i "$dir/perf.$backend.data" --no-children --sort dso --stdio -g none 2>/dev/null \
      | awk '/%/ && n++ < 12 { $1 = $1; print "profile '"$backend"' dso: " $0 }'
    perf report -i "$dir/perf.$backend.data" --no-children --sort comm --stdio -g none 2>/dev/null \
      | awk '/%/ && n++ < 8 { $1 = $1; print "profile '"$backend"' thread: " $0 }'
    perf report -i "$dir/perf.$backend.data" --no-children --sort dso,symbol --stdio -g none 2>/dev/null \
      | awk '/%/ && n++ < 30 { $1 = $1; sub(/ - -$/, ""); print "profile '"$backend"' symbol: " $0 }'
    if [ "$backend" = postgres ]; then
      sleep 1.5 # the server flushes its statistics at most once a second
      psql -qAt "$db" -c "SELECT xact_commit - $before, xact_rollback FROM pg_stat_database WHERE datname = current_database()" \
        | awk -F'|' -v n="$COUNT" '{ printf "profile postgres: %d commits (%.2f per message), %d rollbacks\n", $1, $1 / n, $2 }'
      psql -qAt "$db" -c "SELECT relname, n_tup_ins, n_tup_upd, n_tup_del, n_tup_hot_upd FROM pg_stat_user_tables WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 ORDER BY relname" \
        | awk -F'|' -v n="$COUNT" '{ printf "profile postgres rows: %s inserted %.2f, updated %.2f (HOT %.2f), deleted %.2f per message\n", $1, $2 / n, $3 / n, $5 / n, $4 / n }'
      pg_drop_db "$db"
      profile_statements
    fi
  done
}

pg_commits() {
  psql -qAt "$1" -c "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
}

profile_statements() {
  local log=${PROFILE_PGLOG:-/var/log/postgresql/postgresql-15-main.log}
  local n=${PROFILE_STATEMENTS:-2000} db name offset
  if [ ! -r "$log" ]; then
    echo "profile postgres: cannot read the server log $log (PROFILE_PGLOG): no statement counts"
    return
  fi
  pg_create_db
  db=$pg_url
  name=${db##*/}
  local saved=$COUNT
  COUNT=$n
  sink_start
  cat >"$tmp/outbox.toml" <<EOF
database = "$db"
[delivery]
relay = "127.0.0.1:$sink_port"
EOF
  "$fill" "$db" "$n" "$SIZE" 2>/dev/null
  # Only sessions opened from now on log (fill's statements are not the delivery path's).
  psql -q "$db" -c "ALTER DATABASE $name SET log_min_duration_statement = 0" >/dev/null
  offset=$(stat -c %s "$log")
  "$outbox" --config "$tmp/outbox.toml" deliver --until-empty 2>"$tmp/deliver.stmt.log"
  sink_stop
  COUNT=$saved
  sleep 0.5
  tail -c +"$((offset + 1))" "$log" | grep -a "@$name " >"$tmp/statements.log" || true
  cp "$tmp/statements.log" "$PROFILE/statements.postgres.log"
  awk -v n="$n" '
    / parse /      { parse++ }
    / bind /       { bind++ }
    / execute /    { execute++ }
    / statement: / { simple++ }
    END { printf "profile postgres statements (%d messages): %.2f execute, %.2f parse, %.2f bind, %.2f simple-query per message (about %.2f round trips per message: parse + execute + simple)\n",
            n, execute / n, parse / n, bind / n, simple / n, (parse + execute + simple) / n }' "$tmp/statements.log"
  # The most frequent statements, normalised.
  sed -n 's/.*\(execute [^:]*\|statement\): //p' "$tmp/statements.log" \
    | sed 's/[0-9][0-9]*/N/g' | cut -c1-110 | sort | uniq -c | sort -rn \
    | awk -v n="$n" 'NR <= 15 { c = $1; $1 = ""; printf "profile postgres statement: %.2f per message:%s\n", c / n, $0 }'
  pg_drop_db "$db"
}

if [ -n "${PROFILE:-}" ]; then
  profile
  exit 0
fi

declare -A rates=()
add_rate() { rates[$1]="${rates[$1]:-} $2"; }

for round in $(seq 1 "$ROUNDS"); do
  outbox_run "sqlite://$tmp/outbox-$round.db" 1
  rm -f "$tmp/outbox-$round.db"*
  add_rate sqlite "$run_deliver"; add_rate sqlite_e2e "$run_e2e"
  echo "round $round outbox sqlite: enqueue $run_enqueue msg/s, deliver $run_deliver msg/s, end to end $run_e2e msg/s, deliver peak RSS $run_rss MB"

  if [ "$OUTBOX_BENCH_DB" = postgres ]; then
    pg_create_db
    db=$pg_url
    outbox_run "$db" 1
    pg_drop_db "$db"
    add_rate pg "$run_deliver"; add_rate pg_e2e "$run_e2e"
    echo "round $round outbox postgres: enqueue $run_enqueue msg/s, deliver $run_deliver msg/s, end to end $run_e2e msg/s, deliver peak RSS $run_rss MB"
    pg_create_db
    db=$pg_url
    outbox_run "$db" 2
    pg_drop_db "$db"
    add_rate pg2 "$run_deliver"
    echo "round $round outbox postgres, 2 deliver processes: deliver $run_deliver msg/s, end to end $run_e2e msg/s"
  fi

  if [ -z "${SKIP_POSTFIX:-}" ]; then
    postfix_run "$round"
    add_rate postfix "$run_e2e"
    echo "round $round postfix: end to end $run_e2e msg/s"
  fi

  ceiling_run
  add_rate ceiling "$run_e2e"
  echo "round $round ceiling: smtp-source -> smtp-sink $run_e2e msg/s"
done

# shellcheck disable=SC2086 # the lists are space-separated numbers
b() { best ${rates[$1]}; }
# The targets of issue 9: 50 % of the ceiling and 10x Postfix for 1 KB, 80 % for 100 KB.
target=50 postfix_target=" (target 10x)"
if [ "$SIZE" -ge 102400 ]; then target=80 postfix_target=""; fi
echo "RESULT COUNT=$COUNT SIZE=$SIZE sqlite: deliver $(b sqlite) msg/s, end to end $(b sqlite_e2e) msg/s; ceiling $(b ceiling) msg/s; deliver at $(percent "$(b sqlite)" "$(b ceiling)")% of the ceiling, end to end at $(percent "$(b sqlite_e2e)" "$(b ceiling)")% (target $target%)"
if [ -z "${SKIP_POSTFIX:-}" ]; then
  echo "RESULT COUNT=$COUNT SIZE=$SIZE postfix: end to end $(b postfix) msg/s; outbox sqlite end to end / postfix $(ratio "$(b sqlite_e2e)" "$(b postfix)")x$postfix_target"
fi
if [ "$OUTBOX_BENCH_DB" = postgres ]; then
  echo "RESULT COUNT=$COUNT SIZE=$SIZE postgres: deliver $(b pg) msg/s, end to end $(b pg_e2e) msg/s; postgres / sqlite deliver $(ratio "$(b pg)" "$(b sqlite)")x (target 0.8x), end to end $(ratio "$(b pg_e2e)" "$(b sqlite_e2e)")x; deliver at $(percent "$(b pg)" "$(b ceiling)")% of the ceiling"
  echo "RESULT COUNT=$COUNT SIZE=$SIZE postgres, 2 deliver processes: deliver $(b pg2) msg/s, $(ratio "$(b pg2)" "$(b pg)")x one process"
  if [ -z "${SKIP_POSTFIX:-}" ]; then
    echo "RESULT COUNT=$COUNT SIZE=$SIZE postgres end to end / postfix $(ratio "$(b pg_e2e)" "$(b postfix)")x"
  fi
fi
