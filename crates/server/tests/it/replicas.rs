//! Two `credstore` replicas (the binary, as processes) over one PostgreSQL
//! store: the same database, schema and key-encryption key in both config
//! files, each replica with its own listener, data directory and audit log.
//! Create-only races split across the replicas, a replica killed with
//! SIGKILL under load, and PostgreSQL restarted under load.
//!
//! PostgreSQL comes from `credstore_test_servers::postgres`: the shared
//! server for the tests that only need one, a server of the test's own for
//! the restart. Without PostgreSQL installed the tests fail under `CI=true`
//! and say loudly that they are skipped otherwise.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use credstore_test_servers::postgres::Postgres;
use serde_json::{json, Value};

use crate::util::harness::ADMIN;
use crate::util::process::Proc;

/// The id of the PostgreSQL store in both replicas' configs.
const STORE: &str = "shared";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

/// What both replicas' configs name: one PostgreSQL database and schema and
/// one key-encryption key (a master key, by `key_env`).
struct SharedStore {
    port: u16,
    user: String,
    password: String,
    schema: String,
    /// The base64 of a random 32-byte key.
    kek: String,
}

impl SharedStore {
    fn on(pg: &Postgres, prefix: &str) -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).unwrap();
        Self {
            port: pg.port(),
            user: pg.user().to_owned(),
            password: pg.password().to_owned(),
            schema: Postgres::fresh_schema(prefix),
            kek: base64::engine::general_purpose::STANDARD.encode(key),
        }
    }

    /// The config file of one replica: the server settings `top`, then the
    /// store's table with `store_extra` (such as `cache = { .. }`).
    fn config(&self, top: &str, store_extra: &str) -> String {
        format!(
            r#"default_stores = false
admin_reveal = true
{top}

[[stores]]
id = "{STORE}"
type = "postgres"
host = "127.0.0.1"
port = {port}
user = "{user}"
database = "postgres"
password_env = "TEST_PG_PASSWORD"
schema = "{schema}"
key = {{ provider = "master-key", key_env = "TEST_PG_KEK" }}
{store_extra}
"#,
            port = self.port,
            user = self.user,
            schema = self.schema,
        )
    }

    /// Starts a replica in a directory of its own (its data directory and
    /// audit log) and waits until it listens.
    fn start(&self, top: &str, store_extra: &str) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("credstore.toml"), self.config(top, store_extra)).unwrap();
        let env = [
            ("CREDSTORE_CONFIG", "credstore.toml"),
            ("CREDSTORE_ADMIN_TOKEN", ADMIN),
            ("TEST_PG_PASSWORD", self.password.as_str()),
            ("TEST_PG_KEK", self.kek.as_str()),
        ];
        let (proc, addr) = Proc::serve(dir.path(), &env, &[]);
        Replica { proc, addr, _dir: dir }
    }
}

/// One running replica.
struct Replica {
    proc: Proc,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Replica {
    /// SIGKILL: no shutdown, no flush, no goodbye to PostgreSQL.
    fn kill_9(&mut self) {
        // SAFETY: sending a signal to our own child process.
        assert_eq!(unsafe { libc::kill(self.proc.child.id() as i32, libc::SIGKILL) }, 0);
        let status = self.proc.wait();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
    }

    /// The replica's log has no panic.
    fn assert_no_panic(&self) {
        let log = self.proc.stderr_text();
        assert!(!log.contains("panicked"), "a replica panicked:\n{log}");
    }
}

fn creds(addr: SocketAddr) -> String {
    format!("http://{addr}/manage/tenants/t1/projects/p1/credential-stores/{STORE}/credentials")
}

/// The version in an `ETag: "<version>"` header.
fn etag(r: &reqwest::Response) -> Option<String> {
    let tag = r.headers().get("etag")?.to_str().ok()?;
    Some(tag.strip_prefix('"')?.strip_suffix('"')?.to_owned())
}

/// A create of `key` = `value` (create only with `create_only`): the status
/// and the version of the answer's `ETag`, or the transport error.
async fn write(
    c: &reqwest::Client,
    addr: SocketAddr,
    key: &str,
    value: &str,
    create_only: bool,
) -> Result<(u16, Option<String>), reqwest::Error> {
    let mut req = c.post(creds(addr)).bearer_auth(ADMIN).json(&json!({"key": key, "value": value}));
    if create_only {
        req = req.header("If-None-Match", "*");
    }
    let r = req.send().await?;
    let status = r.status().as_u16();
    if status >= 400 {
        let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert!(ct.starts_with("application/problem+json"), "{status} answered as {ct:?}");
    }
    Ok((status, etag(&r)))
}

/// The value and version of `key` read through the replica at `addr`
/// (`None` for a 404).
async fn read(c: &reqwest::Client, addr: SocketAddr, key: &str) -> Option<(String, String)> {
    let r = c.get(format!("{}/{key}/value", creds(addr))).bearer_auth(ADMIN).send().await.unwrap();
    match r.status().as_u16() {
        404 => None,
        200 => {
            let body: Value = r.json().await.unwrap();
            let data = &body["data"];
            Some((data["value"].as_str().unwrap().to_owned(), data["version"].as_str().unwrap().to_owned()))
        }
        other => panic!("reading {key} through {addr}: {other} {}", r.text().await.unwrap_or_default()),
    }
}

/// The store's entry in list-stores on the replica at `addr`.
async fn store_entry(c: &reqwest::Client, addr: SocketAddr) -> Value {
    let r = c
        .get(format!("http://{addr}/manage/tenants/t1/projects/p1/credential-stores"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    list["data"].as_array().unwrap().iter().find(|e| e["id"] == STORE).cloned().expect("the store is listed")
}

/// Polls `check` every 25 ms until it holds, for at most `limit`; the time
/// it took, or `None`.
async fn poll_until<F, Fut>(limit: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if check().await {
            return Some(started.elapsed());
        }
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[test]
fn create_only_races_split_across_two_replicas_have_exactly_one_winner_per_key() {
    let Some(pg) = Postgres::shared() else { return };
    let shared = SharedStore::on(pg, "race");
    let (mut a, mut b) = (shared.start("", ""), shared.start("", ""));
    const KEYS: usize = 40;
    const RACERS: usize = 8;
    rt().block_on(async {
        let c = client();
        let start = Arc::new(tokio::sync::Barrier::new(KEYS * RACERS));
        let mut tasks = Vec::new();
        for k in 0..KEYS {
            for r in 0..RACERS {
                // Racers 0..4 on replica A, 4..8 on replica B.
                let addr = if r < RACERS / 2 { a.addr } else { b.addr };
                let (c, start) = (c.clone(), start.clone());
                tasks.push(tokio::spawn(async move {
                    let (key, value) = (format!("race-{k}"), format!("racer-{r}-of-key-{k}"));
                    start.wait().await;
                    let (status, version) = write(&c, addr, &key, &value, true).await.unwrap();
                    (k, value, status, version)
                }));
            }
        }
        let mut winners: BTreeMap<usize, Vec<(String, Option<String>)>> = BTreeMap::new();
        let mut others = Vec::new();
        for t in tasks {
            let (k, value, status, version) = t.await.unwrap();
            match status {
                201 => winners.entry(k).or_default().push((value, version)),
                412 => {}
                other => others.push(format!("race-{k}: {other}")),
            }
        }
        assert!(
            others.is_empty(),
            "answers other than 201 for one racer and 412 for the others: {others:?}\nA: {}\nB: {}",
            a.proc.stderr_text(),
            b.proc.stderr_text()
        );
        for k in 0..KEYS {
            let won = winners.get(&k).map(Vec::as_slice).unwrap_or_default();
            assert_eq!(won.len(), 1, "race-{k}: {} winners: {won:?}", won.len());
            let (value, version) = &won[0];
            let version = version.clone().expect("the 201 carries an ETag");
            for (name, addr) in [("A", a.addr), ("B", b.addr)] {
                let got = read(&c, addr, &format!("race-{k}")).await;
                assert_eq!(got, Some((value.clone(), version.clone())), "race-{k} through replica {name}");
            }
        }
    });
    a.assert_no_panic();
    b.assert_no_panic();
    assert!(a.proc.terminate().success());
    assert!(b.proc.terminate().success());
}

/// What one writer had acknowledged: (key, value, version), in order.
type Acks = Arc<Mutex<Vec<(String, String, String)>>>;

/// What one writer had refused: (status, key), 0 for a transport error.
type Refused = Arc<Mutex<Vec<(u16, String)>>>;

/// A writer that creates `w{id}-{n}` (create only) for n = 0, 1, … through
/// the replica at `addr` until `stop`, recording every acknowledged write.
/// Answers other than 201 are recorded in `refused` (status, key); a
/// transport error (the replica is gone) ends it when `end_on_error`, else
/// is recorded as status 0.
fn spawn_writer(
    c: &reqwest::Client,
    addr: SocketAddr,
    id: String,
    stop: Arc<AtomicBool>,
    end_on_error: bool,
) -> (Acks, Refused, tokio::task::JoinHandle<()>) {
    let acks: Acks = Arc::default();
    let refused: Refused = Arc::default();
    let (c, a, r) = (c.clone(), acks.clone(), refused.clone());
    let task = tokio::spawn(async move {
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let (key, value) = (format!("{id}-{n}"), format!("value-{id}-{n}"));
            n += 1;
            match write(&c, addr, &key, &value, true).await {
                Ok((201, Some(version))) => a.lock().unwrap().push((key, value, version)),
                Ok((status, _)) => r.lock().unwrap().push((status, key)),
                Err(_) if end_on_error => return,
                Err(_) => r.lock().unwrap().push((0, key)),
            }
        }
    });
    (acks, refused, task)
}

fn count(acks: &[Acks]) -> usize {
    acks.iter().map(|a| a.lock().unwrap().len()).sum()
}

#[test]
fn a_replica_killed_with_sigkill_under_load_loses_no_acknowledged_write() {
    let Some(pg) = Postgres::shared() else { return };
    let shared = SharedStore::on(pg, "kill");
    let (mut a, mut b) = (shared.start("", ""), shared.start("", ""));
    let (a_addr, b_addr) = (a.addr, b.addr);
    let runtime = rt();
    let c = client();
    let stop = Arc::new(AtomicBool::new(false));
    let (mut on_a, mut on_b, mut tasks) = (Vec::new(), Vec::new(), Vec::new());
    runtime.block_on(async {
        for w in 0..4 {
            let (acks, _, task) = spawn_writer(&c, a_addr, format!("a{w}"), stop.clone(), true);
            on_a.push(acks);
            tasks.push(task);
            let (acks, refused, task) = spawn_writer(&c, b_addr, format!("b{w}"), stop.clone(), false);
            on_b.push((acks, refused));
            tasks.push(task);
        }
        // Under load: A has acknowledged writes of its own when it dies.
        let on_a = &on_a;
        let loaded = poll_until(Duration::from_secs(30), || async move { count(on_a) >= 100 }).await;
        assert!(loaded.is_some(), "replica A acknowledged {} writes in 30 s", count(on_a));
    });
    a.kill_9();
    let b_acks: Vec<Acks> = on_b.iter().map(|(a, _)| a.clone()).collect();
    let at_kill = count(&b_acks);
    runtime.block_on(async {
        // B keeps serving after A is gone.
        let b = &b_acks;
        let more = poll_until(Duration::from_secs(30), || async move { count(b) >= at_kill + 100 }).await;
        assert!(more.is_some(), "replica B acknowledged {} writes after the kill", count(&b_acks) - at_kill);
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.unwrap();
        }
        for (_, refused) in &on_b {
            assert!(refused.lock().unwrap().is_empty(), "replica B refused: {:?}", refused.lock().unwrap());
        }
        // Every acknowledged write, A's included, is read through B as it
        // was acknowledged.
        let all: Vec<(String, String, String)> =
            on_a.iter().chain(&b_acks).flat_map(|a| a.lock().unwrap().clone()).collect();
        for (key, value, version) in &all {
            let got = read(&c, b_addr, key).await;
            assert_eq!(got, Some((value.clone(), version.clone())), "{key} through replica B");
        }
        eprintln!(
            "{} acknowledged writes ({} through A before its SIGKILL) read back through B",
            all.len(),
            count(&on_a)
        );
    });
    b.assert_no_panic();
    assert!(b.proc.terminate().success());
}

#[test]
fn postgres_restarted_under_load_is_unavailable_within_the_probe_interval_then_served_again_losing_no_acknowledged_write(
) {
    let Some(pg) = Postgres::start() else { return };
    let shared = SharedStore::on(&pg, "restart");
    const PROBE_INTERVAL: Duration = Duration::from_millis(300);
    // The probe interval (+10 % jitter), one probe timeout (1 s: the probe
    // that sees the server gone may have started just before), and 700 ms
    // for the list's polling and a busy machine.
    const NOTICED_WITHIN: Duration = Duration::from_millis(330 + 1000 + 700);
    // Short timeouts, so that calls to a PostgreSQL that is gone fail fast.
    let top = format!(
        "probe_interval_ms = {}\nprobe_timeout_ms = 1000\nstore_timeout_ms = 3000",
        PROBE_INTERVAL.as_millis()
    );
    let timeouts = "connect_timeout_ms = 1000\nacquire_timeout_ms = 2000\nstatement_timeout_ms = 2000";
    let (mut a, mut b) = (shared.start(&top, timeouts), shared.start(&top, timeouts));
    let addrs = [a.addr, b.addr];
    let runtime = rt();
    let c = client();
    let stop = Arc::new(AtomicBool::new(false));
    let (mut acks, mut refusals, mut tasks) = (Vec::new(), Vec::new(), Vec::new());
    runtime.block_on(async {
        for (i, addr) in addrs.iter().enumerate() {
            for w in 0..2 {
                let (a, r, t) = spawn_writer(&c, *addr, format!("r{i}w{w}"), stop.clone(), false);
                acks.push(a);
                refusals.push(r);
                tasks.push(t);
            }
        }
        let acks = &acks;
        let loaded = poll_until(Duration::from_secs(30), || async move { count(acks) >= 100 }).await;
        assert!(loaded.is_some(), "{} writes acknowledged in 30 s", count(acks));
    });

    pg.stop();
    let before_restart = runtime.block_on(async {
        for (name, addr) in [("A", addrs[0]), ("B", addrs[1])] {
            let c = &c;
            let noticed = poll_until(Duration::from_secs(10), || async move {
                store_entry(c, addr).await["available"] == false
            })
            .await;
            let noticed =
                noticed.unwrap_or_else(|| panic!("replica {name} still lists the store as available"));
            assert!(noticed <= NOTICED_WITHIN, "replica {name} saw PostgreSQL gone after {noticed:?}");
            let entry = store_entry(c, addr).await;
            assert_eq!(entry["reason"], "unreachable", "replica {name}: {entry}");
        }
        // Writes answer 503 while PostgreSQL is down.
        for addr in addrs {
            let (status, _) = write(&c, addr, "during-outage", "v", false).await.unwrap();
            assert_eq!(status, 503, "a write through {addr} while PostgreSQL is down");
        }
        count(&acks)
    });

    pg.restart();
    runtime.block_on(async {
        for (name, addr) in [("A", addrs[0]), ("B", addrs[1])] {
            let c = &c;
            let back = poll_until(Duration::from_secs(30), || async move {
                matches!(write(c, addr, &format!("back-{name}"), "v", false).await, Ok((200 | 201, _)))
            })
            .await;
            assert!(back.is_some(), "replica {name} does not serve writes again after PostgreSQL's restart");
            let listed = poll_until(Duration::from_secs(10), || async move {
                store_entry(c, addr).await["available"] == true
            })
            .await;
            assert!(listed.is_some(), "replica {name} does not list the store as available again");
        }
        // The writers go on after the restart.
        let acks_now = &acks;
        let more =
            poll_until(Duration::from_secs(30), || async move { count(acks_now) >= before_restart + 100 })
                .await;
        assert!(more.is_some(), "{} writes acknowledged after the restart", count(&acks) - before_restart);
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.unwrap();
        }
        // While PostgreSQL was down, writes were refused with 503, never
        // another error.
        let refused: Vec<(u16, String)> = refusals.iter().flat_map(|r| r.lock().unwrap().clone()).collect();
        assert!(refused.iter().all(|(status, _)| *status == 503), "refused otherwise than 503: {refused:?}");
        let all: Vec<(String, String, String)> = acks.iter().flat_map(|a| a.lock().unwrap().clone()).collect();
        for (i, (key, value, version)) in all.iter().enumerate() {
            // Each write read back through one replica, in turn.
            let got = read(&c, addrs[i % 2], key).await;
            assert_eq!(got, Some((value.clone(), version.clone())), "{key}");
        }
        eprintln!(
            "{} acknowledged writes ({before_restart} before the restart), {} refused with 503, all read back",
            all.len(),
            refused.len()
        );
    });
    a.assert_no_panic();
    b.assert_no_panic();
    assert!(a.proc.terminate().success());
    assert!(b.proc.terminate().success());
}
