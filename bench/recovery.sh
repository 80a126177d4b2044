#!/usr/bin/env bash
# Kill -9 recovery: how long after a crashed `outbox deliver` is restarted do the
# recipients it held get delivered again?
#
# Method (measured from the sink's side, on the machine's one clock):
# 1. Queue N x SIZE messages (examples/fill.rs; subjects m0, m1, ...) and start a sink that
#    logs "TIME SUBJECT" the moment a message's data has arrived (bench/lib.sh timesink).
#    While a "slow" file exists the sink withholds every answer to end-of-data, so each
#    transaction the engine starts stays in flight.
# 2. Start `outbox deliver`; once the sink has logged INFLIGHT messages (and SETTLE seconds
#    more, so every connection has one transaction open), `kill -9` it. Every subject the
#    sink logged before the kill is a transaction that never got its 250: its recipient is
#    still leased ("sending") by the dead worker. These are the "in-flight" messages.
# 3. Remove the slow file (the sink now answers at once) and immediately restart
#    `outbox deliver --until-empty`. It delivers the messages nobody held at once; the
#    in-flight ones only when the dead worker's claim is given up (today: lease expiry).
# 4. "first resumed delivery" = first arrival, after the restart, of an in-flight subject,
#    minus the restart time. Also printed: the same from the kill, the time until every
#    in-flight message was delivered again and until `deliver --until-empty` returned, and
#    how many messages arrived more than once (the in-flight ones do: their first arrival
#    was never answered).
#
#   bench/recovery.sh                        # N=2000 SIZE=1024 ROUNDS=1, SQLite
#   OUTBOX_BENCH_DB=postgres bench/recovery.sh
#   LEASE=20s bench/recovery.sh              # [delivery] lease (default: the engine's own)
#   REMOTE=1 bench/recovery.sh               # the restarted worker runs under another host
#       name (unshare --uts), as a worker on another machine would: it cannot see that the
#       dead process is gone, and resumes its recipients only once their heartbeat is
#       older than the lease (the path a crashed machine takes)
#   OUTBOX=path/to/outbox FILL=path/to/fill bench/recovery.sh
#
# Output:
#   round R recovery (BACKEND, lease L): K in flight at kill -9 of N; restart -> first resumed
#     delivery T s (target < 15 s); kill -> first resumed T s; restart -> all in-flight
#     delivered T s; restart -> queue empty T s; D arrived twice
#   RESULT recovery BACKEND: restart -> first resumed delivery T s (best) / T s (worst) of R rounds
set -euo pipefail

N=${N:-2000}
SIZE=${SIZE:-1024}
ROUNDS=${ROUNDS:-1}
INFLIGHT=${INFLIGHT:-1}
SETTLE=${SETTLE:-1}
TIMEOUT=${TIMEOUT:-300}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
tools=(python3)
bench_db_and_tools "${tools[@]}"
build_outbox fill

lines() { wc -l <"$1"; }

results=()
for round in $(seq 1 "$ROUNDS"); do
  log=$tmp/arrivals.$round
  slow=$tmp/slow.$round
  : >"$log"
  touch "$slow"
  timesink_start "$log" "$slow"
  if [ "$OUTBOX_BENCH_DB" = postgres ]; then
    pg_create_db
    db=$pg_url
  else
    db="sqlite://$tmp/recovery-$round.db"
  fi
  {
    echo "database = \"$db\""
    echo "[delivery]"
    echo "relay = \"127.0.0.1:$timesink_port\""
    [ -z "${LEASE:-}" ] || echo "lease = \"$LEASE\""
  } >"$tmp/outbox.toml"
  "$fill" "$db" "$N" "$SIZE" 2>"$tmp/fill.log" || { cat "$tmp/fill.log" >&2; exit 1; }

  bg_start "$outbox" --config "$tmp/outbox.toml" deliver 2>"$tmp/deliver-1.$round.log"
  first=$bg_pid
  deadline=$(( $(date +%s) + 60 ))
  until [ "$(lines "$log")" -ge "$INFLIGHT" ]; do
    if [ "$(date +%s)" -gt "$deadline" ] || ! kill -0 "$first" 2>/dev/null; then
      echo "recovery.sh: no delivery reached the sink within 60 s" >&2
      tail -n 20 "$tmp/deliver-1.$round.log" >&2
      exit 1
    fi
    sleep 0.02
  done
  sleep "$SETTLE"
  t_kill=$(now)
  bg_stop "$first" KILL
  # Everything logged so far is in flight: the sink answered none of it.
  cut -d' ' -f2 "$log" | sort -u >"$tmp/inflight.$round"
  inflight=$(lines "$tmp/inflight.$round")
  before=$(lines "$log")
  rm -f "$slow"

  t_restart=$(now)
  if [ -n "${REMOTE:-}" ]; then
    bg_start unshare --uts sh -c 'hostname "bench-remote-$$" && exec "$@"' sh \
      "$outbox" --config "$tmp/outbox.toml" deliver --until-empty 2>"$tmp/deliver-2.$round.log"
  else
    bg_start "$outbox" --config "$tmp/outbox.toml" deliver --until-empty 2>"$tmp/deliver-2.$round.log"
  fi
  second=$bg_pid
  t_first="" t_all="" t_empty=""
  deadline=$(awk -v t="$t_restart" -v d="$TIMEOUT" 'BEGIN { printf "%d", t + d }')
  while :; do
    if [ -z "$t_first" ] || [ -z "$t_all" ]; then
      # Arrivals after the restart of in-flight subjects: first one, and all of them.
      read -r t_first_now t_all_now < <(tail -n +"$((before + 1))" "$log" | awk -v list="$tmp/inflight.$round" -v want="$inflight" '
        BEGIN { while ((getline s < list) > 0) held[s] = 1 }
        ($2 in held) && !($2 in seen) { seen[$2] = 1; n++; if (!first) first = $1; if (n == want) all = $1 }
        END { print (first ? first : "-"), (all ? all : "-") }')
      [ "$t_first_now" = - ] || t_first=$t_first_now
      [ "$t_all_now" = - ] || t_all=$t_all_now
    fi
    if [ -z "$t_empty" ] && ! kill -0 "$second" 2>/dev/null; then
      t_empty=$(now)
      if ! wait "$second"; then
        echo "recovery.sh: the restarted outbox deliver failed:" >&2
        tail -n 20 "$tmp/deliver-2.$round.log" >&2
        exit 1
      fi
    fi
    [ -z "$t_first" ] || [ -z "$t_all" ] || [ -z "$t_empty" ] || break
    if [ "$(date +%s)" -gt "$deadline" ]; then
      echo "recovery.sh: after $TIMEOUT s: first resumed ${t_first:-none}, all ${t_all:-no}, deliver ${t_empty:+returned}${t_empty:-still running}" >&2
      exit 1
    fi
    sleep 0.05
  done
  distinct=$(cut -d' ' -f2 "$log" | sort -u | wc -l)
  if [ "$distinct" -lt "$N" ]; then
    echo "recovery.sh: only $distinct of $N messages reached the sink" >&2
    exit 1
  fi
  twice=$(cut -d' ' -f2 "$log" | sort | uniq -d | wc -l)
  bg_stop "$timesink_pid"
  [ "$OUTBOX_BENCH_DB" = sqlite ] || pg_drop_db "$db"

  since() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
  resumed=$(since "$t_restart" "$t_first")
  results+=("$resumed")
  echo "round $round recovery ($OUTBOX_BENCH_DB${REMOTE:+, from another host}, lease ${LEASE:-default}): $inflight in flight at kill -9 of $N; restart -> first resumed delivery $resumed s (target < 15 s); kill -> first resumed $(since "$t_kill" "$t_first") s; restart -> all in-flight delivered $(since "$t_restart" "$t_all") s; restart -> queue empty $(since "$t_restart" "$t_empty") s; $twice arrived twice"
done

sorted=$(printf '%s\n' "${results[@]}" | sort -n)
echo "RESULT recovery $OUTBOX_BENCH_DB: restart -> first resumed delivery $(head -n 1 <<<"$sorted") s (best) / $(tail -n 1 <<<"$sorted") s (worst) of $ROUNDS rounds (target < 15 s)"
