-- PostgreSQL roles for the annotation ledger. Run as a superuser, connected to the
-- ledger's database:
--
--     psql -v ON_ERROR_STOP=1 -d ledger -f deploy/postgres-roles.sql
--
-- once before the first `ledger db upgrade` (it creates the roles) and again after every
-- `ledger db upgrade` (it grants on the tables the migrations created). Running it again
-- changes nothing else: it is idempotent. It sets no passwords; give the roles one
-- (ALTER ROLE ... PASSWORD) or use peer / certificate authentication.
--
-- ledger_owner  owns the schema and runs the migrations (`ledger db upgrade`). Use it
--               for nothing else.
-- ledger_app    runs the service and the CLI. On log tables it may only INSERT and
--               SELECT: it can never change or remove an entry, a tree hash, a
--               projection row that the log fixes, a checkpoint or a published key
--               (triggers refuse that even to the owner; verification detects what a
--               superuser does). On the few mutable tables (log heads, current
--               instance state, actors, tokens, notification state) it may also UPDATE.
--               It may DELETE nothing, anywhere.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ledger_owner') THEN
        CREATE ROLE ledger_owner LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ledger_app') THEN
        CREATE ROLE ledger_app LOGIN;
    END IF;
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO ledger_owner', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO ledger_app', current_database());
END;
$$;

-- The tables live in the public schema: the owner creates them, the app uses them.
GRANT USAGE, CREATE ON SCHEMA public TO ledger_owner;
GRANT USAGE ON SCHEMA public TO ledger_app;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

DO $$
DECLARE
    -- mutable tables: SELECT, INSERT, UPDATE
    mutable text[] := ARRAY['heads', 'instances', 'actors', 'tokens',
                            'subscribers', 'deliveries'];
    -- read-only for the app
    read_only text[] := ARRAY['schema_migrations'];
    t record;
BEGIN
    FOR t IN
        SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename
    LOOP
        EXECUTE format('REVOKE ALL ON public.%I FROM ledger_app', t.tablename);
        IF t.tablename = ANY (read_only) THEN
            EXECUTE format('GRANT SELECT ON public.%I TO ledger_app', t.tablename);
        ELSIF t.tablename = ANY (mutable) THEN
            EXECUTE format('GRANT SELECT, INSERT, UPDATE ON public.%I TO ledger_app',
                           t.tablename);
        ELSE
            -- every other table is part of the log: entries, tree_hashes, guidelines,
            -- categories, images, revisions, reviews, links, releases, checkpoints,
            -- verifier_keys, and any log table a later migration adds
            EXECUTE format('GRANT SELECT, INSERT ON public.%I TO ledger_app', t.tablename);
        END IF;
    END LOOP;
END;
$$;
