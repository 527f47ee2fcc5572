//! Synthesis creates no tracing spans, whatever subscriber the process installed: arkworks'
//! gadgets leak one INFO span per namespace (target `gr1cs`) and keep the current span per
//! constraint, which under the default `info` filter took a coordinator loading the demo
//! keys past 3 GB. A subscriber that enables everything counts what is created.

use proofmill_backend::{Backend, ProveRequest};
use proofmill_devnet::{Devnet, DevnetConfig};
use proofmill_groth16::{Groth16Backend, Shape, constraint_count, load_or_dev_setup};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

#[derive(Default)]
struct Counts {
    spans: AtomicU64,
    gr1cs: AtomicU64,
}

/// Enables every span and event and counts the spans created.
struct Counting(Arc<Counts>);

impl Subscriber for Counting {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(tracing::level_filters::LevelFilter::TRACE)
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let n = self.0.spans.fetch_add(1, Ordering::Relaxed);
        if span.metadata().target().starts_with("gr1cs") {
            self.0.gr1cs.fetch_add(1, Ordering::Relaxed);
        }
        Id::from_u64(n + 1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, _: &Event<'_>) {}
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn setup_key_check_and_proving_create_no_gr1cs_span() {
    let shape = Shape::new(2, 4).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut net = Devnet::new(DevnetConfig {
        seed: 3,
        depth: 4,
        accounts: 6,
        initial_balance: 1_000,
        batch_size: 2,
    })
    .unwrap();
    let batch = net.produce_batch();

    let counts = Arc::new(Counts::default());
    let dispatch = tracing::Dispatch::new(Counting(counts.clone()));
    tracing::dispatcher::with_default(&dispatch, || {
        // The counter sees a gr1cs span when one is made (the probe), so zero below means none.
        drop(tracing::info_span!(target: "gr1cs", "probe"));
        assert!(constraint_count(shape).unwrap() > 0);
        // DEV setup, then loading from the cache (which re-synthesizes to check the pair).
        load_or_dev_setup(dir.path(), shape).unwrap();
        load_or_dev_setup(dir.path(), shape).unwrap();
        let backend = Groth16Backend::new(dir.path(), shape);
        let proof = backend
            .prove(&ProveRequest {
                batch: batch.number,
                input: &batch.input,
                expected: &batch.transition.to_public_values(),
            })
            .unwrap();
        backend
            .verify(&batch.transition.to_public_values(), &proof)
            .unwrap();
    });
    assert_eq!(
        counts.gr1cs.load(Ordering::Relaxed),
        1,
        "only the probe: synthesis opened no gr1cs span ({} spans in all)",
        counts.spans.load(Ordering::Relaxed)
    );
}
