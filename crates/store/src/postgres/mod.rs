//! The PostgreSQL backend, for several nodes sharing one database.

use crate::sql::db_err;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use std::str::FromStr;

mod dialect;

/// A store in a PostgreSQL database.
pub struct PgStore {
    pub(crate) pool: sqlx::PgPool,
}

impl PgStore {
    /// Connects to `url` and applies migrations.
    pub async fn connect(url: &str) -> crate::Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(db_err)?;
        Self::connect_with(options).await
    }

    /// Connects with explicit options (tests use this to pick a private schema).
    pub async fn connect_with(options: PgConnectOptions) -> crate::Result<Self> {
        let statement_timeout = format!("{}ms", crate::STATEMENT_TIMEOUT.as_millis());
        let options = options.options([("statement_timeout", statement_timeout.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(crate::ACQUIRE_TIMEOUT)
            .after_release(|conn, _| Box::pin(crate::sql::leaves_no_transaction(conn)))
            .connect_with(options)
            .await
            .map_err(db_err)?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// `LISTEN`s on [`crate::feed::CHANNEL`] on a connection of its own.
    async fn change_listener(&self) -> crate::Result<Option<Box<dyn crate::feed::ChangeListener>>> {
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(db_err)?;
        listener
            .listen(crate::feed::CHANNEL)
            .await
            .map_err(db_err)?;
        Ok(Some(Box::new(Listener(listener))))
    }
}

struct Listener(PgListener);

#[async_trait::async_trait]
impl crate::feed::ChangeListener for Listener {
    async fn next(&mut self) -> crate::Result<bool> {
        // `try_recv` answers `None` once when the connection drops, and reconnects (and
        // listens again) on the next call.
        Ok(self.0.try_recv().await.map_err(db_err)?.is_some())
    }
}

sql_store!(PgStore, sqlx::Postgres, "postgres");
