//! [`RetryLayer`]: bounded exponential backoff with jitter for retriable
//! errors.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use credstore_core::{
    Availability, ChangeFeed, Credential, CredentialKey, CredentialStore, Error, Layer, ListOptions,
    ListPage, Namespace, PurgeTarget, Result, SetMode, SetOutcome, StoreId, StoreInfo, Version,
    VersionListOptions, VersionPage, WriteRequest,
};
use tokio::time::Instant;

/// Retries the operations of a store that fail with a retriable error
/// ([`Error::is_retriable`]: `Unavailable` and `Conflict`).
///
/// # Behavior
/// - An operation runs at most [`max_attempts`](RetryLayer::with_max_attempts)
///   times (default 3). Between attempts it waits an exponential backoff
///   (default 50 ms, doubling, at most 2 s) with jitter: each wait is drawn
///   uniformly between half the backoff and the whole of it, so clients that
///   failed together do not retry together.
/// - The whole call, attempts and waits, is bounded by a total
///   [`budget`](RetryLayer::with_budget) (default 10 s): no wait is started
///   that would end past it, and an attempt still running when it is spent is
///   abandoned with [`Error::Unavailable`] ("retry budget of N ms spent").
///   Like any timeout, an abandoned write may still reach the backend.
/// - Errors that are not retriable are returned at once, unchanged:
///   [`Error::PreconditionFailed`] in particular is never retried, nor are
///   input errors, `PermissionDenied`, `Integrity`, `Config` or `Backend`.
///   When every attempt fails, the last error is returned.
/// - `get`, `has`, `version`, `list`, `delete` and upserts are retried as
///   they are: repeating them cannot undo another writer's change. A delete
///   whose first attempt deleted the key but failed to answer reports
///   `false` (not found) on the retry.
/// - Conditional writes ([`SetMode::Create`], [`SetMode::Replace`]) are
///   retried too, because the backend checks the condition again on every
///   attempt, so a retry can never overwrite a change it did not expect.
///   The one surprise: when an attempt failed after the backend applied it
///   (a timeout), the retry fails the condition against that very write and
///   returns [`Error::PreconditionFailed`]. Its `reason` then ends with
///   "after a retriable failure of an earlier attempt, which may have made
///   this write"; read the key to tell. Turn
///   [`with_retry_conditional_writes(false)`](RetryLayer::with_retry_conditional_writes)
///   to return the first error of a conditional write instead.
/// - `check_availability` is not retried: it never fails, and a probe
///   should report what it sees.
///
/// Put a [`TimeoutLayer`](credstore_core::layers::TimeoutLayer) inside the
/// retry layer to bound each attempt.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use credstore_core::{layers::TimeoutLayer, CredentialStore, StoreExt};
/// use credstore_layers::RetryLayer;
///
/// fn resilient(store: Arc<dyn CredentialStore>) -> Arc<dyn CredentialStore> {
///     store
///         .with_layer(TimeoutLayer::new(Duration::from_secs(2)))
///         .with_layer(RetryLayer::new().with_max_attempts(4).with_budget(Duration::from_secs(5)))
/// }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct RetryLayer {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    budget: Duration,
    retry_conditional_writes: bool,
}

/// The suffix added to the reason of a [`Error::PreconditionFailed`] that a
/// retried conditional write met after an earlier attempt failed.
pub const RETRIED_PRECONDITION_NOTE: &str =
    "after a retriable failure of an earlier attempt, which may have made this write";

impl Default for RetryLayer {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            budget: Duration::from_secs(10),
            retry_conditional_writes: true,
        }
    }
}

impl RetryLayer {
    /// The defaults: 3 attempts, backoff from 50 ms doubling to at most 2 s,
    /// a total budget of 10 s, conditional writes retried.
    pub fn new() -> Self {
        Self::default()
    }

    /// At most `attempts` attempts per call, the first included; `0` is
    /// taken as `1` (no retry).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The backoff before the second attempt; it doubles for each next one.
    pub fn with_initial_backoff(mut self, backoff: Duration) -> Self {
        self.initial_backoff = backoff;
        self
    }

    /// The longest backoff between two attempts.
    pub fn with_max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
    }

    /// The most time one call may take, all attempts and waits included.
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// Whether create-only and replace-if-version writes are retried (the
    /// default); see the type's documentation for what a retry can report.
    pub fn with_retry_conditional_writes(mut self, retry: bool) -> Self {
        self.retry_conditional_writes = retry;
        self
    }

    /// The most attempts per call.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The total time budget of one call.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// The backoff before attempt `attempt + 1`, before jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

impl Layer for RetryLayer {
    fn layer(&self, inner: Arc<dyn CredentialStore>) -> Arc<dyn CredentialStore> {
        Arc::new(RetryStore { inner, layer: *self })
    }
}

/// A uniform draw from `[d / 2, d]`. Jitter needs no cryptographic
/// randomness: the per-thread keys of `RandomState` are random and each
/// `new` makes a different one.
fn jittered(d: Duration) -> Duration {
    let half = d / 2;
    let span = u64::try_from((d - half).as_nanos()).unwrap_or(u64::MAX);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(span);
    let draw = if span == u64::MAX { hasher.finish() } else { hasher.finish() % (span + 1) };
    half + Duration::from_nanos(draw)
}

/// A store wrapped by [`RetryLayer`].
#[derive(Debug, Clone)]
pub struct RetryStore {
    inner: Arc<dyn CredentialStore>,
    layer: RetryLayer,
}

impl RetryStore {
    /// The wrapped store.
    pub fn inner(&self) -> &Arc<dyn CredentialStore> {
        &self.inner
    }

    /// The policy this store retries with.
    pub fn policy(&self) -> &RetryLayer {
        &self.layer
    }

    async fn run<T, F, Fut>(&self, op: &'static str, retry: bool, call: F) -> Result<T>
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
        T: Send,
    {
        let attempts = if retry { self.layer.max_attempts } else { 1 };
        let info = self.inner.info();
        let target = Target { store: info.id(), namespace: info.namespace(), op };
        self.layer.run(&target, attempts, call).await
    }
}

/// What a retry loop is about, for its errors and log lines.
struct Target<'a> {
    store: &'a StoreId,
    namespace: &'a Namespace,
    op: &'static str,
}

impl RetryLayer {
    /// Runs `call` under this policy, outside any store: for a backend's own
    /// calls (one HTTP request of a multi-step operation, say) or any other
    /// fallible step that answers [`Error`]s. `store` names the store in the
    /// budget's [`Error::Unavailable`]; `op` names the call in log lines.
    ///
    /// # Errors
    /// The first error that is not retriable, the last error when the
    /// attempts or the budget run out, or `Unavailable` when the budget is
    /// spent during an attempt.
    ///
    /// ```
    /// use credstore_core::{Error, StoreId};
    /// use credstore_layers::RetryLayer;
    ///
    /// # async fn demo() -> credstore_core::Result<()> {
    /// let store = StoreId::new("vault")?;
    /// let mut calls = 0;
    /// let answer = RetryLayer::new()
    ///     .retry(&store, "login", || {
    ///         calls += 1;
    ///         let outcome = if calls < 2 { Err(Error::unavailable(&store, "sealed")) } else { Ok(calls) };
    ///         async move { outcome }
    ///     })
    ///     .await?;
    /// assert_eq!(answer, 2);
    /// # Ok(()) }
    /// ```
    pub async fn retry<T, F, Fut>(&self, store: &StoreId, op: &'static str, call: F) -> Result<T>
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
        T: Send,
    {
        let root = Namespace::root();
        let target = Target { store, namespace: &root, op };
        self.run(&target, self.max_attempts, call).await
    }

    async fn run<T, F, Fut>(&self, target: &Target<'_>, attempts: u32, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut + Send,
        Fut: Future<Output = Result<T>> + Send,
        T: Send,
    {
        let start = Instant::now();
        let deadline = start.checked_add(self.budget).unwrap_or_else(|| start + Duration::from_secs(1 << 32));
        let mut attempt = 1;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let result = match tokio::time::timeout(remaining, call()).await {
                Ok(result) => result,
                Err(_) => Err(Error::unavailable(
                    target.store,
                    format!("retry budget of {} ms spent", self.budget.as_millis()),
                )),
            };
            let error = match result {
                Ok(value) => return Ok(value),
                Err(e) if !e.is_retriable() => return Err(annotate(e, attempt)),
                Err(e) => e,
            };
            if attempt >= attempts {
                return Err(error);
            }
            let wait = jittered(self.backoff(attempt));
            if Instant::now() + wait >= deadline {
                return Err(error);
            }
            tracing::debug!(
                store = %target.store,
                namespace = target.namespace.as_str(),
                op = target.op,
                attempt,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                error = %error,
                "retrying after a retriable error"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

/// Marks a precondition failure met by a retry.
fn annotate(error: Error, attempt: u32) -> Error {
    match error {
        Error::PreconditionFailed { store, key, reason } if attempt > 1 => Error::PreconditionFailed {
            store,
            key,
            reason: format!("{reason} ({RETRIED_PRECONDITION_NOTE})"),
        },
        other => other,
    }
}

#[async_trait]
#[deny(clippy::missing_trait_methods)]
impl CredentialStore for RetryStore {
    fn info(&self) -> &StoreInfo {
        self.inner.info()
    }

    fn with_namespace(&self, namespace: &Namespace) -> Result<Arc<dyn CredentialStore>> {
        Ok(self.layer.layer(self.inner.with_namespace(namespace)?))
    }

    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        self.run("get", true, || self.inner.get(key)).await
    }

    async fn get_many(&self, keys: &[CredentialKey]) -> Result<Vec<Option<Credential>>> {
        self.run("get_many", true, || self.inner.get_many(keys)).await
    }

    async fn write(&self, request: &WriteRequest<'_>) -> Result<SetOutcome> {
        let retry = matches!(request.mode(), SetMode::Upsert) || self.layer.retry_conditional_writes;
        self.run("set", retry, || self.inner.write(request)).await
    }

    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        self.run("has", true, || self.inner.has(key)).await
    }

    async fn version(&self, key: &CredentialKey) -> Result<Option<Version>> {
        self.run("version", true, || self.inner.version(key)).await
    }

    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        self.run("delete", true, || self.inner.delete(key)).await
    }

    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.run("list", true, || self.inner.list(options)).await
    }

    async fn subscribe(&self) -> Result<ChangeFeed> {
        self.inner.subscribe().await
    }

    async fn get_version(&self, key: &CredentialKey, version: &Version) -> Result<Option<Credential>> {
        self.run("get_version", true, || self.inner.get_version(key, version)).await
    }

    async fn list_versions(&self, key: &CredentialKey, options: &VersionListOptions) -> Result<VersionPage> {
        self.run("list_versions", true, || self.inner.list_versions(key, options)).await
    }

    async fn purge(&self, key: &CredentialKey, target: &PurgeTarget) -> Result<bool> {
        self.run("purge", true, || self.inner.purge(key, target)).await
    }

    async fn check_availability(&self) -> Availability {
        self.inner.check_availability().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryLayer::new()
            .with_initial_backoff(Duration::from_millis(10))
            .with_max_backoff(Duration::from_millis(70));
        assert_eq!(p.backoff(1), Duration::from_millis(10));
        assert_eq!(p.backoff(2), Duration::from_millis(20));
        assert_eq!(p.backoff(3), Duration::from_millis(40));
        assert_eq!(p.backoff(4), Duration::from_millis(70));
        assert_eq!(p.backoff(200), Duration::from_millis(70));
        assert_eq!(RetryLayer::new().with_max_attempts(0).max_attempts(), 1);
    }

    #[test]
    fn jitter_stays_between_half_and_whole() {
        let d = Duration::from_millis(100);
        let draws: Vec<Duration> = (0..200).map(|_| jittered(d)).collect();
        assert!(draws.iter().all(|w| *w >= d / 2 && *w <= d), "{draws:?}");
        // Not constant: jitter spreads the waits.
        assert!(draws.iter().any(|w| *w != draws[0]));
        assert_eq!(jittered(Duration::ZERO), Duration::ZERO);
    }
}
