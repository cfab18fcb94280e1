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
        let pool = Self::pool_options()
            .connect_with(Self::with_timeouts(options))
            .await
            .map_err(db_err)?;
        let store = Self { pool };
        store.run_migrations().await?;
        Ok(store)
    }

    /// A store whose connections open on first use, without migrations (see
    /// [`crate::open_lazy`]).
    pub fn connect_lazy(url: &str) -> crate::Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(db_err)?;
        Ok(Self {
            pool: Self::pool_options().connect_lazy_with(Self::with_timeouts(options)),
        })
    }

    fn pool_options() -> PgPoolOptions {
        PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(crate::ACQUIRE_TIMEOUT)
            .after_release(|conn, _| Box::pin(crate::sql::leaves_no_transaction(conn)))
    }

    fn with_timeouts(options: PgConnectOptions) -> PgConnectOptions {
        let statement_timeout = format!("{}ms", crate::STATEMENT_TIMEOUT.as_millis());
        options.options([("statement_timeout", statement_timeout.as_str())])
    }

    pub(crate) async fn run_migrations(&self) -> crate::Result<()> {
        sqlx::migrate!("migrations/postgres")
            .run(&self.pool)
            .await
            .map_err(|e| match e {
                sqlx::migrate::MigrateError::Execute(e) => db_err(e),
                e => e.into(),
            })
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
