//! [`Clock`]: where a store reads the time it compares expiry and retention
//! against, so that tests can move it instead of sleeping.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The time a store decides expiry ([`SetOptions::expires_at`](crate::SetOptions::expires_at))
/// and age-based retention ([`Retention::max_age`](crate::Retention::max_age)) by.
///
/// A store reads it from its [`StoreInfo::clock`](crate::StoreInfo::clock);
/// every store runs on [`SystemClock`] unless its builder was given another,
/// as tests give a [`ManualClock`] to reach an expiry boundary without
/// sleeping. Timestamps a backend's server sets (Vault's `created_time`)
/// stay the server's own.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system's wall clock: [`SystemTime::now`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that stands still until told to move: what tests hand a store to
/// cross an expiry or retention boundary at an exact instant.
///
/// Clones share one time.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use credstore_core::{Clock, ManualClock};
/// let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000));
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(shared.now(), SystemTime::UNIX_EPOCH + Duration::from_secs(1_005));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<SystemTime>>);

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: SystemTime) -> Self {
        Self(Arc::new(Mutex::new(now)))
    }

    /// A clock showing the system time when it is made.
    pub fn starting_now() -> Self {
        Self::new(SystemTime::now())
    }

    /// Sets the time to `now` (which may be earlier than before).
    pub fn set(&self, now: SystemTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = now;
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
