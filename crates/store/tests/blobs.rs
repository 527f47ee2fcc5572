//! Blob store: local filesystem and memory (and S3 against a local server when
//! `PROOFMILL_TEST_S3=1`).

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
    assert_eq!(
        get_url(&blob_url).await.unwrap(),
        Bytes::from_static(b"seven")
    );
    let (other, key) = parse_blob_url(&blob_url).unwrap();
    assert_eq!(key, "7.bin");
    assert_eq!(other.get(&key).await.unwrap(), Bytes::from_static(b"seven"));
    assert!(matches!(
        get_url(&blobs.url("inputs/8.bin")).await,
        Err(StoreError::BlobNotFound { .. })
    ));

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

/// Runs against an S3-compatible server configured by the standard AWS_* variables (e.g. a
/// local `moto_server`) when PROOFMILL_TEST_S3=1; bucket from PROOFMILL_TEST_S3_BUCKET
/// (default `test`), which must exist.
#[tokio::test]
async fn s3_blobs_when_enabled() {
    if std::env::var("PROOFMILL_TEST_S3").as_deref() != Ok("1") {
        eprintln!("skipped: set PROOFMILL_TEST_S3=1 and AWS_* variables to run");
        return;
    }
    let bucket = std::env::var("PROOFMILL_TEST_S3_BUCKET").unwrap_or_else(|_| "test".into());
    let blobs = Blobs::from_url(&format!("s3://{bucket}/proofmill-test")).unwrap();
    round_trip(&blobs).await;
    blobs
        .put("inputs/1.bin", Bytes::from_static(b"one"))
        .await
        .unwrap();
    let url = blobs.url("inputs/1.bin");
    assert_eq!(url, format!("s3://{bucket}/proofmill-test/inputs/1.bin"));
    assert_eq!(get_url(&url).await.unwrap(), Bytes::from_static(b"one"));
}
