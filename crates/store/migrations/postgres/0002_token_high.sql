-- The highest fencing token ever written, kept when the lease that carried it ends (the row's
-- lease_token is cleared then). A restart counts as "issued but never committed" only tokens
-- above it, so a revoked token can never come back.
CREATE TABLE token_high (
    id SMALLINT PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO token_high (id, value)
SELECT 1, COALESCE(GREATEST((SELECT MAX(lease_token) FROM jobs), (SELECT MAX(token) FROM proofs)), 0);
