#!/usr/bin/env bash
# Many machines on one laptop: a throwaway Postgres and three workers of the
# same job (demo/main.go). On real machines, run the worker on each with
# CHECKPOINT_DB pointing at your server instead. At the end the checkpoint
# command shows the job in the database and exports it to files.
#   bash postgres/demo/run.sh [items]
set -euo pipefail
cd "$(dirname "$0")"
items=${1:-3000}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
as=()
if [ "$(id -u)" = 0 ]; then chown nobody "$dir"; as=(runuser -u nobody --); fi
"${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust >/dev/null
"${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
trap '"${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null; rm -rf "$dir"' EXIT
export CHECKPOINT_DB="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
go build -o "$dir/worker" .
for i in 1 2 3; do "$dir/worker" -items "$items" & done
wait
"$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -Atc \
  "SELECT 'rows: ' || count(*) || ', completed: ' || count(*) FILTER (WHERE state = 2) || ', completed more than once: ' || count(*) FILTER (WHERE outcomes > 1) FROM checkpoint.items"
# The checkpoint command reads the database as it reads a folder, and
# export writes the job as the files of one machine.
checkpoint=(go run ../../cmd/checkpoint)
"${checkpoint[@]}" status demo --db "$CHECKPOINT_DB"
"${checkpoint[@]}" export demo --dir "$dir/files"   # --db defaults to $CHECKPOINT_DB
"${checkpoint[@]}" ls --dir "$dir/files"
