-- The nonces of the 2026-07-28 request states already used, while they
-- could still be presented (until expires_ms): with a request-state key
-- shared by replicas, a state is accepted once across all of them.
CREATE TABLE spent_request_states (
    nonce TEXT PRIMARY KEY,
    expires_ms BIGINT NOT NULL
);
CREATE INDEX spent_request_states_expiry ON spent_request_states (expires_ms);
