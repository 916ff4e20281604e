//! [`MasterKey`]: where the 256-bit key that seals every row comes from, and
//! [`KdfParams`]: how a passphrase is stretched into one.

use std::fmt;
use std::fs;
use std::io::{Read, Write};
#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use credstore_core::config::{ConfigContext, SecretSource};
use credstore_core::{Error, Result, SecretValue, StoreId};
use zeroize::Zeroizing;

use crate::{DataKey, KeyLocation, KeyProvider, ProviderInfo, WrapContext, WrappedKey, KEY_LEN};

/// Key material in a buffer that is wiped when dropped.
pub type KeyBytes = Zeroizing<[u8; KEY_LEN]>;

/// The length of the salt generated for a passphrase, in bytes.
pub const SALT_LEN: usize = 16;

/// Argon2id parameters for [`MasterKey::from_passphrase_with_params`].
///
/// The parameters and a random salt are stored in the database when it is
/// created (and again at each rotation to a passphrase), so later openings
/// derive the same key.
///
/// New parameters are at least OWASP's minimum for Argon2id: 19 MiB
/// ([`KdfParams::MIN_MEMORY_KIB`]) and 2 passes ([`KdfParams::MIN_ITERATIONS`]);
/// see [`KdfParams::MIN`]. Parameters read back from a database are checked
/// against the upper limits only (so a crafted database cannot make opening
/// run for minutes or exhaust memory): a database created by 0.2 with weaker
/// parameters (0.2 accepted 8 KiB per lane and one pass) still opens, with a
/// warning logged, and its next rotation to a passphrase key
/// (`SqliteStore::rotate_key` of `credstore-sqlite`, the CLI's `rotate-key`) stores the
/// new key's parameters, [`KdfParams::DEFAULT`] unless others are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
}

impl KdfParams {
    /// The defaults: 64 MiB of memory, 3 iterations, 1 lane (about a quarter
    /// of a second on a current CPU, in a release build).
    pub const DEFAULT: KdfParams = KdfParams { memory_kib: 64 * 1024, iterations: 3, parallelism: 1 };
    /// OWASP's minimum for Argon2id: 19 MiB, 2 passes, 1 lane; for hosts
    /// short of memory, and tests.
    pub const MIN: KdfParams =
        KdfParams { memory_kib: Self::MIN_MEMORY_KIB, iterations: Self::MIN_ITERATIONS, parallelism: 1 };
    /// The least memory accepted for new parameters, in KiB: 19 MiB
    /// (19,456 KiB), OWASP's minimum for Argon2id.
    pub const MIN_MEMORY_KIB: u32 = 19 * 1024;
    /// The fewest passes accepted for new parameters: 2, OWASP's minimum
    /// with [`KdfParams::MIN_MEMORY_KIB`].
    pub const MIN_ITERATIONS: u32 = 2;
    /// The most memory accepted, in KiB: 1 GiB.
    pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;
    /// The most iterations accepted.
    pub const MAX_ITERATIONS: u32 = 16;
    /// The most lanes accepted.
    pub const MAX_PARALLELISM: u32 = 16;
    /// The most work accepted: memory (KiB) times iterations, 2 GiB-passes,
    /// which bounds a derivation to a few seconds.
    pub const MAX_WORK_KIB: u64 = 2 * 1024 * 1024;

    /// Parameters with `memory_kib` KiB of memory, `iterations` passes and
    /// `parallelism` lanes.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `kdf` when the memory is under
    /// [`KdfParams::MIN_MEMORY_KIB`] or the passes under
    /// [`KdfParams::MIN_ITERATIONS`] (OWASP's minimum), the lanes are zero,
    /// or a limit (`MAX_*`) is exceeded.
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self> {
        let params = Self { memory_kib, iterations, parallelism };
        params
            .check()
            .and_then(|()| params.check_floor())
            .map_err(|reason| Error::InvalidInput { field: "kdf".into(), reason })?;
        Ok(params)
    }

    /// Whether these parameters are at least OWASP's minimum, as new ones
    /// must be; parameters read back from a database created by 0.2 may not.
    pub fn meets_minimum(&self) -> bool {
        self.check_floor().is_ok()
    }

    fn check_floor(&self) -> std::result::Result<(), String> {
        if self.memory_kib < Self::MIN_MEMORY_KIB || self.iterations < Self::MIN_ITERATIONS {
            return Err(format!(
                "memory {} KiB and {} passes are below OWASP's minimum for Argon2id ({} KiB and {} passes)",
                self.memory_kib,
                self.iterations,
                Self::MIN_MEMORY_KIB,
                Self::MIN_ITERATIONS
            ));
        }
        Ok(())
    }

    /// Memory in KiB.
    pub fn memory_kib(&self) -> u32 {
        self.memory_kib
    }

    /// Number of passes.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Number of lanes.
    pub fn parallelism(&self) -> u32 {
        self.parallelism
    }

    /// The limits every parameter set must keep, new or read back from a
    /// database: nonzero, 8 KiB per lane (Argon2's own floor), and the
    /// `MAX_*` limits.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        let Self { memory_kib: m, iterations: t, parallelism: p } = *self;
        if !(1..=Self::MAX_PARALLELISM).contains(&p) {
            return Err(format!("parallelism {p} is outside 1..={}", Self::MAX_PARALLELISM));
        }
        if !(1..=Self::MAX_ITERATIONS).contains(&t) {
            return Err(format!("iterations {t} is outside 1..={}", Self::MAX_ITERATIONS));
        }
        if m < 8 * p || m > Self::MAX_MEMORY_KIB {
            return Err(format!("memory {m} KiB is outside {}..={} KiB", 8 * p, Self::MAX_MEMORY_KIB));
        }
        if u64::from(m) * u64::from(t) > Self::MAX_WORK_KIB {
            return Err(format!(
                "memory {m} KiB times {t} iterations exceeds the limit of {} KiB",
                Self::MAX_WORK_KIB
            ));
        }
        Ok(())
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The key that seals every credential of a database: 32 bytes for
/// AES-256-GCM, given directly or derived from a passphrase.
///
/// Key material lives in zeroizing buffers, and `Debug` shows only which kind
/// of key this is.
///
/// ```
/// use credstore_seal::MasterKey;
/// let key = MasterKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")?;
/// assert_eq!(format!("{key:?}"), "MasterKey(raw, [REDACTED])");
/// assert!(MasterKey::from_base64("dG9vIHNob3J0").is_err());
/// # Ok::<(), credstore_core::Error>(())
/// ```
#[derive(Clone)]
pub struct MasterKey(Source);

#[derive(Clone)]
enum Source {
    Raw(Zeroizing<[u8; KEY_LEN]>),
    Passphrase { passphrase: SecretValue, params: KdfParams },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidInput { field: field.into(), reason: reason.into() }
}

impl MasterKey {
    /// A key from 32 raw bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        MasterKey(Source::Raw(Zeroizing::new(bytes)))
    }

    /// A key from its standard base64 text (44 characters with padding;
    /// surrounding whitespace is ignored).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `master_key` when the text is not
    /// base64 or does not decode to exactly 32 bytes. The message never
    /// contains the text.
    pub fn from_base64(text: &str) -> Result<Self> {
        Self::decode_base64(text, "master_key")
    }

    fn decode_base64(text: &str, field: &str) -> Result<Self> {
        let decoded = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| invalid(field, "is not standard base64 of a 32-byte key"))?,
        );
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if decoded.len() != KEY_LEN {
            return Err(invalid(
                field,
                format!("decodes to {} bytes; a master key is {KEY_LEN}", decoded.len()),
            ));
        }
        key.copy_from_slice(&decoded);
        Ok(MasterKey(Source::Raw(key)))
    }

    /// A key from the environment variable `var`, holding its base64 text.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the variable when it is unset, not
    /// Unicode, or not the base64 of 32 bytes.
    pub fn from_env(var: &str) -> Result<Self> {
        let field = format!("environment variable {var}");
        let text = Zeroizing::new(std::env::var(var).map_err(|e| match e {
            std::env::VarError::NotPresent => invalid(&field, "is not set"),
            std::env::VarError::NotUnicode(_) => invalid(&field, "is not valid Unicode"),
        })?);
        Self::decode_base64(&text, &field)
    }

    /// A key from the key file at `path`: [`KeyFile::read`] with the
    /// defaults (the file must be owner-only).
    ///
    /// # Errors
    /// As [`KeyFile::read`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        KeyFile::new(path.as_ref()).read()
    }

    /// A key derived from `passphrase` with Argon2id and the default
    /// [`KdfParams`] (64 MiB, 3 iterations, 1 lane).
    ///
    /// # Behavior
    /// The derivation runs when the store opens, off the async runtime's
    /// worker threads, with the salt and parameters stored in the database
    /// (a new database gets a fresh random salt and these parameters).
    pub fn from_passphrase(passphrase: &SecretValue) -> Self {
        MasterKey(Source::Passphrase { passphrase: passphrase.clone(), params: KdfParams::DEFAULT })
    }

    /// Like [`MasterKey::from_passphrase`], with explicit Argon2id parameters
    /// for a new database or a rotation. An existing database keeps the
    /// parameters it was created with (or last rotated to), even below
    /// [`KdfParams::MIN`] for one created by 0.2, until its next rotation.
    pub fn from_passphrase_with_params(passphrase: &SecretValue, params: KdfParams) -> Self {
        MasterKey(Source::Passphrase { passphrase: passphrase.clone(), params })
    }

    /// A passphrase key with parameters as 0.2 accepted them, below
    /// [`KdfParams::MIN`]: only for tests that build a database of 0.2.
    #[doc(hidden)]
    pub fn from_passphrase_with_0_2_params(
        passphrase: &SecretValue,
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    ) -> Self {
        MasterKey(Source::Passphrase {
            passphrase: passphrase.clone(),
            params: KdfParams { memory_kib, iterations, parallelism },
        })
    }

    /// A fresh random key from the operating system's generator.
    ///
    /// # Panics
    /// When the operating system has no random generator to offer, which no
    /// supported platform lacks.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(&mut key[..]).expect("the operating system's random generator failed");
        MasterKey(Source::Raw(key))
    }

    /// Reads the key file at `path`, or creates it with a fresh random key:
    /// [`KeyFile::read_or_create`] with the defaults.
    ///
    /// # Errors
    /// As [`KeyFile::read_or_create`].
    pub fn load_or_create_file(path: impl AsRef<Path>) -> Result<Self> {
        KeyFile::new(path.as_ref()).read_or_create()
    }

    /// The key's base64 text, to back it up or move it to a secret manager;
    /// `None` for a passphrase key, which has no fixed bytes before it meets
    /// its database's salt. Handle the result as the secret it is.
    pub fn to_base64(&self) -> Option<Zeroizing<String>> {
        match &self.0 {
            Source::Raw(bytes) => Some(Zeroizing::new(STANDARD.encode(&bytes[..]))),
            Source::Passphrase { .. } => None,
        }
    }

    /// Whether this key is derived from a passphrase.
    pub fn is_passphrase(&self) -> bool {
        matches!(self.0, Source::Passphrase { .. })
    }

    /// The 32-byte key, derived with the stored salt and parameters when this
    /// is a passphrase: how databases of 0.2, sealed directly under their
    /// master key with the KDF record beside it, are opened. `stored` is the database's KDF record, if it has one;
    /// the returned record is the one the database must hold afterwards
    /// (`None` for a raw key). `fresh` ignores `stored` and draws a new salt,
    /// as a new database or a rotation does.
    pub fn resolve(
        &self,
        stored: Option<&[u8]>,
        fresh: bool,
    ) -> std::result::Result<(KeyBytes, Option<Vec<u8>>), String> {
        match &self.0 {
            Source::Raw(bytes) => Ok((bytes.clone(), None)),
            Source::Passphrase { passphrase, params } => {
                let (params, salt) = match stored {
                    Some(record) if !fresh => decode_kdf(record)?,
                    _ => {
                        let mut salt = vec![0u8; SALT_LEN];
                        getrandom::fill(&mut salt).map_err(|e| format!("random generator failed: {e}"))?;
                        (*params, salt)
                    }
                };
                let key = derive(passphrase, &params, &salt)?;
                Ok((key, Some(encode_kdf(&params, &salt))))
            }
        }
    }
}

/// Loading a master key from the settings of a config file.
impl MasterKey {
    /// The key of the store `id` from `source` as a config file names it: a
    /// key file ([`KeyFile::read_or_create`]: created with a fresh random
    /// key when missing), or an environment variable holding its base64.
    /// `setting` names the setting in messages (`master_key_env`,
    /// `key_env`).
    ///
    /// # Errors
    /// [`Error::Config`] naming `id` and the file or variable (never the
    /// key): the file cannot be read or created, holds no key, or is open to
    /// its group or others (unless `allow_loose_permissions`); the variable
    /// is unset or not the base64 of 32 bytes.
    pub fn load(
        source: &SecretSource,
        setting: &str,
        allow_loose_permissions: bool,
        id: &StoreId,
        ctx: &ConfigContext,
    ) -> Result<Self> {
        match source {
            SecretSource::File(path) => KeyFile::new(ctx.path(path))
                .allow_loose_permissions(allow_loose_permissions)
                .read_or_create()
                .map_err(|e| Error::config(id, e.to_string())),
            SecretSource::Env(var) => {
                let text = Zeroizing::new(ctx.env(var).ok_or_else(|| {
                    Error::config(id, format!("the environment variable {var} ({setting}) is not set"))
                })?);
                MasterKey::from_base64(&text).map_err(|_| {
                    Error::config(id, format!("{var} ({setting}) is not the base64 of a 32-byte key"))
                })
            }
        }
    }

    /// A passphrase key of the store `id` ([`MasterKey::from_passphrase`])
    /// from `source`: a passphrase file, which must be owner-only unless
    /// `allow_loose_permissions`, or an environment variable.
    ///
    /// # Errors
    /// [`Error::Config`] naming `id` and the file or variable (never the
    /// passphrase): unreadable, unset, empty, or a file open to its group or
    /// others.
    pub fn load_passphrase(
        source: &SecretSource,
        allow_loose_permissions: bool,
        id: &StoreId,
        ctx: &ConfigContext,
    ) -> Result<Self> {
        if let SecretSource::File(file) = source {
            let path = ctx.path(file);
            // An unreadable file is reported by `read` below.
            if let Ok(meta) = fs::metadata(&path) {
                check_mode(&path, file_mode(&meta), allow_loose_permissions, "passphrase file").map_err(
                    |reason| Error::config(id, format!("passphrase file {} {reason}", path.display())),
                )?;
            }
        }
        Ok(MasterKey::from_passphrase(&source.read(id, ctx)?))
    }
}

/// The provider infos of the two kinds of master key.
static RAW_INFO: ProviderInfo = ProviderInfo::from_static("master-key", KeyLocation::Unknown);
static PASSPHRASE_INFO: ProviderInfo = ProviderInfo::from_static("passphrase", KeyLocation::Passphrase);

/// The first byte of a data key wrapped by a raw key, and by a passphrase.
const WRAPPED_BY_RAW: u8 = 1;
const WRAPPED_BY_PASSPHRASE: u8 = 2;
const NONCE_LEN: usize = 12;

impl MasterKey {
    /// [`MasterKey::resolve`] off the async runtime's worker threads for a
    /// passphrase (Argon2id takes a while), inline for a raw key.
    async fn resolve_async(
        &self,
        stored: Option<Vec<u8>>,
        fresh: bool,
        context: &WrapContext<'_>,
    ) -> Result<(KeyBytes, Option<Vec<u8>>)> {
        let config = |reason: String| Error::config(context.store(), reason);
        match &self.0 {
            Source::Raw(_) => self.resolve(None, fresh).map_err(config),
            Source::Passphrase { .. } => {
                let this = self.clone();
                tokio::task::spawn_blocking(move || this.resolve(stored.as_deref(), fresh))
                    .await
                    .map_err(|e| {
                        Error::backend(context.store(), format!("the key derivation task failed: {e}"))
                    })?
                    .map_err(config)
            }
        }
    }

    fn wrap_tag(&self) -> u8 {
        match self.0 {
            Source::Raw(_) => WRAPPED_BY_RAW,
            Source::Passphrase { .. } => WRAPPED_BY_PASSPHRASE,
        }
    }
}

fn wrap_aad(context: &WrapContext<'_>, tag: u8) -> Vec<u8> {
    let mut aad = context.associated_data();
    aad.push(tag);
    aad
}

/// A master key is the local key-encryption key: a data key is wrapped with
/// AES-256-GCM under the key (or the key derived from the passphrase with a
/// fresh salt), bound to the [`WrapContext`].
///
/// The wrapped key is `[1 raw | 2 passphrase][KDF record length u8][KDF
/// record]([nonce 12][sealed data key 32 + tag 16])`; the KDF record (salt
/// and Argon2id parameters, empty for a raw key) lets a passphrase derive
/// the same key again. The associated data is
/// [`WrapContext::associated_data`] followed by the first byte.
#[async_trait]
impl KeyProvider for MasterKey {
    fn info(&self) -> &ProviderInfo {
        match self.0 {
            Source::Raw(_) => &RAW_INFO,
            Source::Passphrase { .. } => &PASSPHRASE_INFO,
        }
    }

    async fn wrap(&self, key: &DataKey, context: &WrapContext<'_>) -> Result<WrappedKey> {
        let (kek, kdf) = self.resolve_async(None, true, context).await?;
        let kdf = kdf.unwrap_or_default();
        let tag = self.wrap_tag();
        let aead = Aes256Gcm::new_from_slice(&kek[..]).expect("a 32-byte key fits AES-256");
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| Error::backend(context.store(), format!("the random generator failed: {e}")))?;
        let aad = wrap_aad(context, tag);
        let sealed = aead
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: key.expose_secret(), aad: &aad })
            .map_err(|_| Error::backend(context.store(), "AES-GCM refused to wrap the data key"))?;
        let mut out = Vec::with_capacity(2 + kdf.len() + NONCE_LEN + sealed.len());
        out.push(tag);
        out.push(kdf.len() as u8);
        out.extend_from_slice(&kdf);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        WrappedKey::new(out)
    }

    async fn unwrap(&self, wrapped: &WrappedKey, context: &WrapContext<'_>) -> Result<DataKey> {
        let bytes = wrapped.as_bytes();
        let wrong = |detail: &str| crate::wrong_key(context, self.info(), detail);
        let (&tag, rest) = bytes.split_first().ok_or_else(|| wrong("the wrapped key is empty"))?;
        if tag != self.wrap_tag() {
            return Err(wrong(if tag == WRAPPED_BY_RAW {
                "it is wrapped by a raw master key, not a passphrase"
            } else {
                "it is wrapped by a passphrase, not a raw master key"
            }));
        }
        let (&kdf_len, rest) = rest.split_first().ok_or_else(|| wrong("the wrapped key is cut short"))?;
        let kdf_len = usize::from(kdf_len);
        if rest.len() < kdf_len + NONCE_LEN {
            return Err(wrong("the wrapped key is cut short"));
        }
        let (kdf, rest) = rest.split_at(kdf_len);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let stored = (tag == WRAPPED_BY_PASSPHRASE).then(|| kdf.to_vec());
        let (kek, _) = self.resolve_async(stored, false, context).await?;
        let aead = Aes256Gcm::new_from_slice(&kek[..]).expect("a 32-byte key fits AES-256");
        let aad = wrap_aad(context, tag);
        let plain = Zeroizing::new(
            aead.decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
                .map_err(|_| wrong("AES-GCM authentication failed"))?,
        );
        DataKey::from_slice(&plain).ok_or_else(|| wrong("the unwrapped key is not 32 bytes"))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::Raw(_) => f.write_str("MasterKey(raw, [REDACTED])"),
            Source::Passphrase { params, .. } => write!(
                f,
                "MasterKey(passphrase, argon2id m={} KiB t={} p={}, [REDACTED])",
                params.memory_kib, params.iterations, params.parallelism
            ),
        }
    }
}

/// A master key file: where [`MasterKey::from_file`] and
/// [`MasterKey::load_or_create_file`] read a key, with the one setting a key
/// file has.
///
/// # Format
/// One format is written and documented: the standard base64 of the key's
/// 32 bytes (44 characters), usually followed by a newline; whitespace
/// around it is ignored. A passphrase is never a key file: it is named as a
/// passphrase (`passphrase_file` or `passphrase_env` in
/// `SqliteSettings` (the `serde` feature), [`MasterKey::from_passphrase`])
/// and stretched with Argon2id.
///
/// Files of 0.2 keep opening. 0.2 wrote key files in the base64 form only
/// (44 characters and a newline), and also accepted a file of exactly 32
/// bytes as the raw key. Each is recognized by its length:
/// - 32 bytes: the raw key of 0.2, **unless** the bytes read as text (valid
///   UTF-8 with no control characters but whitespace): a 31-character
///   passphrase and its newline is 32 bytes, and 0.2 used it as the AES key
///   with no key derivation. Such a file is refused, naming the file (never
///   its content) and saying how to name a passphrase. A random raw key
///   reads as text with probability about 2.8 × 10⁻¹¹ (each byte has 100
///   single-byte text values out of 256, and multi-byte characters add
///   little: the exact count is checked in this crate's tests), so no real
///   0.2 key is refused in practice; one that is gets the same clear error
///   and is moved to the base64 form by hand. A raw key file that is
///   accepted logs a warning: a rotation by the CLI's `rotate-key`, which
///   writes a new key file, moves it to base64.
/// - Any other length: base64 text as above. A 32-byte key in base64 is at
///   least 43 characters, so it is never mistaken for a raw key.
///
/// # Permissions
/// The file must be owner-only: one that grants any permission to its
/// group or others (`mode & 0o077`, as OpenSSH requires of private keys) is
/// refused, naming the file, its mode and the setting, unless
/// [`KeyFile::allow_loose_permissions`] (`allow_loose_permissions = true`
/// in the settings) says to accept it, with a warning. New key files are
/// created with mode `0600`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    path: PathBuf,
    allow_loose_permissions: bool,
}

/// The most bytes read from a key file: a key in base64 is 44.
const MAX_KEY_FILE_LEN: u64 = 4096;

impl KeyFile {
    /// The key file at `path`, which must be owner-only.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), allow_loose_permissions: false }
    }

    /// Accept the file even when its group or others have permissions on
    /// it (logged as a warning). Default: `false`, such a file is refused.
    pub fn allow_loose_permissions(mut self, allow: bool) -> Self {
        self.allow_loose_permissions = allow;
        self
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a file with loose permissions is accepted.
    pub fn allows_loose_permissions(&self) -> bool {
        self.allow_loose_permissions
    }

    /// Reads the key: its base64 text, or a raw key of 0.2 (see the type's
    /// docs, "Format").
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the file (never its content) when it
    /// cannot be read, grants permissions to its group or others (unless
    /// allowed), holds 32 bytes of text (a passphrase, most likely; the
    /// message says how to name one), or holds no key in either form.
    pub fn read(&self) -> Result<MasterKey> {
        let path = &self.path;
        let field = format!("master key file {}", path.display());
        let cannot = |e: std::io::Error| invalid(&field, format!("cannot be read: {e}"));
        let mut file = fs::File::open(path).map_err(cannot)?;
        let meta = file.metadata().map_err(cannot)?;
        check_mode(path, file_mode(&meta), self.allow_loose_permissions, "master key file")
            .map_err(|reason| invalid(&field, reason))?;
        if meta.len() > MAX_KEY_FILE_LEN {
            return Err(invalid(
                &field,
                format!("is {} bytes long; a key file holds the base64 of 32 bytes", meta.len()),
            ));
        }
        // Sized up front, so the buffer is never reallocated (which would
        // leave a copy of the key behind).
        let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_LEN as usize + 1));
        (&mut file).take(MAX_KEY_FILE_LEN + 1).read_to_end(&mut bytes).map_err(cannot)?;
        if bytes.len() == KEY_LEN {
            if looks_like_text(&bytes) {
                return Err(invalid(
                    &field,
                    format!(
                        "holds 32 bytes of text, not a key: a key file holds the base64 of 32 random bytes (44 \
                         characters, such as the output of `head -c 32 /dev/urandom | base64`). If it holds a \
                         passphrase, name it as one: `passphrase_file = \"{}\"` instead of `master_key_file` in \
                         the store's settings (MasterKey::from_passphrase in code), which stretches it with \
                         Argon2id; 0.2 used such a file as the key itself",
                        path.display()
                    ),
                ));
            }
            tracing::warn!(
                path = %path.display(),
                "the master key file holds the raw 32-byte key, a form only kept for files of 0.2; rotate the key \
                 (rotate-key) to have it rewritten as base64 text"
            );
            let mut key = Zeroizing::new([0u8; KEY_LEN]);
            key.copy_from_slice(&bytes);
            return Ok(MasterKey(Source::Raw(key)));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            invalid(&field, "holds neither the base64 text of a 32-byte key nor a raw key of 0.2 (32 bytes)")
        })?;
        MasterKey::decode_base64(text, &field).map_err(|e| match e {
            Error::InvalidInput { field, reason } => Error::InvalidInput {
                field,
                reason: format!(
                    "{reason}; a key file holds the base64 of 32 random bytes, and a passphrase is named as \
                     one (passphrase_file or passphrase_env)"
                ),
            },
            other => other,
        })
    }

    /// Reads the key file, or, when there is none, creates it with a fresh
    /// random key: the zero-setup default of a local installation.
    ///
    /// # Behavior
    /// - A new file is written as base64 text and a newline, with mode
    ///   `0600` (owner only), complete or not at all: it is written under a
    ///   temporary name, synced and then linked into place, and the
    ///   directory is synced, so a crash never leaves a truncated key.
    ///   Missing parent directories are created with mode `0700`.
    /// - When two processes race to create it, both end up with the key of
    ///   the one that linked it first.
    /// - An existing file is read as [`KeyFile::read`] does.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the file when it cannot be read,
    /// created or written, or holds no valid key.
    pub fn read_or_create(&self) -> Result<MasterKey> {
        let path = &self.path;
        if path.exists() {
            return self.read();
        }
        let field = format!("master key file {}", path.display());
        let io = |what: &str, e: std::io::Error| invalid(&field, format!("cannot be {what}: {e}"));
        let dir = parent_dir(path);
        if !dir.exists() {
            let mut builder = fs::DirBuilder::new();
            builder.recursive(true);
            #[cfg(unix)]
            builder.mode(0o700);
            builder.create(dir).map_err(|e| io("created", e))?;
        }
        let key = MasterKey::generate();
        match write_key_file(path, &key) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "created a new master key file");
                Ok(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self.read(),
            Err(e) => Err(io("created", e)),
        }
    }
}

/// The directory of `path` (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Syncs the directory `dir`, so that a rename or link in it survives a
/// power loss.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Writes the raw key `key` to the new file `path` as base64 text and a
/// newline, mode `0600`, complete or not at all: under a temporary name,
/// synced, linked into place (failing with `AlreadyExists` when `path`
/// exists), and the directory synced.
pub fn write_key_file(path: &Path, key: &MasterKey) -> std::io::Result<()> {
    let Some(mut text) = key.to_base64() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a passphrase key has no key file",
        ));
    };
    text.push('\n');
    let dir = parent_dir(path);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let written = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        options.mode(0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    linked?;
    sync_dir(dir)
}

/// A file's Unix mode; 0o600 where there is none (Windows keeps access
/// in ACLs, which this check does not read).
fn file_mode(meta: &fs::Metadata) -> u32 {
    #[cfg(unix)]
    return meta.permissions().mode();
    #[cfg(not(unix))]
    {
        let _ = meta;
        0o600
    }
}

/// Refuses a file whose group or others have any permission (`mode &
/// 0o077`) unless `allow`, when it only warns. `what` names the kind of file.
pub fn check_mode(path: &Path, mode: u32, allow: bool, what: &str) -> std::result::Result<(), String> {
    let mode = mode & 0o777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    if allow {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{mode:03o}"),
            "the {what} is readable or writable by others than its owner (accepted: allow_loose_permissions \
             = true); chmod 600 it"
        );
        return Ok(());
    }
    Err(format!(
        "has mode {mode:03o}: its group or others may read or write it, so it is refused; chmod 600 {}, or set \
         allow_loose_permissions = true in the store's settings to accept it",
        path.display()
    ))
}

/// Whether `bytes` read as text: valid UTF-8 with no control characters
/// but whitespace (see [`KeyFile`], "Format").
fn looks_like_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|s| s.chars().all(|c| !c.is_control() || c.is_whitespace()))
}

/// The parameters of a database's KDF record when they are below OWASP's
/// minimum (a database created by 0.2); `None` otherwise, or when the record
/// is malformed (the opening reports that).
pub fn weak_stored_params(record: &[u8]) -> Option<KdfParams> {
    decode_kdf(record).ok().map(|(params, _)| params).filter(|p| !p.meets_minimum())
}

const KDF_RECORD_VERSION: u8 = 1;

/// The database's KDF record: version, m, t, p (u32 little-endian), salt length, salt.
fn encode_kdf(params: &KdfParams, salt: &[u8]) -> Vec<u8> {
    let mut out = vec![KDF_RECORD_VERSION];
    out.extend_from_slice(&params.memory_kib.to_le_bytes());
    out.extend_from_slice(&params.iterations.to_le_bytes());
    out.extend_from_slice(&params.parallelism.to_le_bytes());
    out.push(salt.len() as u8);
    out.extend_from_slice(salt);
    out
}

fn decode_kdf(record: &[u8]) -> std::result::Result<(KdfParams, Vec<u8>), String> {
    let bad = || "the database's passphrase parameters are malformed".to_owned();
    let (&version, rest) = record.split_first().ok_or_else(bad)?;
    if version != KDF_RECORD_VERSION || rest.len() < 13 {
        return Err(bad());
    }
    let u32_at = |i: usize| u32::from_le_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
    let params = KdfParams { memory_kib: u32_at(0), iterations: u32_at(4), parallelism: u32_at(8) };
    let salt_len = usize::from(rest[12]);
    let salt =
        rest.get(13..).filter(|s| s.len() == salt_len && (8..=64).contains(&salt_len)).ok_or_else(bad)?;
    params.check().map_err(|e| format!("the database's passphrase parameters are refused: {e}"))?;
    Ok((params, salt.to_vec()))
}

fn derive(
    passphrase: &SecretValue,
    params: &KdfParams,
    salt: &[u8],
) -> std::result::Result<Zeroizing<[u8; KEY_LEN]>, String> {
    let p = argon2::Params::new(params.memory_kib, params.iterations, params.parallelism, Some(KEY_LEN))
        .map_err(|e| format!("invalid Argon2id parameters: {e}"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    argon
        .hash_password_into(passphrase.expose_secret(), salt, &mut key[..])
        .map_err(|e| format!("Argon2id failed: {e}"))?;
    Ok(key)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn raw(key: &MasterKey) -> [u8; KEY_LEN] {
        *key.resolve(None, false).unwrap().0
    }

    #[test]
    fn defaults_meet_the_floor() {
        let d = KdfParams::default();
        assert!(d.memory_kib() >= 64 * 1024 && d.iterations() >= 3 && d.parallelism() >= 1);
        assert!(d.check().is_ok());
    }

    #[test]
    fn params_limits() {
        let min = KdfParams::MIN_MEMORY_KIB;
        assert!(KdfParams::new(0, 2, 1).is_err());
        assert!(KdfParams::new(min, 0, 1).is_err());
        assert!(KdfParams::new(min, 2, 0).is_err());
        assert!(KdfParams::new(KdfParams::MAX_MEMORY_KIB + 1, 2, 1).is_err());
        assert!(KdfParams::new(KdfParams::MAX_MEMORY_KIB, 3, 1).is_err(), "work limit");
        assert_eq!(KdfParams::new(min, 2, 1).unwrap(), KdfParams::MIN);
    }

    #[test]
    fn new_kdf_params_below_the_owasp_minimum_are_refused() {
        for (m, t) in [(8, 1), (256, 1), (KdfParams::MIN_MEMORY_KIB - 1, 2), (KdfParams::MIN_MEMORY_KIB, 1)] {
            let err = KdfParams::new(m, t, 1).unwrap_err().to_string();
            assert!(err.contains("OWASP") && err.contains("19456 KiB"), "m={m} t={t}: {err}");
        }
        assert!(KdfParams::MIN.meets_minimum() && KdfParams::DEFAULT.meets_minimum());
        assert_eq!((KdfParams::MIN.memory_kib(), KdfParams::MIN.iterations()), (19_456, 2));
    }

    #[test]
    fn weak_params_of_a_0_2_database_are_still_read_back() {
        // 0.2 let a database be created with 8 KiB and one pass: reading its
        // record back must still work, or its owner is locked out.
        let weak = KdfParams { memory_kib: 8, iterations: 1, parallelism: 1 };
        let record = encode_kdf(&weak, &[3; 16]);
        assert_eq!(decode_kdf(&record).unwrap(), (weak, vec![3; 16]));
        assert_eq!(weak_stored_params(&record), Some(weak));
        assert_eq!(weak_stored_params(&encode_kdf(&KdfParams::MIN, &[3; 16])), None);
    }

    #[test]
    fn crafted_kdf_records_are_refused_before_deriving() {
        let huge = KdfParams { memory_kib: u32::MAX, iterations: u32::MAX, parallelism: 1 };
        let err = decode_kdf(&encode_kdf(&huge, &[1; 16])).unwrap_err();
        assert!(err.contains("refused"), "{err}");
        assert!(decode_kdf(&[1, 2, 3]).is_err());
        let ok = KdfParams::MIN;
        assert!(decode_kdf(&encode_kdf(&ok, &[1; 4])).is_err(), "salt too short");
        assert_eq!(decode_kdf(&encode_kdf(&ok, &[9; 16])).unwrap(), (ok, vec![9; 16]));
    }

    #[test]
    fn base64_forms() {
        let k = MasterKey::from_bytes([3; 32]);
        let text = k.to_base64().unwrap();
        assert_eq!(raw(&MasterKey::from_base64(&format!(" {}\n", *text)).unwrap()), [3; 32]);
        let err = MasterKey::from_base64("AAAA").unwrap_err().to_string();
        assert!(err.contains("3 bytes"), "{err}");
        let err = MasterKey::from_base64("not base64 at all!").unwrap_err().to_string();
        assert!(!err.contains("at all"), "the text never appears: {err}");
    }

    #[test]
    fn env_source() {
        let var = "CREDSTORE_SQLITE_TEST_KEY_ENV";
        assert!(MasterKey::from_env(var).unwrap_err().to_string().contains("is not set"));
        std::env::set_var(var, MasterKey::from_bytes([5; 32]).to_base64().unwrap().as_str());
        assert_eq!(raw(&MasterKey::from_env(var).unwrap()), [5; 32]);
        std::env::remove_var(var);
    }

    /// Writes `bytes` to `dir/name` with mode `mode`.
    fn key_file(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn file_sources_and_load_or_create() {
        let dir = tempfile::tempdir().unwrap();
        let bad = key_file(dir.path(), "bad.key", b"short", 0o600);
        assert!(MasterKey::from_file(&bad).is_err());
        assert!(MasterKey::from_file(dir.path().join("missing")).is_err());

        let created = dir.path().join("sub/dir/master.key");
        let first = MasterKey::load_or_create_file(&created).unwrap();
        let mode = fs::metadata(&created).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(created.parent().unwrap()).unwrap().permissions().mode() & 0o777;
        assert_eq!(dmode, 0o700);
        let written = fs::read_to_string(&created).unwrap();
        assert_eq!((written.len(), written.ends_with('\n')), (45, true), "base64 and a newline");
        let again = MasterKey::load_or_create_file(&created).unwrap();
        assert_eq!(raw(&first), raw(&again));
        assert_ne!(raw(&first), raw(&MasterKey::generate()));
        let leftovers: Vec<_> = fs::read_dir(created.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn every_key_file_form_of_0_2_still_opens() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::from_bytes([0xC7; 32]);
        let b64 = key.to_base64().unwrap();
        // What 0.2 wrote (base64 and a newline), and base64 as people write it.
        for (i, text) in
            [format!("{}\n", *b64), b64.to_string(), format!("  {}\r\n\n", *b64)].iter().enumerate()
        {
            let path = key_file(dir.path(), &format!("b64-{i}.key"), text.as_bytes(), 0o600);
            assert_eq!(raw(&MasterKey::from_file(&path).unwrap()), [0xC7; 32], "{text:?}");
        }
        // A raw key of 0.2: 32 bytes that do not read as text.
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).unwrap();
        bytes[0] = 0xFF; // never in UTF-8: the file is not text whatever the rest
        let path = key_file(dir.path(), "raw.key", &bytes, 0o600);
        assert_eq!(raw(&MasterKey::from_file(&path).unwrap()), bytes);
        let path = key_file(dir.path(), "ctl.key", &[8u8; 32], 0o600);
        assert_eq!(raw(&MasterKey::from_file(&path).unwrap()), [8; 32], "control bytes are not text");
    }

    #[test]
    fn a_32_byte_text_key_file_is_refused_as_an_unnamed_passphrase() {
        let dir = tempfile::tempdir().unwrap();
        // A 31-character passphrase and its newline: 0.2 used these bytes as
        // the AES key, with no key derivation.
        let pass = "correct horse battery staple 31";
        assert_eq!(pass.len(), 31);
        for (name, text) in [
            ("pass.key", format!("{pass}\n")),
            ("tabs.key", format!("{}\t", &pass[..31])),
            ("utf8.key", format!("{}é", &pass[..30])),
        ] {
            assert_eq!(text.len(), 32, "{name}");
            let path = key_file(dir.path(), name, text.as_bytes(), 0o600);
            let err = MasterKey::from_file(&path).unwrap_err().to_string();
            assert!(err.contains(&path.display().to_string()), "names the file: {err}");
            assert!(err.contains("passphrase_file") && err.contains("Argon2id"), "says how: {err}");
            assert!(!err.contains("horse"), "never the content: {err}");
        }
        // Other lengths that are not base64: the same hint.
        let path = key_file(dir.path(), "short.key", b"hunter2\n", 0o600);
        let err = MasterKey::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("passphrase_file") && !err.contains("hunter2"), "{err}");
    }

    #[test]
    fn a_random_raw_key_reads_as_text_with_negligible_probability() {
        // Count the strings `looks_like_text` accepts by the length of their
        // characters, check the counts against the classifier, and compute
        // the share of 32-byte strings it accepts.
        let ones = (0..=255u8).filter(|&b| looks_like_text(&[b])).count() as u64;
        assert_eq!(ones, 100, "95 printable ASCII characters and 5 whitespace controls");
        let pairs = (0..=0xFFFFu32).filter(|&v| looks_like_text(&(v as u16).to_be_bytes())).count() as u64;
        let by_len = |n: usize| {
            (0..=0x10FFFFu32)
                .filter_map(char::from_u32)
                .filter(|c| c.len_utf8() == n && looks_like_text(c.encode_utf8(&mut [0; 4]).as_bytes()))
                .count() as u64
        };
        let (two, three, four) = (by_len(2), by_len(3), by_len(4));
        assert_eq!(pairs, ones * ones + two, "two-byte strings: two characters or one");
        assert_eq!((two, three, four), (1889, 61_440, 1_048_576));
        let mut count = vec![1f64];
        for n in 1..=KEY_LEN {
            let at = |k: usize| if n >= k { count[n - k] } else { 0.0 };
            let next = ones as f64 * at(1) + two as f64 * at(2) + three as f64 * at(3) + four as f64 * at(4);
            count.push(next);
        }
        let share = count[KEY_LEN] / 256f64.powi(KEY_LEN as i32);
        assert!((2.7e-11..2.9e-11).contains(&share), "the docs say about 2.8e-11: {share:e}");
    }

    #[test]
    fn a_key_file_open_to_group_or_others_is_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{}\n", *MasterKey::from_bytes([4; 32]).to_base64().unwrap());
        for mode in [0o640, 0o604, 0o644, 0o620, 0o601] {
            let path = key_file(dir.path(), &format!("k{mode:o}.key"), text.as_bytes(), mode);
            let err = MasterKey::from_file(&path).unwrap_err().to_string();
            assert!(err.contains(&path.display().to_string()), "names the file: {err}");
            assert!(err.contains(&format!("mode {mode:03o}")), "names the mode: {err}");
            assert!(err.contains("allow_loose_permissions = true"), "names the setting: {err}");
            assert!(MasterKey::load_or_create_file(&path).is_err(), "an existing file is read the same way");
            let allowed = KeyFile::new(&path).allow_loose_permissions(true).read().unwrap();
            assert_eq!(raw(&allowed), [4; 32]);
        }
        for mode in [0o600, 0o400] {
            let path = key_file(dir.path(), &format!("k{mode:o}.key"), text.as_bytes(), mode);
            assert_eq!(raw(&MasterKey::from_file(&path).unwrap()), [4; 32]);
        }
    }

    #[test]
    fn passphrase_derivation_uses_stored_salt() {
        let pass = SecretValue::from("correct horse battery staple");
        let params = KdfParams::MIN;
        let key = MasterKey::from_passphrase_with_params(&pass, params);
        let (k1, record) = key.resolve(None, true).unwrap();
        let record = record.unwrap();
        let (k2, record2) = key.resolve(Some(&record), false).unwrap();
        assert_eq!(*k1, *k2);
        assert_eq!(record2.unwrap(), record);
        let (k3, _) = key.resolve(Some(&record), true).unwrap();
        assert_ne!(*k1, *k3, "a fresh salt gives another key");
        let other = MasterKey::from_passphrase_with_params(&SecretValue::from("wrong"), params);
        assert_ne!(*other.resolve(Some(&record), false).unwrap().0, *k1);
    }

    #[test]
    fn debug_redacts() {
        let pass = SecretValue::from("hunter2-passphrase");
        for key in [MasterKey::from_bytes([0x41; 32]), MasterKey::from_passphrase(&pass)] {
            let shown = format!("{key:?}");
            assert!(shown.contains("REDACTED"), "{shown}");
            assert!(
                !shown.contains("hunter2") && !shown.contains("65, 65") && !shown.contains("QUFB"),
                "{shown}"
            );
        }
    }
}
