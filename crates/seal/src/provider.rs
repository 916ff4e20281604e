//! [`KeyProvider`]: where a store's key-encryption key (KEK) lives, and the
//! two calls a store makes to it.

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use credstore_core::{Error, Result, StoreId};

use crate::{DataKey, StoreUid};

/// The most bytes a wrapped data key may take: far more than any provider
/// needs (an AWS KMS ciphertext blob is under 300), and small enough that a
/// crafted key record cannot make a store allocate without bound.
pub const MAX_WRAPPED_LEN: usize = 16 * 1024;

/// A data key wrapped by a [`KeyProvider`]: opaque bytes only that provider
/// can unwrap (a ciphertext, never the key). Stored in the store's key
/// record.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey(Vec<u8>);

impl WrappedKey {
    /// Wraps `bytes` as a provider returned them.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `wrapped_key` when `bytes` is empty
    /// or longer than [`MAX_WRAPPED_LEN`].
    pub fn new(bytes: Vec<u8>) -> Result<Self> {
        if bytes.is_empty() || bytes.len() > MAX_WRAPPED_LEN {
            return Err(Error::InvalidInput {
                field: "wrapped_key".into(),
                reason: format!("is {} bytes; a wrapped key is 1 to {MAX_WRAPPED_LEN}", bytes.len()),
            });
        }
        Ok(Self(bytes))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for WrappedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WrappedKey({} bytes)", self.0.len())
    }
}

/// What a data key is wrapped for: the store, its [`StoreUid`] and the data
/// key's version. A provider binds the uid and the version to the wrapping
/// (as associated data, or an encryption context), so a key record copied
/// into another store, or given another version, does not unwrap.
#[derive(Debug, Clone, Copy)]
pub struct WrapContext<'a> {
    store: &'a StoreId,
    uid: StoreUid,
    key_version: u32,
}

/// The domain separating a data key's associated data from any other use
/// of the same key-encryption key.
const WRAP_DOMAIN: &[u8] = b"credstore/data-key\0";

impl<'a> WrapContext<'a> {
    /// The context of version `key_version` of the data key of the store
    /// `store` whose uid is `uid`.
    pub fn new(store: &'a StoreId, uid: StoreUid, key_version: u32) -> Self {
        Self { store, uid, key_version }
    }

    /// The store, for errors.
    pub fn store(&self) -> &'a StoreId {
        self.store
    }

    /// The store's uid.
    pub fn uid(&self) -> StoreUid {
        self.uid
    }

    /// The data key's version: 1 for a new store, one more at each data key
    /// rotation.
    pub fn key_version(&self) -> u32 {
        self.key_version
    }

    /// The bytes a provider binds as associated data:
    /// `credstore/data-key\0`, the uid (16 bytes), the key version (u32 BE).
    pub fn associated_data(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(WRAP_DOMAIN.len() + 20);
        out.extend_from_slice(WRAP_DOMAIN);
        out.extend_from_slice(self.uid.as_bytes());
        out.extend_from_slice(&self.key_version.to_be_bytes());
        out
    }

    /// The same binding as name and value pairs, for services that take an
    /// encryption context (AWS KMS): `credstore-store-uid` (hex) and
    /// `credstore-key-version` (decimal).
    pub fn pairs(&self) -> [(&'static str, String); 2] {
        [("credstore-store-uid", self.uid.to_hex()), ("credstore-key-version", self.key_version.to_string())]
    }
}

/// Where a key-encryption key lives, seen from the machine that holds the
/// data: what the server's start-up warning looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyLocation {
    /// In this file on this machine.
    File(PathBuf),
    /// In this process's environment, under this variable.
    Environment(String),
    /// Derived from a passphrase; the passphrase's own place is the caller's.
    Passphrase,
    /// In the operating system's keychain of this machine.
    Keychain,
    /// In a service that never hands it out (a KMS, Vault's Transit).
    Remote,
    /// Given in code; nothing is known of where it came from.
    Unknown,
}

/// What a [`KeyProvider`] is: its kind (`master-key`, `passphrase`,
/// `keychain`, `aws-kms`, `vault-transit`, or a custom provider's), the key
/// it names (a file, a key id, a Transit key: never key material) and
/// where that key lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInfo {
    kind: Cow<'static, str>,
    key_ref: String,
    location: KeyLocation,
}

impl ProviderInfo {
    /// The info of a provider of `kind` naming the key `key_ref`, kept at
    /// `location`.
    pub fn new(
        kind: impl Into<Cow<'static, str>>,
        key_ref: impl Into<String>,
        location: KeyLocation,
    ) -> Self {
        Self { kind: kind.into(), key_ref: key_ref.into(), location }
    }

    /// [`ProviderInfo::new`] for a `static`: no key named.
    pub const fn from_static(kind: &'static str, location: KeyLocation) -> Self {
        Self { kind: Cow::Borrowed(kind), key_ref: String::new(), location }
    }

    /// The provider's kind, recorded beside the wrapped key: a store opened
    /// with a provider of another kind says which kind wrapped it.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The key it names, for messages (may be empty).
    pub fn key_ref(&self) -> &str {
        &self.key_ref
    }

    /// Where the key lives.
    pub fn location(&self) -> &KeyLocation {
        &self.location
    }
}

impl fmt::Display for ProviderInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key_ref.is_empty() {
            f.write_str(&self.kind)
        } else {
            write!(f, "{} {}", self.kind, self.key_ref)
        }
    }
}

/// A key-encryption key (KEK): wraps a store's [`DataKey`] for its key
/// record, and unwraps it when the store opens. A store calls it once at
/// open (and at a rotation), never per read or write.
///
/// Implementations: [`MasterKey`](crate::MasterKey) (a local key or a
/// passphrase) in this crate; the OS keychain in `credstore-keychain`, AWS
/// KMS in `credstore-aws` and Vault / OpenBao Transit in `credstore-vault`.
/// A custom provider implements the three methods under `#[async_trait]`.
///
/// # Errors, for every method
/// Errors name [`WrapContext::store`]:
/// - [`Error::Unavailable`] when the provider cannot be reached or timed
///   out (retriable: a store left unavailable by it is tried again);
/// - [`Error::PermissionDenied`] when it refuses this caller;
/// - [`Error::Config`] when its key does not exist, is disabled, or is not
///   the key that wrapped the data key ([`wrong_key`]);
/// - [`Error::Backend`] for anything else.
///
/// No error carries key material.
#[async_trait]
pub trait KeyProvider: fmt::Debug + Send + Sync {
    /// The provider's kind, key and location.
    fn info(&self) -> &ProviderInfo;

    /// Wraps `key` under the KEK, bound to `context`.
    ///
    /// # Errors
    /// As the trait's.
    async fn wrap(&self, key: &DataKey, context: &WrapContext<'_>) -> Result<WrappedKey>;

    /// Unwraps what [`KeyProvider::wrap`] returned for the same `context`.
    ///
    /// # Errors
    /// As the trait's; a `wrapped` this KEK did not wrap, or wrapped for
    /// another context (another store, another key version), is
    /// [`wrong_key`].
    async fn unwrap(&self, wrapped: &WrappedKey, context: &WrapContext<'_>) -> Result<DataKey>;
}

#[async_trait]
impl<T: KeyProvider + ?Sized> KeyProvider for Arc<T> {
    fn info(&self) -> &ProviderInfo {
        (**self).info()
    }

    async fn wrap(&self, key: &DataKey, context: &WrapContext<'_>) -> Result<WrappedKey> {
        (**self).wrap(key, context).await
    }

    async fn unwrap(&self, wrapped: &WrappedKey, context: &WrapContext<'_>) -> Result<DataKey> {
        (**self).unwrap(wrapped, context).await
    }
}

/// The error for a wrapped data key that `provider`'s key did not wrap for
/// this store: an [`Error::Config`] whose message starts with
/// `wrong key-encryption key`, naming the provider and `detail`.
pub fn wrong_key(context: &WrapContext<'_>, provider: &ProviderInfo, detail: impl fmt::Display) -> Error {
    Error::config(
        context.store(),
        format!(
            "wrong key-encryption key: {provider} does not unwrap the data key of this store ({detail}); nothing \
             was changed"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrap_context_binds_uid_and_version() {
        let store = StoreId::new("s").unwrap();
        let uid = StoreUid::from_bytes([7; 16]);
        let a = WrapContext::new(&store, uid, 1).associated_data();
        assert!(a.starts_with(WRAP_DOMAIN));
        assert_ne!(a, WrapContext::new(&store, uid, 2).associated_data());
        assert_ne!(a, WrapContext::new(&store, StoreUid::from_bytes([8; 16]), 1).associated_data());
        let pairs = WrapContext::new(&store, uid, 3).pairs();
        assert_eq!(pairs[1], ("credstore-key-version", "3".to_owned()));
    }

    #[test]
    fn wrapped_keys_are_bounded_and_never_printed() {
        assert!(WrappedKey::new(Vec::new()).is_err());
        assert!(WrappedKey::new(vec![0; MAX_WRAPPED_LEN + 1]).is_err());
        assert_eq!(format!("{:?}", WrappedKey::new(vec![1; 60]).unwrap()), "WrappedKey(60 bytes)");
    }
}
