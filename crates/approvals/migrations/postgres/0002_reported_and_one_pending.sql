-- When the agent was told a decided call's outcome: until then, the same
-- call again gets that outcome instead of a new approval.
ALTER TABLE approvals ADD COLUMN reported_ms BIGINT;
-- One pending approval per call: two identical calls at once attach to one.
CREATE UNIQUE INDEX approvals_one_pending
    ON approvals (agent_session, tool, arguments_digest) WHERE status = 'pending';
