//! [`KeychainConfig`]: which platform store to use and how.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use credstore_core::{Clock, Error, Result};

/// The default timeout of one operation and of the availability probe.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The platform store a [`crate::KeychainStore`] keeps its credentials in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Platform {
    /// The usual store of the target: the macOS Keychain, the Windows
    /// Credential Manager, and on Linux the Secret Service (with the
    /// `secret-service` feature, the default) or else kernel keyutils.
    Default,
    /// Linux kernel keyutils, in the given parent keyring. Kept until the
    /// machine reboots.
    Keyutils(KeyutilsKeyring),
    /// The Secret Service over D-Bus (gnome-keyring, KWallet, KeePassXC).
    /// Durable.
    SecretService(SecretServiceOptions),
    /// The macOS Keychain (the login keychain). Durable.
    MacosKeychain,
    /// The Windows Credential Manager (generic credentials). Durable.
    WindowsCredentialManager,
}

/// The keyring a keyutils store keeps its namespace keyrings in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeyutilsKeyring {
    /// The user keyring `@u`: shared by every process of the user, kept
    /// while the user has processes or sessions. The default.
    #[default]
    User,
    /// The session keyring `@s` of the process (what a login or
    /// `keyctl session` started): gone when the session ends.
    Session,
    /// The user's persistent keyring: outlives sessions, expires after
    /// `/proc/sys/kernel/keys/persistent_keyring_expiry` seconds unused.
    Persistent,
    /// A keyring by serial number (from `keyctl newring`), which the process
    /// must possess or own.
    Serial(i32),
}

impl FromStr for KeyutilsKeyring {
    type Err = String;

    /// `user` (or `@u`), `session` (`@s`), `persistent`, or a serial number.
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "user" | "@u" => Ok(Self::User),
            "session" | "@s" => Ok(Self::Session),
            "persistent" => Ok(Self::Persistent),
            other => other.parse::<i32>().ok().filter(|n| *n > 0).map(Self::Serial).ok_or_else(|| {
                format!("{other:?} is not a keyring: use user, session, persistent or a serial number")
            }),
        }
    }
}

impl fmt::Display for KeyutilsKeyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User => f.write_str("user"),
            Self::Session => f.write_str("session"),
            Self::Persistent => f.write_str("persistent"),
            Self::Serial(n) => write!(f, "{n}"),
        }
    }
}

/// Where the Secret Service is and which collection to use.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SecretServiceOptions {
    /// The collection, by alias. Default `default` (the login keyring).
    pub collection: String,
    /// A D-Bus address (`unix:path=/run/user/1000/bus`) instead of the
    /// session bus of `DBUS_SESSION_BUS_ADDRESS`.
    pub bus_address: Option<String>,
}

impl Default for SecretServiceOptions {
    fn default() -> Self {
        Self { collection: "default".to_owned(), bus_address: None }
    }
}

impl SecretServiceOptions {
    /// The collection with this alias.
    pub fn collection(mut self, alias: impl Into<String>) -> Self {
        self.collection = alias.into();
        self
    }

    /// The bus at this D-Bus address.
    pub fn bus_address(mut self, address: impl Into<String>) -> Self {
        self.bus_address = Some(address.into());
        self
    }
}

/// Settings of a [`crate::KeychainStore`].
///
/// ```
/// use std::time::Duration;
/// use credstore_keychain::{KeychainConfig, KeyutilsKeyring, Platform};
///
/// let config = KeychainConfig::new()
///     .platform(Platform::Keyutils(KeyutilsKeyring::User))
///     .timeout(Duration::from_secs(2));
/// assert_eq!(config.platform_choice(), &Platform::Keyutils(KeyutilsKeyring::User));
/// ```
///
/// With the `serde` feature, it deserializes from the options of a server's
/// `type = "keychain"` store:
///
/// ```toml
/// platform = "keyutils"          # default | keyutils | secret-service | macos-keychain | windows-credential-manager
/// keyring = "user"               # keyutils: user | session | persistent | <serial>
/// collection = "default"         # secret-service: collection alias
/// bus_address = "unix:path=..."  # secret-service: instead of the session bus
/// timeout_ms = 5000
/// ```
#[derive(Debug, Clone)]
pub struct KeychainConfig {
    pub(crate) platform: Platform,
    pub(crate) timeout: Duration,
    /// The clock expiry is decided by; `None`: the system clock.
    pub(crate) clock: Option<Arc<dyn Clock>>,
}

/// Equal when the platform and timeout are, and both use the system clock
/// or the very same clock.
impl PartialEq for KeychainConfig {
    fn eq(&self, other: &Self) -> bool {
        let same_clock = match (&self.clock, &other.clock) {
            (None, None) => true,
            (Some(a), Some(b)) => std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b)),
            _ => false,
        };
        self.platform == other.platform && self.timeout == other.timeout && same_clock
    }
}

impl Eq for KeychainConfig {}

impl Default for KeychainConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl KeychainConfig {
    /// The target's default platform store, with a 5 second timeout.
    pub fn new() -> Self {
        Self { platform: Platform::Default, timeout: DEFAULT_TIMEOUT, clock: None }
    }

    /// The clock the store decides expiry by (its
    /// [`StoreInfo::clock`](credstore_core::StoreInfo::clock)): a credential
    /// written with an `expires_at` reads as absent from that instant of
    /// this clock on. The system clock by default; tests give a
    /// [`ManualClock`](credstore_core::ManualClock) to cross the instant
    /// without sleeping. Timestamps (`created_at`, `updated_at`) stay the
    /// system's, and kernel keyutils' own key timeouts run on the kernel's
    /// time (see the crate docs).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The platform store to use.
    pub fn platform(mut self, platform: Platform) -> Self {
        self.platform = platform;
        self
    }

    /// The longest one operation may take, and the longest
    /// [`check_availability`](credstore_core::CredentialStore::check_availability)
    /// waits. Default 5 seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The platform store chosen.
    pub fn platform_choice(&self) -> &Platform {
        &self.platform
    }

    /// The operation timeout.
    pub fn request_timeout(&self) -> Duration {
        self.timeout
    }

    /// Checks the settings without any I/O.
    pub(crate) fn validate(&self, store: &credstore_core::StoreId) -> Result<()> {
        if self.timeout.is_zero() {
            return Err(Error::config(store, "the timeout is zero"));
        }
        if let Platform::SecretService(o) = &self.platform {
            if o.collection.is_empty() {
                return Err(Error::config(store, "the Secret Service collection alias is empty"));
            }
        }
        Ok(())
    }
}

#[cfg(feature = "serde")]
pub(crate) mod de {
    use super::*;
    use serde::{Deserialize, Deserializer};

    /// The options of a [`KeychainConfig`] as written in a config file.
    /// The fields of a config file's table, also filled from a URI by
    /// [`crate::KeychainScheme`] and checked by the same `into_config`.
    #[derive(Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct Raw {
        #[serde(default)]
        pub(crate) platform: Option<String>,
        #[serde(default)]
        pub(crate) keyring: Option<String>,
        #[serde(default)]
        pub(crate) collection: Option<String>,
        #[serde(default)]
        pub(crate) bus_address: Option<String>,
        #[serde(default)]
        pub(crate) timeout_ms: Option<u64>,
    }

    impl Raw {
        /// The config these options name, or why they name none.
        pub(crate) fn into_config(self) -> std::result::Result<KeychainConfig, String> {
            let raw = self;
            let platform_name = raw.platform.as_deref().unwrap_or("default");
            let keyutils_only = raw.keyring.is_some();
            let ss_only = raw.collection.is_some() || raw.bus_address.is_some();
            let platform = match platform_name {
                "default" if !keyutils_only && !ss_only => Platform::Default,
                "keyutils" if !ss_only => Platform::Keyutils(
                    raw.keyring.as_deref().map(str::parse).transpose()?.unwrap_or_default(),
                ),
                "secret-service" if !keyutils_only => {
                    let mut o = SecretServiceOptions::default();
                    if let Some(c) = raw.collection {
                        o.collection = c;
                    }
                    o.bus_address = raw.bus_address;
                    Platform::SecretService(o)
                }
                "macos-keychain" if !keyutils_only && !ss_only => Platform::MacosKeychain,
                "windows-credential-manager" if !keyutils_only && !ss_only => Platform::WindowsCredentialManager,
                "default" | "keyutils" | "secret-service" | "macos-keychain" | "windows-credential-manager" => {
                    return Err(format!(
                        "`keyring` applies to platform \"keyutils\" only, `collection` and `bus_address` to \"secret-service\" only, not to {platform_name:?}"
                    ))
                }
                other => {
                    return Err(format!(
                        "unknown platform {other:?}: use default, keyutils, secret-service, macos-keychain or windows-credential-manager"
                    ))
                }
            };
            let timeout = match raw.timeout_ms {
                Some(0) => return Err("timeout_ms must be at least 1".to_owned()),
                Some(ms) => Duration::from_millis(ms),
                None => DEFAULT_TIMEOUT,
            };
            Ok(KeychainConfig { platform, timeout, clock: None })
        }
    }

    impl<'de> Deserialize<'de> for KeychainConfig {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
            Raw::deserialize(deserializer)?.into_config().map_err(serde::de::Error::custom)
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn parse(json: &str) -> std::result::Result<KeychainConfig, String> {
            serde_json::from_str(json).map_err(|e| e.to_string())
        }

        #[test]
        fn server_options_parse_and_mistakes_are_named() {
            assert_eq!(parse("{}").unwrap(), KeychainConfig::new());
            let c = parse(r#"{"platform":"keyutils","keyring":"session","timeout_ms":250}"#).unwrap();
            assert_eq!(c.platform, Platform::Keyutils(KeyutilsKeyring::Session));
            assert_eq!(c.timeout, Duration::from_millis(250));
            let c = parse(r#"{"platform":"secret-service","collection":"session"}"#).unwrap();
            assert_eq!(
                c.platform,
                Platform::SecretService(SecretServiceOptions::default().collection("session"))
            );
            assert!(parse(r#"{"platform":"keyutils","keyring":"nope"}"#)
                .unwrap_err()
                .contains("not a keyring"));
            assert!(parse(r#"{"platform":"keyutils","collection":"x"}"#).unwrap_err().contains("applies to"));
            assert!(parse(r#"{"platform":"floppy"}"#).unwrap_err().contains("unknown platform"));
            assert!(parse(r#"{"platfrom":"keyutils"}"#).unwrap_err().contains("unknown field"));
            assert!(parse(r#"{"timeout_ms":0}"#).is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyrings_parse_and_print() {
        for (text, ring) in [
            ("user", KeyutilsKeyring::User),
            ("@s", KeyutilsKeyring::Session),
            ("persistent", KeyutilsKeyring::Persistent),
            ("123", KeyutilsKeyring::Serial(123)),
        ] {
            assert_eq!(text.parse::<KeyutilsKeyring>().unwrap(), ring);
        }
        assert!("-3".parse::<KeyutilsKeyring>().is_err());
        assert_eq!(KeyutilsKeyring::Serial(7).to_string(), "7");
        let id = credstore_core::StoreId::new("k").unwrap();
        assert!(KeychainConfig::new().timeout(Duration::ZERO).validate(&id).is_err());
    }
}

/// The settings of a keychain store in a config file (the `serde`
/// feature): one store's table, such as a `credstore-server` `[[stores]]`
/// table without its `id`, `type` and `cache`; the options of
/// [`KeychainConfig`], checked when they are read.
///
/// ```toml
/// platform = "keyutils"          # default | keyutils | secret-service | macos-keychain | windows-credential-manager
/// keyring = "user"               # keyutils: user | session | persistent | <serial>
/// collection = "default"         # secret-service: collection alias
/// bus_address = "unix:path=..."  # secret-service: instead of the session bus
/// timeout_ms = 5000
/// ```
///
/// ```
/// use credstore_keychain::{KeychainSettings, KeyutilsKeyring, Platform};
///
/// let settings: KeychainSettings = serde_json::from_str(r#"{"platform": "keyutils", "keyring": "session"}"#).unwrap();
/// assert_eq!(settings.config().platform_choice(), &Platform::Keyutils(KeyutilsKeyring::Session));
/// ```
#[cfg(feature = "serde")]
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct KeychainSettings(pub(crate) KeychainConfig);

#[cfg(feature = "serde")]
impl KeychainSettings {
    /// The store's config.
    pub fn config(&self) -> &KeychainConfig {
        &self.0
    }
}
