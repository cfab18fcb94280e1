//! The per-request context every plugin phase receives: what the router matched, who was
//! authenticated so far, and typed slots plugins use to pass results to later plugins.

use crate::snapshot::{RouteRuntime, Snapshot};
use gatehouse_core::gateway::Consumer;
use serde_json::{Map, Value};
use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// What an authentication plugin established about the caller (never the raw token).
#[derive(Debug, Clone, Default)]
pub struct Credential {
    /// The OAuth client id, when the credential has one (shared with the plugin's cache entry,
    /// like `claims`).
    pub client_id: Option<Arc<str>>,
    /// Granted scopes, space-separated.
    pub scope: Option<Arc<str>>,
    /// Every claim the identity provider returned (introspection answer), shared with the
    /// cache entry it came from rather than copied per request.
    pub claims: Arc<Map<String, Value>>,
}

/// One request's context, owned by the request's task.
pub struct RequestCtx {
    /// The configuration this request runs on (requests in flight keep their snapshot).
    pub snapshot: Arc<Snapshot>,
    /// The matched route, once routing is done.
    pub route: Option<Arc<RouteRuntime>>,
    /// Regex captures of the matched route path (empty for prefix paths).
    pub uri_captures: gatehouse_router::Captures,
    /// The id sent upstream and to the client as `X-Gatehouse-Request-Id`.
    pub request_id: String,
    /// The TCP peer.
    pub client_addr: SocketAddr,
    /// When the request arrived.
    pub started: Instant,
    /// The consumer authenticated so far; consumer-scoped plugin instances follow it.
    pub consumer: Option<Arc<Consumer>>,
    /// Whether `consumer` is an anonymous fallback rather than an authenticated identity.
    pub anonymous: bool,
    /// The credential an authentication plugin accepted.
    pub credential: Option<Credential>,
    slots: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl RequestCtx {
    /// A fresh context.
    pub fn new(snapshot: Arc<Snapshot>, request_id: String, client_addr: SocketAddr) -> Self {
        Self {
            snapshot,
            route: None,
            uri_captures: gatehouse_router::Captures::default(),
            request_id,
            client_addr,
            started: Instant::now(),
            consumer: None,
            anonymous: false,
            credential: None,
            slots: HashMap::new(),
        }
    }

    /// Stores a value for later phases or plugins, one per type.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        self.slots.insert(TypeId::of::<T>(), Box::new(value));
    }

    /// A value stored with [`RequestCtx::insert`].
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.slots
            .get(&TypeId::of::<T>())
            .and_then(|b| b.downcast_ref())
    }

    /// Sets the authenticated consumer and credential (Kong's `kong.client.authenticate`).
    pub fn authenticate(&mut self, consumer: Option<Arc<Consumer>>, credential: Credential) {
        self.consumer = consumer;
        self.anonymous = false;
        self.credential = Some(credential);
    }
}
