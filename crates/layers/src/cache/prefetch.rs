//! What a cache reads at start ([`CacheBuilder::prefetch_keys`],
//! [`CacheBuilder::prefetch_prefix`]), and when: the keys, and the jittered
//! times of their batches.
//!
//! [`CacheBuilder::prefetch_keys`]: super::CacheBuilder::prefetch_keys
//! [`CacheBuilder::prefetch_prefix`]: super::CacheBuilder::prefetch_prefix

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use credstore_core::{CredentialKey, CredentialStore, ListOptions, Result, MAX_PAGE_SIZE};

/// The default bound of the random delay before a prefetch, and of the
/// spread of its batches: 1 s.
pub const DEFAULT_PREFETCH_JITTER: Duration = Duration::from_secs(1);

/// The keys a cache reads at start and the bound of its jitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    pub(super) keys: Vec<CredentialKey>,
    /// Every key with this prefix too, listed at start.
    pub(super) prefix: Option<String>,
    pub(super) jitter: Duration,
}

impl Default for Plan {
    fn default() -> Self {
        Self { keys: Vec::new(), prefix: None, jitter: DEFAULT_PREFETCH_JITTER }
    }
}

impl Plan {
    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.prefix.is_none()
    }

    /// The listed keys, then those under the prefix, each once, at most
    /// `max` of them.
    pub(super) async fn keys(&self, store: &dyn CredentialStore, max: usize) -> Result<Vec<CredentialKey>> {
        let mut seen = HashSet::new();
        let mut keys: Vec<CredentialKey> = Vec::new();
        for key in &self.keys {
            if keys.len() < max && seen.insert(key.clone()) {
                keys.push(key.clone());
            }
        }
        let Some(prefix) = &self.prefix else { return Ok(keys) };
        let mut options = ListOptions::new().with_prefix(prefix.clone())?.with_limit(MAX_PAGE_SIZE)?;
        while keys.len() < max {
            let page = store.list(&options).await?;
            for key in page.keys {
                if keys.len() < max && seen.insert(key.clone()) {
                    keys.push(key);
                }
            }
            match page.next_cursor {
                Some(cursor) => options = options.with_cursor(Some(cursor)),
                None => break,
            }
        }
        Ok(keys)
    }
}

/// A uniform draw from `[0, max]`. Jitter needs no cryptographic
/// randomness: the per-thread keys of `RandomState` are random and each
/// `new` makes a different one.
pub(super) fn draw(max: Duration) -> Duration {
    let span = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    if span == 0 {
        return Duration::ZERO;
    }
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(span);
    let n = hasher.finish();
    Duration::from_nanos(if span == u64::MAX { n } else { n % (span + 1) })
}

/// When each of `batches` batches starts, after the start of the prefetch:
/// the first after a random delay of at most `jitter`, the others at random
/// times between it and `jitter`, in order. None is later than `jitter`.
pub(super) fn schedule(batches: usize, jitter: Duration) -> Vec<Duration> {
    let first = draw(jitter);
    let mut offsets: Vec<Duration> = (1..batches).map(|_| first + draw(jitter - first)).collect();
    offsets.sort();
    offsets.insert(0, first);
    offsets.truncate(batches);
    offsets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_starts_every_batch_within_the_jitter_in_order() {
        let jitter = Duration::from_secs(5);
        for batches in [0, 1, 2, 10] {
            let times = schedule(batches, jitter);
            assert_eq!(times.len(), batches);
            assert!(times.windows(2).all(|w| w[0] <= w[1]), "in order: {times:?}");
            assert!(times.iter().all(|t| *t <= jitter), "within the bound: {times:?}");
        }
        let spread = schedule(10, jitter);
        assert_ne!(spread.first(), spread.last(), "batches are spread, not started at once: {spread:?}");
        assert_eq!(schedule(3, Duration::ZERO), [Duration::ZERO; 3], "no jitter: at once");
    }
}
