-- Least privilege for Warden's PostgreSQL audit store: two roles.
--
--   warden_owner   owns the schema and its table; runs the migrations, once
--                  per upgrade (`warden audit migrate`, or Warden started
--                  once with this role's URL). Not used at run time.
--   warden_writer  what Warden runs as: USAGE on the schema, INSERT and
--                  SELECT on audit_records (SELECT for `head` at start and
--                  for `warden audit verify|query`), SELECT on the
--                  migrations table (so Warden can see that every migration
--                  is applied and skip them). No UPDATE, DELETE, TRUNCATE,
--                  no CREATE: the runtime role cannot change a record nor
--                  drop the append-only trigger (only the owner can).
--
-- Rename the roles, the schema (warden_audit) and the passwords to taste;
-- the database is the one in Warden's URL. Warden's config names the
-- schema (`schema: warden_audit`) and the writer's URL.

-- step: roles (as a superuser or a role with CREATEROLE, once)
CREATE ROLE warden_owner LOGIN PASSWORD 'change-me-owner';
CREATE ROLE warden_writer LOGIN PASSWORD 'change-me-writer';
CREATE SCHEMA warden_audit AUTHORIZATION warden_owner;

-- step: migrate (as warden_owner; not SQL):
--   warden audit migrate --config warden.yaml   (with the owner's URL)
-- It creates warden_audit.audit_records, its indexes, the append-only
-- trigger and warden_audit._sqlx_migrations. Run it again after an
-- upgrade that brings a migration; Warden started with the writer's URL
-- refuses to start while a migration is pending (the writer may not apply
-- it) and says so.

-- step: grants (as warden_owner, after the first migration)
GRANT USAGE ON SCHEMA warden_audit TO warden_writer;
GRANT SELECT, INSERT ON warden_audit.audit_records TO warden_writer;
GRANT SELECT ON warden_audit._sqlx_migrations TO warden_writer;
-- The writer's insert calls this to refuse a batch that conflicts with
-- another record at the same (chain, seq). Functions are executable by
-- PUBLIC unless that was revoked; granted here so it also works where it
-- was.
GRANT EXECUTE ON FUNCTION warden_audit.audit_records_conflict(text, bigint, text) TO warden_writer;
