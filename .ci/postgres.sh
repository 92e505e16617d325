#!/usr/bin/env bash
# Start Debian's PostgreSQL and make a database for the tuning tests; safe to run again.
# Prints the URL to use. Needs root (CI and the dev machines run as root).
set -euo pipefail
version=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | grep -q "^$version main .* online"; then
    pg_lsclusters -h | grep -q "^$version main" || pg_createcluster "$version" main >&2
    pg_ctlcluster "$version" main start >&2  # stdout carries only the URL
fi
port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')
su postgres -c "psql -p $port -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='digitlab'\"" | grep -q 1 ||
    su postgres -c "psql -p $port -qc \"CREATE ROLE digitlab LOGIN PASSWORD 'digitlab'\""
su postgres -c "psql -p $port -qtAc \"SELECT 1 FROM pg_database WHERE datname='digitlab_test'\"" | grep -q 1 ||
    su postgres -c "createdb -p $port -O digitlab digitlab_test"
echo "postgresql://digitlab:digitlab@127.0.0.1:$port/digitlab_test"
