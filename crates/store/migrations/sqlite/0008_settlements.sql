-- Settling transactions on L1 (`verifyBatches`), one row each: the record of every batch in
-- `first_batch..=last_batch` once `settled`, or the one transaction about to be sent
-- (`pending`, its hash and gas not known yet), which says after a crash what was in flight.
-- Written by the same transaction as the writes they belong with. `recorded_at`: Unix ms
-- when written; 0 for records kept in the meta table before this table existed.
CREATE TABLE settlements (
    state        TEXT    NOT NULL CHECK (state IN ('pending', 'settled')),
    first_batch  INTEGER NOT NULL CHECK (first_batch >= 0),
    last_batch   INTEGER NOT NULL CHECK (last_batch >= first_batch),
    tx_hash      TEXT    NOT NULL,
    gas_used     INTEGER NOT NULL,
    recorded_at  INTEGER NOT NULL,
    PRIMARY KEY (state, first_batch)
) STRICT, WITHOUT ROWID;
-- At most one transaction is pending.
CREATE UNIQUE INDEX settlements_one_pending ON settlements (state) WHERE state = 'pending';
