# shellcheck shell=sh
# pg_start / pg_stop: a throw-away PostgreSQL cluster on 127.0.0.1 (a free port, or $PG_PORT) for tests.
# Sets DOCKYARD_TEST_PG_URL. Needs Debian's postgresql package; runs the server as user postgres.
PG_DIR=""
pg_start() {
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$bin" ] && [ -x "$bin/initdb" ] || return 1
  # a free port, so that a cluster left by an interrupted run cannot be mistaken for ours
  PG_PORT=${PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
  PG_DIR=$(mktemp -d /tmp/dockyard-pg.XXXXXX)
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$PG_DIR"
    as_pg() { su postgres -s /bin/sh -c "$*"; }
  else
    as_pg() { sh -c "$*"; }
  fi
  as_pg "$bin/initdb -D $PG_DIR/data -A trust -U dockyard >/dev/null" || return 1
  as_pg "$bin/pg_ctl -D $PG_DIR/data -l $PG_DIR/log -w -o \"-k $PG_DIR -p $PG_PORT -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off\" start >/dev/null" || return 1
  export DOCKYARD_TEST_PG_URL="postgresql://dockyard@127.0.0.1:$PG_PORT/postgres"
  echo "PostgreSQL for tests on 127.0.0.1:$PG_PORT"
}
pg_stop() {
  [ -n "$PG_DIR" ] || return 0
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  if [ "$(id -u)" = 0 ]; then
    su postgres -s /bin/sh -c "$bin/pg_ctl -D $PG_DIR/data -m immediate stop >/dev/null" || true
  else
    "$bin/pg_ctl" -D "$PG_DIR/data" -m immediate stop >/dev/null || true
  fi
  rm -rf "$PG_DIR"
}
