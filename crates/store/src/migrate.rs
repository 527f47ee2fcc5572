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
            8,
            "settlements",
            include_str!("../migrations/sqlite/0008_settlements.sql"),
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
            8,
            "settlements",
            include_str!("../migrations/postgres/0008_settlements.sql"),
        ),
    ])
}
