//! A store whose opening failed with a retriable error (a key provider or
//! a service that cannot be reached: [`Error::Unavailable`]): served as
//! unavailable with that reason, and opened again by its availability
//! prober until it opens; from then on it serves, without a restart.
//!
//! See [`PendingStore`].

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use credstore_core::{
    async_trait, Availability, Capabilities, ChangeFeed, ChangeHub, Credential, CredentialKey,
    CredentialStore, CredentialStoreExt, Error, ListOptions, ListPage, Namespace, PurgeTarget, Result,
    SetOutcome, StoreInfo, Version, VersionListOptions, VersionPage, WriteRequest,
};
use tokio::sync::watch;
use tokio::time::Instant;

use super::failure::FAILED_TO_OPEN;
use crate::config::StoreSpec;

/// How a [`PendingStore`] tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// The probe interval: openings start at most once per 90 % of it.
    pub interval: Duration,
    /// How long one opening may take.
    pub open_timeout: Duration,
}

impl Retry {
    /// The retry of `settings`: its probe interval and store timeout.
    pub fn of(settings: &crate::config::Settings) -> Self {
        Self { interval: settings.probe_interval, open_timeout: settings.store_timeout }
    }

    fn min_gap(&self) -> Duration {
        self.interval.mul_f64(0.9)
    }
}

impl Default for Retry {
    /// The defaults: the default probe interval and a 10 s opening.
    fn default() -> Self {
        Self { interval: crate::config::DEFAULT_PROBE_INTERVAL, open_timeout: Duration::from_secs(10) }
    }
}

struct State {
    /// Why the store is not open (the last opening's error).
    reason: String,
    /// The last opening failed with a non-retriable error: no more.
    failed: bool,
    in_flight: bool,
    last_start: Instant,
}

struct Shared {
    spec: StoreSpec,
    retry: Retry,
    opened: OnceLock<Arc<dyn CredentialStore>>,
    state: Mutex<State>,
    /// Bumped when an opening ends.
    done: watch::Sender<u64>,
    /// The feeds handed out once the store opened without a change feed of
    /// its own: each is told so once ([`ChangeHub::lost`]) and then stays
    /// quiet while this lives.
    no_feed: ChangeHub,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reason(&self) -> String {
        self.state().reason.clone()
    }

    /// Starts an opening when allowed; whether one is in flight now.
    fn start(self: &Arc<Self>) -> bool {
        let mut state = self.state();
        if self.opened.get().is_some() || state.failed {
            return false;
        }
        if state.in_flight {
            return true;
        }
        if state.last_start.elapsed() < self.retry.min_gap() {
            return false;
        }
        state.in_flight = true;
        state.last_start = Instant::now();
        drop(state);
        let shared = Arc::clone(self);
        tokio::spawn(async move { shared.attempt().await });
        true
    }

    async fn attempt(&self) {
        let id = self.spec.id();
        let timeout = self.retry.open_timeout;
        let outcome = tokio::time::timeout(timeout, self.spec.open()).await;
        {
            let mut state = self.state();
            match outcome {
                Ok(Ok(store)) => {
                    tracing::info!(store = %id, kind = %store.kind(), "store opened on a later attempt");
                    let _ = self.opened.set(store);
                }
                Ok(Err(e @ Error::Unavailable { .. })) => {
                    tracing::debug!(store = %id, error = %e, "store still cannot be opened; tried again later");
                    state.reason = retriable_reason(&e);
                }
                Ok(Err(e)) => {
                    tracing::error!(store = %id, error = %e, "cannot open store; no more attempts");
                    state.reason = format!("{FAILED_TO_OPEN}{e}");
                    state.failed = true;
                }
                Err(_) => {
                    state.reason =
                        format!("opening took longer than {} ms; tried again", timeout.as_millis());
                }
            }
            state.in_flight = false;
        }
        self.done.send_modify(|n| *n += 1);
    }
}

/// The reason of a store whose opening failed with the retriable `err`.
fn retriable_reason(err: &Error) -> String {
    format!("{err} (opening is tried again at each probe)")
}

/// A store whose opening failed with a retriable error, opened again by
/// its prober.
///
/// # Behavior
/// - Every call fails with [`Error::Unavailable`] carrying the last
///   opening's reason (input is still checked first, as by every store);
///   its probe answers unavailable with that reason, which the store list
///   shows as `unreachable` (the prober logs the words).
/// - A probe starts one opening in a task of its own and waits for it as
///   long as the probe may take; the opening goes on past the probe's
///   timeout, bounded by its own (the store timeout). At most one opening
///   runs at a time, and a probe starts none sooner than 90 % of the probe
///   interval after the previous one started (the prober's jitter floor),
///   so on-demand probes cannot hammer the provider.
/// - An opening that succeeds makes every handle, those made before
///   included, serve through the opened store.
/// - An opening that fails with any other error (a wrong key, a bad
///   setting) leaves the store failed as a store that never opened is:
///   [`FAILED_TO_OPEN`] and the reason, and no more openings.
/// - Until it opens it declares a change feed
///   ([`Capabilities::change_feed`]), since a cache in front of it decides
///   when it is set up whether to follow one: `subscribe` fails with
///   [`Error::Unavailable`] until the store opens (a cache tries again with
///   its backoff), then is the opened store's own feed; for a store opened
///   without one, a feed that reports itself lost once, with that reason,
///   and then stays quiet, so a cache stays on its TTL without subscribing
///   again.
pub struct PendingStore {
    shared: Arc<Shared>,
    info: StoreInfo,
    /// This handle on the opened store, once it is open.
    target: OnceLock<Arc<dyn CredentialStore>>,
}

impl std::fmt::Debug for PendingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingStore")
            .field("id", self.info.id())
            .field("namespace", self.info.namespace())
            .field("opened", &self.shared.opened.get().is_some())
            .finish_non_exhaustive()
    }
}

impl PendingStore {
    /// The store of `spec`, whose opening just failed with the retriable
    /// `err`, tried again as `retry` says. The first retry waits for 90 %
    /// of the interval.
    pub fn arc(spec: StoreSpec, err: &Error, retry: Retry) -> Arc<dyn CredentialStore> {
        // A change feed is declared: a cache set up now follows the opened
        // store's feed once it has one (see `subscribe`).
        let info =
            StoreInfo::new(spec.id().clone(), spec.kind(), Capabilities::full().with_change_feed(true));
        let state = State {
            reason: retriable_reason(err),
            failed: false,
            in_flight: false,
            last_start: Instant::now(),
        };
        let (done, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            spec,
            retry,
            opened: OnceLock::new(),
            state: Mutex::new(state),
            done,
            no_feed: ChangeHub::new(1),
        });
        Arc::new(Self { shared, info, target: OnceLock::new() })
    }

    /// This handle on the opened store, when it is open.
    fn target(&self) -> Option<Result<&Arc<dyn CredentialStore>>> {
        if let Some(t) = self.target.get() {
            return Some(Ok(t));
        }
        let opened = self.shared.opened.get()?;
        let ns = self.info.namespace();
        let handle = if ns.is_root() {
            Arc::clone(opened)
        } else {
            match opened.with_namespace(ns) {
                Ok(h) => h,
                Err(e) => return Some(Err(e)),
            }
        };
        Some(Ok(self.target.get_or_init(|| handle)))
    }

    /// The opened handle, or the error of a store not open.
    fn open(&self) -> Result<&Arc<dyn CredentialStore>> {
        match self.target() {
            Some(t) => t,
            None => Err(Error::unavailable(self.info.id(), self.shared.reason())),
        }
    }
}

#[async_trait]
impl CredentialStore for PendingStore {
    fn info(&self) -> &StoreInfo {
        match self.target() {
            Some(Ok(t)) => t.info(),
            _ => &self.info,
        }
    }

    fn with_namespace(&self, namespace: &Namespace) -> Result<Arc<dyn CredentialStore>> {
        let info = self.info.join(namespace)?;
        Ok(Arc::new(Self { shared: Arc::clone(&self.shared), info, target: OnceLock::new() }))
    }

    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        self.open()?.get(key).await
    }

    async fn get_many(&self, keys: &[CredentialKey]) -> Result<Vec<Option<Credential>>> {
        self.open()?.get_many(keys).await
    }

    async fn write(&self, request: &WriteRequest<'_>) -> Result<SetOutcome> {
        self.open()?.write(request).await
    }

    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        self.open()?.has(key).await
    }

    async fn version(&self, key: &CredentialKey) -> Result<Option<Version>> {
        self.open()?.version(key).await
    }

    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        self.open()?.delete(key).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.open()?.list(options).await
    }

    async fn get_version(&self, key: &CredentialKey, version: &Version) -> Result<Option<Credential>> {
        self.open()?.get_version(key, version).await
    }

    async fn list_versions(&self, key: &CredentialKey, options: &VersionListOptions) -> Result<VersionPage> {
        self.open()?.list_versions(key, options).await
    }

    async fn purge(&self, key: &CredentialKey, target: &PurgeTarget) -> Result<bool> {
        self.open()?.purge(key, target).await
    }

    async fn subscribe(&self) -> Result<ChangeFeed> {
        let target = self.open()?;
        if target.info().capabilities().change_feed {
            return target.subscribe().await;
        }
        let feed = self.shared.no_feed.subscribe(self.info.namespace());
        self.shared.no_feed.lost(format!("store '{}' has no change feed", self.info.id()));
        Ok(feed)
    }

    async fn check_availability(&self) -> Availability {
        if self.target().is_none() {
            let mut done = self.shared.done.subscribe();
            if self.shared.start() {
                // The probe's own timeout bounds this wait; the opening
                // goes on without it.
                let _ = done.changed().await;
            }
        }
        match self.target() {
            Some(Ok(t)) => t.check_availability().await,
            Some(Err(e)) => Availability::down(e.to_string()),
            None => Availability::down(self.shared.reason()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use credstore_core::config::ConfigContext;
    use credstore_core::{Metadata, SecretValue, StoreId, StoreKind};
    use credstore_memory::MemoryStore;

    use super::*;
    use crate::config::backends::Backends;

    #[derive(Debug, Clone, serde::Deserialize)]
    struct NoSettings {}

    /// What the test's opening answers next: `Err(true)` unreachable,
    /// `Err(false)` a wrong key, `Ok` a store.
    #[derive(Default)]
    struct Script {
        opens: AtomicUsize,
        unreachable_left: AtomicUsize,
        wrong_key: std::sync::atomic::AtomicBool,
    }

    /// A spec of type `flaky` whose opening takes 50 ms, then follows `script`.
    fn spec(script: Arc<Script>) -> StoreSpec {
        let mut backends = Backends::new();
        backends.register(StoreKind::from_static("flaky"), move |id: StoreId, _: NoSettings, _ctx| {
            let script = Arc::clone(&script);
            async move {
                script.opens.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                if script.wrong_key.load(Ordering::SeqCst) {
                    return Err(Error::config(&id, "wrong key-encryption key: test"));
                }
                if script.unreachable_left.load(Ordering::SeqCst) > 0 {
                    script.unreachable_left.fetch_sub(1, Ordering::SeqCst);
                    return Err(Error::unavailable(&id, "kms.test: connection refused"));
                }
                Ok(MemoryStore::new(id))
            }
        });
        backends
            .spec(StoreId::new("team").unwrap(), "flaky", toml::Table::new(), ConfigContext::new("."))
            .unwrap()
    }

    const RETRY: Retry = Retry { interval: Duration::from_secs(10), open_timeout: Duration::from_secs(5) };

    fn pending(script: &Arc<Script>) -> Arc<dyn CredentialStore> {
        let first = Error::unavailable(&StoreId::new("team").unwrap(), "kms.test: connection refused");
        PendingStore::arc(spec(Arc::clone(script)), &first, RETRY)
    }

    #[tokio::test(start_paused = true)]
    async fn one_opening_at_a_time_at_most_once_per_interval_then_it_serves_every_handle() {
        let script = Arc::new(Script::default());
        script.unreachable_left.store(1, Ordering::SeqCst);
        let store = pending(&script);
        let ns = Namespace::new("t/p").unwrap();
        let early = store.with_namespace(&ns).unwrap();
        let key = CredentialKey::new("k").unwrap();
        let err = early.set(&key, &SecretValue::from("v"), &Metadata::new()).await.unwrap_err();
        assert!(
            matches!(err, Error::Unavailable { .. }) && err.to_string().contains("connection refused"),
            "{err}"
        );
        // Within the interval: no opening at all.
        let a = store.check_availability().await;
        assert!(
            !a.available && a.reason.as_deref().unwrap().contains("kms.test: connection refused"),
            "{a:?}"
        );
        assert_eq!(script.opens.load(Ordering::SeqCst), 0);

        // Many probes at once past the interval: one opening, which fails.
        tokio::time::advance(Duration::from_secs(9)).await;
        let probes = futures::future::join_all((0..20).map(|_| store.check_availability())).await;
        assert_eq!(script.opens.load(Ordering::SeqCst), 1, "no pile-up");
        assert!(probes.iter().all(|a| !a.available && a.reason.as_deref().unwrap().contains("tried again")));
        store.check_availability().await;
        assert_eq!(script.opens.load(Ordering::SeqCst), 1, "none sooner than the interval");

        // The provider is back: the next probe opens it, and every handle,
        // the one made before included, serves.
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(store.check_availability().await.available);
        assert_eq!(script.opens.load(Ordering::SeqCst), 2);
        early.set(&key, &SecretValue::from("v"), &Metadata::new()).await.unwrap();
        let again = store.with_namespace(&ns).unwrap();
        assert_eq!(again.get(&key).await.unwrap().unwrap().value.expose_secret(), b"v");
        assert_eq!(again.kind().as_str(), "memory", "the opened store's info");
        tokio::time::advance(Duration::from_secs(60)).await;
        store.check_availability().await;
        assert_eq!(script.opens.load(Ordering::SeqCst), 2, "no opening once open");
    }

    /// Waits (in paused time) until `cache`'s feed is live or not, as `live` says.
    async fn until_feed(cache: &credstore_layers::CachedStore, live: bool) {
        for _ in 0..100 {
            if cache.stats().feed_live == live {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the cache's feed is not live = {live}: {:?}", cache.stats());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cache_set_up_while_the_store_is_pending_follows_its_change_feed_once_it_opens() {
        let script = Arc::new(Script::default());
        let store = pending(&script);
        assert!(store.info().capabilities().change_feed, "declared before the opening");
        let err = store.subscribe().await.unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err}");
        let cache =
            credstore_layers::CacheLayer::new().with_ttl(Duration::from_secs(600)).build(store.clone());
        let key = CredentialKey::new("k").unwrap();
        assert!(matches!(cache.get(&key).await, Err(Error::Unavailable { .. })));
        assert_eq!(cache.stats().feed_lost, 1, "no feed while pending");

        // It opens: the cache's next subscription is the memory store's feed.
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(store.check_availability().await.available);
        store.set(&key, &SecretValue::from("one"), &Metadata::new()).await.unwrap();
        until_feed(&cache, true).await;
        assert_eq!(cache.get(&key).await.unwrap().unwrap().value.expose_secret(), b"one");
        // Another writer (a handle past the cache): dropped from the cache
        // at once, the 10 minutes of TTL notwithstanding.
        store.set(&key, &SecretValue::from("two"), &Metadata::new()).await.unwrap();
        for _ in 0..100 {
            if cache.stats().feed_invalidations == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(cache.get(&key).await.unwrap().unwrap().value.expose_secret(), b"two");
    }

    #[tokio::test(start_paused = true)]
    async fn a_store_opened_without_a_change_feed_says_so_once_and_its_cache_stays_on_its_ttl() {
        let mut backends = Backends::new();
        backends
            .register(StoreKind::from_static("feedless"), |id: StoreId, _: NoSettings, _ctx| async move {
                Ok(credstore_conformance::mock::MockStore::new(id))
            });
        let spec = backends
            .spec(StoreId::new("team").unwrap(), "feedless", toml::Table::new(), ConfigContext::new("."))
            .unwrap();
        let first = Error::unavailable(&StoreId::new("team").unwrap(), "connection refused");
        let store = PendingStore::arc(spec, &first, RETRY);
        let cache = credstore_layers::CacheLayer::new().build(store.clone());
        let key = CredentialKey::new("k").unwrap();
        assert!(cache.get(&key).await.is_err());
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(store.check_availability().await.available);
        assert!(!store.info().capabilities().change_feed, "the opened store's own capabilities");
        let mut feed = store.subscribe().await.unwrap();
        let event = feed.next().await.unwrap();
        assert_eq!(
            event,
            credstore_core::FeedEvent::Lost { reason: "store 'team' has no change feed".into() }
        );
        // The cache subscribed again (at most 5 s later), was told the same
        // (a second loss: while pending, then for good), and stays down
        // without subscribing again.
        assert!(cache.get(&key).await.unwrap().is_none());
        tokio::time::sleep(Duration::from_secs(6)).await;
        let settled = cache.stats();
        assert!(!settled.feed_live, "{settled:?}");
        assert_eq!(settled.feed_lost, 2, "{settled:?}");
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(cache.stats().feed_lost, 2, "no more subscriptions: {:?}", cache.stats());
        // Every feed of the hub hears each new subscriber's loss (the
        // cache's, here), and nothing else.
        assert_eq!(feed.next().await, Some(event));
        assert!(tokio::time::timeout(Duration::from_secs(60), feed.next()).await.is_err(), "then quiet");
    }

    #[tokio::test(start_paused = true)]
    async fn a_non_retriable_failure_on_a_later_attempt_stays_failed() {
        let script = Arc::new(Script::default());
        script.wrong_key.store(true, Ordering::SeqCst);
        let store = pending(&script);
        tokio::time::advance(Duration::from_secs(9)).await;
        let a = store.check_availability().await;
        let reason = a.reason.unwrap();
        assert!(
            reason.starts_with(FAILED_TO_OPEN) && reason.contains("wrong key-encryption key"),
            "{reason}"
        );
        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!store.check_availability().await.available);
        assert_eq!(script.opens.load(Ordering::SeqCst), 1, "no more openings");
    }
}
