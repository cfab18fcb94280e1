//! Edge hardening shared by every Gatehouse listener.
//!
//! Start at [`Limits`] (what a listener allows: timeouts, sizes, connection caps, with
//! defaults from the descriptor limit in [`ConnectionBudget`]). The proxy applies them in its
//! own codec; the admin and identity routers are served through [`serve::RouterListener`],
//! which applies them with hyper, over plain TCP or TLS ([`tls::server_config`]). [`gate::ConnectionGate`] counts connections per listener and
//! per client address; [`body::DeadlineBody`] cuts request bodies that trickle.

pub mod body;
pub mod gate;
pub mod limits;
pub mod serve;
pub mod tls;

pub use limits::{ConnectionBudget, Limits, fd_limit, parse_duration};

#[cfg(test)]
mod tests;
