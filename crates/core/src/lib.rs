//! Gatehouse domain types, free of IO.
//!
//! Start with [`identity`] (auth servers, scopes, claims, clients, secrets, issued tokens and
//! signing keys), then [`validation`] (the errors every API turns into its own wire format),
//! [`list`] (the filter/sort/page query shared by the management API and the store), and the
//! small value types in [`ids`] and [`time`]. The gateway's control planes and core entities
//! (services, routes, consumers, plugins) are in [`gateway`], validated in Kong's terms by
//! [`kong_schema`].

pub mod gateway;
pub mod identity;
pub mod ids;
pub mod kong_schema;
pub mod list;
pub mod time;
pub mod validation;

pub use time::Timestamp;
