//! The circuit's constraint system checked directly (no keys, no proving): invalid
//! transitions leave it unsatisfied, padding cannot hide in the middle, constraint counts.

use ark_bn254::Fr;
use ark_ff::One;
use proofmill_devnet::tree::SparseMerkleTree;
use proofmill_devnet::{Account, BatchInput, Transfer, TransferWitness, batch_commitment};
use proofmill_groth16::circuit::SlotWitness;
use proofmill_groth16::{BatchCircuit, PublicInputs, Shape, constraint_count};

const N: usize = 3;
const DEPTH: u8 = 5;

fn shape() -> Shape {
    Shape::new(N, DEPTH).unwrap()
}

/// Builds a batch input by hand against a tree holding `accounts`, applying `transfers`
/// *without* validation (wrapping u64 arithmetic), and returns it with the public inputs
/// that this unchecked application implies.
fn craft(accounts: &[(u32, Account)], transfers: &[Transfer]) -> (BatchInput, PublicInputs) {
    let mut tree = SparseMerkleTree::new(DEPTH).unwrap();
    let mut state = std::collections::BTreeMap::new();
    for &(i, a) in accounts {
        tree.set_leaf(i, a.leaf());
        state.insert(i, a);
    }
    let old_root = tree.root();
    let mut witnesses = Vec::new();
    for t in transfers {
        let sender: Account = state.get(&t.from).copied().unwrap_or_default();
        let sender_path = tree.path(t.from);
        let new_sender = Account {
            balance: sender.balance.wrapping_sub(t.amount),
            nonce: sender.nonce.wrapping_add(1),
        };
        tree.set_leaf(t.from, new_sender.leaf());
        state.insert(t.from, new_sender);
        let receiver: Account = state.get(&t.to).copied().unwrap_or_default();
        let receiver_path = tree.path(t.to);
        let new_receiver = Account {
            balance: receiver.balance.wrapping_add(t.amount),
            nonce: receiver.nonce,
        };
        tree.set_leaf(t.to, new_receiver.leaf());
        state.insert(t.to, new_receiver);
        witnesses.push(TransferWitness {
            transfer: *t,
            sender,
            sender_path,
            receiver,
            receiver_path,
        });
    }
    let public = PublicInputs {
        old_root,
        new_root: tree.root(),
        commitment: batch_commitment(4, transfers),
    };
    let input = BatchInput {
        number: 4,
        depth: DEPTH,
        old_root,
        transfers: witnesses,
    };
    (input, public)
}

fn satisfied(input: &BatchInput, public: PublicInputs) -> bool {
    let circuit = BatchCircuit::with_public(shape(), input, public).unwrap();
    circuit.synthesize().unwrap().is_satisfied().unwrap()
}

fn acct(balance: u64, nonce: u64) -> Account {
    Account { balance, nonce }
}

fn tx(from: u32, to: u32, amount: u64, nonce: u64) -> Transfer {
    Transfer {
        from,
        to,
        amount,
        nonce,
    }
}

#[test]
fn invalid_transitions_are_unsatisfied() {
    let genesis = [
        (0, acct(50, 0)),
        (1, acct(10, 3)),
        (2, acct(u64::MAX - 5, 0)),
    ];
    // Sanity: the crafting helper gives a satisfied system for a valid batch, and the
    // devnet's executor agrees with it.
    let (input, public) = craft(&genesis, &[tx(0, 1, 20, 0), tx(1, 7, 30, 3)]);
    assert_eq!(input.execute().unwrap().new_root, public.new_root);
    assert!(satisfied(&input, public));

    // Forged public inputs for a valid witness.
    for forged in [
        PublicInputs {
            new_root: public.new_root + Fr::one(),
            ..public
        },
        PublicInputs {
            old_root: public.old_root + Fr::one(),
            ..public
        },
        PublicInputs {
            commitment: public.commitment + Fr::one(),
            ..public
        },
    ] {
        assert!(!satisfied(&input, forged));
    }

    let cases: Vec<(&str, Vec<Transfer>)> = vec![
        ("overdraft", vec![tx(0, 1, 51, 0)]),
        (
            "overdraft after a valid transfer",
            vec![tx(0, 1, 20, 0), tx(0, 3, 31, 1)],
        ),
        ("bad nonce", vec![tx(0, 1, 5, 1)]),
        ("zero amount", vec![tx(0, 1, 0, 0)]),
        ("self transfer", vec![tx(0, 0, 5, 0)]),
        ("receiver overflow", vec![tx(0, 2, 6, 0)]),
        ("empty sender", vec![tx(9, 1, 1, 0)]),
    ];
    for (name, transfers) in cases {
        let (input, public) = craft(&genesis, &transfers);
        assert!(input.execute().is_err(), "{name}: devnet accepts it");
        assert!(!satisfied(&input, public), "{name}: circuit accepts it");
    }

    // Sender nonce overflow (a valid config cannot reach it; crafted here).
    let (input, public) = craft(&[(0, acct(50, u64::MAX))], &[tx(0, 1, 5, u64::MAX)]);
    assert!(input.execute().is_err());
    assert!(!satisfied(&input, public));

    // Tampered paths: a sender sibling, a receiver sibling.
    let (valid, public) = craft(&genesis, &[tx(0, 1, 20, 0)]);
    for receiver in [false, true] {
        let mut input = valid.clone();
        let w = &mut input.transfers[0];
        let path = if receiver {
            &mut w.receiver_path
        } else {
            &mut w.sender_path
        };
        path[2] += Fr::one();
        assert!(
            !satisfied(&input, public),
            "tampered path (receiver: {receiver})"
        );
    }
    // A wrong sender preimage (claiming a larger balance).
    let mut input = valid.clone();
    input.transfers[0].sender.balance += 100;
    assert!(!satisfied(&input, public));
}

#[test]
fn padding_cannot_hide_in_the_middle() {
    let genesis = [(0, acct(50, 0)), (1, acct(10, 0))];
    let (input, public) = craft(&genesis, &[tx(0, 1, 20, 0)]);
    let circuit = BatchCircuit::with_public(shape(), &input, public).unwrap();
    assert!(
        circuit
            .clone()
            .synthesize()
            .unwrap()
            .is_satisfied()
            .unwrap()
    );
    // Move the active transfer to slot 1 behind an inactive slot 0: same roots and
    // commitment, but not a prefix.
    let mut moved = circuit.clone();
    moved.slots.swap(0, 1);
    assert!(!moved.slots[0].active && moved.slots[1].active);
    assert!(!moved.synthesize().unwrap().is_satisfied().unwrap());
    // Switching the real transfer's slot off leaves the roots unchanged, so the claimed
    // new root fails: an "inactive" slot cannot smuggle a state change.
    let mut off = circuit.clone();
    off.slots[0].active = false;
    assert!(!off.synthesize().unwrap().is_satisfied().unwrap());
    // A trailing inactive slot may carry arbitrary (here: a copy of a real transfer's)
    // data; it changes nothing and the system stays satisfied.
    let noop = SlotWitness {
        active: false,
        ..circuit.slots[0].clone()
    };
    let mut junk = circuit;
    junk.slots[2] = noop;
    assert!(junk.synthesize().unwrap().is_satisfied().unwrap());
}

#[test]
fn constraint_counts_per_transfer() {
    println!("depth | constraints/transfer | fixed (N=1 total - per transfer)");
    for depth in [4u8, 8, 16, 20, 32] {
        let one = constraint_count(Shape::new(1, depth).unwrap()).unwrap();
        let two = constraint_count(Shape::new(2, depth).unwrap()).unwrap();
        let per = two - one;
        println!("{depth:>5} | {per:>20} | {}", one - per);
        // 4(D+1) two-input hashes + 3 permutations for the commitment step, ~243 each.
        assert!(per > 243 * (4 * (usize::from(depth) + 1)));
        assert!(per < 300 * (4 * (usize::from(depth) + 1) + 3) + 1000);
    }
}
