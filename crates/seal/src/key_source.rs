//! [`KeySource`]: where the key-encryption key of a store opened from a
//! config file comes from, as every encrypting store's settings name it.

use std::path::PathBuf;

use credstore_core::config::{ConfigContext, SecretSource};
use credstore_core::{Error, Result, StoreId};

use crate::MasterKey;

/// Where the key-encryption key of a store opened from its settings comes
/// from: never the key itself. The encrypting stores' settings (SQLite,
/// PostgreSQL) read the same fields into it with [`KeySource::from_fields`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `master_key_file`: a key file, created with a fresh random key
    /// (owner-only) when missing; see [`MasterKey::load`].
    File(PathBuf),
    /// `master_key_env`: the environment variable holding the key's base64.
    Env(String),
    /// `passphrase_file` or `passphrase_env`: a passphrase the key is
    /// derived from with Argon2id; see [`MasterKey::load_passphrase`].
    Passphrase(SecretSource),
    /// `key = { provider = "…", … }`: the key-encryption key is kept by a
    /// [`KeyProvider`](crate::KeyProvider) that the caller builds from that
    /// table (a server's registry of key providers: the OS keychain, AWS
    /// KMS, Vault Transit); the store's settings do not read the table.
    /// Such a store is opened from its settings' base config and a
    /// provider; [`KeySource::load`] refuses it.
    Provider,
}

/// The key fields of a store's settings table, as read from the file.
#[derive(Debug, Default)]
pub struct KeyFields {
    /// `master_key_file`.
    pub master_key_file: Option<PathBuf>,
    /// `master_key_env`.
    pub master_key_env: Option<String>,
    /// `passphrase_file`.
    pub passphrase_file: Option<PathBuf>,
    /// `passphrase_env`.
    pub passphrase_env: Option<String>,
    /// Whether the table has a `key = { provider = .. }` entry.
    pub provider_table: bool,
}

impl KeySource {
    /// The one source the fields name.
    ///
    /// # Errors
    /// The message for the config file's reader when the fields name none
    /// or more than one.
    ///
    /// ```
    /// use credstore_seal::{KeyFields, KeySource};
    /// let env = KeyFields { master_key_env: Some("TEAM_KEK".into()), ..KeyFields::default() };
    /// assert_eq!(KeySource::from_fields(env), Ok(KeySource::Env("TEAM_KEK".into())));
    /// let two = KeyFields { master_key_env: Some("K".into()), provider_table: true, ..KeyFields::default() };
    /// assert!(KeySource::from_fields(two).unwrap_err().contains("two keys for one store"));
    /// ```
    pub fn from_fields(fields: KeyFields) -> std::result::Result<Self, String> {
        let passphrase = SecretSource::one_of("passphrase", fields.passphrase_file, fields.passphrase_env)?;
        match (fields.master_key_file, fields.master_key_env, passphrase) {
            (None, None, None) if fields.provider_table => Ok(KeySource::Provider),
            _ if fields.provider_table => {
                Err("`key = { provider = .. }` and master_key_file, master_key_env, \
                                               passphrase_file or passphrase_env are two keys for one store; \
                                               give only one"
                    .into())
            }
            (Some(file), None, None) => Ok(KeySource::File(file)),
            (None, Some(var), None) => Ok(KeySource::Env(var)),
            (None, None, Some(source)) => Ok(KeySource::Passphrase(source)),
            _ => Err("give exactly one of master_key_file, master_key_env, passphrase_file, passphrase_env \
                      and `key = { provider = .. }`"
                .into()),
        }
    }

    /// Loads the key-encryption key of store `id` from this source, creating
    /// the key file when [`KeySource::File`] names none. `allow_loose` is the
    /// settings' `allow_loose_permissions`; `open_with` names the calls that
    /// open a store keyed by a provider, for the error of
    /// [`KeySource::Provider`].
    ///
    /// # Errors
    /// [`Error::Config`] naming `id` and the source: the file cannot be read
    /// or created, holds no key (see [`crate::KeyFile`]) or grants
    /// permissions to its group or others (unless `allow_loose`), the
    /// variable is unset or not the base64 of 32 bytes, the passphrase
    /// cannot be read or its file is open to others; the key is
    /// [`KeySource::Provider`], which settings cannot load.
    pub fn load(
        &self,
        allow_loose: bool,
        id: &StoreId,
        ctx: &ConfigContext,
        open_with: &str,
    ) -> Result<MasterKey> {
        match self {
            KeySource::File(path) => {
                MasterKey::load(&SecretSource::File(path.clone()), "master_key_file", allow_loose, id, ctx)
            }
            KeySource::Env(var) => {
                MasterKey::load(&SecretSource::Env(var.clone()), "master_key_env", allow_loose, id, ctx)
            }
            KeySource::Passphrase(source) => MasterKey::load_passphrase(source, allow_loose, id, ctx),
            KeySource::Provider => Err(Error::config(
                id,
                format!(
                    "the key-encryption key of this store comes from its `key = {{ provider = .. }}` setting, \
                     which a key provider registry (credstore-server's) builds; open it with {open_with}"
                ),
            )),
        }
    }
}
