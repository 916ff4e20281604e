//! [`KeychainKeyProvider`]: a store's key-encryption key (KEK) kept in the
//! operating system's keychain, and [`KeychainKeySettings`], where.

use std::fmt;

use credstore_core::{CredentialKey, CredentialStore, Error, Persistence, Result, StoreId};
use credstore_seal::{DataKey, KeyLocation, KeyProvider, MasterKey, ProviderInfo, WrapContext, WrappedKey};
use zeroize::Zeroizing;

use crate::{KeychainConfig, KeychainStore, KeyutilsKeyring, Platform};

/// The service name every key-encryption key is kept under, with the
/// entry's name as the account. Store services are `credstore:{id}`, so no
/// store lists, reads or deletes a key-encryption key.
pub const KEK_SERVICE: &str = "credstore-kek";

/// The kind of [`KeychainKeyProvider`], recorded beside the data keys it
/// wraps: `keychain`.
pub const KEK_PROVIDER_KIND: &str = "keychain";

/// Where a [`KeychainKeyProvider`] keeps its key-encryption key: the
/// platform store (the options of [`KeychainConfig`]), the entry's name,
/// and whether a keyring that loses it at reboot is accepted.
///
/// ```
/// use credstore_core::CredentialKey;
/// use credstore_keychain::{KeychainConfig, KeychainKeySettings, Platform, SecretServiceOptions};
///
/// let settings = KeychainKeySettings::new(
///     KeychainConfig::new().platform(Platform::SecretService(SecretServiceOptions::default())),
/// )
/// .entry(CredentialKey::new("team")?);
/// assert_eq!(settings.entry_name().map(CredentialKey::as_str), Some("team"));
/// # Ok::<(), credstore_core::Error>(())
/// ```
///
/// With the `serde` feature it deserializes from a table of the options of
/// [`KeychainConfig`] and two more (a server's `key = { provider =
/// "keychain", ... }` without `provider`):
///
/// ```toml
/// platform = "secret-service"    # default | keyutils | secret-service | macos-keychain | windows-credential-manager
/// collection = "default"         # secret-service: collection alias
/// entry = "team"                 # the entry's account; default: the store's id
/// accept_volatile_keyring = false  # keyutils: accept a keyring that is gone at reboot
/// timeout_ms = 5000
/// ```
///
/// # Where each platform keeps the key, and for how long
/// - **Secret Service** (gnome-keyring, KWallet, KeePassXC): an item of the
///   collection (default `default`, the login keyring), in the provider's
///   keyring file under the user's home. Durable; readable while the
///   collection is unlocked, which the login session does (a locked
///   collection is reported as unavailable, never unlocked by a prompt).
/// - **macOS Keychain**: a generic password in the login keychain. Durable;
///   unlocked with the login session.
/// - **Windows Credential Manager**: a generic credential of the user.
///   Durable.
/// - **Kernel keyutils**: kernel memory, gone at the latest when the machine
///   reboots: the user keyring when the user's last process ends, the
///   session keyring when the session ends (a logout; for a systemd service
///   with its own session keyring, every restart), the persistent keyring
///   after it goes unused for `/proc/sys/kernel/keys/persistent_keyring_expiry`
///   seconds (three days by default). **A key-encryption key lost there
///   loses every credential sealed under it**, unless it was backed up. So
///   keyutils is refused unless `accept_volatile_keyring = true` says the key
///   is backed up or provisioned again at each boot (see
///   [`KeychainKeySettings::accept_volatile_keyring`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeychainKeySettings {
    config: KeychainConfig,
    entry: Option<CredentialKey>,
    accept_volatile_keyring: bool,
}

impl Default for KeychainKeySettings {
    fn default() -> Self {
        Self::new(KeychainConfig::new())
    }
}

impl KeychainKeySettings {
    /// A key-encryption key in the platform store `config` names, in the
    /// entry named after the store, on durable platforms only.
    pub fn new(config: KeychainConfig) -> Self {
        Self { config, entry: None, accept_volatile_keyring: false }
    }

    /// The entry's name (its account, under the service [`KEK_SERVICE`]).
    /// Default: the id of the store the provider is built for.
    pub fn entry(mut self, name: CredentialKey) -> Self {
        self.entry = Some(name);
        self
    }

    /// Accept a platform that keeps the key only until the machine reboots
    /// or sooner (kernel keyutils, whatever the keyring). Default `false`:
    /// [`KeychainKeyProvider::new`] refuses it, because data sealed under a
    /// key-encryption key that vanished cannot be read again. Set it when
    /// the key is backed up, or put back into the keyring at each boot (by a
    /// boot-time unseal step) before the store opens.
    pub fn accept_volatile_keyring(mut self, accept: bool) -> Self {
        self.accept_volatile_keyring = accept;
        self
    }

    /// The platform store chosen.
    pub fn config(&self) -> &KeychainConfig {
        &self.config
    }

    /// The entry's name, when one is set.
    pub fn entry_name(&self) -> Option<&CredentialKey> {
        self.entry.as_ref()
    }

    /// Whether a keyring that loses the key at reboot is accepted.
    pub fn accepts_volatile_keyring(&self) -> bool {
        self.accept_volatile_keyring
    }

    /// The provider of the store `store`: [`KeychainKeyProvider::new`].
    ///
    /// # Errors
    /// As [`KeychainKeyProvider::new`].
    pub fn provider(self, store: &StoreId) -> Result<KeychainKeyProvider> {
        KeychainKeyProvider::new(store, self)
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for KeychainKeySettings {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;

        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            platform: Option<String>,
            #[serde(default)]
            keyring: Option<String>,
            #[serde(default)]
            collection: Option<String>,
            #[serde(default)]
            bus_address: Option<String>,
            #[serde(default)]
            timeout_ms: Option<u64>,
            #[serde(default)]
            entry: Option<String>,
            #[serde(default)]
            accept_volatile_keyring: bool,
        }

        let raw = Raw::deserialize(deserializer)?;
        let config = crate::config::de::Raw {
            platform: raw.platform,
            keyring: raw.keyring,
            collection: raw.collection,
            bus_address: raw.bus_address,
            timeout_ms: raw.timeout_ms,
        }
        .into_config()
        .map_err(D::Error::custom)?;
        let entry = raw
            .entry
            .map(CredentialKey::new)
            .transpose()
            .map_err(|e| D::Error::custom(format!("`entry` is not a valid entry name: {e}")))?;
        Ok(Self { config, entry, accept_volatile_keyring: raw.accept_volatile_keyring })
    }
}

/// A key-encryption key in the operating system's keychain: 32 random bytes
/// kept as one entry (service [`KEK_SERVICE`], account the entry's name) on
/// the platform [`KeychainKeySettings`] names, created on first use.
///
/// - [`KeyProvider::wrap`] reads the key, creating it with a fresh random
///   key when the entry is absent, and wraps the data key exactly as
///   [`MasterKey::from_bytes`] of that key does (AES-256-GCM bound to
///   [`WrapContext::associated_data`]), recorded as kind `keychain`.
/// - [`KeyProvider::unwrap`] reads the key and unwraps; it never creates
///   one. An absent entry is an [`Error::Config`] saying the entry is
///   missing; a key that does not unwrap is [`credstore_seal::wrong_key`]
///   naming this provider.
///
/// Each call reads the entry again (one platform call, under the
/// platform's timeout; a wrap that creates the key adds it and reads it
/// back): the key is held in memory only for the call, in zeroizing
/// buffers. A store makes these calls when it opens and when it
/// rotates, never per read or write.
///
/// # The entry
/// Its secret is the standard base64 of the key (44 characters), and
/// nothing else, so the platform's own tools back it up and put it back:
/// `secret-tool lookup service credstore-kek account team` prints it, and
/// `secret-tool store --label='credstore-kek team' service credstore-kek
/// account team` (the key on stdin) restores it. Surrounding whitespace is
/// ignored. On kernel keyutils it is the user key `0` in the keyring
/// `credstore-kek/{entry}` of the configured parent keyring (the layout of
/// the crate docs).
///
/// # Two processes creating it at once
/// On kernel keyutils, creation is one create-only move the kernel decides
/// atomically: the loser reads the winner's key, and both use one key. The
/// Secret Service has no create-only write: each racer adds an item beside
/// the other's (never replacing it) and wraps under the one it reads back,
/// so the entry may hold two keys; unwrapping tries each, so every data key
/// wrapped by either stays readable. The macOS Keychain and the Windows
/// Credential Manager check, then write: a key written by another process
/// between the two is replaced. Create the key before starting several
/// processes there (one wrap does it).
#[derive(Clone)]
pub struct KeychainKeyProvider {
    handle: KeychainStore,
    entry: CredentialKey,
    info: ProviderInfo,
}

impl fmt::Debug for KeychainKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeychainKeyProvider")
            .field("service", &KEK_SERVICE)
            .field("entry", &self.entry)
            .field("platform", &self.handle.platform_name())
            .finish_non_exhaustive()
    }
}

impl KeychainKeyProvider {
    /// The provider of the store `store` (which names the entry when the
    /// settings do not, and errors). Makes no platform call.
    ///
    /// # Errors
    /// [`Error::Config`] naming `store` when the platform is kernel keyutils
    /// (which loses the key at reboot, or sooner) and
    /// [`KeychainKeySettings::accept_volatile_keyring`] is not set, and the
    /// errors of [`KeychainStore::new`] (a platform not of this target or
    /// build, a zero timeout, an empty collection alias).
    pub fn new(store: &StoreId, settings: KeychainKeySettings) -> Result<Self> {
        let handle = KeychainStore::for_service(store.clone(), settings.config.clone(), KEK_SERVICE)?;
        if handle.info().capabilities().persistence != Persistence::Durable
            && !settings.accept_volatile_keyring
        {
            return Err(Error::config(store, volatile_refusal(&settings.config, handle.platform_name())));
        }
        let entry = match settings.entry {
            Some(entry) => entry,
            None => CredentialKey::new(store.as_str())?,
        };
        let info =
            ProviderInfo::new(KEK_PROVIDER_KIND, format!("{KEK_SERVICE}/{entry}"), KeyLocation::Keychain);
        Ok(Self { handle, entry, info })
    }

    /// The entry's name: its account under the service [`KEK_SERVICE`].
    pub fn entry(&self) -> &CredentialKey {
        &self.entry
    }

    /// The platform store the key is kept in: `kernel keyutils`, `Secret
    /// Service`, `macOS Keychain` or `Windows Credential Manager`.
    pub fn platform_name(&self) -> &'static str {
        self.handle.platform_name()
    }

    /// `keychain entry credstore-kek/{entry} on the {platform}`, for messages.
    fn place(&self) -> String {
        format!("keychain entry {KEK_SERVICE}/{} on the {}", self.entry, self.platform_name())
    }

    /// The keys of the entry: none when it is absent, more than one where
    /// concurrent creations left several (the Secret Service).
    async fn keys(&self, handle: &KeychainStore, store: &StoreId) -> Result<Vec<MasterKey>> {
        let entries = handle.read_raw(self.entry.as_str()).await?;
        entries.iter().map(|bytes| self.decode(bytes, store)).collect()
    }

    /// The key in one entry's bytes; the bytes never appear in an error.
    fn decode(&self, bytes: &Zeroizing<Vec<u8>>, store: &StoreId) -> Result<MasterKey> {
        std::str::from_utf8(bytes).ok().and_then(|text| MasterKey::from_base64(text).ok()).ok_or_else(|| {
            Error::config(
                store,
                format!(
                    "the {} does not hold a key-encryption key (the standard base64 of 32 bytes): another tool \
                     changed it; put the key back from its backup",
                    self.place()
                ),
            )
        })
    }

    /// The key to wrap under: the entry's, or a fresh random one added as
    /// the entry when it is absent (then read back: if another process added
    /// its own first, that one is used).
    async fn key_for_wrap(&self, store: &StoreId) -> Result<MasterKey> {
        let handle = self.handle.naming(store);
        if let Some(key) = self.keys(&handle, store).await?.into_iter().next() {
            return Ok(key);
        }
        let text = MasterKey::generate().to_base64().expect("a generated key has bytes");
        let entry = format!("{KEK_SERVICE}/{}", self.entry);
        if handle.add_raw(self.entry.as_str(), text.as_bytes()).await? {
            tracing::info!(
                store = %store,
                entry,
                platform = self.platform_name(),
                "created the key-encryption key in the keychain (back it up: data sealed under it is lost with it)"
            );
        } else {
            tracing::debug!(store = %store, entry, "another process created the key-encryption key first: using it");
        }
        self.keys(&handle, store).await?.into_iter().next().ok_or_else(|| {
            Error::backend(
                store,
                crate::errors::PlatformError(
                    format!(
                        "the key-encryption key just written is not there when read back from the {}",
                        self.place()
                    ),
                    None,
                ),
            )
        })
    }
}

/// Why a platform that loses the key at reboot (or sooner) is refused.
fn volatile_refusal(config: &KeychainConfig, platform: &str) -> String {
    let ring = match config.platform_choice() {
        Platform::Keyutils(ring) => *ring,
        _ => KeyutilsKeyring::default(),
    };
    let lifetime = match ring {
        KeyutilsKeyring::User => "the user keyring, gone when the user's last process ends and at reboot",
        KeyutilsKeyring::Session => {
            "the session keyring, gone when the session ends (a logout; for a service with a session keyring of \
             its own, every restart)"
        }
        KeyutilsKeyring::Persistent => "the persistent keyring, gone after days unused and at reboot",
        KeyutilsKeyring::Serial(_) => "a keyring by serial, gone with whatever holds it and at reboot",
    };
    format!(
        "the key-encryption key would be kept in {platform}, in {lifetime}: a key-encryption key lost there \
         loses every credential sealed under it unless it is backed up. Keep it in the Secret Service, the macOS \
         Keychain or the Windows Credential Manager, or set accept_volatile_keyring = true once the key is backed \
         up or put back at each boot"
    )
}

/// Wraps and unwraps as [`MasterKey`] of the key in the keychain does; the
/// wrapped key's layout is [`MasterKey`]'s. Errors name the context's store
/// and this provider (never [`MasterKey`]'s own kind).
#[async_trait::async_trait]
impl KeyProvider for KeychainKeyProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn wrap(&self, key: &DataKey, context: &WrapContext<'_>) -> Result<WrappedKey> {
        self.key_for_wrap(context.store()).await?.wrap(key, context).await
    }

    async fn unwrap(&self, wrapped: &WrappedKey, context: &WrapContext<'_>) -> Result<DataKey> {
        let store = context.store();
        let keys = self.keys(&self.handle.naming(store), store).await?;
        if keys.is_empty() {
            return Err(Error::config(
                store,
                format!(
                    "the {} is missing: the data key cannot be unwrapped without the key-encryption key it held; \
                     nothing was changed. Put the key back from its backup, or name the entry that holds it",
                    self.place()
                ),
            ));
        }
        for key in &keys {
            match key.unwrap(wrapped, context).await {
                Ok(data_key) => return Ok(data_key),
                // MasterKey's wrong-key error names its own kind: it is
                // reported below as this provider's.
                Err(Error::Config { .. }) => continue,
                Err(other) => return Err(other),
            }
        }
        Err(credstore_seal::wrong_key(
            context,
            &self.info,
            format_args!(
                "the {} holds {}: AES-GCM authentication failed{}",
                self.place(),
                if keys.len() > 1 { "other keys" } else { "another key" },
                if keys.len() > 1 { format!(" with each of its {} keys", keys.len()) } else { String::new() }
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> StoreId {
        StoreId::new(s).unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn keyutils_is_refused_unless_accepted_before_any_call() {
        for ring in [KeyutilsKeyring::User, KeyutilsKeyring::Session, KeyutilsKeyring::Persistent] {
            let config = KeychainConfig::new().platform(Platform::Keyutils(ring));
            let err =
                KeychainKeyProvider::new(&id("team"), KeychainKeySettings::new(config.clone())).unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{err:?}");
            let text = err.to_string();
            assert!(text.contains("'team'") && text.contains("accept_volatile_keyring = true"), "{text}");
            assert!(text.contains("unless it is backed up"), "{text}");
            let accepted = KeychainKeySettings::new(config).accept_volatile_keyring(true);
            assert!(KeychainKeyProvider::new(&id("team"), accepted).is_ok(), "{ring}");
        }
        let session = KeychainConfig::new().platform(Platform::Keyutils(KeyutilsKeyring::Session));
        let text =
            KeychainKeyProvider::new(&id("t"), KeychainKeySettings::new(session)).unwrap_err().to_string();
        assert!(text.contains("session keyring") && text.contains("every restart"), "{text}");
    }

    #[cfg(all(target_os = "linux", feature = "secret-service"))]
    #[test]
    fn the_entry_defaults_to_the_store_id_and_names_the_provider() {
        let provider = KeychainKeySettings::default().provider(&id("team")).unwrap();
        assert_eq!(provider.entry().as_str(), "team");
        assert_eq!(provider.platform_name(), "Secret Service");
        let info = provider.info();
        assert_eq!((info.kind(), info.key_ref()), ("keychain", "credstore-kek/team"));
        assert_eq!(info.location(), &KeyLocation::Keychain);
        let named = KeychainKeySettings::default().entry(CredentialKey::new("shared").unwrap());
        assert_eq!(named.provider(&id("team")).unwrap().info().to_string(), "keychain credstore-kek/shared");
    }

    #[cfg(feature = "serde")]
    #[test]
    fn settings_parse_and_mistakes_are_named() {
        let parse = |json: &str| serde_json::from_str::<KeychainKeySettings>(json).map_err(|e| e.to_string());
        assert_eq!(parse("{}").unwrap(), KeychainKeySettings::default());
        let s = parse(
            r#"{"platform":"keyutils","keyring":"session","entry":"kek-1","accept_volatile_keyring":true,"timeout_ms":250}"#,
        )
        .unwrap();
        assert_eq!(s.config().platform_choice(), &Platform::Keyutils(KeyutilsKeyring::Session));
        assert_eq!(s.config().request_timeout(), std::time::Duration::from_millis(250));
        assert_eq!(s.entry_name().map(CredentialKey::as_str), Some("kek-1"));
        assert!(s.accepts_volatile_keyring());
        let s = parse(r#"{"platform":"secret-service","collection":"login"}"#).unwrap();
        assert_eq!(
            s.config().platform_choice(),
            &Platform::SecretService(crate::SecretServiceOptions::default().collection("login"))
        );
        assert!(parse(r#"{"entry":"a:b"}"#).unwrap_err().contains("`entry` is not a valid entry name"));
        assert!(parse(r#"{"platform":"keyutils","collection":"x"}"#).unwrap_err().contains("applies to"));
        assert!(parse(r#"{"entri":"x"}"#).unwrap_err().contains("unknown field"));
        assert!(parse(r#"{"timeout_ms":0}"#).is_err());
    }

    /// How a server's `key = { provider = "keychain", ... }` reads: a table
    /// tagged by `provider`, the rest of it these settings.
    #[cfg(feature = "serde")]
    #[test]
    fn settings_read_inside_a_table_tagged_by_provider() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(tag = "provider", rename_all = "kebab-case")]
        enum Key {
            Keychain(KeychainKeySettings),
        }
        let Key::Keychain(s) =
            serde_json::from_str(r#"{"provider":"keychain","platform":"secret-service","entry":"team"}"#)
                .unwrap();
        assert_eq!(s.entry_name().map(CredentialKey::as_str), Some("team"));
        let err = serde_json::from_str::<Key>(r#"{"provider":"keychain","entyr":"team"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `entyr`"), "{err}");
    }
}
