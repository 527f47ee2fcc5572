-- Several rollups on one proving cluster (issue 21): batches, jobs, proofs and attempts are
-- named by (chain, batch number), each chain numbering its own batches. Rows stored before
-- are the default chain's (1). Constraint names are Postgres's defaults from 0001.
ALTER TABLE proofs DROP CONSTRAINT proofs_batch_proof_type_fkey;
ALTER TABLE jobs DROP CONSTRAINT jobs_batch_fkey;
ALTER TABLE proofs DROP CONSTRAINT proofs_pkey;
ALTER TABLE jobs DROP CONSTRAINT jobs_pkey;
ALTER TABLE batches DROP CONSTRAINT batches_pkey;

ALTER TABLE batches ADD COLUMN chain BIGINT NOT NULL DEFAULT 1 CHECK (chain >= 0);
ALTER TABLE jobs ADD COLUMN chain BIGINT NOT NULL DEFAULT 1;
ALTER TABLE proofs ADD COLUMN chain BIGINT NOT NULL DEFAULT 1;
ALTER TABLE attempts ADD COLUMN chain BIGINT NOT NULL DEFAULT 1;
-- New rows always name their chain.
ALTER TABLE batches ALTER COLUMN chain DROP DEFAULT;
ALTER TABLE jobs ALTER COLUMN chain DROP DEFAULT;
ALTER TABLE proofs ALTER COLUMN chain DROP DEFAULT;
ALTER TABLE attempts ALTER COLUMN chain DROP DEFAULT;

ALTER TABLE batches ADD PRIMARY KEY (chain, number);
ALTER TABLE jobs ADD PRIMARY KEY (chain, batch, proof_type);
ALTER TABLE proofs ADD PRIMARY KEY (chain, batch, proof_type);
ALTER TABLE jobs ADD FOREIGN KEY (chain, batch) REFERENCES batches (chain, number);
ALTER TABLE proofs ADD FOREIGN KEY (chain, batch, proof_type)
    REFERENCES jobs (chain, batch, proof_type);

DROP INDEX jobs_state_batch;
CREATE INDEX jobs_state_batch ON jobs (state, chain, batch, proof_type);
DROP INDEX attempts_of_job;
CREATE INDEX attempts_of_job ON attempts (chain, batch, proof_type, token);
