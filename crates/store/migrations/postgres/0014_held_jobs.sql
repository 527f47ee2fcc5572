-- The proof market (issue 22): a job of a batch offered to a proving network starts 'held'
-- (the own provers do not take it until the market falls back). The constraint's name is
-- Postgres's default from 0001.
ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('queued', 'leased', 'proven', 'failed', 'cancelled', 'held'));
