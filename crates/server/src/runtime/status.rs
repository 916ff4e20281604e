//! Store status: one background prober per store keeps the store's last
//! [`Availability`] with the time it was taken, so *List Credential Stores*
//! and `/readyz` answer at once, never waiting on a probe.
//!
//! # Behavior
//! - [`StatusBoard::start`] probes every store once, concurrently (each
//!   probe bounded by the probe timeout), then spawns one prober task per
//!   store. A prober probes again every `probe_interval`, jittered by ±10 %
//!   so that many servers (or stores) do not probe in step.
//! - [`StatusBoard::snapshot`] answers from the last results without
//!   waiting. When a result is older than `probe_staleness` it also asks the
//!   store's prober to probe now (on demand): there is one prober per store,
//!   so however many requests find a result stale, the store gets one probe
//!   (single flight), and the answers after it carry the new result.
//! - A probe that does not answer within the probe timeout (a server that
//!   accepts connections and never answers) counts as unavailable, with
//!   the reason "no answer within N ms"; a probe that panics counts as
//!   unavailable too. Neither ever slows a request: requests only read the
//!   last result.
//! - The *List Credential Stores* body (`{"data":[...]}`) is serialized
//!   once per probe result, when it lands, not once per request:
//!   `StatusBoard::stores_body` (crate-internal) hands out the ready bytes (and asks for an
//!   on-demand probe of stale stores, as a snapshot does).
//! - [`StatusBoard::shutdown`] stops every prober (a probe in flight is
//!   dropped); dropping the board stops them too.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use axum::body::Bytes;
use credstore_core::{Availability, CredentialStore, CredentialStoreExt, StoreId, StoreKind};
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use utoipa::ToSchema;

use super::failure::FailureCategory;

pub use crate::config::{DEFAULT_PROBE_INTERVAL, DEFAULT_PROBE_STALENESS};

/// How the board probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSettings {
    /// The time between two probes of one store (jittered by ±10 %).
    pub interval: Duration,
    /// The age past which a request asks for a fresh probe.
    pub staleness: Duration,
    /// How long one probe may take.
    pub timeout: Duration,
}

/// One store's last probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// What the probe found.
    pub availability: Availability,
    /// When it was taken (wall clock, for `checkedAt`).
    pub checked_at: SystemTime,
    /// When it was taken (monotonic, for the staleness).
    pub taken: Instant,
}

/// One store in a [`StatusBoard::snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreState {
    /// The store's id.
    pub id: StoreId,
    /// The store's kind.
    pub kind: StoreKind,
    /// Its last probe.
    pub last: ProbeResult,
}

/// Called after every probe with the store's id, the result and how long
/// the probe took (the metrics hook).
pub type ProbeObserver = Arc<dyn Fn(&StoreId, &ProbeResult, Duration) + Send + Sync>;

struct Slot {
    store: Arc<dyn CredentialStore>,
    last: RwLock<ProbeResult>,
    /// Wakes the prober for an on-demand probe.
    wake: Notify,
}

impl Slot {
    fn last(&self) -> ProbeResult {
        self.last.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The `reason` clients see: `""` when available, else only the
/// failure category (`unreachable`, `timeout`, `refused`,
/// `misconfigured`). The backend's own words may hold file paths,
/// addresses or the backend's messages; the prober logs them.
pub fn shown_reason(a: &Availability) -> String {
    if a.available {
        return String::new();
    }
    FailureCategory::of_reason(a.reason.as_deref().unwrap_or_default()).as_str().to_owned()
}

/// One store in the list of credential stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoreEntry {
    /// Whether the store answered its availability probe in time.
    pub available: bool,
    /// The store's id.
    #[schema(pattern = r"^[a-zA-Z0-9_.-]+$", min_length = 1, max_length = 255, example = "sqlite-default")]
    pub id: String,
    /// Why the store is unavailable, as a category: `unreachable`,
    /// `timeout`, `refused` or `misconfigured` (the cause is in the server
    /// log). Always a string: the empty string `""` when `available` is
    /// true.
    #[schema(example = "")]
    pub reason: String,
    /// The backend: `memory`, `encrypted-sqlite`, `vault`,
    /// `aws-secrets-manager`, `keychain`, or a custom store's kind.
    #[serde(rename = "type")]
    #[schema(example = "memory")]
    pub kind: String,
    /// *(extension)* When the availability above was probed (RFC 3339,
    /// UTC). A background prober probes each store every
    /// `probe_interval_ms` (default 10000, jittered by ±10 %); a result
    /// older than `probe_staleness_ms` (default 30000) is probed again when
    /// a request finds it, and the answer never waits for a probe.
    #[serde(rename = "checkedAt")]
    #[schema(example = "2025-01-01T12:00:00.000Z")]
    pub checked_at: String,
}

impl StoreEntry {
    /// The entry of a store's last probe result.
    fn new(id: &StoreId, kind: StoreKind, last: &ProbeResult) -> Self {
        let a = &last.availability;
        Self {
            available: a.available,
            id: id.to_string(),
            reason: shown_reason(a),
            kind: kind.to_string(),
            checked_at: humantime::format_rfc3339_millis(last.checked_at).to_string(),
        }
    }
}

/// The answer of *List Credential Stores*.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListStoresResponse {
    /// Every store the server serves, in configuration order.
    pub data: Vec<StoreEntry>,
}

#[derive(Serialize)]
struct Body<T> {
    data: T,
}

/// The serialized list body, rebuilt whenever a probe result lands.
struct StoresBody {
    /// One entry per store, in the order served.
    entries: Mutex<Vec<StoreEntry>>,
    /// `{"data":[...]}` of `entries`.
    bytes: RwLock<Bytes>,
}

impl StoresBody {
    fn new(entries: Vec<StoreEntry>) -> Self {
        let bytes = RwLock::new(Self::encode(&entries));
        Self { entries: Mutex::new(entries), bytes }
    }

    fn encode(entries: impl Serialize) -> Bytes {
        // Plain strings and booleans: serializing cannot fail.
        serde_json::to_vec(&Body { data: entries }).map(Bytes::from).unwrap_or_default()
    }

    /// Replaces entry `index` and the body.
    fn update(&self, index: usize, entry: StoreEntry) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = entries.get_mut(index) {
            *slot = entry;
        }
        let bytes = Self::encode(&*entries);
        // Written under the entries' lock, so bodies land in order.
        *self.bytes.write().unwrap_or_else(|e| e.into_inner()) = bytes;
    }

    fn get(&self) -> Bytes {
        self.bytes.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The body of the entries whose id `keep` accepts, serialized now.
    fn get_only(&self, keep: impl Fn(&str) -> bool) -> Bytes {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        Self::encode(entries.iter().filter(|e| keep(&e.id)).collect::<Vec<_>>())
    }
}

/// The probers and the last result of every store; see the
/// [module docs](self).
pub struct StatusBoard {
    slots: Vec<Arc<Slot>>,
    body: Arc<StoresBody>,
    settings: ProbeSettings,
    observer: Option<ProbeObserver>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl fmt::Debug for StatusBoard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusBoard")
            .field("stores", &self.slots.len())
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Probes `store` once, bounded by `timeout`; a panic is unavailable.
pub async fn probe(store: &dyn CredentialStore, timeout: Duration) -> Availability {
    let probe = AssertUnwindSafe(store.check_availability()).catch_unwind();
    match tokio::time::timeout(timeout, probe).await {
        Ok(Ok(a)) => a,
        Ok(Err(_)) => Availability::down("the availability probe panicked"),
        Err(_) => Availability::down(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// `base` ±10 %, from a random draw.
fn jittered(base: Duration) -> Duration {
    let draw = getrandom::u64().unwrap_or(u64::MAX / 2);
    // A fraction in [0, 1) from the top 53 bits.
    let unit = (draw >> 11) as f64 / (1u64 << 53) as f64;
    base.mul_f64(0.9 + 0.2 * unit)
}

impl StatusBoard {
    /// Probes every store of `stores` once (concurrently, each bounded by
    /// `settings.timeout`), then starts one prober per store. `observer`
    /// is told of every probe, the first ones included.
    ///
    /// Must run inside a Tokio runtime (the probers are tasks).
    pub async fn start(
        stores: Vec<Arc<dyn CredentialStore>>,
        settings: ProbeSettings,
        observer: Option<ProbeObserver>,
    ) -> Arc<Self> {
        let first = futures::future::join_all(stores.iter().map(|store| {
            let observer = observer.clone();
            async move { run_probe(store.as_ref(), settings.timeout, observer.as_ref()).await }
        }))
        .await;
        let slots: Vec<Arc<Slot>> = stores
            .into_iter()
            .zip(first)
            .map(|(store, last)| {
                log_change(store.id(), None, &last.availability);
                Arc::new(Slot { store, last: RwLock::new(last), wake: Notify::new() })
            })
            .collect();
        let body = Arc::new(StoresBody::new(
            slots.iter().map(|s| StoreEntry::new(s.store.id(), s.store.kind().clone(), &s.last())).collect(),
        ));
        let (stop, _) = watch::channel(false);
        let started = Instant::now();
        let board = Arc::new(Self { slots, body, settings, observer, stop, tasks: Mutex::new(Vec::new()) });
        let tasks = board
            .slots
            .iter()
            .enumerate()
            .map(|(index, slot)| {
                let first = started + jittered(settings.interval);
                tokio::spawn(prober(
                    slot.clone(),
                    (board.body.clone(), index),
                    settings,
                    first,
                    board.observer.clone(),
                    board.stop.subscribe(),
                ))
            })
            .collect();
        *board.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        board
    }

    /// The probe settings.
    pub fn settings(&self) -> ProbeSettings {
        self.settings
    }

    /// Every store's last result, in the order served, at once. Stores
    /// whose result is older than the staleness get an on-demand probe
    /// (one per store, however many callers ask); this answer still
    /// carries the older result.
    pub fn snapshot(&self) -> Vec<StoreState> {
        let now = Instant::now();
        self.slots
            .iter()
            .map(|slot| {
                let last = slot.last();
                if now.saturating_duration_since(last.taken) > self.settings.staleness {
                    slot.wake.notify_one();
                }
                StoreState { id: slot.store.id().clone(), kind: slot.store.kind().clone(), last }
            })
            .collect()
    }

    /// The *List Credential Stores* body, `{"data":[...]}` with one entry
    /// per store in the order served: exactly what serializing the
    /// handler's entries of a [`snapshot`](Self::snapshot) gives (`available`,
    /// `id`, `reason` (`""` when available), `type`, `checkedAt` as RFC 3339
    /// UTC with milliseconds), serialized when the last probe result landed,
    /// so a request only clones a shared buffer. Like a snapshot, it asks
    /// for an on-demand probe of every store whose result is stale, and
    /// never waits for it.
    pub(crate) fn stores_body(&self) -> Bytes {
        self.wake_stale();
        self.body.get()
    }

    /// [`stores_body`](Self::stores_body) with only the stores whose id
    /// `keep` accepts, serialized per call (for a token whose grants name
    /// some stores only).
    pub(crate) fn stores_body_of(&self, keep: impl Fn(&str) -> bool) -> Bytes {
        self.wake_stale();
        self.body.get_only(keep)
    }

    /// Asks for an on-demand probe of every store whose result is stale.
    fn wake_stale(&self) {
        let now = Instant::now();
        for slot in &self.slots {
            let taken = slot.last.read().unwrap_or_else(|e| e.into_inner()).taken;
            if now.saturating_duration_since(taken) > self.settings.staleness {
                slot.wake.notify_one();
            }
        }
    }

    /// How many probers are still running.
    pub fn running(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|t| !t.is_finished()).count()
    }

    /// Stops every prober and waits for them to end.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for StatusBoard {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().unwrap_or_else(|e| e.into_inner()).iter() {
            task.abort();
        }
    }
}

/// Logs a store's availability when it changes (or, with no `before`, when
/// the first probe finds it down), with the full reason the store list
/// does not show.
fn log_change(id: &StoreId, before: Option<&Availability>, now: &Availability) {
    if before == Some(now) || (before.is_none() && now.available) {
        return;
    }
    if now.available {
        tracing::info!(store = %id, "store available again");
    } else {
        let reason = now.reason.as_deref().unwrap_or_default();
        tracing::warn!(store = %id, category = FailureCategory::of_reason(reason).as_str(), reason, "store unavailable");
    }
}

async fn run_probe(
    store: &dyn CredentialStore,
    timeout: Duration,
    observer: Option<&ProbeObserver>,
) -> ProbeResult {
    let started = Instant::now();
    let availability = probe(store, timeout).await;
    let result = ProbeResult { availability, checked_at: SystemTime::now(), taken: Instant::now() };
    if let Some(observe) = observer {
        observe(store.id(), &result, started.elapsed());
    }
    result
}

/// One store's prober: probes every jittered interval, or at once when a
/// request found the result stale, until `stop`. The first probe is due
/// at `first`.
async fn prober(
    slot: Arc<Slot>,
    (body, index): (Arc<StoresBody>, usize),
    settings: ProbeSettings,
    first: Instant,
    observer: Option<ProbeObserver>,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = first;
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep_until(next) => {}
            () = slot.wake.notified() => {
                // A wake-up left over from requests answered before the
                // last probe finished: the result is fresh, nothing to do.
                if Instant::now().saturating_duration_since(slot.last().taken) <= settings.staleness {
                    continue;
                }
            }
        }
        let result = tokio::select! {
            _ = stop.changed() => return,
            r = run_probe(slot.store.as_ref(), settings.timeout, observer.as_ref()) => r,
        };
        log_change(slot.store.id(), Some(&slot.last().availability), &result.availability);
        body.update(index, StoreEntry::new(slot.store.id(), slot.store.kind().clone(), &result));
        *slot.last.write().unwrap_or_else(|e| e.into_inner()) = result;
        next = Instant::now() + jittered(settings.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credstore_conformance::mock::{Fault, MockStore, Op};
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SETTINGS: ProbeSettings = ProbeSettings {
        interval: Duration::from_secs(10),
        staleness: Duration::from_secs(30),
        timeout: Duration::from_secs(3),
    };

    fn mock(id: &str) -> (MockStore, Arc<dyn CredentialStore>) {
        let m = MockStore::new(StoreId::new(id).unwrap());
        let s: Arc<dyn CredentialStore> = Arc::new(m.clone());
        (m, s)
    }

    /// Lets the spawned probers run (paused time: nothing else moves).
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_secs(10));
            assert!(d >= Duration::from_secs(9) && d <= Duration::from_secs(11), "{d:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn snapshots_never_wait_on_a_hanging_probe() {
        let (up, up_store) = mock("up");
        let (hang, hang_store) = mock("hang");
        hang.fail_next_op(Op::CheckAvailability, usize::MAX, Fault::Hang);
        let board = StatusBoard::start(vec![up_store, hang_store], SETTINGS, None).await;
        let s = board.snapshot();
        assert!(s[0].last.availability.available);
        assert_eq!(s[1].last.availability, Availability::down("no answer within 3000 ms"));
        // The prober of the hanging store is stuck in its next probe; a
        // snapshot still answers without any time passing.
        tokio::time::advance(Duration::from_secs(12)).await;
        settle().await;
        assert!(hang.calls(Op::CheckAvailability) >= 2, "the prober probes again");
        let before = Instant::now();
        for _ in 0..100 {
            let s = board.snapshot();
            assert_eq!(s.len(), 2);
        }
        assert_eq!(Instant::now(), before, "a snapshot never waits");
        assert!(up.calls(Op::CheckAvailability) >= 2);
        board.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn results_refresh_after_the_interval() {
        let (m, store) = mock("m");
        let board = StatusBoard::start(vec![store], SETTINGS, None).await;
        assert_eq!(m.calls(Op::CheckAvailability), 1, "one probe at start");
        let first = board.snapshot()[0].last.clone();
        m.set_availability(Availability::down("sealed"));
        tokio::time::advance(Duration::from_secs(8)).await;
        settle().await;
        assert_eq!(m.calls(Op::CheckAvailability), 1, "not before 90 % of the interval");
        assert!(board.snapshot()[0].last.availability.available, "still the old result");
        tokio::time::advance(Duration::from_millis(3100)).await;
        settle().await;
        assert_eq!(m.calls(Op::CheckAvailability), 2, "one probe within the jittered interval");
        let second = board.snapshot()[0].last.clone();
        assert_eq!(second.availability, Availability::down("sealed"));
        assert!(second.taken > first.taken);
        board.shutdown().await;
    }

    /// A board probing one store hourly, whose last result (up) is 31 s
    /// old, past the staleness, while the store went down since.
    async fn stale_board() -> (MockStore, Arc<StatusBoard>) {
        let (m, store) = mock("m");
        let settings = ProbeSettings { interval: Duration::from_secs(3600), ..SETTINGS };
        let board = StatusBoard::start(vec![store], settings, None).await;
        m.set_availability(Availability::down("sealed"));
        tokio::time::advance(Duration::from_secs(31)).await;
        settle().await;
        (m, board)
    }

    #[tokio::test(start_paused = true)]
    async fn stale_results_refresh_on_demand_with_one_probe() {
        let (m, board) = stale_board().await;
        assert_eq!(m.calls(Op::CheckAvailability), 1, "the interval is an hour");
        // Many concurrent requests find the result stale: they answer at
        // once with it, and the store gets exactly one probe.
        let answers: Vec<_> = futures::future::join_all((0..50).map(|_| async { board.snapshot() })).await;
        assert!(answers.iter().all(|s| s[0].last.availability.available), "answered from the last result");
        settle().await;
        assert_eq!(m.calls(Op::CheckAvailability), 2, "one probe for all of them");
        assert_eq!(board.snapshot()[0].last.availability, Availability::down("sealed"));
        for _ in 0..10 {
            board.snapshot();
        }
        settle().await;
        assert_eq!(m.calls(Op::CheckAvailability), 2, "fresh again: no more probes");
        board.shutdown().await;
    }

    /// The documented list of `snapshot`, serialized.
    fn handler_body(snapshot: Vec<StoreState>) -> Vec<u8> {
        let data = snapshot
            .into_iter()
            .map(|s| {
                let a = s.last.availability;
                StoreEntry {
                    available: a.available,
                    id: s.id.to_string(),
                    reason: shown_reason(&a),
                    kind: s.kind.to_string(),
                    checked_at: humantime::format_rfc3339_millis(s.last.checked_at).to_string(),
                }
            })
            .collect();
        serde_json::to_vec(&ListStoresResponse { data }).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn the_stores_body_is_what_the_handler_serializes_and_follows_each_probe() {
        let (up, up_store) = mock("up");
        let (down, down_store) = mock("down.q");
        down.set_availability(Availability::down("sealed \"hard\"\n"));
        let (hang, hang_store) = mock("hang");
        hang.fail_next_op(Op::CheckAvailability, usize::MAX, Fault::Hang);
        let board = StatusBoard::start(vec![up_store, down_store, hang_store], SETTINGS, None).await;
        let body = board.stores_body();
        assert_eq!(body, handler_body(board.snapshot()), "{}", String::from_utf8_lossy(&body));
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(text.starts_with(r#"{"data":[{"available":true,"id":"up","reason":"","type":""#), "{text}");
        assert!(text.contains(r#""id":"hang","reason":"timeout""#), "{text}");
        assert!(!text.contains("no answer within") && !text.contains("sealed"), "{text}");

        // A probe result lands: the body follows, still equal to the handler's.
        up.set_availability(Availability::down("gone"));
        down.set_availability(Availability::up());
        tokio::time::advance(Duration::from_secs(12)).await;
        settle().await;
        let body = board.stores_body();
        assert_eq!(body, handler_body(board.snapshot()));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["data"][0]["available"], false);
        assert_eq!(v["data"][0]["reason"], "unreachable", "the category, not the store's words");
        assert_eq!(v["data"][1]["available"], true);
        assert_eq!(v["data"][1]["reason"], "");
        assert_eq!(v["data"].as_array().unwrap().len(), 3);
        board.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_stores_body_asks_for_one_probe_when_stale() {
        let (m, board) = stale_board().await;
        let stale = board.stores_body();
        assert!(String::from_utf8_lossy(&stale).contains(r#""available":true"#), "answered at once");
        for _ in 0..50 {
            board.stores_body();
        }
        settle().await;
        assert_eq!(m.calls(Op::CheckAvailability), 2, "one probe for all of them");
        let fresh = board.stores_body();
        assert!(String::from_utf8_lossy(&fresh).contains(r#""reason":"unreachable""#));
        assert_eq!(fresh, handler_body(board.snapshot()));
        board.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_the_probers() {
        let (m, store) = mock("m");
        let (h, hang) = mock("h");
        h.fail_next_op(Op::CheckAvailability, usize::MAX, Fault::Hang);
        let probes = Arc::new(AtomicUsize::new(0));
        let counter = probes.clone();
        let observer: ProbeObserver = Arc::new(move |_, _, _| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let board = StatusBoard::start(vec![store, hang], SETTINGS, Some(observer)).await;
        assert_eq!(probes.load(Ordering::SeqCst), 2, "the observer sees the first probes");
        assert_eq!(board.running(), 2);
        tokio::time::advance(Duration::from_secs(11)).await;
        settle().await;
        board.shutdown().await;
        assert_eq!(board.running(), 0);
        let calls = m.calls(Op::CheckAvailability);
        tokio::time::advance(Duration::from_secs(3600)).await;
        settle().await;
        assert_eq!(m.calls(Op::CheckAvailability), calls, "no probe after shutdown");
        board.snapshot();
        settle().await;
        assert_eq!(m.calls(Op::CheckAvailability), calls, "nor on demand");
    }
}
