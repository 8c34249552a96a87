-- Held calls waiting for (or past) a human decision.
CREATE TABLE approvals (
    id TEXT PRIMARY KEY,                 -- UUIDv7
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    route TEXT NOT NULL,
    upstream TEXT NOT NULL,
    tool TEXT NOT NULL,
    arguments TEXT NOT NULL,             -- the full arguments, for execution
    arguments_shown TEXT NOT NULL,       -- the redacted view approvers see
    arguments_digest TEXT NOT NULL,      -- SHA-256 of the canonical arguments
    rationale TEXT,
    agent_session TEXT NOT NULL,
    principal_agent TEXT NOT NULL,
    principal_user TEXT,
    policy_hash TEXT NOT NULL,
    required INTEGER NOT NULL,           -- approvals needed
    status TEXT NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'expired', 'cancelled', 'abandoned')),
    reason TEXT,                         -- a rejection's reason
    decided_ms INTEGER,
    executed_ms INTEGER                  -- set once: the call ran
);
CREATE INDEX approvals_pending ON approvals (status, expires_ms);
CREATE INDEX approvals_retry ON approvals (agent_session, tool, arguments_digest, status);

-- Each approver's decision: one per approver and approval.
CREATE TABLE approval_votes (
    approval TEXT NOT NULL REFERENCES approvals (id),
    approver TEXT NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('approve', 'reject')),
    reason TEXT,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (approval, approver)
);
