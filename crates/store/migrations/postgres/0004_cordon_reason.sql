-- Why a prover is out of rotation: an operator's cordon, or one the coordinator set by itself
-- (a prover that kept sending invalid proofs). Shown in status.
ALTER TABLE cordons ADD COLUMN reason TEXT NOT NULL DEFAULT '';
