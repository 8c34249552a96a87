-- Called by Warden's insert for a row it skipped (ON CONFLICT) whose
-- (chain, seq) the statement's snapshot shows holding another record, or
-- no record (one committed meanwhile). It looks again, with a snapshot of
-- its own: the same record there (a batch sent twice, both at once) is
-- fine; another one raises, so the whole statement (and every row of the
-- batch) is refused, in one round trip. SQLSTATE WA001 is what Warden
-- recognises.
CREATE FUNCTION audit_records_conflict(chain text, seq bigint, hash text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM audit_records a
               WHERE a.chain = audit_records_conflict.chain
                 AND a.seq = audit_records_conflict.seq
                 AND a.hash = audit_records_conflict.hash) THEN
        RETURN false;
    END IF;
    RAISE EXCEPTION 'chain % already holds another record at seq %', chain, seq
        USING ERRCODE = 'WA001';
END;
$$;
