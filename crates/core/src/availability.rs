//! [`Availability`]: the answer of a store's health probe.

use serde::Serialize;

use crate::{StoreId, StoreKind};

/// Whether a store can serve requests now, and if not, why.
///
/// Shaped after one entry of the Credential Stores API's list:
/// `{available, id, reason, type}`; see [`StoreStatus`] for the full entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Availability {
    /// True when the store answered its probe and can serve requests.
    pub available: bool,
    /// What is wrong, in plain words ("connection refused at
    /// http://127.0.0.1:8200", "vault is sealed", "wrong master key"), or
    /// `None` when available.
    pub reason: Option<String>,
}

impl Availability {
    /// The store is available.
    pub fn up() -> Self {
        Self { available: true, reason: None }
    }

    /// The store is unavailable because of `reason`.
    pub fn down(reason: impl Into<String>) -> Self {
        Self { available: false, reason: Some(reason.into()) }
    }
}

/// One store's probe result, as returned by
/// [`StoreRegistry::check_all`](crate::StoreRegistry::check_all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreStatus {
    /// The store's id.
    pub id: StoreId,
    /// The store's kind.
    #[serde(rename = "type")]
    pub kind: StoreKind,
    /// Its availability.
    #[serde(flatten)]
    pub availability: Availability,
}
