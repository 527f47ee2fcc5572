//! Unit and property tests of the devnet.

mod exec;
mod hashing;
mod sequencer;
mod snapshot;

use crate::{Devnet, DevnetConfig};

/// A small devnet for fast tests.
fn small(seed: u64, depth: u8, batch_size: u32) -> Devnet {
    Devnet::new(DevnetConfig {
        seed,
        depth,
        accounts: 8,
        initial_balance: 1000,
        batch_size,
    })
    .expect("valid config")
}
