-- Raised by Warden's insert when the table already holds another record
-- at a (chain, seq) it writes, so the whole statement (and every row of
-- the batch) is refused at once, in one round trip. SQLSTATE WA001 is
-- what Warden recognises.
CREATE FUNCTION audit_records_conflict(chain text, seq bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'chain % already holds another record at seq %', chain, seq
        USING ERRCODE = 'WA001';
END;
$$;
