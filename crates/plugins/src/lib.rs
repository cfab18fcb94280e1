//! Gatehouse's plugins.
//!
//! * [`oauth2_introspection`]: Kong's `oauth2-introspection` — validates the request's access
//!   token against an OAuth 2.0 introspection endpoint (RFC 7662), caches the answer, maps it to
//!   a consumer and forwards the token's claims upstream as `X-Credential-*` headers.
//! * [`request_size_limiting`]: Kong's `request-size-limiting` — a per-route limit on
//!   request bodies.
//! * [`request_termination`]: Kong's `request-termination` — answers every request itself
//!   with a fixed status and body.
//!
//! [`registry`] returns a [`Registry`] holding every plugin of this crate.

pub mod oauth2_introspection;
pub mod request_size_limiting;
pub mod request_termination;

#[cfg(test)]
mod test_support;

use gatehouse_proxy::plugin::Registry;
use std::sync::Arc;

/// A registry with every plugin of this crate.
pub fn registry() -> Registry {
    registry_with(None)
}

/// A registry with every plugin of this crate, where `oauth2-introspection` calls `local`
/// without HTTP for the introspection endpoints this process serves itself.
pub fn registry_with(
    local: Option<Arc<dyn oauth2_introspection::client::LocalIntrospection>>,
) -> Registry {
    let mut r = Registry::new();
    r.register(Arc::new(oauth2_introspection::Factory { local }));
    r.register(Arc::new(request_size_limiting::Factory));
    r.register(Arc::new(request_termination::Factory));
    r
}
