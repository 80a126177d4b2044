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
#   OUTBOX_BENCH_DB=postgres bench/http.sh   # the queue in a fresh database on PG_URL's server
#                                       # (created and dropped through psql)
set -euo pipefail

N=${N:-20000}
C=${C:-32}
ROUNDS=${ROUNDS:-1}
OUTBOX_BENCH_DB=${OUTBOX_BENCH_DB:-${BACKEND:-sqlite}}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
root=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${OUTBOX:-}" ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target-bench}
  cargo build --quiet --release -p outbox --manifest-path "$root/Cargo.toml"
  OUTBOX=$CARGO_TARGET_DIR/release/outbox
fi
export PATH=$PATH:/usr/sbin
for tool in ab smtp-sink python3; do
  command -v "$tool" >/dev/null || {
    echo "http.sh: $tool is missing (scripts/install-peers.sh installs it)" >&2; exit 1; }
done

tmp=$(mktemp -d)
pids=()
pg_dbs=()
cleanup() {
  for db in "${pg_dbs[@]}"; do
    psql -q -d "$PG_URL" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

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
  local round=$1 dir=$tmp/round-$1 http_port sink_port serve_pid sink_pid
  mkdir -p "$dir"
  sink_port=$(free_port)
  smtp-sink -u nobody "127.0.0.1:$sink_port" 1024 >"$dir/sink.out" 2>&1 &
  sink_pid=$!
  pids+=("$sink_pid")
  http_port=$(free_port)
  local database="sqlite://$dir/outbox.db"
  if [ "$OUTBOX_BENCH_DB" = postgres ]; then
    local db=outbox_http_bench_$$_$round
    psql -q -d "$PG_URL" -c "CREATE DATABASE $db" >/dev/null
    pg_dbs+=("$db")
    database="${PG_URL%/*}/$db"
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
  (cd "$dir" && exec env -u RUST_LOG NO_COLOR=1 "$OUTBOX" --config "$dir/outbox.toml" serve) \
    >"$dir/serve.log" 2>&1 &
  serve_pid=$!
  pids+=("$serve_pid")
  for _ in $(seq 1 200); do
    grep -q "HTTP API and admin page listening" "$dir/serve.log" 2>/dev/null && break
    kill -0 "$serve_pid" 2>/dev/null || { cat "$dir/serve.log" >&2; exit 1; }
    sleep 0.05
  done
  local url=http://127.0.0.1:$http_port
  ab -q -k -c "$C" -n "$N" "$url/healthz" >"$dir/healthz.out" 2>&1
  health=$(ab_rate "$dir/healthz.out")
  ab -q -k -c "$C" -n "$N" -p "$tmp/body.json" -T application/json \
    -H "Authorization: Bearer $token" "$url/api/v1/messages" >"$dir/post.out" 2>&1
  post=$(ab_rate "$dir/post.out")
  queued=$(curl -sS -H "Authorization: Bearer $token" "$url/metrics" |
    awk '/^outbox_messages_enqueued_total/ {print $2}')
  echo "round $round: POST $post msg/s, /healthz $health req/s, ratio $(python3 -c "print(f'{$post / $health:.2f}')") (api enqueued: ${queued:-?})"
  echo "$post $health" >>"$tmp/rates"
  kill "$serve_pid" "$sink_pid"; wait "$serve_pid" "$sink_pid" 2>/dev/null || true
}

echo "http: $N POSTs of ~1 KB, $C concurrent clients (ab -k), serve on $OUTBOX_BENCH_DB, delivering into smtp-sink"
for round in $(seq 1 "$ROUNDS"); do run "$round"; done
python3 - "$tmp/rates" <<'PY'
import statistics, sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1])]
post = statistics.median(r[0] for r in rows)
health = statistics.median(r[1] for r in rows)
print(f"median: POST {post:.0f} msg/s, /healthz {health:.0f} req/s, ratio {post / health:.2f}")
PY
