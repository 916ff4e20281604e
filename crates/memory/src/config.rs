//! [`MemoryConfig`]: the settings of a [`crate::MemoryStore`].

/// Settings of a [`crate::MemoryStore`].
///
/// ```
/// use credstore_memory::{MemoryConfig, MemoryStore};
/// # fn main() -> credstore_core::Result<()> {
/// let store = MemoryStore::with_config(
///     "memory-default".parse()?,
///     MemoryConfig::new().env_prefix("MYAPP_SECRET_"),
/// );
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryConfig {
    pub(crate) env_prefix: Option<String>,
}

impl MemoryConfig {
    /// The defaults: no environment read-through.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads through to environment variables named `{prefix}{key}`.
    ///
    /// # Behavior
    /// - `get`, `has` and `version` of a key that is not stored look up the
    ///   variable `{prefix}{key}`, the key exactly as given
    ///   (`MYAPP_SECRET_db.password` for key `db.password`). A variable found
    ///   is returned as text with empty metadata, the version `env` and the
    ///   store's creation time as its timestamps; it is not copied into the
    ///   store. A variable that is not valid Unicode is not found.
    /// - A stored key always wins over the variable.
    /// - `list` and `delete` see only stored keys: the environment is a
    ///   read-only fallback, never enumerated or changed.
    /// - Conditional writes treat a key found only in the environment as
    ///   absent from the store: a create-only write succeeds (and the stored
    ///   key then wins), a replace-if-version write fails with
    ///   [`credstore_core::Error::PreconditionFailed`], even given `env`.
    /// - Only the root namespace reads through; handles from
    ///   [`CredentialStore::with_namespace`](credstore_core::CredentialStore::with_namespace)
    ///   on any other namespace do not, so tenants never see the process
    ///   environment.
    pub fn env_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.env_prefix = Some(prefix.into());
        self
    }
}

/// The settings of a memory store in a config file (the `serde` feature):
/// one store's table, such as a `credstore-server` `[[stores]]` table
/// without its `id`, `type` and `cache`.
///
/// ```toml
/// env_prefix = "MYAPP_SECRET_"   # optional: read through to these variables (MemoryConfig::env_prefix)
/// ```
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> credstore_core::Result<()> {
/// use credstore_core::{config::ConfigContext, CredentialStoreExt};
/// use credstore_memory::MemorySettings;
///
/// let settings: MemorySettings = serde_json::from_str(r#"{"env_prefix": "MYAPP_SECRET_"}"#).unwrap();
/// let store = settings.open("scratch".parse()?, &ConfigContext::new(".")).await?;
/// assert_eq!(store.id().as_str(), "scratch");
/// # Ok(()) }
/// ```
#[cfg(feature = "serde")]
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySettings {
    /// Reads through to environment variables named `{env_prefix}{key}`;
    /// see [`MemoryConfig::env_prefix`].
    #[serde(default)]
    pub env_prefix: Option<String>,
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_refuse_unknown_fields() {
        let s: MemorySettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, MemorySettings::default());
        let err = serde_json::from_str::<MemorySettings>(r#"{"path": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `path`"), "{err}");
    }
}
