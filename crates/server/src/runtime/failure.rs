//! What kind of failure made a store unavailable, as clients are told it
//! (in a 503's detail and the store list's `reason`).

use credstore_core::Error as StoreError;

use super::state::FAILED_TO_OPEN;

/// What kind of failure made a store unavailable, as clients are told it:
/// the cause itself (file paths, addresses, the backend's messages) goes
/// only to the server log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCategory {
    /// The store cannot be reached or used right now.
    Unreachable,
    /// The store did not answer in time.
    Timeout,
    /// The backend refused the server's credentials or permissions.
    Refused,
    /// The store is configured wrongly (or could not be opened).
    Misconfigured,
}

/// The words core's timeout layer and the prober put in a timeout's reason
/// ("no answer within N ms").
const TIMEOUT_REASON: &str = "no answer within";

impl FailureCategory {
    /// `unreachable`, `timeout`, `refused` or `misconfigured`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::Refused => "refused",
            Self::Misconfigured => "misconfigured",
        }
    }

    /// The category of a store error that makes the store unavailable
    /// (`Unavailable`, `PermissionDenied`, `Config`); `None` for any other.
    pub fn of_error(err: &StoreError) -> Option<Self> {
        match err {
            StoreError::Unavailable { reason, .. } if reason.starts_with(TIMEOUT_REASON) => {
                Some(Self::Timeout)
            }
            StoreError::Unavailable { reason, .. } if reason.starts_with(FAILED_TO_OPEN) => {
                Some(Self::Misconfigured)
            }
            StoreError::Unavailable { .. } => Some(Self::Unreachable),
            StoreError::PermissionDenied { .. } => Some(Self::Refused),
            StoreError::Config { .. } => Some(Self::Misconfigured),
            _ => None,
        }
    }

    /// The category of a probe's reason (free text from the backend):
    /// `timeout` for "no answer within N ms", `misconfigured` for a store
    /// that could not be opened ([`FailedStore`](super::state::FailedStore)), `refused`
    /// when the text says permission or authorization was denied, else
    /// `unreachable`.
    pub fn of_reason(reason: &str) -> Self {
        let lower = reason.to_ascii_lowercase();
        if lower.starts_with(TIMEOUT_REASON) {
            Self::Timeout
        } else if lower.starts_with(FAILED_TO_OPEN) {
            Self::Misconfigured
        } else if ["permission denied", "forbidden", "unauthorized", "not authorized", "access denied"]
            .iter()
            .any(|w| lower.contains(w))
        {
            Self::Refused
        } else {
            Self::Unreachable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_have_categories() {
        for (reason, category) in [
            ("no answer within 3000 ms", FailureCategory::Timeout),
            ("vault returned 403 Forbidden: permission denied", FailureCategory::Refused),
            ("connection refused at http://10.1.2.3:8200", FailureCategory::Unreachable),
            ("sealed", FailureCategory::Unreachable),
        ] {
            assert_eq!(FailureCategory::of_reason(reason), category, "{reason}");
        }
        let failed = format!("{}wrong master key", FAILED_TO_OPEN);
        assert_eq!(FailureCategory::of_reason(&failed), FailureCategory::Misconfigured);
    }
}
