-- Held calls waiting for (or past) a human decision. The same tables as
-- the SQLite store's, in the schema Warden is configured with (its
-- search_path), so the two stores have one model and one history.
-- Ids and approver names sort byte-wise ("C"), as SQLite sorts them:
-- UUIDv7 ids then sort by creation time whatever the database's collation.
CREATE TABLE approvals (
    id TEXT COLLATE "C" PRIMARY KEY,     -- UUIDv7
    created_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL,
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
    decided_ms BIGINT,
    executed_ms BIGINT                   -- set once: the call ran
);
CREATE INDEX approvals_pending ON approvals (status, expires_ms);
CREATE INDEX approvals_retry ON approvals (agent_session, tool, arguments_digest, status);

-- Each approver's decision: one per approver and approval.
CREATE TABLE approval_votes (
    approval TEXT COLLATE "C" NOT NULL REFERENCES approvals (id),
    approver TEXT COLLATE "C" NOT NULL,
    verdict TEXT NOT NULL CHECK (verdict IN ('approve', 'reject')),
    reason TEXT,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (approval, approver)
);
