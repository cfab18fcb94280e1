//! Kong `traditional_compatible` routing for Gatehouse: route matching,
//! request path normalization and upstream path construction.
//!
//! The crate is pure (no IO, no async). The proxy builds a [`Router`] from
//! [`RouteSpec`]s whenever the configuration changes, normalizes each
//! request path with [`normalize_path`], calls [`Router::find`] with a
//! [`RequestView`], and turns the [`Match`] into the upstream path with
//! [`upstream_path`]. The admin API validates route fields with
//! [`validate_route_path`], [`validate_route_host`],
//! [`validate_header_name`], [`validate_header_value`],
//! [`validate_route_method`] and
//! [`validate_route_sni`], which use Kong's error wording.
//!
//! ```
//! use gatehouse_router::{normalize_path, upstream_path, PathHandling, RequestView, RouteSpec, Router};
//!
//! let routes = vec![RouteSpec { id: 1, paths: vec!["/api".into()], ..RouteSpec::default() }];
//! let router = Router::build(&routes)?;
//! let path = normalize_path("/api/./v1//users").map_err(|e| e.to_string())?;
//! let headers = http::HeaderMap::new();
//! let req = RequestView { method: &http::Method::GET, host: Some("example.com"), path: &path, headers: &headers, sni: None, websocket: false };
//! let m = router.find(&req).ok_or("no route")?;
//! assert_eq!((m.route_id, m.matched_path, m.prefix_len), (1, Some("/api"), 4));
//! assert_eq!(upstream_path(Some("/backend"), &path, m.prefix_len, true, PathHandling::V0), "/backend/v1/users");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Matching (spec C.2)
//! A route matches when every configured field matches; within a field any
//! value suffices.
//! * **methods**: exact, uppercase.
//! * **hosts**: case-insensitive; `example.com` matches the `Host` header
//!   with any port (or none), `example.com:8080` requires port 8080 in the
//!   `Host` header; `*.example.com` matches any host ending in
//!   `.example.com`, `example.*` any host starting with `example.`.
//! * **paths**: `/prefix` is a plain byte prefix of the normalized path (not
//!   segment-aware: `/foo` matches `/foobar`); `~re` is compiled as
//!   `^(?:re)`: anchored at the start only. Named groups may use Kong's
//!   `(?<name>…)` syntax.
//! * **headers**: every name must be present with a value that equals one
//!   of the configured values ignoring ASCII case, or that a `~*re` value
//!   finds (case-insensitive, unanchored). Names compare case-insensitively
//!   and `_` equals `-` (as in Kong, which reads headers through
//!   OpenResty).
//! * **snis**: exact (a trailing `.` is ignored); only consulted when the
//!   request carries an SNI.
//!
//! # Priority (spec C.3)
//! Each route is split into one matcher for its regex paths and one per
//! distinct prefix-path length; each gets Kong's 64-bit priority (fields
//! present, plain-hosts-only bit, header count, regex bit, regex priority,
//! prefix length). The highest-priority matcher that matches wins; equal
//! priorities go to the older route (`created_at`), then the lower id.
//!
//! # Differences from Kong worth knowing
//! * Every `~*` header value is a regex (as in `traditional_compatible`),
//!   matched with a case-insensitive flag rather than by lower-casing the
//!   pattern (Kong's lower-casing turns `\D` into `\d`).
//! * A host pattern with a port is compared with the `Host` header's port;
//!   Kong's ATC flavor compares it with the listening port.
//! * Regex paths use Rust `regex` syntax (no look-around or
//!   back-references), exactly like Kong's ATC engine.
//! * Normalized paths keep non-unreserved characters percent-encoded instead
//!   of decoding them (see [`normalize_path`]); prefix routes are compared in
//!   the same form, so matching is equivalent.
//!
//! # Layout
//! `spec` (data types), `validate` (admin checks), `path` (normalization and
//! upstream paths), `compile` (priority, split, indexes), `matcher`
//! (`find`), `host` and `trie` (helpers).

mod compile;
mod host;
mod matcher;
mod path;
mod spec;
mod trie;
mod validate;

pub use compile::{CompiledRoute, Router};
pub use path::{PathError, PathHandling, normalize_path, upstream_path};
pub use spec::{Captures, Match, RequestView, RouteField, RouteSpec, RouterError};
pub use validate::{
    validate_header_name, validate_header_value, validate_route_host, validate_route_method,
    validate_route_path, validate_route_sni,
};
