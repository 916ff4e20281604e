//! The change feed: NOTIFY after each committed write, LISTEN on a
//! connection of its own (see the crate docs, "Change feed").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use credstore_core::{
    ChangeFeed, ChangeHub, CredentialKey, Error, FeedEvent, Namespace, Result, StoreId, Version,
};
use credstore_seal::StoreUid;
use deadpool_postgres::Pool;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::errors;

/// How many unread events each subscriber keeps.
const HUB_CAPACITY: usize = 4096;
/// The most bytes of one NOTIFY payload: PostgreSQL's limit is 8000.
const MAX_PAYLOAD: usize = 7900;
/// The longest pause between two reconnection attempts of the listener.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The first pause.
const MIN_BACKOFF: Duration = Duration::from_millis(20);

/// One write to report.
#[derive(Debug)]
struct Note {
    ns: String,
    key: String,
    version: Option<i64>,
}

/// What the notifier sends: the notes of writes, in order, and markers.
#[derive(Debug)]
enum Queued {
    Note(Note),
    /// A `{"m": token}` notification, sent once every note queued before it
    /// has been: when the listener hears it back, it has heard them all.
    Marker(String),
}

/// Subscriptions waiting for their marker to come back, by token.
type Markers = Arc<std::sync::Mutex<std::collections::HashMap<String, oneshot::Sender<()>>>>;

/// A store's change feed: the hub its subscribers read, the notifier its
/// writes go through, and the listener (started by the first `subscribe`).
pub(crate) struct Feed {
    id: StoreId,
    hub: ChangeHub,
    notes: mpsc::UnboundedSender<Queued>,
    markers: Markers,
    listener: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Whether the listener is connected and listening now.
    connected: Arc<AtomicBool>,
    /// Dropped with the store: ends the listener.
    shutdown: watch::Sender<()>,
    channel: String,
    pg: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    connect_timeout: Duration,
    call_timeout: Duration,
}

impl Feed {
    pub(crate) fn new(
        id: StoreId,
        pool: Pool,
        channel: String,
        pg: tokio_postgres::Config,
        tls: MakeRustlsConnect,
        connect_timeout: Duration,
        call_timeout: Duration,
    ) -> Self {
        let hub = ChangeHub::new(HUB_CAPACITY);
        let (notes, rx) = mpsc::unbounded_channel();
        tokio::spawn(notifier(id.clone(), pool, channel.clone(), rx, hub.clone(), call_timeout));
        let (shutdown, _) = watch::channel(());
        Self {
            id,
            hub,
            notes,
            markers: Markers::default(),
            listener: tokio::sync::Mutex::new(None),
            connected: Arc::new(AtomicBool::new(false)),
            shutdown,
            channel,
            pg,
            tls,
            connect_timeout,
            call_timeout,
        }
    }

    /// Queues the notification of a committed write (`None`: a delete).
    pub(crate) fn notify(&self, ns: &str, key: &str, version: Option<i64>) {
        let _ = self.notes.send(Queued::Note(Note { ns: ns.to_owned(), key: key.to_owned(), version }));
    }

    /// A feed of the changes under `base`; starts the listener the first time
    /// and returns once it is listening.
    ///
    /// The notifications of this store's own writes that returned before
    /// this call are not reported to the new feed: a marker is sent after
    /// them and the feed starts once the listener has heard it back (one
    /// round trip through the server). Writes of other processes whose
    /// notification is still in flight may be reported (a cache drops an
    /// entry it did not need to).
    pub(crate) async fn subscribe(&self, base: &Namespace) -> Result<ChangeFeed> {
        let mut listener = self.listener.lock().await;
        let running = listener.as_ref().is_some_and(|task| !task.is_finished());
        if !running {
            let (ready, started) = oneshot::channel();
            let task = Listener {
                id: self.id.clone(),
                hub: self.hub.clone(),
                connected: self.connected.clone(),
                markers: self.markers.clone(),
                shutdown: self.shutdown.subscribe(),
                listen: format!("LISTEN \"{}\"", self.channel),
                pg: self.pg.clone(),
                tls: self.tls.clone(),
                connect_timeout: self.connect_timeout,
                call_timeout: self.call_timeout,
            };
            let handle = tokio::spawn(task.run(ready));
            match started.await {
                Ok(Ok(())) => *listener = Some(handle),
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(errors::backend(&self.id, "the change feed's listener ended at its start"))
                }
            }
        }
        drop(listener);
        if !self.connected.load(Ordering::SeqCst) {
            // The listener is reconnecting: changes may be missed until it
            // says Restored, which this feed will get.
            let lost =
                FeedEvent::Lost { reason: "the change feed's connection is being re-established".into() };
            return Ok(ChangeFeed::new(
                futures::stream::once(async move { lost }).chain(self.hub.subscribe(base)),
            ));
        }
        self.flush_own().await;
        Ok(self.hub.subscribe(base))
    }

    /// Waits (at most the call timeout) until the listener has heard the
    /// notifications of every write of this store queued so far.
    async fn flush_own(&self) {
        // 16 random bytes: a token no other subscription, here or in another
        // process listening on the channel, uses.
        let token = StoreUid::generate().to_hex();
        let (heard, back) = oneshot::channel();
        self.markers.lock().unwrap_or_else(|e| e.into_inner()).insert(token.clone(), heard);
        if self.notes.send(Queued::Marker(token.clone())).is_ok()
            && tokio::time::timeout(self.call_timeout, back).await.is_ok_and(|r| r.is_ok())
        {
            return;
        }
        self.markers.lock().unwrap_or_else(|e| e.into_inner()).remove(&token);
        tracing::debug!(store = %self.id, "the change feed's marker did not come back in time; subscribing anyway");
    }
}

/// How long the notifier waits for more writes before it sends what it has:
/// a bound on what the coalescing adds to a change's way to other replicas.
const COALESCE: Duration = Duration::from_millis(2);
/// The most queued notifications (and markers) taken at once.
const BATCH: usize = 1024;

/// Sends the queued notifications, in order, one `pg_notify` per batch
/// (the writes of up to [`COALESCE`] together).
async fn notifier(
    id: StoreId,
    pool: Pool,
    channel: String,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    hub: ChangeHub,
    call_timeout: Duration,
) {
    let mut batch = Vec::new();
    let mut notes = Vec::new();
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        // Writes that follow closely share one notification: a caller
        // writing one key after another would otherwise pay a notifying
        // transaction per write. A marker (a subscriber waiting) goes at once.
        let window = tokio::time::Instant::now() + COALESCE;
        while batch.len() < BATCH && !batch.iter().any(|q| matches!(q, Queued::Marker(_))) {
            let room = BATCH - batch.len();
            match tokio::time::timeout_at(window, rx.recv_many(&mut batch, room)).await {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
        for queued in batch.drain(..) {
            match queued {
                Queued::Note(note) => notes.push(note),
                Queued::Marker(token) => {
                    flush(&id, &pool, &channel, &mut notes, &hub, call_timeout).await;
                    let marker = serde_json::json!({ "m": token }).to_string();
                    if let Err(e) = send(&pool, &channel, &marker, call_timeout).await {
                        tracing::debug!(store = %id, "a change feed marker could not be sent: {e}");
                    }
                }
            }
        }
        flush(&id, &pool, &channel, &mut notes, &hub, call_timeout).await;
    }
}

/// Sends `notes` (and empties it).
async fn flush(
    id: &StoreId,
    pool: &Pool,
    channel: &str,
    notes: &mut Vec<Note>,
    hub: &ChangeHub,
    call_timeout: Duration,
) {
    for payload in payloads(notes) {
        if let Err(e) = send(pool, channel, &payload, call_timeout).await {
            let reason = format!("a change notification could not be sent: {e}");
            tracing::warn!(store = %id, "{reason}; subscribers may miss changes (caches fall back to their TTL)");
            hub.lost(reason);
            hub.restored();
        }
    }
    notes.clear();
}

async fn send(
    pool: &Pool,
    channel: &str,
    payload: &str,
    call_timeout: Duration,
) -> std::result::Result<(), String> {
    let conn = pool.get().await.map_err(|e| e.to_string())?;
    let sent = async {
        // A notification needs no durability: its transaction does not wait
        // for the WAL to reach the disk.
        let st = conn
            .prepare_cached("SELECT set_config('synchronous_commit', 'off', true), pg_notify($1, $2)")
            .await?;
        conn.execute(&st, &[&channel, &payload]).await
    };
    match tokio::time::timeout(call_timeout, sent).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => {
            drop(deadpool_postgres::Object::take(conn));
            Err(format!("no answer within {call_timeout:?}"))
        }
    }
}

/// The JSON payloads of `notes`: arrays of `{"n": ns, "k": key, "v": version or null}`,
/// each under [`MAX_PAYLOAD`] bytes.
fn payloads(notes: &[Note]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::from("[");
    for note in notes {
        let entry = serde_json::json!({ "n": note.ns, "k": note.key, "v": note.version }).to_string();
        if current.len() > 1 && current.len() + entry.len() + 2 > MAX_PAYLOAD {
            current.push(']');
            out.push(std::mem::replace(&mut current, String::from("[")));
        }
        if current.len() > 1 {
            current.push(',');
        }
        current.push_str(&entry);
    }
    if current.len() > 1 {
        current.push(']');
        out.push(current);
    }
    out
}

/// The token of a marker payload (`{"m": token}`; any process's).
fn marker(payload: &str) -> Option<String> {
    if !payload.starts_with('{') {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(payload).ok()?;
    Some(value.get("m")?.as_str()?.to_owned())
}

/// The changes of a payload; malformed entries are skipped with a debug log.
fn parse_payload(payload: &str) -> Vec<(Namespace, CredentialKey, Option<Version>)> {
    let Ok(serde_json::Value::Array(entries)) = serde_json::from_str::<serde_json::Value>(payload) else {
        tracing::debug!("ignored a change notification that is not a JSON array");
        return Vec::new();
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let parsed = (|| {
            let ns = Namespace::new(entry.get("n")?.as_str()?).ok()?;
            let key = CredentialKey::new(entry.get("k")?.as_str()?).ok()?;
            let version = match entry.get("v")? {
                serde_json::Value::Null => None,
                v => Some(Version::from_counter(v.as_u64()?)),
            };
            Some((ns, key, version))
        })();
        match parsed {
            Some(change) => out.push(change),
            None => tracing::debug!("ignored a malformed entry of a change notification"),
        }
    }
    out
}

/// The listener task's state.
struct Listener {
    id: StoreId,
    hub: ChangeHub,
    connected: Arc<AtomicBool>,
    markers: Markers,
    shutdown: watch::Receiver<()>,
    listen: String,
    pg: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    connect_timeout: Duration,
    call_timeout: Duration,
}

type Messages = std::pin::Pin<
    Box<dyn futures::Stream<Item = std::result::Result<AsyncMessage, tokio_postgres::Error>> + Send>,
>;

impl Listener {
    /// Connects and listens, then reports notifications until the store is
    /// dropped, reconnecting after a loss.
    async fn run(self, ready: oneshot::Sender<Result<()>>) {
        let mut shutdown = self.shutdown.clone();
        let (client, mut messages) = match self.connect().await {
            Ok(c) => c,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        self.connected.store(true, Ordering::SeqCst);
        let _ = ready.send(Ok(()));
        let mut client = Some(client);
        loop {
            let reason = tokio::select! {
                _ = shutdown.changed() => return,
                reason = self.pump(&mut messages) => reason,
            };
            drop(client.take());
            self.connected.store(false, Ordering::SeqCst);
            tracing::warn!(store = %self.id, "the change feed's connection was lost ({reason}); reconnecting");
            self.hub.lost(format!("the change feed's connection to PostgreSQL was lost: {reason}"));
            let mut backoff = MIN_BACKOFF;
            loop {
                tokio::select! {
                    _ = shutdown.changed() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                let attempt = tokio::select! {
                    _ = shutdown.changed() => return,
                    attempt = self.connect() => attempt,
                };
                match attempt {
                    Ok((c, m)) => {
                        client = Some(c);
                        messages = m;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(store = %self.id, "the change feed could not reconnect yet: {e}");
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
            self.connected.store(true, Ordering::SeqCst);
            tracing::info!(store = %self.id, "the change feed is listening again");
            self.hub.restored();
        }
    }

    /// Publishes every notification until the connection ends; the reason.
    async fn pump(&self, messages: &mut Messages) -> String {
        loop {
            match messages.next().await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if let Some(token) = marker(n.payload()) {
                        if let Some(heard) =
                            self.markers.lock().unwrap_or_else(|e| e.into_inner()).remove(&token)
                        {
                            let _ = heard.send(());
                        }
                        continue;
                    }
                    for (ns, key, version) in parse_payload(n.payload()) {
                        self.hub.publish(&ns, &key, version.as_ref());
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return errors::from_pg(&self.id, "listen for changes", &e).to_string(),
                None => return "the server closed the connection".to_owned(),
            }
        }
    }

    /// A connection of its own that has run `LISTEN`, and its messages.
    async fn connect(&self) -> Result<(tokio_postgres::Client, Messages)> {
        let what = "listen for changes";
        let (client, mut connection) =
            tokio::time::timeout(self.connect_timeout, self.pg.connect(self.tls.clone()))
                .await
                .map_err(|_| errors::timed_out(&self.id, what, self.connect_timeout))?
                .map_err(|e| errors::from_pg(&self.id, what, &e))?;
        let mut messages: Messages =
            Box::pin(futures::stream::poll_fn(move |cx| connection.poll_message(cx)));
        {
            let listen = client.batch_execute(&self.listen);
            tokio::pin!(listen);
            let deadline = tokio::time::sleep(self.call_timeout);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    done = &mut listen => {
                        done.map_err(|e| errors::from_pg(&self.id, what, &e))?;
                        break;
                    }
                    message = messages.next() => match message {
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(errors::from_pg(&self.id, what, &e)),
                        None => return Err(Error::unavailable(&self.id, "the server closed the change feed's connection")),
                    },
                    _ = &mut deadline => return Err(errors::timed_out(&self.id, what, self.call_timeout)),
                }
            }
        }
        Ok((client, messages))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(ns: &str, key: &str, version: Option<i64>) -> Note {
        Note { ns: ns.into(), key: key.into(), version }
    }

    #[test]
    fn payloads_round_trip_and_stay_under_the_limit() {
        let notes: Vec<Note> = (0..2000).map(|i| note("tenant/a", &format!("key-{i}"), Some(i))).collect();
        let batches = payloads(&notes);
        assert!(batches.len() > 1);
        let mut seen = Vec::new();
        for p in &batches {
            assert!(p.len() <= MAX_PAYLOAD, "{}", p.len());
            seen.extend(parse_payload(p));
        }
        assert_eq!(seen.len(), 2000);
        assert_eq!(seen[7].1.as_str(), "key-7");
        assert_eq!(seen[7].2, Some(Version::from_counter(7)));
        assert_eq!(seen[0].0.as_str(), "tenant/a");
        let deleted = parse_payload(&payloads(&[note("", "k", None)])[0]);
        assert!(deleted[0].0.is_root() && deleted[0].2.is_none());
    }

    #[test]
    fn malformed_entries_are_skipped_not_fatal() {
        assert!(parse_payload("not json").is_empty());
        assert!(parse_payload("{}").is_empty());
        assert!(parse_payload(r#"{"m": "abc"}"#).is_empty(), "a marker is no change");
        assert_eq!(marker(r#"{"m": "abc"}"#).as_deref(), Some("abc"));
        assert_eq!(marker(r#"[{"n": "", "k": "m", "v": 1}]"#), None);
        let some = parse_payload(
            r#"[{"n": "", "k": "ok", "v": 1}, {"n": "", "k": "bad key!", "v": 2}, {"n": "/", "k": "x", "v": 3},
                {"k": "no-ns", "v": 4}, {"n": "", "k": "neg", "v": -1}, 7, {"n": "", "k": "gone", "v": null}]"#,
        );
        let keys: Vec<_> = some.iter().map(|c| c.1.as_str()).collect();
        assert_eq!(keys, ["ok", "gone"]);
    }
}
