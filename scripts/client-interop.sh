#!/usr/bin/env bash
# Real mail programs against `outbox sendmail`: cron's exact invocation, PHP's mail(), git
# send-email, mailutils' mail and s-nail each hand a message to outbox installed as their
# sendmail (a link in a temp dir; /usr/sbin/sendmail is not touched). The queue (a temp
# SQLite file) is then delivered with `outbox deliver --until-empty` through a relay to
# aiosmtpd, which refuses lines over 998 octets as strict servers do, and what arrived is
# checked. One line per check, then "N passed, N failed"; exits non-zero on any failure.
#
# Usage: scripts/client-interop.sh   (OUTBOX_BIN=path/to/outbox to test another build)
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-peers.sh

outbox=${OUTBOX_BIN:-${CARGO_TARGET_DIR:-target}/debug/outbox}
if [ -z "${OUTBOX_BIN:-}" ]; then
  cargo build -p outbox --locked --quiet
fi
outbox=$(realpath "$outbox")

tmp=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

# The environment outbox sees is this script's only: no OUTBOX_* from the caller.
while IFS='=' read -r name _; do
  case $name in OUTBOX_*) unset "$name" ;; esac
done < <(env)

passed=0
failed=0
# check NAME EXPECTED ACTUAL: one line per check (values shortened when it fails).
check() {
  if [ "$2" == "$3" ]; then
    echo "ok   $1"
    passed=$((passed + 1))
  else
    echo "FAIL $1: expected ${2:0:160}, got ${3:0:160}"
    failed=$((failed + 1))
  fi
}
# ran STATUS ERRFILE: the exit status, and stderr when there was any.
ran() {
  if [ -s "$2" ]; then echo "$1: $(tr '\n' ' ' <"$2")"; else echo "$1"; fi
}

# aiosmtpd on a port the kernel picks; each message is saved as NNN.eml beside NNN.json
# (the envelope). Its default line_length_limit answers "500 Line too long" in DATA.
mkdir -p "$tmp/inbox" "$tmp/bin"
cat >"$tmp/sink.py" <<'PY'
import asyncio, json, os, sys
from aiosmtpd.smtp import SMTP

out_dir, port_file = sys.argv[1], sys.argv[2]

class Handler:
    count = 0
    async def handle_DATA(self, server, session, envelope):
        Handler.count += 1
        base = os.path.join(out_dir, "%03d" % Handler.count)
        with open(base + ".eml", "wb") as f:
            f.write(envelope.original_content)
        with open(base + ".json", "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, f)
        return "250 OK"

async def main():
    loop = asyncio.get_running_loop()
    handler = Handler()
    server = await loop.create_server(
        lambda: SMTP(handler, decode_data=False, enable_SMTPUTF8=True), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with open(port_file + ".tmp", "w") as f:
        f.write(str(port))
    os.rename(port_file + ".tmp", port_file)
    await server.serve_forever()

asyncio.run(main())
PY
python3 "$tmp/sink.py" "$tmp/inbox" "$tmp/port" >"$tmp/sink.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  [ -s "$tmp/port" ] && break
  sleep 0.1
done
port=$(cat "$tmp/port")

cat >"$tmp/outbox.toml" <<EOF
database = "sqlite://$tmp/queue.db"
[sendmail]
domain = "interop.example"
[delivery]
relay = "smtp://127.0.0.1:$port?starttls=off"
connect_timeout = "5s"
command_timeout = "10s"
max_attempts = 1
EOF
export OUTBOX_CONFIG="$tmp/outbox.toml"
# Installed as sendmail is: a link of that name, so the binary behaves as `outbox sendmail`.
ln -s "$outbox" "$tmp/bin/sendmail"
sendmail="$tmp/bin/sendmail"
me=$(id -un)

# What arrived, by Subject: q SUBJECT rcpt|from|header:NAME|body|maxline|count.
cat >"$tmp/q.py" <<'PY'
import email, email.policy, glob, json, sys
inbox, subject, field = sys.argv[1:4]
found = []
for path in sorted(glob.glob(inbox + "/*.eml")):
    with open(path, "rb") as f:
        raw = f.read()
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    if subject in str(msg.get("Subject", "")).replace("\n", " "):
        with open(path[:-4] + ".json") as f:
            env = json.load(f)
        found.append((raw, msg, env))
if field == "count":
    print(len(found)); sys.exit(0)
if not found:
    print("<no message with subject %r>" % subject); sys.exit(0)
raw, msg, env = found[0]
if field == "rcpt":
    print(",".join(sorted(r for _, _, e in found for r in e["rcpt_tos"])))
elif field == "from":
    print(env["mail_from"])
elif field.startswith("header:"):
    value = msg.get(field[7:])
    print("<none>" if value is None else " ".join(value.split()))
elif field == "body":
    part = next((p for p in msg.walk() if p.get_content_type() == "text/plain"), msg)
    body = part.get_payload(decode=True).decode("utf-8", "replace")
    sys.stdout.write(body.replace("\r\n", "\n").rstrip("\n") + "\n")
elif field == "maxline":
    print(max(len(line) for line in raw.split(b"\r\n")))
PY
q() { python3 "$tmp/q.py" "$tmp/inbox" "$@"; }

# 1. cron: Debian's exact command line (through the shell, as cron's popen does) and its
# header block for root's job without MAILTO.
status=0
printf '%s\n' \
  'From: root (Cron Daemon)' \
  'To: root' \
  "Subject: Cron <root@$(hostname)> /usr/local/bin/nightly" \
  'MIME-Version: 1.0' \
  'Content-Type: text/plain; charset=UTF-8' \
  'Content-Transfer-Encoding: 8bit' \
  'X-Cron-Env: <SHELL=/bin/sh>' \
  'X-Cron-Env: <HOME=/root>' \
  'X-Cron-Env: <PATH=/usr/bin:/bin>' \
  'X-Cron-Env: <LOGNAME=root>' \
  '' \
  'nightly: 3 files backed up' \
  '.' \
  'line after a lone dot' |
  sh -c "$sendmail -FCronDaemon -i -B8BITMIME -oem  root" 2>"$tmp/cron.err" || status=$?
check "cron: sendmail exits 0" "0" "$(ran $status "$tmp/cron.err")"

# 2. PHP mail() with a 2 000-character line (the server refuses lines over 998 octets).
long=$(printf 'a%.0s' $(seq 2000))
status=0
php -n -d "sendmail_path=$sendmail -t -i" -r '
  $ok = mail("dev@example.net", "php long line", str_repeat("a", 2000) . "\nsecond line\n",
             "From: Web Site <www-data>");
  exit($ok ? 0 : 1);' 2>"$tmp/php.err" || status=$?
check "php: mail() with a 2000-character line returns true" "0" "$(ran $status "$tmp/php.err")"
status=0
php -n -d "sendmail_path=$sendmail -t -i" -r 'exit(mail("root", "php to root", "hello root\n") ? 0 : 1);' \
  2>"$tmp/php2.err" || status=$?
check "php: mail() to root returns true" "0" "$(ran $status "$tmp/php2.err")"

# 3. git send-email with the wrapper as its SMTP server (it runs `sendmail -i [-f] RCPT...`).
# Debian's git, whose exec path holds git-email's send-email (a git built elsewhere, as in
# /usr/local, may not have it).
gitbin=git
[ -x /usr/bin/git ] && [ -x /usr/lib/git-core/git-send-email ] && gitbin=/usr/bin/git
"$gitbin" init -q "$tmp/repo"
(
  cd "$tmp/repo"
  echo "a change" >file.txt
  "$gitbin" add file.txt
  "$gitbin" -c user.name=Dev -c user.email=dev@example.org commit -q -m "interop change"
  "$gitbin" -c user.name=Dev -c user.email=dev@example.org send-email --quiet --confirm=never \
    --suppress-cc=all --smtp-server="$sendmail" --from="Dev <dev@example.org>" \
    --to=list@example.net --to=maintainer -1 >/dev/null 2>"$tmp/git.err"
) && status=0 || status=$?
check "git send-email: exits 0" "0" "$(ran $status "$tmp/git.err")"

# 4. mailutils' mail, its sendmail set on the command line (no config files read).
status=0
echo "mailutils body" | mail --no-config -E "set sendmail=sendmail://$sendmail" \
  -s "mailutils subject" root 2>"$tmp/mailutils.err" || status=$?
check "mailutils mail: exits 0" "0" "$(ran $status "$tmp/mailutils.err")"

# 5. s-nail, its MTA set on the command line (-n: no system resource file).
status=0
echo "s-nail body" | s-nail -n -S "mta=$sendmail" -S sendwait -s "s-nail subject" root \
  2>"$tmp/snail.err" || status=$?
check "s-nail: exits 0" "0" "$(ran $status "$tmp/snail.err")"

# Deliver everything queued, through the relay, to aiosmtpd.
status=0
timeout 120 "$outbox" deliver --until-empty >"$tmp/deliver.out" 2>&1 || status=$?
check "outbox deliver --until-empty exits 0" "0" "$status"

check "cron: recipient root qualified" "root@interop.example" "$(q 'Cron <root@' rcpt)"
check "cron: envelope sender from the From header" "root@interop.example" "$(q 'Cron <root@' from)"
check "cron: From qualified, comment kept" "root@interop.example (Cron Daemon)" "$(q 'Cron <root@' header:From)"
check "cron: To qualified" "root@interop.example" "$(q 'Cron <root@' header:To)"
check "cron: X-Cron-Env kept" "<SHELL=/bin/sh>" "$(q 'Cron <root@' header:X-Cron-Env)"
check "cron: body intact, lone dot kept (-i)" \
  "$(printf 'nightly: 3 files backed up\n.\nline after a lone dot')" "$(q 'Cron <root@' body)"

check "php long line: delivered" "dev@example.net" "$(q 'php long line' rcpt)"
check "php long line: no line over 998 octets on the wire" "yes" \
  "$(m=$(q 'php long line' maxline); [ "${m:-99999}" -le 998 ] 2>/dev/null && echo yes || echo "no ($m)")"
check "php long line: body intact after decoding" "$(printf '%s\nsecond line' "$long")" "$(q 'php long line' body)"
check "php long line: From qualified" "Web Site <www-data@interop.example>" "$(q 'php long line' header:From)"
check "php to root: recipient qualified" "root@interop.example" "$(q 'php to root' rcpt)"
check "php to root: From added for the invoking user" "$me@interop.example" "$(q 'php to root' header:From)"

check "git send-email: recipients, maintainer qualified" "list@example.net,maintainer@interop.example" \
  "$(q '[PATCH] interop change' rcpt)"
check "git send-email: envelope sender" "dev@example.org" "$(q '[PATCH] interop change' from)"
check "git send-email: From kept" "Dev <dev@example.org>" "$(q '[PATCH] interop change' header:From)"

check "mailutils: recipient qualified" "root@interop.example" "$(q 'mailutils subject' rcpt)"
check "mailutils: body intact" "mailutils body" "$(q 'mailutils subject' body)"
check "s-nail: recipient qualified" "root@interop.example" "$(q 's-nail subject' rcpt)"
check "s-nail: body intact" "s-nail body" "$(q 's-nail subject' body)"

check "nothing left in the queue" "0" \
  "$("$outbox" --json queue list | python3 -c 'import json,sys; print(sum(1 for m in json.load(sys.stdin) if m.get("status") == "queued"))')"

echo "$passed passed, $failed failed"
if [ "$failed" -gt 0 ]; then
  echo "--- deliver output"; cat "$tmp/deliver.out"
  echo "--- outbox queue list"; "$outbox" queue list || true
  for id in $("$outbox" --json queue list |
    python3 -c 'import json,sys; print(" ".join(m["id"] for m in json.load(sys.stdin) if m["status"] == "error"))'); do
    echo "--- outbox queue show $id"; "$outbox" queue show "$id" || true
  done
  exit 1
fi
