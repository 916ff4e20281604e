//! Prometheus metrics: `/metrics` in the OpenMetrics text format (which
//! Prometheus scrapes natively), built with the `prometheus-client` crate.
//!
//! | series | type | labels |
//! | --- | --- | --- |
//! | `credstore_http_requests_total` | counter | `method`, `route` (the matched path template, such as `/manage/tenants/{tenantId}/projects/{projectId}/credential-stores`; `unmatched` for a path no route knows), `status` |
//! | `credstore_http_request_duration_seconds` | histogram | `method`, `route` |
//! | `credstore_store_operations_total` | counter | `store`, `operation` (`get`, `set`, `has`, `version`, `delete`, `list`, `check_availability`, `subscribe`), `outcome` (`ok` or the error's class: `unavailable`, `invalid`, `precondition_failed`, `conflict`, `permission_denied`, `config`, `integrity`, `unsupported`, `backend`, `other`) |
//! | `credstore_store_operation_duration_seconds` | histogram | `store`, `operation` |
//! | `credstore_store_available` | gauge | `store`: 1 when its last probe said available, else 0 |
//! | `credstore_store_probes_total` | counter | `store`, `outcome` (`available`, `unavailable`) |
//! | `credstore_store_probe_duration_seconds` | histogram | `store` |
//! | `credstore_cache_hits_total`, `_misses_total`, `_loads_total`, `_stale_served_total`, `_evictions_total`, `_expirations_total`, `_revalidations_total` | counter | `store` (stores with a read-through cache only) |
//! | `credstore_cache_entries` | gauge | `store` |
//! | `credstore_cache_feed_invalidations_total`, `credstore_cache_feed_lost_total` | counter | `store`: entries dropped because the store's change feed reported their key changed; times the feed was lost (the cache then sees other writers' changes at its TTL) |
//! | `credstore_cache_feed_live` | gauge | `store`: 1 while the cache follows the store's change feed, 0 without a feed, before the first read and while the feed is lost |
//!
//! Labels never hold a raw request path, a tenant, a project, a key or a
//! value: routes are templates and stores are the configured ids, so the
//! number of series stays bounded.
//!
//! Store operations are counted by [`MetricsLayer`], which the server puts
//! over each store's timeout layer (so a call over the store timeout counts
//! as `unavailable`) and under its read-through cache (so a cache hit is not
//! a store operation). Probes are counted by the store prober
//! ([`crate::status`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use credstore_core::layers::{Around, AroundStore, Call, CallFuture, ProbeFuture};
use credstore_core::{Availability, Error, Result, StoreId};
use credstore_layers::{CacheStats, CachedStore};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `route` label of a request no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Latency buckets, in seconds: 0.5 ms to about 33 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.0005, 2.0, 17)
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OpLabels {
    store: String,
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OpTimeLabels {
    store: String,
    operation: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StoreLabels {
    store: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ProbeLabels {
    store: String,
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The read-through caches' figures, read from their
/// [`stats`](CachedStore::stats) at each scrape.
#[derive(Debug, Default)]
struct CacheCollector {
    caches: Mutex<Vec<(String, Arc<CachedStore>)>>,
}

type CacheCounter = (&'static str, &'static str, fn(&CacheStats) -> u64);

const CACHE_COUNTERS: [CacheCounter; 9] = [
    ("cache_hits", "Reads answered from a fresh cache entry", |s| s.hits),
    ("cache_misses", "Reads that found no fresh cache entry", |s| s.misses),
    ("cache_loads", "Reads the cache made of the store (one per single flight)", |s| s.loads),
    ("cache_stale_served", "Reads answered with an expired value while the store failed", |s| s.stale_served),
    ("cache_evictions", "Cache entries dropped to make room", |s| s.evictions),
    ("cache_expirations", "Cache entries dropped because their time was up", |s| s.expirations),
    ("cache_revalidations", "Expired cache entries kept because the version had not changed", |s| {
        s.revalidations
    }),
    (
        "cache_feed_invalidations",
        "Cache entries dropped because the store's change feed reported their key changed",
        |s| s.feed_invalidations,
    ),
    ("cache_feed_lost", "Times the cache lost the store's change feed and fell back to its TTL", |s| {
        s.feed_lost
    }),
];

impl Collector for CacheCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::result::Result<(), fmt::Error> {
        let stats: Vec<(StoreLabels, CacheStats)> = self
            .caches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(store, cache)| (StoreLabels { store: store.clone() }, cache.stats()))
            .collect();
        if stats.is_empty() {
            return Ok(());
        }
        for (name, help, value) in CACHE_COUNTERS {
            let kind = ConstCounter::new(0u64).metric_type();
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for (labels, s) in &stats {
                ConstCounter::new(value(s)).encode(family.encode_family(labels)?)?;
            }
        }
        let kind = ConstGauge::new(0i64).metric_type();
        let mut family =
            encoder.encode_descriptor("cache_entries", "Entries held by the cache now", None, kind)?;
        for (labels, s) in &stats {
            ConstGauge::new(i64::try_from(s.entries).unwrap_or(i64::MAX))
                .encode(family.encode_family(labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "cache_feed_live",
            "Whether the cache follows the store's change feed now (1), or sees other writers' changes at its TTL (0: no feed, none yet, or lost)",
            None,
            kind,
        )?;
        for (labels, s) in &stats {
            ConstGauge::new(i64::from(s.feed_live)).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}

/// Handles on the series of label sets already seen, keyed by the label
/// values joined in a byte string, so a request or store call finds its
/// counter and histogram without building a label set (no allocation once
/// a combination has been seen).
struct HandleCache<V> {
    map: RwLock<HashMap<Box<[u8]>, V>>,
}

impl<V> Default for HandleCache<V> {
    fn default() -> Self {
        Self { map: RwLock::new(HashMap::new()) }
    }
}

impl<V: Clone> HandleCache<V> {
    /// The handles of `parts` (joined with a separator no label value holds
    /// in this position), made by `make` on first sight.
    fn get(&self, parts: &[&[u8]], make: impl FnOnce() -> V) -> V {
        let mut stack = [0u8; 256];
        let mut heap = Vec::new();
        let len: usize = parts.iter().map(|p| p.len() + 1).sum();
        let key: &mut [u8] = if len <= stack.len() {
            &mut stack[..len]
        } else {
            heap.resize(len, 0);
            &mut heap
        };
        let mut at = 0;
        for part in parts {
            key[at..at + part.len()].copy_from_slice(part);
            // Labels are text: a 0 byte never occurs inside one.
            key[at + part.len()] = 0;
            at += part.len() + 1;
        }
        let key: &[u8] = key;
        if let Some(v) = self.map.read().unwrap_or_else(|e| e.into_inner()).get(key) {
            return v.clone();
        }
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.entry(key.into()).or_insert_with(make).clone()
    }
}

/// Every metric of one server, in its own registry (nothing global, so
/// several servers in one process keep separate figures).
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: HistogramFamily<RouteLabels>,
    operations: Family<OpLabels, Counter>,
    operation_seconds: HistogramFamily<OpTimeLabels>,
    available: Family<StoreLabels, Gauge>,
    probes: Family<ProbeLabels, Counter>,
    probe_seconds: HistogramFamily<StoreLabels>,
    caches: Arc<CacheCollector>,
    request_handles: HandleCache<(Counter, Histogram)>,
    operation_handles: HandleCache<(Counter, Histogram)>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every series of the [module docs](self), empty.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("credstore");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds = HistogramFamily::<RouteLabels>::new_with_constructor(latency_histogram);
        let operations = Family::<OpLabels, Counter>::default();
        let operation_seconds = HistogramFamily::<OpTimeLabels>::new_with_constructor(latency_histogram);
        let available = Family::<StoreLabels, Gauge>::default();
        let probes = Family::<ProbeLabels, Counter>::default();
        let probe_seconds = HistogramFamily::<StoreLabels>::new_with_constructor(latency_histogram);
        registry.register("http_requests", "HTTP requests by route template and status", requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route template",
            request_seconds.clone(),
        );
        registry.register(
            "store_operations",
            "Calls that reached a store (cache hits excluded), by store, operation and outcome",
            operations.clone(),
        );
        registry.register(
            "store_operation_duration_seconds",
            "Latency of store calls by store and operation",
            operation_seconds.clone(),
        );
        registry.register(
            "store_available",
            "1 when the store's last availability probe said available, else 0",
            available.clone(),
        );
        registry.register("store_probes", "Availability probes by store and outcome", probes.clone());
        registry.register(
            "store_probe_duration_seconds",
            "How long availability probes took",
            probe_seconds.clone(),
        );
        let caches = Arc::new(CacheCollector::default());
        registry.register_collector(Box::new(caches.clone()));
        Self {
            registry,
            requests,
            request_seconds,
            operations,
            operation_seconds,
            available,
            probes,
            probe_seconds,
            caches,
            request_handles: HandleCache::default(),
            operation_handles: HandleCache::default(),
        }
    }

    /// Exposes the figures of `cache`, the read-through cache of `store`
    /// (`credstore_cache_*`, read at each scrape).
    pub fn add_cache(&self, store: &StoreId, cache: Arc<CachedStore>) {
        self.caches.caches.lock().unwrap_or_else(|e| e.into_inner()).push((store.to_string(), cache));
    }

    /// Counts one answered HTTP request.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let (count, time) =
            self.request_handles.get(&[method.as_bytes(), route.as_bytes(), &status.to_be_bytes()], || {
                let count = self
                    .requests
                    .get_or_create(&RequestLabels {
                        method: method.to_owned(),
                        route: route.to_owned(),
                        status,
                    })
                    .clone();
                let time = self
                    .request_seconds
                    .get_or_create(&RouteLabels { method: method.to_owned(), route: route.to_owned() })
                    .clone();
                (count, time)
            });
        count.inc();
        time.observe(seconds);
    }

    /// Counts one store call.
    pub fn observe_operation(
        &self,
        store: &StoreId,
        operation: &'static str,
        outcome: &'static str,
        seconds: f64,
    ) {
        let parts = [store.as_str().as_bytes(), operation.as_bytes(), outcome.as_bytes()];
        let (count, time) = self.operation_handles.get(&parts, || {
            let store = store.to_string();
            let count =
                self.operations.get_or_create(&OpLabels { store: store.clone(), operation, outcome }).clone();
            let time = self.operation_seconds.get_or_create(&OpTimeLabels { store, operation }).clone();
            (count, time)
        });
        count.inc();
        time.observe(seconds);
    }

    /// Records one availability probe of `store` and sets its gauge.
    pub fn observe_probe(&self, store: &StoreId, available: bool, seconds: f64) {
        let labels = StoreLabels { store: store.to_string() };
        self.available.get_or_create(&labels).set(i64::from(available));
        self.probe_seconds.get_or_create(&labels).observe(seconds);
        let outcome = if available { "available" } else { "unavailable" };
        self.probes.get_or_create(&ProbeLabels { store: labels.store, outcome }).inc();
    }

    /// The exposition, in the OpenMetrics text format (ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
            out.push_str("# EOF\n");
        }
        out
    }

    /// The `/metrics` response: the exposition with its content type.
    pub fn response(&self) -> Response {
        let mut resp = self.encode().into_response();
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

/// The `outcome` label of a store error.
pub fn outcome_of(err: &Error) -> &'static str {
    match err {
        Error::Unavailable { .. } => "unavailable",
        Error::InvalidKey { .. }
        | Error::InvalidNamespace { .. }
        | Error::InvalidInput { .. }
        | Error::NotText { .. } => "invalid",
        Error::PreconditionFailed { .. } => "precondition_failed",
        Error::Conflict { .. } => "conflict",
        Error::PermissionDenied { .. } => "permission_denied",
        Error::Config { .. } => "config",
        Error::Integrity { .. } => "integrity",
        Error::Unsupported { .. } => "unsupported",
        Error::Backend { .. } => "backend",
        _ => "other",
    }
}

/// A [`Layer`](credstore_core::Layer) that counts every call of the wrapped
/// store in [`Metrics`]: `credstore_store_operations_total` and
/// `credstore_store_operation_duration_seconds`. Handles on namespaces
/// ([`CredentialStore::with_namespace`](credstore_core::CredentialStore::with_namespace))
/// are counted under the same store. A write refused by its request check
/// (too large, a capability declared off) never reaches the store, so it is
/// not counted.
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: Arc<Metrics>,
}

impl MetricsLayer {
    /// A layer counting into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

/// A store wrapped by [`MetricsLayer`].
pub type MeteredStore = AroundStore<MetricsLayer>;

impl MetricsLayer {
    fn observe(&self, call: &Call<'_>, started: Instant, outcome: &'static str) {
        let seconds = started.elapsed().as_secs_f64();
        self.metrics.observe_operation(call.store.id(), call.operation.as_str(), outcome, seconds);
    }
}

impl Around for MetricsLayer {
    async fn around<'a, T: Send + 'a>(&'a self, call: Call<'a>, op: impl CallFuture<'a, T>) -> Result<T> {
        let started = Instant::now();
        let result = op.await;
        self.observe(&call, started, result.as_ref().map_or_else(outcome_of, |_| "ok"));
        result
    }

    async fn around_probe<'a>(&'a self, call: Call<'a>, probe: impl ProbeFuture<'a>) -> Availability {
        let started = Instant::now();
        let availability = probe.await;
        self.observe(&call, started, if availability.available { "ok" } else { "unavailable" });
        availability
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credstore_core::{
        CredentialKey, CredentialStore, CredentialStoreExt, Metadata, Namespace, SecretValue, StoreExt,
    };

    #[test]
    fn requests_are_counted_by_method_route_and_status() {
        let metrics = Metrics::new();
        let long = format!("/{}", "x".repeat(300));
        for (method, route, status) in [
            ("GET", "/a/{id}", 200),
            ("GET", "/a/{id}", 200),
            ("GET", "/a/{id}", 404),
            ("POST", "/a/{id}", 200),
            ("GET", "/a", 200),
            ("GET", long.as_str(), 200),
            ("GET", long.as_str(), 200),
        ] {
            metrics.observe_request(method, route, status, 0.001);
        }
        let text = metrics.encode();
        for line in [
            r#"credstore_http_requests_total{method="GET",route="/a/{id}",status="200"} 2"#.to_owned(),
            r#"credstore_http_requests_total{method="GET",route="/a/{id}",status="404"} 1"#.to_owned(),
            r#"credstore_http_requests_total{method="POST",route="/a/{id}",status="200"} 1"#.to_owned(),
            r#"credstore_http_requests_total{method="GET",route="/a",status="200"} 1"#.to_owned(),
            format!(r#"credstore_http_requests_total{{method="GET",route="{long}",status="200"}} 2"#),
            r#"credstore_http_request_duration_seconds_count{method="GET",route="/a/{id}"} 3"#.to_owned(),
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
    }

    #[tokio::test]
    async fn store_calls_are_counted_by_store_operation_and_outcome() {
        let metrics = Arc::new(Metrics::new());
        let mock = credstore_conformance::mock::MockStore::new(StoreId::new("m").unwrap());
        let store: Arc<dyn CredentialStore> = Arc::new(mock.clone());
        let store = store.with_layer(MetricsLayer::new(metrics.clone()));
        let ns = store.with_namespace(&Namespace::new("t/p").unwrap()).unwrap();
        let key = CredentialKey::new("k").unwrap();
        ns.set(&key, &SecretValue::from("never-in-metrics"), &Metadata::new()).await.unwrap();
        ns.get(&key).await.unwrap();
        mock.fail_next_op(
            credstore_conformance::mock::Op::Get,
            1,
            credstore_conformance::mock::Fault::Unavailable,
        );
        assert!(ns.get(&key).await.is_err());
        metrics.observe_probe(store.id(), false, 0.01);
        let text = metrics.encode();
        for line in [
            r#"credstore_store_operations_total{store="m",operation="set",outcome="ok"} 1"#,
            r#"credstore_store_operations_total{store="m",operation="get",outcome="ok"} 1"#,
            r#"credstore_store_operations_total{store="m",operation="get",outcome="unavailable"} 1"#,
            r#"credstore_store_available{store="m"} 0"#,
            r#"credstore_store_probes_total{store="m",outcome="unavailable"} 1"#,
            r#"credstore_store_operation_duration_seconds_count{store="m",operation="get"} 2"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no {line} in\n{text}");
        }
        assert!(!text.contains("never-in-metrics") && !text.contains("t/p"));
        assert!(text.ends_with("# EOF\n"));
    }
}
