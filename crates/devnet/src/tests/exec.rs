//! Encoding, stateless execution, tampering and timing.

use super::small;
use crate::input::{HEADER_LEN, MAX_TRANSFERS, record_len};
use crate::transfer::Account;
use crate::tree::SparseMerkleTree;
use crate::{
    BatchInput, DecodeError, Devnet, DevnetConfig, ExecError, Fr, RejectReason, Transfer,
    TransferWitness, batch_commitment, execute_batch_input, fr_to_digest,
};
use proptest::prelude::*;
use std::time::Instant;

fn sample_input() -> (Vec<u8>, crate::StateTransition) {
    let mut d = small(11, 4, 3);
    d.produce_batch();
    let b = d.produce_batch();
    (b.input, b.transition)
}

#[test]
fn encode_decode_round_trip_and_layout() {
    let (bytes, _) = sample_input();
    let input = BatchInput::decode(&bytes).unwrap();
    assert_eq!(input.number, 2);
    assert_eq!(input.depth, 4);
    assert_eq!(input.transfers.len(), 3);
    assert_eq!(bytes.len(), HEADER_LEN + 3 * record_len(4));
    assert_eq!(&bytes[..6], b"PMDB\x01\x04");
    assert_eq!(input.encode(), bytes);
}

#[test]
fn decode_rejects_malformed() {
    let (bytes, _) = sample_input();
    let with = |i: usize, v: u8| {
        let mut b = bytes.clone();
        b[i] = v;
        BatchInput::decode(&b).unwrap_err()
    };
    assert_eq!(with(0, b'X'), DecodeError::BadMagic);
    assert_eq!(with(4, 2), DecodeError::UnsupportedVersion(2));
    assert_eq!(with(5, 0), DecodeError::BadDepth(0));
    assert_eq!(with(5, 33), DecodeError::BadDepth(33));
    assert!(matches!(with(5, 5), DecodeError::LengthMismatch { .. }));
    assert!(matches!(
        with(46, 4),
        DecodeError::LengthMismatch { count: 4, .. }
    ));
    assert_eq!(with(14, 0xff), DecodeError::NonCanonical { offset: 14 });
    let mut huge = bytes[..HEADER_LEN].to_vec();
    huge[46..50].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        BatchInput::decode(&huge),
        Err(DecodeError::TooManyTransfers(u32::MAX))
    );
    // A count at the cap with no body is rejected by length, before allocating.
    huge[46..50].copy_from_slice(&MAX_TRANSFERS.to_le_bytes());
    assert!(matches!(
        BatchInput::decode(&huge),
        Err(DecodeError::LengthMismatch { .. })
    ));
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(matches!(
        BatchInput::decode(&trailing),
        Err(DecodeError::LengthMismatch { .. })
    ));
    for len in 0..bytes.len() {
        assert!(
            BatchInput::decode(&bytes[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    // A sibling >= r in a path.
    let off = HEADER_LEN + 40;
    let mut b = bytes.clone();
    b[off..off + 32].fill(0xff);
    assert_eq!(
        BatchInput::decode(&b),
        Err(DecodeError::NonCanonical { offset: off })
    );
}

/// Whether byte `i` of an encoding at depth 4 is the batch number or a transfer's
/// `from`/`to`/`amount`/`nonce`: content, not witness data.
fn is_content_byte(i: usize) -> bool {
    (6..14).contains(&i) || (i >= HEADER_LEN && (i - HEADER_LEN) % record_len(4) < 24)
}

#[test]
fn every_bit_flip_fails_or_changes_public_values() {
    let (bytes, pv) = sample_input();
    for i in 0..bytes.len() {
        for bit in [0u8, 7] {
            let mut b = bytes.clone();
            b[i] ^= 1 << bit;
            // Tampered witness data (header, old root, leaves, paths) must never execute.
            // Tampered content may still be a valid batch (e.g. `to` flipped between two
            // empty sibling leaves), but then it commits to something else.
            if let Ok(got) = execute_batch_input(&b) {
                assert!(
                    is_content_byte(i),
                    "flip at byte {i} bit {bit} still executes"
                );
                assert_ne!(got.batch_commitment, pv.batch_commitment);
            }
        }
    }
}

#[test]
fn tampered_fields_give_specific_errors() {
    let (bytes, pv) = sample_input();
    let input = BatchInput::decode(&bytes).unwrap();
    let run = |f: &dyn Fn(&mut BatchInput)| {
        let mut i = input.clone();
        f(&mut i);
        execute_batch_input(&i.encode())
    };
    assert_eq!(run(&|_| {}), Ok(pv));
    let one = Fr::from(1u64);
    assert_eq!(
        run(&|i| i.old_root += one),
        Err(ExecError::SenderPath { transfer: 0 })
    );
    assert_eq!(
        run(&|i| i.transfers[1].sender.balance += 1),
        Err(ExecError::SenderPath { transfer: 1 })
    );
    assert_eq!(
        run(&|i| i.transfers[1].sender.nonce += 1),
        Err(ExecError::SenderPath { transfer: 1 })
    );
    assert_eq!(
        run(&|i| i.transfers[2].sender_path[3] += one),
        Err(ExecError::SenderPath { transfer: 2 })
    );
    assert_eq!(
        run(&|i| i.transfers[0].receiver.balance += 1),
        Err(ExecError::ReceiverPath { transfer: 0 })
    );
    assert_eq!(
        run(&|i| i.transfers[0].receiver_path[0] += one),
        Err(ExecError::ReceiverPath { transfer: 0 })
    );
    // The receiver path is taken after the sender update, so it binds the amount.
    assert_eq!(
        run(&|i| i.transfers[2].transfer.amount += 1),
        Err(ExecError::ReceiverPath { transfer: 2 })
    );
    assert_eq!(
        run(&|i| i.transfers[0].transfer.from ^= 1),
        Err(ExecError::SenderPath { transfer: 0 })
    );
    let to = input.transfers[0].transfer.to;
    // Another receiver fails its path (here or, if its leaf equals the real receiver's, in a
    // later transfer whose paths assumed the real one), or is a different valid batch with a
    // different commitment.
    for to2 in (0..16).filter(|&t| t != to) {
        if let Ok(p) = run(&|i| i.transfers[0].transfer.to = to2) {
            assert_ne!(p.batch_commitment, pv.batch_commitment);
        }
    }
    let nonce = input.transfers[1].transfer.nonce;
    assert_eq!(
        run(&|i| i.transfers[1].transfer.nonce += 1),
        Err(ExecError::Rejected {
            transfer: 1,
            reason: RejectReason::BadNonce {
                expected: nonce,
                got: nonce + 1
            }
        })
    );
    assert!(matches!(
        run(&|i| i.transfers[1].transfer.amount = u64::MAX),
        Err(ExecError::Rejected {
            transfer: 1,
            reason: RejectReason::Overdraft { .. }
        })
    ));
    assert!(matches!(
        run(&|i| i.transfers[1].transfer.to = 99),
        Err(ExecError::Rejected {
            reason: RejectReason::UnknownAccount,
            ..
        })
    ));
    assert!(matches!(
        run(&|i| i.transfers[1].transfer.amount = 0),
        Err(ExecError::Rejected {
            reason: RejectReason::ZeroAmount,
            ..
        })
    ));
    assert!(matches!(
        run(&|i| {
            let t = &mut i.transfers[1].transfer;
            t.to = t.from;
        }),
        Err(ExecError::Rejected {
            reason: RejectReason::SelfTransfer,
            ..
        })
    ));
    assert!(matches!(
        run(&|i| {
            i.transfers.swap(0, 1);
        }),
        Err(ExecError::SenderPath { transfer: 0 })
    ));
    assert!(matches!(run(&|i| { i.transfers.pop(); }), Ok(p) if p != pv));
    // Struct-level execution also checks path lengths (the encoding cannot express this).
    let mut short = input.clone();
    short.transfers[0].receiver_path.pop();
    assert_eq!(
        short.execute(),
        Err(ExecError::PathLength {
            transfer: 0,
            depth: 4
        })
    );
}

/// A state no valid devnet reaches (receiver near `u64::MAX`), built by hand: execution
/// must still reject the overflow.
#[test]
fn execution_rejects_overflow_and_accepts_empty_batch() {
    let depth = 3;
    let mut tree = SparseMerkleTree::new(depth).unwrap();
    let (sender, receiver) = (
        Account {
            balance: 10,
            nonce: 0,
        },
        Account {
            balance: u64::MAX - 1,
            nonce: 4,
        },
    );
    tree.set_leaf(1, sender.leaf());
    tree.set_leaf(6, receiver.leaf());
    let old_root = tree.root();
    let sender_path = tree.path(1);
    tree.set_leaf(
        1,
        Account {
            balance: 8,
            nonce: 1,
        }
        .leaf(),
    );
    let receiver_path = tree.path(6);
    let witness = |amount| TransferWitness {
        transfer: Transfer {
            from: 1,
            to: 6,
            amount,
            nonce: 0,
        },
        sender,
        sender_path: sender_path.clone(),
        receiver,
        receiver_path: receiver_path.clone(),
    };
    let input = BatchInput {
        number: 3,
        depth,
        old_root,
        transfers: vec![witness(2)],
    };
    assert_eq!(
        execute_batch_input(&input.encode()),
        Err(ExecError::Rejected {
            transfer: 0,
            reason: RejectReason::Overflow
        })
    );
    // Amount 1 reaches exactly u64::MAX (its receiver path was built for amount 2, so use a
    // fresh one).
    let mut ok_tree = SparseMerkleTree::new(depth).unwrap();
    ok_tree.set_leaf(
        1,
        Account {
            balance: 9,
            nonce: 1,
        }
        .leaf(),
    );
    ok_tree.set_leaf(6, receiver.leaf());
    let mut w = witness(1);
    w.receiver_path = ok_tree.path(6);
    ok_tree.set_leaf(
        6,
        Account {
            balance: u64::MAX,
            nonce: 4,
        }
        .leaf(),
    );
    let input = BatchInput {
        number: 3,
        depth,
        old_root,
        transfers: vec![w.clone()],
    };
    let pv = execute_batch_input(&input.encode()).unwrap();
    assert_eq!(pv.new_state_root, fr_to_digest(ok_tree.root()));
    assert_eq!(
        pv.batch_commitment,
        fr_to_digest(batch_commitment(3, &[w.transfer]))
    );

    let empty = BatchInput {
        number: 9,
        depth,
        old_root,
        transfers: vec![],
    };
    let pv = execute_batch_input(&empty.encode()).unwrap();
    assert_eq!(pv.old_state_root, pv.new_state_root);
    assert_eq!(pv.batch_commitment, fr_to_digest(batch_commitment(9, &[])));
}

#[test]
fn commitment_binds_number_and_order() {
    let t = |n| Transfer {
        from: 0,
        to: 1,
        amount: 1,
        nonce: n,
    };
    let c = batch_commitment(1, &[t(0), t(1)]);
    assert_ne!(c, batch_commitment(2, &[t(0), t(1)]));
    assert_ne!(c, batch_commitment(1, &[t(1), t(0)]));
    assert_ne!(c, batch_commitment(1, &[t(0)]));
    assert_eq!(c, batch_commitment(1, &[t(0), t(1)]));
}

#[test]
fn timing_produce_and_execute_default_config() {
    let mut d = Devnet::new(DevnetConfig::default()).unwrap();
    d.produce_batch(); // warm up the cached Poseidon parameters and empty subtrees
    let runs = 5;
    let (mut produce, mut exec) = (0.0, 0.0);
    for _ in 0..runs {
        let t0 = Instant::now();
        let b = d.produce_batch();
        let t1 = Instant::now();
        let pv = execute_batch_input(&b.input).unwrap();
        let t2 = Instant::now();
        assert_eq!(pv, b.transition);
        produce += (t1 - t0).as_secs_f64() * 1e3 / runs as f64;
        exec += (t2 - t1).as_secs_f64() * 1e3 / runs as f64;
    }
    let t0 = Instant::now();
    let n = 200;
    for i in 0..n {
        std::hint::black_box(crate::hash(&[Fr::from(i as u64), Fr::from(1u64)]));
    }
    let per_hash = t0.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!(
        "devnet timing (depth 16, batch_size 16, {} byte input): produce_batch {produce:.2} ms, \
         execute_batch_input {exec:.2} ms, poseidon hash {per_hash:.1} us",
        HEADER_LEN + 16 * record_len(16)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decode_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = execute_batch_input(&bytes);
        // Same with a valid header prefix, so the body parsing is reached.
        let mut b = b"PMDB\x01\x02".to_vec();
        b.extend_from_slice(&bytes);
        let _ = execute_batch_input(&b);
    }

    #[test]
    fn mutated_valid_input_never_panics(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let (bytes, _) = sample_input();
        let mut b = bytes.clone();
        for (pos, val) in edits {
            let i = pos % b.len();
            b[i] = val;
        }
        let _ = execute_batch_input(&b);
        let _ = execute_batch_input(&b[..cut % (b.len() + 1)]);
    }
}
