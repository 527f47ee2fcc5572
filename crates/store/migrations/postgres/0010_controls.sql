-- Parts of a coordinator an operator paused (the proof sender, the committer, sealing, intake,
-- dispatch), with why and since when (Unix ms). A row means paused; resuming deletes it. Kept in
-- the store so that a pause outlives a restart and holds for every coordinator on the store.
CREATE TABLE controls (
    component TEXT   PRIMARY KEY,
    reason    TEXT   NOT NULL,
    since     BIGINT NOT NULL
);
