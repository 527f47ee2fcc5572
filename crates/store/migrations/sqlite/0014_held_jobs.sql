-- The proof market (issue 22): a job of a batch offered to a proving network starts 'held'
-- (the own provers do not take it until the market falls back). The state's CHECK is part
-- of the table, so SQLite rebuilds jobs, and proofs with it (they reference jobs; the new
-- tables reference each other and the renames carry that along, as in 0012); foreign keys
-- are checked at the commit.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE jobs_new (
    chain            INTEGER NOT NULL,
    batch            INTEGER NOT NULL,
    proof_type       TEXT    NOT NULL,
    state            TEXT    NOT NULL
                     CHECK (state IN ('queued', 'leased', 'proven', 'failed', 'cancelled',
                                      'held')),
    version          TEXT    NOT NULL,
    failed_attempts  INTEGER NOT NULL,
    lost_attempts    INTEGER NOT NULL,
    lease_prover     TEXT,
    lease_token      INTEGER,
    leased_at        INTEGER,
    lease_deadline   INTEGER,
    not_before       INTEGER NOT NULL,
    last_error       TEXT,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (chain, batch, proof_type),
    FOREIGN KEY (chain, batch) REFERENCES batches (chain, number)
) STRICT, WITHOUT ROWID;
INSERT INTO jobs_new SELECT chain, batch, proof_type, state, version, failed_attempts,
    lost_attempts, lease_prover, lease_token, leased_at, lease_deadline, not_before,
    last_error, updated_at FROM jobs;

CREATE TABLE proofs_new (
    chain        INTEGER NOT NULL,
    batch        INTEGER NOT NULL,
    proof_type   TEXT    NOT NULL,
    blob_key     TEXT    NOT NULL,
    inline_data  BLOB,
    size         INTEGER NOT NULL,
    digest       BLOB    NOT NULL CHECK (length(digest) = 32),
    prover       TEXT    NOT NULL,
    prover_name  TEXT    NOT NULL,
    token        INTEGER NOT NULL,
    leased_at    INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    prove_ms     INTEGER NOT NULL,
    PRIMARY KEY (chain, batch, proof_type),
    FOREIGN KEY (chain, batch, proof_type) REFERENCES jobs_new (chain, batch, proof_type)
) STRICT, WITHOUT ROWID;
INSERT INTO proofs_new SELECT chain, batch, proof_type, blob_key, inline_data, size, digest,
    prover, prover_name, token, leased_at, received_at, prove_ms FROM proofs;

DROP TABLE proofs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
ALTER TABLE proofs_new RENAME TO proofs;
CREATE INDEX jobs_state_batch ON jobs (state, chain, batch, proof_type);
