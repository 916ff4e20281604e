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
    /// - `get` and `has` of a key that is not stored look up the variable
    ///   `{prefix}{key}`, the key exactly as given (`MYAPP_SECRET_db.password`
    ///   for key `db.password`). A variable found is returned with empty
    ///   metadata and the store's creation time as its timestamps; it is not copied
    ///   into the store.
    /// - A stored key always wins over the variable.
    /// - `list` and `delete` see only stored keys: the environment is a
    ///   read-only fallback, never enumerated or changed.
    /// - Only the root namespace reads through; handles from
    ///   [`crate::MemoryStore::with_namespace`] do not, so tenants never see
    ///   the process environment.
    pub fn env_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.env_prefix = Some(prefix.into());
        self
    }
}
