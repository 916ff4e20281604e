//! The [`CredentialStore`] trait and the types its methods take and return.

use std::borrow::Cow;
use std::fmt;
use std::time::SystemTime;

use async_trait::async_trait;
use serde::{Serialize, Serializer};

use crate::{Availability, Capabilities, CredentialKey, Error, Metadata, Result, SecretValue, StoreId};

/// Which backend a store is. Serialized as the `type` of the
/// credential-stores API: `memory`, `encrypted-sqlite`, `aws-secrets-manager`,
/// `vault`, or a custom backend's own name.
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
/// `Debug` shows the key, metadata and times; the value is redacted.
#[derive(Clone)]
pub struct Credential {
    /// The credential's key.
    pub key: CredentialKey,
    /// The secret value.
    pub value: SecretValue,
    /// The metadata given with the last `set`.
    pub metadata: Metadata,
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
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// What a successful [`CredentialStore::set`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetOutcome {
    /// True when the key did not exist before.
    pub created: bool,
    /// When the key was first set.
    pub created_at: SystemTime,
    /// When this write happened.
    pub updated_at: SystemTime,
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
/// already validated ([`CredentialKey`], [`Metadata`], [`ListOptions`]); the
/// value's size is the one check a backend makes itself, with
/// [`check_value`](crate::check_value), before any I/O.
///
/// # Errors
/// Every fallible method may return [`Error::Unavailable`] (retriable) when the
/// backend cannot be reached in time, [`Error::PermissionDenied`] when it
/// refuses the caller, and [`Error::Backend`] for anything else. Method docs
/// list the errors specific to them. A failed call changes nothing already
/// stored.
///
/// ```
/// use credstore_core::{CredentialKey, CredentialStore, Metadata, SecretValue};
///
/// async fn rotate(store: &dyn CredentialStore, new_token: String) -> credstore_core::Result<()> {
///     let key = CredentialKey::new("github-token")?;
///     let mut meta = Metadata::new();
///     meta.insert("rotated-by", "ci")?;
///     store.set(&key, &SecretValue::from(new_token), &meta).await?;
///     assert!(store.has(&key).await?);
///     Ok(())
/// }
/// ```
#[async_trait]
pub trait CredentialStore: Send + Sync + fmt::Debug {
    /// The store's id, unique within a [`crate::StoreRegistry`].
    fn id(&self) -> &StoreId;

    /// Which backend this is.
    fn kind(&self) -> StoreKind;

    /// What this store supports.
    fn capabilities(&self) -> Capabilities;

    /// Reads a credential.
    ///
    /// # Behavior
    /// - A missing key returns `Ok(None)`, not an error.
    /// - The value, metadata and both timestamps come back exactly as the
    ///   last `set` left them.
    ///
    /// # Errors
    /// [`Error::Integrity`] when the stored data fails authentication; no
    /// value is returned then.
    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>>;

    /// Creates or overwrites a credential with `value` and `metadata`.
    ///
    /// # Behavior
    /// - Overwriting replaces the value and the whole metadata and keeps
    ///   `created_at`; `updated_at` becomes the time of this write.
    /// - Once this returns `Ok`, the write is durable to the degree the
    ///   backend promises (see [`Capabilities::persistent`]).
    /// - Concurrent writers to one key leave one of the written values,
    ///   never a mix.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when the value is over
    /// [`MAX_VALUE_BYTES`](crate::MAX_VALUE_BYTES), before any I/O;
    /// [`Error::Unsupported`] for non-empty metadata when
    /// [`Capabilities::metadata`] is false. On any error the previous value,
    /// if any, is unchanged.
    async fn set(&self, key: &CredentialKey, value: &SecretValue, metadata: &Metadata) -> Result<SetOutcome>;

    /// Whether the key exists.
    ///
    /// # Behavior
    /// Does not read the value where the backend can avoid it.
    ///
    /// # Errors
    /// The common errors only.
    async fn has(&self, key: &CredentialKey) -> Result<bool>;

    /// Deletes a credential, value and metadata.
    ///
    /// # Behavior
    /// - Returns `true` when the key existed, `false` when it did not:
    ///   deleting a missing key is not an error.
    /// - A deleted key is gone from `get`, `has` and `list`, and can be set
    ///   again at once, with a new `created_at`.
    ///
    /// # Errors
    /// The common errors only.
    async fn delete(&self, key: &CredentialKey) -> Result<bool>;

    /// Lists keys (never values) in ascending order, one page at a time.
    ///
    /// # Behavior
    /// - Only keys starting with `options.prefix()`.
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
