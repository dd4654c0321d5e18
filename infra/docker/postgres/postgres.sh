#!/usr/bin/env bash
# PostgreSQL 15 from Debian's package, run as the `postgres` user (it refuses root). On the first start of an empty
# volume: initdb, the native profile's settings (wal_level=logical for Debezium, small footprint), the superuser's
# password from POSTGRES_PASSWORD and the SQL files in /opt/delab/initdb.d (the learner role, database and the
# Debezium publication). Extra arguments go to `postgres` (e.g. -c max_connections=200).
set -euo pipefail
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
as_pg() { runuser -u postgres -- "$@"; }
mkdir -p "$PGDATA" /run/postgresql
chown -R postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile="$(mktemp)"
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  chown postgres "$pwfile"
  as_pg initdb -D "$PGDATA" -U postgres --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  rm -f "$pwfile"
  cat >> "$PGDATA/postgresql.conf" <<'CONF'
# delab: as the native profile (logical decoding for Debezium, small footprint, a throwaway learning database)
listen_addresses = '*'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10
shared_buffers = 64MB
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  # other containers and the published port (bound to the host's 127.0.0.1 by compose) sign in with a password
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  as_pg pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
  for sql in /opt/delab/initdb.d/*.sql; do
    as_pg psql -v ON_ERROR_STOP=1 -q -U postgres -d postgres -f "$sql"
  done
  as_pg pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
fi
exec runuser -u postgres -- postgres -D "$PGDATA" "$@"
