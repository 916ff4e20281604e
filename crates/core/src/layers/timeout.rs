//! [`TimeoutLayer`]: a deadline on every operation.

use std::time::Duration;

use super::{Around, AroundStore, Call, CallFuture, ProbeFuture};
use crate::{Availability, Error, Result};

/// Bounds every call of the wrapped store by one duration.
///
/// # Behavior
/// - An operation that does not finish in time fails with
///   [`Error::Unavailable`] ("no answer within N ms"), which is retriable; a
///   probe answers `available: false` with the same reason.
/// - A write that timed out may still reach the backend afterwards: read
///   before retrying a create-only write.
///
/// ```
/// use std::{sync::Arc, time::Duration};
/// use credstore_core::{layers::TimeoutLayer, CredentialStore, StoreExt};
/// fn bounded(store: Arc<dyn CredentialStore>) -> Arc<dyn CredentialStore> {
///     store.with_layer(TimeoutLayer::new(Duration::from_secs(3)))
/// }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    timeout: Duration,
}

/// A store wrapped by [`TimeoutLayer`].
pub type TimeoutStore = AroundStore<TimeoutLayer>;

impl TimeoutLayer {
    /// A layer that gives every operation `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }

    /// The duration each operation gets.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn reason(&self) -> String {
        format!("no answer within {} ms", self.timeout.as_millis())
    }
}

impl Around for TimeoutLayer {
    async fn around<'a, T: Send + 'a>(&'a self, call: Call<'a>, op: impl CallFuture<'a, T>) -> Result<T> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(result) => result,
            Err(_) => Err(Error::unavailable(call.store.id(), self.reason())),
        }
    }

    async fn around_probe<'a>(&'a self, _call: Call<'a>, probe: impl ProbeFuture<'a>) -> Availability {
        tokio::time::timeout(self.timeout, probe).await.unwrap_or_else(|_| Availability::down(self.reason()))
    }
}
