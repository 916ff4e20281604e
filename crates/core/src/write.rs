//! The types of a write: [`SetOptions`] and [`SetMode`] (what a caller asks
//! for), [`WriteRequest`] (what a backend receives, checked) and
//! [`SetOutcome`] (what it did).

use std::time::SystemTime;

use crate::{CredentialKey, Error, Metadata, Result, SecretValue, StoreInfo, Version};

/// What a successful write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOutcome {
    /// True when the key did not exist before.
    pub created: bool,
    /// The version this write made; a later [`CredentialStore::get`](crate::CredentialStore::get) returns
    /// it until the next write.
    pub version: Version,
    /// When the key was first set.
    pub created_at: SystemTime,
    /// When this write happened.
    pub updated_at: SystemTime,
}

/// The condition a write is made under; see [`SetOptions`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum SetMode {
    /// Create the key, or overwrite it whatever its version. The default.
    #[default]
    Upsert,
    /// Create the key only if it does not exist
    /// ([`Capabilities::create_only`](crate::Capabilities::create_only)).
    Create,
    /// Overwrite the key only if its current version is this one
    /// ([`Capabilities::replace_if_version`](crate::Capabilities::replace_if_version)). A missing key fails the
    /// condition.
    Replace(Version),
}

/// Options of [`CredentialStoreExt::set_opts`](crate::CredentialStoreExt::set_opts).
///
/// ```
/// use credstore_core::{SetMode, SetOptions, Version};
/// assert_eq!(SetOptions::new().mode, SetMode::Upsert);
/// assert_eq!(SetOptions::create_only().mode, SetMode::Create);
/// let v = Version::new("3")?;
/// assert_eq!(SetOptions::replace(v.clone()).mode, SetMode::Replace(v));
/// # Ok::<(), credstore_core::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SetOptions {
    /// The write's condition.
    pub mode: SetMode,
    /// When the credential written expires: from then on it reads as absent
    /// (`get`, `has`, `list`) and its version shows as
    /// [`Expired`](crate::VersionState::Expired). `None`, the default, never
    /// expires. Needs [`Capabilities::expiry`](crate::Capabilities::expiry);
    /// must be later than the store's [`clock`](crate::StoreInfo::clock).
    pub expires_at: Option<SystemTime>,
}

impl SetOptions {
    /// An unconditional write (upsert).
    pub fn new() -> Self {
        Self::default()
    }

    /// A write that creates the key only if it is absent.
    pub fn create_only() -> Self {
        Self { mode: SetMode::Create, expires_at: None }
    }

    /// A write that replaces the key only at `version`.
    pub fn replace(version: Version) -> Self {
        Self { mode: SetMode::Replace(version), expires_at: None }
    }

    /// Returns a copy with `mode`.
    pub fn with_mode(mut self, mode: SetMode) -> Self {
        self.mode = mode;
        self
    }

    /// Returns a copy that expires at `expires_at` (`None`: never).
    pub fn with_expires_at(mut self, expires_at: Option<SystemTime>) -> Self {
        self.expires_at = expires_at;
        self
    }
}

/// A write checked against a store's capabilities: what
/// [`CredentialStore::write`](crate::CredentialStore::write) receives.
///
/// [`WriteRequest::new`] is the only way to make one, and it makes the
/// checks every backend needs before any I/O; so a backend never sees a
/// value over the limit or a write its [`Capabilities`](crate::Capabilities)
/// declare off, and never checks for them itself. Callers do not build it
/// either: [`CredentialStoreExt::set_opts`](crate::CredentialStoreExt::set_opts)
/// and its shorthands do. A layer passes the request it got to its inner
/// store as it is.
///
/// `Debug` redacts the value.
///
/// ```
/// use credstore_core::{Capabilities, CredentialKey, Metadata, SecretValue, SetOptions, StoreId, StoreInfo, StoreKind, WriteRequest};
/// let info = StoreInfo::new(StoreId::new("s")?, StoreKind::from_static("memory"), Capabilities::full().with_binary(false));
/// let key = CredentialKey::new("k")?;
/// let (text, bytes) = (SecretValue::from("v"), SecretValue::from(vec![0xff]));
/// assert!(WriteRequest::new(&info, &key, &text, &Metadata::new(), &SetOptions::new()).is_ok());
/// assert!(WriteRequest::new(&info, &key, &bytes, &Metadata::new(), &SetOptions::new()).is_err());
/// # Ok::<(), credstore_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct WriteRequest<'a> {
    key: &'a CredentialKey,
    value: &'a SecretValue,
    metadata: &'a Metadata,
    mode: &'a SetMode,
    expires_at: Option<SystemTime>,
}

impl<'a> WriteRequest<'a> {
    /// Checks a write for the store `store` describes and wraps it.
    ///
    /// # Errors
    /// - [`Error::InvalidInput`] on field `value`, naming the key and the
    ///   store, when the value is over [`MAX_VALUE_BYTES`](crate::MAX_VALUE_BYTES);
    /// - [`Error::Unsupported`] for a binary value, non-empty metadata, an
    ///   expiry time or a conditional mode the store's capabilities declare
    ///   off;
    /// - [`Error::InvalidInput`] on field `expires_at` when it is not later
    ///   than the store's [`clock`](crate::StoreInfo::clock): a credential
    ///   that would be written already expired. A mode added
    ///   in a later version comes with a capability of its own, off unless
    ///   declared, so a backend never receives a mode it does not know.
    pub fn new(
        store: &StoreInfo,
        key: &'a CredentialKey,
        value: &'a SecretValue,
        metadata: &'a Metadata,
        options: &'a SetOptions,
    ) -> Result<Self> {
        crate::check_value(value).map_err(|e| match e {
            Error::InvalidInput { field, reason } => {
                let reason = format!("{reason}, for key '{key}' in credential store '{}'", store.id());
                Error::InvalidInput { field, reason }
            }
            other => other,
        })?;
        let caps = store.capabilities();
        let id = store.id();
        if !value.is_text() && !caps.binary {
            return Err(Error::unsupported(id, "binary values"));
        }
        if !metadata.is_empty() && !caps.metadata {
            return Err(Error::unsupported(id, "metadata"));
        }
        match options.mode {
            SetMode::Create if !caps.create_only => return Err(Error::unsupported(id, "create-only writes")),
            SetMode::Replace(_) if !caps.replace_if_version => {
                return Err(Error::unsupported(id, "replace-if-version writes"));
            }
            _ => {}
        }
        if let Some(expires_at) = options.expires_at {
            if !caps.expiry {
                return Err(Error::unsupported(id, "expiring credentials"));
            }
            if expires_at <= store.now() {
                return Err(Error::InvalidInput {
                    field: "expires_at".into(),
                    reason: format!(
                        "is not in the future of credential store '{id}': the credential '{key}' would be written expired"
                    ),
                });
            }
        }
        Ok(Self { key, value, metadata, mode: &options.mode, expires_at: options.expires_at })
    }

    /// The key written.
    pub fn key(&self) -> &'a CredentialKey {
        self.key
    }

    /// The value, within the size limit; binary only where the store
    /// declares [`binary`](crate::Capabilities::binary).
    pub fn value(&self) -> &'a SecretValue {
        self.value
    }

    /// The metadata; empty unless the store declares
    /// [`metadata`](crate::Capabilities::metadata).
    pub fn metadata(&self) -> &'a Metadata {
        self.metadata
    }

    /// The write's condition; one the store declares.
    pub fn mode(&self) -> &'a SetMode {
        self.mode
    }

    /// When the credential expires; `None` unless the store declares
    /// [`expiry`](crate::Capabilities::expiry), and then later than the
    /// store's clock when the request was checked.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }
}
