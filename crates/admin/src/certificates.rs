//! What certificates add to the generic core-entity handlers (Kong's certificates DAO):
//! addressing a certificate by one of its SNI names, the `snis` list every certificate is
//! shown with, and the `snis` field of a write, which creates and removes SNI entities in the
//! same transaction as the certificate.

use crate::AdminState;
use crate::core_entities::{internal, store_error};
use crate::kong_error::KongError;
use gatehouse_core::gateway::certificates::Sni;
use gatehouse_core::gateway::{CoreEntity, EntityKind as K, ForeignKey};
use gatehouse_core::kong_schema::FieldErrors;
use gatehouse_store::{CoreWrite, StoreError};
use serde_json::Value;
use std::collections::HashMap;
use uuid::Uuid;

/// The certificate an SNI name selects (`/certificates/{name}`).
pub(crate) async fn by_sni(st: &AdminState, cp: Uuid, name: &str) -> Result<CoreEntity, KongError> {
    let store = st.identity.store();
    let sni = store
        .core_entity_by_key(cp, K::Sni, &name.to_ascii_lowercase())
        .await
        .map_err(internal)?
        .ok_or(KongError::SniNotFound)?;
    let Some(certificate) = sni.certificate_id else {
        return Err(KongError::SniNotFound);
    };
    store
        .get_core_entity(cp, K::Certificate, certificate)
        .await
        .map_err(internal)?
        .ok_or(KongError::SniNotFound)
}

/// Every certificate's SNI names, sorted, by certificate id.
pub(crate) async fn sni_names(
    st: &AdminState,
    cp: Uuid,
) -> Result<HashMap<Uuid, Vec<String>>, KongError> {
    let snis = st
        .identity
        .store()
        .core_entities(cp, Some(K::Sni))
        .await
        .map_err(internal)?;
    let mut out: HashMap<Uuid, Vec<String>> = HashMap::new();
    for sni in snis {
        if let (Some(cert), Some(name)) = (sni.certificate_id, sni.endpoint_key) {
            out.entry(cert).or_default().push(name);
        }
    }
    for names in out.values_mut() {
        names.sort();
    }
    Ok(out)
}

/// Writes `cert` (inserted, or updated from `read`) and makes `names` exactly its SNIs, in one
/// transaction. A name another certificate holds is refused as Kong does (400 on `snis`),
/// before anything is written.
pub(crate) async fn save(
    st: &AdminState,
    cert: &CoreEntity,
    read: Option<&Value>,
    names: &[String],
) -> Result<(), KongError> {
    let cp = cert.control_plane_id;
    let store = st.identity.store();
    let existing = store
        .core_entities(cp, Some(K::Sni))
        .await
        .map_err(internal)?;
    let mut fields = FieldErrors::new();
    let mut added = Vec::new();
    let now = gatehouse_core::Timestamp::now().unix_seconds();
    for name in names {
        match existing
            .iter()
            .find(|s| s.endpoint_key.as_deref() == Some(name))
        {
            Some(s) if s.certificate_id == Some(cert.id) => {}
            Some(s) => fields.add(
                "snis",
                format!(
                    "{name} already associated with existing certificate '{}'",
                    s.certificate_id.unwrap_or_default()
                ),
            ),
            None => added.push(
                Sni {
                    id: Uuid::new_v4(),
                    name: name.clone(),
                    certificate: ForeignKey { id: cert.id },
                    tags: None,
                    created_at: now,
                    updated_at: now,
                }
                .to_entity(cp),
            ),
        }
    }
    if !fields.is_empty() {
        return Err(KongError::Schema(fields));
    }
    let removed: Vec<Uuid> = existing
        .iter()
        .filter(|s| {
            s.certificate_id == Some(cert.id)
                && !s.endpoint_key.as_ref().is_some_and(|n| names.contains(n))
        })
        .map(|s| s.id)
        .collect();
    let mut writes = Vec::with_capacity(1 + removed.len() + added.len());
    writes.push(match read {
        Some(read) => CoreWrite::Update(cert, read),
        None => CoreWrite::Insert(cert),
    });
    writes.extend(removed.iter().map(|id| CoreWrite::Delete(cp, K::Sni, *id)));
    writes.extend(added.iter().map(CoreWrite::Insert));
    store.write_core_entities(&writes).await.map_err(|(i, e)| {
        let Some(i) = i.checked_sub(1) else {
            return store_error(e, cert);
        };
        if i < removed.len() {
            // An SNI removed meanwhile by another request: this one read a stale set.
            return match e {
                StoreError::NotFound => KongError::Stale,
                other => internal(other),
            };
        }
        match added.get(i - removed.len()) {
            Some(sni) => store_error(e, sni),
            None => internal(e),
        }
    })
}
