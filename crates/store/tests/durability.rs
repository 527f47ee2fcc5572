//! Opening stores: durability across reopen and `kill -9` (SQLite and PostgreSQL), the
//! in-memory SQLite store, and bad URLs.

mod common;

use common::*;
use proofmill_store::{StoreError, open_store};
use proofmill_types::DEFAULT_CHAIN;

#[tokio::test]
async fn sqlite_reopen_sees_committed_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("durable.db");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // `sqlite:path` form, file created because missing.
    let url = format!("sqlite:{}", path.display());
    {
        let store = open_store(&url).await.unwrap();
        store.insert_batch(&batch(1, &["exec"]), 5).await.unwrap();
        store
            .apply(&[
                Change::Proof(proof(key(1, "exec"), 3)),
                Change::Job(with_state(key(1, "exec"), JobState::Proven, 6)),
            ])
            .await
            .unwrap();
        store.set_meta("cursor", "1").await.unwrap();
    }
    assert!(path.exists());
    for url in [
        url.clone(),
        format!("sqlite://{}?mode=rwc&synchronous=full", path.display()),
    ] {
        let store = open_store(&url).await.unwrap();
        assert_eq!(
            store.batch(DEFAULT_CHAIN, 1).await.unwrap(),
            Some(batch(1, &["exec"]))
        );
        assert_eq!(
            store.proof(&key(1, "exec")).await.unwrap(),
            Some(proof(key(1, "exec"), 3))
        );
        assert_eq!(
            store.last_proven_batch(DEFAULT_CHAIN).await.unwrap(),
            Some(1)
        );
        assert_eq!(
            store.get_meta("cursor").await.unwrap().as_deref(),
            Some("1")
        );
        assert_eq!(store.max_fencing_token().await.unwrap(), 3);
    }
}

/// A transaction committed by `apply` survives the process being killed with SIGKILL right
/// after (the child is this test binary re-run as `sqlite_kill9_child`).
#[tokio::test]
async fn sqlite_commit_survives_kill_9() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kill9.db");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sqlite_kill9_child",
            "--nocapture",
            "--include-ignored",
        ])
        .env("PROOFMILL_KILL9_DB", &path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let committed = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("COMMITTED"));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(committed, "child did not commit");
    let store = open_store(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(
        store.job(&key(1, "exec")).await.unwrap(),
        Some(leased(key(1, "exec"), 77, 5))
    );
    assert_eq!(
        store.proof(&key(1, "groth16")).await.unwrap(),
        Some(proof(key(1, "groth16"), 76))
    );
}

#[tokio::test]
#[ignore = "helper process of sqlite_commit_survives_kill_9"]
async fn sqlite_kill9_child() {
    let Some(path) = std::env::var_os("PROOFMILL_KILL9_DB") else {
        return;
    };
    let url = format!(
        "sqlite://{}?mode=rwc",
        std::path::Path::new(&path).display()
    );
    let store = open_store(&url).await.unwrap();
    store
        .insert_batch(&batch(1, &["exec", "groth16"]), 5)
        .await
        .unwrap();
    store
        .apply(&[
            Change::Job(leased(key(1, "exec"), 77, 5)),
            Change::Proof(proof(key(1, "groth16"), 76)),
        ])
        .await
        .unwrap();
    println!("COMMITTED");
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
}

#[tokio::test]
async fn sqlite_memory_store_works() {
    let store = open_store("sqlite::memory:").await.unwrap();
    store.insert_batch(&batch(1, &["exec"]), 5).await.unwrap();
    store
        .apply(&[Change::Job(leased(key(1, "exec"), 4, 5))])
        .await
        .unwrap();
    assert_eq!(
        store.open_jobs().await.unwrap(),
        vec![leased(key(1, "exec"), 4, 5)]
    );
}

#[tokio::test]
async fn postgres_reopen_sees_committed_data() {
    let url = proofmill_testkit::shared_database("reopen").unwrap();
    {
        let store = open_store(&url).await.unwrap();
        store.insert_batch(&batch(1, &["exec"]), 5).await.unwrap();
        store.set_meta("k", "v").await.unwrap();
    }
    // Opening again re-runs the (already applied) migrations and sees the data.
    let store = open_store(&url.replace("postgres://", "postgresql://"))
        .await
        .unwrap();
    assert_eq!(
        store.batch(DEFAULT_CHAIN, 1).await.unwrap(),
        Some(batch(1, &["exec"]))
    );
    assert_eq!(store.get_meta("k").await.unwrap().as_deref(), Some("v"));
}

fn assert_invalid_url<T>(result: Result<T, StoreError>, url: &str) {
    match result {
        Err(StoreError::InvalidUrl { .. }) => {}
        Err(e) => panic!("{url}: expected InvalidUrl, got {e}"),
        Ok(_) => panic!("{url}: accepted"),
    }
}

#[tokio::test]
async fn bad_store_urls_rejected() {
    for url in [
        "mysql://root@localhost/db",
        "",
        "/tmp/file.db",
        "sqlite://",
        "sqlite:x.db?synchronous=off",
        "sqlite:x.db?nonsense=1",
    ] {
        assert_invalid_url(open_store(url).await, url);
    }
    let err = open_store("redis://user:secret@host/0")
        .await
        .err()
        .unwrap();
    assert!(!err.to_string().contains("secret"), "{err}");
}

/// Opening a Postgres store whose server is not there fails within the pool's acquire
/// timeout (5 s, not 30) with an error naming the server and the cause, never a password.
#[tokio::test]
async fn unreachable_postgres_is_named_with_its_cause() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // closed again: nothing listens there
    let url = format!("postgres://proofmill:secret@127.0.0.1:{port}/pm");
    let started = std::time::Instant::now();
    let err = open_store(&url).await.err().expect("no server");
    let took = started.elapsed();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        text.contains(&format!("postgres://proofmill@127.0.0.1:{port}/pm")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "connection refused: nothing listens at 127.0.0.1:{port}"
        )),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
}

/// A database the server does not have is named with the server, in the server's words
/// without the line of Postgres' source they come from.
#[tokio::test]
async fn missing_postgres_database_is_named_with_its_server() {
    let existing = proofmill_testkit::shared_database("missing_db").expect("test postgres");
    let mut url = url::Url::parse(&existing).unwrap();
    url.set_path("/no_such_database");
    let server = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap());
    let err = open_store(url.as_str())
        .await
        .err()
        .expect("no such database");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "database \"no_such_database\" does not exist on the server at {server}"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("postgres://postgres@{server}/no_such_database")),
        "{text}"
    );
    assert!(!text.contains(" at line "), "{text}");
}
