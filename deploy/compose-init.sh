#!/bin/sh
# Runs once, when the compose PostgreSQL volume is initialised: create the ledger's
# roles (deploy/postgres-roles.sql) and give them the passwords from deploy/.env.
set -eu
psql -X -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -f /deploy/postgres-roles.sql
psql -X -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" \
    -v owner_pw="$LEDGER_OWNER_PASSWORD" -v app_pw="$LEDGER_APP_PASSWORD" <<'SQL'
ALTER ROLE ledger_owner PASSWORD :'owner_pw';
ALTER ROLE ledger_app PASSWORD :'app_pw';
SQL
