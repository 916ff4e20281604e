//! The [`CredentialStore`] trait and the types its methods take and return.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Serialize, Serializer};

use crate::{
    Availability, Capabilities, CredentialKey, Error, Metadata, Namespace, Result, SecretValue, StoreId,
    Version,
};

/// Which backend a store is. Serialized as the `type` of the
/// Credential Stores API: `memory`, `encrypted-sqlite`, `aws-secrets-manager`,
/// `vault`, `keychain`, or a custom backend's own name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreKind {
    /// `credstore-memory`.
    Memory,
    /// `credstore-sqlite`.
    EncryptedSqlite,
    /// `credstore-aws`.
    AwsSecretsManager,
    /// `credstore-vault` (HashiCorp Vault or OpenBao).
    Vault,
    /// `credstore-keychain` (the operating system's credential store).
    Keychain,
    /// A backend outside this workspace, by its own name.
    Custom(Cow<'static, str>),
}

impl StoreKind {
    /// The kind's name as the API spells it.
    pub fn as_str(&self) -> &str {
        match self {
            StoreKind::Memory => "memory",
            StoreKind::EncryptedSqlite => "encrypted-sqlite",
            StoreKind::AwsSecretsManager => "aws-secrets-manager",
            StoreKind::Vault => "vault",
            StoreKind::Keychain => "keychain",
            StoreKind::Custom(name) => name,
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for StoreKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A stored credential, as returned by [`CredentialStore::get`].
///
/// `Debug` shows the key, metadata, version and times; the value is redacted.
#[derive(Clone)]
pub struct Credential {
    /// The credential's key.
    pub key: CredentialKey,
    /// The secret value, text or bytes.
    pub value: SecretValue,
    /// The metadata given with the last write.
    pub metadata: Metadata,
    /// The version of the last write; changes on every write.
    pub version: Version,
    /// When the key was first set (kept when it is overwritten; reset when it
    /// is deleted and set again).
    pub created_at: SystemTime,
    /// When the key was last set.
    pub updated_at: SystemTime,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("key", &self.key)
            .field("value", &self.value)
            .field("metadata", &self.metadata)
            .field("version", &self.version)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// What a successful write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetOutcome {
    /// True when the key did not exist before.
    pub created: bool,
    /// The version this write made; a later [`CredentialStore::get`] returns
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
    /// ([`Capabilities::create_only`]).
    Create,
    /// Overwrite the key only if its current version is this one
    /// ([`Capabilities::replace_if_version`]). A missing key fails the
    /// condition.
    Replace(Version),
}

/// Options of [`CredentialStore::set_opts`].
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
}

impl SetOptions {
    /// An unconditional write (upsert).
    pub fn new() -> Self {
        Self::default()
    }

    /// A write that creates the key only if it is absent.
    pub fn create_only() -> Self {
        Self { mode: SetMode::Create }
    }

    /// A write that replaces the key only at `version`.
    pub fn replace(version: Version) -> Self {
        Self { mode: SetMode::Replace(version) }
    }

    /// Returns a copy with `mode`.
    pub fn with_mode(mut self, mode: SetMode) -> Self {
        self.mode = mode;
        self
    }
}

/// The checks every backend makes first in [`CredentialStore::set_opts`],
/// before any I/O: the value's size, and that the store supports what the
/// write asks for (a binary value, metadata, the write's mode).
///
/// # Errors
/// [`Error::InvalidInput`] on field `value` when it is over
/// [`MAX_VALUE_BYTES`](crate::MAX_VALUE_BYTES); [`Error::Unsupported`] for a
/// binary value, non-empty metadata or a conditional mode the store's
/// [`Capabilities`] declare off.
pub fn check_set(
    store: &dyn CredentialStore,
    value: &SecretValue,
    metadata: &Metadata,
    options: &SetOptions,
) -> Result<()> {
    crate::check_value(value)?;
    let caps = store.capabilities();
    if !value.is_text() && !caps.binary {
        return Err(Error::unsupported(store.id(), "binary values"));
    }
    if !metadata.is_empty() && !caps.metadata {
        return Err(Error::unsupported(store.id(), "metadata"));
    }
    match options.mode {
        SetMode::Create if !caps.create_only => Err(Error::unsupported(store.id(), "create-only writes")),
        SetMode::Replace(_) if !caps.replace_if_version => {
            Err(Error::unsupported(store.id(), "replace-if-version writes"))
        }
        _ => Ok(()),
    }
}

/// The default number of keys in one page of [`CredentialStore::list`].
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest page [`CredentialStore::list`] returns.
pub const MAX_PAGE_SIZE: usize = 1000;

/// An opaque position in a listing, returned as [`ListPage::next_cursor`] and
/// passed back through [`ListOptions::with_cursor`] to get the next page.
///
/// Every backend in this workspace lists in key order, so a cursor stands for
/// "after this key"; clients should treat its text as opaque all the same.
#[derive(Clone, PartialEq, Eq)]
pub struct ListCursor(CredentialKey);

const CURSOR_TAG: &str = "c1";

impl ListCursor {
    /// A cursor that resumes after `key`.
    pub fn after(key: &CredentialKey) -> Self {
        Self(key.clone())
    }

    /// Parses a cursor from the text [`ListCursor`]'s `Display` produced.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `cursor` when the text is not one.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || Error::InvalidInput {
            field: "cursor".into(),
            reason: "is not a cursor returned by list".into(),
        };
        let hex = text.strip_prefix(CURSOR_TAG).ok_or_else(bad)?;
        if hex.len() % 2 != 0 || hex.len() > 2 * crate::MAX_ID_LEN {
            return Err(bad());
        }
        let bytes: Option<Vec<u8>> = (0..hex.len())
            .step_by(2)
            .map(|i| hex.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect();
        let s = String::from_utf8(bytes.ok_or_else(bad)?).map_err(|_| bad())?;
        CredentialKey::new(s).map(Self).map_err(|_| bad())
    }

    /// The key this cursor resumes after.
    pub fn start_after(&self) -> &CredentialKey {
        &self.0
    }
}

impl fmt::Debug for ListCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ListCursor({self})")
    }
}

/// The cursor's opaque text, to hand to a client.
impl fmt::Display for ListCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(CURSOR_TAG)?;
        self.0.as_str().bytes().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// What [`CredentialStore::list`] returns: validated, so a backend can use
/// every field without checking it.
///
/// ```
/// use credstore_core::ListOptions;
/// let opts = ListOptions::new().with_prefix("db.")?.with_limit(50)?;
/// assert_eq!(opts.prefix(), "db.");
/// assert!(ListOptions::new().with_prefix("a/b").is_err());
/// # Ok::<(), credstore_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListOptions {
    prefix: String,
    cursor: Option<ListCursor>,
    limit: usize,
}

impl Default for ListOptions {
    fn default() -> Self {
        Self { prefix: String::new(), cursor: None, limit: DEFAULT_PAGE_SIZE }
    }
}

impl ListOptions {
    /// The first page of every key, [`DEFAULT_PAGE_SIZE`] at a time.
    pub fn new() -> Self {
        Self::default()
    }

    /// Only keys that start with `prefix`. An empty prefix matches every key.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `prefix` when it holds a character no
    /// key can hold or is longer than a key.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Result<Self> {
        let prefix = prefix.into();
        if !prefix.is_empty() {
            crate::validate_id(&prefix)
                .map_err(|e| Error::InvalidInput { field: "prefix".into(), reason: e.to_string() })?;
        }
        self.prefix = prefix;
        Ok(self)
    }

    /// Resume after the page that returned `cursor`.
    pub fn with_cursor(mut self, cursor: Option<ListCursor>) -> Self {
        self.cursor = cursor;
        self
    }

    /// At most `limit` keys per page.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `limit` unless `1 <= limit <= MAX_PAGE_SIZE`.
    pub fn with_limit(mut self, limit: usize) -> Result<Self> {
        if !(1..=MAX_PAGE_SIZE).contains(&limit) {
            return Err(Error::InvalidInput {
                field: "limit".into(),
                reason: format!("is {limit}; it must be between 1 and {MAX_PAGE_SIZE}"),
            });
        }
        self.limit = limit;
        Ok(self)
    }

    /// The prefix keys must start with; empty for all keys.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The cursor to resume after, if any.
    pub fn cursor(&self) -> Option<&ListCursor> {
        self.cursor.as_ref()
    }

    /// The largest number of keys to return.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Whether `key` belongs in a listing with these options, ignoring the
    /// page size: it has the prefix and sorts after the cursor.
    pub fn admits(&self, key: &str) -> bool {
        key.starts_with(&self.prefix) && self.cursor.as_ref().is_none_or(|c| key > c.start_after().as_str())
    }

    /// Builds one page from keys sorted in ascending order, for backends that
    /// fetch all matching keys at once (Vault's LIST, AWS's ListSecrets). Keys
    /// outside the prefix or before the cursor are skipped.
    pub fn page_from_sorted<I>(&self, sorted: I) -> ListPage
    where
        I: IntoIterator<Item = CredentialKey>,
    {
        let mut keys: Vec<CredentialKey> = Vec::new();
        let mut more = false;
        for key in sorted.into_iter().filter(|k| self.admits(k.as_str())) {
            if keys.len() == self.limit {
                more = true;
                break;
            }
            keys.push(key);
        }
        let next_cursor = if more { keys.last().map(ListCursor::after) } else { None };
        ListPage { keys, next_cursor }
    }
}

/// One page of keys from [`CredentialStore::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// Keys in ascending byte order.
    pub keys: Vec<CredentialKey>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<ListCursor>,
}

/// A place that keeps credentials: the one trait every backend implements.
///
/// The trait is object safe: stores are passed around as
/// `Arc<dyn CredentialStore>`. Every method that takes input receives it
/// already validated ([`CredentialKey`], [`Namespace`], [`Metadata`],
/// [`ListOptions`], [`Version`]); a backend's own checks are [`check_set`],
/// first in [`set_opts`](CredentialStore::set_opts), before any I/O.
///
/// A wrapper implements the required methods and forwards; the provided
/// ones ([`set`](CredentialStore::set), [`create`](CredentialStore::create),
/// [`replace`](CredentialStore::replace), [`has`](CredentialStore::has),
/// [`version`](CredentialStore::version)) reach the wrapped store through
/// them. Backends override `has` and `version` where they can answer without
/// reading the value.
///
/// # Errors
/// Every fallible method may return [`Error::Unavailable`] (retriable) when the
/// backend cannot be reached in time, [`Error::PermissionDenied`] when it
/// refuses the caller, and [`Error::Backend`] for anything else. Method docs
/// list the errors specific to them. A failed call changes nothing already
/// stored.
///
/// ```
/// use credstore_core::{CredentialKey, CredentialStore, Error, Metadata, SecretValue};
///
/// async fn rotate(store: &dyn CredentialStore, new_token: String) -> credstore_core::Result<()> {
///     let key = CredentialKey::new("github-token")?;
///     let current = store.get(&key).await?.expect("provisioned");
///     // Replace only the version we read: a concurrent rotation wins or we do, never both.
///     match store.replace(&key, &SecretValue::from(new_token), &current.metadata, &current.version).await {
///         Ok(_) => Ok(()),
///         Err(Error::PreconditionFailed { .. }) => Ok(()), // someone else rotated first
///         Err(e) => Err(e),
///     }
/// }
/// ```
#[async_trait]
pub trait CredentialStore: Send + Sync + fmt::Debug {
    /// The store's id, unique within a [`crate::StoreRegistry`]. Handles on
    /// namespaces of one store share its id.
    fn id(&self) -> &StoreId;

    /// Which backend this is.
    fn kind(&self) -> StoreKind;

    /// What this store supports. The same for every namespace handle.
    fn capabilities(&self) -> Capabilities;

    /// The namespace this handle reads and writes; the root for a store as
    /// opened.
    fn namespace(&self) -> &Namespace;

    /// A handle on the namespace `namespace` inside this handle's own: the
    /// handle on `a` asked for `b` is the handle on `a/b`. Same id, kind and
    /// capabilities; separate keys.
    ///
    /// # Behavior
    /// - Two handles on different namespaces never see each other's keys,
    ///   in `get`, `has`, `list` or `delete`; two handles on the same
    ///   namespace share them.
    /// - Makes no I/O; an empty namespace (the root) returns a handle on
    ///   this handle's own namespace.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`] when the joined namespace is longer than
    /// [`MAX_NAMESPACE_LEN`](crate::MAX_NAMESPACE_LEN) or than the backend's
    /// own documented cap.
    fn with_namespace(&self, namespace: &Namespace) -> Result<Arc<dyn CredentialStore>>;

    /// Reads a credential.
    ///
    /// # Behavior
    /// - A missing key returns `Ok(None)`, not an error.
    /// - The value, metadata, version and both timestamps come back exactly
    ///   as the last write left them.
    ///
    /// # Errors
    /// [`Error::Integrity`] when the stored data fails authentication; no
    /// value is returned then.
    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>>;

    /// Writes a credential under the condition in `options`: the one write
    /// method a backend implements.
    ///
    /// # Behavior
    /// - [`SetMode::Upsert`] creates the key or overwrites it;
    ///   [`SetMode::Create`] only creates; [`SetMode::Replace`] only
    ///   overwrites the given version. Conditional modes are atomic: of any
    ///   number of racing conditional writes, exactly the ones whose
    ///   condition held when they ran succeed.
    /// - Overwriting replaces the value and the whole metadata and keeps
    ///   `created_at`; `updated_at` becomes the time of this write; the
    ///   version changes.
    /// - Once this returns `Ok`, the write is as durable as
    ///   [`Capabilities::persistence`] says.
    /// - Concurrent writers to one key leave one of the written values with
    ///   its own metadata, never a mix.
    ///
    /// # Errors
    /// - Before any I/O, from [`check_set`]: [`Error::InvalidInput`] when the
    ///   value is over [`MAX_VALUE_BYTES`](crate::MAX_VALUE_BYTES);
    ///   [`Error::Unsupported`] for a binary value, non-empty metadata or a
    ///   conditional mode the store declares off.
    /// - [`Error::PreconditionFailed`] when the condition does not hold: the
    ///   key exists (`Create`), or is missing or at another version
    ///   (`Replace`). Not retriable.
    /// - On any error the previous value, metadata and version are unchanged.
    async fn set_opts(
        &self,
        key: &CredentialKey,
        value: &SecretValue,
        metadata: &Metadata,
        options: &SetOptions,
    ) -> Result<SetOutcome>;

    /// Creates or overwrites a credential: [`set_opts`](CredentialStore::set_opts)
    /// with [`SetMode::Upsert`].
    ///
    /// # Errors
    /// As for `set_opts`, less the precondition.
    async fn set(&self, key: &CredentialKey, value: &SecretValue, metadata: &Metadata) -> Result<SetOutcome> {
        self.set_opts(key, value, metadata, &SetOptions::new()).await
    }

    /// Creates a credential only if the key is absent:
    /// [`set_opts`](CredentialStore::set_opts) with [`SetMode::Create`].
    ///
    /// # Errors
    /// As for `set_opts`; [`Error::PreconditionFailed`] when the key exists.
    async fn create(
        &self,
        key: &CredentialKey,
        value: &SecretValue,
        metadata: &Metadata,
    ) -> Result<SetOutcome> {
        self.set_opts(key, value, metadata, &SetOptions::create_only()).await
    }

    /// Overwrites a credential only at `version`:
    /// [`set_opts`](CredentialStore::set_opts) with [`SetMode::Replace`].
    ///
    /// # Errors
    /// As for `set_opts`; [`Error::PreconditionFailed`] when the key is
    /// missing or at another version.
    async fn replace(
        &self,
        key: &CredentialKey,
        value: &SecretValue,
        metadata: &Metadata,
        version: &Version,
    ) -> Result<SetOutcome> {
        self.set_opts(key, value, metadata, &SetOptions::replace(version.clone())).await
    }

    /// Whether the key exists.
    ///
    /// # Behavior
    /// The provided method reads the credential; backends override it where
    /// they can answer without reading the value.
    ///
    /// # Errors
    /// The common errors only.
    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        Ok(self.get(key).await?.is_some())
    }

    /// The current version of a credential, `None` when it is missing: what
    /// a cache asks to revalidate what it holds.
    ///
    /// # Behavior
    /// The provided method reads the credential; backends override it where
    /// they can answer without reading the value.
    ///
    /// # Errors
    /// As for [`get`](CredentialStore::get).
    async fn version(&self, key: &CredentialKey) -> Result<Option<Version>> {
        Ok(self.get(key).await?.map(|c| c.version))
    }

    /// Deletes a credential, value and metadata.
    ///
    /// # Behavior
    /// - Returns `true` when the key existed, `false` when it did not:
    ///   deleting a missing key is not an error.
    /// - A deleted key is gone from `get`, `has` and `list`, and can be set
    ///   again at once, with a new `created_at` (a create-only write then
    ///   succeeds).
    ///
    /// # Errors
    /// The common errors only.
    async fn delete(&self, key: &CredentialKey) -> Result<bool>;

    /// Lists keys (never values) in ascending order, one page at a time.
    ///
    /// # Behavior
    /// - Only keys of this handle's namespace starting with
    ///   `options.prefix()`; never keys of a nested namespace.
    /// - Following `next_cursor` until it is `None` yields every key present
    ///   throughout the listing exactly once.
    ///
    /// # Errors
    /// [`Error::Unsupported`] when [`Capabilities::list`] is false.
    async fn list(&self, options: &ListOptions) -> Result<ListPage>;

    /// Probes whether the store can serve requests.
    ///
    /// # Behavior
    /// Never fails and never hangs: a probe that cannot finish within the
    /// backend's own timeout answers `available: false` with a reason. A
    /// [`crate::StoreRegistry`] adds an outer timeout of its own.
    async fn check_availability(&self) -> Availability;
}
