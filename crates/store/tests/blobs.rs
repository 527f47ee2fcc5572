//! Blob store: local filesystem, memory, and S3 against a local S3-compatible server (moto,
//! started by the test).

use bytes::Bytes;
use proofmill_store::{Blobs, StoreError, get_url, parse_blob_url};

async fn round_trip(blobs: &Blobs) {
    let key = "inputs/000000000042.bin";
    assert!(matches!(blobs.get(key).await, Err(StoreError::BlobNotFound { key: k }) if k == key));
    blobs.put(key, Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(blobs.get(key).await.unwrap(), Bytes::from_static(b"hello"));
    // Overwrite.
    let big = Bytes::from(vec![7u8; 3 << 20]);
    blobs.put(key, big.clone()).await.unwrap();
    assert_eq!(blobs.get(key).await.unwrap(), big);
    blobs.put("proofs/1-exec.bin", Bytes::new()).await.unwrap();
    assert_eq!(blobs.get("proofs/1-exec.bin").await.unwrap(), Bytes::new());
    blobs.delete(key).await.unwrap();
    assert!(matches!(
        blobs.get(key).await,
        Err(StoreError::BlobNotFound { .. })
    ));
    blobs.delete(key).await.unwrap(); // deleting a missing blob is fine
    assert_eq!(blobs.get("proofs/1-exec.bin").await.unwrap(), Bytes::new());

    for bad in [
        "",
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a/./b",
        "a//b",
        "a/",
        "a b",
        "a\\b",
        "ä",
    ] {
        for result in [
            blobs.put(bad, Bytes::from_static(b"x")).await.err(),
            blobs.get(bad).await.err(),
            blobs.delete(bad).await.err(),
        ] {
            assert!(
                matches!(result, Some(StoreError::Blob(_))),
                "{bad:?} accepted: {result:?}"
            );
        }
    }
}

/// `key` (holding `bytes`) is readable through its URL alone, as another process reads it;
/// a missing key's URL is `BlobNotFound`.
async fn readable_by_url(blobs: &Blobs, key: &str, bytes: &'static [u8]) {
    let url = blobs.url(key);
    assert_eq!(get_url(&url).await.unwrap(), Bytes::from_static(bytes));
    let (other, last) = parse_blob_url(&url).unwrap();
    assert_eq!(last, key.rsplit('/').next().unwrap());
    assert_eq!(other.get(&last).await.unwrap(), Bytes::from_static(bytes));
    assert!(matches!(
        get_url(&blobs.url("inputs/8.bin")).await,
        Err(StoreError::BlobNotFound { .. })
    ));
}

#[tokio::test]
async fn memory_blobs() {
    let blobs = Blobs::from_url("memory://").unwrap();
    round_trip(&blobs).await;
    // Clones share the store.
    let clone = blobs.clone();
    blobs.put("a", Bytes::from_static(b"1")).await.unwrap();
    assert_eq!(clone.get("a").await.unwrap(), Bytes::from_static(b"1"));
    assert_eq!(blobs.url("a"), "memory:///a");
    assert!(parse_blob_url(&blobs.url("a")).is_err());
}

#[tokio::test]
async fn file_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("not/yet/there");
    let url = format!("file://{}", dir.display());
    let blobs = Blobs::from_url(&url).unwrap();
    assert!(dir.is_dir(), "directory created");
    round_trip(&blobs).await;

    blobs
        .put("inputs/7.bin", Bytes::from_static(b"seven"))
        .await
        .unwrap();
    let file = dir.canonicalize().unwrap().join("inputs/7.bin");
    assert_eq!(std::fs::read(&file).unwrap(), b"seven");
    // No temporary files left behind by the atomic write.
    let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("7.bin")]);

    // The URL of a key is readable by another process with access to the same directory.
    let blob_url = blobs.url("inputs/7.bin");
    assert_eq!(blob_url, format!("file://{}", file.display()));
    readable_by_url(&blobs, "inputs/7.bin", b"seven").await;

    // fsync variant also works.
    let synced = Blobs::from_url(&format!("{url}?fsync=true")).unwrap();
    synced.put("x", Bytes::from_static(b"y")).await.unwrap();
    assert_eq!(blobs.get("x").await.unwrap(), Bytes::from_static(b"y"));
}

#[tokio::test]
async fn bad_blob_urls() {
    for url in [
        "",
        "ftp://host/x",
        "file://remotehost/dir",
        "file:///tmp?bogus=1",
        "memory:///path",
        "relative/dir",
        "s3://",
    ] {
        assert!(
            matches!(Blobs::from_url(url), Err(StoreError::InvalidUrl { .. })),
            "{url:?} accepted"
        );
    }
}

/// The S3 store configured the way an operator does it: the client takes its endpoint and
/// credentials from the `AWS_*` variables. Setting them in this process would race the other
/// tests' threads, so the assertions run in a child (this binary, `s3_blobs_child`) started
/// with them; this test then checks through the server's own API what the child left.
#[test]
fn s3_blobs() {
    let s3 = proofmill_testkit::TestS3::start();
    s3.create_bucket(S3_BUCKET);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "s3_blobs_child",
            "--nocapture",
            "--include-ignored",
        ])
        .envs(s3.env())
        .env(S3_CHILD_VAR, "1")
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        out.status.success() && text(&out.stdout).contains("1 passed"),
        "s3_blobs_child failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // Under the prefix, at the keys given: what another S3 client sees.
    assert_eq!(
        s3.list(S3_BUCKET, ""),
        vec![
            ("proofmill-test/inputs/1.bin".to_string(), 3),
            ("proofmill-test/proofs/1-exec.bin".to_string(), 0),
        ]
    );
}

const S3_BUCKET: &str = "proofmill-blobs";
/// Set for the child only: without it (`cargo test -- --include-ignored`) it has no server.
const S3_CHILD_VAR: &str = "PROOFMILL_TEST_S3_CHILD";

#[tokio::test]
#[ignore = "helper process of s3_blobs"]
async fn s3_blobs_child() {
    if std::env::var_os(S3_CHILD_VAR).is_none() {
        return;
    }
    let blobs = Blobs::from_url(&format!("s3://{S3_BUCKET}/proofmill-test")).unwrap();
    round_trip(&blobs).await;
    blobs
        .put("inputs/1.bin", Bytes::from_static(b"one"))
        .await
        .unwrap();
    let url = blobs.url("inputs/1.bin");
    assert_eq!(url, format!("s3://{S3_BUCKET}/proofmill-test/inputs/1.bin"));
    // The URL of a key is readable by another process configured for the same store.
    readable_by_url(&blobs, "inputs/1.bin", b"one").await;
}

/// `probe` answers whether the store can be asked at all; a missing key is no failure.
#[tokio::test]
async fn probe_asks_the_store() {
    Blobs::from_url("memory://").unwrap().probe().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("blobs");
    let blobs = Blobs::from_url(&format!("file://{}", dir.display())).unwrap();
    blobs.probe().await.unwrap();
    // The directory replaced by a file: the store cannot be read.
    std::fs::remove_dir(&dir).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    let err = blobs.probe().await.unwrap_err();
    assert!(err.to_string().contains("proofmill-probe"), "{err}");
}
