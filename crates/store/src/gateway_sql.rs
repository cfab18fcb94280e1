//! The gateway's SQL (control planes and core entities), written once for both backends.
//!
//! `gateway_sql!` expands, inside `sql_store!`'s `impl Store`, to the gateway methods. Core
//! entities are one table: the Kong JSON in `body` plus the columns that constraints and lookups
//! need. Reference and uniqueness checks run in the same transaction as the write so that the
//! error can say which field clashed; the unique indexes still guard against races.

use crate::{Col, ColKind, col};

pub(crate) const CONTROL_PLANE_COLS: &str = "id, name, description, labels, cluster_type, auth_type, cloud_gateway, proxy_urls, created_at, updated_at";
/// A write's error, with a unique index's violation named by its column: `endpoint_key`,
/// `alt_key`, or `id` (the primary key), as the Admin API reports them.
pub(crate) fn unique_violation(e: sqlx::Error) -> crate::StoreError {
    if let sqlx::Error::Database(d) = &e
        && d.is_unique_violation()
    {
        // PostgreSQL names the index; SQLite lists its columns in the message.
        let what = format!("{} {}", d.constraint().unwrap_or_default(), d.message());
        return crate::StoreError::Duplicate(if what.contains("endpoint_key") {
            "endpoint_key"
        } else if what.contains("alt_key") {
            "alt_key"
        } else {
            "id"
        });
    }
    crate::sql::db_err(e)
}

/// The most rows one multi-row `INSERT` of core entities carries (11 parameters each: well
/// under SQLite's 32,766 and PostgreSQL's 65,535).
pub(crate) const BULK_ROWS: usize = 500;

pub(crate) const CORE_ENTITY_COLS: &str = "control_plane_id, kind, id, endpoint_key, alt_key, service_id, route_id, consumer_id, certificate_id, created_at, body";

pub(crate) const CONTROL_PLANE_LIST: &[Col] = &[
    col("id", "id", ColKind::Text),
    col("name", "name", ColKind::Text),
    col("description", "description", ColKind::Text),
    col("cluster_type", "cluster_type", ColKind::Text),
    col("labels", "labels", ColKind::Labels),
    col("created_at", "created_at", ColKind::Int),
    col("updated_at", "updated_at", ColKind::Int),
];

macro_rules! gateway_sql {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::GatewayStore for $store {
            async fn create_control_plane(
                &self,
                cp: &gatehouse_core::gateway::ControlPlane,
            ) -> Result<()> {
                let mut qb: Qb = QueryBuilder::new(format!(
                    "INSERT INTO control_planes ({}) VALUES (",
                    $crate::gateway_sql::CONTROL_PLANE_COLS
                ));
                let mut sep = qb.separated(", ");
                sep.push_bind(cp.id.to_string())
                    .push_bind(cp.name.clone())
                    .push_bind(cp.description.clone())
                    .push_bind(to_json(&cp.labels))
                    .push_bind(cp.cluster_type.clone())
                    .push_bind(cp.auth_type.clone())
                    .push_bind(cp.cloud_gateway)
                    .push_bind(to_json(&cp.proxy_urls))
                    .push_bind(cp.created_at.0)
                    .push_bind(cp.updated_at.0);
                qb.push(")");
                qb.build().execute(&self.pool).await.map_err(db_err)?;
                Ok(())
            }

            async fn get_control_plane(
                &self,
                id: Uuid,
            ) -> Result<Option<gatehouse_core::gateway::ControlPlane>> {
                self.control_plane_where("id", id.to_string()).await
            }

            async fn control_plane_by_name(
                &self,
                name: &str,
            ) -> Result<Option<gatehouse_core::gateway::ControlPlane>> {
                self.control_plane_where("name", name.to_owned()).await
            }

            async fn list_control_planes(
                &self,
                q: &ListQuery,
            ) -> Result<Page<gatehouse_core::gateway::ControlPlane>> {
                let (rows, total) = self
                    .page::<rows::ControlPlaneRow>(
                        "control_planes",
                        $crate::gateway_sql::CONTROL_PLANE_COLS,
                        &[],
                        "",
                        $crate::gateway_sql::CONTROL_PLANE_LIST,
                        q,
                        "created_at ASC, id ASC",
                    )
                    .await?;
                Ok(Page {
                    items: convert(rows)?,
                    total,
                })
            }

            async fn update_control_plane(
                &self,
                cp: &gatehouse_core::gateway::ControlPlane,
                read: gatehouse_core::Timestamp,
            ) -> Result<()> {
                let mut qb: Qb = QueryBuilder::new("UPDATE control_planes SET name = ");
                qb.push_bind(cp.name.clone())
                    .push(", description = ")
                    .push_bind(cp.description.clone())
                    .push(", labels = ")
                    .push_bind(to_json(&cp.labels))
                    .push(", cluster_type = ")
                    .push_bind(cp.cluster_type.clone())
                    .push(", auth_type = ")
                    .push_bind(cp.auth_type.clone())
                    .push(", cloud_gateway = ")
                    .push_bind(cp.cloud_gateway)
                    .push(", proxy_urls = ")
                    .push_bind(to_json(&cp.proxy_urls))
                    .push(", updated_at = ")
                    .push_bind(cp.updated_at.0)
                    .push(" WHERE id = ")
                    .push_bind(cp.id.to_string())
                    .push(" AND updated_at = ")
                    .push_bind(read.0);
                self.exec_cas(qb, "control_planes", &[("id", cp.id.to_string())])
                    .await
            }

            async fn delete_control_plane(&self, id: Uuid) -> Result<()> {
                let mut tx = self
                    .pool
                    .begin_with(dialect::BEGIN_WRITE)
                    .await
                    .map_err(db_err)?;
                let mut qb: Qb =
                    QueryBuilder::new("DELETE FROM core_entities WHERE control_plane_id = ");
                qb.push_bind(id.to_string());
                qb.build().execute(&mut *tx).await.map_err(db_err)?;
                let mut qb: Qb = QueryBuilder::new("DELETE FROM control_planes WHERE id = ");
                qb.push_bind(id.to_string());
                let done = qb.build().execute(&mut *tx).await.map_err(db_err)?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                tx.commit().await.map_err(db_err)
            }

            async fn core_entities(
                &self,
                cp: Uuid,
                kind: Option<gatehouse_core::gateway::EntityKind>,
            ) -> Result<Vec<gatehouse_core::gateway::CoreEntity>> {
                let mut qb: Qb = QueryBuilder::new(format!(
                    "SELECT {} FROM core_entities WHERE control_plane_id = ",
                    $crate::gateway_sql::CORE_ENTITY_COLS
                ));
                qb.push_bind(cp.to_string());
                if let Some(k) = kind {
                    qb.push(" AND kind = ").push_bind(k.as_str());
                }
                qb.push(" ORDER BY id ASC");
                let rows: Vec<rows::CoreEntityRow> = qb
                    .build_query_as()
                    .fetch_all(&self.pool)
                    .await
                    .map_err(db_err)?;
                convert(rows)
            }

            async fn get_core_entity(
                &self,
                cp: Uuid,
                kind: gatehouse_core::gateway::EntityKind,
                id: Uuid,
            ) -> Result<Option<gatehouse_core::gateway::CoreEntity>> {
                self.core_entity_where(cp, kind, "id", id.to_string()).await
            }

            async fn core_entity_by_key(
                &self,
                cp: Uuid,
                kind: gatehouse_core::gateway::EntityKind,
                key: &str,
            ) -> Result<Option<gatehouse_core::gateway::CoreEntity>> {
                self.core_entity_where(cp, kind, "endpoint_key", key.to_owned())
                    .await
            }

            async fn core_entity_by_alt_key(
                &self,
                cp: Uuid,
                kind: gatehouse_core::gateway::EntityKind,
                key: &str,
            ) -> Result<Option<gatehouse_core::gateway::CoreEntity>> {
                self.core_entity_where(cp, kind, "alt_key", key.to_owned())
                    .await
            }

            async fn insert_core_entity(
                &self,
                e: &gatehouse_core::gateway::CoreEntity,
            ) -> Result<()> {
                let mut tx = self
                    .pool
                    .begin_with(dialect::BEGIN_WRITE)
                    .await
                    .map_err(db_err)?;
                Self::insert_core_in(&mut tx, e, &Default::default()).await?;
                tx.commit().await.map_err(db_err)
            }

            async fn update_core_entity(
                &self,
                e: &gatehouse_core::gateway::CoreEntity,
                read: &serde_json::Value,
            ) -> Result<()> {
                let mut tx = self
                    .pool
                    .begin_with(dialect::BEGIN_WRITE)
                    .await
                    .map_err(db_err)?;
                Self::update_core_in(&mut tx, e, read, &Default::default()).await?;
                tx.commit().await.map_err(db_err)
            }

            async fn delete_core_entity(
                &self,
                cp: Uuid,
                kind: gatehouse_core::gateway::EntityKind,
                id: Uuid,
            ) -> Result<()> {
                let mut tx = self
                    .pool
                    .begin_with(dialect::BEGIN_WRITE)
                    .await
                    .map_err(db_err)?;
                Self::delete_core_in(&mut tx, cp, kind, id).await?;
                tx.commit().await.map_err(db_err)
            }

            async fn write_core_entities(
                &self,
                writes: &[$crate::CoreWrite<'_>],
            ) -> std::result::Result<(), (usize, StoreError)> {
                use $crate::CoreWrite as W;
                // Entities this batch has written so far: references to them need no query.
                let mut fresh = std::collections::HashSet::new();
                let mut tx = self
                    .pool
                    .begin_with(dialect::BEGIN_WRITE)
                    .await
                    .map_err(|e| (0, db_err(e)))?;
                let mut i = 0;
                while i < writes.len() {
                    // A run of inserts goes in multi-row statements: one statement per row
                    // made a 20,000-entity `POST /config` spend seconds in statement overhead.
                    let run = writes[i..]
                        .iter()
                        .take($crate::gateway_sql::BULK_ROWS)
                        .take_while(|w| matches!(w, W::Insert(_)))
                        .count();
                    if run > 1 {
                        let rows: Vec<&gatehouse_core::gateway::CoreEntity> = writes[i..i + run]
                            .iter()
                            .filter_map(|w| match w {
                                W::Insert(e) => Some(*e),
                                _ => None,
                            })
                            .collect();
                        for (k, e) in rows.iter().enumerate() {
                            Self::check_core_entity(&mut tx, e, &fresh)
                                .await
                                .map_err(|err| (i + k, err))?;
                            fresh.insert((e.kind, e.id));
                        }
                        Self::insert_rows(&mut tx, &rows)
                            .await
                            .map_err(|(k, err)| (i + k, err))?;
                        i += run;
                        continue;
                    }
                    let w = &writes[i];
                    match w {
                        W::Insert(e) => Self::insert_core_in(&mut tx, e, &fresh).await,
                        W::Update(e, read) => Self::update_core_in(&mut tx, e, read, &fresh).await,
                        W::Delete(cp, kind, id) => {
                            fresh.remove(&(*kind, *id));
                            Self::delete_core_in(&mut tx, *cp, *kind, *id).await
                        }
                    }
                    .map_err(|e| (i, e))?;
                    if let W::Insert(e) | W::Update(e, _) = w {
                        fresh.insert((e.kind, e.id));
                    }
                    i += 1;
                }
                tx.commit().await.map_err(|e| (writes.len(), db_err(e)))
            }
        }
    };
}

/// Expands to the inherent helpers the gateway methods use (inside `impl $store`).
macro_rules! gateway_sql_helpers {
    ($db:ty) => {
        async fn control_plane_where(
            &self,
            column: &str,
            value: String,
        ) -> Result<Option<gatehouse_core::gateway::ControlPlane>> {
            let mut qb: Qb = QueryBuilder::new(format!(
                "SELECT {} FROM control_planes WHERE {column} = ",
                $crate::gateway_sql::CONTROL_PLANE_COLS
            ));
            qb.push_bind(value);
            let row: Option<rows::ControlPlaneRow> = qb
                .build_query_as()
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
            row.map(TryInto::try_into).transpose()
        }

        async fn core_entity_where(
            &self,
            cp: Uuid,
            kind: gatehouse_core::gateway::EntityKind,
            column: &str,
            value: String,
        ) -> Result<Option<gatehouse_core::gateway::CoreEntity>> {
            let mut qb: Qb = QueryBuilder::new(format!(
                "SELECT {} FROM core_entities WHERE control_plane_id = ",
                $crate::gateway_sql::CORE_ENTITY_COLS
            ));
            qb.push_bind(cp.to_string())
                .push(" AND kind = ")
                .push_bind(kind.as_str())
                .push(format!(" AND {column} = "))
                .push_bind(value);
            let row: Option<rows::CoreEntityRow> = qb
                .build_query_as()
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
            row.map(TryInto::try_into).transpose()
        }

        /// References must exist in the same control plane; unique values must be free
        /// (ignoring the entity itself on update).
        /// Checks that what `e` references exists (those in `fresh`, written earlier in the same
        /// transaction, do). Unique names are the indexes' to check (`unique_violation`).
        async fn check_core_entity(
            tx: &mut sqlx::Transaction<'static, $db>,
            e: &gatehouse_core::gateway::CoreEntity,
            fresh: &std::collections::HashSet<(gatehouse_core::gateway::EntityKind, uuid::Uuid)>,
        ) -> Result<()> {
            use gatehouse_core::gateway::EntityKind as K;
            let refs = [
                (K::Service, e.service_id),
                (K::Route, e.route_id),
                (K::Consumer, e.consumer_id),
                (K::Certificate, e.certificate_id),
            ];
            for (kind, id) in refs {
                let Some(id) = id else { continue };
                if fresh.contains(&(kind, id)) {
                    continue;
                }
                let mut qb: Qb =
                    QueryBuilder::new("SELECT id FROM core_entities WHERE control_plane_id = ");
                qb.push_bind(e.control_plane_id.to_string())
                    .push(" AND kind = ")
                    .push_bind(kind.as_str())
                    .push(" AND id = ")
                    .push_bind(id.to_string())
                    .push(dialect::LOCK_SHARE);
                let found: Option<String> = qb
                    .build_query_scalar()
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db_err)?;
                let n = i64::from(found.is_some());
                if n == 0 {
                    return Err(StoreError::MissingReference(kind, id));
                }
            }
            Ok(())
        }

        /// Inserts `rows` (their references checked) in one statement, under a savepoint: if
        /// it fails, the rows go in one by one to name the one at fault (its index).
        async fn insert_rows(
            tx: &mut sqlx::Transaction<'static, $db>,
            rows: &[&gatehouse_core::gateway::CoreEntity],
        ) -> std::result::Result<(), (usize, StoreError)> {
            sqlx::query("SAVEPOINT gatehouse_bulk")
                .execute(&mut **tx)
                .await
                .map_err(|e| (0, db_err(e)))?;
            if Self::insert_values(tx, rows).await.is_ok() {
                return sqlx::query("RELEASE SAVEPOINT gatehouse_bulk")
                    .execute(&mut **tx)
                    .await
                    .map(drop)
                    .map_err(|e| (0, db_err(e)));
            }
            sqlx::query("ROLLBACK TO SAVEPOINT gatehouse_bulk")
                .execute(&mut **tx)
                .await
                .map_err(|e| (0, db_err(e)))?;
            for (k, e) in rows.iter().enumerate() {
                Self::insert_values(tx, std::slice::from_ref(e))
                    .await
                    .map_err(|err| (k, err))?;
            }
            // Row by row they all went in: whatever failed was not theirs to name.
            Ok(())
        }

        /// One `INSERT` of `rows`; a unique index's violation is named by its column.
        async fn insert_values(
            tx: &mut sqlx::Transaction<'static, $db>,
            rows: &[&gatehouse_core::gateway::CoreEntity],
        ) -> Result<()> {
            let mut qb: Qb = QueryBuilder::new(format!(
                "INSERT INTO core_entities ({}) ",
                $crate::gateway_sql::CORE_ENTITY_COLS
            ));
            qb.push_values(rows, |mut sep, e| {
                sep.push_bind(e.control_plane_id.to_string())
                    .push_bind(e.kind.as_str())
                    .push_bind(e.id.to_string())
                    .push_bind(e.endpoint_key.clone())
                    .push_bind(e.alt_key.clone())
                    .push_bind(e.service_id.map(|u| u.to_string()))
                    .push_bind(e.route_id.map(|u| u.to_string()))
                    .push_bind(e.consumer_id.map(|u| u.to_string()))
                    .push_bind(e.certificate_id.map(|u| u.to_string()))
                    .push_bind(e.created_at)
                    .push_bind(e.body.to_string());
            });
            qb.build()
                .execute(&mut **tx)
                .await
                .map_err($crate::gateway_sql::unique_violation)?;
            Ok(())
        }

        async fn insert_core_in(
            tx: &mut sqlx::Transaction<'static, $db>,
            e: &gatehouse_core::gateway::CoreEntity,
            fresh: &std::collections::HashSet<(gatehouse_core::gateway::EntityKind, uuid::Uuid)>,
        ) -> Result<()> {
            Self::check_core_entity(tx, e, fresh).await?;
            Self::insert_values(tx, &[e]).await
        }

        async fn update_core_in(
            tx: &mut sqlx::Transaction<'static, $db>,
            e: &gatehouse_core::gateway::CoreEntity,
            read: &serde_json::Value,
            fresh: &std::collections::HashSet<(gatehouse_core::gateway::EntityKind, uuid::Uuid)>,
        ) -> Result<()> {
            Self::check_core_entity(tx, e, fresh).await?;
            let mut qb: Qb = QueryBuilder::new("UPDATE core_entities SET endpoint_key = ");
            qb.push_bind(e.endpoint_key.clone())
                .push(", alt_key = ")
                .push_bind(e.alt_key.clone())
                .push(", service_id = ")
                .push_bind(e.service_id.map(|u| u.to_string()))
                .push(", route_id = ")
                .push_bind(e.route_id.map(|u| u.to_string()))
                .push(", consumer_id = ")
                .push_bind(e.consumer_id.map(|u| u.to_string()))
                .push(", certificate_id = ")
                .push_bind(e.certificate_id.map(|u| u.to_string()))
                .push(", body = ")
                .push_bind(e.body.to_string())
                .push(" WHERE control_plane_id = ")
                .push_bind(e.control_plane_id.to_string())
                .push(" AND kind = ")
                .push_bind(e.kind.as_str())
                .push(" AND id = ")
                .push_bind(e.id.to_string())
                .push(" AND body = ")
                .push_bind(read.to_string());
            let done = qb
                .build()
                .execute(&mut **tx)
                .await
                .map_err($crate::gateway_sql::unique_violation)?;
            if done.rows_affected() == 0 {
                let mut exists: Qb =
                    QueryBuilder::new("SELECT 1 FROM core_entities WHERE control_plane_id = ");
                exists
                    .push_bind(e.control_plane_id.to_string())
                    .push(" AND kind = ")
                    .push_bind(e.kind.as_str())
                    .push(" AND id = ")
                    .push_bind(e.id.to_string());
                let found: Option<i32> = exists
                    .build_query_scalar()
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(db_err)?;
                return Err(if found.is_some() {
                    StoreError::Stale
                } else {
                    StoreError::NotFound
                });
            }
            Ok(())
        }

        async fn delete_core_in(
            tx: &mut sqlx::Transaction<'static, $db>,
            cp: Uuid,
            kind: gatehouse_core::gateway::EntityKind,
            id: Uuid,
        ) -> Result<()> {
            use gatehouse_core::gateway::EntityKind as K;
            let mut lock: Qb =
                QueryBuilder::new("SELECT id FROM core_entities WHERE control_plane_id = ");
            lock.push_bind(cp.to_string())
                .push(" AND kind = ")
                .push_bind(kind.as_str())
                .push(" AND id = ")
                .push_bind(id.to_string())
                .push(dialect::LOCK_UPDATE);
            let locked: Option<String> = lock
                .build_query_scalar()
                .fetch_optional(&mut **tx)
                .await
                .map_err(db_err)?;
            if locked.is_none() {
                return Err(StoreError::NotFound);
            }
            // What must not reference the entity any more (the referring kind, and the SQL
            // condition with its value), and what goes with it (the child kind and its column).
            let (referrers, cascade_column) = match kind {
                K::Service => (
                    Some(("routes", " AND service_id = ", id.to_string())),
                    Some(("plugins", "service_id")),
                ),
                K::Route => (None, Some(("plugins", "route_id"))),
                K::Consumer => (None, Some(("plugins", "consumer_id"))),
                // A certificate's SNIs go with it (Kong deletes them too); one that a service
                // presents to its upstream stays.
                K::Certificate => (
                    Some(("services", " AND certificate_id = ", id.to_string())),
                    Some(("snis", "certificate_id")),
                ),
                // A CA certificate that a service trusts stays (the service's
                // `ca_certificates` lists ids in its JSON body).
                K::CaCertificate => (
                    Some(("services", " AND body LIKE ", format!("%\"{id}\"%"))),
                    None,
                ),
                K::Plugin | K::Sni => (None, None),
            };
            if let Some((referrer, condition, value)) = referrers {
                let mut qb: Qb =
                    QueryBuilder::new("SELECT COUNT(*) FROM core_entities WHERE kind = ");
                qb.push_bind(referrer)
                    .push(" AND control_plane_id = ")
                    .push_bind(cp.to_string())
                    .push(condition)
                    .push_bind(value);
                let n: i64 = qb
                    .build_query_scalar()
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(db_err)?;
                if n > 0 {
                    return Err(StoreError::HasChildren);
                }
            }
            if let Some((children, column)) = cascade_column {
                let mut qb: Qb = QueryBuilder::new("DELETE FROM core_entities WHERE kind = ");
                qb.push_bind(children)
                    .push(" AND control_plane_id = ")
                    .push_bind(cp.to_string())
                    .push(format!(" AND {column} = "))
                    .push_bind(id.to_string());
                qb.build().execute(&mut **tx).await.map_err(db_err)?;
            }
            let mut qb: Qb =
                QueryBuilder::new("DELETE FROM core_entities WHERE control_plane_id = ");
            qb.push_bind(cp.to_string())
                .push(" AND kind = ")
                .push_bind(kind.as_str())
                .push(" AND id = ")
                .push_bind(id.to_string());
            let done = qb.build().execute(&mut **tx).await.map_err(db_err)?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        }
    };
}
