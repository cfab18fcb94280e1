//! The Gatehouse authorization server, compatible with Kong Identity.
//!
//! Where to start: [`runtime::Identity`] holds the in-memory snapshot of every auth server and
//! implements the client_credentials grant, introspection, revocation and userinfo without HTTP;
//! [`http::router`] is the thin axum layer of the issuer endpoints; [`keys`] and [`secrets`]
//! keep key material and client secrets safe at rest; [`jwt`] reads and writes compact JWS.

pub mod error;
pub mod http;
pub mod jwt;
pub mod keys;
pub mod runtime;
pub mod secrets;
pub mod throttle;

pub use error::OAuthError;
pub use runtime::{Identity, RESERVED_CLAIM_NAMES, ServerRuntime, TokenResponse};
pub use throttle::ThrottleConfig;
