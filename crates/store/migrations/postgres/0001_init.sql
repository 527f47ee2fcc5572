-- proofmill store schema v1 (PostgreSQL). Unsigned 64-bit values are stored as BIGINT;
-- the store rejects values above i64::MAX. Digests are 32-byte BYTEA.

CREATE TABLE batches (
    number        BIGINT PRIMARY KEY CHECK (number >= 0),
    version       TEXT   NOT NULL,
    input_key     TEXT   NOT NULL,
    input_digest  BYTEA  NOT NULL CHECK (length(input_digest) = 32),
    input_size    BIGINT NOT NULL CHECK (input_size >= 0),
    old_root      BYTEA  NOT NULL CHECK (length(old_root) = 32),
    new_root      BYTEA  NOT NULL CHECK (length(new_root) = 32),
    commitment    BYTEA  NOT NULL CHECK (length(commitment) = 32),
    -- required proof types, comma-separated (proof type names cannot contain commas)
    required      TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE jobs (
    batch            BIGINT NOT NULL REFERENCES batches (number),
    proof_type       TEXT   NOT NULL,
    state            TEXT   NOT NULL
                     CHECK (state IN ('queued', 'leased', 'proven', 'failed', 'cancelled')),
    version          TEXT   NOT NULL,
    failed_attempts  BIGINT NOT NULL,
    lost_attempts    BIGINT NOT NULL,
    lease_prover     TEXT,
    lease_token      BIGINT,
    leased_at        BIGINT,
    lease_deadline   BIGINT,
    not_before       BIGINT NOT NULL,
    last_error       TEXT,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (batch, proof_type)
);

CREATE INDEX jobs_state_batch ON jobs (state, batch, proof_type);

CREATE TABLE proofs (
    batch        BIGINT NOT NULL,
    proof_type   TEXT   NOT NULL,
    blob_key     TEXT   NOT NULL,
    inline_data  BYTEA,
    size         BIGINT NOT NULL,
    digest       BYTEA  NOT NULL CHECK (length(digest) = 32),
    prover       TEXT   NOT NULL,
    prover_name  TEXT   NOT NULL,
    token        BIGINT NOT NULL,
    leased_at    BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    prove_ms     BIGINT NOT NULL,
    PRIMARY KEY (batch, proof_type),
    FOREIGN KEY (batch, proof_type) REFERENCES jobs (batch, proof_type)
);

CREATE TABLE meta (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
