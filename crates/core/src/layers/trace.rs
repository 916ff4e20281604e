//! [`TraceLayer`]: a `tracing` span around every operation.

use tracing::Instrument;

use super::{Around, AroundStore, Call, CallFuture, ProbeFuture};

/// Runs every call inside a `credstore` span with the fields `store`,
/// `namespace`, `op` and `key` (where there is one). The value is never
/// recorded. Errors are logged at `debug` level with their message, which by
/// contract holds no secret.
///
/// [`crate::StoreRegistry`] puts every store it holds in one.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceLayer;

/// A store wrapped by [`TraceLayer`].
pub type TracedStore = AroundStore<TraceLayer>;

impl TraceLayer {
    /// The layer.
    pub fn new() -> Self {
        Self
    }
}

fn span(call: &Call<'_>) -> tracing::Span {
    let key = call.key.map(|k| k.as_str()).unwrap_or("");
    let (store, namespace, op) = (call.store.id(), call.store.namespace().as_str(), call.operation.as_str());
    tracing::debug_span!("credstore", store = %store, namespace, op, key)
}

impl Around for TraceLayer {
    fn around<'a, T: Send + 'a>(
        &'a self,
        call: Call<'a>,
        op: impl CallFuture<'a, T>,
    ) -> impl CallFuture<'a, T> {
        let span = span(&call);
        async move {
            let result = op.await;
            if let Err(e) = &result {
                tracing::debug!(error = %e, retriable = e.is_retriable(), "operation failed");
            }
            result
        }
        .instrument(span)
    }

    fn around_probe<'a>(&'a self, call: Call<'a>, probe: impl ProbeFuture<'a>) -> impl ProbeFuture<'a> {
        let span = span(&call);
        async move {
            let a = probe.await;
            if !a.available {
                tracing::debug!(reason = a.reason.as_deref().unwrap_or(""), "store unavailable");
            }
            a
        }
        .instrument(span)
    }
}
