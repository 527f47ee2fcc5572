-- The highest fencing token ever written, kept when the lease that carried it ends (the row's
-- lease_token is cleared then). A restart counts as "issued but never committed" only tokens
-- above it, so a revoked token can never come back.
CREATE TABLE token_high (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO token_high (id, value)
SELECT 1, COALESCE(MAX(t), 0) FROM (
    SELECT MAX(lease_token) AS t FROM jobs UNION ALL SELECT MAX(token) FROM proofs
);
