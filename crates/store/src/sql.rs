//! The SQL both backends run, written once.
//!
//! `sql_store!` expands to the [`Store`](crate::Store) implementation for one backend's store
//! type. Every statement goes through `sqlx::QueryBuilder`, which writes each backend's own
//! placeholders, and the statements use only syntax both SQLite and PostgreSQL accept
//! (`ON CONFLICT`, `RETURNING`, `LIMIT/OFFSET`). What differs — substring search and label
//! lookups — is delegated to the backend's `dialect` module.

use crate::{Col, ColKind, col};

pub(crate) const AUTH_SERVER_COLS: &str = "id, name, description, audience, signing_algorithm, labels, trusted_origins, issuer_slug, created_at, updated_at";
pub(crate) const SCOPE_COLS: &str = "id, auth_server_id, name, description, is_default, include_in_metadata, enabled, created_at, updated_at";
pub(crate) const CLAIM_COLS: &str = "id, auth_server_id, name, value, include_in_token, include_in_all_scopes, include_in_scopes, enabled, created_at, updated_at";
pub(crate) const CLIENT_COLS: &str = "auth_server_id, id, name, grant_types, response_types, redirect_uris, login_uri, access_token_duration, id_token_duration, allow_all_scopes, allow_scopes, labels, token_endpoint_auth_method, created_at, updated_at";
pub(crate) const SECRET_COLS: &str =
    "id, auth_server_id, client_id, hash, enabled, created_at, updated_at";
pub(crate) const TOKEN_COLS: &str =
    "id, auth_server_id, client_id, granted_scope_names, created_at, expires_at, revoked_at";
pub(crate) const KEY_COLS: &str =
    "id, auth_server_id, algorithm, encrypted_private_key, public_jwk, created_at, retired_at";

pub(crate) const AUTH_SERVER_LIST: &[Col] = &[
    col("id", "id", ColKind::Text),
    col("name", "name", ColKind::Text),
    col("description", "description", ColKind::Text),
    col("audience", "audience", ColKind::Text),
    col("labels", "labels", ColKind::Labels),
    col("created_at", "created_at", ColKind::Int),
    col("updated_at", "updated_at", ColKind::Int),
];
pub(crate) const SCOPE_LIST: &[Col] = &[
    col("id", "id", ColKind::Text),
    col("name", "name", ColKind::Text),
    col("enabled", "enabled", ColKind::Bool),
    col("created_at", "created_at", ColKind::Int),
    col("updated_at", "updated_at", ColKind::Int),
];
pub(crate) const CLAIM_LIST: &[Col] = &[
    col("id", "id", ColKind::Text),
    col("name", "name", ColKind::Text),
    col("enabled", "enabled", ColKind::Bool),
    col("created_at", "created_at", ColKind::Int),
    col("updated_at", "updated_at", ColKind::Int),
];
pub(crate) const CLIENT_LIST: &[Col] = &[
    col("id", "id", ColKind::Text),
    col("name", "name", ColKind::Text),
    col("labels", "labels", ColKind::Labels),
    col("created_at", "created_at", ColKind::Int),
    col("updated_at", "updated_at", ColKind::Int),
];
pub(crate) const SECRET_LIST: &[Col] = &[
    col("id", "id", ColKind::Text),
    col("enabled", "enabled", ColKind::Bool),
    col("created_at", "created_at", ColKind::Int),
    col("updated_at", "updated_at", ColKind::Int),
];
pub(crate) const TOKEN_LIST: &[Col] = &[
    col("id", "id", ColKind::Text),
    col("created_at", "created_at", ColKind::Int),
    col("expires_at", "expires_at", ColKind::Int),
];

/// The pool's `after_release` check: a connection that comes back still inside a transaction
/// is closed rather than reused (`Ok(false)`). A COMMIT that fails — a full disk (SQLite's
/// `SQLITE_FULL` leaves the transaction open), a dropped server — leaves sqlx's transaction
/// depth at one, and every later `BEGIN` on that connection would fail with "non-zero
/// transaction depth" until the process restarts. Closing it rolls the transaction back.
pub(crate) async fn leaves_no_transaction<C: sqlx::Connection>(
    conn: &mut C,
) -> Result<bool, sqlx::Error> {
    if conn.is_in_transaction() {
        tracing::warn!("a database connection came back inside a failed transaction; closing it");
        return Ok(false);
    }
    Ok(true)
}

/// Maps a sqlx error to a store error, recognising constraint violations and an unavailable
/// database.
pub(crate) fn db_err(e: sqlx::Error) -> crate::StoreError {
    if let sqlx::Error::Database(d) = &e {
        if d.is_unique_violation() {
            return crate::StoreError::Conflict;
        }
        if d.is_foreign_key_violation() {
            return crate::StoreError::NotFound;
        }
    }
    if is_unavailable(&e) {
        return crate::StoreError::Unavailable(e);
    }
    crate::StoreError::Database(e)
}

/// Whether `e` says the database cannot answer now rather than that the request was wrong.
fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|code| {
            // PostgreSQL (SQLSTATE): class 08, connection exception; 57P01–57P03, the server
            // shutting down or starting; 57014, cancelled by statement_timeout; 53300, too
            // many connections.
            code.starts_with("08")
                || matches!(&*code, "57P01" | "57P02" | "57P03" | "57014" | "53300")
                // SQLite (result codes, extended ones included): SQLITE_BUSY, the write lock
                // held past the busy timeout.
                || code.parse::<u32>().is_ok_and(|n| n & 0xff == 5)
        }),
        _ => false,
    }
}

/// Expands to `impl Store for $store` over `sqlx::Pool<$db>` in `self.pool`.
macro_rules! sql_store {
    ($store:ty, $db:ty, $backend:literal) => {
        use $crate::rows::{self, convert, to_json, uuids_json};
        use $crate::sql::*;
        use $crate::{Col, ColKind, Result, StoreError};
        use gatehouse_core::Timestamp;
        use gatehouse_core::identity::*;
        use gatehouse_core::list::{FilterOp, ListQuery, Page};
        use sqlx::QueryBuilder;
        use uuid::Uuid;

        type Qb = QueryBuilder<'static, $db>;

        fn push_filters(qb: &mut Qb, cols: &[Col], q: &ListQuery) {
            for f in &q.filters {
                // The API checked the field names; an unknown one here matches nothing.
                let Some(c) = cols.iter().find(|c| c.name == f.field) else {
                    qb.push(" AND 1 = 0");
                    continue;
                };
                qb.push(" AND ");
                match (c.kind, f.op) {
                    (ColKind::Text, FilterOp::Eq) => {
                        qb.push(c.column).push(" = ").push_bind(f.value.clone());
                    }
                    (ColKind::Text, FilterOp::Neq) => {
                        qb.push(c.column).push(" <> ").push_bind(f.value.clone());
                    }
                    (ColKind::Text, FilterOp::Contains) => {
                        dialect::push_contains(qb, c.column, f.value.clone());
                    }
                    (ColKind::Bool, op) => {
                        let cmp = if op == FilterOp::Neq { " <> " } else { " = " };
                        qb.push(c.column).push(cmp).push_bind(f.value == "true");
                    }
                    (ColKind::Int, op) => {
                        let cmp = if op == FilterOp::Neq { " <> " } else { " = " };
                        qb.push(c.column)
                            .push(cmp)
                            .push_bind(f.value.parse::<i64>().unwrap_or(i64::MIN));
                    }
                    (ColKind::Labels, _) => {
                        let (k, v) = f.value.split_once(':').unwrap_or((f.value.as_str(), ""));
                        dialect::push_label_eq(qb, c.column, k.to_owned(), v.to_owned());
                    }
                }
            }
        }

        fn push_order_page(qb: &mut Qb, cols: &[Col], q: &ListQuery, tie: &str) {
            qb.push(" ORDER BY ");
            for s in &q.sort {
                if let Some(c) = cols.iter().find(|c| c.name == s.field) {
                    qb.push(c.column)
                        .push(if s.desc { " DESC, " } else { " ASC, " });
                }
            }
            qb.push(tie);
            qb.push(" LIMIT ")
                .push_bind(i64::from(q.page_size))
                .push(" OFFSET ")
                .push_bind(q.offset() as i64);
        }

        impl $store {
            /// One page of `table` where `scope` columns equal the given values.
            #[allow(clippy::too_many_arguments)] // one call site per collection; a struct would only rename them
            async fn page<R>(
                &self,
                table: &str,
                select: &str,
                scope: &[(&str, String)],
                extra: &str,
                cols: &[Col],
                q: &ListQuery,
                tie: &str,
            ) -> Result<(Vec<R>, u64)>
            where
                R: for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row> + Send + Unpin,
            {
                let build_where = |qb: &mut Qb| {
                    qb.push(" WHERE 1 = 1");
                    for (c, v) in scope {
                        qb.push(" AND ").push(*c).push(" = ").push_bind(v.clone());
                    }
                    if !extra.is_empty() {
                        qb.push(" AND ").push(extra);
                    }
                    push_filters(qb, cols, q);
                };
                let mut count: Qb = QueryBuilder::new(format!("SELECT COUNT(*) FROM {table}"));
                build_where(&mut count);
                let total: i64 = count
                    .build_query_scalar()
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db_err)?;
                let mut qb: Qb = QueryBuilder::new(format!("SELECT {select} FROM {table}"));
                build_where(&mut qb);
                push_order_page(&mut qb, cols, q, tie);
                let rows = qb
                    .build_query_as::<R>()
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err)?;
                Ok((rows, total.max(0) as u64))
            }

            gateway_sql_helpers!($db);

            /// Runs a statement that must touch one row; zero rows is `NotFound`.
            async fn exec_one(&self, mut qb: Qb) -> Result<()> {
                let done = qb.build().execute(&self.pool).await.map_err(db_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                Ok(())
            }

            /// Why a compare-and-swap update (`… AND updated_at = <read>`) changed nothing: the
            /// row exists with another `updated_at` (`Stale`), or it is gone (`NotFound`).
            async fn stale_or_missing(&self, table: &str, keys: &[(&str, String)]) -> StoreError {
                let mut qb: Qb = QueryBuilder::new(format!("SELECT 1 FROM {table} WHERE "));
                for (i, (column, value)) in keys.iter().enumerate() {
                    if i > 0 {
                        qb.push(" AND ");
                    }
                    qb.push(*column).push(" = ").push_bind(value.clone());
                }
                match qb.build_query_scalar::<i32>().fetch_optional(&self.pool).await {
                    Ok(Some(_)) => StoreError::Stale,
                    Ok(None) => StoreError::NotFound,
                    Err(e) => db_err(e),
                }
            }

            /// Runs a compare-and-swap update of one row of `table` (see
            /// [`Self::stale_or_missing`]).
            async fn exec_cas(&self, mut qb: Qb, table: &str, keys: &[(&str, String)]) -> Result<()> {
                let done = qb.build().execute(&self.pool).await.map_err(db_err)?;
                if done.rows_affected() == 0 {
                    return Err(self.stale_or_missing(table, keys).await);
                }
                Ok(())
            }
        }

        fn push_key_insert(qb: &mut Qb, k: &SigningKey) {
            qb.push(format!("INSERT INTO signing_keys ({KEY_COLS}) VALUES ("));
            let mut s = qb.separated(", ");
            s.push_bind(k.id.to_string())
                .push_bind(k.auth_server_id.to_string())
                .push_bind(k.algorithm.as_str().to_owned())
                .push_bind(k.encrypted_private_key.clone())
                .push_bind(k.public_jwk.clone())
                .push_bind(k.created_at.0)
                .push_bind(k.retired_at.map(|t| t.0));
            qb.push(")");
        }

        fn push_secret_insert(qb: &mut Qb, s: &ClientSecret) {
            qb.push(format!("INSERT INTO client_secrets ({SECRET_COLS}) VALUES ("));
            let mut sep = qb.separated(", ");
            sep.push_bind(s.id.to_string())
                .push_bind(s.auth_server_id.to_string())
                .push_bind(s.client_id.clone())
                .push_bind(s.hash.clone())
                .push_bind(s.enabled)
                .push_bind(s.created_at.0)
                .push_bind(s.updated_at.0);
            qb.push(")");
        }

        fn push_client_values(qb: &mut Qb, c: &Client) {
            let mut s = qb.separated(", ");
            s.push_bind(c.auth_server_id.to_string())
                .push_bind(c.id.clone())
                .push_bind(c.name.clone())
                .push_bind(rows::grant_types_json(c))
                .push_bind(rows::response_types_json(c))
                .push_bind(to_json(&c.redirect_uris))
                .push_bind(c.login_uri.clone())
                .push_bind(c.access_token_duration)
                .push_bind(c.id_token_duration)
                .push_bind(c.allow_all_scopes)
                .push_bind(uuids_json(&c.allow_scopes))
                .push_bind(to_json(&c.labels))
                .push_bind(c.token_endpoint_auth_method.as_str().to_owned())
                .push_bind(c.created_at.0)
                .push_bind(c.updated_at.0);
        }

        fn push_client_update(qb: &mut Qb, c: &Client) {
            qb.push("UPDATE clients SET name = ")
                .push_bind(c.name.clone())
                .push(", grant_types = ")
                .push_bind(rows::grant_types_json(c))
                .push(", response_types = ")
                .push_bind(rows::response_types_json(c))
                .push(", redirect_uris = ")
                .push_bind(to_json(&c.redirect_uris))
                .push(", login_uri = ")
                .push_bind(c.login_uri.clone())
                .push(", access_token_duration = ")
                .push_bind(c.access_token_duration)
                .push(", id_token_duration = ")
                .push_bind(c.id_token_duration)
                .push(", allow_all_scopes = ")
                .push_bind(c.allow_all_scopes)
                .push(", allow_scopes = ")
                .push_bind(uuids_json(&c.allow_scopes))
                .push(", labels = ")
                .push_bind(to_json(&c.labels))
                .push(", token_endpoint_auth_method = ")
                .push_bind(c.token_endpoint_auth_method.as_str().to_owned())
                .push(", updated_at = ")
                .push_bind(c.updated_at.0)
                .push(" WHERE auth_server_id = ")
                .push_bind(c.auth_server_id.to_string())
                .push(" AND id = ")
                .push_bind(c.id.clone());
        }

        /// Takes the client row's write lock for the rest of the transaction (a no-op update
        /// locks the row in PostgreSQL and the database in SQLite), so that checking the number
        /// of enabled secrets and changing it cannot interleave. `NotFound` if there is no client.
        async fn lock_client<'c, E>(ex: E, auth_server: Uuid, client: &str) -> Result<()>
        where
            E: sqlx::Executor<'c, Database = $db>,
        {
            let mut qb: Qb = QueryBuilder::new("UPDATE clients SET updated_at = updated_at WHERE auth_server_id = ");
            qb.push_bind(auth_server.to_string())
                .push(" AND id = ")
                .push_bind(client.to_owned());
            let done = qb.build().execute(ex).await.map_err(db_err)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        }

        async fn count_enabled_secrets<'c, E>(ex: E, auth_server: Uuid, client: &str) -> Result<i64>
        where
            E: sqlx::Executor<'c, Database = $db>,
        {
            let mut qb: Qb = QueryBuilder::new(
                "SELECT COUNT(*) FROM client_secrets WHERE enabled = ",
            );
            qb.push_bind(true)
                .push(" AND auth_server_id = ")
                .push_bind(auth_server.to_string())
                .push(" AND client_id = ")
                .push_bind(client.to_owned());
            qb.build_query_scalar().fetch_one(ex).await.map_err(db_err)
        }

        #[async_trait::async_trait]
        impl $crate::Store for $store {
            fn backend(&self) -> &'static str {
                $backend
            }

            async fn migrate(&self) -> Result<()> {
                self.run_migrations().await
            }

            async fn ping(&self) -> Result<()> {
                sqlx::query("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map_err(db_err)?;
                Ok(())
            }

            async fn get_setting(&self, key: &str) -> Result<Option<String>> {
                let mut qb: Qb = QueryBuilder::new("SELECT value FROM settings WHERE key = ");
                qb.push_bind(key.to_owned());
                qb.build_query_scalar()
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)
            }

            async fn put_setting_if_absent(&self, key: &str, value: &str) -> Result<bool> {
                let mut qb: Qb = QueryBuilder::new("INSERT INTO settings (key, value) VALUES (");
                qb.push_bind(key.to_owned())
                    .push(", ")
                    .push_bind(value.to_owned())
                    .push(") ON CONFLICT (key) DO NOTHING");
                let done = qb.build().execute(&self.pool).await.map_err(db_err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
                let mut qb: Qb = QueryBuilder::new("INSERT INTO settings (key, value) VALUES (");
                qb.push_bind(key.to_owned())
                    .push(", ")
                    .push_bind(value.to_owned())
                    .push(") ON CONFLICT (key) DO UPDATE SET value = excluded.value");
                qb.build().execute(&self.pool).await.map_err(db_err)?;
                Ok(())
            }

            async fn create_auth_server(&self, s: &AuthServer, key: &SigningKey) -> Result<()> {
                let mut tx = self.pool.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
                let mut qb: Qb = QueryBuilder::new(format!(
                    "INSERT INTO auth_servers ({AUTH_SERVER_COLS}) VALUES ("
                ));
                let mut sep = qb.separated(", ");
                sep.push_bind(s.id.to_string())
                    .push_bind(s.name.clone())
                    .push_bind(s.description.clone())
                    .push_bind(s.audience.clone())
                    .push_bind(s.signing_algorithm.as_str().to_owned())
                    .push_bind(to_json(&s.labels))
                    .push_bind(to_json(&s.trusted_origins))
                    .push_bind(s.issuer_slug.clone())
                    .push_bind(s.created_at.0)
                    .push_bind(s.updated_at.0);
                qb.push(")");
                qb.build().execute(&mut *tx).await.map_err(db_err)?;
                let mut qb: Qb = QueryBuilder::new("");
                push_key_insert(&mut qb, key);
                qb.build().execute(&mut *tx).await.map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }

            async fn get_auth_server(&self, id: Uuid) -> Result<Option<AuthServer>> {
                let mut qb: Qb = QueryBuilder::new(format!(
                    "SELECT {AUTH_SERVER_COLS} FROM auth_servers WHERE id = "
                ));
                qb.push_bind(id.to_string());
                let row: Option<rows::AuthServerRow> = qb
                    .build_query_as()
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                row.map(AuthServer::try_from).transpose()
            }

            async fn list_auth_servers(&self, q: &ListQuery) -> Result<Page<AuthServer>> {
                let (rows, total) = self
                    .page::<rows::AuthServerRow>(
                        "auth_servers",
                        AUTH_SERVER_COLS,
                        &[],
                        "",
                        AUTH_SERVER_LIST,
                        q,
                        "created_at ASC, id ASC",
                    )
                    .await?;
                Ok(Page { items: convert(rows)?, total })
            }

            async fn all_auth_servers(&self) -> Result<Vec<AuthServer>> {
                let qb: Qb = QueryBuilder::new(format!(
                    "SELECT {AUTH_SERVER_COLS} FROM auth_servers ORDER BY created_at, id"
                ));
                let mut qb = qb;
                let rows: Vec<rows::AuthServerRow> =
                    qb.build_query_as().fetch_all(&self.pool).await.map_err(db_err)?;
                convert(rows)
            }

            async fn update_auth_server(
                &self,
                s: &AuthServer,
                new_key: Option<&SigningKey>,
                read: Timestamp,
            ) -> Result<()> {
                let mut tx = self.pool.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
                let mut qb: Qb = QueryBuilder::new("UPDATE auth_servers SET name = ");
                qb.push_bind(s.name.clone())
                    .push(", description = ")
                    .push_bind(s.description.clone())
                    .push(", audience = ")
                    .push_bind(s.audience.clone())
                    .push(", signing_algorithm = ")
                    .push_bind(s.signing_algorithm.as_str().to_owned())
                    .push(", labels = ")
                    .push_bind(to_json(&s.labels))
                    .push(", trusted_origins = ")
                    .push_bind(to_json(&s.trusted_origins))
                    .push(", updated_at = ")
                    .push_bind(s.updated_at.0)
                    .push(" WHERE id = ")
                    .push_bind(s.id.to_string())
                    .push(" AND updated_at = ")
                    .push_bind(read.0);
                let done = qb.build().execute(&mut *tx).await.map_err(db_err)?;
                if done.rows_affected() == 0 {
                    drop(tx);
                    return Err(self
                        .stale_or_missing("auth_servers", &[("id", s.id.to_string())])
                        .await);
                }
                if let Some(k) = new_key {
                    let mut qb: Qb = QueryBuilder::new("UPDATE signing_keys SET retired_at = ");
                    qb.push_bind(k.created_at.0)
                        .push(" WHERE retired_at IS NULL AND auth_server_id = ")
                        .push_bind(s.id.to_string());
                    qb.build().execute(&mut *tx).await.map_err(db_err)?;
                    let mut qb: Qb = QueryBuilder::new("");
                    push_key_insert(&mut qb, k);
                    qb.build().execute(&mut *tx).await.map_err(db_err)?;
                }
                tx.commit().await.map_err(db_err)
            }

            async fn delete_auth_server(&self, id: Uuid, force: bool) -> Result<()> {
                let mut tx = self.pool.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
                if !force {
                    for table in ["scopes", "claims", "clients"] {
                        let mut qb: Qb = QueryBuilder::new(format!(
                            "SELECT COUNT(*) FROM {table} WHERE auth_server_id = "
                        ));
                        qb.push_bind(id.to_string());
                        let n: i64 = qb
                            .build_query_scalar()
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(db_err)?;
                        if n > 0 {
                            return Err(StoreError::HasChildren);
                        }
                    }
                }
                // Children go explicitly, so the outcome does not depend on whether the
                // connection enforces ON DELETE CASCADE.
                for table in ["issued_tokens", "client_secrets", "clients", "claims", "scopes", "signing_keys"] {
                    let mut qb: Qb =
                        QueryBuilder::new(format!("DELETE FROM {table} WHERE auth_server_id = "));
                    qb.push_bind(id.to_string());
                    qb.build().execute(&mut *tx).await.map_err(db_err)?;
                }
                let mut qb: Qb = QueryBuilder::new("DELETE FROM auth_servers WHERE id = ");
                qb.push_bind(id.to_string());
                let done = qb.build().execute(&mut *tx).await.map_err(db_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                tx.commit().await.map_err(db_err)
            }

            async fn create_scope(&self, s: &Scope) -> Result<()> {
                let mut qb: Qb =
                    QueryBuilder::new(format!("INSERT INTO scopes ({SCOPE_COLS}) VALUES ("));
                let mut sep = qb.separated(", ");
                sep.push_bind(s.id.to_string())
                    .push_bind(s.auth_server_id.to_string())
                    .push_bind(s.name.clone())
                    .push_bind(s.description.clone())
                    .push_bind(s.default)
                    .push_bind(s.include_in_metadata)
                    .push_bind(s.enabled)
                    .push_bind(s.created_at.0)
                    .push_bind(s.updated_at.0);
                qb.push(")");
                qb.build().execute(&self.pool).await.map_err(db_err)?;
                Ok(())
            }

            async fn get_scope(&self, auth_server: Uuid, id: Uuid) -> Result<Option<Scope>> {
                let mut qb: Qb =
                    QueryBuilder::new(format!("SELECT {SCOPE_COLS} FROM scopes WHERE id = "));
                qb.push_bind(id.to_string())
                    .push(" AND auth_server_id = ")
                    .push_bind(auth_server.to_string());
                let row: Option<rows::ScopeRow> = qb
                    .build_query_as()
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                row.map(Scope::try_from).transpose()
            }

            async fn list_scopes(&self, auth_server: Uuid, q: &ListQuery) -> Result<Page<Scope>> {
                let (rows, total) = self
                    .page::<rows::ScopeRow>(
                        "scopes",
                        SCOPE_COLS,
                        &[("auth_server_id", auth_server.to_string())],
                        "",
                        SCOPE_LIST,
                        q,
                        "created_at ASC, id ASC",
                    )
                    .await?;
                Ok(Page { items: convert(rows)?, total })
            }

            async fn all_scopes(&self, auth_server: Uuid) -> Result<Vec<Scope>> {
                let mut qb: Qb = QueryBuilder::new(format!(
                    "SELECT {SCOPE_COLS} FROM scopes WHERE auth_server_id = "
                ));
                qb.push_bind(auth_server.to_string()).push(" ORDER BY created_at, id");
                let rows: Vec<rows::ScopeRow> =
                    qb.build_query_as().fetch_all(&self.pool).await.map_err(db_err)?;
                convert(rows)
            }

            async fn update_scope(&self, s: &Scope, read: Timestamp) -> Result<()> {
                let mut qb: Qb = QueryBuilder::new("UPDATE scopes SET name = ");
                qb.push_bind(s.name.clone())
                    .push(", description = ")
                    .push_bind(s.description.clone())
                    .push(", is_default = ")
                    .push_bind(s.default)
                    .push(", include_in_metadata = ")
                    .push_bind(s.include_in_metadata)
                    .push(", enabled = ")
                    .push_bind(s.enabled)
                    .push(", updated_at = ")
                    .push_bind(s.updated_at.0)
                    .push(" WHERE id = ")
                    .push_bind(s.id.to_string())
                    .push(" AND auth_server_id = ")
                    .push_bind(s.auth_server_id.to_string())
                    .push(" AND updated_at = ")
                    .push_bind(read.0);
                self.exec_cas(qb, "scopes", &[("id", s.id.to_string())]).await
            }

            async fn delete_scope(&self, auth_server: Uuid, id: Uuid) -> Result<()> {
                let mut tx = self.pool.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
                let mut qb: Qb = QueryBuilder::new("DELETE FROM scopes WHERE id = ");
                qb.push_bind(id.to_string())
                    .push(" AND auth_server_id = ")
                    .push_bind(auth_server.to_string());
                let done = qb.build().execute(&mut *tx).await.map_err(db_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                // Remove the scope from every list that names it.
                let mut qb: Qb = QueryBuilder::new(
                    "SELECT id, allow_scopes FROM clients WHERE auth_server_id = ",
                );
                qb.push_bind(auth_server.to_string());
                let clients: Vec<(String, String)> =
                    qb.build_query_as().fetch_all(&mut *tx).await.map_err(db_err)?;
                let needle = id.to_string();
                for (client, allow) in clients {
                    let list: Vec<String> = serde_json::from_str(&allow).unwrap_or_default();
                    if list.contains(&needle) {
                        let kept: Vec<&String> = list.iter().filter(|s| **s != needle).collect();
                        let mut qb: Qb = QueryBuilder::new("UPDATE clients SET allow_scopes = ");
                        qb.push_bind(to_json(&kept))
                            .push(" WHERE auth_server_id = ")
                            .push_bind(auth_server.to_string())
                            .push(" AND id = ")
                            .push_bind(client);
                        qb.build().execute(&mut *tx).await.map_err(db_err)?;
                    }
                }
                let mut qb: Qb = QueryBuilder::new(
                    "SELECT id, include_in_scopes FROM claims WHERE auth_server_id = ",
                );
                qb.push_bind(auth_server.to_string());
                let claims: Vec<(String, String)> =
                    qb.build_query_as().fetch_all(&mut *tx).await.map_err(db_err)?;
                for (claim, scopes) in claims {
                    let list: Vec<String> = serde_json::from_str(&scopes).unwrap_or_default();
                    if list.contains(&needle) {
                        let kept: Vec<&String> = list.iter().filter(|s| **s != needle).collect();
                        let mut qb: Qb =
                            QueryBuilder::new("UPDATE claims SET include_in_scopes = ");
                        qb.push_bind(to_json(&kept)).push(" WHERE id = ").push_bind(claim);
                        qb.build().execute(&mut *tx).await.map_err(db_err)?;
                    }
                }
                tx.commit().await.map_err(db_err)
            }

            async fn create_claim(&self, c: &Claim) -> Result<()> {
                let mut qb: Qb =
                    QueryBuilder::new(format!("INSERT INTO claims ({CLAIM_COLS}) VALUES ("));
                let mut sep = qb.separated(", ");
                sep.push_bind(c.id.to_string())
                    .push_bind(c.auth_server_id.to_string())
                    .push_bind(c.name.clone())
                    .push_bind(c.value.clone())
                    .push_bind(c.include_in_token)
                    .push_bind(c.include_in_all_scopes)
                    .push_bind(uuids_json(&c.include_in_scopes))
                    .push_bind(c.enabled)
                    .push_bind(c.created_at.0)
                    .push_bind(c.updated_at.0);
                qb.push(")");
                qb.build().execute(&self.pool).await.map_err(db_err)?;
                Ok(())
            }

            async fn get_claim(&self, auth_server: Uuid, id: Uuid) -> Result<Option<Claim>> {
                let mut qb: Qb =
                    QueryBuilder::new(format!("SELECT {CLAIM_COLS} FROM claims WHERE id = "));
                qb.push_bind(id.to_string())
                    .push(" AND auth_server_id = ")
                    .push_bind(auth_server.to_string());
                let row: Option<rows::ClaimRow> = qb
                    .build_query_as()
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                row.map(Claim::try_from).transpose()
            }

            async fn list_claims(&self, auth_server: Uuid, q: &ListQuery) -> Result<Page<Claim>> {
                let (rows, total) = self
                    .page::<rows::ClaimRow>(
                        "claims",
                        CLAIM_COLS,
                        &[("auth_server_id", auth_server.to_string())],
                        "",
                        CLAIM_LIST,
                        q,
                        "created_at ASC, id ASC",
                    )
                    .await?;
                Ok(Page { items: convert(rows)?, total })
            }

            async fn all_claims(&self, auth_server: Uuid) -> Result<Vec<Claim>> {
                let mut qb: Qb = QueryBuilder::new(format!(
                    "SELECT {CLAIM_COLS} FROM claims WHERE auth_server_id = "
                ));
                qb.push_bind(auth_server.to_string()).push(" ORDER BY created_at, id");
                let rows: Vec<rows::ClaimRow> =
                    qb.build_query_as().fetch_all(&self.pool).await.map_err(db_err)?;
                convert(rows)
            }

            async fn update_claim(&self, c: &Claim, read: Timestamp) -> Result<()> {
                let mut qb: Qb = QueryBuilder::new("UPDATE claims SET name = ");
                qb.push_bind(c.name.clone())
                    .push(", value = ")
                    .push_bind(c.value.clone())
                    .push(", include_in_token = ")
                    .push_bind(c.include_in_token)
                    .push(", include_in_all_scopes = ")
                    .push_bind(c.include_in_all_scopes)
                    .push(", include_in_scopes = ")
                    .push_bind(uuids_json(&c.include_in_scopes))
                    .push(", enabled = ")
                    .push_bind(c.enabled)
                    .push(", updated_at = ")
                    .push_bind(c.updated_at.0)
                    .push(" WHERE id = ")
                    .push_bind(c.id.to_string())
                    .push(" AND auth_server_id = ")
                    .push_bind(c.auth_server_id.to_string())
                    .push(" AND updated_at = ")
                    .push_bind(read.0);
                self.exec_cas(qb, "claims", &[("id", c.id.to_string())]).await
            }

            async fn delete_claim(&self, auth_server: Uuid, id: Uuid) -> Result<()> {
                let mut qb: Qb = QueryBuilder::new("DELETE FROM claims WHERE id = ");
                qb.push_bind(id.to_string())
                    .push(" AND auth_server_id = ")
                    .push_bind(auth_server.to_string());
                self.exec_one(qb).await
            }

            async fn create_client(&self, c: &Client, secret: &ClientSecret) -> Result<()> {
                let mut tx = self.pool.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
                let mut qb: Qb =
                    QueryBuilder::new(format!("INSERT INTO clients ({CLIENT_COLS}) VALUES ("));
                push_client_values(&mut qb, c);
                qb.push(")");
                qb.build().execute(&mut *tx).await.map_err(db_err)?;
                let mut qb: Qb = QueryBuilder::new("");
                push_secret_insert(&mut qb, secret);
                qb.build().execute(&mut *tx).await.map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }

            async fn get_client(&self, auth_server: Uuid, id: &str) -> Result<Option<Client>> {
                let mut qb: Qb = QueryBuilder::new(format!(
                    "SELECT {CLIENT_COLS} FROM clients WHERE auth_server_id = "
                ));
                qb.push_bind(auth_server.to_string())
                    .push(" AND id = ")
                    .push_bind(id.to_owned());
                let row: Option<rows::ClientRow> = qb
                    .build_query_as()
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                row.map(Client::try_from).transpose()
            }

            async fn list_clients(&self, auth_server: Uuid, q: &ListQuery) -> Result<Page<Client>> {
                let (rows, total) = self
                    .page::<rows::ClientRow>(
                        "clients",
                        CLIENT_COLS,
                        &[("auth_server_id", auth_server.to_string())],
                        "",
                        CLIENT_LIST,
                        q,
                        "created_at ASC, id ASC",
                    )
                    .await?;
                Ok(Page { items: convert(rows)?, total })
            }

            async fn all_clients(&self, auth_server: Uuid) -> Result<Vec<Client>> {
                let mut qb: Qb = QueryBuilder::new(format!(
                    "SELECT {CLIENT_COLS} FROM clients WHERE auth_server_id = "
                ));
                qb.push_bind(auth_server.to_string()).push(" ORDER BY created_at, id");
                let rows: Vec<rows::ClientRow> =
                    qb.build_query_as().fetch_all(&self.pool).await.map_err(db_err)?;
                convert(rows)
            }

            async fn update_client(
                &self,
                c: &Client,
                secret: Option<&ClientSecret>,
                read: Timestamp,
            ) -> Result<()> {
                let mut tx = self.pool.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
                let mut qb: Qb = QueryBuilder::new("");
                push_client_update(&mut qb, c);
                qb.push(" AND updated_at = ").push_bind(read.0);
                let done = qb.build().execute(&mut *tx).await.map_err(db_err)?;
                if done.rows_affected() == 0 {
                    drop(tx);
                    return Err(self
                        .stale_or_missing(
                            "clients",
                            &[
                                ("auth_server_id", c.auth_server_id.to_string()),
                                ("id", c.id.clone()),
                            ],
                        )
                        .await);
                }
                if let Some(secret) = secret {
                    let mut qb: Qb =
                        QueryBuilder::new("DELETE FROM client_secrets WHERE auth_server_id = ");
                    qb.push_bind(c.auth_server_id.to_string())
                        .push(" AND client_id = ")
                        .push_bind(c.id.clone());
                    qb.build().execute(&mut *tx).await.map_err(db_err)?;
                    let mut qb: Qb = QueryBuilder::new("");
                    push_secret_insert(&mut qb, secret);
                    qb.build().execute(&mut *tx).await.map_err(db_err)?;
                }
                tx.commit().await.map_err(db_err)
            }

            async fn upsert_client(&self, c: &Client, secret: &ClientSecret) -> Result<bool> {
                let mut tx = self.pool.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
                let mut qb: Qb = QueryBuilder::new("");
                push_client_update(&mut qb, c);
                let done = qb.build().execute(&mut *tx).await.map_err(db_err)?;
                let created = done.rows_affected() == 0;
                if created {
                    let mut qb: Qb =
                        QueryBuilder::new(format!("INSERT INTO clients ({CLIENT_COLS}) VALUES ("));
                    push_client_values(&mut qb, c);
                    qb.push(")");
                    qb.build().execute(&mut *tx).await.map_err(db_err)?;
                } else {
                    let mut qb: Qb =
                        QueryBuilder::new("DELETE FROM client_secrets WHERE auth_server_id = ");
                    qb.push_bind(c.auth_server_id.to_string())
                        .push(" AND client_id = ")
                        .push_bind(c.id.clone());
                    qb.build().execute(&mut *tx).await.map_err(db_err)?;
                }
                let mut qb: Qb = QueryBuilder::new("");
                push_secret_insert(&mut qb, secret);
                qb.build().execute(&mut *tx).await.map_err(db_err)?;
                tx.commit().await.map_err(db_err)?;
                Ok(created)
            }

            async fn delete_client(&self, auth_server: Uuid, id: &str) -> Result<()> {
                let mut tx = self.pool.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
                for table in ["issued_tokens", "client_secrets"] {
                    let mut qb: Qb =
                        QueryBuilder::new(format!("DELETE FROM {table} WHERE auth_server_id = "));
                    qb.push_bind(auth_server.to_string())
                        .push(" AND client_id = ")
                        .push_bind(id.to_owned());
                    qb.build().execute(&mut *tx).await.map_err(db_err)?;
                }
                let mut qb: Qb = QueryBuilder::new("DELETE FROM clients WHERE auth_server_id = ");
                qb.push_bind(auth_server.to_string())
                    .push(" AND id = ")
                    .push_bind(id.to_owned());
                let done = qb.build().execute(&mut *tx).await.map_err(db_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                tx.commit().await.map_err(db_err)
            }

            async fn create_secret(&self, s: &ClientSecret, max_enabled: usize) -> Result<()> {
                let mut tx = self.pool.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
                lock_client(&mut *tx, s.auth_server_id, &s.client_id).await?;
                if s.enabled
                    && count_enabled_secrets(&mut *tx, s.auth_server_id, &s.client_id).await?
                        >= max_enabled as i64
                {
                    return Err(StoreError::TooManySecrets);
                }
                let mut qb: Qb = QueryBuilder::new("");
                push_secret_insert(&mut qb, s);
                qb.build().execute(&mut *tx).await.map_err(db_err)?;
                tx.commit().await.map_err(db_err)
            }

            async fn list_secrets(
                &self,
                auth_server: Uuid,
                client: &str,
                q: &ListQuery,
            ) -> Result<Page<ClientSecret>> {
                let (rows, total) = self
                    .page::<rows::SecretRow>(
                        "client_secrets",
                        SECRET_COLS,
                        &[
                            ("auth_server_id", auth_server.to_string()),
                            ("client_id", client.to_owned()),
                        ],
                        "",
                        SECRET_LIST,
                        q,
                        "created_at ASC, id ASC",
                    )
                    .await?;
                Ok(Page { items: convert(rows)?, total })
            }

            async fn all_secrets(&self, auth_server: Uuid) -> Result<Vec<ClientSecret>> {
                let mut qb: Qb = QueryBuilder::new(format!(
                    "SELECT {SECRET_COLS} FROM client_secrets WHERE auth_server_id = "
                ));
                qb.push_bind(auth_server.to_string()).push(" ORDER BY created_at, id");
                let rows: Vec<rows::SecretRow> =
                    qb.build_query_as().fetch_all(&self.pool).await.map_err(db_err)?;
                convert(rows)
            }

            async fn get_secret(
                &self,
                auth_server: Uuid,
                client: &str,
                id: Uuid,
            ) -> Result<Option<ClientSecret>> {
                let mut qb: Qb = QueryBuilder::new(format!(
                    "SELECT {SECRET_COLS} FROM client_secrets WHERE id = "
                ));
                qb.push_bind(id.to_string())
                    .push(" AND auth_server_id = ")
                    .push_bind(auth_server.to_string())
                    .push(" AND client_id = ")
                    .push_bind(client.to_owned());
                let row: Option<rows::SecretRow> = qb
                    .build_query_as()
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                row.map(ClientSecret::try_from).transpose()
            }

            async fn set_secret_enabled(
                &self,
                auth_server: Uuid,
                client: &str,
                id: Uuid,
                enabled: bool,
                max_enabled: usize,
            ) -> Result<ClientSecret> {
                let mut tx = self.pool.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
                lock_client(&mut *tx, auth_server, client).await?;
                let mut qb: Qb = QueryBuilder::new(format!(
                    "SELECT {SECRET_COLS} FROM client_secrets WHERE id = "
                ));
                qb.push_bind(id.to_string())
                    .push(" AND auth_server_id = ")
                    .push_bind(auth_server.to_string())
                    .push(" AND client_id = ")
                    .push_bind(client.to_owned());
                let row: Option<rows::SecretRow> = qb
                    .build_query_as()
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?;
                let mut secret = row.map(ClientSecret::try_from).transpose()?.ok_or(StoreError::NotFound)?;
                if enabled
                    && !secret.enabled
                    && count_enabled_secrets(&mut *tx, auth_server, client).await?
                        >= max_enabled as i64
                {
                    return Err(StoreError::TooManySecrets);
                }
                secret.enabled = enabled;
                secret.updated_at = Timestamp::now();
                let mut qb: Qb = QueryBuilder::new("UPDATE client_secrets SET enabled = ");
                qb.push_bind(enabled)
                    .push(", updated_at = ")
                    .push_bind(secret.updated_at.0)
                    .push(" WHERE id = ")
                    .push_bind(id.to_string());
                qb.build().execute(&mut *tx).await.map_err(db_err)?;
                tx.commit().await.map_err(db_err)?;
                Ok(secret)
            }

            async fn delete_secret(&self, auth_server: Uuid, client: &str, id: Uuid) -> Result<()> {
                let mut qb: Qb = QueryBuilder::new("DELETE FROM client_secrets WHERE id = ");
                qb.push_bind(id.to_string())
                    .push(" AND auth_server_id = ")
                    .push_bind(auth_server.to_string())
                    .push(" AND client_id = ")
                    .push_bind(client.to_owned());
                self.exec_one(qb).await
            }

            async fn insert_tokens(&self, tokens: &[IssuedToken]) -> Result<()> {
                if tokens.is_empty() {
                    return Ok(());
                }
                let mut tx = self.pool.begin_with(dialect::BEGIN_WRITE).await.map_err(db_err)?;
                // Bounded batches keep each statement under both backends' bind limits.
                for chunk in tokens.chunks(500) {
                    let mut qb: Qb =
                        QueryBuilder::new(format!("INSERT INTO issued_tokens ({TOKEN_COLS}) "));
                    qb.push_values(chunk, |mut b, t| {
                        b.push_bind(t.id.to_string())
                            .push_bind(t.auth_server_id.to_string())
                            .push_bind(t.client_id.clone())
                            .push_bind(to_json(&t.granted_scope_names))
                            .push_bind(t.created_at.0)
                            .push_bind(t.expires_at.0)
                            .push_bind(t.revoked_at.map(|r| r.0));
                    });
                    qb.build().execute(&mut *tx).await.map_err(db_err)?;
                }
                tx.commit().await.map_err(db_err)
            }

            async fn list_tokens(
                &self,
                auth_server: Uuid,
                client: &str,
                q: &ListQuery,
            ) -> Result<Page<IssuedToken>> {
                let (rows, total) = self
                    .page::<rows::TokenRow>(
                        "issued_tokens",
                        TOKEN_COLS,
                        &[
                            ("auth_server_id", auth_server.to_string()),
                            ("client_id", client.to_owned()),
                        ],
                        "revoked_at IS NULL",
                        TOKEN_LIST,
                        q,
                        "created_at ASC, id ASC",
                    )
                    .await?;
                Ok(Page { items: convert(rows)?, total })
            }

            async fn get_token(&self, auth_server: Uuid, id: Uuid) -> Result<Option<IssuedToken>> {
                let mut qb: Qb = QueryBuilder::new(format!(
                    "SELECT {TOKEN_COLS} FROM issued_tokens WHERE id = "
                ));
                qb.push_bind(id.to_string())
                    .push(" AND auth_server_id = ")
                    .push_bind(auth_server.to_string());
                let row: Option<rows::TokenRow> = qb
                    .build_query_as()
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?;
                row.map(IssuedToken::try_from).transpose()
            }

            async fn revoke_token(
                &self,
                auth_server: Uuid,
                id: Uuid,
                at: Timestamp,
            ) -> Result<Option<IssuedToken>> {
                let mut qb: Qb = QueryBuilder::new("UPDATE issued_tokens SET revoked_at = ");
                qb.push_bind(at.0)
                    .push(" WHERE revoked_at IS NULL AND id = ")
                    .push_bind(id.to_string())
                    .push(" AND auth_server_id = ")
                    .push_bind(auth_server.to_string());
                qb.build().execute(&self.pool).await.map_err(db_err)?;
                self.get_token(auth_server, id).await
            }

            async fn revoke_client_tokens(
                &self,
                auth_server: Uuid,
                client: &str,
                at: Timestamp,
            ) -> Result<Vec<(Uuid, Timestamp)>> {
                let mut qb: Qb = QueryBuilder::new("UPDATE issued_tokens SET revoked_at = ");
                qb.push_bind(at.0)
                    .push(" WHERE revoked_at IS NULL AND auth_server_id = ")
                    .push_bind(auth_server.to_string())
                    .push(" AND client_id = ")
                    .push_bind(client.to_owned())
                    .push(" RETURNING id, expires_at");
                let rows: Vec<(String, i64)> =
                    qb.build_query_as().fetch_all(&self.pool).await.map_err(db_err)?;
                rows.into_iter()
                    .map(|(id, exp)| Ok((rows::uuid(&id)?, Timestamp(exp))))
                    .collect()
            }

            async fn revoked_tokens(&self, now: Timestamp) -> Result<Vec<(Uuid, Timestamp)>> {
                let mut qb: Qb = QueryBuilder::new(
                    "SELECT id, expires_at FROM issued_tokens WHERE revoked_at IS NOT NULL AND expires_at > ",
                );
                qb.push_bind(now.0);
                let rows: Vec<(String, i64)> =
                    qb.build_query_as().fetch_all(&self.pool).await.map_err(db_err)?;
                rows.into_iter()
                    .map(|(id, exp)| Ok((rows::uuid(&id)?, Timestamp(exp))))
                    .collect()
            }

            async fn purge_expired_tokens(&self, before: Timestamp) -> Result<u64> {
                let mut qb: Qb =
                    QueryBuilder::new("DELETE FROM issued_tokens WHERE expires_at < ");
                qb.push_bind(before.0);
                let done = qb.build().execute(&self.pool).await.map_err(db_err)?;
                Ok(done.rows_affected())
            }

            async fn signing_keys(&self, auth_server: Uuid) -> Result<Vec<SigningKey>> {
                let mut qb: Qb = QueryBuilder::new(format!(
                    "SELECT {KEY_COLS} FROM signing_keys WHERE auth_server_id = "
                ));
                qb.push_bind(auth_server.to_string())
                    .push(" ORDER BY created_at DESC, id DESC");
                let rows: Vec<rows::KeyRow> =
                    qb.build_query_as().fetch_all(&self.pool).await.map_err(db_err)?;
                convert(rows)
            }

            async fn change_version(&self) -> Result<i64> {
                sqlx::query_scalar("SELECT version FROM change_version WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(db_err)
            }

            async fn changes_since(
                &self,
                after: i64,
                limit: i64,
            ) -> Result<$crate::feed::ChangeRead> {
                let mut qb: Qb = QueryBuilder::new(
                    "SELECT version, kind, scope_id, entity_id, expires_at FROM changes WHERE version > ",
                );
                qb.push_bind(after)
                    .push(" ORDER BY version LIMIT ")
                    .push_bind(limit);
                let rows: Vec<(i64, String, String, String, Option<i64>)> =
                    qb.build_query_as().fetch_all(&self.pool).await.map_err(db_err)?;
                let mut changes = Vec::with_capacity(rows.len());
                for (version, kind, scope, entity, expires) in rows {
                    match $crate::feed::Change::from_row(version, &kind, &scope, entity, expires) {
                        Some(c) => changes.push(c),
                        None => return Ok($crate::feed::ChangeRead::Unreadable),
                    }
                }
                Ok($crate::feed::ChangeRead::Changes(changes))
            }

            async fn prune_changes(&self, before: Timestamp) -> Result<u64> {
                // `created_at` is in Unix seconds (the triggers' clock).
                let mut qb: Qb = QueryBuilder::new("DELETE FROM changes WHERE created_at < ");
                qb.push_bind(before.unix_seconds());
                let done = qb.build().execute(&self.pool).await.map_err(db_err)?;
                Ok(done.rows_affected())
            }

            async fn record_node(&self, n: &$crate::NodeRecord) -> Result<()> {
                let mut qb: Qb = QueryBuilder::new(
                    "INSERT INTO nodes (id, control_plane_id, hostname, version, config_hash, \
                     config_version, sync_error, created_at, last_ping) VALUES (",
                );
                let mut sep = qb.separated(", ");
                sep.push_bind(n.id.to_string())
                    .push_bind(n.control_plane_id.to_string())
                    .push_bind(n.hostname.clone())
                    .push_bind(n.version.clone())
                    .push_bind(n.config_hash.clone())
                    .push_bind(n.config_version)
                    .push_bind(n.sync_error.clone())
                    .push_bind(n.created_at)
                    .push_bind(n.last_ping);
                qb.push(
                    ") ON CONFLICT (id) DO UPDATE SET control_plane_id = excluded.control_plane_id, \
                     hostname = excluded.hostname, version = excluded.version, \
                     config_hash = excluded.config_hash, config_version = excluded.config_version, \
                     sync_error = excluded.sync_error, last_ping = excluded.last_ping",
                );
                qb.build().execute(&self.pool).await.map_err(db_err)?;
                Ok(())
            }

            async fn nodes(&self, control_plane: Uuid) -> Result<Vec<$crate::NodeRecord>> {
                let mut qb: Qb = QueryBuilder::new(
                    "SELECT id, control_plane_id, hostname, version, config_hash, config_version, \
                     sync_error, created_at, last_ping FROM nodes WHERE control_plane_id = ",
                );
                qb.push_bind(control_plane.to_string())
                    .push(" ORDER BY hostname, id");
                type Row = (String, String, String, String, String, i64, Option<String>, i64, i64);
                let rows: Vec<Row> =
                    qb.build_query_as().fetch_all(&self.pool).await.map_err(db_err)?;
                rows.into_iter()
                    .map(|(id, cp, hostname, version, config_hash, config_version, sync_error, created_at, last_ping)| {
                        let uuid = |s: &str| {
                            Uuid::parse_str(s).map_err(|_| StoreError::Corrupt(format!("node id {s}")))
                        };
                        Ok($crate::NodeRecord {
                            id: uuid(&id)?,
                            control_plane_id: uuid(&cp)?,
                            hostname,
                            version,
                            config_hash,
                            config_version,
                            sync_error,
                            created_at,
                            last_ping,
                        })
                    })
                    .collect()
            }

            async fn prune_nodes(&self, before: Timestamp) -> Result<u64> {
                let mut qb: Qb = QueryBuilder::new("DELETE FROM nodes WHERE last_ping < ");
                qb.push_bind(before.unix_seconds());
                let done = qb.build().execute(&self.pool).await.map_err(db_err)?;
                Ok(done.rows_affected())
            }

            async fn listen(&self) -> Result<Option<Box<dyn $crate::feed::ChangeListener>>> {
                self.change_listener().await
            }
        }

        gateway_sql!($store);
    };
}
