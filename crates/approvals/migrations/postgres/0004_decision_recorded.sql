-- When a decision's audit record was written, and the channel a decision
-- taken outside Warden came by (`cli`): a decision no Warden recorded
-- (the CLI deciding in the store, a Warden stopped between the vote and
-- the record) is recorded by the next Warden's sweep, once.
ALTER TABLE approvals ADD COLUMN decided_via TEXT;
ALTER TABLE approvals ADD COLUMN decision_recorded_ms BIGINT;
-- Decisions taken before this migration are not recorded late: nobody
-- can tell which of them the trail already has.
UPDATE approvals SET decision_recorded_ms = COALESCE(decided_ms, 0) WHERE status <> 'pending';
CREATE INDEX approvals_unrecorded ON approvals (decided_ms)
    WHERE decision_recorded_ms IS NULL AND status IN ('approved', 'rejected');
