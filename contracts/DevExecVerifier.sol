// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IBatchVerifier} from "./IBatchVerifier.sol";

/// @title DEV ONLY verifier for proofmill's `exec` proof type.
/// @notice DEV ONLY, NOT A PROOF SYSTEM: there is no cryptography here. It only checks that a
/// "proof" restates the public values: a proof is valid iff it is exactly the 96 bytes
/// `oldRoot ‖ newRoot ‖ commitment` (`PublicValues::encode()` in proofmill) and equals the
/// public inputs the rollup rebuilt from its storage. Never deploy it where proofs must be sound.
contract DevExecVerifier is IBatchVerifier {
    /// The public inputs are not 3 words per proof.
    error PublicInputsLength(uint256 inputs, uint256 proofs);

    /// @inheritdoc IBatchVerifier
    function verifyBatches(bytes32[] calldata publicInputs, bytes[] calldata proofs)
        external
        pure
        returns (uint256 firstInvalid)
    {
        uint256 k = proofs.length;
        if (publicInputs.length != 3 * k) revert PublicInputsLength(publicInputs.length, k);
        for (uint256 i = 0; i < k; ++i) {
            bytes calldata p = proofs[i];
            if (
                p.length != 96 || bytes32(p[0:32]) != publicInputs[3 * i]
                    || bytes32(p[32:64]) != publicInputs[3 * i + 1]
                    || bytes32(p[64:96]) != publicInputs[3 * i + 2]
            ) {
                return i;
            }
        }
        return k;
    }
}
