//! The PostgreSQL backend, for several nodes sharing one database.

use crate::sql::db_err;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::str::FromStr;

mod dialect;

/// A store in a PostgreSQL database.
pub struct PgStore {
    pool: sqlx::PgPool,
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
}

sql_store!(PgStore, sqlx::Postgres, "postgres");
