-- Commit transactions on L1 (`commitBatch`), one row per committed batch: its hash, gas, the
-- block it was mined in, and `recorded_at` (Unix ms when the committer saw it mined, or found
-- it on L1 after a restart). Written by the committer once the receipt (or the chain's
-- `BatchCommitted` event) is seen; rewritten only with what L1 says, so a replay changes nothing.
CREATE TABLE commit_records (
    batch        BIGINT PRIMARY KEY NOT NULL CHECK (batch >= 0),
    tx_hash      TEXT   NOT NULL,
    gas_used     BIGINT NOT NULL,
    block        BIGINT NOT NULL,
    recorded_at  BIGINT NOT NULL
);
