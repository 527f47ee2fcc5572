// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IBatchVerifier} from "./IBatchVerifier.sol";

/// @title Groth16 (BN254) batch verifier for proofmill's devnet batch circuit.
/// @notice Verifies k proofs with ONE multi-pairing (k + 3 pairings instead of 4k) by checking a
/// random linear combination of the k Groth16 equations:
///
///     Π_i e(-r_i·A_i, B_i) · e((Σ r_i)·α, β) · e(Σ_i r_i·vk_x_i, γ) · e(Σ_i r_i·C_i, δ) == 1
///
/// with r_0 = 1 and r_i (i > 0) derived by keccak256 from the whole calldata, i.e. from every
/// proof and every public input (Fiat–Shamir): a set with an invalid proof passes with
/// probability about 1/R. Σ_i r_i·vk_x_i is computed as IC_0·(Σ r_i) + Σ_j IC_j·(Σ_i r_i·x_ij),
/// so the public inputs cost 4 ecMuls in total, not per proof.
///
/// When the combined check fails, the first invalid proof is found by bisection over prefixes
/// (each step one combined check of a sub-range), so the rollup can name the batch: about
/// log2(k) extra multi-pairings instead of up to k single verifications.
///
/// Encodings (EIP-196/197, `proofmill_groth16::evm`): a proof is the 256 bytes
/// `A.x, A.y, B.x.c1, B.x.c0, B.y.c1, B.y.c0, C.x, C.y` (32-byte big-endian words); the
/// verifying key is the 22 words `alpha(2) beta(4) gamma(4) delta(4) IC_0..IC_3(2 each)` of
/// `proofmill_groth16::vk_words`, fixed at deployment in immutables (no SLOADs).
///
/// A proof is invalid (never a revert) when it is not 256 bytes, when one of its public inputs is
/// not a canonical scalar (>= R), when a coordinate is not canonical (>= Q), a point is not on
/// the curve or not in the subgroup (the precompiles reject it), or when the pairing check fails.
/// Every precompile call gets exactly its EIP-1108 price, so a failing call burns no more than
/// that and the verifier can go on to attribute the failure; if the transaction itself runs
/// short of gas, it reverts with {InsufficientGas} instead of blaming a proof.
contract Groth16BatchVerifier is IBatchVerifier {
    /// BN254 base-field modulus.
    uint256 internal constant Q = 21888242871839275222246405745257275088696311157297823662689037894645226208583;
    /// BN254 scalar-field modulus (group order).
    uint256 internal constant R = 21888242871839275222246405745257275088548364400416034343698204186575808495617;
    uint256 internal constant PROOF_LEN = 256;
    /// EIP-1108 precompile prices, forwarded exactly (see the contract notice).
    uint256 internal constant EC_ADD_GAS = 150;
    uint256 internal constant EC_MUL_GAS = 6000;
    uint256 internal constant PAIRING_BASE_GAS = 45000;
    uint256 internal constant PAIRING_PAIR_GAS = 34000;
    /// Gas kept aside per precompile call for the call itself and the code around it.
    uint256 internal constant CALL_MARGIN = 1000;

    /// The public inputs are not 3 words per proof.
    error PublicInputsLength(uint256 inputs, uint256 proofs);
    /// A verifying-key point is not a valid curve point.
    error BadVerifyingKey();
    /// Not enough gas left to run a precompile call at its full price.
    error InsufficientGas();

    uint256 private immutable alphaX;
    uint256 private immutable alphaY;
    uint256 private immutable betaX1;
    uint256 private immutable betaX0;
    uint256 private immutable betaY1;
    uint256 private immutable betaY0;
    uint256 private immutable gammaX1;
    uint256 private immutable gammaX0;
    uint256 private immutable gammaY1;
    uint256 private immutable gammaY0;
    uint256 private immutable deltaX1;
    uint256 private immutable deltaX0;
    uint256 private immutable deltaY1;
    uint256 private immutable deltaY0;
    uint256 private immutable ic0X;
    uint256 private immutable ic0Y;
    uint256 private immutable ic1X;
    uint256 private immutable ic1Y;
    uint256 private immutable ic2X;
    uint256 private immutable ic2Y;
    uint256 private immutable ic3X;
    uint256 private immutable ic3Y;

    /// @param vk the verifying key words (layout in the contract notice). Every point must be a
    ///        valid curve point (checked with the precompiles), or deployment reverts.
    constructor(uint256[22] memory vk) {
        // G1 points (alpha, IC_0..IC_3): ecAdd(P, 0) fails unless P is on the curve.
        uint256[5] memory g1 = [uint256(0), 14, 16, 18, 20];
        for (uint256 i = 0; i < 5; ++i) {
            uint256[2] memory acc;
            if (!_mulAdd(acc, vk[g1[i]], vk[g1[i] + 1], 1)) revert BadVerifyingKey();
        }
        // G2 points (beta, gamma, delta): one pairing with the G1 generator fails unless all
        // three are on the twist and in the subgroup. Its result does not matter.
        uint256[] memory pairs = new uint256[](18);
        for (uint256 p = 0; p < 3; ++p) {
            pairs[6 * p] = 1;
            pairs[6 * p + 1] = 2;
            for (uint256 w = 0; w < 4; ++w) {
                pairs[6 * p + 2 + w] = vk[2 + 4 * p + w];
            }
        }
        uint256 g = PAIRING_BASE_GAS + 3 * PAIRING_PAIR_GAS;
        _requireGas(g);
        bool ok;
        assembly ("memory-safe") {
            ok := staticcall(g, 8, add(pairs, 0x20), 576, 0x00, 0x20)
        }
        if (!ok) revert BadVerifyingKey();

        (alphaX, alphaY) = (vk[0], vk[1]);
        (betaX1, betaX0, betaY1, betaY0) = (vk[2], vk[3], vk[4], vk[5]);
        (gammaX1, gammaX0, gammaY1, gammaY0) = (vk[6], vk[7], vk[8], vk[9]);
        (deltaX1, deltaX0, deltaY1, deltaY0) = (vk[10], vk[11], vk[12], vk[13]);
        (ic0X, ic0Y, ic1X, ic1Y) = (vk[14], vk[15], vk[16], vk[17]);
        (ic2X, ic2Y, ic3X, ic3Y) = (vk[18], vk[19], vk[20], vk[21]);
    }

    /// @inheritdoc IBatchVerifier
    /// @dev Reverts only with {PublicInputsLength} (malformed call) or {InsufficientGas}.
    function verifyBatches(bytes32[] calldata publicInputs, bytes[] calldata proofs)
        external
        view
        returns (uint256 firstInvalid)
    {
        uint256 k = proofs.length;
        if (publicInputs.length != 3 * k) revert PublicInputsLength(publicInputs.length, k);
        // Proofs [0, end) are well-formed; `end` (if < k) is invalid whatever the pairings say.
        uint256 end = k;
        for (uint256 i = 0; i < k; ++i) {
            if (
                proofs[i].length != PROOF_LEN || uint256(publicInputs[3 * i]) >= R
                    || uint256(publicInputs[3 * i + 1]) >= R || uint256(publicInputs[3 * i + 2]) >= R
            ) {
                end = i;
                break;
            }
        }
        if (end == 0) return 0;

        uint256[] memory r = _challenges(end);
        if (_check(publicInputs, proofs, r, 0, end)) return end;
        // Invariant: [0, lo) is valid and [lo, hi) holds an invalid proof. A combined check never
        // rejects a valid set, so a failing sub-range surely holds an invalid proof.
        uint256 lo = 0;
        uint256 hi = end;
        while (hi - lo > 1) {
            uint256 mid = lo + (hi - lo) / 2;
            if (_check(publicInputs, proofs, r, lo, mid)) lo = mid;
            else hi = mid;
        }
        return lo;
    }

    /// @dev r_0 = 1, r_i = keccak256(seed, i) mod R (0 mapped to 1), seed = keccak256(msg.data).
    /// msg.data holds every public input and every proof byte, so no r_i is known before all of
    /// them are fixed.
    function _challenges(uint256 n) private pure returns (uint256[] memory r) {
        r = new uint256[](n);
        bytes32 seed = keccak256(msg.data);
        r[0] = 1;
        for (uint256 i = 1; i < n; ++i) {
            uint256 ri = uint256(keccak256(abi.encode(seed, i))) % R;
            r[i] = ri == 0 ? 1 : ri;
        }
    }

    /// @dev The combined check of proofs [lo, hi) with challenges r. False on any failure,
    /// including a precompile rejecting a point of one of these proofs.
    function _check(
        bytes32[] calldata inputs,
        bytes[] calldata proofs,
        uint256[] memory r,
        uint256 lo,
        uint256 hi
    ) private view returns (bool) {
        uint256 n = hi - lo;
        // Pairing input, 6 words per pair: (-r_i·A_i, B_i) for each proof, then (Σr·α, β),
        // (Σ r·vk_x, γ), (Σ r·C, δ).
        uint256[] memory pairs = new uint256[](6 * (n + 3));
        // s[0] = Σ r_i, s[j] = Σ r_i·x_ij (mod R), j = 1..3.
        uint256[4] memory s;
        uint256[2] memory sumC; // Σ r_i·C_i, from the point at infinity
        for (uint256 i = lo; i < hi; ++i) {
            uint256 ri = r[i];
            s[0] = addmod(s[0], ri, R);
            s[1] = addmod(s[1], mulmod(ri, uint256(inputs[3 * i]), R), R);
            s[2] = addmod(s[2], mulmod(ri, uint256(inputs[3 * i + 1]), R), R);
            s[3] = addmod(s[3], mulmod(ri, uint256(inputs[3 * i + 2]), R), R);
            if (!_proofTerms(proofs[i], ri, pairs, 6 * (i - lo), sumC)) return false;
        }
        uint256 w = 6 * n;
        uint256[2] memory acc; // (Σr)·α
        if (!_mulAdd(acc, alphaX, alphaY, s[0])) return false;
        (pairs[w], pairs[w + 1]) = (acc[0], acc[1]);
        (pairs[w + 2], pairs[w + 3], pairs[w + 4], pairs[w + 5]) = (betaX1, betaX0, betaY1, betaY0);

        acc[0] = 0; // Σ r·vk_x = IC_0·Σr + Σ_j IC_j·s_j
        acc[1] = 0;
        if (
            !_mulAdd(acc, ic0X, ic0Y, s[0]) || !_mulAdd(acc, ic1X, ic1Y, s[1]) || !_mulAdd(acc, ic2X, ic2Y, s[2])
                || !_mulAdd(acc, ic3X, ic3Y, s[3])
        ) return false;
        (pairs[w + 6], pairs[w + 7]) = (acc[0], acc[1]);
        (pairs[w + 8], pairs[w + 9], pairs[w + 10], pairs[w + 11]) = (gammaX1, gammaX0, gammaY1, gammaY0);

        (pairs[w + 12], pairs[w + 13]) = (sumC[0], sumC[1]);
        (pairs[w + 14], pairs[w + 15], pairs[w + 16], pairs[w + 17]) = (deltaX1, deltaX0, deltaY1, deltaY0);
        return _pairing(pairs);
    }

    /// @dev Writes (-r·A, B) of proof `p` at word `off` of `pairs` and adds r·C to `sumC`.
    function _proofTerms(bytes calldata p, uint256 ri, uint256[] memory pairs, uint256 off, uint256[2] memory sumC)
        private
        view
        returns (bool ok)
    {
        uint256 dst;
        uint256 ax;
        uint256 ay;
        assembly ("memory-safe") {
            dst := add(add(pairs, 0x20), mul(off, 0x20))
            ax := calldataload(p.offset)
            ay := calldataload(add(p.offset, 0x20))
        }
        if (ri == 1) {
            // -A = (x, Q - y) without an ecMul. The pairing precompile checks the result, not
            // the y given, so a non-canonical y (>= Q) is rejected here, as ecMul would.
            if (ay >= Q) return false;
            assembly ("memory-safe") {
                mstore(dst, ax)
                mstore(add(dst, 0x20), mod(sub(Q, ay), Q))
            }
        } else {
            _requireGas(EC_MUL_GAS);
            assembly ("memory-safe") {
                let m := mload(0x40)
                mstore(m, ax)
                mstore(add(m, 0x20), ay)
                mstore(add(m, 0x40), sub(R, ri)) // -r mod R: the product is -r·A
                ok := staticcall(EC_MUL_GAS, 7, m, 0x60, dst, 0x40)
            }
            if (!ok) return false;
        }
        assembly ("memory-safe") {
            calldatacopy(add(dst, 0x40), add(p.offset, 0x40), 0x80) // B, already in EIP-197 order
        }
        uint256 cx;
        uint256 cy;
        assembly ("memory-safe") {
            cx := calldataload(add(p.offset, 0xc0))
            cy := calldataload(add(p.offset, 0xe0))
        }
        return _mulAdd(sumC, cx, cy, ri);
    }

    /// @dev acc += s·(x, y) with ecMul (skipped for s = 1) and ecAdd. False if a point is invalid.
    function _mulAdd(uint256[2] memory acc, uint256 x, uint256 y, uint256 s) private view returns (bool ok) {
        _requireGas(EC_MUL_GAS + EC_ADD_GAS + CALL_MARGIN);
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, x)
            mstore(add(m, 0x20), y)
            ok := 1
            if iszero(eq(s, 1)) {
                mstore(add(m, 0x40), s)
                ok := staticcall(EC_MUL_GAS, 7, m, 0x60, m, 0x40)
            }
            if ok {
                mstore(add(m, 0x40), mload(acc))
                mstore(add(m, 0x60), mload(add(acc, 0x20)))
                ok := staticcall(EC_ADD_GAS, 6, m, 0x80, acc, 0x40)
            }
        }
    }

    /// @dev The pairing precompile on `pairs` (6 words per pair): true iff it succeeds and the
    /// product of the pairings is 1.
    function _pairing(uint256[] memory pairs) private view returns (bool ok) {
        uint256 nPairs = pairs.length / 6;
        uint256 g = PAIRING_BASE_GAS + PAIRING_PAIR_GAS * nPairs;
        _requireGas(g);
        assembly ("memory-safe") {
            ok := staticcall(g, 8, add(pairs, 0x20), mul(nPairs, 0xc0), 0x00, 0x20)
            ok := and(ok, eq(mload(0x00), 1))
        }
    }

    /// @dev Reverts unless a call forwarding `g` gas gets all of it (EIP-150 keeps 1/64 back):
    /// a precompile starved by a short transaction must not make a valid proof look invalid.
    function _requireGas(uint256 g) private view {
        if (gasleft() < g + g / 63 + CALL_MARGIN) revert InsufficientGas();
    }
}
