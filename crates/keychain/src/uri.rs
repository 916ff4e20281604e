//! [`KeychainScheme`]: stores in the operating system's credential store
//! named by URI (the `serde` feature).

use std::sync::Arc;

use credstore_core::config::ConfigContext;
use credstore_core::{async_trait, CredentialStore, Error, Result, StoreId, StoreScheme, StoreUri};

use crate::config::de::Raw;
use crate::KeychainSettings;

/// Opens `keychain:` URIs into a [`crate::KeychainStore`], with the
/// [`KeychainSettings`] a config file gives: every setting is a parameter
/// of the same name, checked as in a config file.
///
/// | URI part | setting |
/// |---|---|
/// | `id` | the store id (default `keychain`) |
/// | `platform` | `default`, `keyutils`, `secret-service`, `macos-keychain` or `windows-credential-manager` |
/// | `keyring` | keyutils only: `user`, `session`, `persistent`, ... |
/// | `collection`, `bus_address` | the Secret Service only |
/// | `timeout_ms` | as in a config file |
///
/// A keychain URI has no host or path: `keychain:` (the platform's
/// default), `keychain:?platform=keyutils&keyring=session`.
///
/// ```
/// use credstore_core::StoreUri;
/// use credstore_keychain::{KeychainScheme, KeyutilsKeyring, Platform};
///
/// let (id, settings) = KeychainScheme::settings(StoreUri::parse("keychain:?platform=keyutils&keyring=session")?)?;
/// assert_eq!(id.as_str(), "keychain");
/// assert_eq!(settings.config().platform_choice(), &Platform::Keyutils(KeyutilsKeyring::Session));
/// # Ok::<(), credstore_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct KeychainScheme;

impl KeychainScheme {
    /// The store id and the settings `uri` names, read without any I/O.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on `uri` when it is not a `keychain:` URI or
    /// has a host or a path, or on `uri.{name}` for a parameter that is
    /// unknown or does not parse; [`Error::InvalidKey`] for an `id` that is
    /// not a store id; [`Error::Config`] naming the store for settings a
    /// config file could not have either (an unknown platform, a keyring
    /// for the Secret Service, ...).
    pub fn settings(mut uri: StoreUri) -> Result<(StoreId, KeychainSettings)> {
        if uri.scheme() != "keychain" {
            return Err(invalid(format!("{}: is not a keychain: URI", uri.scheme())));
        }
        if uri.username().is_some() || uri.host().is_some() || !uri.path().is_empty() {
            return Err(invalid(
                "a keychain: URI has no host or path, only parameters (keychain:?platform=keyutils)".into(),
            ));
        }
        let id = uri.take_store_id(crate::KIND.as_str())?;
        let raw = Raw {
            platform: uri.take("platform"),
            keyring: uri.take("keyring"),
            collection: uri.take("collection"),
            bus_address: uri.take("bus_address"),
            timeout_ms: uri.take_parsed("timeout_ms")?,
        };
        uri.finish()?;
        let config = raw.into_config().map_err(|reason| Error::config(&id, reason))?;
        Ok((id, KeychainSettings(config)))
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidInput { field: "uri".into(), reason }
}

#[async_trait]
impl StoreScheme for KeychainScheme {
    fn schemes(&self) -> &[&'static str] {
        &["keychain"]
    }

    /// Opens the store as [`KeychainSettings::open`] does.
    async fn open(&self, uri: StoreUri, ctx: &ConfigContext) -> Result<Arc<dyn CredentialStore>> {
        let (id, settings) = Self::settings(uri)?;
        Ok(Arc::new(settings.open(id, ctx).await?))
    }
}
