//! How many Secrets Manager requests each operation makes, and which of them
//! run at the same time: through a proxy on loopback, in front of moto,
//! that logs the operation (`X-Amz-Target`) of every request it sees and
//! holds each one back for [`HOLD`] before passing it on.
//!
//! Requests of one operation that run at the same time reach the proxy
//! together; a request that waits for the answer to another comes at least
//! [`HOLD`] later. So the log shows both the count and the concurrency, and
//! a change that adds a request or makes two of them sequential fails here,
//! not only in a benchmark. moto differs from Secrets Manager in one way
//! that shows here: after `UpdateSecretVersionStage`, its bare
//! `GetSecretValue` answers with the version `AWSCURRENT` left, so a read
//! right after a replace makes more requests on moto than on AWS.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use credstore_aws::{AwsConfig, AwsStore, DeletionPolicy};
use credstore_conformance::fixtures::key;
use credstore_conformance::unique_name;
use credstore_core::{
    CredentialStore, CredentialStoreExt, Error, ListOptions, Metadata, SecretValue, StoreId,
};
use credstore_test_servers::moto::{Moto, ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long the proxy holds every request. Far above the spread of requests
/// sent together, far below a test's patience.
const HOLD: Duration = Duration::from_millis(250);

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
struct Seen {
    operation: String,
    at: Instant,
}

/// The logging, delaying proxy.
struct Proxy {
    endpoint: String,
    log: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let log = shared.clone();
                tokio::spawn(async move {
                    let server = TcpStream::connect(upstream).await.expect("connect to moto");
                    let (client_read, mut client_write) = client.into_split();
                    let (mut server_read, server_write) = server.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                    });
                    forward_requests(client_read, server_write, log).await;
                });
            }
        });
        Self { endpoint, log, task }
    }

    /// The requests seen since the last call.
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.log.lock().expect("log"))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads HTTP/1.1 requests (headers, then a `Content-Length` body) from the
/// client, logs each, holds it for [`HOLD`], then sends it on.
async fn forward_requests(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    log: Arc<Mutex<Vec<Seen>>>,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match from.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let header =
            |name: &str| head.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()));
        assert!(header("transfer-encoding:").is_none(), "a chunked request: {head}");
        let length: usize = header("content-length:").map_or(0, |v| v.parse().expect("content-length"));
        let operation = header("x-amz-target:")
            .and_then(|t| t.strip_prefix("secretsmanager.").map(str::to_owned))
            .unwrap_or_else(|| panic!("a request without a Secrets Manager target: {head}"));
        while buf.len() < head_end + length {
            match from.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let request: Vec<u8> = buf.drain(..head_end + length).collect();
        log.lock().expect("log").push(Seen { operation, at: Instant::now() });
        tokio::time::sleep(HOLD).await;
        if to.write_all(&request).await.is_err() {
            return;
        }
    }
}

/// The operation names as the SDK sends them (`GetSecretValue`), from the
/// lowercased target.
fn name(op: &str) -> &'static str {
    [
        "BatchGetSecretValue",
        "CreateSecret",
        "DeleteSecret",
        "DescribeSecret",
        "GetSecretValue",
        "ListSecrets",
        "PutSecretValue",
        "RestoreSecret",
        "TagResource",
        "UpdateSecret",
        "UpdateSecretVersionStage",
    ]
    .into_iter()
    .find(|n| n.to_ascii_lowercase() == op)
    .unwrap_or_else(|| panic!("unexpected operation {op}"))
}

/// The requests of one operation in rounds: requests that reached the proxy
/// within half a [`HOLD`] of the round's first request ran at the same time;
/// the next round came after an answer. Each round sorted by name.
fn rounds(seen: &[Seen]) -> Vec<Vec<&'static str>> {
    let mut out: Vec<Vec<&'static str>> = Vec::new();
    let mut start: Option<Instant> = None;
    for s in seen {
        match start {
            Some(t) if s.at.duration_since(t) < HOLD / 2 => {
                out.last_mut().expect("a round").push(name(&s.operation));
            }
            _ => {
                if let Some(t) = start {
                    // Sequential requests are at least one hold apart.
                    let gap = s.at.duration_since(t);
                    assert!(gap >= HOLD - HOLD / 5, "a request {gap:?} after the round before: {seen:?}");
                }
                start = Some(s.at);
                out.push(vec![name(&s.operation)]);
            }
        }
    }
    for round in &mut out {
        round.sort_unstable();
    }
    out
}

/// A store on `prefix`: a second one on the same prefix knows nothing of
/// the versions the first one wrote.
fn store_at(endpoint: &str, deletion: DeletionPolicy, prefix: &str) -> AwsStore {
    let config = AwsConfig::new()
        .region(REGION)
        .endpoint_url(endpoint)
        .static_credentials(ACCESS_KEY_ID, SecretValue::from(SECRET_ACCESS_KEY))
        .prefix(prefix)
        .deletion(deletion)
        // No retries: a retried request would show up as one more.
        .max_attempts(1);
    AwsStore::new(StoreId::new(unique_name("aws-requests")).expect("id"), config).expect("store")
}

/// A counting proxy to the shared moto server (`None` without one), and a
/// store through it on a fresh prefix.
async fn start(deletion: DeletionPolicy) -> Option<(Proxy, AwsStore)> {
    let moto = tokio::task::spawn_blocking(Moto::shared).await.expect("moto")?;
    let proxy = Proxy::start(moto.socket_addr()).await;
    let store = store_at(&proxy.endpoint, deletion, &format!("requests/{}", unique_name("r")));
    Some((proxy, store))
}

/// Runs `op` and returns its requests in rounds (see [`rounds`]).
async fn measure<T>(proxy: &Proxy, op: impl std::future::Future<Output = T>) -> (T, Vec<Vec<&'static str>>) {
    proxy.take();
    let out = op.await;
    let seen = proxy.take();
    (out, rounds(&seen))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_are_one_round_trip_of_two_concurrent_requests() {
    let Some((proxy, store)) = start(DeletionPolicy::Immediate).await else { return };
    let k = key("read-me");
    let meta = Metadata::try_from([("by", "requests")]).expect("m");
    let written = store.set(&k, &SecretValue::from("v1"), &meta).await.expect("set");

    // The version this store just wrote: GetSecretValue alone.
    let (got, r) = measure(&proxy, store.get(&k)).await;
    let got = got.expect("get").expect("present");
    assert_eq!((got.value.expose_str().expect("text"), &got.version), ("v1", &written.version));
    assert_eq!(
        (&got.metadata, got.created_at, got.updated_at),
        (&meta, written.created_at, written.updated_at)
    );
    assert_eq!(r, [vec!["GetSecretValue"]], "get of a version this store wrote");

    // Another store (another process) has not seen that version: the value
    // and the description, in one round of two requests; then the value
    // alone, and the same answer.
    let other = store_at(&proxy.endpoint, DeletionPolicy::Immediate, store.prefix());
    let (got, r) = measure(&proxy, other.get(&k)).await;
    let got = got.expect("get").expect("present");
    assert_eq!((got.value.expose_str().expect("text"), &got.version), ("v1", &written.version));
    assert_eq!(
        (&got.metadata, got.created_at, got.updated_at),
        (&meta, written.created_at, written.updated_at)
    );
    assert_eq!(r, [vec!["DescribeSecret", "GetSecretValue"]], "first get: one round of two requests");
    let (again, r) = measure(&proxy, other.get(&k)).await;
    let again = again.expect("get").expect("present");
    assert_eq!(
        (again.version, again.metadata, again.created_at),
        (got.version, got.metadata, got.created_at)
    );
    assert_eq!(r, [vec!["GetSecretValue"]], "second get");

    let (has, r) = measure(&proxy, store.has(&k)).await;
    assert!(has.expect("has"));
    assert_eq!(r, [vec!["DescribeSecret"]], "has");
    let (version, r) = measure(&proxy, store.version(&k)).await;
    assert_eq!(version.expect("version"), Some(written.version.clone()));
    assert_eq!(r, [vec!["DescribeSecret"]], "version");

    // A missing key: the same round, both answering "not found".
    let (missing, r) = measure(&proxy, store.get(&key("nothing-here"))).await;
    assert!(missing.expect("get").is_none());
    assert_eq!(r, [vec!["DescribeSecret", "GetSecretValue"]], "get of a missing key");

    let (listed, r) = measure(&proxy, store.list(&ListOptions::new())).await;
    assert_eq!(listed.expect("list").keys, vec![k.clone()]);
    assert_eq!(r, [vec!["ListSecrets"]], "list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn batch_reads_are_one_batch_get_per_20_keys_this_store_wrote() {
    let Some((proxy, store)) = start(DeletionPolicy::Immediate).await else { return };
    let meta = Metadata::try_from([("by", "batch")]).expect("m");
    let keys: Vec<_> = (0..25).map(|i| key(&format!("batch-{i:02}"))).collect();
    let mut written = Vec::new();
    for k in &keys[..24] {
        written.push(store.set(k, &SecretValue::from(format!("value-of-{k}")), &meta).await.expect("set"));
    }

    // 25 keys (the last never written) this store wrote: two batches of
    // 20 and 5 at the same time, nothing else.
    let (got, r) = measure(&proxy, store.get_many(&keys)).await;
    let got = got.expect("get_many");
    assert_eq!(
        r,
        [vec!["BatchGetSecretValue", "BatchGetSecretValue"]],
        "get_many of versions this store wrote"
    );
    assert!(got[24].is_none(), "a key never written was answered");
    for ((k, c), w) in keys.iter().zip(&got).zip(&written) {
        let c = c.as_ref().unwrap_or_else(|| panic!("{k} was not answered"));
        assert_eq!(c.value.expose_str().expect("text"), format!("value-of-{k}"));
        assert_eq!((&c.key, &c.version, &c.metadata), (k, &w.version, &meta));
        assert_eq!((c.created_at, c.updated_at, c.expires_at), (w.created_at, w.updated_at, None));
    }

    // A key asked twice is one secret id of the request.
    let twice = [keys[0].clone(), keys[1].clone(), keys[0].clone()];
    let (got, r) = measure(&proxy, store.get_many(&twice)).await;
    let got = got.expect("get_many");
    assert_eq!(r, [vec!["BatchGetSecretValue"]], "get_many with a repeated key");
    assert_eq!(got[0].as_ref().map(|c| &c.version), got[2].as_ref().map(|c| &c.version));

    // Another store (another process) has not seen these versions: the
    // batch, then a get of each key, all three at once.
    let other = store_at(&proxy.endpoint, DeletionPolicy::Immediate, store.prefix());
    let (got, r) = measure(&proxy, other.get_many(&keys[..3])).await;
    let got = got.expect("get_many");
    let six = [
        "DescribeSecret",
        "DescribeSecret",
        "DescribeSecret",
        "GetSecretValue",
        "GetSecretValue",
        "GetSecretValue",
    ];
    assert_eq!(r, [vec!["BatchGetSecretValue"], six.to_vec()], "get_many of versions this store never saw");
    for ((k, c), w) in keys.iter().zip(&got).zip(&written) {
        let c = c.as_ref().unwrap_or_else(|| panic!("{k} was not answered"));
        assert_eq!((&c.version, &c.metadata, c.created_at), (&w.version, &meta, w.created_at));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_are_one_round_trip_where_the_service_allows() {
    let Some((proxy, store)) = start(DeletionPolicy::Immediate).await else { return };
    let k = key("write-me");
    let (v, m) = (SecretValue::from("value"), Metadata::try_from([("n", "1")]).expect("m"));

    // Upsert of a new key: the describe (which an overwrite needs, to keep
    // the version it overwrites) finds nothing, then CreateSecret.
    let (first, r) = measure(&proxy, store.set(&k, &v, &m)).await;
    let first = first.expect("set new");
    assert!(first.created);
    assert_eq!(r, [vec!["DescribeSecret"], vec!["CreateSecret"]], "upsert of a new key");

    // Overwrite of a secret this store made: UpdateSecret (value and
    // description in one call) alone; the ARN it answers is the one
    // CreateSecret answered, so created_at is the one this store knows.
    let (second, r) = measure(&proxy, store.set(&k, &SecretValue::from("value 2"), &m)).await;
    let second = second.expect("overwrite");
    assert!(!second.created && second.created_at == first.created_at && second.updated_at > first.updated_at);
    assert_eq!(r, [vec!["UpdateSecret"]], "overwrite of a key this store made: one request");
    let (got, r) = measure(&proxy, store.get(&k)).await;
    assert_eq!(got.expect("get").expect("present").version, second.version);
    assert_eq!(r, [vec!["GetSecretValue"]], "get after an overwrite");

    // Create-only: one CreateSecret; on a present key, refused by the
    // service, then one DescribeSecret to tell "exists" from "deleted".
    let fresh = key("create-me");
    let (created, r) = measure(&proxy, store.create(&fresh, &v, &m)).await;
    assert!(created.expect("create").created);
    assert_eq!(r, [vec!["CreateSecret"]], "create-only of a new key");
    let (refused, r) = measure(&proxy, store.create(&fresh, &v, &m)).await;
    assert!(matches!(refused, Err(Error::PreconditionFailed { .. })), "{refused:?}");
    assert_eq!(r, [vec!["CreateSecret"], vec!["DescribeSecret"]], "create-only of a present key");

    // Replace-if-version: the conditional path, in sequence (describe,
    // stage, move AWSCURRENT from the expected version, description).
    let (third, r) =
        measure(&proxy, store.replace(&k, &SecretValue::from("value 3"), &m, &second.version)).await;
    let third = third.expect("replace");
    assert_eq!(
        r,
        [
            vec!["DescribeSecret"],
            vec!["PutSecretValue"],
            vec!["UpdateSecretVersionStage"],
            vec!["UpdateSecret"]
        ],
        "replace"
    );
    let (stale, r) = measure(&proxy, store.replace(&k, &v, &m, &second.version)).await;
    assert!(matches!(stale, Err(Error::PreconditionFailed { .. })), "{stale:?}");
    assert_eq!(r, [vec!["DescribeSecret"]], "a stale replace is refused after one request");

    // moto answers a bare GetSecretValue with the version AWSCURRENT was on
    // before the last UpdateSecretVersionStage, which no longer carries
    // AWSCURRENT (Secrets Manager answers with the current one, and this is
    // one request). The read sees it, asks for the description, and reads
    // the version the description names: never a mixed or stale answer.
    let (got, r) = measure(&proxy, store.get(&k)).await;
    let got = got.expect("get").expect("present");
    assert_eq!((got.value.expose_str().expect("text"), &got.version), ("value 3", &third.version));
    assert_eq!(
        r,
        [vec!["GetSecretValue"], vec!["DescribeSecret"], vec!["GetSecretValue"]],
        "get after a replace (moto)"
    );
    let fresh = store_at(&proxy.endpoint, DeletionPolicy::Immediate, store.prefix());
    let (got, r) = measure(&proxy, fresh.get(&k)).await;
    assert_eq!(got.expect("get").expect("present").version, third.version);
    assert_eq!(
        r,
        [vec!["DescribeSecret", "GetSecretValue"], vec!["GetSecretValue"]],
        "first get by another store after a replace (moto)"
    );
    // After the next overwrite (one request: the replace saw the ARN and
    // the tag), the value alone again.
    let (fourth, r) = measure(&proxy, store.set(&k, &SecretValue::from("value 4"), &m)).await;
    let fourth = fourth.expect("overwrite");
    assert!(!fourth.created && fourth.created_at == first.created_at && fourth.updated_at > third.updated_at);
    assert_eq!(r, [vec!["UpdateSecret"]], "overwrite after a replace");
    let (got, r) = measure(&proxy, store.get(&k)).await;
    let got = got.expect("get").expect("present");
    assert_eq!((got.value.expose_str().expect("text"), &got.version), ("value 4", &fourth.version));
    assert_eq!(r, [vec!["GetSecretValue"]], "get after an overwrite that followed a replace");

    let (deleted, r) = measure(&proxy, store.delete(&k)).await;
    assert!(deleted.expect("delete"));
    assert_eq!(r, [vec!["DescribeSecret"], vec!["DeleteSecret"]], "delete");
    let (gone, r) = measure(&proxy, store.get(&k)).await;
    assert!(gone.expect("get").is_none());
    assert_eq!(r, [vec!["DescribeSecret", "GetSecretValue"]], "get after a delete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn setting_a_key_deleted_with_a_recovery_window_restores_it() {
    let Some((proxy, store)) = start(DeletionPolicy::RecoveryWindow(7)).await else { return };
    let k = key("phoenix");
    let (v, m) = (SecretValue::from("value"), Metadata::new());
    let first = store.set(&k, &v, &m).await.expect("set");
    assert!(store.delete(&k).await.expect("delete"));
    // The fast path is refused (scheduled for deletion), then the secret is
    // restored, its creation time reset, and the value written through the
    // staging label.
    let (again, r) = measure(&proxy, store.set(&k, &SecretValue::from("again"), &m)).await;
    let again = again.expect("set again");
    assert!(again.created && again.created_at > first.created_at);
    assert_eq!(
        r,
        [
            vec!["DescribeSecret"],
            vec!["DescribeSecret"],
            vec!["RestoreSecret"],
            vec!["DescribeSecret"],
            vec!["TagResource"],
            vec!["PutSecretValue"],
            vec!["UpdateSecretVersionStage"],
            vec!["UpdateSecret"]
        ],
        "set of a key deleted with a recovery window"
    );
    let got = store.get(&k).await.expect("get").expect("present");
    assert_eq!((got.created_at, got.version), (again.created_at, again.version));
}

/// An upsert of a key this store has not seen describes it first (the
/// description written keeps the version it overwrites), then is one
/// `UpdateSecret`; a key deleted
/// and made again by another store has another ARN, which the update
/// answers, so the outcome is described again and reports the new
/// `created_at`; a key another store deleted with a recovery window is
/// refused by the update and set again the long way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upserts_of_a_key_this_store_saw_are_one_request_and_check_the_arn() {
    let Some((proxy, writer)) = start(DeletionPolicy::Immediate).await else { return };
    let k = key("seen");
    let m = Metadata::try_from([("n", "1")]).expect("m");
    let first = writer.set(&k, &SecretValue::from("v1"), &m).await.expect("set new");

    // Another store (another process) knows nothing of the key yet.
    let other = store_at(&proxy.endpoint, DeletionPolicy::Immediate, writer.prefix());
    let (out, r) = measure(&proxy, other.set(&k, &SecretValue::from("v2"), &m)).await;
    let out = out.expect("overwrite");
    assert!(!out.created && out.created_at == first.created_at, "{out:?} after {first:?}");
    assert_eq!(
        r,
        [vec!["DescribeSecret"], vec!["UpdateSecret"]],
        "first upsert by a store that never saw the key"
    );
    let (again, r) = measure(&proxy, other.set(&k, &SecretValue::from("v3"), &m)).await;
    let again = again.expect("overwrite");
    assert!(!again.created && again.created_at == first.created_at && again.updated_at > out.updated_at);
    assert_eq!(r, [vec!["UpdateSecret"]], "second upsert: one request");
    // A store that read the key (value and description) knows it too.
    let reader = store_at(&proxy.endpoint, DeletionPolicy::Immediate, writer.prefix());
    reader.get(&k).await.expect("get").expect("present");
    let (read_then_set, r) = measure(&proxy, reader.set(&k, &SecretValue::from("v4"), &m)).await;
    let read_then_set = read_then_set.expect("overwrite");
    assert!(!read_then_set.created && read_then_set.created_at == first.created_at);
    assert_eq!(r, [vec!["UpdateSecret"]], "upsert after a get");

    // Deleted and made again by another store: a new secret, a new ARN.
    assert!(writer.delete(&k).await.expect("delete"));
    let reborn = writer.set(&k, &SecretValue::from("reborn"), &Metadata::new()).await.expect("set again");
    assert!(reborn.created && reborn.created_at > first.created_at);
    let (over, r) = measure(&proxy, other.set(&k, &SecretValue::from("over"), &m)).await;
    let over = over.expect("overwrite");
    assert!(!over.created, "the key existed: another store made it again");
    assert_eq!(
        over.created_at, reborn.created_at,
        "created_at of the secret made again, not of the first one"
    );
    assert_eq!(r, [vec!["UpdateSecret"], vec!["DescribeSecret"]], "the update answered another ARN");
    let got = other.get(&k).await.expect("get").expect("present");
    assert_eq!((got.value.expose_str().expect("text"), got.created_at), ("over", reborn.created_at));
    assert_eq!(got.version, over.version);
    let (next, r) = measure(&proxy, other.set(&k, &SecretValue::from("next"), &m)).await;
    assert_eq!(next.expect("overwrite").created_at, reborn.created_at);
    assert_eq!(r, [vec!["UpdateSecret"]], "one request again once the new ARN is known");

    // Deleted by another store with a recovery window: the update is
    // refused, and the key is set again as a new one.
    let windowed = store_at(&proxy.endpoint, DeletionPolicy::RecoveryWindow(7), writer.prefix());
    assert!(windowed.delete(&k).await.expect("delete"));
    let (phoenix, r) = measure(&proxy, other.set(&k, &SecretValue::from("phoenix"), &m)).await;
    let phoenix = phoenix.expect("set again");
    assert!(phoenix.created && phoenix.created_at > reborn.created_at, "{phoenix:?}");
    assert_eq!(r.first(), Some(&vec!["UpdateSecret"]), "the update alone first: {r:?}");
    assert!(r.iter().flatten().any(|op| *op == "RestoreSecret"), "restored: {r:?}");
    let got = writer.get(&k).await.expect("get").expect("present");
    assert_eq!((got.value.expose_str().expect("text"), got.created_at), ("phoenix", phoenix.created_at));
}
