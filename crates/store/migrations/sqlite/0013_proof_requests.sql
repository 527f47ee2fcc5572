-- The proof manager (issue 22): one row per batch a rollup offers to the proof market, keyed
-- by (chain, batch). `status` follows zkSync's proof manager (ready_to_be_proven,
-- request_sent_to_l1, acknowledged, received_proof, validation_result_sent_to_l1) and closes
-- without a valid proof as refused, timed_out or not_sent; `fallback_reason` says why the batch
-- goes to the own provers and `fallbacked` (0/1) that it was handed to them. `deadline` and
-- `ack_deadline` are L1 chain times (Unix s); `*_sent_at`, `created_at`, `updated_at` Unix ms.
-- `done` (0/1) is derived from the rest on every write: nothing is left to do for the row.
CREATE TABLE proof_requests (
    chain               INTEGER NOT NULL CHECK (chain >= 0),
    batch               INTEGER NOT NULL CHECK (batch >= 0),
    status              TEXT    NOT NULL CHECK (status IN ('ready_to_be_proven',
                            'request_sent_to_l1', 'acknowledged', 'received_proof',
                            'validation_result_sent_to_l1', 'refused', 'timed_out', 'not_sent')),
    fallback_reason     TEXT    CHECK (fallback_reason IN ('not_acknowledged', 'refused',
                            'not_proven', 'invalid_proof', 'not_sent')),
    fallbacked          INTEGER NOT NULL CHECK (fallbacked IN (0, 1)),
    assigned_to         TEXT,
    inputs_url          TEXT    NOT NULL,
    inputs_digest       BLOB    NOT NULL CHECK (length(inputs_digest) = 32),
    proof_url           TEXT,
    request_tx_hash     TEXT,
    request_sent_at     INTEGER,
    validation_tx_hash  TEXT,
    validation_sent_at  INTEGER,
    validation_status   TEXT    NOT NULL CHECK (validation_status IN ('none', 'valid', 'invalid')),
    deadline            INTEGER,
    ack_deadline        INTEGER,
    done                INTEGER NOT NULL CHECK (done IN (0, 1)),
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    PRIMARY KEY (chain, batch)
) STRICT, WITHOUT ROWID;
-- The proof manager's working set: the rows not done.
CREATE INDEX proof_requests_open ON proof_requests (chain, batch) WHERE done = 0;

-- The market watcher's last processed L1 block, per market contract and chain.
CREATE TABLE market_cursors (
    market      TEXT    NOT NULL,
    chain       INTEGER NOT NULL CHECK (chain >= 0),
    last_block  INTEGER NOT NULL CHECK (last_block >= 0),
    PRIMARY KEY (market, chain)
) STRICT, WITHOUT ROWID;
