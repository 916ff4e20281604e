//! [`MemoryStore`]: the `CredentialStore` implementation.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use credstore_core::{
    async_trait, check_value, validate_namespace, Availability, Capabilities, Credential, CredentialKey,
    CredentialStore, ListCursor, ListOptions, ListPage, Metadata, Result, SecretValue, SetOutcome, StoreId,
    StoreKind,
};

use crate::MemoryConfig;

struct Entry {
    value: SecretValue,
    metadata: Metadata,
    created_at: SystemTime,
    updated_at: SystemTime,
}

/// One key space: a hash map for lookups and a sorted set of the same
/// (reference-counted) keys for `list`. Values are `SecretValue`s, so
/// replacing or removing an entry zeroizes the old value when it drops.
#[derive(Default)]
struct Entries {
    map: HashMap<CredentialKey, Entry>,
    order: BTreeSet<CredentialKey>,
}

type Space = RwLock<Entries>;

/// A concurrent in-memory credential store. See the crate docs.
///
/// Cloning is cheap and gives another handle on the same data.
#[derive(Clone)]
pub struct MemoryStore {
    id: StoreId,
    namespace: Arc<str>,
    space: Arc<Space>,
    /// Every namespace of this store, shared by all its handles.
    spaces: Arc<Mutex<HashMap<Arc<str>, Arc<Space>>>>,
    env_prefix: Option<Arc<str>>,
    created_at: SystemTime,
}

impl MemoryStore {
    /// An empty store with the default settings.
    pub fn new(id: StoreId) -> Self {
        Self::with_config(id, MemoryConfig::default())
    }

    /// An empty store with `config`.
    pub fn with_config(id: StoreId, config: MemoryConfig) -> Self {
        let space: Arc<Space> = Arc::default();
        let root: Arc<str> = Arc::from("");
        let spaces = HashMap::from([(root.clone(), space.clone())]);
        Self {
            id,
            namespace: root,
            space,
            spaces: Arc::new(Mutex::new(spaces)),
            env_prefix: config.env_prefix.map(Arc::from),
            created_at: SystemTime::now(),
        }
    }

    /// A handle on the key space `ns` inside this one (`tenant/project`
    /// style). Same id and kind; separate keys.
    ///
    /// # Behavior
    /// Two handles with different namespaces never see each other's keys; the
    /// same namespace twice shares its data. Environment read-through stays
    /// with the root namespace.
    ///
    /// # Errors
    /// [`credstore_core::Error::InvalidInput`] when `ns` is not one or more
    /// id-valid segments joined by `/`.
    pub fn with_namespace(&self, ns: &str) -> Result<Self> {
        validate_namespace(ns)?;
        let full: Arc<str> = if self.namespace.is_empty() {
            Arc::from(ns)
        } else {
            Arc::from(format!("{}/{ns}", self.namespace))
        };
        let space =
            self.spaces.lock().unwrap_or_else(|e| e.into_inner()).entry(full.clone()).or_default().clone();
        Ok(Self { namespace: full, space, env_prefix: None, ..self.clone() })
    }

    /// The namespace of this handle; empty for the root.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn env_fallback(&self, key: &CredentialKey) -> Option<Credential> {
        let prefix = self.env_prefix.as_deref()?;
        let value = std::env::var(format!("{prefix}{key}")).ok()?;
        Some(Credential {
            key: key.clone(),
            value: SecretValue::new(value),
            metadata: Metadata::new(),
            created_at: self.created_at,
            updated_at: self.created_at,
        })
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("id", &self.id)
            .field("namespace", &self.namespace)
            .field("env_prefix", &self.env_prefix)
            .finish_non_exhaustive()
    }
}

fn read(space: &Space) -> std::sync::RwLockReadGuard<'_, Entries> {
    space.read().unwrap_or_else(|e| e.into_inner())
}

fn write(space: &Space) -> std::sync::RwLockWriteGuard<'_, Entries> {
    space.write().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl CredentialStore for MemoryStore {
    fn id(&self) -> &StoreId {
        &self.id
    }

    fn kind(&self) -> StoreKind {
        StoreKind::Memory
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::full().with_persistent(false).with_can_be_unavailable(false)
    }

    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        let found = read(&self.space).map.get(key).map(|e| Credential {
            key: key.clone(),
            value: e.value.clone(),
            metadata: e.metadata.clone(),
            created_at: e.created_at,
            updated_at: e.updated_at,
        });
        Ok(found.or_else(|| self.env_fallback(key)))
    }

    async fn set(&self, key: &CredentialKey, value: &SecretValue, metadata: &Metadata) -> Result<SetOutcome> {
        check_value(value)?;
        let now = SystemTime::now();
        let mut space = write(&self.space);
        let (created, created_at) = match space.map.get_mut(key) {
            Some(entry) => {
                // Assigning drops the old value, which zeroizes it.
                entry.value = value.clone();
                entry.metadata = metadata.clone();
                entry.updated_at = now.max(entry.updated_at);
                (false, entry.created_at)
            }
            None => {
                let entry = Entry {
                    value: value.clone(),
                    metadata: metadata.clone(),
                    created_at: now,
                    updated_at: now,
                };
                space.map.insert(key.clone(), entry);
                space.order.insert(key.clone());
                (true, now)
            }
        };
        Ok(SetOutcome { created, created_at, updated_at: now.max(created_at) })
    }

    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        Ok(read(&self.space).map.contains_key(key) || self.env_fallback(key).is_some())
    }

    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        let mut space = write(&self.space);
        space.order.remove(key);
        // The removed entry drops here, zeroizing its value.
        Ok(space.map.remove(key).is_some())
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
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
            if keys.len() == options.limit() {
                more = true;
                break;
            }
            keys.push(key.clone());
        }
        let next_cursor = if more { keys.last().map(ListCursor::after) } else { None };
        Ok(ListPage { keys, next_cursor })
    }

    async fn check_availability(&self) -> Availability {
        Availability::up()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> CredentialKey {
        CredentialKey::new(s).unwrap()
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
        assert_eq!(store.get(&k).await.unwrap().unwrap().value.expose_secret(), "from-env");
        assert!(store.has(&k).await.unwrap());
        assert!(store.list(&ListOptions::new()).await.unwrap().keys.is_empty());
        assert!(!store.delete(&k).await.unwrap(), "the environment is never deleted from");
        store.set(&k, &SecretValue::from("stored"), &Metadata::new()).await.unwrap();
        assert_eq!(store.get(&k).await.unwrap().unwrap().value.expose_secret(), "stored");
        let tenant = store.with_namespace("t1/p1").unwrap();
        assert!(tenant.get(&k).await.unwrap().is_none(), "namespaces do not read the environment");
    }

    #[tokio::test]
    async fn namespaces_share_data_by_name_only() {
        let root = MemoryStore::new(StoreId::new("m").unwrap());
        let a = root.with_namespace("t/a").unwrap();
        let a_again = root.with_namespace("t/a").unwrap();
        let b = root.with_namespace("t/b").unwrap();
        let k = key("k");
        a.set(&k, &SecretValue::from("v"), &Metadata::new()).await.unwrap();
        assert!(a_again.has(&k).await.unwrap());
        assert!(!b.has(&k).await.unwrap());
        assert!(!root.has(&k).await.unwrap());
        assert_eq!(a.with_namespace("x").unwrap().namespace(), "t/a/x");
        assert!(root.with_namespace("bad//ns").is_err());
        assert!(root.with_namespace("").is_err());
    }

    #[tokio::test]
    async fn list_walks_prefix_range_across_pages() {
        let store = MemoryStore::new(StoreId::new("m").unwrap());
        for k in ["a", "b.1", "b.2", "b.3", "c"] {
            store.set(&key(k), &SecretValue::from("v"), &Metadata::new()).await.unwrap();
        }
        let opts = ListOptions::new().with_prefix("b.").unwrap().with_limit(2).unwrap();
        let first = store.list(&opts).await.unwrap();
        assert_eq!(first.keys, vec![key("b.1"), key("b.2")]);
        let second = store.list(&opts.clone().with_cursor(first.next_cursor)).await.unwrap();
        assert_eq!(second.keys, vec![key("b.3")]);
        assert!(second.next_cursor.is_none());
    }
}
