//! Embedded schema migrations, one directory per dialect (`migrations/sqlite`,
//! `migrations/postgres`), run by sqlx's migrator on open. To change the schema, add a
//! `NNNN_name.sql` file to both directories and list it below with the next version.

use sqlx::SqlSafeStr as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};

fn migrator(files: &[(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        files
            .iter()
            .map(|&(version, name, sql)| {
                Migration::new(
                    version,
                    name.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

pub(crate) fn sqlite() -> Migrator {
    migrator(&[
        (
            1,
            "init",
            include_str!("../migrations/sqlite/0001_init.sql"),
        ),
        (
            2,
            "token_high",
            include_str!("../migrations/sqlite/0002_token_high.sql"),
        ),
        (
            3,
            "cordons",
            include_str!("../migrations/sqlite/0003_cordons.sql"),
        ),
        (
            4,
            "cordon_reason",
            include_str!("../migrations/sqlite/0004_cordon_reason.sql"),
        ),
        (
            6,
            "coordinator_lease",
            include_str!("../migrations/sqlite/0006_coordinator_lease.sql"),
        ),
        (
            7,
            "public_values",
            include_str!("../migrations/sqlite/0007_public_values.sql"),
        ),
        (
            8,
            "settlements",
            include_str!("../migrations/sqlite/0008_settlements.sql"),
        ),
        (
            9,
            "attempts",
            include_str!("../migrations/sqlite/0009_attempts.sql"),
        ),
        (
            10,
            "controls",
            include_str!("../migrations/sqlite/0010_controls.sql"),
        ),
        (
            11,
            "commit_records",
            include_str!("../migrations/sqlite/0011_commit_records.sql"),
        ),
        (
            12,
            "chains",
            include_str!("../migrations/sqlite/0012_chains.sql"),
        ),
        (
            13,
            "proof_requests",
            include_str!("../migrations/sqlite/0013_proof_requests.sql"),
        ),
        (
            14,
            "held_jobs",
            include_str!("../migrations/sqlite/0014_held_jobs.sql"),
        ),
    ])
}

pub(crate) fn postgres() -> Migrator {
    migrator(&[
        (
            1,
            "init",
            include_str!("../migrations/postgres/0001_init.sql"),
        ),
        (
            2,
            "token_high",
            include_str!("../migrations/postgres/0002_token_high.sql"),
        ),
        (
            3,
            "cordons",
            include_str!("../migrations/postgres/0003_cordons.sql"),
        ),
        (
            4,
            "cordon_reason",
            include_str!("../migrations/postgres/0004_cordon_reason.sql"),
        ),
        (
            6,
            "coordinator_lease",
            include_str!("../migrations/postgres/0006_coordinator_lease.sql"),
        ),
        (
            7,
            "public_values",
            include_str!("../migrations/postgres/0007_public_values.sql"),
        ),
        (
            8,
            "settlements",
            include_str!("../migrations/postgres/0008_settlements.sql"),
        ),
        (
            9,
            "attempts",
            include_str!("../migrations/postgres/0009_attempts.sql"),
        ),
        (
            10,
            "controls",
            include_str!("../migrations/postgres/0010_controls.sql"),
        ),
        (
            11,
            "commit_records",
            include_str!("../migrations/postgres/0011_commit_records.sql"),
        ),
        (
            12,
            "chains",
            include_str!("../migrations/postgres/0012_chains.sql"),
        ),
        (
            13,
            "proof_requests",
            include_str!("../migrations/postgres/0013_proof_requests.sql"),
        ),
        (
            14,
            "held_jobs",
            include_str!("../migrations/postgres/0014_held_jobs.sql"),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row as _;

    /// A store written before public values became opaque keeps them: the devnet's three
    /// columns, concatenated in their order.
    async fn upgrade_keeps_public_values<DB: sqlx::Database>(
        pool: sqlx::Pool<DB>,
        all: Migrator,
        (open, close): (&str, &str),
    ) where
        for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
        <DB as sqlx::Database>::Connection: sqlx::migrate::Migrate,
        for<'r> Vec<u8>: sqlx::Decode<'r, DB> + sqlx::Type<DB>,
        for<'a> &'a str: sqlx::ColumnIndex<DB::Row>,
        <DB as sqlx::Database>::Arguments: sqlx::IntoArguments<DB>,
    {
        let before =
            Migrator::with_migrations(all.iter().filter(|m| m.version < 7).cloned().collect());
        before.run(&pool).await.unwrap();
        let word = |b: u8| format!("{open}{}{close}", hex::encode([b; 32]));
        let insert = format!(
            "INSERT INTO batches (number, version, input_key, input_digest, input_size, \
             old_root, new_root, commitment, required, created_at) \
             VALUES (1, 'v1', 'inputs/1', {}, 3, {}, {}, {}, 'exec', 5)",
            word(9),
            word(1),
            word(2),
            word(3)
        );
        sqlx::query(sqlx::AssertSqlSafe(insert))
            .execute(&pool)
            .await
            .unwrap();
        all.run(&pool).await.unwrap();
        let row = sqlx::query("SELECT public_values FROM batches WHERE number = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        let public: Vec<u8> = row.try_get("public_values").unwrap();
        assert_eq!(public, [[1u8; 32], [2; 32], [3; 32]].concat());
    }

    #[tokio::test]
    async fn sqlite_upgrade_keeps_public_values() {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        upgrade_keeps_public_values(pool, sqlite(), ("x'", "'")).await;
    }

    #[tokio::test]
    async fn postgres_upgrade_keeps_public_values() {
        let url = proofmill_testkit::shared_database("migrate_public_values").unwrap();
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        upgrade_keeps_public_values(pool, postgres(), ("'\\x", "'::bytea")).await;
    }
}
