//! [`MemoryStore`]: the `CredentialStore` implementation.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use credstore_core::{
    async_trait, Availability, Capabilities, ChangeFeed, ChangeHub, Credential, CredentialKey,
    CredentialStore, Error, ListCursor, ListOptions, ListPage, Metadata, Namespace, Persistence, PurgeTarget,
    Result, Retention, SecretValue, SetMode, SetOutcome, StoreId, StoreInfo, Version, VersionInfo,
    VersionListOptions, VersionPage, VersionState, WriteRequest,
};

use crate::MemoryConfig;

/// The version of every credential read through from the environment.
pub(crate) const ENV_VERSION: &str = "env";

/// How many unread changes each subscriber of the change feed keeps before
/// it is told it lost some.
const FEED_CAPACITY: usize = 1024;

/// One kept version of a key.
struct Kept {
    /// Made once, at the write: reads hand out clones of it.
    version: Version,
    value: SecretValue,
    metadata: Metadata,
    /// When the key was first set, as of this version.
    created_at: SystemTime,
    /// When this version was written (system time).
    written_at: SystemTime,
    expires_at: Option<SystemTime>,
    /// When it stopped being current (overwritten or deleted), by the
    /// store's clock: what `max_age` is counted from.
    superseded_at: Option<SystemTime>,
    /// It was current when the key was deleted.
    deleted: bool,
}

impl Kept {
    fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    fn credential(&self, key: &CredentialKey) -> Credential {
        Credential {
            key: key.clone(),
            value: self.value.clone(),
            metadata: self.metadata.clone(),
            version: self.version.clone(),
            created_at: self.created_at,
            updated_at: self.written_at,
            expires_at: self.expires_at,
        }
    }
}

/// A key's versions: the newest, which is the key's value while `live`
/// (the key was not deleted since) and it has not expired, and the older
/// ones, oldest first. The newest is kept inline, so that a read costs
/// one lookup in the map and nothing more, as before there was a history.
struct History {
    newest: Kept,
    older: VecDeque<Kept>,
    live: bool,
}

impl History {
    fn new(first: Kept) -> Self {
        Self { newest: first, older: VecDeque::new(), live: true }
    }

    /// How many versions are kept.
    fn len(&self) -> usize {
        self.older.len() + 1
    }

    /// The version at `index`, oldest first.
    fn at(&self, index: usize) -> &Kept {
        self.older.get(index).unwrap_or(&self.newest)
    }

    /// Every version, oldest first.
    fn iter(&self) -> impl Iterator<Item = &Kept> {
        self.older.iter().chain(std::iter::once(&self.newest))
    }

    /// Makes `kept` the newest version.
    fn push(&mut self, kept: Kept) {
        self.older.push_back(std::mem::replace(&mut self.newest, kept));
    }

    /// Drops the version at `index` (its value zeroizes); `false` when it
    /// was the only one, which the caller drops with the key.
    fn remove(&mut self, index: usize) -> bool {
        if index < self.older.len() {
            self.older.remove(index);
            return true;
        }
        match self.older.pop_back() {
            Some(previous) => {
                self.newest = previous;
                true
            }
            None => false,
        }
    }

    /// The version `get` returns at `now`, if any.
    fn current(&self, now: SystemTime) -> Option<&Kept> {
        Some(&self.newest).filter(|k| self.live && !k.is_expired(now))
    }

    /// As [`current`](Self::current), reading the clock only when the
    /// newest version has an expiry: the read path of `get`, `has` and
    /// `version`.
    fn current_by(&self, clock: &dyn credstore_core::Clock) -> Option<&Kept> {
        Some(&self.newest).filter(|k| self.live && k.expires_at.is_none_or(|at| at > clock.now()))
    }

    /// Whether `kept` is still within `retention` at `now`.
    fn within(kept: &Kept, retention: &Retention, now: SystemTime) -> bool {
        kept.superseded_at.is_none_or(|at| !retention.is_past_age(at, now))
    }

    /// Drops the versions past `retention` (their values zeroize as they
    /// drop); the newest is always kept.
    fn prune(&mut self, retention: &Retention, now: SystemTime) {
        let max = retention.max_versions.map_or(usize::MAX, |n| n.max(1) as usize);
        while self.len() > max {
            self.older.pop_front();
        }
        self.older.retain(|k| Self::within(k, retention, now));
    }

    fn state(&self, index: usize, now: SystemTime) -> VersionState {
        let kept = self.at(index);
        if kept.is_expired(now) {
            VersionState::Expired
        } else if kept.deleted {
            VersionState::Deleted
        } else if self.live && index + 1 == self.len() {
            VersionState::Current
        } else {
            VersionState::Previous
        }
    }
}

/// One key space: a hash map of each key's history for lookups and a
/// sorted set of the keys not deleted for `list`. Values are
/// `SecretValue`s, so a version that is dropped (past the retention,
/// purged) zeroizes its value.
#[derive(Default)]
struct Entries {
    map: HashMap<CredentialKey, History>,
    order: BTreeSet<CredentialKey>,
}

type Space = RwLock<Entries>;

/// What every handle of one store shares: its namespaces, the version
/// counter and the settings.
struct Shared {
    /// The root namespace, every namespace that holds keys, and those that
    /// have handles: a namespace without either is forgotten when its last
    /// handle drops, so that reads on ever new namespaces leave nothing
    /// behind.
    spaces: Mutex<HashMap<Namespace, Arc<Space>>>,
    /// The last version handed out, in any namespace.
    last_version: AtomicU64,
    env_prefix: Option<String>,
    retention: Retention,
    created_at: SystemTime,
    /// The change feed of every namespace: each write and delete is
    /// published once, with its full namespace, while its lock is held.
    changes: ChangeHub,
}

/// A concurrent in-memory credential store. See the crate docs.
///
/// Cloning is cheap and gives another handle on the same data and
/// namespace; [`CredentialStore::with_namespace`] gives handles on other
/// namespaces of the same store.
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
    info: StoreInfo,
    space: Arc<Space>,
}

impl MemoryStore {
    /// An empty store with the default settings.
    pub fn new(id: StoreId) -> Self {
        Self::with_config(id, MemoryConfig::default())
    }

    /// An empty store with `config`.
    pub fn with_config(id: StoreId, config: MemoryConfig) -> Self {
        let space: Arc<Space> = Arc::default();
        let spaces = HashMap::from([(Namespace::root(), space.clone())]);
        let shared = Shared {
            spaces: Mutex::new(spaces),
            last_version: AtomicU64::new(0),
            env_prefix: config.env_prefix,
            retention: config.retention,
            created_at: SystemTime::now(),
            changes: ChangeHub::new(FEED_CAPACITY),
        };
        let mut info = StoreInfo::new(id, crate::KIND, CAPABILITIES.with_retention(config.retention));
        if let Some(clock) = config.clock {
            info = info.with_clock(clock);
        }
        Self { shared: Arc::new(shared), info, space }
    }

    /// A typed handle on `namespace` inside this handle's namespace; what
    /// [`CredentialStore::with_namespace`] returns, before boxing.
    fn handle(&self, namespace: &Namespace) -> Result<Self> {
        let info = self.info.join(namespace)?;
        if info.namespace() == self.info.namespace() {
            return Ok(self.clone());
        }
        let space = self
            .shared
            .spaces
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(info.namespace().clone())
            .or_default()
            .clone();
        Ok(Self { shared: self.shared.clone(), info, space })
    }

    /// The value of the environment variable for `key`, on the root
    /// namespace of a store configured with a prefix.
    fn env_value(&self, key: &CredentialKey) -> Option<String> {
        if !self.info.namespace().is_root() {
            return None;
        }
        let prefix = self.shared.env_prefix.as_deref()?;
        std::env::var(format!("{prefix}{key}")).ok()
    }

    fn env_fallback(&self, key: &CredentialKey) -> Option<Credential> {
        let value = self.env_value(key)?;
        Some(Credential {
            key: key.clone(),
            value: SecretValue::from_text(value),
            metadata: Metadata::new(),
            version: env_version(),
            created_at: self.shared.created_at,
            updated_at: self.shared.created_at,
            expires_at: None,
        })
    }

    fn next_version(&self) -> u64 {
        self.shared.last_version.fetch_add(1, Ordering::Relaxed) + 1
    }
}

fn env_version() -> Version {
    Version::new(ENV_VERSION).expect("a valid version")
}

impl Drop for MemoryStore {
    /// Forgets this handle's namespace when it holds no key and no other
    /// handle is on it: the map's reference and this one are the last two,
    /// and none can be taken from the map meanwhile, which is locked.
    fn drop(&mut self) {
        if self.info.namespace().is_root() || Arc::strong_count(&self.space) > 2 {
            return;
        }
        let mut spaces = self.shared.spaces.lock().unwrap_or_else(|e| e.into_inner());
        if Arc::strong_count(&self.space) == 2
            && read(&self.space).map.is_empty()
            && spaces.get(self.info.namespace()).is_some_and(|s| Arc::ptr_eq(s, &self.space))
        {
            spaces.remove(self.info.namespace());
        }
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("id", self.info.id())
            .field("namespace", self.info.namespace())
            .field("env_prefix", &self.shared.env_prefix)
            .finish_non_exhaustive()
    }
}

fn read(space: &Space) -> std::sync::RwLockReadGuard<'_, Entries> {
    space.read().unwrap_or_else(|e| e.into_inner())
}

fn write(space: &Space) -> std::sync::RwLockWriteGuard<'_, Entries> {
    space.write().unwrap_or_else(|e| e.into_inner())
}

/// Everything but persistence: credentials live as long as the process
/// ([`Persistence::Process`]), and the store is never unavailable; with a
/// change feed, in process, versions kept within the configured retention,
/// recovery after a delete and expiry.
const CAPABILITIES: Capabilities = Capabilities::full()
    .with_persistence(Persistence::Process)
    .with_can_be_unavailable(false)
    .with_change_feed(true)
    .with_versions(true)
    .with_recover_deleted(true)
    .with_expiry(true);

#[async_trait]
impl CredentialStore for MemoryStore {
    fn info(&self) -> &StoreInfo {
        &self.info
    }

    fn with_namespace(&self, namespace: &Namespace) -> Result<Arc<dyn CredentialStore>> {
        Ok(Arc::new(self.handle(namespace)?))
    }

    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        let clock = &**self.info.clock();
        let found =
            read(&self.space).map.get(key).and_then(|h| h.current_by(clock)).map(|k| k.credential(key));
        Ok(found.or_else(|| self.env_fallback(key)))
    }

    /// Reads every key under one acquisition of the namespace's read lock
    /// (the environment read-through of the misses comes after it): the
    /// answers are one snapshot of the namespace.
    async fn get_many(&self, keys: &[CredentialKey]) -> Result<Vec<Option<Credential>>> {
        credstore_core::check_batch(keys)?;
        let clock = &**self.info.clock();
        let found: Vec<Option<Credential>> = {
            let space = read(&self.space);
            keys.iter()
                .map(|key| space.map.get(key).and_then(|h| h.current_by(clock)).map(|k| k.credential(key)))
                .collect()
        };
        Ok(keys.iter().zip(found).map(|(key, found)| found.or_else(|| self.env_fallback(key))).collect())
    }

    async fn write(&self, request: &WriteRequest<'_>) -> Result<SetOutcome> {
        let (key, value, metadata) = (request.key(), request.value(), request.metadata());
        let (now, written_at) = (self.info.now(), SystemTime::now());
        let mut space = write(&self.space);
        let current = space.map.get(key).and_then(|h| h.current(now));
        let failed = |reason: &str| Err(Error::precondition_failed(self.info.id(), key, reason));
        match (request.mode(), current) {
            (SetMode::Create, Some(_)) => return failed("the key exists"),
            (SetMode::Replace(_), None) => return failed("the key does not exist"),
            (SetMode::Replace(expected), Some(kept)) if kept.version != *expected => {
                return failed("the key's current version is not the expected one");
            }
            _ => {}
        }
        let (created, created_at, updated_at) = match current {
            Some(kept) => (false, kept.created_at, written_at.max(kept.written_at)),
            None => (true, written_at, written_at),
        };
        // Taken under the write lock, so versions of one key only grow.
        let version = Version::from_counter(self.next_version());
        let kept = Kept {
            version: version.clone(),
            value: value.clone(),
            metadata: metadata.clone(),
            created_at,
            written_at: updated_at,
            expires_at: request.expires_at(),
            superseded_at: None,
            deleted: false,
        };
        match space.map.get_mut(key) {
            Some(history) => {
                if history.live {
                    history.newest.superseded_at = Some(now);
                }
                history.push(kept);
                history.live = true;
                history.prune(&self.shared.retention, now);
            }
            None => {
                space.map.insert(key.clone(), History::new(kept));
            }
        }
        space.order.insert(key.clone());
        // Under the lock, so that the changes of one key are reported in
        // the order of their versions.
        self.shared.changes.publish(self.info.namespace(), key, Some(&version));
        drop(space);
        Ok(SetOutcome { created, version, created_at, updated_at })
    }

    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        let clock = &**self.info.clock();
        let stored = read(&self.space).map.get(key).is_some_and(|h| h.current_by(clock).is_some());
        Ok(stored || self.env_value(key).is_some())
    }

    async fn version(&self, key: &CredentialKey) -> Result<Option<Version>> {
        let clock = &**self.info.clock();
        let stored =
            read(&self.space).map.get(key).and_then(|h| h.current_by(clock)).map(|k| k.version.clone());
        Ok(stored.or_else(|| self.env_value(key).map(|_| env_version())))
    }

    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        let now = self.info.now();
        let mut space = write(&self.space);
        let Some(history) = space.map.get_mut(key) else { return Ok(false) };
        if history.current(now).is_none() {
            return Ok(false);
        }
        // The history stays, within the retention, for a recovery; the
        // last version is marked deleted.
        history.live = false;
        history.newest.deleted = true;
        history.newest.superseded_at = Some(now);
        history.prune(&self.shared.retention, now);
        space.order.remove(key);
        self.shared.changes.publish(self.info.namespace(), key, None);
        Ok(true)
    }

    async fn get_version(&self, key: &CredentialKey, version: &Version) -> Result<Option<Credential>> {
        let now = self.info.now();
        let retention = &self.shared.retention;
        let space = read(&self.space);
        let found = space
            .map
            .get(key)
            .and_then(|h| h.iter().find(|k| k.version == *version && History::within(k, retention, now)));
        Ok(found.map(|k| k.credential(key)))
    }

    async fn list_versions(&self, key: &CredentialKey, options: &VersionListOptions) -> Result<VersionPage> {
        let now = self.info.now();
        let retention = &self.shared.retention;
        let space = read(&self.space);
        let Some(history) = space.map.get(key) else { return Ok(VersionPage::default()) };
        let newest_first = (0..history.len())
            .rev()
            .map(|i| (i, history.at(i)))
            .filter(|(_, k)| History::within(k, retention, now))
            .map(|(i, k)| {
                VersionInfo::new(k.version.clone(), history.state(i, now), k.written_at)
                    .with_expires_at(k.expires_at)
                    .with_metadata(k.metadata.clone())
            });
        Ok(options.page_from_newest(newest_first))
    }

    async fn purge(&self, key: &CredentialKey, target: &PurgeTarget) -> Result<bool> {
        let mut guard = write(&self.space);
        let space = &mut *guard;
        match target {
            PurgeTarget::Version(version) => {
                let Some(history) = space.map.get_mut(key) else { return Ok(false) };
                let Some(index) = history.iter().position(|k| k.version == *version) else {
                    return Ok(false);
                };
                let newest = index + 1 == history.len();
                if newest && history.current(self.info.now()).is_some() {
                    let reason = "it is the current version: write a new one first, then purge this one";
                    return Err(Error::precondition_failed(self.info.id(), key, reason));
                }
                if newest {
                    // An expired newest version: the key stays absent, rather
                    // than the version before it coming back.
                    history.live = false;
                    space.order.remove(key);
                }
                // Dropping the version zeroizes its value.
                if !history.remove(index) {
                    space.map.remove(key);
                }
                Ok(true)
            }
            // `Key`, and any target added later: the key with its history.
            _ => {
                space.order.remove(key);
                // Dropping the history zeroizes every value in it.
                let existed = space.map.remove(key).is_some();
                if existed {
                    self.shared.changes.publish(self.info.namespace(), key, None);
                }
                Ok(existed)
            }
        }
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let now = self.info.now();
        let space = read(&self.space);
        let start = match options.cursor() {
            Some(cursor) => Bound::Excluded(cursor.start_after().as_str()),
            None => Bound::Included(options.prefix()),
        };
        let mut keys = Vec::with_capacity(options.limit().min(space.order.len()));
        let mut more = false;
        for key in space.order.range::<str, _>((start, Bound::Unbounded)) {
            if !key.as_str().starts_with(options.prefix()) {
                if key.as_str() > options.prefix() {
                    break;
                }
                continue;
            }
            if space.map.get(key).is_none_or(|h| h.current(now).is_none()) {
                continue; // expired
            }
            if keys.len() == options.limit() {
                more = true;
                break;
            }
            keys.push(key.clone());
        }
        let next_cursor = if more { keys.last().map(ListCursor::after) } else { None };
        Ok(ListPage { keys, next_cursor })
    }

    async fn subscribe(&self) -> Result<ChangeFeed> {
        Ok(self.shared.changes.subscribe(self.info.namespace()))
    }

    async fn check_availability(&self) -> Availability {
        Availability::up()
    }
}

#[cfg(feature = "serde")]
impl crate::MemorySettings {
    /// Opens an empty memory store `id` with these settings.
    ///
    /// # Errors
    /// [`Error::Config`] when `max_versions` or `max_version_age_secs` is 0.
    pub async fn open(
        self,
        id: credstore_core::StoreId,
        _ctx: &credstore_core::config::ConfigContext,
    ) -> credstore_core::Result<MemoryStore> {
        let retention = self.retention().map_err(|reason| Error::config(&id, reason))?;
        let mut config = crate::MemoryConfig::new().retention(retention);
        if let Some(prefix) = self.env_prefix {
            config = config.env_prefix(prefix);
        }
        Ok(MemoryStore::with_config(id, config))
    }
}

#[cfg(test)]
mod tests {
    use credstore_conformance::fixtures::{key, ns};

    use super::*;
    use credstore_core::{Clock as _, CredentialStoreExt};

    fn v(s: &str) -> SecretValue {
        SecretValue::from(s)
    }

    #[tokio::test]
    async fn env_read_through_is_a_read_only_fallback() {
        // SAFETY: this test alone uses this variable name.
        unsafe { std::env::set_var("CREDSTORE_MEMTEST_api-key", "from-env") };
        let store = MemoryStore::with_config(
            StoreId::new("m").unwrap(),
            MemoryConfig::new().env_prefix("CREDSTORE_MEMTEST_"),
        );
        let k = key("api-key");
        let cred = store.get(&k).await.unwrap().unwrap();
        assert_eq!(cred.value.expose_str().unwrap(), "from-env");
        assert_eq!(cred.version.as_str(), ENV_VERSION);
        assert!(store.has(&k).await.unwrap());
        assert_eq!(store.version(&k).await.unwrap().unwrap().as_str(), ENV_VERSION);
        assert!(store.list(&ListOptions::new()).await.unwrap().keys.is_empty());
        assert!(!store.delete(&k).await.unwrap(), "the environment is never deleted from");
        // A key only in the environment is absent from the store for conditional writes.
        let err = store.replace(&k, &v("x"), &Metadata::new(), &cred.version).await.unwrap_err();
        assert!(matches!(err, Error::PreconditionFailed { .. }), "{err:?}");
        let created = store.create(&k, &v("stored"), &Metadata::new()).await.unwrap();
        assert!(created.created);
        assert_ne!(created.version.as_str(), ENV_VERSION);
        assert_eq!(store.get(&k).await.unwrap().unwrap().value.expose_str().unwrap(), "stored");
        assert_eq!(store.version(&k).await.unwrap(), Some(created.version));
        let tenant = store.with_namespace(&ns("t1/p1")).unwrap();
        assert!(tenant.get(&key("other")).await.unwrap().is_none());
        // SAFETY: as above.
        unsafe { std::env::set_var("CREDSTORE_MEMTEST_only-env", "e") };
        assert!(store.has(&key("only-env")).await.unwrap());
        assert!(!tenant.has(&key("only-env")).await.unwrap(), "namespaces do not read the environment");
        assert!(tenant.version(&key("only-env")).await.unwrap().is_none());
        // A root handle reached through a namespace of the root reads through again.
        let root_again = store.with_namespace(&Namespace::root()).unwrap();
        assert!(root_again.has(&key("only-env")).await.unwrap());
    }

    #[tokio::test]
    async fn namespaces_share_data_by_name_only_and_nest() {
        let root = MemoryStore::new(StoreId::new("m").unwrap());
        let a = root.with_namespace(&ns("t/a")).unwrap();
        let a_again = root.with_namespace(&ns("t")).unwrap().with_namespace(&ns("a")).unwrap();
        let b = root.with_namespace(&ns("t/b")).unwrap();
        let k = key("k");
        a.set(&k, &v("v"), &Metadata::new()).await.unwrap();
        assert!(a_again.has(&k).await.unwrap());
        assert!(!b.has(&k).await.unwrap());
        assert!(!root.has(&k).await.unwrap());
        assert_eq!(a.with_namespace(&ns("x")).unwrap().namespace().as_str(), "t/a/x");
        assert_eq!(a.with_namespace(&Namespace::root()).unwrap().namespace().as_str(), "t/a");
        assert!(root.namespace().is_root());
        let long = ns(&"x".repeat(255));
        let twice = root.with_namespace(&long).unwrap().with_namespace(&long).unwrap();
        assert!(matches!(twice.with_namespace(&long), Err(Error::InvalidNamespace { .. })));
    }

    #[tokio::test]
    async fn versions_never_repeat_across_namespaces_or_deletes() {
        let root = MemoryStore::new(StoreId::new("m").unwrap());
        let a = root.with_namespace(&ns("a")).unwrap();
        let k = key("k");
        let v1 = root.set(&k, &v("1"), &Metadata::new()).await.unwrap().version;
        let v2 = a.set(&k, &v("1"), &Metadata::new()).await.unwrap().version;
        assert!(root.delete(&k).await.unwrap());
        let v3 = root.set(&k, &v("1"), &Metadata::new()).await.unwrap().version;
        assert!(v1 != v2 && v2 != v3 && v1 != v3, "{v1:?} {v2:?} {v3:?}");
        // The stale version from before the delete does not match the recreated key.
        let err = root.replace(&k, &v("2"), &Metadata::new(), &v1).await.unwrap_err();
        assert!(matches!(err, Error::PreconditionFailed { .. }), "{err:?}");
        assert_eq!(root.get(&k).await.unwrap().unwrap().value.expose_str().unwrap(), "1");
        let v4 = root.replace(&k, &v("2"), &Metadata::new(), &v3).await.unwrap().version;
        assert_eq!(root.version(&k).await.unwrap(), Some(v4));
    }

    /// The next event of `feed`, which must be a change, within a bound.
    async fn next_change(feed: &mut ChangeFeed) -> credstore_core::Change {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), feed.next()).await;
        match next.expect("an event within 10 s") {
            Some(credstore_core::FeedEvent::Changed(change)) => change,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_feed_reports_writes_and_deletes_of_every_handle_but_not_failed_ones() {
        let root = MemoryStore::new(StoreId::new("m").unwrap());
        assert!(root.capabilities().change_feed);
        let mut feed = root.subscribe().await.unwrap();
        let tenant = root.with_namespace(&ns("t/p")).unwrap();
        let k = key("k");
        let first = tenant.set(&k, &v("1"), &Metadata::new()).await.unwrap();
        let err = tenant.create(&k, &v("2"), &Metadata::new()).await.unwrap_err();
        assert!(matches!(err, Error::PreconditionFailed { .. }), "{err:?}");
        assert!(!root.delete(&key("missing")).await.unwrap());
        assert!(tenant.delete(&k).await.unwrap());
        let written = next_change(&mut feed).await;
        assert_eq!(
            (written.namespace, written.key, written.version),
            (ns("t/p"), k.clone(), Some(first.version))
        );
        let deleted = next_change(&mut feed).await;
        assert_eq!((deleted.namespace, deleted.key, deleted.version), (ns("t/p"), k, None));
        // The feed ends with the last handle of the store.
        drop((root, tenant));
        assert!(feed.next().await.is_none());
    }

    #[tokio::test]
    async fn a_deleted_key_is_recovered_by_restoring_its_last_version() {
        let store = MemoryStore::new(StoreId::new("m").unwrap());
        let caps = store.capabilities();
        assert!(caps.versions && caps.recover_deleted && caps.expiry, "{caps:?}");
        assert_eq!(caps.retention, crate::DEFAULT_RETENTION);
        let k = key("k");
        let first = store.set(&k, &v("one"), &Metadata::new()).await.unwrap();
        let second = store.set(&k, &v("two"), &Metadata::new()).await.unwrap();
        assert!(store.delete(&k).await.unwrap());
        let listed = store.list_versions(&k, &VersionListOptions::new()).await.unwrap();
        let states: Vec<_> = listed.versions.iter().map(|i| (i.version.clone(), i.state)).collect();
        assert_eq!(
            states,
            [(second.version.clone(), VersionState::Deleted), (first.version, VersionState::Previous)]
        );
        let back =
            store.restore(&k, &second.version, &credstore_core::SetOptions::create_only()).await.unwrap();
        assert!(back.created);
        assert_eq!(store.get(&k).await.unwrap().unwrap().value.expose_str().unwrap(), "two");
        assert!(store.purge(&k, &PurgeTarget::Key).await.unwrap());
        assert!(store.list_versions(&k, &VersionListOptions::new()).await.unwrap().versions.is_empty());
    }

    #[tokio::test]
    async fn purging_an_expired_newest_version_leaves_the_key_absent_not_the_one_before() {
        let clock = credstore_core::ManualClock::starting_now();
        let config = MemoryConfig::new().clock(Arc::new(clock.clone()));
        let store = MemoryStore::with_config(StoreId::new("m").unwrap(), config);
        let k = key("k");
        store.set(&k, &v("old"), &Metadata::new()).await.unwrap();
        let at = clock.now() + std::time::Duration::from_secs(10);
        let opts = credstore_core::SetOptions::new().with_expires_at(Some(at));
        let leaked = store.set_opts(&k, &v("leaked"), &Metadata::new(), &opts).await.unwrap().version;
        let refused = store.purge(&k, &PurgeTarget::Version(leaked.clone())).await;
        assert!(matches!(refused, Err(Error::PreconditionFailed { .. })), "{refused:?}");
        clock.set(at);
        assert!(store.purge(&k, &PurgeTarget::Version(leaked.clone())).await.unwrap());
        assert!(store.get_version(&k, &leaked).await.unwrap().is_none());
        assert!(store.get(&k).await.unwrap().is_none(), "the version before the purged one came back");
        assert!(store.list(&ListOptions::new()).await.unwrap().keys.is_empty());
        let created = store.create(&k, &v("new"), &Metadata::new()).await.unwrap();
        assert!(created.created);
    }

    #[tokio::test]
    async fn retention_keeps_the_newest_versions_and_ages_out_superseded_ones_by_the_store_clock() {
        let clock = credstore_core::ManualClock::starting_now();
        let retention = Retention::versions(2).with_max_age(Some(std::time::Duration::from_secs(60)));
        let config = MemoryConfig::new().retention(retention).clock(Arc::new(clock.clone()));
        let store = MemoryStore::with_config(StoreId::new("m").unwrap(), config);
        assert_eq!(store.capabilities().retention, retention);
        let k = key("k");
        let mut versions = Vec::new();
        for n in 0..3 {
            versions.push(store.set(&k, &v(&n.to_string()), &Metadata::new()).await.unwrap().version);
        }
        assert!(store.get_version(&k, &versions[0]).await.unwrap().is_none(), "past max_versions");
        assert!(store.get_version(&k, &versions[1]).await.unwrap().is_some());
        clock.advance(std::time::Duration::from_secs(60));
        assert!(store.get_version(&k, &versions[1]).await.unwrap().is_none(), "past max_age");
        assert_eq!(store.list_versions(&k, &VersionListOptions::new()).await.unwrap().versions.len(), 1);
        assert!(store.get_version(&k, &versions[2]).await.unwrap().is_some(), "the current one stays");
    }

    #[tokio::test]
    async fn an_expired_credential_reads_as_absent_by_the_store_clock() {
        let clock = credstore_core::ManualClock::starting_now();
        let config = MemoryConfig::new().clock(Arc::new(clock.clone()));
        let store = MemoryStore::with_config(StoreId::new("m").unwrap(), config);
        let k = key("k");
        let at = clock.now() + std::time::Duration::from_secs(10);
        let opts = credstore_core::SetOptions::new().with_expires_at(Some(at));
        store.set_opts(&k, &v("t"), &Metadata::new(), &opts).await.unwrap();
        assert_eq!(store.get(&k).await.unwrap().unwrap().expires_at, Some(at));
        clock.set(at);
        assert!(store.get(&k).await.unwrap().is_none());
        assert!(!store.has(&k).await.unwrap());
        assert!(store.list(&ListOptions::new()).await.unwrap().keys.is_empty());
    }

    /// A writer sets `a` then `b` to 1, 2, 3, ...: in any one snapshot `a`
    /// is `b` or one ahead of it. Separate reads (the provided `get_many`)
    /// can see `b` ahead of `a`, or `a` two ahead.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn get_many_answers_one_snapshot_of_a_concurrent_writer() {
        let store = MemoryStore::new(StoreId::new("m").unwrap());
        let (a, b) = (key("a"), key("b"));
        for k in [&a, &b] {
            store.set(k, &v("0"), &Metadata::new()).await.unwrap();
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (store, stop, a, b) = (store.clone(), stop.clone(), a.clone(), b.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    store.set(&a, &v(&n.to_string()), &Metadata::new()).await.unwrap();
                    store.set(&b, &v(&n.to_string()), &Metadata::new()).await.unwrap();
                    tokio::task::yield_now().await;
                }
                n
            })
        };
        let number = |c: &Option<Credential>| -> u64 {
            c.as_ref().unwrap().value.expose_str().unwrap().parse().unwrap()
        };
        let keys = [a.clone(), b.clone(), a.clone()];
        for _ in 0..20_000 {
            let got = store.get_many(&keys).await.unwrap();
            let (a1, b1, a2) = (number(&got[0]), number(&got[1]), number(&got[2]));
            assert!(a1 == a2 && (a1 == b1 || a1 == b1 + 1), "not one snapshot: a {a1}, b {b1}, a {a2}");
            tokio::task::yield_now().await;
        }
        stop.store(true, Ordering::Relaxed);
        assert!(writer.await.unwrap() > 0, "the writer wrote");
    }

    #[tokio::test]
    async fn binary_values_are_kept_as_is() {
        let store = MemoryStore::new(StoreId::new("m").unwrap());
        let bytes: Vec<u8> = (0..=255).collect();
        store.set(&key("bin"), &SecretValue::from(bytes.clone()), &Metadata::new()).await.unwrap();
        let got = store.get(&key("bin")).await.unwrap().unwrap().value;
        assert_eq!(got.expose_secret(), bytes.as_slice());
        assert!(!got.is_text());
    }

    #[tokio::test]
    async fn list_walks_prefix_range_across_pages() {
        let store = MemoryStore::new(StoreId::new("m").unwrap());
        for k in ["a", "b.1", "b.2", "b.3", "c"] {
            store.set(&key(k), &v("v"), &Metadata::new()).await.unwrap();
        }
        let opts = ListOptions::new().with_prefix("b.").unwrap().with_limit(2).unwrap();
        let first = store.list(&opts).await.unwrap();
        assert_eq!(first.keys, vec![key("b.1"), key("b.2")]);
        let second = store.list(&opts.clone().with_cursor(first.next_cursor)).await.unwrap();
        assert_eq!(second.keys, vec![key("b.3")]);
        assert!(second.next_cursor.is_none());
    }
}
