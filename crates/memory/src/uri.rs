//! [`MemoryScheme`]: memory stores named by URI (the `serde` feature).

use std::sync::Arc;

use credstore_core::config::ConfigContext;
use credstore_core::{async_trait, CredentialStore, Error, Result, StoreId, StoreScheme, StoreUri};

use crate::MemorySettings;

/// Opens `memory:` URIs into a [`crate::MemoryStore`], with the
/// [`MemorySettings`] a config file gives: every setting is a parameter of
/// the same name.
///
/// | URI part | setting |
/// |---|---|
/// | `id` | the store id (default `memory`) |
/// | `env_prefix` | [`MemorySettings::env_prefix`] |
/// | `max_versions` | [`MemorySettings::max_versions`] |
/// | `max_version_age_secs` | [`MemorySettings::max_version_age_secs`] |
///
/// A memory URI has no host or path: `memory:`, `memory:?env_prefix=APP_`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> credstore_core::Result<()> {
/// use credstore_core::SchemeRegistry;
/// use credstore_memory::MemoryScheme;
///
/// let mut schemes = SchemeRegistry::new();
/// schemes.register(MemoryScheme)?;
/// let store = schemes.open("memory:?id=scratch&max_versions=3").await?;
/// assert_eq!(store.info().id().as_str(), "scratch");
/// assert!(schemes.open("memory:?max_verions=3").await.is_err()); // misspelt: refused
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryScheme;

impl MemoryScheme {
    /// The store id and the settings `uri` names, read without any I/O.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on `uri` when it is not a `memory:` URI or
    /// has a host or a path, or on `uri.{name}` for a parameter that is
    /// unknown or does not parse; [`Error::InvalidKey`] for an `id` that is
    /// not a store id.
    pub fn settings(mut uri: StoreUri) -> Result<(StoreId, MemorySettings)> {
        if uri.scheme() != "memory" {
            return Err(invalid(format!("{}: is not a memory: URI", uri.scheme())));
        }
        if uri.username().is_some() || uri.host().is_some() || !uri.path().is_empty() {
            return Err(invalid(
                "a memory: URI has no host or path, only parameters (memory:?env_prefix=APP_)".into(),
            ));
        }
        let id = uri.take_store_id(crate::KIND.as_str())?;
        let settings = MemorySettings {
            env_prefix: uri.take("env_prefix"),
            max_versions: uri.take_parsed("max_versions")?,
            max_version_age_secs: uri.take_parsed("max_version_age_secs")?,
        };
        uri.finish()?;
        Ok((id, settings))
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidInput { field: "uri".into(), reason }
}

#[async_trait]
impl StoreScheme for MemoryScheme {
    fn schemes(&self) -> &[&'static str] {
        &["memory"]
    }

    /// Opens the store as [`MemorySettings::open`] does.
    async fn open(&self, uri: StoreUri, ctx: &ConfigContext) -> Result<Arc<dyn CredentialStore>> {
        let (id, settings) = Self::settings(uri)?;
        Ok(Arc::new(settings.open(id, ctx).await?))
    }
}
