#!/bin/sh
# Runs once, when the PostgreSQL volume is created (docker-entrypoint-initdb.d).
# The app logs in as gql_app, which may read and write rows but not change the
# schema; the tables belong to gql, which runs the migrations. The session
# settings GQL_PGBOUNCER=1 no longer sends at connect time are set on the role.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v app_password="$GQL_APP_PASSWORD" <<'SQL'
CREATE ROLE gql_app LOGIN PASSWORD :'app_password';
ALTER ROLE gql_app SET statement_timeout = '15s';
ALTER ROLE gql_app SET idle_in_transaction_session_timeout = '60s';
ALTER ROLE gql_app SET jit = off;
GRANT CONNECT ON DATABASE gql TO gql_app;
GRANT USAGE ON SCHEMA public TO gql_app;
ALTER DEFAULT PRIVILEGES FOR ROLE gql IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO gql_app;
ALTER DEFAULT PRIVILEGES FOR ROLE gql IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO gql_app;
SQL
