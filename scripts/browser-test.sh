#!/usr/bin/env bash
# End-to-end test of the admin page in headless Chromium: builds `outbox`, starts the real
# `outbox serve` on a free loopback port with a fresh SQLite queue in a temp dir, queues two
# messages with `outbox send`, then tests/browser/admin.e2e.mjs (playwright-core driving
# /usr/bin/chromium) logs in, retries one message, removes the other, checks the page and
# saves test-artifacts/admin.png. The relay is a closed loopback port, so delivery is
# deferred and both messages stay visible. Then the one-click unsubscribe flow: a message
# sent with --unsubscribe (send --now into an aiosmtpd sink) carries a List-Unsubscribe
# link; Chromium opens it, presses confirm, and the admin page lists the address as
# suppressed. Fails loudly if anything cannot start.
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
sink_pid=""
cleanup() {
  local pid
  for pid in "$server_pid" "$sink_pid"; do
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

# A port nobody listens on (connections are refused at once) and one for the server.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
closed_port=$(free_port)
http_port=$(free_port)
sink_port=$(free_port)
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
[unsubscribe]
base_url = "http://127.0.0.1:$http_port"
secret = "$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
EOF
export OUTBOX_CONFIG="$work/outbox.toml"

retry_id=$("$outbox" send --from ops@example.com --to ann@example.org \
  --subject 'Invoice <b>#42</b> & friends' --body 'Plain part' \
  --html '<h1 style="color:#2563eb">Invoice 42</h1><p>Hello <b>Ann</b>, your invoice is ready.</p>')
remove_id=$("$outbox" send --from ops@example.com --to bob@example.net --priority high \
  --subject 'Weekly newsletter' --body 'Unsubscribe any time')

# The newsletter, delivered at once into an aiosmtpd sink that prints what it receives.
python3 -u -m aiosmtpd -n -l "127.0.0.1:$sink_port" >"$work/sink.log" 2>&1 &
sink_pid=$!
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$sink_port") 2>/dev/null && break
  sleep 0.1
done
"$outbox" send --now --relay "smtp://127.0.0.1:$sink_port" --unsubscribe --list weekly \
  --from news@example.com --to carol@example.org --subject 'Weekly' --body 'News' >/dev/null
unsubscribe_url=$(grep -o "List-Unsubscribe: <http://127.0.0.1:$http_port/u/[A-Za-z0-9_.-]*>" "$work/sink.log" |
  head -n 1 | sed 's/^List-Unsubscribe: <//; s/>$//')
[ -n "$unsubscribe_url" ] || { echo "browser-test: no List-Unsubscribe link in the delivered message" >&2; cat "$work/sink.log" >&2; exit 1; }

"$outbox" serve >"$work/serve.log" 2>&1 &
server_pid=$!

status=0
OUTBOX_URL="http://127.0.0.1:$http_port" OUTBOX_TOKEN="$token" CHROMIUM="$chromium" \
  RETRY_ID="$retry_id" REMOVE_ID="$remove_id" SCREENSHOT_DIR="$root/test-artifacts" \
  UNSUBSCRIBE_URL="$unsubscribe_url" \
  SERVER_PID="$server_pid" node tests/browser/admin.e2e.mjs || status=$?
if [ "$status" -ne 0 ]; then
  echo "browser-test: failed; outbox serve log:" >&2
  tail -n 40 "$work/serve.log" >&2
fi
exit "$status"
