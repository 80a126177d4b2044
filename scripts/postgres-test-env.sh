# shellcheck shell=bash
# Sourced by test.sh: makes sure OUTBOX_TEST_POSTGRES_URL names a PostgreSQL server the
# tests can reach (they create and drop one database each), trying in order:
#   1. OUTBOX_TEST_POSTGRES_URL, if it is set (it must work: a bad URL is an error);
#   2. the server on 127.0.0.1:5432, database `test` (OUTBOX_TEST_POSTGRES_DEFAULT_URL
#      overrides this, e.g. to prove the fallback by pointing it at a closed port);
#   3. a throwaway cluster: initdb + pg_ctl in a temp dir, on a free port, run by the
#      unprivileged `postgres` user (initdb refuses root), stopped by outbox_pg_stop,
#      which test.sh calls from its EXIT trap.
# Needs the PostgreSQL server binaries (scripts/install-peers.sh installs them).

OUTBOX_PG_DIR=""

outbox_pg_reachable() {
  PGCONNECT_TIMEOUT=3 psql -X -q -w "$1" -tAc 'SELECT 1' >/dev/null 2>&1
}

outbox_pg_stop() {
  if [ -n "$OUTBOX_PG_DIR" ] && [ -d "$OUTBOX_PG_DIR" ]; then
    outbox_pg_as_owner "$OUTBOX_PG_BIN/pg_ctl" -D "$OUTBOX_PG_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$OUTBOX_PG_DIR"
    OUTBOX_PG_DIR=""
  fi
}

outbox_pg_as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$OUTBOX_PG_USER" -- "$@"
  else
    "$@"
  fi
}

outbox_pg_start_cluster() {
  OUTBOX_PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$OUTBOX_PG_BIN" ] || [ ! -x "$OUTBOX_PG_BIN/initdb" ]; then
    echo "postgres-test-env: no PostgreSQL server binaries (run scripts/install-peers.sh)" >&2
    return 1
  fi
  OUTBOX_PG_USER=postgres
  if [ "$(id -u)" = 0 ] && ! id "$OUTBOX_PG_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$OUTBOX_PG_USER"
  fi
  OUTBOX_PG_DIR=$(mktemp -d /tmp/outbox-pg.XXXXXX)
  chmod 755 "$OUTBOX_PG_DIR"
  [ "$(id -u)" = 0 ] && chown "$OUTBOX_PG_USER" "$OUTBOX_PG_DIR"
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  outbox_pg_as_owner "$OUTBOX_PG_BIN/initdb" -D "$OUTBOX_PG_DIR/data" -A trust -U postgres \
    --no-sync >"$OUTBOX_PG_DIR/initdb.log" 2>&1 || {
    echo "postgres-test-env: initdb failed:" >&2; cat "$OUTBOX_PG_DIR/initdb.log" >&2; return 1; }
  outbox_pg_as_owner "$OUTBOX_PG_BIN/pg_ctl" -D "$OUTBOX_PG_DIR/data" -l "$OUTBOX_PG_DIR/server.log" -w \
    -o "-p $port -k $OUTBOX_PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
    start >/dev/null || {
    echo "postgres-test-env: pg_ctl start failed:" >&2; cat "$OUTBOX_PG_DIR/server.log" >&2; return 1; }
  OUTBOX_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
  echo "postgres-test-env: started a throwaway PostgreSQL on 127.0.0.1:$port ($OUTBOX_PG_DIR)" >&2
}

if [ -n "${OUTBOX_TEST_POSTGRES_URL:-}" ]; then
  if ! outbox_pg_reachable "$OUTBOX_TEST_POSTGRES_URL"; then
    echo "postgres-test-env: OUTBOX_TEST_POSTGRES_URL=$OUTBOX_TEST_POSTGRES_URL is not reachable" >&2
    return 1
  fi
elif outbox_pg_reachable "${OUTBOX_TEST_POSTGRES_DEFAULT_URL:=postgres://postgres@127.0.0.1:5432/test}"; then
  OUTBOX_TEST_POSTGRES_URL=$OUTBOX_TEST_POSTGRES_DEFAULT_URL
else
  outbox_pg_start_cluster || return 1
fi
export OUTBOX_TEST_POSTGRES_URL
