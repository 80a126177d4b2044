#!/usr/bin/env bash
# HTTP enqueue benchmark: `outbox serve` on SQLite (a temp dir; or PostgreSQL), C concurrent clients
# (ApacheBench, keep-alive) POSTing N messages of about 1 KB to /api/v1/messages, against
# the same server's GET /healthz rate (the cost of an HTTP request that reads the store).
# The server delivers into smtp-sink meanwhile, as it would in production.
# Printed: both rates, their ratio, and the server's count of messages queued through the
# API (outbox_messages_enqueued_total, a check that every POST stored one). Run it twice
# on a shared machine.
#
#   bench/http.sh                       # C=32 N=20000, 1 round
#   C=32 N=20000 ROUNDS=2 bench/http.sh
#   OUTBOX=path/to/outbox bench/http.sh
#   OUTBOX_BENCH_DB=postgres bench/http.sh   # the queue in a fresh database on OUTBOX_BENCH_PG
#                                       # (created and dropped through psql)
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
N=${N:-20000}
C=${C:-32}
ROUNDS=${ROUNDS:-1}
OUTBOX_BENCH_DB=${OUTBOX_BENCH_DB:-${BACKEND:-sqlite}}
bench_db_and_tools ab smtp-sink curl
build_outbox

token=bench-token-0123456789abcdef
# One message of about 1 KB of text.
python3 - "$tmp/body.json" <<'PY'
import json, sys
text = ("x" * 75 + "\n") * 12
json.dump({"from": "bench@example.com", "to": ["user@example.net"], "subject": "bench",
           "text": text}, open(sys.argv[1], "w"))
PY

# Requests per second that ab reports ("Requests per second:    1234.56 [#/sec] (mean)"),
# after checking that every request succeeded (non-2xx responses are counted by ab).
ab_rate() {
  local out=$1
  if grep -q "Non-2xx responses" "$out" || ! grep -q "Failed requests: *0" "$out"; then
    echo "http.sh: some requests failed:" >&2; cat "$out" >&2; exit 1
  fi
  awk '/Requests per second/ {print $4}' "$out"
}

run() {
  local round=$1 dir=$tmp/round-$1 http_port database
  mkdir -p "$dir"
  sink_start
  http_port=$(free_port)
  database="sqlite://$dir/outbox.db"
  if [ "$OUTBOX_BENCH_DB" = postgres ]; then
    pg_create_db
    database=$pg_url
  fi
  cat >"$dir/outbox.toml" <<TOML
database = "$database"
[delivery]
relay = "smtp://127.0.0.1:$sink_port?starttls=off"
helo_name = "outbox-bench.localdomain"
[http]
listen = "127.0.0.1:$http_port"
tokens = ["$token"]
TOML
  serve_start "$dir/outbox.toml" "$dir/serve.log" "$http_port"
  local url=http://127.0.0.1:$http_port
  ab -q -k -c "$C" -n "$N" "$url/healthz" >"$dir/healthz.out" 2>&1
  health=$(ab_rate "$dir/healthz.out")
  ab -q -k -c "$C" -n "$N" -p "$tmp/body.json" -T application/json \
    -H "Authorization: Bearer $token" "$url/api/v1/messages" >"$dir/post.out" 2>&1
  post=$(ab_rate "$dir/post.out")
  queued=$(curl -sS -H "Authorization: Bearer $token" "$url/metrics" |
    awk '/^outbox_messages_enqueued_total/ {print $2}')
  echo "round $round: POST $(calc "$post") msg/s, /healthz $(calc "$health") req/s, ratio $(ratio "$post" "$health") (api enqueued: ${queued:-?})"
  posts+=("$post")
  healths+=("$health")
  bg_stop "$serve_pid"
  sink_stop
}

posts=()
healths=()
echo "http: $N POSTs of ~1 KB, $C concurrent clients (ab -k), serve on $OUTBOX_BENCH_DB, delivering into smtp-sink"
for round in $(seq 1 "$ROUNDS"); do run "$round"; done
post=$(median "${posts[@]}")
health=$(median "${healths[@]}")
echo "RESULT http $OUTBOX_BENCH_DB: POST $(calc "$post") msg/s, /healthz $(calc "$health") req/s, ratio $(ratio "$post" "$health") (median of $ROUNDS)"
