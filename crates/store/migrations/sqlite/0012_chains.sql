-- Several rollups on one proving cluster (issue 21): batches, jobs, proofs and attempts are
-- named by (chain, batch number), each chain numbering its own batches. Rows stored before
-- are the default chain's (1). SQLite cannot change a primary key in place, so the keyed
-- tables are rebuilt: the new ones reference each other, and renaming them carries those
-- references along (SQLite 3.26+); foreign keys are checked at the commit.
PRAGMA defer_foreign_keys = ON;

CREATE TABLE batches_new (
    chain         INTEGER NOT NULL CHECK (chain >= 0),
    number        INTEGER NOT NULL CHECK (number >= 0),
    version       TEXT    NOT NULL,
    input_key     TEXT    NOT NULL,
    input_digest  BLOB    NOT NULL CHECK (length(input_digest) = 32),
    input_size    INTEGER NOT NULL CHECK (input_size >= 0),
    required      TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    public_values BLOB    NOT NULL DEFAULT x'',
    PRIMARY KEY (chain, number)
) STRICT;
INSERT INTO batches_new (chain, number, version, input_key, input_digest, input_size,
                         required, created_at, public_values)
SELECT 1, number, version, input_key, input_digest, input_size, required, created_at,
       public_values FROM batches;

CREATE TABLE jobs_new (
    chain            INTEGER NOT NULL,
    batch            INTEGER NOT NULL,
    proof_type       TEXT    NOT NULL,
    state            TEXT    NOT NULL
                     CHECK (state IN ('queued', 'leased', 'proven', 'failed', 'cancelled')),
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
    FOREIGN KEY (chain, batch) REFERENCES batches_new (chain, number)
) STRICT, WITHOUT ROWID;
INSERT INTO jobs_new SELECT 1, batch, proof_type, state, version, failed_attempts,
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
INSERT INTO proofs_new SELECT 1, batch, proof_type, blob_key, inline_data, size, digest,
    prover, prover_name, token, leased_at, received_at, prove_ms FROM proofs;

DROP TABLE proofs;
DROP TABLE jobs;
DROP TABLE batches;
ALTER TABLE batches_new RENAME TO batches;
ALTER TABLE jobs_new RENAME TO jobs;
ALTER TABLE proofs_new RENAME TO proofs;
CREATE INDEX jobs_state_batch ON jobs (state, chain, batch, proof_type);

-- Attempts are keyed by their token; only the job they belong to gains its chain.
ALTER TABLE attempts ADD COLUMN chain INTEGER NOT NULL DEFAULT 1;
DROP INDEX attempts_of_job;
CREATE INDEX attempts_of_job ON attempts (chain, batch, proof_type, token);
