//! The types of [`CredentialStore::list`](crate::CredentialStore::list): what it takes
//! ([`ListOptions`]) and what it returns ([`ListPage`], [`ListCursor`]).

use std::fmt;

use crate::{CredentialKey, Error, Result};

/// The default number of keys in one page of [`CredentialStore::list`](crate::CredentialStore::list).
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// The largest page [`CredentialStore::list`](crate::CredentialStore::list) returns.
pub const MAX_PAGE_SIZE: usize = 1000;

/// Checks a page size: `1 <= limit <= MAX_PAGE_SIZE`, else
/// [`Error::InvalidInput`] on field `limit`.
pub(crate) fn check_page_size(limit: usize) -> Result<usize> {
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(Error::InvalidInput {
            field: "limit".into(),
            reason: format!("is {limit}; it must be between 1 and {MAX_PAGE_SIZE}"),
        });
    }
    Ok(limit)
}

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

/// What [`CredentialStore::list`](crate::CredentialStore::list) takes: validated, so a backend can use
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
        self.limit = check_page_size(limit)?;
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

/// One page of keys from [`CredentialStore::list`](crate::CredentialStore::list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListPage {
    /// Keys in ascending byte order.
    pub keys: Vec<CredentialKey>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<ListCursor>,
}
