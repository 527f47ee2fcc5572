-- Public values become opaque bytes of the rollup's own layout (issue 19): one column instead
-- of the devnet's three 32-byte words, which are concatenated in their order (the devnet's
-- encoding).
ALTER TABLE batches ADD COLUMN public_values BYTEA NOT NULL DEFAULT '\x';
UPDATE batches SET public_values = old_root || new_root || commitment;
ALTER TABLE batches DROP COLUMN old_root, DROP COLUMN new_root, DROP COLUMN commitment;
