-- Every attempt at a job (a lease, or a backup copy of a straggling task), one row each,
-- named by its fencing token and written in the same transaction as the job row it goes
-- with. `ended_at` and `outcome` are NULL while it runs; `backup` is 0 or 1. Rows of ended
-- attempts are pruned once older than the coordinator's retention.
CREATE TABLE attempts (
    token        BIGINT NOT NULL PRIMARY KEY CHECK (token > 0),
    batch        BIGINT NOT NULL,
    proof_type   TEXT   NOT NULL,
    prover       TEXT   NOT NULL,
    prover_name  TEXT   NOT NULL,
    backup       BIGINT NOT NULL CHECK (backup IN (0, 1)),
    started_at   BIGINT NOT NULL,
    ended_at     BIGINT,
    outcome      TEXT,
    detail       TEXT   NOT NULL,
    prove_ms     BIGINT
);
CREATE INDEX attempts_of_job ON attempts (batch, proof_type, token);
CREATE INDEX attempts_by_end ON attempts (ended_at) WHERE ended_at IS NOT NULL;
