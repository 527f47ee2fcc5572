//! The model from fixture messages, and what it draws on ratatui's test backend.

use proofmill_monitor::{
    Action, Focus, Key, KeyOutcome, MAX_EVENTS, MAX_JOBS, Model, SENDER, Severity, Snapshot,
    THROUGHPUT_BUCKET_MS, THROUGHPUT_BUCKETS, render,
};
use proofmill_proto::v1::watch_event::Event;
use proofmill_proto::v1::{
    AttemptEnded, AttemptStarted, BatchesTaken, ChainSeen, CommitTxInfo, ComponentPaused,
    JobChanged, JobCounts, JobInfo, ProverConnected, ProverCordoned, ProverInfo,
    SystemStatusResponse, VerifyTxInfo, WatchEvent,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// 2026-12-05 13:00:00 UTC.
const NOW: u64 = 1_796_475_600_000;

fn prover(id: &str, name: &str) -> ProverInfo {
    ProverInfo {
        id: id.into(),
        name: name.into(),
        proof_types: vec!["exec".into()],
        capacity: 2,
        connected: true,
        last_seen_ms: NOW,
        proofs_accepted: 5,
        ..Default::default()
    }
}

fn job(batch: u64, state: &str, owner: &str) -> JobInfo {
    JobInfo {
        batch,
        proof_type: "exec".into(),
        state: state.into(),
        lease_owner: owner.into(),
        updated_at_ms: NOW - 1000,
        ..Default::default()
    }
}

fn fixture() -> Snapshot {
    let mut jobs = std::collections::HashMap::new();
    jobs.insert(
        "exec".to_string(),
        JobCounts {
            queued: 3,
            leased: 1,
            proven: 40,
            failed: 0,
            cancelled: 0,
            held: 0,
        },
    );
    Snapshot {
        status: SystemStatusResponse {
            last_sealed_batch: Some(44),
            last_proven_batch: Some(40),
            last_committed_batch: Some(39),
            last_verified_batch: Some(38),
            jobs,
            provers: vec![prover("p-2", "zeta"), prover("p-1", "alpha-gpu")],
            required_proof_types: vec!["exec".into()],
            last_verify_tx: Some(VerifyTxInfo {
                tx_hash: "0xabcdef0123456789".into(),
                first_batch: 37,
                last_batch: 38,
                gas_used: 212_345,
            }),
            ..Default::default()
        },
        jobs: vec![
            job(38, "proven", ""),
            job(41, "leased", "p-1"),
            job(42, "queued", ""),
        ],
        // The oldest queued exec job has waited 2 min 5 s.
        oldest_queued_ms: [("exec".to_string(), NOW - 125_000)].into(),
    }
}

fn model() -> Model {
    let mut m = Model::new("http://127.0.0.1:3900");
    m.tick(NOW);
    m.apply_snapshot(fixture());
    m
}

fn event(at_ms: u64, e: Event) -> WatchEvent {
    WatchEvent {
        at_ms,
        event: Some(e),
    }
}

fn job_changed(batch: u64, state: &str) -> Event {
    Event::Job(JobChanged {
        batch,
        proof_type: "exec".into(),
        state: state.into(),
        ..Default::default()
    })
}

fn screen(model: &Model, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| render(model, f)).unwrap();
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..height {
        for x in 0..width {
            out.push_str(buffer.cell((x, y)).unwrap().symbol());
        }
        out.push('\n');
    }
    out
}

#[test]
fn events_update_counts_chain_provers_and_throughput() {
    let mut m = model();
    // Batch 42 is leased, then proven: queued 3 → 2, leased 1 → 2 → 1, proven 40 → 41.
    m.apply_event(&event(NOW, job_changed(42, "leased")));
    m.apply_event(&event(
        NOW,
        Event::AttemptStarted(AttemptStarted {
            batch: 42,
            proof_type: "exec".into(),
            fencing_token: 9,
            prover_id: "p-1".into(),
            prover_name: "alpha-gpu".into(),
            backup: false,
        }),
    ));
    assert_eq!(m.provers()[0].running_tasks, vec!["42/exec".to_string()]);
    m.apply_event(&event(
        NOW + 10,
        Event::AttemptEnded(AttemptEnded {
            fencing_token: 9,
            outcome: "proven".into(),
            detail: String::new(),
            prove_ms: Some(1234),
        }),
    ));
    m.apply_event(&event(NOW + 20, job_changed(42, "proven")));
    let c = &m.job_counts()["exec"];
    assert_eq!((c.queued, c.leased, c.proven), (2, 1, 41));
    // 41 is not proven yet: the last proven batch stays at 40 until it is, then jumps to 42.
    assert_eq!(m.status().last_proven_batch, Some(40));
    m.apply_event(&event(NOW + 30, job_changed(41, "proven")));
    assert_eq!(m.status().last_proven_batch, Some(42));
    let alpha = &m.provers()[0];
    assert_eq!(alpha.name, "alpha-gpu");
    assert!(alpha.running_tasks.is_empty());
    assert_eq!(alpha.proofs_accepted, 6);
    let row = m.jobs().find(|j| j.batch == 42).unwrap();
    assert_eq!(
        (row.state.as_str(), row.prover.as_str(), row.prove_ms),
        ("proven", "alpha-gpu", Some(1234))
    );
    // One proof in the current bucket.
    assert_eq!(m.throughput().iter().sum::<u64>(), 2);
    assert_eq!(*m.throughput().last().unwrap(), 2);

    m.apply_event(&event(
        NOW,
        Event::BatchesTaken(BatchesTaken {
            chain_id: 0,
            first_batch: 45,
            last_batch: 47,
        }),
    ));
    m.apply_event(&event(
        NOW,
        Event::Chain(ChainSeen {
            last_committed_batch: Some(41),
            last_verified_batch: Some(40),
            error: String::new(),
        }),
    ));
    let s = m.status();
    assert_eq!(
        (
            s.last_sealed_batch,
            s.last_committed_batch,
            s.last_verified_batch
        ),
        (Some(47), Some(41), Some(40))
    );
    m.apply_event(&event(
        NOW,
        Event::Cordon(ProverCordoned {
            prover_id: "p-2".into(),
            cordoned: true,
            reason: "by an operator".into(),
        }),
    ));
    assert!(m.provers()[1].cordoned);
    assert_eq!(
        m.events().back().unwrap().text,
        "prover zeta cordoned (by an operator)"
    );
}

#[test]
fn rejected_proofs_lost_leases_and_l1_errors_are_logged() {
    let mut m = model();
    for (token, outcome) in [(1, "invalid_proof"), (2, "lost"), (3, "superseded")] {
        m.apply_event(&event(
            NOW,
            Event::AttemptStarted(AttemptStarted {
                batch: 43,
                proof_type: "exec".into(),
                fencing_token: token,
                prover_id: "p-2".into(),
                prover_name: "zeta".into(),
                backup: false,
            }),
        ));
        m.apply_event(&event(
            NOW,
            Event::AttemptEnded(AttemptEnded {
                fencing_token: token,
                outcome: outcome.into(),
                detail: "why".into(),
                prove_ms: None,
            }),
        ));
    }
    m.apply_event(&event(
        NOW,
        Event::Chain(ChainSeen {
            last_committed_batch: None,
            last_verified_batch: None,
            error: "verifyBatches reverted: InvalidProof".into(),
        }),
    ));
    let log: Vec<(Severity, &str)> = m
        .events()
        .iter()
        .map(|l| (l.severity, l.text.as_str()))
        .collect();
    assert_eq!(
        log,
        vec![
            (Severity::Error, "proof rejected, 43/exec on zeta: why"),
            (Severity::Warn, "lease lost, 43/exec on zeta: why"),
            (Severity::Error, "L1: verifyBatches reverted: InvalidProof"),
        ]
    );
    assert_eq!(m.provers()[1].invalid_proofs, 1);
    // An L1 event without figures keeps the ones known.
    assert_eq!(m.status().last_verified_batch, Some(38));
}

#[test]
fn missed_events_ask_for_a_snapshot_and_the_snapshot_answers() {
    let mut m = model();
    assert!(!m.needs_refresh());
    m.apply_event(&event(NOW, Event::Missed(17)));
    assert!(m.needs_refresh());
    assert!(m.events().back().unwrap().text.contains("missed 17 events"));
    m.apply_snapshot(fixture());
    assert!(!m.needs_refresh());
    // A failed read shows until one succeeds.
    m.feed_error("SystemStatus request failed: Unavailable");
    assert!(m.status_line().unwrap().text.contains("Unavailable"));
    m.apply_snapshot(fixture());
    assert_eq!(m.status_line(), None);
    // An action's effect shows in the next snapshot: it asks for one too.
    m.action_done(
        &Action::Pause {
            component: SENDER.into(),
        },
        Ok("paused".into()),
    );
    assert!(m.needs_refresh());
}

#[test]
fn rings_are_bounded() {
    let mut m = model();
    for i in 0..(MAX_EVENTS as u64 + 50) {
        m.apply_event(&event(
            NOW + i,
            Event::Paused(ComponentPaused {
                component: "sender".into(),
                paused: i % 2 == 0,
                reason: format!("r{i}"),
            }),
        ));
    }
    assert_eq!(m.events().len(), MAX_EVENTS);
    // The oldest went first.
    assert_eq!(m.events().back().unwrap().text, "sender resumed");
    assert!(m.events()[0].text.contains("r50"), "{:?}", m.events()[0]);

    for batch in 100..(100 + MAX_JOBS as u64 + 10) {
        m.apply_event(&event(NOW, job_changed(batch, "queued")));
    }
    assert_eq!(m.job_count(), MAX_JOBS);
    assert_eq!(
        m.jobs().next().unwrap().batch,
        100 + MAX_JOBS as u64 + 9,
        "the newest batch is first"
    );

    // Proofs over an hour: only the window's buckets are kept.
    for i in 0..360u64 {
        let at = NOW + i * THROUGHPUT_BUCKET_MS;
        m.tick(at);
        m.apply_event(&event(at, job_changed(10_000 + i, "proven")));
    }
    assert_eq!(m.throughput().len(), THROUGHPUT_BUCKETS);
    assert_eq!(
        m.throughput().iter().sum::<u64>(),
        THROUGHPUT_BUCKETS as u64
    );
    assert!((m.proofs_per_second() - 0.1).abs() < 1e-9);
}

#[test]
fn keys_select_and_ask_for_actions() {
    let mut m = model();
    // Jobs first: newest batch (42) is selected.
    assert_eq!(m.focus(), Focus::Jobs);
    assert_eq!(
        m.on_key(Key::Char('x')),
        KeyOutcome::Run(Action::Cancel {
            batch: 42,
            proof_type: "exec".into()
        })
    );
    m.on_key(Key::Down);
    assert_eq!(
        m.on_key(Key::Char('r')),
        KeyOutcome::Run(Action::Retry {
            batch: 41,
            proof_type: "exec".into()
        })
    );
    // New batches and provers come in: the selection stays on the row chosen.
    m.apply_event(&event(NOW, job_changed(43, "queued")));
    assert_eq!(m.selected_job(), 2);
    assert_eq!(
        m.on_key(Key::Char('r')),
        KeyOutcome::Run(Action::Retry {
            batch: 41,
            proof_type: "exec".into()
        })
    );
    // Cordon needs the provers table.
    assert_eq!(m.on_key(Key::Char('c')), KeyOutcome::Nothing);
    assert!(m.status_line().unwrap().error);
    m.on_key(Key::Tab);
    m.on_key(Key::End);
    m.on_key(Key::Down); // stays on the last row
    m.apply_event(&event(
        NOW,
        Event::ProverConnected(ProverConnected {
            prover_id: "p-0".into(),
            name: "aaa-first".into(),
            proof_types: vec!["exec".into()],
            capacity: 1,
        }),
    ));
    assert_eq!(m.selected_prover(), 2);
    assert_eq!(
        m.on_key(Key::Char('c')),
        KeyOutcome::Run(Action::Cordon {
            prover: "p-2".into(),
            name: "zeta".into(),
            cordoned: true
        })
    );
    m.on_key(Key::Home);
    m.on_key(Key::Down);
    assert_eq!(
        m.on_key(Key::Char('u')),
        KeyOutcome::Run(Action::Cordon {
            prover: "p-1".into(),
            name: "alpha-gpu".into(),
            cordoned: false
        })
    );
    assert_eq!(
        m.on_key(Key::Char('p')),
        KeyOutcome::Run(Action::Pause {
            component: "sender".into()
        })
    );
    assert_eq!(
        m.on_key(Key::Char('s')),
        KeyOutcome::Run(Action::Resume {
            component: "sender".into()
        })
    );
    assert_eq!(m.on_key(Key::Char('q')), KeyOutcome::Quit);
}

#[test]
fn the_screen_shows_chain_tables_queues_events_and_results() {
    let mut m = model();
    m.apply_event(&event(
        NOW - 3000,
        Event::ProverConnected(ProverConnected {
            prover_id: "p-3".into(),
            name: "beta".into(),
            proof_types: vec!["exec".into()],
            capacity: 4,
        }),
    ));
    m.on_key(Key::Tab);
    m.action_done(
        &Action::Cordon {
            prover: "p-1".into(),
            name: "alpha-gpu".into(),
            cordoned: true,
        },
        Ok("done".into()),
    );
    let s = screen(&m, 160, 40);
    for expected in [
        "sealed 44",
        "proven 40",
        "committed 39",
        "verified 38",
        "last verify tx 0xabcdef0123456789 (batches 37..=38, gas 212345)",
        "alpha-gpu",
        "beta",
        "zeta",
        "provers (3 of 3 connected)",
        // The queued job's age: 2 min 5 s.
        "2m05s",
        "12:59:57 prover beta connected: exec × 4",
        "cordon alpha-gpu: done",
        "c cordon / u uncordon prover",
        "batches (3 jobs)",
    ] {
        assert!(s.contains(expected), "{expected:?} not on screen:\n{s}");
    }
    // Batch 38 is committed and verified by the tx seen.
    let row38 = s.lines().find(|l| l.contains("│38 ")).expect(&s);
    assert!(row38.contains("proven") && row38.contains("yes") && row38.contains("0xabcdef012"));

    // A failed action shows its error; a pause shows in the chain panel.
    m.action_done(
        &Action::Retry {
            batch: 42,
            proof_type: "exec".into(),
        },
        Err("FAILED_PRECONDITION: job 42/exec is queued".into()),
    );
    m.apply_event(&event(
        NOW,
        Event::Paused(ComponentPaused {
            component: "sender".into(),
            paused: true,
            reason: "L1 fees".into(),
        }),
    ));
    let s = screen(&m, 160, 40);
    assert!(
        s.contains("retry job 42/exec failed: FAILED_PRECONDITION: job 42/exec is queued"),
        "{s}"
    );
    assert!(s.contains("sender PAUSED (L1 fees)"), "{s}");
}

/// The batches table names each batch's commit and verify transactions as JobsList gives
/// them; a batch L1 has without a record says only "yes"; one L1 does not have says nothing.
#[test]
fn the_batches_table_shows_commit_and_verify_transactions() {
    let mut m = model();
    let mut snapshot = fixture();
    let mut proven = job(36, "proven", "");
    proven.commit_tx = Some(CommitTxInfo {
        tx_hash: "0xc0ffee00112233445566".into(),
        gas_used: 51_000,
        block: 77,
        recorded_at_ms: NOW - 9_000,
    });
    proven.verify_tx = Some(VerifyTxInfo {
        tx_hash: "0x5e771e00aabbccddeeff".into(),
        first_batch: 35,
        last_batch: 36,
        gas_used: 200_000,
    });
    snapshot.jobs.push(proven);
    m.apply_snapshot(snapshot);
    let s = screen(&m, 160, 40);
    let header = s
        .lines()
        .find(|l| l.contains("prover") && l.contains("fails"))
        .expect(&s);
    assert!(
        header.contains("commit tx") && header.contains("verify tx"),
        "{header}"
    );
    let row = |s: &str, b: u64| {
        s.lines()
            .find(|l| l.contains(&format!("│{b} ")))
            .unwrap_or_else(|| panic!("no row {b}:\n{s}"))
            .to_string()
    };
    let row36 = row(&s, 36);
    assert!(row36.contains("0xc0ffee001…"), "{row36}");
    assert!(row36.contains("0x5e771e00a…"), "{row36}");
    // Committed and verified on L1 (the figures say so), with no commit record read.
    let row38 = row(&s, 38);
    assert!(
        row38.contains("yes") && row38.contains("0xabcdef012"),
        "{row38}"
    );
    assert!(!row38.contains("0xc0ffee"), "{row38}");
    // Neither committed nor verified.
    let row42 = row(&s, 42);
    assert!(!row42.contains("yes") && !row42.contains("0x"), "{row42}");

    // A later listing without the records keeps the ones read before.
    m.apply_snapshot(fixture());
    m.apply_snapshot(Snapshot {
        jobs: vec![job(36, "proven", "")],
        ..fixture()
    });
    let row36 = row(&screen(&m, 160, 40), 36);
    assert!(
        row36.contains("0xc0ffee001…") && row36.contains("0x5e771e00a…"),
        "{row36}"
    );
}

#[test]
fn a_large_fleet_scrolls_and_a_small_terminal_does_not_panic() {
    let mut snapshot = fixture();
    snapshot.status.provers = (0..10_000)
        .map(|i| prover(&format!("id-{i:05}"), &format!("prover-{i:05}")))
        .collect();
    let mut m = Model::new("http://x");
    m.tick(NOW);
    m.apply_snapshot(snapshot);
    m.on_key(Key::Tab);
    for _ in 0..500 {
        m.on_key(Key::PageDown);
    }
    assert_eq!(m.selected_prover(), 5000);
    let s = screen(&m, 160, 40);
    assert!(s.contains("prover-05000"), "{s}");
    assert!(!s.contains("prover-00000"), "{s}");
    m.on_key(Key::End);
    assert!(screen(&m, 160, 40).contains("prover-09999"));
    for (w, h) in [(20, 5), (1, 1), (80, 24)] {
        screen(&m, w, h);
    }
}

/// A rollup buying proofs: the chain panel says what the market proved, what fell back and
/// what is held for it.
#[test]
fn the_chain_panel_shows_the_proof_market() {
    let mut snapshot = fixture();
    snapshot.status.jobs.get_mut("exec").unwrap().held = 3;
    snapshot.status.market = Some(proofmill_proto::v1::MarketStatus {
        mode: "network".into(),
        share_ppm: 1_000_000,
        proof_type: "exec".into(),
        fell_back: 2,
        proven_by_network: 7,
        ..Default::default()
    });
    let mut m = Model::new("http://127.0.0.1:3900");
    m.tick(NOW);
    m.apply_snapshot(snapshot);
    let s = screen(&m, 160, 40);
    assert!(
        s.contains("market (network): 7 by networks, 2 fell back, 3 held"),
        "{s}"
    );
    assert!(!screen(&model(), 160, 40).contains("market ("));
}
