#!/usr/bin/env bash
# End-to-end test of the admin page in headless Chromium: builds `outbox`, starts the real
# `outbox serve` on a free loopback port with a fresh SQLite queue in a temp dir, queues two
# messages with `outbox send`, then tests/browser/admin.e2e.mjs (playwright-core driving
# /usr/bin/chromium) logs in, retries one message, removes the other, checks the page and
# saves test-artifacts/admin.png. The relay is a closed loopback port, so delivery is
# deferred and both messages stay visible. Fails loudly if anything cannot start.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

chromium=${CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || { echo "browser-test: $chromium missing (scripts/install-peers.sh installs it)" >&2; exit 1; }
command -v node >/dev/null || { echo "browser-test: node missing" >&2; exit 1; }
[ -d tests/browser/node_modules/playwright-core ] ||
  (cd tests/browser && npm install --no-audit --no-fund --loglevel=error >/dev/null)

cargo build -q -p outbox --bin outbox
target_dir=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
outbox="$target_dir/debug/outbox"
[ -x "$outbox" ] || { echo "browser-test: $outbox was not built" >&2; exit 1; }

work=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

# A port nobody listens on (connections are refused at once) and one for the server.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
closed_port=$(free_port)
http_port=$(free_port)
token="browser-test-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"

cat >"$work/outbox.toml" <<EOF
database = "sqlite://$work/outbox.db"
[delivery]
relay = "smtp://127.0.0.1:$closed_port"
max_attempts = 100
retry_backoff = ["1h"]
connect_timeout = "2s"
[http]
listen = "127.0.0.1:$http_port"
tokens = ["$token"]
EOF
export OUTBOX_CONFIG="$work/outbox.toml"

retry_id=$("$outbox" send --from ops@example.com --to ann@example.org \
  --subject 'Invoice <b>#42</b> & friends' --body 'Plain part' \
  --html '<h1 style="color:#2563eb">Invoice 42</h1><p>Hello <b>Ann</b>, your invoice is ready.</p>')
remove_id=$("$outbox" send --from ops@example.com --to bob@example.net --priority high \
  --subject 'Weekly newsletter' --body 'Unsubscribe any time')

"$outbox" serve >"$work/serve.log" 2>&1 &
server_pid=$!

status=0
OUTBOX_URL="http://127.0.0.1:$http_port" OUTBOX_TOKEN="$token" CHROMIUM="$chromium" \
  RETRY_ID="$retry_id" REMOVE_ID="$remove_id" SCREENSHOT_DIR="$root/test-artifacts" \
  SERVER_PID="$server_pid" node tests/browser/admin.e2e.mjs || status=$?
if [ "$status" -ne 0 ]; then
  echo "browser-test: failed; outbox serve log:" >&2
  tail -n 40 "$work/serve.log" >&2
fi
exit "$status"
