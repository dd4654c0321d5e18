-- The learner role and database, as the native profile makes them (delab.stack.services.postgres).
-- CREATEROLE: module 07 manages application roles and grants as code (OpenTofu's PostgreSQL provider).
CREATE ROLE delab LOGIN REPLICATION CREATEDB CREATEROLE PASSWORD 'delab';
CREATE DATABASE shop OWNER delab;
\connect shop
-- Debezium (pgoutput) uses this publication; FOR ALL TABLES needs a superuser, hence here.
CREATE PUBLICATION dbz_publication FOR ALL TABLES;
\connect postgres
-- The on-demand services' own databases (compose profile "services"): the schema registry's and MLflow's stores.
CREATE DATABASE schema_registry OWNER delab;
CREATE DATABASE mlflow OWNER delab;
