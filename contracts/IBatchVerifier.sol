// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Verifier of one proof type, for many batches at once.
/// @notice The plug-in point of `Rollup`: one verifier per required proof type, fixed at
/// deployment. A verifier gets the proofs of k consecutive batches in one call, so it may
/// batch-verify them (e.g. a single multi-pairing for Groth16).
interface IBatchVerifier {
    /// @param publicInputs 3 words per batch, in batch order:
    ///        (old state root, new state root, batch commitment).
    /// @param proofs one proof per batch, in the same order.
    /// @return firstInvalid `proofs.length` when every proof is valid, otherwise the index of
    ///         the first invalid proof.
    function verifyBatches(bytes32[] calldata publicInputs, bytes[] calldata proofs)
        external
        view
        returns (uint256 firstInvalid);
}
