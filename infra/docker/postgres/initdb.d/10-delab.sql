-- The learner role and database, as the native profile makes them (delab.stack.services.postgres).
-- CREATEROLE: module 07 manages application roles and grants as code (OpenTofu's PostgreSQL provider).
CREATE ROLE delab LOGIN REPLICATION CREATEDB CREATEROLE PASSWORD 'delab';
CREATE DATABASE shop OWNER delab;
\connect shop
-- Debezium (pgoutput) uses this publication; FOR ALL TABLES needs a superuser, hence here.
CREATE PUBLICATION dbz_publication FOR ALL TABLES;
-- Statement logging for one of the learner's roles (lab 05.04's audit of reads): log_statement is a superuser
-- setting, so a superuser-owned function does it (the native profile makes the same, see delab_log_statements).
CREATE OR REPLACE FUNCTION public.delab_log_statements(role_name text, level text)
RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
  IF level NOT IN ('none', 'ddl', 'mod', 'all') THEN
    RAISE EXCEPTION 'log level must be none, ddl, mod or all, not %', level;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name AND NOT rolsuper) THEN
    RAISE EXCEPTION 'no role % that is not a superuser', role_name;
  END IF;
  EXECUTE format('ALTER ROLE %I SET log_statement = %L', role_name, level);
END $fn$;
REVOKE ALL ON FUNCTION public.delab_log_statements(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.delab_log_statements(text, text) TO delab;
\connect postgres
-- The on-demand services' own databases (compose profile "services"): the schema registry's and MLflow's stores.
CREATE DATABASE schema_registry OWNER delab;
CREATE DATABASE mlflow OWNER delab;
