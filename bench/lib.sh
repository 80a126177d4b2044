# shellcheck shell=bash disable=SC2034 # its variables are for the scripts that source it
# Shared helpers for every bench script (bench/*.sh but postfix-relay.sh, which they call).
# Source it after `set -euo pipefail`; it sets:
#   root     the workspace
#   tmp      a private temp directory (mode 755: Postfix's daemons must reach a queue in it)
# and a cleanup trap that, on any exit, kills every process started with `bg_start` (by pid,
# never by name), stops every throwaway Postfix, drops every PostgreSQL database made by
# `pg_create_db`, and removes $tmp.
#
# Environment understood by every script that sources it:
#   OUTBOX=path          use this outbox binary instead of building bench's release one
#   FILL=path            use this `fill` example binary (queues N x SIZE in batches)
#   OUTBOX_BENCH_PG=URL  PostgreSQL server for fresh databases
#                        [postgres://postgres@127.0.0.1:5432]
#   PG_URL=URL           the older spelling: a database URL whose server is used

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH=$PATH:/usr/sbin
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target-bench}
if [ -z "${OUTBOX_BENCH_PG:-}" ] && [ -n "${PG_URL:-}" ]; then OUTBOX_BENCH_PG=${PG_URL%/*}; fi
OUTBOX_BENCH_PG=${OUTBOX_BENCH_PG:-postgres://postgres@127.0.0.1:5432}

tmp=$(mktemp -d)
chmod 755 "$tmp"
_bench_pids=()
_bench_postfix=()
_bench_dbs=()

bench_cleanup() {
  local pid dir db
  # A wrapper's child first (/usr/bin/time, perf): by its parent's pid, never by name.
  for pid in "${_bench_pids[@]}"; do pkill -TERM -P "$pid" 2>/dev/null || true; done
  for pid in "${_bench_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${_bench_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for dir in "${_bench_postfix[@]}"; do "$root/bench/postfix-relay.sh" stop "$dir" || true; done
  for db in "${_bench_dbs[@]}"; do
    psql -q "$OUTBOX_BENCH_PG/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
      >/dev/null 2>&1 || echo "could not drop the bench database $db" >&2
  done
  rm -rf "$tmp"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# Installs the peers (scripts/install-peers.sh) only when one of the named tools is missing.
# Checks OUTBOX_BENCH_DB (sqlite, the default, or postgres) and the tools the script needs
# ("$@", plus psql on PostgreSQL), installing missing ones with scripts/install-peers.sh.
bench_db_and_tools() {
  OUTBOX_BENCH_DB=${OUTBOX_BENCH_DB:-sqlite}
  case "$OUTBOX_BENCH_DB" in
  sqlite) need_tools "$@" ;;
  postgres) need_tools "$@" psql ;;
  *) echo "$(basename "$0"): OUTBOX_BENCH_DB is sqlite or postgres, not $OUTBOX_BENCH_DB" >&2; exit 64 ;;
  esac
}

need_tools() {
  local tool missing=0
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || missing=1
  done
  if [ "$missing" = 1 ]; then "$root/scripts/install-peers.sh"; fi
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || { echo "$(basename "$0"): $tool is missing" >&2; exit 1; }
  done
}

# Sets $outbox (and $fill when asked: `build_outbox fill`), building the release binaries
# unless OUTBOX / FILL name them.
build_outbox() {
  if [ -n "${OUTBOX:-}" ]; then
    outbox=$OUTBOX
  else
    cargo build --release -q -p outbox --manifest-path "$root/Cargo.toml"
    outbox=$CARGO_TARGET_DIR/release/outbox
  fi
  if [ "${1:-}" = fill ]; then
    if [ -n "${FILL:-}" ]; then
      fill=$FILL
    else
      cargo build --release -q -p outbox-queue --example fill --manifest-path "$root/Cargo.toml"
      fill=$CARGO_TARGET_DIR/release/examples/fill
    fi
  fi
}

# Starts "$@" in the background, remembers its pid for the cleanup, sets $bg_pid.
bg_start() {
  "$@" &
  bg_pid=$!
  _bench_pids+=("$bg_pid")
}

# Stops one process started by bg_start (SIGTERM, or the signal given as $2) and reaps it.
bg_stop() {
  kill "-${2:-TERM}" "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
now() { date +%s.%N; }
# rate N T0 T1 -> N / (T1 - T0), no decimals
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.0f", n / (b - a) }'; }
# ratio A B -> A / B with one decimal (two when below 1)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { r = a / b; printf (r < 1 ? "%.2f" : "%.1f"), r }'; }
percent() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", 100 * a / b }'; }
best() { printf '%s\n' "$@" | sort -n | tail -n 1; }
# median X... -> the median (the mean of the middle two for an even count)
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
# calc EXPR [FORMAT] -> EXPR evaluated by awk, printed with FORMAT (default %.0f)
calc() { awk "BEGIN { printf \"${2:-%.0f}\", $1 }"; }

wait_port() {
  local port=$1
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "$(basename "$0"): nothing listens on 127.0.0.1:$port" >&2
  exit 1
}

# --- Postfix's smtp-sink -----------------------------------------------------------------
# Sets sink_port, sink_pid, sink_log. smtp-sink -c writes "sess=N quit=N mesg=N\r" after
# every message.
sink_start() {
  sink_port=$(free_port)
  sink_log=$tmp/sink.$sink_port
  bg_start smtp-sink -c -u nobody "127.0.0.1:$sink_port" 1024 >"$sink_log" 2>&1
  sink_pid=$bg_pid
  wait_port "$sink_port"
}
sink_count() {
  local n
  n=$(tail -c 200 "$sink_log" | tr '\r' '\n' | sed -n 's/.*mesg=\([0-9]*\).*/\1/p' | tail -n 1)
  echo "${n:-0}"
}
sink_wait() {
  local want=$1 deadline=$(( $(date +%s) + ${2:-600} ))
  until [ "$(sink_count)" -ge "$want" ]; do
    if [ "$(date +%s)" -gt "$deadline" ]; then
      echo "$(basename "$0"): timed out: the sink has $(sink_count) of $want" >&2
      exit 1
    fi
    sleep 0.02
  done
}
sink_stop() { bg_stop "$sink_pid"; }

# serve_start CONFIG LOG PORT: `outbox serve` with CONFIG (run in CONFIG's directory, no
# RUST_LOG, no colours), stderr and stdout to LOG; returns once PORT listens. Sets serve_pid.
serve_start() {
  local config=$1 log=$2 port=$3
  bg_start bash -c 'cd "$(dirname "$1")" && exec env -u RUST_LOG NO_COLOR=1 "$2" --config "$1" serve' \
    serve "$config" "$outbox" >"$log" 2>&1
  serve_pid=$bg_pid
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "$serve_pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.05
  done
  echo "$(basename "$0"): outbox serve does not listen on 127.0.0.1:$port" >&2
  tail -n 20 "$log" >&2
  exit 1
}

# --- A throwaway Postfix relay ------------------------------------------------------------
# postfix_start DIR SMTPD_PORT RELAY_PORT; stopped by postfix_stop DIR or the cleanup.
postfix_start() {
  _bench_postfix+=("$1")
  "$root/bench/postfix-relay.sh" start "$@"
}
postfix_stop() { "$root/bench/postfix-relay.sh" stop "$1" || true; }

# --- PostgreSQL ---------------------------------------------------------------------------
# Creates a fresh database and sets pg_url to it; the cleanup drops it. (Not in $(...):
# a subshell could not register the database for the cleanup.)
pg_create_db() {
  local name
  name=outbox_bench_$$_$RANDOM$RANDOM
  psql -q "$OUTBOX_BENCH_PG/postgres" -c "CREATE DATABASE $name" >/dev/null
  _bench_dbs+=("$name")
  pg_url=$OUTBOX_BENCH_PG/$name
}
pg_drop_db() {
  psql -q "$OUTBOX_BENCH_PG/postgres" -c "DROP DATABASE IF EXISTS ${1##*/} WITH (FORCE)" >/dev/null
}

# --- A Python sink that logs each message's arrival ----------------------------------------
# timesink_start LOG [SLOW_FILE]: a minimal SMTP sink (asyncio, PIPELINING; about 5 000
# msg/s of 1 KB here, 3x aiosmtpd, so a drain through it is not bound by the sink) on a
# free port. It appends "EPOCH_SECONDS SUBJECT" to LOG as soon as a message's data has
# arrived, before it answers. While SLOW_FILE exists it holds every answer to end-of-data
# until the file is gone, so transactions stay in flight. Sets timesink_port, timesink_pid.
timesink_start() {
  local log=$1 slow=${2:-$tmp/never-slow}
  timesink_port=$(free_port)
  cat >"$tmp/timesink.py" <<'PY'
import asyncio, os, sys, time

port, log_path, slow = int(sys.argv[1]), sys.argv[2], sys.argv[3]
log = open(log_path, "a", buffering=1)
EHLO = (b"250-timesink.localdomain\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
        b"250-SIZE 0\r\n250 ENHANCEDSTATUSCODES\r\n")


def subject_of(data):
    if data.startswith(b"Subject:"):
        i = 0
    else:
        i = data.find(b"\nSubject:")
        if i < 0:
            return "-"
        i += 1
    end = data.find(b"\n", i)
    return data[i + 8:end].strip().decode("ascii", "replace") or "-"


class Session(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buf, self.in_data, self.held = transport, b"", False, False
        transport.write(b"220 timesink.localdomain ESMTP\r\n")

    def data_received(self, chunk):
        self.buf += chunk
        if not self.held:
            self.process()

    def process(self):
        out = []
        while not self.held:
            if self.in_data:
                if self.buf.startswith(b".\r\n"):
                    body, self.buf = b"", self.buf[3:]
                else:
                    end = self.buf.find(b"\r\n.\r\n")
                    if end < 0:
                        break
                    body, self.buf = self.buf[:end + 2], self.buf[end + 5:]
                self.in_data = False
                log.write(f"{time.time():.6f} {subject_of(body)}\n")
                if os.path.exists(slow):
                    self.held = True
                    asyncio.get_running_loop().create_task(self.release(out))
                    return
                out.append(b"250 2.0.0 Ok: queued\r\n")
                continue
            end = self.buf.find(b"\r\n")
            if end < 0:
                break
            line, self.buf = self.buf[:end], self.buf[end + 2:]
            verb = line[:4].upper()
            if verb == b"EHLO":
                out.append(EHLO)
            elif verb == b"DATA":
                self.in_data = True
                out.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            elif verb == b"QUIT":
                out.append(b"221 2.0.0 Bye\r\n")
                self.transport.write(b"".join(out))
                self.transport.close()
                return
            elif verb in (b"HELO", b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                out.append(b"250 2.0.0 Ok\r\n")
            else:
                out.append(b"502 5.5.2 Command not implemented\r\n")
        if out:
            self.transport.write(b"".join(out))

    async def release(self, out):
        while os.path.exists(slow):
            await asyncio.sleep(0.05)
        if self.transport.is_closing():
            return
        out.append(b"250 2.0.0 Ok: queued\r\n")
        self.transport.write(b"".join(out))
        self.held = False
        self.process()


async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Session, "127.0.0.1", port)
    async with server:
        await server.serve_forever()

asyncio.run(main())
PY
  bg_start python3 "$tmp/timesink.py" "$timesink_port" "$log" "$slow" 2>"$tmp/timesink.err"
  timesink_pid=$bg_pid
  wait_port "$timesink_port"
}
