#!/usr/bin/env bash
# PostgreSQL (Debian's `postgresql`) on a free 127.0.0.1 port, trust auth, fsync off, with a
# `driftloop` database. URL: postgresql+psycopg://postgres@127.0.0.1:PORT/driftloop
# Usage: scripts/services/postgres.sh {install|start|stop|restart|url|status|clean}
SVC_NAME=postgres
SVC_PROC_MATCH=postgres
SVC_STOP_SIGNAL=INT # "fast" shutdown: roll back open transactions, disconnect, exit
# shellcheck source=service-lib.sh source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/service-lib.sh"

PG_DATABASE="${DRIFTLOOP_POSTGRES_DATABASE:-driftloop}"

# The bin folder of the newest PostgreSQL installed.
pg_bin() {
  local dir
  dir="$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  [ -x "$dir/pg_ctl" ] || return 1
  echo "$dir"
}

# Run a command as the `postgres` user when we are root (initdb and postgres refuse root).
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# The Unix socket directory: the data directory, unless its path is too long for a socket.
pg_socket_dir() {
  if [ "${#SVC_DATA}" -le 80 ]; then
    echo "$SVC_DATA"
  else
    echo "/tmp/driftloop-pg-$(echo "$SVC_DATA" | sha256sum | cut -c1-12)"
  fi
}

svc_install() {
  pg_bin >/dev/null && return 0
  svc_apt_install postgresql
  pg_bin >/dev/null || svc_die "postgresql installed but no /usr/lib/postgresql/*/bin found"
}

svc_launch() {
  local port="$1" bin sock
  bin="$(pg_bin)"
  sock="$(pg_socket_dir)"
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$SVC_DIR" "$SVC_DATA" "$SVC_LOG"
    runuser -u postgres -- test -w "$SVC_DATA" ||
      svc_die "user postgres cannot reach $SVC_DATA: make every parent folder world-searchable" \
        "(chmod o+x) or set DRIFTLOOP_SERVICES_DIR elsewhere"
  fi
  if [ ! -s "$SVC_DATA/PG_VERSION" ]; then
    svc_say "initdb $SVC_DATA"
    as_pg "$bin/initdb" -D "$SVC_DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
      >>"$SVC_LOG" 2>&1 9>&- || { svc_log_tail; svc_die "initdb failed"; }
  fi
  mkdir -p "$sock"
  [ "$(id -u)" -ne 0 ] || chown postgres: "$sock"
  # shellcheck disable=SC2094 # pg_ctl appends the server's output, we append pg_ctl's own
  as_pg "$bin/pg_ctl" -D "$SVC_DATA" -l "$SVC_LOG" -w -t "$SVC_READY_TIMEOUT" \
    -o "-p $port -k $sock -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
    start </dev/null >>"$SVC_LOG" 2>&1 9>&- || { svc_log_tail; svc_die "pg_ctl start failed"; }
  head -1 "$SVC_DATA/postmaster.pid" >"$SVC_PIDFILE"
}

svc_ready() {
  "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$1" -U postgres
}

svc_after_start() {
  local port="$1" psql
  psql="$(pg_bin)/psql"
  if [ -z "$("$psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE'")" ]; then
    "$psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
      -c "CREATE DATABASE \"$PG_DATABASE\"" >&2
  fi
}

svc_url() {
  echo "postgresql+psycopg://postgres@127.0.0.1:$1/$PG_DATABASE"
}

svc_after_stop() {
  local sock
  sock="$(pg_socket_dir)"
  [ "$sock" = "$SVC_DATA" ] || rm -rf "$sock"
}

svc_main "$@"
