//! What kind of failure made a store unavailable, as clients are told it
//! (in a 503's detail and the store list's `reason`).

use std::sync::Arc;

use credstore_core::{
    async_trait, Availability, Capabilities, Credential, CredentialKey, CredentialStore, Error,
    Error as StoreError, ListOptions, ListPage, Namespace, Result, SetOutcome, StoreId, StoreInfo, StoreKind,
    WriteRequest,
};

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

/// What the reasons of a [`FailedStore`] start with: answers and the store
/// list show such a store as `misconfigured`
/// (see the crate README, Errors).
pub const FAILED_TO_OPEN: &str = "cannot be opened: ";

/// A store that failed to open: every call is [`Error::Unavailable`] with the
/// reason it failed (after [`FAILED_TO_OPEN`]), and so is its probe. The server serves it in the
/// opened store's place, so the list of stores says what is wrong.
///
/// Input is still checked first, as by every store: a bad value or metadata
/// is refused as such, before the unavailability.
#[derive(Clone, Debug)]
pub struct FailedStore {
    info: StoreInfo,
    reason: Arc<str>,
}

impl FailedStore {
    /// A stand-in for store `id` of `kind`, which could not be opened
    /// because of `reason` (no secret in it).
    pub fn new(id: StoreId, kind: StoreKind, reason: impl Into<String>) -> Self {
        Self { info: StoreInfo::new(id, kind, Capabilities::full()), reason: Arc::from(reason.into()) }
    }

    /// [`FailedStore::new`], as a store to serve.
    pub fn arc(id: StoreId, kind: StoreKind, reason: impl Into<String>) -> Arc<dyn CredentialStore> {
        Arc::new(Self::new(id, kind, reason))
    }

    fn err<T>(&self) -> Result<T> {
        Err(Error::unavailable(self.info.id(), format!("{FAILED_TO_OPEN}{}", self.reason)))
    }
}

#[async_trait]
impl CredentialStore for FailedStore {
    fn info(&self) -> &StoreInfo {
        &self.info
    }
    fn with_namespace(&self, namespace: &Namespace) -> Result<Arc<dyn CredentialStore>> {
        let info = self.info.join(namespace)?;
        Ok(Arc::new(Self { info, ..self.clone() }))
    }
    async fn get(&self, _: &CredentialKey) -> Result<Option<Credential>> {
        self.err()
    }
    async fn write(&self, _: &WriteRequest<'_>) -> Result<SetOutcome> {
        self.err()
    }
    async fn delete(&self, _: &CredentialKey) -> Result<bool> {
        self.err()
    }
    async fn list(&self, _: &ListOptions) -> Result<ListPage> {
        self.err()
    }
    async fn check_availability(&self) -> Availability {
        Availability::down(format!("{FAILED_TO_OPEN}{}", self.reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credstore_core::{CredentialStoreExt, Metadata, SecretValue};

    #[tokio::test]
    async fn failed_stores_refuse_bad_input_first_then_say_why() {
        let store =
            FailedStore::arc(StoreId::new("down").unwrap(), StoreKind::from_static("vault"), "sealed");
        let ns = Namespace::new("t/p").unwrap();
        let handle = store.with_namespace(&ns).unwrap();
        assert_eq!(handle.namespace(), &ns);
        assert_eq!(
            handle.with_namespace(&Namespace::new("x").unwrap()).unwrap().namespace().as_str(),
            "t/p/x"
        );
        let key = CredentialKey::new("k").unwrap();
        let big = SecretValue::from(vec![b'x'; credstore_core::MAX_VALUE_BYTES + 1]);
        let err = handle.set(&key, &big, &Metadata::new()).await.unwrap_err();
        assert!(matches!(err, Error::InvalidInput { ref field, .. } if field == "value"), "{err}");
        let err = handle.set(&key, &SecretValue::from("v"), &Metadata::new()).await.unwrap_err();
        assert!(err.is_retriable() && err.to_string().contains("sealed"), "{err}");
        assert!(!handle.check_availability().await.available);
    }

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
