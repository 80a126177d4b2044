#!/usr/bin/env bash
# Priority under load: enqueue-to-accept latency of high-priority messages while a backlog
# of low-priority messages drains through the same relay.
#
# `outbox serve` (HTTP API, engine, relay = a sink that logs "TIME SUBJECT" as soon as a
# message's data has arrived, bench/lib.sh timesink) on a fresh queue:
# 1. Idle: IDLE high-priority messages posted one at a time (POST /api/v1/messages), each
#    after the previous one arrived.
# 2. Load: LOW low-priority 1 KB messages posted in batches of 1 000
#    (POST /api/v1/messages/batch, from a second thread and connection; the JSON is made
#    beforehand); the engine starts draining them at once. Once START_AFTER of them are
#    committed, HIGH high-priority messages are posted one at a time, SPACING seconds apart,
#    while the rest of the batches go in and the backlog drains (on PostgreSQL batched HTTP
#    enqueue is about as fast as the drain, so waiting for the last batch would leave
#    little backlog).
# Latency of one message = its arrival at the sink - the moment its POST started (so it
# includes the HTTP enqueue and its commit). Under load, only the high-priority messages
# that arrived while low-priority ones were still arriving after them count; the script
# says how many that is.
#
#   bench/priority.sh         # LOW=20000 START_AFTER=5000 HIGH=50 SPACING=0.05 IDLE=20, SQLite
#   OUTBOX_BENCH_DB=postgres bench/priority.sh
#   OUTBOX=path/to/outbox bench/priority.sh
#
# Output:
#   round R priority idle: N messages, enqueue-to-accept p50 X ms, p99 Y ms
#   round R priority load: LOW low queued over HTTP at E msg/s, drained at D msg/s (both
#     from the first batch), the first high one posted T s after it; K of HIGH
#     high under load: enqueue-to-accept p50 X ms (target 50), p99 Y ms (target 200), max Z ms
#   RESULT priority BACKEND: under load p50 X ms, p99 Y ms; idle p50 X ms (worst of R rounds)
set -euo pipefail

LOW=${LOW:-20000}
START_AFTER=${START_AFTER:-5000}
HIGH=${HIGH:-50}
SPACING=${SPACING:-0.05}
IDLE=${IDLE:-20}
ROUNDS=${ROUNDS:-1}
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
tools=(python3)
bench_db_and_tools "${tools[@]}"
# shellcheck disable=SC2119 # no fill needed
build_outbox

cat >"$tmp/driver.py" <<'PY'
"""Posts the messages and prints the measurements (see bench/priority.sh)."""
import http.client, json, sys, threading, time

port, token, arrivals = int(sys.argv[1]), sys.argv[2], sys.argv[3]
low, high, spacing, idle = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7])
start_after = min(int(sys.argv[8]), low)
headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
body = ("x" * 75 + "\n") * 12  # about 1 KB with the headers
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)


def post(path, payload, conn=conn):
    conn.request("POST", path, payload if isinstance(payload, bytes) else json.dumps(payload),
                 headers)
    response = conn.getresponse()
    text = response.read()
    if response.status not in (200, 202):
        sys.exit(f"priority.sh: POST {path} answered {response.status}: {text[:300]!r}")


def spec(subject, priority):
    return {"from": "bench@example.com", "to": ["sink@example.net"], "subject": subject,
            "text": body, "priority": priority}


def arrived():
    """subject -> first arrival time, and the arrival times of low-priority messages."""
    first, lows = {}, []
    with open(arrivals) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 2:
                continue  # a line being written
            t, subject = float(parts[0]), parts[1]
            first.setdefault(subject, t)
            if subject.startswith("low-"):
                lows.append(t)
    return first, lows


def wait_for(subjects, seconds):
    deadline = time.time() + seconds
    while True:
        first, lows = arrived()
        if all(s in first for s in subjects):
            return first, lows
        if time.time() > deadline:
            missing = [s for s in subjects if s not in first]
            sys.exit(f"priority.sh: {len(missing)} messages never reached the sink, e.g. {missing[:3]}")
        time.sleep(0.01)


def percentile(values, p):
    """Nearest rank."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


# 1. Idle.
sent = {}
for i in range(idle):
    subject = f"idle-{i}"
    sent[subject] = time.time()
    post("/api/v1/messages", spec(subject, "high"))
    wait_for([subject], 30)
first, _ = arrived()
idle_ms = [1000 * (first[s] - t) for s, t in sent.items()]

# 2. Load.
batches = [json.dumps([spec(f"low-{i}", "low") for i in range(start, min(low, start + 1000))])
           .encode() for start in range(0, low, 1000)]
queued = 0
queued_at = None
enough = threading.Event()


def enqueue_low():
    global queued, queued_at
    own = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for batch in batches:
            post("/api/v1/messages/batch", batch, own)
            queued += min(1000, low - queued)
            if queued >= start_after:
                enough.set()
        queued_at = time.time()
    finally:
        enough.set()  # also when a batch failed: the main thread then reports it


t0 = time.time()
filler = threading.Thread(target=enqueue_low, daemon=True)
filler.start()
enough.wait()
if queued < start_after:
    sys.exit("priority.sh: the low-priority batches failed")
t_probes = time.time()
probes = {}
for i in range(high):
    subject = f"high-{i}"
    probes[subject] = time.time()
    post("/api/v1/messages", spec(subject, "high"))
    pause = probes[subject] + spacing - time.time()
    if pause > 0:
        time.sleep(pause)
filler.join()
if queued_at is None:
    sys.exit("priority.sh: the low-priority batches failed")
t_queued = queued_at
first, lows = wait_for(list(probes) + [f"low-{i}" for i in range(low)], 600)
last_low = max(lows)
under_load = [1000 * (first[s] - t) for s, t in probes.items() if first[s] < last_low]
drain = low / (last_low - t0)
print(f"idle: {len(idle_ms)} messages, enqueue-to-accept p50 {percentile(idle_ms, 50):.1f} ms, "
      f"p99 {percentile(idle_ms, 99):.1f} ms")
line = (f"load: {low} low queued over HTTP at {low / (t_queued - t0):.0f} msg/s, drained at "
        f"{drain:.0f} msg/s (both from the first batch), the first high one posted "
        f"{t_probes - t0:.1f} s after it; {len(under_load)} of {high} high under load")
if under_load:
    line += (f": enqueue-to-accept p50 {percentile(under_load, 50):.1f} ms (target 50), "
             f"p99 {percentile(under_load, 99):.1f} ms (target 200), max {max(under_load):.1f} ms")
print(line)
if not under_load:
    sys.exit("priority.sh: the low-priority drain ended before the first high-priority message "
             "arrived; raise LOW or lower SPACING")
print(f"values {percentile(under_load, 50):.1f} {percentile(under_load, 99):.1f} "
      f"{percentile(idle_ms, 50):.1f}")
PY

token=bench-$RANDOM$RANDOM$RANDOM$RANDOM$RANDOM
worst_p50=0 worst_p99=0 worst_idle=0
for round in $(seq 1 "$ROUNDS"); do
  log=$tmp/arrivals.$round
  : >"$log"
  timesink_start "$log"
  if [ "$OUTBOX_BENCH_DB" = postgres ]; then
    pg_create_db
    db=$pg_url
  else
    db="sqlite://$tmp/priority-$round.db"
  fi
  http_port=$(free_port)
  cat >"$tmp/outbox.toml" <<EOF
database = "$db"
[delivery]
relay = "127.0.0.1:$timesink_port"
[http]
listen = "127.0.0.1:$http_port"
tokens = ["$token"]
EOF
  bg_start "$outbox" --config "$tmp/outbox.toml" serve 2>"$tmp/serve.$round.log"
  serve_pid=$bg_pid
  wait_port "$http_port"
  if ! python3 "$tmp/driver.py" "$http_port" "$token" "$log" "$LOW" "$HIGH" "$SPACING" "$IDLE" "$START_AFTER" >"$tmp/result"; then
    tail -n 20 "$tmp/serve.$round.log" >&2
    exit 1
  fi
  grep -v '^values ' "$tmp/result" | sed "s/^/round $round priority /"
  read -r p50 p99 idle50 < <(sed -n 's/^values //p' "$tmp/result")
  bg_stop "$serve_pid"
  bg_stop "$timesink_pid"
  [ "$OUTBOX_BENCH_DB" = sqlite ] || pg_drop_db "$db"
  max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }
  worst_p50=$(max "$worst_p50" "$p50")
  worst_p99=$(max "$worst_p99" "$p99")
  worst_idle=$(max "$worst_idle" "$idle50")
done
echo "RESULT priority $OUTBOX_BENCH_DB: under load p50 $worst_p50 ms (target 50), p99 $worst_p99 ms (target 200); idle p50 $worst_idle ms (worst of $ROUNDS rounds)"
