//! Config, mempool, sealing, determinism and restart.

use super::small;
use crate::transfer::{Account, apply_transfer};
use crate::{ConfigError, Devnet, DevnetConfig, ExecError, RejectReason, Transfer};

fn tx(from: u32, to: u32, amount: u64, nonce: u64) -> Transfer {
    Transfer {
        from,
        to,
        amount,
        nonce,
    }
}

#[test]
fn config_validation() {
    let ok = DevnetConfig::default();
    assert_eq!(
        (ok.depth, ok.accounts, ok.initial_balance, ok.batch_size),
        (16, 64, 1_000_000, 16)
    );
    assert!(ok.validate().is_ok());
    let bad = |c: DevnetConfig| Devnet::new(c).err();
    assert_eq!(
        bad(DevnetConfig { depth: 0, ..ok }),
        Some(ConfigError::BadDepth(0))
    );
    assert_eq!(
        bad(DevnetConfig { depth: 33, ..ok }),
        Some(ConfigError::BadDepth(33))
    );
    assert!(matches!(
        bad(DevnetConfig {
            depth: 3,
            accounts: 9,
            ..ok
        }),
        Some(ConfigError::TooManyAccounts {
            accounts: 9,
            capacity: 8
        })
    ));
    assert!(
        Devnet::new(DevnetConfig {
            depth: 3,
            accounts: 8,
            ..ok
        })
        .is_ok()
    );
    assert_eq!(
        bad(DevnetConfig {
            batch_size: 0,
            ..ok
        }),
        Some(ConfigError::ZeroBatchSize)
    );
    assert_eq!(
        bad(DevnetConfig { accounts: 0, ..ok }),
        Some(ConfigError::NoFunds)
    );
    assert_eq!(
        bad(DevnetConfig {
            initial_balance: 0,
            ..ok
        }),
        Some(ConfigError::NoFunds)
    );
    assert!(matches!(
        bad(DevnetConfig {
            initial_balance: u64::MAX,
            ..ok
        }),
        Some(ConfigError::SupplyOverflow { .. })
    ));
}

#[test]
fn genesis_state() {
    let d = Devnet::new(DevnetConfig::default()).unwrap();
    assert_eq!(d.next_batch_number(), 1);
    assert_eq!(d.account(0), (1_000_000, 0));
    assert_eq!(d.account(63), (1_000_000, 0));
    assert_eq!(d.account(64), (0, 0));
    assert_eq!(d.pending_len(), 0);
    let other = Devnet::new(DevnetConfig {
        accounts: 63,
        ..DevnetConfig::default()
    })
    .unwrap();
    assert_ne!(d.state_root(), other.state_root());
}

#[test]
fn mempool_rejects_invalid_and_changes_nothing() {
    let mut d = small(1, 4, 16);
    d.submit(tx(0, 1, 10, 0)).unwrap();
    let root = d.state_root();
    let snapshot = |d: &Devnet| {
        (
            d.pending_len(),
            d.pending_account(0),
            d.pending_account(1),
            d.pending_account(15),
        )
    };
    let before = snapshot(&d);
    let cases = [
        (
            tx(0, 1, 991, 1),
            RejectReason::Overdraft {
                balance: 990,
                amount: 991,
            },
        ),
        (
            tx(0, 1, 5, 0),
            RejectReason::BadNonce {
                expected: 1,
                got: 0,
            },
        ),
        (
            tx(0, 1, 5, 2),
            RejectReason::BadNonce {
                expected: 1,
                got: 2,
            },
        ),
        (tx(2, 2, 5, 0), RejectReason::SelfTransfer),
        (tx(2, 3, 0, 0), RejectReason::ZeroAmount),
        (tx(16, 3, 1, 0), RejectReason::UnknownAccount),
        (tx(2, 16, 1, 0), RejectReason::UnknownAccount),
        (tx(2, u32::MAX, 1, 0), RejectReason::UnknownAccount),
        (
            tx(9, 2, 1, 0),
            RejectReason::Overdraft {
                balance: 0,
                amount: 1,
            },
        ),
    ];
    for (t, reason) in cases {
        assert_eq!(d.submit(t), Err(reason), "{t:?}");
        assert_eq!(
            snapshot(&d),
            before,
            "rejected {t:?} changed the mempool state"
        );
        assert_eq!(d.state_root(), root);
    }
    // Pending state chains: the next nonce and the reduced balance are what count.
    d.submit(tx(0, 2, 990, 1)).unwrap();
    assert_eq!(d.pending_account(0), (0, 2));
    assert_eq!(
        d.account(0),
        (1000, 0),
        "committed state moves only on seal"
    );
    assert_eq!(
        d.submit(tx(0, 2, 1, 2)),
        Err(RejectReason::Overdraft {
            balance: 0,
            amount: 1
        })
    );
    // Sealed batches never contain the rejected transfers.
    let batch = d.seal().unwrap();
    assert_eq!(batch.transfers, 2);
    assert_eq!(d.account(0), (0, 2));
    assert_eq!(d.account(2), (1990, 0));
}

#[test]
fn mempool_rejects_overflow() {
    let mut d = small(1, 4, 16);
    d.force_account(
        1,
        Account {
            balance: u64::MAX - 5,
            nonce: 0,
        },
    );
    d.force_account(
        3,
        Account {
            balance: 10,
            nonce: u64::MAX,
        },
    );
    let root = d.state_root();
    assert_eq!(d.submit(tx(0, 1, 6, 0)), Err(RejectReason::Overflow));
    assert_eq!(
        d.submit(tx(3, 0, 1, u64::MAX)),
        Err(RejectReason::Overflow),
        "nonce overflow"
    );
    assert_eq!(
        (d.pending_len(), d.pending_account(0), d.state_root()),
        (0, (1000, 0), root)
    );
    d.submit(tx(0, 1, 5, 0)).unwrap();
    assert_eq!(d.pending_account(1), (u64::MAX, 0));
    let r = apply_transfer(
        &tx(0, 1, 1, 0),
        Account {
            balance: 1,
            nonce: 0,
        },
        Account {
            balance: u64::MAX,
            nonce: 0,
        },
    );
    assert_eq!(r, Err(RejectReason::Overflow));
}

#[test]
fn seal_respects_batch_size_and_order() {
    let mut d = small(1, 5, 4);
    assert!(d.seal().is_none());
    for n in 0..6 {
        d.submit(tx(0, 1 + n as u32 % 3, 1, n)).unwrap();
    }
    let b1 = d.seal().unwrap();
    assert_eq!((b1.number, b1.transfers, d.pending_len()), (1, 4, 2));
    let b2 = d.seal().unwrap();
    assert_eq!((b2.number, b2.transfers, d.pending_len()), (2, 2, 0));
    assert!(d.seal().is_none());
    assert_eq!(d.next_batch_number(), 3);
    assert_eq!(b1.transition.new_state_root, b2.transition.old_state_root);
    assert_eq!(d.account(0), (994, 6));
    let order: Vec<Transfer> = crate::BatchInput::decode(&b1.input)
        .unwrap()
        .transfers
        .iter()
        .map(|w| w.transfer)
        .collect();
    assert_eq!(
        order,
        (0..4)
            .map(|n| tx(0, 1 + n as u32 % 3, 1, n))
            .collect::<Vec<_>>()
    );
}

#[test]
fn determinism_same_seed_same_batches() {
    let config = DevnetConfig {
        seed: 42,
        ..DevnetConfig::default()
    };
    let mut a = Devnet::new(config).unwrap();
    let mut b = Devnet::new(config).unwrap();
    let mut c = Devnet::new(DevnetConfig { seed: 43, ..config }).unwrap();
    for n in 1..=5 {
        let (ba, bb, bc) = (a.produce_batch(), b.produce_batch(), c.produce_batch());
        assert_eq!(ba.number, n);
        assert_eq!(ba.transfers, 16);
        assert_eq!(ba.input, bb.input, "batch {n} differs with the same seed");
        assert_eq!(ba, bb);
        assert_ne!(ba.input, bc.input, "batch {n} equal with different seeds");
    }
    assert_eq!(a.state_root(), b.state_root());
    assert_ne!(a.state_root(), c.state_root());
}

#[test]
fn produced_batches_execute_to_sealed_public_values() {
    let mut d = small(7, 6, 16);
    let mut prev = d.state_root();
    for _ in 0..10 {
        let batch = d.produce_batch();
        assert_eq!(batch.transfers, 16);
        let pv = crate::execute_batch_input(&batch.input).unwrap();
        assert_eq!(pv, batch.transition);
        assert_eq!(pv.old_state_root, crate::fr_to_digest(prev));
        prev = d.state_root();
        assert_eq!(pv.new_state_root, crate::fr_to_digest(prev));
        assert_ne!(pv.old_state_root, pv.new_state_root);
    }
}

#[test]
fn restart_by_replay_gives_identical_next_batch() {
    let config = DevnetConfig {
        seed: 9,
        ..DevnetConfig::default()
    };
    let mut a = Devnet::new(config).unwrap();
    let batches: Vec<_> = (0..5).map(|_| a.produce_batch()).collect();

    let mut b = Devnet::new(config).unwrap();
    // Out of order and tampered replays fail and leave the state alone.
    assert!(matches!(
        b.replay(&batches[1].input),
        Err(ExecError::WrongBatch {
            expected: 1,
            got: 2
        })
    ));
    let mut bad = batches[0].input.clone();
    let last = bad.len() - 1;
    bad[last - 40] ^= 1;
    assert!(b.replay(&bad).is_err());
    assert!(matches!(b.replay(&bad[..10]), Err(ExecError::Decode(_))));
    assert_eq!(b.next_batch_number(), 1);

    for batch in &batches[..4] {
        assert_eq!(b.replay(&batch.input).unwrap(), batch.transition);
    }
    assert_eq!(b.next_batch_number(), 5);
    assert_eq!(
        crate::fr_to_digest(b.state_root()),
        batches[3].transition.new_state_root
    );
    assert_eq!(b.produce_batch(), batches[4]);
    assert_eq!(a.state_root(), b.state_root());
    assert_eq!(a.account(0), b.account(0));
}

#[test]
fn replay_preconditions() {
    let config = DevnetConfig {
        seed: 3,
        depth: 8,
        ..DevnetConfig::default()
    };
    let mut a = Devnet::new(config).unwrap();
    let b1 = a.produce_batch();

    let mut busy = Devnet::new(config).unwrap();
    busy.submit(tx(0, 1, 1, 0)).unwrap();
    assert_eq!(busy.replay(&b1.input), Err(ExecError::PendingNotEmpty(1)));

    let mut other_root = Devnet::new(DevnetConfig {
        initial_balance: 5,
        ..config
    })
    .unwrap();
    assert!(matches!(
        other_root.replay(&b1.input),
        Err(ExecError::OldRootMismatch { .. })
    ));

    let mut other_depth = Devnet::new(DevnetConfig { depth: 9, ..config }).unwrap();
    assert!(matches!(
        other_depth.replay(&b1.input),
        Err(ExecError::WrongDepth {
            expected: 9,
            got: 8
        })
    ));
    assert_eq!(other_depth.next_batch_number(), 1);
}

#[test]
fn fill_random_tops_up_and_terminates() {
    // One funded account with a balance of 1: one transfer drains it, but money moves on.
    let mut d = Devnet::new(DevnetConfig {
        seed: 5,
        depth: 3,
        accounts: 1,
        initial_balance: 1,
        batch_size: 8,
    })
    .unwrap();
    for _ in 0..5 {
        let b = d.produce_batch();
        assert!(b.transfers >= 1);
        assert_eq!(crate::execute_batch_input(&b.input).unwrap(), b.transition);
    }
    let total: u64 = (0..8).map(|i| d.account(i).0).sum();
    assert_eq!(total, 1, "supply is conserved");

    let mut d = small(1, 4, 4);
    d.submit(tx(0, 1, 1, 0)).unwrap();
    d.fill_random();
    assert_eq!(d.pending_len(), 4);
    d.fill_random();
    assert_eq!(d.pending_len(), 4);
}
