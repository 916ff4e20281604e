//! [`MemoryConfig`]: the settings of a [`crate::MemoryStore`].

use std::sync::Arc;

use credstore_core::{Clock, Retention};

/// How much history a memory store keeps unless told otherwise
/// ([`MemoryConfig::retention`]): the 10 newest versions of each key, the
/// current one included, with no age limit.
pub const DEFAULT_RETENTION: Retention = Retention::versions(10);

/// Settings of a [`crate::MemoryStore`].
///
/// ```
/// use std::time::Duration;
/// use credstore_core::Retention;
/// use credstore_memory::{MemoryConfig, MemoryStore};
/// # fn main() -> credstore_core::Result<()> {
/// let store = MemoryStore::with_config(
///     "memory-default".parse()?,
///     MemoryConfig::new()
///         .env_prefix("MYAPP_SECRET_")
///         .retention(Retention::versions(5).with_max_age(Some(Duration::from_secs(7 * 86_400)))),
/// );
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct MemoryConfig {
    pub(crate) env_prefix: Option<String>,
    pub(crate) retention: Retention,
    pub(crate) clock: Option<Arc<dyn Clock>>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self { env_prefix: None, retention: DEFAULT_RETENTION, clock: None }
    }
}

/// Equal when the prefix and retention are, and both use the system clock
/// or the very same clock.
impl PartialEq for MemoryConfig {
    fn eq(&self, other: &Self) -> bool {
        let same_clock = match (&self.clock, &other.clock) {
            (None, None) => true,
            (Some(a), Some(b)) => std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b)),
            _ => false,
        };
        self.env_prefix == other.env_prefix && self.retention == other.retention && same_clock
    }
}

impl Eq for MemoryConfig {}

impl MemoryConfig {
    /// The defaults: no environment read-through, [`DEFAULT_RETENTION`], the
    /// system clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// How much history each key keeps: at most `retention.max_versions`
    /// versions (the current one included; `None`: no limit) and, with
    /// `retention.max_age`, a version no longer than that after it stopped
    /// being current (overwritten or deleted), by the store's clock. A
    /// version past either limit is gone for good, its value wiped. The
    /// default is [`DEFAULT_RETENTION`]. A `max_versions` of 1 keeps no
    /// earlier version, but still the deleted one of a deleted key.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// The clock the store decides expiry and age-based retention by (its
    /// [`StoreInfo::clock`](credstore_core::StoreInfo::clock)); the system
    /// clock by default. Tests give a
    /// [`ManualClock`](credstore_core::ManualClock) to cross a boundary
    /// without sleeping. Timestamps (`created_at`, `updated_at`) stay the
    /// system's.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
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
/// max_versions = 10              # optional: versions kept per key, the current one included (default 10, at least 1)
/// max_version_age_secs = 2592000 # optional: drop a version this long after it stopped being current (default: no limit)
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
    /// The most versions kept per key, the current one included; 10 when
    /// absent. See [`MemoryConfig::retention`].
    #[serde(default)]
    pub max_versions: Option<u32>,
    /// How long, in seconds, a version is kept once it stopped being
    /// current; no limit when absent. See [`MemoryConfig::retention`].
    #[serde(default)]
    pub max_version_age_secs: Option<u64>,
}

#[cfg(feature = "serde")]
impl MemorySettings {
    /// The retention these settings give: [`DEFAULT_RETENTION`]'s 10
    /// versions unless `max_versions` is set, an age limit only with
    /// `max_version_age_secs`.
    pub(crate) fn retention(&self) -> Result<Retention, String> {
        let versions = match self.max_versions {
            Some(0) => return Err("max_versions must be at least 1".into()),
            Some(n) => Retention::versions(n),
            None => DEFAULT_RETENTION,
        };
        let age = match self.max_version_age_secs {
            Some(0) => return Err("max_version_age_secs must be at least 1".into()),
            age => age.map(std::time::Duration::from_secs),
        };
        Ok(versions.with_max_age(age.or(DEFAULT_RETENTION.max_age)))
    }
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::*;

    #[test]
    fn retention_settings_parse() {
        let s: MemorySettings =
            serde_json::from_str(r#"{"max_versions": 3, "max_version_age_secs": 60}"#).unwrap();
        assert_eq!((s.max_versions, s.max_version_age_secs), (Some(3), Some(60)));
        assert_eq!(
            s.retention().unwrap(),
            Retention::versions(3).with_max_age(Some(std::time::Duration::from_secs(60)))
        );
        assert_eq!(MemorySettings::default().retention().unwrap(), DEFAULT_RETENTION);
        for bad in [r#"{"max_versions": 0}"#, r#"{"max_version_age_secs": 0}"#] {
            let s: MemorySettings = serde_json::from_str(bad).unwrap();
            let err = s.retention().unwrap_err();
            assert!(err.to_string().contains("at least 1"), "{err}");
        }
    }

    #[test]
    fn settings_parse_and_refuse_unknown_fields() {
        let s: MemorySettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, MemorySettings::default());
        let err = serde_json::from_str::<MemorySettings>(r#"{"path": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `path`"), "{err}");
    }
}
