//! The types of a key's history: [`VersionInfo`] and [`VersionState`] (one
//! kept version), [`VersionListOptions`] and [`VersionPage`] (what
//! [`CredentialStore::list_versions`](crate::CredentialStore::list_versions)
//! takes and returns), [`Retention`] (how much history a store keeps) and
//! [`PurgeTarget`] (what a purge destroys).
//!
//! How the four things people need from a history are done is in the
//! trait's docs, under "History".

use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::{Metadata, Result, Version, DEFAULT_PAGE_SIZE};

/// How much history a store keeps: declared in
/// [`Capabilities::retention`](crate::Capabilities::retention), set from the
/// store's configuration where the backend lets it be set.
///
/// A version is kept while both limits allow it; the current version is
/// always kept. Versions past the retention are gone for good, as if purged.
///
/// ```
/// use std::time::Duration;
/// use credstore_core::Retention;
/// let r = Retention::versions(10).with_max_age(Some(Duration::from_secs(30 * 86_400)));
/// assert_eq!((r.max_versions, r.max_age), (Some(10), Some(Duration::from_secs(2_592_000))));
/// assert_eq!(Retention::NONE.max_versions, Some(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Retention {
    /// The most versions of one key kept, the current one included; `None`
    /// for no limit. `Some(1)` keeps no history.
    pub max_versions: Option<u32>,
    /// How long a version is kept once it stopped being current (it was
    /// overwritten or deleted), by the store's [`Clock`](crate::Clock);
    /// `None` for no limit.
    #[serde(serialize_with = "serialize_secs")]
    pub max_age: Option<Duration>,
}

fn serialize_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs()),
        None => s.serialize_none(),
    }
}

impl Retention {
    /// No history: only the current version is kept. What a store without
    /// [`Capabilities::versions`](crate::Capabilities::versions) declares.
    pub const NONE: Retention = Retention { max_versions: Some(1), max_age: None };

    /// Every version kept, for ever (until purged).
    pub const UNBOUNDED: Retention = Retention { max_versions: None, max_age: None };

    /// At most `max_versions` versions per key (at least 1), with no age limit.
    pub const fn versions(max_versions: u32) -> Self {
        Retention { max_versions: Some(if max_versions == 0 { 1 } else { max_versions }), max_age: None }
    }

    /// Returns a copy with `max_age`.
    pub const fn with_max_age(mut self, max_age: Option<Duration>) -> Self {
        self.max_age = max_age;
        self
    }

    /// Whether a version that stopped being current at `superseded_at`
    /// is past [`max_age`](Self::max_age) at `now`.
    pub fn is_past_age(&self, superseded_at: SystemTime, now: SystemTime) -> bool {
        self.max_age.is_some_and(|age| now.duration_since(superseded_at).is_ok_and(|held| held >= age))
    }
}

/// Where a kept version stands, as
/// [`CredentialStore::list_versions`](crate::CredentialStore::list_versions)
/// reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum VersionState {
    /// The version `get` returns.
    Current,
    /// An earlier version, overwritten by a later write.
    Previous,
    /// The version that was current when the key was deleted: the one to
    /// restore to recover the key.
    Deleted,
    /// A version whose [`expires_at`](VersionInfo::expires_at) has passed;
    /// when it is the newest, the key reads as absent.
    Expired,
}

impl VersionState {
    /// The state's name in the HTTP API: `current`, `previous`, `deleted`,
    /// `expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Current => "current",
            VersionState::Previous => "previous",
            VersionState::Deleted => "deleted",
            VersionState::Expired => "expired",
        }
    }
}

/// One kept version of a key: its times, metadata and state, never its value
/// (read that with
/// [`get_version`](crate::CredentialStore::get_version)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VersionInfo {
    /// The version.
    pub version: Version,
    /// Where it stands.
    pub state: VersionState,
    /// When this version was written.
    pub written_at: SystemTime,
    /// When it expires (or expired), if the write set a time.
    pub expires_at: Option<SystemTime>,
    /// The metadata written with it.
    pub metadata: Metadata,
}

impl VersionInfo {
    /// A version's entry.
    pub fn new(version: Version, state: VersionState, written_at: SystemTime) -> Self {
        Self { version, state, written_at, expires_at: None, metadata: Metadata::new() }
    }

    /// Returns a copy with `expires_at`.
    pub fn with_expires_at(mut self, expires_at: Option<SystemTime>) -> Self {
        self.expires_at = expires_at;
        self
    }

    /// Returns a copy with `metadata`.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// What [`CredentialStore::list_versions`](crate::CredentialStore::list_versions)
/// takes: the page size and where to resume. Validated.
///
/// ```
/// use credstore_core::{Version, VersionListOptions};
/// let opts = VersionListOptions::new().with_limit(10)?.after(Some(Version::new("7")?));
/// assert_eq!((opts.limit(), opts.start_after().map(|v| v.as_str())), (10, Some("7")));
/// assert!(VersionListOptions::new().with_limit(0).is_err());
/// # Ok::<(), credstore_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionListOptions {
    after: Option<Version>,
    limit: usize,
}

impl Default for VersionListOptions {
    fn default() -> Self {
        Self { after: None, limit: DEFAULT_PAGE_SIZE }
    }
}

impl VersionListOptions {
    /// The newest [`DEFAULT_PAGE_SIZE`] versions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Resume with the versions older than `version` (the last of the page
    /// before: [`VersionPage::next_cursor`]).
    pub fn after(mut self, version: Option<Version>) -> Self {
        self.after = version;
        self
    }

    /// At most `limit` versions per page.
    ///
    /// # Errors
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) on field `limit` unless `1 <= limit <= MAX_PAGE_SIZE`.
    pub fn with_limit(mut self, limit: usize) -> Result<Self> {
        self.limit = crate::list::check_page_size(limit)?;
        Ok(self)
    }

    /// The version to resume after, if any.
    pub fn start_after(&self) -> Option<&Version> {
        self.after.as_ref()
    }

    /// The largest number of versions to return.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Builds one page from every kept version, newest first, for backends
    /// that read a key's whole history at once. A cursor naming a version
    /// not in `newest_first` (purged, or past the retention since) yields an
    /// empty page.
    pub fn page_from_newest<I>(&self, newest_first: I) -> VersionPage
    where
        I: IntoIterator<Item = VersionInfo>,
    {
        let mut iter = newest_first.into_iter();
        if let Some(after) = &self.after {
            if !iter.by_ref().any(|v| &v.version == after) {
                return VersionPage::default();
            }
        }
        let mut versions: Vec<VersionInfo> = iter.by_ref().take(self.limit).collect();
        versions.shrink_to_fit();
        let more = versions.len() == self.limit && iter.next().is_some();
        let next_cursor = if more { versions.last().map(|v| v.version.clone()) } else { None };
        VersionPage { versions, next_cursor }
    }
}

/// One page of a key's versions, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionPage {
    /// Versions, newest first.
    pub versions: Vec<VersionInfo>,
    /// Where the next page starts ([`VersionListOptions::after`]); `None`
    /// on the last page.
    pub next_cursor: Option<Version>,
}

/// What [`CredentialStore::purge`](crate::CredentialStore::purge) destroys.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PurgeTarget {
    /// The key and every version of it: nothing of it stays readable, and
    /// it can be set again as new.
    Key,
    /// One version that is not the current one (a leaked value already
    /// rotated away from): its value is destroyed, the rest of the history
    /// stays.
    Version(Version),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(n: u64) -> VersionInfo {
        VersionInfo::new(Version::from_counter(n), VersionState::Previous, SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn pages_walk_newest_first_and_stop() {
        let all: Vec<VersionInfo> = (1..=5).rev().map(info).collect();
        let opts = VersionListOptions::new().with_limit(2).unwrap();
        let first = opts.page_from_newest(all.clone());
        assert_eq!(first.versions.iter().map(|v| v.version.as_str()).collect::<Vec<_>>(), ["5", "4"]);
        let second = opts.clone().after(first.next_cursor).page_from_newest(all.clone());
        assert_eq!(second.versions.iter().map(|v| v.version.as_str()).collect::<Vec<_>>(), ["3", "2"]);
        let third = opts.clone().after(second.next_cursor).page_from_newest(all.clone());
        assert_eq!(third.versions.len(), 1);
        assert_eq!(third.next_cursor, None);
        let exact = VersionListOptions::new().with_limit(5).unwrap().page_from_newest(all.clone());
        assert_eq!((exact.versions.len(), exact.next_cursor), (5, None));
        let gone = opts.after(Some(Version::from_counter(99))).page_from_newest(all);
        assert!(gone.versions.is_empty() && gone.next_cursor.is_none());
    }

    #[test]
    fn age_is_counted_from_when_a_version_stopped_being_current() {
        let r = Retention::UNBOUNDED.with_max_age(Some(Duration::from_secs(10)));
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert!(!r.is_past_age(t, t + Duration::from_secs(9)));
        assert!(r.is_past_age(t, t + Duration::from_secs(10)));
        assert!(!Retention::UNBOUNDED.is_past_age(t, t + Duration::from_secs(1 << 40)));
        assert_eq!(Retention::versions(0).max_versions, Some(1));
    }
}
