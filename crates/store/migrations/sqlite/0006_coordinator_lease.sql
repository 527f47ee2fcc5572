-- Which coordinator of those sharing this store is active: one row, taken by whoever finds
-- it expired (or absent). `epoch` grows by one at every take; a coordinator's writes commit
-- only while the epoch is the one it took (fencing), so a deposed coordinator cannot write.
-- `expires_at` is in the database's clock (Unix ms), so coordinators' clocks do not matter.
CREATE TABLE coordinator_lease (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    epoch BIGINT NOT NULL,
    holder TEXT NOT NULL,
    url TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
