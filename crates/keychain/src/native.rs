//! The macOS Keychain and the Windows Credential Manager, through
//! keyring-core and its native store crates. Their calls block, so each
//! runs on tokio's blocking pool (under the store's timeout).
//!
//! Each credential is one generic password (macOS: service = the service
//! name, account = the key) or one generic credential (Windows: target
//! `{key}.{service}`, user name = the key), whose secret is the entry.

use std::collections::HashMap;
use std::sync::Arc;

use credstore_core::{async_trait, Capabilities, Persistence};
use keyring_core::{CredentialStore as KrStore, Entry, Error as KrError};
use zeroize::Zeroizing;

use crate::errors::{Cause, Failure, Kind, PResult};
use crate::layout::ValueEncoding;
use crate::platform::Platform;

/// A keyring-core store of this target.
pub(crate) struct Native {
    store: Arc<KrStore>,
    name: &'static str,
    list: bool,
}

impl std::fmt::Debug for Native {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Native").field("name", &self.name).finish()
    }
}

impl Native {
    #[cfg(target_os = "macos")]
    pub(crate) fn macos() -> PResult<Self> {
        let store = apple_native_keyring_store::keychain::Store::new()
            .map_err(|e| failure(e, "cannot open the keychain"))?;
        Ok(Self { store, name: "macOS Keychain", list: true })
    }

    #[cfg(target_os = "windows")]
    pub(crate) fn windows() -> PResult<Self> {
        let store = windows_native_keyring_store::Store::new()
            .map_err(|e| failure(e, "cannot open the Credential Manager"))?;
        Ok(Self { store, name: "Windows Credential Manager", list: false })
    }

    /// Runs a blocking keyring-core call off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        service: &str,
        account: &str,
        op: impl FnOnce(Entry) -> PResult<T> + Send + 'static,
    ) -> PResult<T> {
        let entry =
            self.store.build(service, account, None).map_err(|e| failure(e, "cannot name the entry"))?;
        tokio::task::spawn_blocking(move || op(entry))
            .await
            .map_err(|_| Failure::new(Kind::Other, "the platform call panicked"))?
    }
}

/// Names a keyring-core failure; only texts that hold no secret are kept.
fn failure(e: KrError, what: &str) -> Failure {
    let (kind, cause) = match &e {
        KrError::NoStorageAccess(inner) => {
            (Kind::Unavailable, format!("the credential store is not accessible: {inner}"))
        }
        KrError::PlatformFailure(inner) => (Kind::Other, inner.to_string()),
        KrError::TooLong(what, max) => {
            (Kind::Other, format!("{what} is longer than the platform's limit of {max}"))
        }
        KrError::Invalid(what, why) => (Kind::Other, format!("{what} {why}")),
        // BadEncoding and BadDataFormat carry the secret: their text is not used.
        _ => (Kind::Other, "the platform refused the call".to_owned()),
    };
    Failure::new(kind, format!("{what}: {cause}")).with_source(Cause(cause))
}

#[async_trait]
impl Platform for Native {
    fn name(&self) -> &'static str {
        self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::full()
            .with_persistence(Persistence::Durable)
            .with_list(self.list)
            .with_create_only(false)
            .with_replace_if_version(false)
            // Enforced by the store: `x` in the entry's header.
            .with_expiry(true)
    }

    fn encoding(&self) -> ValueEncoding {
        ValueEncoding::Raw
    }

    async fn read(&self, service: &str, account: &str) -> PResult<Option<Zeroizing<Vec<u8>>>> {
        self.blocking(service, account, |entry| match entry.get_secret() {
            Ok(bytes) => Ok(Some(Zeroizing::new(bytes))),
            Err(KrError::NoEntry) => Ok(None),
            Err(e) => Err(failure(e, "cannot read the credential")),
        })
        .await
    }

    async fn write(&self, service: &str, account: &str, entry: &[u8], _create_only: bool) -> PResult<()> {
        let bytes = Zeroizing::new(entry.to_vec());
        self.blocking(service, account, move |e| {
            e.set_secret(&bytes).map_err(|e| failure(e, "cannot store the credential"))
        })
        .await
    }

    async fn delete(&self, service: &str, account: &str) -> PResult<bool> {
        self.blocking(service, account, |entry| match entry.delete_credential() {
            Ok(()) => Ok(true),
            Err(KrError::NoEntry) => Ok(false),
            Err(e) => Err(failure(e, "cannot delete the credential")),
        })
        .await
    }

    async fn list(&self, service: &str) -> PResult<Vec<String>> {
        let store = Arc::clone(&self.store);
        let service = service.to_owned();
        tokio::task::spawn_blocking(move || {
            let spec = HashMap::from([("service", service.as_str())]);
            let found = store.search(&spec).map_err(|e| failure(e, "cannot search"))?;
            Ok(found
                .iter()
                .filter_map(|e| e.get_specifiers())
                .filter(|(s, _)| *s == service)
                .map(|(_, a)| a)
                .collect())
        })
        .await
        .map_err(|_| Failure::new(Kind::Other, "the platform call panicked"))?
    }

    async fn probe(&self) -> PResult<()> {
        // Reading a name that is never written answers "no entry" when the
        // store works, and the platform's own error when it does not.
        self.read("credstore:probe", "probe").await.map(drop)
    }
}
