//! The Gatehouse data plane.
//!
//! Where to start: [`gateway::Gateway`] holds the running configuration of one control plane
//! (a [`snapshot::Snapshot`]: the compiled router, each route's service and plugin chain, the
//! consumers); [`server::serve`] accepts connections and speaks HTTP/1.1 with its own codec
//! ([`h1`]), handing a connection that opens with the HTTP/2 preface to [`http2`];
//! [`tls::serve`] is the TLS listener (certificates by SNI, HTTP/1.1 or HTTP/2 by ALPN);
//! [`handler::handle`] takes one request
//! through routing, the plugins' `access` phase and the upstream call. Plugins implement
//! [`plugin::Plugin`] and are built by a [`plugin::PluginFactory`] registered in a
//! [`plugin::Registry`]. Gateway-generated errors are all in [`error`]. [`workers`] runs
//! [`server::serve`] thread-per-core, as the binary does.

pub mod context;
pub mod error;
pub mod gateway;
pub mod h1;
pub mod handler;
pub mod http2;
pub mod plugin;
pub mod server;
pub mod snapshot;
pub mod tls;
pub mod upstream;
pub mod workers;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};

/// The body type of every request and response inside the proxy: streamed, boxed once.
pub type ProxyBody =
    http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// `Server` on gateway-generated responses.
pub const SERVER_TOKEN: &str = concat!("gatehouse/", env!("CARGO_PKG_VERSION"));
/// Our part of `Via` (after the protocol version).
pub const VIA_TOKEN: &str = concat!("gatehouse/", env!("CARGO_PKG_VERSION"));

/// The request as plugins see and change it in the `access` phase.
pub struct ProxyRequest {
    /// Method, URI (its query is sent upstream), headers.
    pub parts: http::request::Parts,
    /// The body, streamed unless a plugin buffered it.
    pub body: ProxyBody,
    /// The path the upstream will receive (spec C.4), before the query.
    pub upstream_path: String,
}

impl ProxyRequest {
    /// Lets go of what the last request held (its head's bytes, an unread body) while keeping
    /// the header map's allocation for the next request parsed into it.
    pub(crate) fn clear(&mut self) {
        self.parts.headers.clear();
        self.parts.uri = http::Uri::default();
        self.parts.extensions.clear();
        self.body = empty_body();
        self.upstream_path.clear();
    }
}

/// A body with these bytes.
pub fn full_body(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// An empty body.
pub fn empty_body() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}
