#!/usr/bin/env bash
# Direct MX delivery to many domains beside relay delivery of the same messages, into one
# smtp-sink, and how exactly a destination's max_message_rate is kept.
#
# A dnsmasq on a free port answers d0.test .. d{DOMAINS-1}.test: domain i's MX host is
# mx{i % HOSTS}.sink.test, and every such host is 127.0.0.1, where smtp-sink listens on
# `[delivery] mx_port`. So the mx run has DOMAINS routes (an MX and an MTA-STS TXT lookup
# each) shaped into HOSTS destinations (traffic shaping: one budget per MX host set).
#   relay: COUNT messages to those domains through `[delivery] relay` (one destination)
#   mx:    the same messages by MX lookup
#   rate:  RATE_COUNT messages to one domain with `[delivery] max_message_rate = "RATE/s"`
# Each round runs every variant once, interleaved (the machine is shared and noisy: read the
# ratios). RESULT lines use the best round of each.
#
#   bench/mx.sh                      # COUNT=20000 DOMAINS=1000 HOSTS=10 RATE=200 ROUNDS=2
#   OUTBOX=path/to/outbox FILL=path/to/fill bench/mx.sh
#
# Output:
#   round R relay: deliver D msg/s
#   round R mx: deliver D msg/s (DOMAINS domains, HOSTS destinations)
#   round R rate: A msg/s with max_message_rate RATE/s
#   RESULT mx/relay: X (direct MX to DOMAINS domains as a share of the relay rate)
#   RESULT rate kept: A/RATE = Y (1.00 is exact; above 1 would break the limit)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

COUNT=${COUNT:-20000}
DOMAINS=${DOMAINS:-1000}
HOSTS=${HOSTS:-10}
RATE=${RATE:-200}
RATE_COUNT=${RATE_COUNT:-$((RATE * 5))}
ROUNDS=${ROUNDS:-2}

bench_db_and_tools smtp-sink dnsmasq
build_outbox fill

# dnsmasq with the MX records of every test domain, on a free port of 127.0.0.1.
dns_port=$(free_port)
{
  for i in $(seq 0 $((DOMAINS - 1))); do
    echo "mx-host=d$i.test,mx$((i % HOSTS)).sink.test,10"
  done
  for h in $(seq 0 $((HOSTS - 1))); do
    echo "host-record=mx$h.sink.test,127.0.0.1"
  done
} >"$tmp/dnsmasq.conf"
dnsmasq=$(command -v dnsmasq || echo /usr/sbin/dnsmasq)
bg_start "$dnsmasq" --keep-in-foreground --conf-file="$tmp/dnsmasq.conf" --no-resolv --no-hosts \
  --bind-interfaces --listen-address=127.0.0.1 --port="$dns_port" --local=/test/ \
  --local-ttl=300 --pid-file
wait_port "$dns_port"

# run MODE N: queues N messages (to DOMAINS domains, or one domain for "rate") and runs
# `deliver --until-empty` into a fresh smtp-sink; sets run_deliver (msg/s).
run() {
  local mode=$1 n=$2 db t1 t2 got domains=$DOMAINS
  sink_start
  db="sqlite://$tmp/$mode.$RANDOM.db"
  {
    echo "database = \"$db\""
    echo "[delivery]"
    echo "mx_port = $sink_port"
    case "$mode" in
    relay) echo "relay = \"127.0.0.1:$sink_port\"" ;;
    rate) echo "max_message_rate = \"$RATE/s\"" ;;
    esac
    echo "[dns]"
    echo "nameservers = [\"127.0.0.1:$dns_port\"]"
  } >"$tmp/outbox.toml"
  [ "$mode" = rate ] && domains=1
  "$fill" "$db" "$n" 1024 "$domains" 2>"$tmp/fill.log" || { cat "$tmp/fill.log" >&2; exit 1; }
  t1=$(now)
  if ! "$outbox" --config "$tmp/outbox.toml" deliver --until-empty 2>"$tmp/deliver.log"; then
    echo "mx.sh: outbox deliver ($mode) failed:" >&2
    tail -n 20 "$tmp/deliver.log" >&2
    exit 1
  fi
  t2=$(now)
  got=$(sink_count)
  sink_stop
  rm -f "${db#sqlite://}"*
  if [ "$got" -lt "$n" ]; then
    echo "mx.sh: $mode delivered $got of $n" >&2
    exit 1
  fi
  run_deliver=$(rate "$n" "$t1" "$t2")
}

relay_rates=() mx_rates=() rate_rates=()
for round in $(seq 1 "$ROUNDS"); do
  run relay "$COUNT"
  relay_rates+=("$run_deliver")
  echo "round $round relay: deliver $run_deliver msg/s"
  run mx "$COUNT"
  mx_rates+=("$run_deliver")
  echo "round $round mx: deliver $run_deliver msg/s ($DOMAINS domains, $HOSTS destinations)"
  run rate "$RATE_COUNT"
  rate_rates+=("$run_deliver")
  echo "round $round rate: $run_deliver msg/s with max_message_rate $RATE/s"
done

relay_best=$(best "${relay_rates[@]}")
mx_best=$(best "${mx_rates[@]}")
rate_best=$(best "${rate_rates[@]}")
echo "RESULT mx/relay: $(ratio "$mx_best" "$relay_best") (direct MX to $DOMAINS domains as a share of the relay rate)"
echo "RESULT rate kept: $rate_best/$RATE = $(awk -v a="$rate_best" -v b="$RATE" 'BEGIN { printf "%.2f", a / b }') (1.00 is exact; above 1 would break the limit)"
