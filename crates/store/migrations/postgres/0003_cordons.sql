-- Provers an operator took out of rotation. Kept in the store so that a cordon outlives a
-- coordinator restart (the prover reconnects with its id) and is shared by every coordinator
-- on the store.
CREATE TABLE cordons (
    prover_id TEXT PRIMARY KEY,
    since BIGINT NOT NULL
);
