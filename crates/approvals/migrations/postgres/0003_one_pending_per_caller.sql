-- The same call is the same route, agent session, caller, tool and
-- arguments: an approval given on one route, or to one caller, never
-- covers another's call that happens to share a session name.
DROP INDEX approvals_one_pending;
CREATE UNIQUE INDEX approvals_one_pending
    ON approvals (route, agent_session, principal_agent, COALESCE(principal_user, ''), tool, arguments_digest)
    WHERE status = 'pending';
