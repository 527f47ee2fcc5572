-- Public values become opaque bytes of the rollup's own layout (issue 19): one column instead
-- of the devnet's three 32-byte words, which are concatenated in their order (the devnet's
-- encoding). `||` on blobs keeps every byte; the CAST makes the result a blob again.
ALTER TABLE batches ADD COLUMN public_values BLOB NOT NULL DEFAULT x'';
UPDATE batches SET public_values = CAST(old_root || new_root || commitment AS BLOB);
ALTER TABLE batches DROP COLUMN old_root;
ALTER TABLE batches DROP COLUMN new_root;
ALTER TABLE batches DROP COLUMN commitment;
