//! What runs the server: the [`listener`] and its [`tls`], [`shutdown`] on
//! signals, the served [`stores`] and the [`state`] the requests share, the
//! store prober ([`status`]) with the [`failure`] categories it and the
//! answers report, and the [`metrics`]. Nothing here knows HTTP routes.

pub(crate) mod failure;
pub mod listener;
pub mod metrics;
pub(crate) mod pending;
pub mod shutdown;
pub mod state;
pub mod status;
pub mod stores;
pub mod tls;
