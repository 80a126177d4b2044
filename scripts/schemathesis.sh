#!/usr/bin/env bash
# Property-based tests of the HTTP API against its own OpenAPI document: starts a real
# `outbox serve` (SQLite in a temp dir, a free port, a token, delivery to
# `program:/bin/true` so nothing leaves the machine) and runs schemathesis against
# /api/v1/openapi.json with a bounded number of examples, checking that no request gets
# a 5xx and that every answer conforms to the document (status codes, content types,
# bodies). The server is killed by pid at exit.
#
# Usage: scripts/schemathesis.sh [path/to/outbox]   (default: builds it with cargo)
# Environment: SCHEMATHESIS_EXAMPLES (per operation, default 60).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v schemathesis >/dev/null 2>&1; then
  echo "schemathesis.sh: schemathesis is not installed (scripts/install-peers.sh installs it)" >&2
  exit 1
fi

outbox="${1:-}"
if [ -z "$outbox" ]; then
  cargo build --quiet --locked -p outbox --bin outbox
  outbox="${CARGO_TARGET_DIR:-target}/debug/outbox"
fi

work="$(mktemp -d)"
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

token="schemathesis-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat > "$work/outbox.toml" <<TOML
database = "sqlite://$work/outbox.db"
[delivery]
relay = "program:/bin/true"
connect_timeout = "2s"
command_timeout = "5s"
[dns]
nameservers = ["127.0.0.1:9"]
[http]
listen = "127.0.0.1:$port"
tokens = ["$token"]
# schemathesis also sends requests without the token on purpose; the per-address
# throttle would then answer its later, valid requests 429.
max_auth_failures = 1000000
TOML

"$outbox" --config "$work/outbox.toml" serve 2>"$work/serve.log" &
pid=$!

base="http://127.0.0.1:$port"
for _ in $(seq 1 100); do
  if curl -fsS "$base/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "schemathesis.sh: outbox serve exited:" >&2
    cat "$work/serve.log" >&2
    exit 1
  fi
  sleep 0.1
done

status=0
# One worker: with two, hypothesis describes strategies (ast.parse) in two threads at once,
# and CPython 3.11.7's ast.parse is not thread-safe there ("SystemError: AST constructor
# recursion depth mismatch", CPython gh-106905, fixed in 3.11.8): a schemathesis error that
# failed CI on 2026-11-30 with every generated case passing.
schemathesis run "$base/api/v1/openapi.json" \
  --url "$base" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-60}" \
  --max-time 90 \
  --workers 1 \
  --seed 1 \
  --suppress-health-check all \
  --report-dir "$work/report" || status=$?

if [ "$status" -ne 0 ]; then
  echo "schemathesis.sh: failures; the server log follows" >&2
  tail -n 50 "$work/serve.log" >&2
fi
exit "$status"
