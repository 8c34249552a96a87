-- Warden's audit trail in PostgreSQL: one row per sealed record.
--
-- Run in the configured schema (the migrator sets search_path to it, so no
-- name here is schema-qualified). Every replica writes its own chain
-- (chain = instance id), so writers never contend on a row.

CREATE TABLE audit_records (
    chain           text        NOT NULL,
    seq             bigint      NOT NULL,
    id              uuid        NOT NULL,
    time            timestamptz NOT NULL,
    kind            text        NOT NULL,
    route           text,
    mcp_session     text,
    agent_session   text,
    principal_agent text,
    principal_user  text,
    tool            text,
    decision        text,
    reason          text,
    -- SHA-256 (hex) of `line`: what the next record's `prev` names.
    hash            text        NOT NULL,
    -- The record exactly as sealed; the columns above are copies of its
    -- fields for querying. Verification reads `line` only.
    line            text        NOT NULL,
    PRIMARY KEY (chain, seq)
);

CREATE INDEX audit_records_time ON audit_records (time);
CREATE INDEX audit_records_agent_session ON audit_records (agent_session, time) WHERE agent_session IS NOT NULL;
CREATE INDEX audit_records_mcp_session ON audit_records (mcp_session, time) WHERE mcp_session IS NOT NULL;
CREATE INDEX audit_records_tool ON audit_records (tool, time) WHERE tool IS NOT NULL;

-- Append-only: rows are never changed or removed, whoever asks. (A
-- superuser or the table's owner can still drop the trigger; the hash chain
-- and the signed checkpoints are what make such an edit detectable.)
CREATE FUNCTION audit_records_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'warden audit records are append-only: % on audit_records is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'The audit trail can only be appended to; see docs/audit-postgres-role.sql.';
END;
$$;

CREATE TRIGGER audit_records_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_records
    FOR EACH ROW EXECUTE FUNCTION audit_records_append_only();

CREATE TRIGGER audit_records_no_truncate
    BEFORE TRUNCATE ON audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION audit_records_append_only();
