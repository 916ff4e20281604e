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
