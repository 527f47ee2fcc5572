//! Inputs sent as blob URLs: a prover with blob access reads them itself and checks their
//! digest; one without says so in an error result.

mod support;
use proofmill_prover::{BlobReader, BoxFuture};
use support::*;

/// Reads `file://` URLs: what `proofmill prover --blob-access` does for a local store.
struct FileReader;

impl BlobReader for FileReader {
    fn read(&self, url: &str) -> BoxFuture<Result<Vec<u8>, String>> {
        let path = url.strip_prefix("file://").map(str::to_string);
        Box::pin(async move {
            let path = path.ok_or("not a file:// URL")?;
            tokio::fs::read(&path).await.map_err(|e| e.to_string())
        })
    }
}

fn error_of(r: &TaskResult) -> &str {
    match &r.outcome {
        Some(task_result::Outcome::Error(e)) => e,
        other => panic!("expected an error result, got {other:?}"),
    }
}

#[tokio::test]
async fn prover_with_blob_access_reads_url_inputs() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let input_path = dir.path().join("input 1.bin");
        std::fs::write(&input_path, b"batch one").unwrap();
        let url = format!("file://{}", input_path.display());

        let mut coord = FakeCoordinator::start().await;
        let mut cfg = config(
            &[&coord.url],
            1,
            vec![("exec", Arc::new(SimBackend::new()))],
        );
        cfg.blob_reader = Some(Arc::new(FileReader));
        let prover = RunningProver::spawn(cfg);
        let mut c = coord.next_conn().await;
        let P::Register(reg) = c.accept("p-1").await else {
            panic!("expected Register")
        };
        assert!(reg.blob_access);

        let mut t = task(1, "exec", 11, b"batch one");
        t.input = Some(execute_task::Input::BlobUrl(url.clone()));
        c.send(C::ExecuteTask(t));
        let r = c.recv_result().await;
        assert_eq!((r.task_id.as_str(), r.fencing_token), ("1/exec", 11));
        assert_eq!(proof_of(&r), pv(1).as_bytes());
        ack(&c, &r);

        // The blob's bytes are not what the task's digest says: refused, nothing proven.
        let mut t = task(2, "exec", 12, b"batch two");
        t.input = Some(execute_task::Input::BlobUrl(url));
        c.send(C::ExecuteTask(t));
        let r = c.recv_result().await;
        assert!(error_of(&r).contains("digest"), "{r:?}");
        ack(&c, &r);

        // An unreadable URL: an error result naming it.
        let missing = format!("file://{}/missing.bin", dir.path().display());
        let mut t = task(3, "exec", 13, b"batch three");
        t.input = Some(execute_task::Input::BlobUrl(missing.clone()));
        c.send(C::ExecuteTask(t));
        let r = c.recv_result().await;
        assert!(error_of(&r).contains(&missing), "{r:?}");
        ack(&c, &r);

        let s = prover.stats.snapshot();
        assert_eq!((s.tasks_completed, s.tasks_failed), (1, 2));
        prover.stop().await;
        drop(c);
        coord.stop().await;
    })
    .await;
}

#[tokio::test]
async fn prover_without_blob_access_reports_url_inputs() {
    bounded(async {
        let mut coord = FakeCoordinator::start().await;
        let cfg = config(
            &[&coord.url],
            1,
            vec![("exec", Arc::new(SimBackend::new()))],
        );
        let prover = RunningProver::spawn(cfg);
        let mut c = coord.next_conn().await;
        let P::Register(reg) = c.accept("p-1").await else {
            panic!("expected Register")
        };
        assert!(!reg.blob_access);
        let mut t = task(1, "exec", 11, b"batch one");
        t.input = Some(execute_task::Input::BlobUrl("file:///x/1.bin".into()));
        c.send(C::ExecuteTask(t));
        let r = c.recv_result().await;
        assert!(error_of(&r).contains("no blob access"), "{r:?}");
        ack(&c, &r);
        prover.stop().await;
        drop(c);
        coord.stop().await;
    })
    .await;
}
