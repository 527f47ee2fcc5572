//! The SQLite store's URL: our own parameters and the connection options they set.

use super::BUSY_TIMEOUT;
use crate::api::{Result, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use std::str::FromStr;

fn invalid(url: &str, reason: impl Into<String>) -> StoreError {
    StoreError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.into(),
    }
}

/// Splits our own parameters (`synchronous`) off the URL; the rest goes to sqlx.
///
/// `synchronous` defaults to FULL: a committed transaction (an acknowledged proof, after
/// which the prover drops its copy) must survive a power loss, not only a process crash.
/// Group commit keeps the extra fsync per commit off the throughput; `?synchronous=normal`
/// trades the last few commits on a power loss for it.
pub(super) fn parse_url(url: &str) -> Result<(SqliteConnectOptions, bool)> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut synchronous = SqliteSynchronous::Full;
    let mut passed = Vec::new();
    let mut has_mode = false;
    let mut memory = base.ends_with(":memory:");
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "synchronous" => {
                synchronous = match v.to_ascii_lowercase().as_str() {
                    "normal" => SqliteSynchronous::Normal,
                    "full" => SqliteSynchronous::Full,
                    "extra" => SqliteSynchronous::Extra,
                    other => {
                        return Err(invalid(
                            url,
                            format!("synchronous={other:?}: use normal, full or extra"),
                        ));
                    }
                }
            }
            _ => {
                if k == "mode" {
                    has_mode = true;
                    memory |= v == "memory";
                }
                passed.push(pair);
            }
        }
    }
    let rest = if passed.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", passed.join("&"))
    };
    if !memory {
        let path = base.trim_start_matches("sqlite:").trim_start_matches("//");
        if path.is_empty() {
            return Err(invalid(
                url,
                "no database file path (use sqlite://path/to/db or sqlite::memory:)",
            ));
        }
    }
    let mut options =
        SqliteConnectOptions::from_str(&rest).map_err(|e| invalid(url, e.to_string()))?;
    if !has_mode && !memory {
        options = options.create_if_missing(true);
    }
    let options = options
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true);
    Ok((options, memory))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing() {
        assert!(parse_url("sqlite::memory:").unwrap().1);
        assert!(
            !parse_url("sqlite:///tmp/x.db?mode=rwc&synchronous=full")
                .unwrap()
                .1
        );
        assert!(!parse_url("sqlite:x.db").unwrap().1);
        assert!(parse_url("sqlite:x.db?synchronous=off").is_err());
        assert!(parse_url("sqlite://").is_err());
        assert!(parse_url("sqlite:x.db?bogus=1").is_err());
    }

    /// What the opened connection runs with: FULL (2) unless the URL asks otherwise.
    #[tokio::test]
    async fn synchronous_defaults_to_full() {
        use sqlx::{ConnectOptions as _, Connection as _};
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        for (query, expected) in [
            ("?mode=rwc", 2),
            ("", 2),
            ("?mode=rwc&synchronous=full", 2),
            ("?mode=rwc&synchronous=NORMAL", 1),
            ("?synchronous=extra", 3),
        ] {
            let url = format!("sqlite://{}{query}", db.display());
            let mut conn = parse_url(&url).unwrap().0.connect().await.unwrap();
            let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(level, expected, "{url}");
            conn.close().await.unwrap();
        }
    }
}
