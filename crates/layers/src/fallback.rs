//! [`FallbackStore`] and [`FallbackLayer`]: a chain of stores read in order.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use credstore_core::{
    Availability, Capabilities, ChangeFeed, Credential, CredentialKey, CredentialStore, CredentialStoreExt,
    Error, Layer, ListCursor, ListOptions, ListPage, Namespace, Persistence, PurgeTarget, Result, Retention,
    SetOutcome, StoreId, StoreInfo, StoreKind, Version, VersionListOptions, VersionPage, WriteRequest,
};

/// The `operation` named by the [`Error::Unsupported`] of a write to a chain
/// without a writable store.
const NO_WRITABLE: &str = "writes (the fallback chain has no writable store)";

/// The kind a standalone chain reports: `fallback`.
pub const FALLBACK_KIND: StoreKind = StoreKind::from_static("fallback");

#[derive(Debug, Clone)]
struct Member {
    store: Arc<dyn CredentialStore>,
    writable: bool,
}

/// A chain of stores, read in order, for example the environment, then the
/// keychain, then an encrypted SQLite file, as a developer laptop wants (the
/// memory store's read-through of environment variables is such a chain in
/// miniature).
///
/// # Behavior
/// - **Reads** (`get`, `version`) try the stores in order and return the
///   first hit; a key missing from every store is `Ok(None)`. A key in an
///   earlier store shadows the same key in later ones. `has` is true when
///   any store has the key.
/// - **Writes and deletes** go to the *writable* store: the first one added
///   with [`with_writable`](FallbackStore::with_writable) rather than
///   [`with_read_only`](FallbackStore::with_read_only). The other stores are
///   never written. A chain without a writable store answers every write and
///   delete with [`Error::Unsupported`] before any I/O. Note what shadowing
///   means for writes: a key written while an earlier store holds it still
///   reads back the earlier store's value, and deleting it from the writable
///   store leaves the other stores' copies readable.
/// - **Conditions** of conditional writes are passed to the writable store
///   untouched and checked against it alone: a create-only write succeeds
///   when the writable store lacks the key even if a read-only store has it.
/// - **Errors.** By default an error from any store fails the read, since
///   falling through could return a value the failing store shadows. With
///   [`skip_unavailable(true)`](FallbackStore::skip_unavailable), a store
///   failing with [`Error::Unavailable`] is skipped: a later hit is returned,
///   and a miss everywhere returns the first such error rather than claiming
///   the key is absent. Errors of a store come back in the chain's name (its
///   id in `store`), the store's own id in the reason.
/// - **`list`** merges the stores' listings: sorted, each key once, paginated
///   by the options' limit, with cursors that mean "after this key" for
///   every store (as [`ListCursor`] does for every backend of this
///   workspace). It is supported when every store supports it.
/// - **Availability** is the primary's (the first store's); the reason
///   names every unavailable store, the primary first, so it may be given
///   while the chain is available.
/// - **Capabilities**: persistence, metadata, binary values and conditional
///   writes are the writable store's (the least persistent store's
///   persistence when none is writable); `list` needs every store;
///   `can_be_unavailable` is the primary's.
/// - [`with_namespace`](CredentialStore::with_namespace) gives a chain of
///   every store's handle on that namespace.
///
/// ```
/// use std::sync::Arc;
/// use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Metadata, StoreId};
/// use credstore_layers::FallbackStore;
///
/// # async fn demo(env: Arc<dyn CredentialStore>, keychain: Arc<dyn CredentialStore>, sqlite: Arc<dyn CredentialStore>) -> credstore_core::Result<()> {
/// let chain = FallbackStore::new(StoreId::new("laptop")?)
///     .with_read_only(env) // read first, never written
///     .with_writable(keychain) // the writable store
///     .with_read_only(sqlite); // read last
/// let key = CredentialKey::new("github-token")?;
/// chain.set(&key, &"ghp_example".into(), &Metadata::new()).await?; // to the keychain
/// assert!(chain.has(&key).await?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct FallbackStore {
    info: StoreInfo,
    members: Vec<Member>,
    skip_unavailable: bool,
}

impl FallbackStore {
    /// An empty chain named `id`, of kind [`FALLBACK_KIND`], on the root
    /// namespace. Add stores with [`with_writable`](Self::with_writable) and
    /// [`with_read_only`](Self::with_read_only).
    pub fn new(id: StoreId) -> Self {
        Self::chain(StoreInfo::new(id, FALLBACK_KIND, Capabilities::full()), Vec::new(), false)
    }

    /// A chain of `members` under `info`'s id, kind and namespace, with the
    /// capabilities the members give it.
    fn chain(info: StoreInfo, members: Vec<Member>, skip_unavailable: bool) -> Self {
        let mut chain = Self { info, members, skip_unavailable };
        chain.info = chain.info.with_capabilities(chain.capabilities_of_members());
        chain
    }

    /// Appends `store`, which may be written: the first such store takes
    /// every write and delete.
    pub fn with_writable(mut self, store: Arc<dyn CredentialStore>) -> Self {
        self.members.push(Member { store, writable: true });
        Self::chain(self.info, self.members, self.skip_unavailable)
    }

    /// Appends `store`, read but never written.
    pub fn with_read_only(mut self, store: Arc<dyn CredentialStore>) -> Self {
        self.members.push(Member { store, writable: false });
        Self::chain(self.info, self.members, self.skip_unavailable)
    }

    /// Whether reads skip a store that is unavailable (off by default); see
    /// the type's documentation.
    pub fn skip_unavailable(mut self, skip: bool) -> Self {
        self.skip_unavailable = skip;
        self
    }

    /// The stores, in read order.
    pub fn stores(&self) -> impl Iterator<Item = &Arc<dyn CredentialStore>> {
        self.members.iter().map(|m| &m.store)
    }

    /// The store writes and deletes go to, if any.
    pub fn writable(&self) -> Option<&Arc<dyn CredentialStore>> {
        self.members.iter().find(|m| m.writable).map(|m| &m.store)
    }

    fn primary(&self) -> Option<&Arc<dyn CredentialStore>> {
        self.members.first().map(|m| &m.store)
    }

    fn writer(&self) -> Result<&Arc<dyn CredentialStore>> {
        self.writable().ok_or_else(|| Error::unsupported(self.info.id(), NO_WRITABLE))
    }

    /// A member's error, renamed to the chain: callers talk to the chain, so
    /// its errors name the chain's id; the member's id, when it differs, is
    /// kept in the reason.
    fn own(&self, error: Error) -> Error {
        let Some(member) = error.store().filter(|id| *id != self.info.id()).cloned() else { return error };
        let from = |reason: String| format!("{reason} (in the chain's store '{member}')");
        let id = self.info.id().clone();
        match error {
            Error::Unavailable { reason, source, .. } => {
                Error::Unavailable { store: id, reason: from(reason), source }
            }
            Error::PermissionDenied { reason, source, .. } => {
                Error::PermissionDenied { store: id, reason: from(reason), source }
            }
            Error::Integrity { key, reason, source, .. } => {
                Error::Integrity { store: id, key, reason: from(reason), source }
            }
            Error::Config { reason, source, .. } => Error::Config { store: id, reason: from(reason), source },
            Error::Conflict { reason, source, .. } => {
                Error::Conflict { store: id, reason: from(reason), source }
            }
            Error::PreconditionFailed { key, reason, .. } => {
                Error::PreconditionFailed { store: id, key, reason: from(reason) }
            }
            Error::Unsupported { operation, .. } => Error::Unsupported { store: id, operation },
            Error::Backend { source, .. } => Error::Backend { store: id, source },
            other => other,
        }
    }

    /// The first store's answer that is `Some`, in read order: what `get`,
    /// `has` and `version` ask. A miss everywhere is `None`, or the first
    /// error skipped on the way ([`skip_unavailable`](Self::skip_unavailable)).
    async fn first_hit<'a, T, F, Fut>(&'a self, read: F) -> Result<Option<T>>
    where
        F: Fn(&'a Arc<dyn CredentialStore>) -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
    {
        let mut skipped = None;
        for member in &self.members {
            match read(&member.store).await {
                Ok(Some(found)) => return Ok(Some(found)),
                Ok(None) => {}
                Err(e) => self.skip(self.own(e), &mut skipped)?,
            }
        }
        skipped.map_or(Ok(None), Err)
    }

    /// Whether a read may go on past `error`; the first such error is kept.
    fn skip(&self, error: Error, skipped: &mut Option<Error>) -> Result<()> {
        if self.skip_unavailable && matches!(error, Error::Unavailable { .. }) {
            skipped.get_or_insert(error);
            Ok(())
        } else {
            Err(error)
        }
    }

    /// Up to `options.limit()` keys of one store from the options' cursor,
    /// following its cursors across short pages; and whether it has more.
    async fn take(store: &dyn CredentialStore, options: &ListOptions) -> Result<(Vec<CredentialKey>, bool)> {
        let mut keys = Vec::new();
        let mut options = options.clone();
        loop {
            let page = store.list(&options).await?;
            keys.extend(page.keys);
            match page.next_cursor {
                None => return Ok((keys, false)),
                Some(_) if keys.len() >= options.limit() => return Ok((keys, true)),
                Some(cursor) => {
                    if options.cursor() == Some(&cursor) {
                        // A store that does not move on ends its listing here.
                        return Ok((keys, false));
                    }
                    options = options.with_cursor(Some(cursor));
                }
            }
        }
    }
}

/// Adds read-only fallback stores behind the store it wraps, which stays
/// first and takes every write; the chain keeps the wrapped store's id, kind
/// and namespace. See
/// [`FallbackStore`] for the behaviour.
///
/// ```
/// use std::sync::Arc;
/// use credstore_core::{CredentialStore, StoreExt};
/// use credstore_layers::FallbackLayer;
///
/// fn with_defaults(store: Arc<dyn CredentialStore>, defaults: Arc<dyn CredentialStore>) -> Arc<dyn CredentialStore> {
///     store.with_layer(FallbackLayer::new().with_read_only(defaults))
/// }
/// ```
#[derive(Debug, Clone, Default)]
pub struct FallbackLayer {
    members: Vec<Member>,
    skip_unavailable: bool,
}

impl FallbackLayer {
    /// A layer that adds no store yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a fallback store: read after the wrapped store and the
    /// fallbacks added before it, never written (writes go to the wrapped
    /// store), as [`FallbackStore::with_read_only`].
    pub fn with_read_only(mut self, store: Arc<dyn CredentialStore>) -> Self {
        self.members.push(Member { store, writable: false });
        self
    }

    /// As [`FallbackStore::skip_unavailable`].
    pub fn skip_unavailable(mut self, skip: bool) -> Self {
        self.skip_unavailable = skip;
        self
    }
}

impl Layer for FallbackLayer {
    fn layer(&self, inner: Arc<dyn CredentialStore>) -> Arc<dyn CredentialStore> {
        let mut members = vec![Member { store: Arc::clone(&inner), writable: true }];
        members.extend(self.members.iter().cloned());
        Arc::new(FallbackStore::chain(inner.info().clone(), members, self.skip_unavailable))
    }
}

impl FallbackStore {
    fn capabilities_of_members(&self) -> Capabilities {
        let all = self.members.iter().map(|m| m.store.capabilities());
        let list = all.clone().all(|c| c.list);
        let can_be_unavailable = self.primary().is_none_or(|p| p.capabilities().can_be_unavailable);
        let base = match self.writable() {
            Some(w) => w.capabilities(),
            None => {
                let persistence = all.map(|c| c.persistence).min().unwrap_or(Persistence::Process);
                Capabilities::full()
                    .with_persistence(persistence)
                    .with_create_only(false)
                    .with_replace_if_version(false)
            }
        };
        // A chain reports no feed: a change of one member says nothing of
        // what the chain answers.
        base.with_list(list)
            .with_can_be_unavailable(can_be_unavailable)
            .with_change_feed(false)
            .with_versions(false)
            .with_recover_deleted(false)
            .with_retention(Retention::NONE)
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl CredentialStore for FallbackStore {
    fn info(&self) -> &StoreInfo {
        &self.info
    }

    fn with_namespace(&self, namespace: &Namespace) -> Result<Arc<dyn CredentialStore>> {
        let info = self.info.join(namespace)?;
        let members = self
            .members
            .iter()
            .map(|m| Ok(Member { store: m.store.with_namespace(namespace)?, writable: m.writable }))
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(FallbackStore { info, members, skip_unavailable: self.skip_unavailable }))
    }

    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        self.first_hit(|store| store.get(key)).await
    }

    async fn get_many(&self, keys: &[CredentialKey]) -> Result<Vec<Option<Credential>>> {
        // Each key falls through the chain on its own.
        credstore_core::get_many_concurrently(self, keys).await
    }

    async fn write(&self, request: &WriteRequest<'_>) -> Result<SetOutcome> {
        self.writer()?.write(request).await.map_err(|e| self.own(e))
    }

    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        let hit = self.first_hit(|store| async move { Ok(store.has(key).await?.then_some(())) }).await?;
        Ok(hit.is_some())
    }

    async fn version(&self, key: &CredentialKey) -> Result<Option<Version>> {
        self.first_hit(|store| store.version(key)).await
    }

    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        self.writer()?.delete(key).await.map_err(|e| self.own(e))
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        if !self.info.capabilities().list {
            return Err(Error::unsupported(self.info.id(), "list"));
        }
        let mut merged = BTreeSet::new();
        let mut more = false;
        for member in &self.members {
            let (keys, has_more) =
                Self::take(member.store.as_ref(), options).await.map_err(|e| self.own(e))?;
            merged.extend(keys);
            more |= has_more;
        }
        let limit = options.limit();
        more |= merged.len() > limit;
        let keys: Vec<CredentialKey> = merged.into_iter().take(limit).collect();
        let next_cursor = if more { keys.last().map(ListCursor::after) } else { None };
        Ok(ListPage { keys, next_cursor })
    }

    async fn subscribe(&self) -> Result<ChangeFeed> {
        Err(Error::Unsupported { store: self.info.id().clone(), operation: "change feeds" })
    }

    /// Always [`Error::Unsupported`]: a chain keeps no history of its own.
    async fn get_version(&self, _key: &CredentialKey, _version: &Version) -> Result<Option<Credential>> {
        Err(Error::unsupported(self.info.id(), "version history"))
    }

    /// Always [`Error::Unsupported`]: a chain keeps no history of its own.
    async fn list_versions(
        &self,
        _key: &CredentialKey,
        _options: &VersionListOptions,
    ) -> Result<VersionPage> {
        Err(Error::unsupported(self.info.id(), "version history"))
    }

    /// Purges the key from the writable store; one version is
    /// [`Error::Unsupported`], as the chain keeps no history.
    async fn purge(&self, key: &CredentialKey, target: &PurgeTarget) -> Result<bool> {
        match target {
            PurgeTarget::Key => self.writer()?.purge(key, target).await.map_err(|e| self.own(e)),
            _ => Err(Error::unsupported(self.info.id(), "version history")),
        }
    }

    async fn check_availability(&self) -> Availability {
        let probes =
            futures::future::join_all(self.members.iter().map(|m| m.store.check_availability())).await;
        let Some(primary) = probes.first() else {
            return Availability::down("the fallback chain has no stores");
        };
        let reasons: Vec<String> = self
            .members
            .iter()
            .zip(&probes)
            .filter(|(_, a)| !a.available)
            .map(|(m, a)| format!("'{}': {}", m.store.id(), a.reason.as_deref().unwrap_or("unavailable")))
            .collect();
        Availability {
            available: primary.available,
            reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
        }
    }
}
