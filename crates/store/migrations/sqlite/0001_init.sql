-- proofmill store schema v1 (SQLite). Unsigned 64-bit values are stored as INTEGER (i64);
-- the store rejects values above i64::MAX. Digests are 32-byte BLOBs.

CREATE TABLE batches (
    number        INTEGER PRIMARY KEY CHECK (number >= 0),
    version       TEXT    NOT NULL,
    input_key     TEXT    NOT NULL,
    input_digest  BLOB    NOT NULL CHECK (length(input_digest) = 32),
    input_size    INTEGER NOT NULL CHECK (input_size >= 0),
    old_root      BLOB    NOT NULL CHECK (length(old_root) = 32),
    new_root      BLOB    NOT NULL CHECK (length(new_root) = 32),
    commitment    BLOB    NOT NULL CHECK (length(commitment) = 32),
    -- required proof types, comma-separated (proof type names cannot contain commas)
    required      TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE jobs (
    batch            INTEGER NOT NULL REFERENCES batches (number),
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
    PRIMARY KEY (batch, proof_type)
) STRICT, WITHOUT ROWID;

CREATE INDEX jobs_state_batch ON jobs (state, batch, proof_type);

CREATE TABLE proofs (
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
    PRIMARY KEY (batch, proof_type),
    FOREIGN KEY (batch, proof_type) REFERENCES jobs (batch, proof_type)
) STRICT, WITHOUT ROWID;

CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
) STRICT;
