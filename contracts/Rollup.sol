// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IBatchVerifier} from "./IBatchVerifier.sol";

/// @title proofmill rollup settlement contract.
/// @notice The sequencer commits batches (new state root + batch commitment) one by one, then
/// settles ranges of consecutive committed batches with one proof per required proof type per
/// batch. Public inputs are always rebuilt from storage, never taken from the caller.
/// Failures are reported with custom errors so the sender can attribute them by selector.
contract Rollup {
    /// The caller is not the sequencer.
    error NotSequencer(address sender);
    /// Batches must be committed / verified strictly in order.
    error WrongBatchNumber(uint256 expected, uint256 got);
    /// The batch (the first uncommitted one of the requested range) has not been committed.
    error BatchNotCommitted(uint256 batchNumber);
    /// The proof of type `proofType` (index into `proofTypes()`) for `batchNumber` is invalid.
    error InvalidProof(uint256 batchNumber, uint256 proofType);
    /// `proofs` must hold one array per proof type, all of the same non-zero length.
    error ProofCountMismatch(uint256 proofType, uint256 expected, uint256 got);
    /// A verifier returned an index beyond the proofs it was given.
    error BadVerifierResult(uint256 proofType, uint256 result);
    /// Constructor arguments are inconsistent (no proof type, length mismatch, zero address).
    error BadConfig();

    event BatchCommitted(uint256 indexed batchNumber, bytes32 newStateRoot, bytes32 batchCommitment);
    event BatchesVerified(uint256 indexed firstBatchNumber, uint256 indexed lastBatchNumber);

    struct BatchData {
        bytes32 stateRoot;
        bytes32 commitment;
    }

    address public immutable sequencer;
    uint256 public lastCommittedBatch;
    uint256 public lastVerifiedBatch;

    /// batches[0].stateRoot is the genesis state root.
    mapping(uint256 => BatchData) private batches;
    string[] private types;
    IBatchVerifier[] private verifierList;

    constructor(address sequencer_, bytes32 genesisStateRoot, string[] memory proofTypes_, address[] memory verifiers_) {
        if (sequencer_ == address(0) || proofTypes_.length == 0 || proofTypes_.length != verifiers_.length) {
            revert BadConfig();
        }
        sequencer = sequencer_;
        batches[0].stateRoot = genesisStateRoot;
        for (uint256 t = 0; t < verifiers_.length; ++t) {
            if (verifiers_[t] == address(0)) revert BadConfig();
            types.push(proofTypes_[t]);
            verifierList.push(IBatchVerifier(verifiers_[t]));
        }
    }

    modifier onlySequencer() {
        if (msg.sender != sequencer) revert NotSequencer(msg.sender);
        _;
    }

    /// @notice State root after batch `batchNumber` (0: the genesis root).
    function stateRoot(uint256 batchNumber) external view returns (bytes32) {
        if (batchNumber > lastCommittedBatch) revert BatchNotCommitted(batchNumber);
        return batches[batchNumber].stateRoot;
    }

    /// @notice Commitment of batch `batchNumber` (zero for batch 0).
    function batchCommitment(uint256 batchNumber) external view returns (bytes32) {
        if (batchNumber > lastCommittedBatch) revert BatchNotCommitted(batchNumber);
        return batches[batchNumber].commitment;
    }

    function proofTypes() external view returns (string[] memory) {
        return types;
    }

    function verifiers() external view returns (IBatchVerifier[] memory) {
        return verifierList;
    }

    function commitBatch(uint256 batchNumber, bytes32 newStateRoot, bytes32 commitment) external onlySequencer {
        uint256 expected = lastCommittedBatch + 1;
        if (batchNumber != expected) revert WrongBatchNumber(expected, batchNumber);
        batches[batchNumber] = BatchData(newStateRoot, commitment);
        lastCommittedBatch = batchNumber;
        emit BatchCommitted(batchNumber, newStateRoot, commitment);
    }

    /// @notice Settles batches `firstBatchNumber .. firstBatchNumber + k - 1`.
    /// @param proofs `proofs[t][i]` is the proof of proof type `t` for batch `firstBatchNumber + i`.
    function verifyBatches(uint256 firstBatchNumber, bytes[][] calldata proofs) external onlySequencer {
        uint256 expected = lastVerifiedBatch + 1;
        if (firstBatchNumber != expected) revert WrongBatchNumber(expected, firstBatchNumber);
        uint256 nTypes = verifierList.length;
        if (proofs.length != nTypes) revert ProofCountMismatch(type(uint256).max, nTypes, proofs.length);
        uint256 k = proofs[0].length;
        if (k == 0) revert ProofCountMismatch(0, 1, 0);
        for (uint256 t = 1; t < nTypes; ++t) {
            if (proofs[t].length != k) revert ProofCountMismatch(t, k, proofs[t].length);
        }
        uint256 last = firstBatchNumber + k - 1;
        uint256 committed = lastCommittedBatch;
        if (last > committed) revert BatchNotCommitted(committed + 1);

        bytes32[] memory publicInputs = new bytes32[](3 * k);
        bytes32 prevRoot = batches[firstBatchNumber - 1].stateRoot;
        for (uint256 i = 0; i < k; ++i) {
            BatchData storage b = batches[firstBatchNumber + i];
            bytes32 root = b.stateRoot;
            publicInputs[3 * i] = prevRoot;
            publicInputs[3 * i + 1] = root;
            publicInputs[3 * i + 2] = b.commitment;
            prevRoot = root;
        }
        for (uint256 t = 0; t < nTypes; ++t) {
            uint256 firstInvalid = verifierList[t].verifyBatches(publicInputs, proofs[t]);
            if (firstInvalid < k) revert InvalidProof(firstBatchNumber + firstInvalid, t);
            if (firstInvalid != k) revert BadVerifierResult(t, firstInvalid);
        }
        lastVerifiedBatch = last;
        emit BatchesVerified(firstBatchNumber, last);
    }
}
