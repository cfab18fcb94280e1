//! The SQLite backend: one file in the data directory, WAL journal, foreign keys on.

use crate::sql::db_err;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use std::path::Path;
use std::time::Duration;

mod dialect;

/// A store in an SQLite database file.
pub struct SqliteStore {
    pub(crate) pool: sqlx::SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    pub async fn open(path: &Path) -> crate::Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL is durable across process crashes; the token writer batches commits.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(crate::ACQUIRE_TIMEOUT)
            .after_release(|conn, _| Box::pin(crate::sql::leaves_no_transaction(conn)))
            .connect_with(options)
            .await
            .map_err(db_err)?;
        let store = Self { pool };
        store.run_migrations().await?;
        Ok(store)
    }

    pub(crate) async fn run_migrations(&self) -> crate::Result<()> {
        Ok(sqlx::migrate!("migrations/sqlite").run(&self.pool).await?)
    }

    /// One SQLite file serves one node, which learns of its own writes in-process
    /// ([`crate::feed::Feed::catch_up`]): nothing to listen to.
    async fn change_listener(&self) -> crate::Result<Option<Box<dyn crate::feed::ChangeListener>>> {
        Ok(None)
    }
}

sql_store!(SqliteStore, sqlx::Sqlite, "sqlite");
