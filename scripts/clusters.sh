#!/usr/bin/env bash
# Throwaway PostgreSQL clusters for tests, the demo and benchmarks.
#
#   scripts/clusters.sh start DIR     initdb + start "source" and "target" under DIR
#   scripts/clusters.sh stop DIR      stop both and remove DIR
#   scripts/clusters.sh restart DIR source|target
#   scripts/clusters.sh down DIR source|target     stop one server (fast), keeping its data
#   scripts/clusters.sh up DIR source|target       start it again
#   scripts/clusters.sh env DIR       print the environment file (sourceable)
#
# The source runs with wal_level=logical and room for slots and WAL senders; the target
# is plain (but allows replication origins). Each listens on 127.0.0.1 on a free port, with
# its socket directory inside DIR. When run as root the servers run as the `postgres` user
# (PostgreSQL refuses to run as root). DIR/env holds SOURCE_URL, TARGET_URL and the ports.
# Extra server settings: PGTIDE_SOURCE_CONF / PGTIDE_TARGET_CONF (lines appended to
# postgresql.conf).
set -euo pipefail

PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
[ -x "$PGBIN/initdb" ] || { echo "clusters.sh: no PostgreSQL server found (install postgresql-15)" >&2; exit 1; }

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  # Ask the kernel for a free loopback port, then make sure no server already uses it.
  python3 - <<'PY' 2>/dev/null || echo $(( 20000 + RANDOM % 20000 ))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

start_one() {
  local dir=$1 name=$2 port=$3 extra=$4
  local data="$dir/$name"
  as_pg "$PGBIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >"$dir/$name-initdb.log" 2>&1 \
    || { cat "$dir/$name-initdb.log" >&2; return 1; }
  cat >>"$data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
fsync = off
full_page_writes = off
synchronous_commit = off
shared_buffers = 256MB
max_connections = 100
max_replication_slots = 20
max_wal_senders = 20
max_prepared_transactions = 10
wal_level = logical
logging_collector = off
log_min_messages = warning
$extra
CONF
  # md5/scram tests need a password-protected role; trust elsewhere keeps the harness simple.
  cat >"$data/pg_hba.conf" <<HBA
local   all          all                      trust
host    all          pw_user   127.0.0.1/32   scram-sha-256
host    all          all       127.0.0.1/32   trust
host    replication  all       127.0.0.1/32   trust
HBA
  as_pg "$PGBIN/pg_ctl" -D "$data" -l "$dir/$name.log" -w -t 60 start >/dev/null \
    || { cat "$dir/$name.log" >&2; return 1; }
}

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|restart|down|up|env DIR [source|target]" >&2; exit 2; }

case "$cmd" in
start)
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$dir"
    runuser -u postgres -- test -x "$dir" || {
      echo "clusters.sh: the postgres user cannot reach $dir; use a directory whose parents are world-searchable (chmod o+x)" >&2; exit 1; }
  fi
  chmod 700 "$dir"
  sport=$(free_port); tport=$(free_port)
  while [ "$tport" = "$sport" ]; do tport=$(free_port); done
  start_one "$dir" source "$sport" "${PGTIDE_SOURCE_CONF:-}"
  start_one "$dir" target "$tport" "${PGTIDE_TARGET_CONF:-}"
  cat >"$dir/env" <<ENV
PGTIDE_CLUSTER_DIR=$dir
PGTIDE_SOURCE_PORT=$sport
PGTIDE_TARGET_PORT=$tport
SOURCE_URL=postgresql://postgres@127.0.0.1:$sport/postgres
TARGET_URL=postgresql://postgres@127.0.0.1:$tport/postgres
ENV
  chmod 644 "$dir/env"
  cat "$dir/env"
  ;;
stop)
  for name in source target; do
    [ -d "$dir/$name" ] && as_pg "$PGBIN/pg_ctl" -D "$dir/$name" -m immediate -w stop >/dev/null 2>&1 || true
  done
  rm -rf "$dir"
  ;;
restart)
  name=${3:?restart needs source or target}
  as_pg "$PGBIN/pg_ctl" -D "$dir/$name" -l "$dir/$name.log" -m "${PGTIDE_RESTART_MODE:-fast}" -w -t 60 restart >/dev/null
  ;;
down)
  name=${3:?down needs source or target}
  as_pg "$PGBIN/pg_ctl" -D "$dir/$name" -m fast -w -t 60 stop >/dev/null
  ;;
up)
  name=${3:?up needs source or target}
  as_pg "$PGBIN/pg_ctl" -D "$dir/$name" -l "$dir/$name.log" -w -t 60 start >/dev/null
  ;;
env)
  cat "$dir/env"
  ;;
*)
  echo "usage: $0 start|stop|restart|down|up|env DIR [source|target]" >&2; exit 2 ;;
esac
