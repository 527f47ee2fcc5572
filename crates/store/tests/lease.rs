//! The coordinator lease and the fencing of writes, on SQLite and PostgreSQL: several
//! handles on one store stand for several coordinators.

mod common;

use common::*;
use proofmill_store::{LeaseClaim, StoreError};
use proofmill_types::DEFAULT_CHAIN;
use std::time::Duration;

fn claim(holder: &str, ttl_ms: u64) -> LeaseClaim {
    LeaseClaim {
        holder: holder.into(),
        url: format!("http://{holder}:3900"),
        ttl_ms,
        reclaim: false,
    }
}

macro_rules! lease_test {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let b = crate::common::sqlite_backend().await;
                    super::$name(&b.url).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let b = crate::common::postgres_backend(stringify!($name)).await;
                    super::$name(&b.url).await;
                }
            )*
        }
    };
}

lease_test!(
    one_of_many_takes_the_lease,
    an_expired_lease_is_taken_with_a_new_epoch,
    a_deposed_coordinator_cannot_write,
    a_released_lease_is_taken_at_once,
    a_restarted_coordinator_reclaims_its_own_lease,
);

async fn one_of_many_takes_the_lease(url: &str) {
    let mut racers = Vec::new();
    for i in 0..6 {
        let store = open_store(url).await.unwrap();
        racers.push(tokio::spawn(async move {
            store
                .acquire_lease(&claim(&format!("c{i}"), 60_000))
                .await
                .unwrap()
        }));
    }
    let mut won = Vec::new();
    let mut told = Vec::new();
    for r in racers {
        match r.await.unwrap() {
            Ok(epoch) => won.push(epoch),
            Err(holder) => told.push(holder),
        }
    }
    assert_eq!(won, [1], "exactly one takes it, with the first epoch");
    let store = open_store(url).await.unwrap();
    let holder = store.lease_holder().await.unwrap().unwrap();
    assert_eq!(holder.epoch, 1);
    assert_eq!(holder.url, format!("http://{}:3900", holder.holder));
    assert!(holder.expires_in_ms > 50_000, "{holder:?}");
    assert!(
        told.iter()
            .all(|h| (&h.holder, &h.url, h.epoch) == (&holder.holder, &holder.url, 1)),
        "{told:?}"
    );
    assert_eq!(told.len(), 5);
}

/// Lease TTL of [`an_expired_lease_is_taken_with_a_new_epoch`], ms.
const TTL: u64 = 1_500;

async fn an_expired_lease_is_taken_with_a_new_epoch(url: &str) {
    let a = open_store(url).await.unwrap();
    let b = open_store(url).await.unwrap();
    assert_eq!(a.lease_holder().await.unwrap(), None);
    // TTLs well above the sleeps between steps, so that a loaded machine's scheduling delays
    // do not expire a lease the test means to be held.
    let ea = a.acquire_lease(&claim("a", TTL)).await.unwrap().unwrap();
    // Held: b is told who holds it.
    let held = b
        .acquire_lease(&claim("b", TTL))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!((held.holder.as_str(), held.epoch), ("a", ea));
    // Renewed, it stays a's.
    tokio::time::sleep(Duration::from_millis(TTL / 2)).await;
    assert!(a.renew_lease(ea, TTL).await.unwrap());
    tokio::time::sleep(Duration::from_millis(TTL / 2)).await;
    assert!(b.acquire_lease(&claim("b", TTL)).await.unwrap().is_err());
    // Not renewed, it expires and b takes it with the next epoch.
    tokio::time::sleep(Duration::from_millis(TTL + 100)).await;
    let eb = b.acquire_lease(&claim("b", 60_000)).await.unwrap().unwrap();
    assert_eq!(eb, ea + 1);
    // a cannot renew what it lost.
    assert!(!a.renew_lease(ea, TTL).await.unwrap());
    assert_eq!(a.lease_holder().await.unwrap().unwrap().holder, "b");
}

async fn a_deposed_coordinator_cannot_write(url: &str) {
    let a = open_store(url).await.unwrap();
    let b = open_store(url).await.unwrap();
    let ea = a.acquire_lease(&claim("a", 200)).await.unwrap().unwrap();
    a.fence_writes(ea);
    assert!(a.insert_batch(&batch(1, &["exec"]), 5).await.unwrap());
    a.set_meta("k", "from a").await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let eb = b.acquire_lease(&claim("b", 60_000)).await.unwrap().unwrap();
    b.fence_writes(eb);
    let fenced = |r: Result<(), StoreError>, what: &str| match r {
        Err(StoreError::Fenced { epoch, current }) => {
            assert_eq!((epoch, current), (ea, Some(eb)), "{what}");
        }
        other => panic!("{what}: expected Fenced, got {other:?}"),
    };
    // Every kind of write through a's handle is refused, and changes nothing.
    fenced(
        a.insert_batch(&batch(2, &["exec"]), 5).await.map(|_| ()),
        "insert_batch",
    );
    fenced(
        a.apply(&[Change::Job(leased(key(1, "exec"), 7, 10))]).await,
        "apply",
    );
    fenced(
        a.apply(&[Change::Control {
            component: "sender".into(),
            paused: true,
            at: 9,
            reason: "late".into(),
        }])
        .await,
        "apply (a pause)",
    );
    assert!(b.paused_components().await.unwrap().is_empty());
    fenced(a.set_meta("k", "late").await, "set_meta");
    fenced(a.init_meta("new", "late").await.map(|_| ()), "init_meta");
    let mut other = batch(1, &["exec"]);
    other.input_digest = digest(99);
    fenced(a.replace_batch(&other, 6).await, "replace_batch");
    assert_eq!(
        b.batch(DEFAULT_CHAIN, 1).await.unwrap().unwrap(),
        batch(1, &["exec"])
    );
    assert_eq!(b.last_sealed_batch(DEFAULT_CHAIN).await.unwrap(), Some(1));
    assert_eq!(
        b.job(&key(1, "exec")).await.unwrap().unwrap().state,
        JobState::Queued
    );
    assert_eq!(b.get_meta("k").await.unwrap().as_deref(), Some("from a"));
    assert_eq!(b.get_meta("new").await.unwrap(), None);
    // The new holder writes.
    b.apply(&[Change::Job(leased(key(1, "exec"), 8, 10))])
        .await
        .unwrap();
    b.set_meta("k", "from b").await.unwrap();
    assert_eq!(
        a.get_meta("k").await.unwrap().as_deref(),
        Some("from b"),
        "a still reads"
    );
    let err = a.set_meta("k", "x").await.unwrap_err().to_string();
    assert!(
        err.contains("taken over") && err.contains(&format!("epoch {eb}")),
        "{err}"
    );
}

async fn a_released_lease_is_taken_at_once(url: &str) {
    let a = open_store(url).await.unwrap();
    let b = open_store(url).await.unwrap();
    let ea = a.acquire_lease(&claim("a", 60_000)).await.unwrap().unwrap();
    // Releasing an epoch that is not current does nothing.
    a.release_lease(ea + 5).await.unwrap();
    assert!(b.acquire_lease(&claim("b", 60_000)).await.unwrap().is_err());
    a.release_lease(ea).await.unwrap();
    let eb = b.acquire_lease(&claim("b", 60_000)).await.unwrap().unwrap();
    assert_eq!(eb, ea + 1);
    let holder = a.lease_holder().await.unwrap().unwrap();
    assert_eq!((holder.holder.as_str(), holder.epoch), ("b", eb));
}

async fn a_restarted_coordinator_reclaims_its_own_lease(url: &str) {
    let dead = open_store(url).await.unwrap();
    let e1 = dead
        .acquire_lease(&claim("a", 60_000))
        .await
        .unwrap()
        .unwrap();
    // Another address may not reclaim it, even when asking to.
    let b = open_store(url).await.unwrap();
    let other = LeaseClaim {
        reclaim: true,
        ..claim("b", 60_000)
    };
    assert!(b.acquire_lease(&other).await.unwrap().is_err());
    // The same address (a new run, another holder id) takes it at once, with a new epoch
    // that fences the old run.
    dead.fence_writes(e1);
    let again = LeaseClaim {
        holder: "a-run-2".into(),
        reclaim: true,
        ..claim("a", 60_000)
    };
    let e2 = b.acquire_lease(&again).await.unwrap().unwrap();
    assert_eq!(e2, e1 + 1);
    assert!(matches!(
        dead.set_meta("k", "v").await,
        Err(StoreError::Fenced { .. })
    ));
    // Without `reclaim` (not a first claim), it waits for the expiry like anyone.
    let third = LeaseClaim {
        holder: "a-run-3".into(),
        ..claim("a", 60_000)
    };
    assert!(b.acquire_lease(&third).await.unwrap().is_err());
}

/// A holder hung inside a write keeps the row's share lock (the fence): once its lease has
/// expired, the next claim ends that holder's database session and takes the lease. Postgres
/// only: on SQLite a hung writer holds the file's write lock, which nothing can take away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_hung_inside_a_write_does_not_block_a_takeover() {
    use sqlx::Connection as _;
    let url = proofmill_testkit::shared_database("hung_holder").expect("test postgres");
    let a = open_store(&url).await.unwrap();
    let b = open_store(&url).await.unwrap();
    let ea = a.acquire_lease(&claim("a", 300)).await.unwrap().unwrap();
    // What a's write transaction holds at its fence check, never committed (a is stopped).
    let mut hung = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut hung).await.unwrap();
    sqlx::query("SELECT epoch FROM coordinator_lease WHERE id = 1 FOR SHARE")
        .execute(&mut hung)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut taken = None;
    for _ in 0..5 {
        if let Ok(epoch) = b.acquire_lease(&claim("b", 60_000)).await.unwrap() {
            taken = Some(epoch);
            break;
        }
    }
    assert_eq!(taken, Some(ea + 1), "b takes the lease from the hung a");
    // a's transaction was rolled back with its session.
    assert!(sqlx::query("SELECT 1").execute(&mut hung).await.is_err());
}
