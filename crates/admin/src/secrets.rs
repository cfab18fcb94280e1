//! Secrets inside stored core entities, sealed with the master key before they are stored and
//! opened when shown through the API or loaded by the proxy:
//! - plugin configuration secrets (e.g. `oauth2-introspection`'s `authorization_value`), the
//!   fields each plugin's factory lists as encrypted;
//! - certificates' private keys (`key`, `key_alt`).

use crate::AdminState;
use crate::kong_error::KongError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use gatehouse_identity::keys::MasterKey;
use gatehouse_proxy::plugin::Registry;
use serde_json::Value;

const PREFIX: &str = "gatehouse-sealed:v1:";
// Bind sealed values to their purpose, so they cannot be replayed as another kind of secret.
const AAD: &[u8] = b"gatehouse plugin config";
const CERTIFICATE_AAD: &[u8] = b"gatehouse certificate key";
/// The sealed fields of a certificate.
const CERTIFICATE_KEYS: &[&str] = &["key", "key_alt"];

/// Seals the string `fields` of `object` in place (those not sealed already).
fn seal_fields(
    master: &MasterKey,
    aad: &[u8],
    fields: &[&str],
    object: &mut Value,
) -> Result<(), String> {
    for field in fields {
        if let Some(Value::String(plain)) = object.get_mut(*field)
            && !plain.starts_with(PREFIX)
        {
            let sealed = master
                .seal(aad, plain.as_bytes())
                .map_err(|e| e.to_string())?;
            *plain = format!("{PREFIX}{}", B64.encode(sealed));
        }
    }
    Ok(())
}

/// Opens the sealed `fields` of `object` in place; returns the fields that did not open
/// (another master key?), which stay sealed.
fn open_fields<'f>(
    master: &MasterKey,
    aad: &[u8],
    fields: &[&'f str],
    object: &mut Value,
) -> Vec<&'f str> {
    let mut failed = Vec::new();
    for field in fields {
        if let Some(Value::String(value)) = object.get_mut(*field)
            && let Some(sealed) = value.strip_prefix(PREFIX)
        {
            let opened = B64
                .decode(sealed)
                .ok()
                .and_then(|b| master.open(aad, &b).ok())
                .and_then(|b| String::from_utf8(b).ok());
            match opened {
                Some(plain) => *value = plain,
                None => failed.push(*field),
            }
        }
    }
    failed
}

/// Seals a certificate body's private keys.
pub fn seal_certificate(master: &MasterKey, body: &mut Value) -> Result<(), KongError> {
    seal_fields(master, CERTIFICATE_AAD, CERTIFICATE_KEYS, body).map_err(|e| {
        tracing::error!(error = %e, "sealing a certificate key failed");
        KongError::Internal
    })
}

/// Opens a certificate body's private keys. A key that does not open is logged and left
/// sealed: the handshake then fails visibly for its SNIs.
pub fn open_certificate(master: &MasterKey, body: &mut Value) {
    for field in open_fields(master, CERTIFICATE_AAD, CERTIFICATE_KEYS, body) {
        tracing::error!(
            field,
            "a sealed certificate key does not open with this master key"
        );
    }
}

fn fields<'a>(registry: &'a Registry, name: &str) -> &'a [&'static str] {
    registry.get(name).map_or(&[], |f| f.encrypted_fields())
}

/// Seals the secret fields of plugin `name`'s `config` in place.
pub fn seal_config(
    registry: &Registry,
    master: &MasterKey,
    name: &str,
    config: &mut Value,
) -> Result<(), String> {
    seal_fields(master, AAD, fields(registry, name), config)
}

/// Opens the secret fields of plugin `name`'s `config` in place. A value that does not open
/// (another master key?) is left sealed and logged: the plugin then fails visibly.
pub fn open_config(registry: &Registry, master: &MasterKey, name: &str, config: &mut Value) {
    for field in open_fields(master, AAD, fields(registry, name), config) {
        tracing::error!(
            plugin = name,
            field,
            "a sealed plugin secret does not open with this master key"
        );
    }
}

fn name_of(body: &Value) -> String {
    body.get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Seals a plugin entity body's secrets.
pub fn seal(st: &AdminState, body: &mut Value) -> Result<(), KongError> {
    let name = name_of(body);
    if let Some(config) = body.get_mut("config") {
        seal_config(
            &st.gateway.registry,
            st.identity.master_key(),
            &name,
            config,
        )
        .map_err(|e| {
            tracing::error!(error = %e, "sealing a plugin secret failed");
            KongError::Internal
        })?;
    }
    Ok(())
}

/// Opens a plugin entity body's secrets.
pub fn open(st: &AdminState, body: &mut Value) {
    let name = name_of(body);
    if let Some(config) = body.get_mut("config") {
        open_config(
            &st.gateway.registry,
            st.identity.master_key(),
            &name,
            config,
        );
    }
}
