//! `proofmill batch cancel|replace` and the intake refusals and warnings, against a
//! coordinator process, the way an operator runs them: exit codes, typed errors on stderr,
//! and what `status` (text and `--json`) shows afterwards.

mod common;
use common::procs::{Proc, listening_addr};
use common::proofmill;
use proofmill_proto::v1::admin_service_client::AdminServiceClient;
use proofmill_proto::v1::{HealthCheckRequest, LaunchProofRequest};
use proofmill_types::{Digest, PublicValues};
use std::time::Duration;

/// `proofmill <args>`: (success, stdout, stderr).
fn run(args: &[&str]) -> (bool, String, String) {
    let out = proofmill().args(args).output().unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

/// A devnet batch input of batch `n` starting from root `root`, and public values that
/// match it (old root; the rest is only known by proving).
fn batch(n: u64, root: u64) -> (Vec<u8>, PublicValues) {
    let old_root = proofmill_devnet::fr_from_u64(root);
    let input = proofmill_devnet::BatchInput {
        number: n,
        depth: 1,
        old_root,
        transfers: vec![],
    }
    .encode();
    let public = proofmill_devnet::StateTransition {
        old_state_root: proofmill_devnet::fr_to_digest(old_root),
        new_state_root: Digest::sha256(b"new"),
        batch_commitment: Digest::sha256(b"commitment"),
    }
    .to_public_values();
    (input, public)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn batch_commands_and_intake_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().display();
    let (db, blobs) = (
        format!("sqlite://{path}/c.db?mode=rwc"),
        format!("file://{path}/blobs"),
    );
    let args: Vec<String> = [
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--db",
        &db,
        "--blobs",
        &blobs,
        "--proof-types",
        "exec",
        "--l1",
        "none",
        "--intake-window",
        "4",
    ]
    .map(String::from)
    .to_vec();
    let mut coord = Proc::spawn(
        "coordinator",
        &args,
        dir.path(),
        dir.path().join("c.log"),
        &[],
    );
    let url = format!(
        "http://{}",
        listening_addr(&mut coord, Duration::from_secs(60))
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    // It listens first, as a standby, until it holds the store's lease.
    rt.block_on(async {
        for _ in 0..600 {
            if let Ok(mut admin) = AdminServiceClient::connect(url.clone()).await
                && let Ok(h) = admin.health_check(HealthCheckRequest {}).await
                && h.get_ref().serving
                && !h.get_ref().standby
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the coordinator did not become active:\n{}", coord.log());
    });
    let launch = |n: u64, root: u64| {
        let (input, public) = batch(n, root);
        rt.block_on(async {
            let mut admin = AdminServiceClient::connect(url.clone()).await.unwrap();
            let req = LaunchProofRequest {
                chain_id: 0,
                batch: n,
                version: "v1".into(),
                input,
                public_values: public.as_bytes().to_vec(),
                proof_types: vec![],
            };
            admin.launch_proof(req).await.unwrap().into_inner()
        })
    };
    assert!(launch(1, 1).created);

    // Cancel: the job is cancelled; an unknown batch is JOB_NOT_FOUND.
    let (ok, out, err) = run(&[
        "batch",
        "cancel",
        "--coordinator",
        &url,
        "--batch",
        "1",
        "--reason",
        "wrong input",
    ]);
    assert!(ok, "{err}");
    assert!(out.contains("batch 1: 1 jobs cancelled"), "{out}");
    let (ok, _, err) = run(&["batch", "cancel", "--coordinator", &url, "--batch", "9"]);
    assert!(!ok);
    assert!(
        err.contains("JOB_NOT_FOUND") && err.contains("batch 9"),
        "{err}"
    );
    let status = |json: bool| {
        let mut a = vec!["status", "--coordinator", url.as_str()];
        if json {
            a.push("--json");
        }
        let (ok, out, err) = run(&a);
        assert!(ok, "{err}");
        out
    };
    let st: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    assert_eq!(st["jobs"]["exec"]["cancelled"], 1, "{st}");

    // Replace: a malformed input is refused with the backend's reason; a good one requeues.
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"junk").unwrap();
    let (input, public) = batch(1, 7);
    let good = dir.path().join("good.bin");
    std::fs::write(&good, input).unwrap();
    let public = hex(public.as_bytes());
    for (file, expect) in [(&junk, Err("malformed batch input")), (&good, Ok(()))] {
        let (ok, out, err) = run(&[
            "batch",
            "replace",
            "--coordinator",
            &url,
            "--batch",
            "1",
            "--input",
            file.to_str().unwrap(),
            "--public-values",
            &public,
            "--version-tag",
            "v1",
        ]);
        match expect {
            Err(reason) => {
                assert!(!ok, "{out}");
                assert!(
                    err.contains("INVALID_ARGUMENT") && err.contains(reason),
                    "{err}"
                );
            }
            Ok(()) => {
                assert!(ok, "{err}");
                assert!(out.contains("batch 1: input replaced"), "{out}");
            }
        }
    }
    let st: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    assert_eq!(st["jobs"]["exec"]["queued"], 1, "{st}");
    assert_eq!(st["jobs"]["exec"]["cancelled"], 0, "{st}");

    // One job: cancel, cancel again (a no-op), retry; unknown jobs are JOB_NOT_FOUND.
    let job = |args: &[&str]| {
        let mut a = vec!["job", args[0], "--coordinator", url.as_str()];
        a.extend_from_slice(&args[1..]);
        run(&a)
    };
    let one = ["--batch", "1", "--proof-type", "exec"];
    let (ok, out, err) = job(&[&["cancel"][..], &one, &["--reason", "stuck"]].concat());
    assert!(ok, "{err}");
    assert!(out.contains("job 1/exec cancelled"), "{out}");
    let st: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    assert_eq!(st["jobs"]["exec"]["cancelled"], 1, "{st}");
    let (ok, out, err) = job(&[&["cancel"][..], &one].concat());
    assert!(ok, "{err}");
    assert!(out.contains("was cancelled already"), "{out}");
    let (ok, _, err) = job(&["cancel", "--batch", "9", "--proof-type", "exec"]);
    assert!(!ok && err.contains("JOB_NOT_FOUND"), "{err}");
    let (ok, out, err) = job(&[&["retry"][..], &one].concat());
    assert!(ok, "{err}");
    assert!(out.contains("job 1/exec queued again"), "{out}");
    let (ok, out, err) = job(&["retry", "--batch", "1"]);
    assert!(ok, "{err}");
    assert!(out.contains("batch 1: 0 failed jobs queued again"), "{out}");
    let st: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    assert_eq!(st["jobs"]["exec"]["queued"], 1, "{st}");
    assert_eq!(st["jobs"]["exec"]["cancelled"], 0, "{st}");

    // The window: 6 is more than 4 above batch 1 (the end of the gap-free run); 3 is not,
    // and its gap is a warning in both forms of status.
    let r = launch(6, 6);
    let e = r.error.expect("batch 6 is refused");
    assert!(e.message.contains("intake window"), "{}", e.message);
    assert!(launch(3, 3).created);
    let st: serde_json::Value = serde_json::from_str(&status(true)).unwrap();
    assert_eq!(st["intake_window"], 4, "{st}");
    let gaps: Vec<&serde_json::Value> = st["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["kind"] == "batch_gap")
        .collect();
    assert_eq!(gaps.len(), 1, "{st}");
    assert_eq!(
        (&gaps[0]["first_batch"], &gaps[0]["last_batch"]),
        (&2.into(), &2.into())
    );
    let text = status(false);
    assert!(text.contains("warnings:\n"), "{text}");
    assert!(text.contains("batch_gap: batch 2 is missing"), "{text}");
    assert!(
        text.contains("unserved_proof_type: no connected prover"),
        "{text}"
    );
    coord.check_alive();
}
