//! Tests with more than one process: a writer killed with SIGKILL again and
//! again, two processes writing one file, a rotation killed half way, and a
//! process that may not write the database's directory.
//!
//! The child processes are this test binary itself, started with
//! `std::env::current_exe()` and the name of the test that starts them; the
//! environment variable `CREDSTORE_SQLITE_CHILD` tells that test to play the
//! child's role instead of the parent's.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use credstore_conformance::fixtures::{key, meta};
use credstore_core::{CredentialStore, CredentialStoreExt, Error, Metadata, SecretValue, StoreId};
use credstore_sqlite::{KeyFile, MasterKey, SqliteConfig, SqliteStore};

use crate::util::*;

const CHILD_ENV: &str = "CREDSTORE_SQLITE_CHILD";
const DB_ENV: &str = "CREDSTORE_SQLITE_CHILD_DB";
const KEY_ENV: &str = "CREDSTORE_SQLITE_CHILD_KEY";
const NEW_KEY_ENV: &str = "CREDSTORE_SQLITE_CHILD_NEW_KEY";
const ROUND_ENV: &str = "CREDSTORE_SQLITE_CHILD_ROUND";

/// Kills of the crash test.
const CRASH_ROUNDS: usize = 60;
/// Kills of the key file rotation test.
const KEY_FILE_ROUNDS: usize = 60;
/// Concurrent writer tasks in the crash child.
const CRASH_TASKS: usize = 6;

fn child_role() -> Option<String> {
    std::env::var(CHILD_ENV).ok()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Opens a store with `config` on `rt`, and writes the `READ_KEYS` keys
/// `k<i>` at round 0 (see `read_value`).
fn open_seeded(rt: &tokio::runtime::Runtime, config: SqliteConfig) -> SqliteStore {
    rt.block_on(async {
        let store = open_with(config).await;
        for i in 0..READ_KEYS {
            put(&store, &format!("k{i}"), &read_value(i, 0)).await;
        }
        store
    })
}

/// Opens the store at `db` under `master` on `rt`, and sets the `n` keys
/// `<prefix><i>` at once (`set_concurrently`).
fn open_filled(
    rt: &tokio::runtime::Runtime,
    db: &Path,
    master: &MasterKey,
    prefix: &str,
    n: usize,
) -> SqliteStore {
    rt.block_on(async {
        let store = open(db, master).await;
        set_concurrently(&store, prefix, n).await;
        store
    })
}

fn env_path(var: &str) -> PathBuf {
    PathBuf::from(std::env::var(var).unwrap_or_else(|_| panic!("{var} is set for the child")))
}

/// The name the test harness knows test `test` of this module by.
fn test_path(test: &str) -> String {
    let module = module_path!().split_once("::").map_or(module_path!(), |(_crate, module)| module);
    format!("{module}::{test}")
}

/// This test binary, running only test `test` in role `role`.
fn child(test: &str, role: &str, db: &Path) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([test_path(test).as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, role)
        .env(DB_ENV, db)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    cmd
}

/// Marks the lines a child says, since the test harness prints on the same
/// line before them.
const MARK: &str = "@@credstore@@ ";

/// A child process that is killed if the test ends before it does.
struct Proc(Child);

impl Proc {
    fn spawn(cmd: &mut Command) -> Self {
        Proc(cmd.spawn().expect("start the child process"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Complete lines the child said (after [`MARK`]), as they come; a line cut
/// by the kill is dropped.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) if buf.last() == Some(&b'\n') => {
                    let line = String::from_utf8_lossy(&buf[..buf.len() - 1]).into_owned();
                    let Some((_, said)) = line.split_once(MARK) else { continue };
                    if tx.send(said.to_owned()).is_err() {
                        return;
                    }
                }
                Ok(_) => return,
            }
        }
    });
    rx
}

/// Waits for a line starting with `prefix`; returns it with the lines before.
fn wait_line(rx: &mpsc::Receiver<String>, prefix: &str, timeout: Duration) -> (String, Vec<String>) {
    let deadline = Instant::now() + timeout;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with(prefix) => return (line, before),
            Ok(line) => before.push(line),
            Err(e) => panic!("no {prefix:?} line from the child within {timeout:?} ({e}); saw {before:?}"),
        }
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{MARK}{line}").unwrap();
    out.flush().unwrap();
}

fn integrity_ok(path: &Path) {
    let conn = raw(path);
    let result: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(result, "ok", "integrity_check of {}", path.display());
}

// ---------------------------------------------------------------------------
// Crash test

fn crash_value(key: &str) -> String {
    let n = key.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    format!("{key}|").repeat(1 + (n % 60) as usize)
}

fn crash_child() {
    let db = env_path(DB_ENV);
    let round: usize = std::env::var(ROUND_ENV).unwrap().parse().unwrap();
    runtime().block_on(async move {
        let master = MasterKey::from_env(KEY_ENV).unwrap();
        let store = open(&db, &master).await;
        say("READY");
        let tasks: Vec<_> = (0..CRASH_TASKS)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    let meta = meta([("round", &*round.to_string()), ("task", &*t.to_string())]);
                    for i in 0.. {
                        let k = format!("r{round}-t{t}-{i}");
                        store.set(&key(&k), &SecretValue::new(crash_value(&k)), &meta).await.unwrap();
                        say(&format!("ACK {k}"));
                        if i % 5 == 0 {
                            // Said before the call: only a key the parent saw
                            // this line for may have vanished.
                            say(&format!("DELETING {k}"));
                            assert!(store.delete(&key(&k)).await.unwrap());
                            say(&format!("DEL {k}"));
                        }
                        let hot = format!("{round}:{i}");
                        store.set(&key(&format!("hot-t{t}")), &secret(&hot), &Metadata::new()).await.unwrap();
                        say(&format!("HOT {t} {hot}"));
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[derive(Default)]
struct Acked {
    keys: BTreeSet<String>,
    /// Keys whose deletion was started, and those whose deletion was acknowledged.
    deleting: BTreeSet<String>,
    deleted: BTreeSet<String>,
    /// Per task: the hot value seen at the last check.
    hot_seen: BTreeMap<usize, String>,
}

fn successor(hot: &str) -> String {
    let (round, i) = hot.split_once(':').unwrap();
    format!("{round}:{}", i.parse::<u64>().unwrap() + 1)
}

#[test]
fn crash_kill_loop_loses_no_acknowledged_write() {
    if child_role().as_deref() == Some("crash") {
        return crash_child();
    }
    let started = Instant::now();
    let (_dir, db, master) = keyed_temp_db("crash.db");
    let (mut rng, seed) = Rng::seeded();
    println!("crash test seed {seed} (CREDSTORE_TEST_SEED reproduces it)");
    let rt = runtime();
    let mut acked = Acked::default();
    let (mut kills, mut early_kills, mut acks) = (0, 0, 0);
    let mut verify_time = Duration::ZERO;
    for round in 0..CRASH_ROUNDS {
        let mut proc = Proc::spawn(
            child("crash_kill_loop_loses_no_acknowledged_write", "crash", &db)
                .env(KEY_ENV, master.to_base64().unwrap().as_str())
                .env(ROUND_ENV, round.to_string()),
        );
        let rx = lines_of(&mut proc.0);
        if rng.below(8) == 0 {
            // Kill during start-up: the opening, or the very first writes.
            std::thread::sleep(Duration::from_millis(rng.below(25)));
            early_kills += 1;
        } else {
            wait_line(&rx, "READY", Duration::from_secs(60));
            std::thread::sleep(Duration::from_millis(1 + rng.below(150)));
        }
        proc.0.kill().unwrap();
        let status = proc.0.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "round {round}: the child died on its own: {status}"
        );
        kills += 1;
        // Every complete line the child wrote before it died was acknowledged.
        let mut hot_acked: BTreeMap<usize, String> = BTreeMap::new();
        for line in rx.iter() {
            let mut parts = line.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("ACK"), Some(k), None) => {
                    acked.keys.insert(k.to_owned());
                    acks += 1;
                }
                (Some("DELETING"), Some(k), None) => {
                    acked.deleting.insert(k.to_owned());
                }
                (Some("DEL"), Some(k), None) => {
                    acked.deleted.insert(k.to_owned());
                }
                (Some("HOT"), Some(t), Some(v)) => {
                    hot_acked.insert(t.parse().unwrap(), v.to_owned());
                }
                _ => {}
            }
        }
        let t0 = Instant::now();
        integrity_ok(&db);
        rt.block_on(verify_crash_round(&db, &master, &mut acked, &hot_acked, round));
        verify_time += t0.elapsed();
    }
    let elapsed = started.elapsed();
    println!("verification took {verify_time:?}");
    println!(
        "crash test: {kills} SIGKILLs ({early_kills} during start-up), {acks} acknowledged writes, {} deletes, \
         all present after every kill; {elapsed:?}",
        acked.deleted.len()
    );
    assert!(kills >= 50);
    assert!(acks > CRASH_ROUNDS, "the children acknowledged writes");
}

async fn verify_crash_round(
    db: &Path,
    master: &MasterKey,
    acked: &mut Acked,
    hot_acked: &BTreeMap<usize, String>,
    round: usize,
) {
    let store = open(db, master).await;
    // Read in a few lanes at once: the check grows with every round.
    let keys: Vec<String> = acked.keys.iter().cloned().collect();
    let lanes = 4;
    let reads: Vec<_> = (0..lanes)
        .map(|lane| {
            let store = store.clone();
            let mine: Vec<String> = keys.iter().skip(lane).step_by(lanes).cloned().collect();
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(mine.len());
                for k in mine {
                    let got =
                        store.get(&key(&k)).await.unwrap_or_else(|e| panic!("round {round}: get {k}: {e}"));
                    out.push((k, got));
                }
                out
            })
        })
        .collect();
    for lane in reads {
        for (k, got) in lane.await.unwrap() {
            let deleted = acked.deleted.contains(&k);
            let delete_in_flight = acked.deleting.contains(&k);
            match got {
                Some(c) => {
                    assert!(!deleted, "round {round}: deleted key {k} came back");
                    assert_eq!(c.value.expose_str().unwrap(), crash_value(&k), "round {round}: value of {k}");
                    assert!(c.metadata.get("round").is_some());
                }
                None => {
                    assert!(deleted || delete_in_flight, "round {round}: acknowledged key {k} is missing")
                }
            }
        }
    }
    for t in 0..CRASH_TASKS {
        let got = value(&store, &format!("hot-t{t}")).await;
        let allowed: Vec<String> = match hot_acked.get(&t) {
            Some(last) => vec![last.clone(), successor(last)],
            None => {
                let mut v = vec![format!("{round}:0")];
                v.extend(acked.hot_seen.get(&t).cloned());
                v
            }
        };
        match &got {
            Some(v) => {
                assert!(allowed.contains(v), "round {round}: hot-t{t} is {v}, expected one of {allowed:?}")
            }
            None => assert!(
                !hot_acked.contains_key(&t) && !acked.hot_seen.contains_key(&t),
                "round {round}: hot-t{t} vanished"
            ),
        }
        if let Some(v) = got {
            acked.hot_seen.insert(t, v);
        }
    }
}

// ---------------------------------------------------------------------------
// Two processes on one file

fn peer_child() {
    let db = env_path(DB_ENV);
    runtime().block_on(async move {
        let store = open(&db, &MasterKey::from_env(KEY_ENV).unwrap()).await;
        write_many(&store, "child").await;
        say("DONE");
    });
}

async fn write_many(store: &SqliteStore, who: &str) {
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let (store, who) = (store.clone(), who.to_owned());
            tokio::spawn(async move {
                for i in 0..50 {
                    let k = format!("{who}-{t}-{i}");
                    store
                        .set(&key(&k), &SecretValue::new(format!("{k}-value")), &Metadata::new())
                        .await
                        .unwrap();
                    store
                        .set(&key("shared"), &SecretValue::new(who.clone()), &Metadata::new())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[test]
fn two_processes_write_one_file() {
    if child_role().as_deref() == Some("peer") {
        return peer_child();
    }
    let (_dir, db, master) = keyed_temp_db("shared.db");
    runtime().block_on(async {
        let store = open(&db, &master).await;
        let mut proc = Proc::spawn(
            child("two_processes_write_one_file", "peer", &db)
                .env(KEY_ENV, master.to_base64().unwrap().as_str()),
        );
        let rx = lines_of(&mut proc.0);
        write_many(&store, "parent").await;
        let (_, _) = wait_line(&rx, "DONE", Duration::from_secs(120));
        assert!(proc.0.wait().unwrap().success());
        for who in ["parent", "child"] {
            for t in 0..4 {
                for i in 0..50 {
                    let k = format!("{who}-{t}-{i}");
                    assert_eq!(value(&store, &k).await, Some(format!("{k}-value")), "{k} seen by the parent");
                }
            }
        }
        let shared = value(&store, "shared").await.unwrap();
        assert!(shared == "parent" || shared == "child", "{shared}");
        assert_eq!(count_all(&store).await, 401);
    });
    integrity_ok(&db);
}

// ---------------------------------------------------------------------------
// A rotation killed half way

fn rotate_child() {
    let db = env_path(DB_ENV);
    runtime().block_on(async move {
        let store = open(&db, &MasterKey::from_env(KEY_ENV).unwrap()).await;
        let new = MasterKey::from_env(NEW_KEY_ENV).unwrap();
        store
            .rotate_key_with_progress(new, |done, total| {
                if done >= 1000 && done < total {
                    // Hold the rotation's transaction open until the parent kills us.
                    say(&format!("HALFWAY {done} {total}"));
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                }
            })
            .await
            .unwrap();
        say("FINISHED");
    });
}

#[test]
fn a_rotation_killed_half_way_leaves_the_old_key_working() {
    if child_role().as_deref() == Some("rotate") {
        return rotate_child();
    }
    let (_dir, db) = temp_db("rot.db");
    let (old, new) = (MasterKey::generate(), MasterKey::generate());
    let n = 2500;
    let rt = runtime();
    drop(open_filled(&rt, &db, &old, "k", n));
    wait_closed(&db);
    let mut proc = Proc::spawn(
        child("a_rotation_killed_half_way_leaves_the_old_key_working", "rotate", &db)
            .env(KEY_ENV, old.to_base64().unwrap().as_str())
            .env(NEW_KEY_ENV, new.to_base64().unwrap().as_str()),
    );
    let rx = lines_of(&mut proc.0);
    let (line, _) = wait_line(&rx, "HALFWAY", Duration::from_secs(120));
    assert_eq!(line, format!("HALFWAY 1000 {n}"));
    proc.0.kill().unwrap();
    assert_eq!(proc.0.wait().unwrap().signal(), Some(libc::SIGKILL));
    integrity_ok(&db);
    rt.block_on(async {
        let err = err_of(
            SqliteStore::open(StoreId::new("s").unwrap(), SqliteConfig::new(&db).master_key(new.clone()))
                .await,
        );
        assert!(err.to_string().contains("wrong master key"), "{err}");
        let store = open(&db, &old).await;
        assert_eq!(store.key_version(), 1);
        for i in 0..n {
            assert_eq!(value(&store, &format!("k{i}")).await, Some(format!("v{i}")));
        }
        // And the rotation can be done again, to completion.
        let report = store.rotate_key(new.clone()).await.unwrap();
        assert_eq!(report.rows, n);
        drop(store);
        assert_eq!(value(&open(&db, &new).await, "k7").await.as_deref(), Some("v7"));
    });
}

// ---------------------------------------------------------------------------
// A key file rotation killed at random points

fn open_keyed(
    db: &Path,
    file: &Path,
) -> impl std::future::Future<Output = credstore_core::Result<SqliteStore>> {
    SqliteStore::open(StoreId::new("kf").unwrap(), SqliteConfig::new(db).master_key_file(KeyFile::new(file)))
}

fn key_file_rotating_child() {
    let (db, file) = (env_path(DB_ENV), env_path(KEY_ENV));
    runtime().block_on(async move {
        let store = open_keyed(&db, &file).await.unwrap();
        say("READY");
        // Rotate until killed.
        loop {
            store.rotate_key_file().await.unwrap();
            say("ROTATED");
        }
    });
}

/// xorshift64*: the kill delays, reproducible from the printed seed.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

#[test]
fn a_key_file_rotation_killed_at_random_points_never_loses_the_key_or_a_credential() {
    const TEST: &str = "a_key_file_rotation_killed_at_random_points_never_loses_the_key_or_a_credential";
    if child_role().as_deref() == Some("rotate-key-file") {
        return key_file_rotating_child();
    }
    let dir = tempfile::tempdir().unwrap();
    let (db, file) = (dir.path().join("kf.db"), dir.path().join("kf.key"));
    let (new, old) = (dir.path().join("kf.key.new"), dir.path().join("kf.key.old"));
    let written: BTreeMap<String, (SecretValue, Metadata)> = (0..20)
        .map(|i| {
            let value = if i % 4 == 0 {
                SecretValue::from(vec![0xFF, i as u8, 0, 0x80])
            } else {
                SecretValue::new(format!("value-{i}|").repeat(i + 1))
            };
            (format!("k{i:02}"), (value, meta([("n", &*i.to_string())])))
        })
        .collect();
    let rt = runtime();
    rt.block_on(async {
        let store = open_keyed(&db, &file).await.unwrap();
        for (k, (v, m)) in &written {
            store.set(&key(k), v, m).await.unwrap();
        }
    });
    wait_closed(&db);
    let mut seed = 0u64;
    while seed == 0 {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).unwrap();
        seed = u64::from_le_bytes(bytes);
    }
    println!("kill delays from seed {seed:#x}");
    let mut left: BTreeMap<&str, usize> = BTreeMap::new();
    let mut versions = BTreeSet::new();
    let started = Instant::now();
    // How long one rotation takes on this machine, measured in the first
    // round: the kills land uniformly over two rotations' time.
    let mut span = Duration::ZERO;
    for round in 0..KEY_FILE_ROUNDS {
        let mut proc = Proc::spawn(child(TEST, "rotate-key-file", &db).env(KEY_ENV, &file));
        let rx = lines_of(&mut proc.0);
        wait_line(&rx, "READY", Duration::from_secs(60));
        if round == 0 {
            let ready = Instant::now();
            for _ in 0..4 {
                wait_line(&rx, "ROTATED", Duration::from_secs(60));
            }
            span = ready.elapsed() / 2;
            println!("one rotation takes about {:?}", span / 2);
        } else {
            // A random point: rotations follow each other, each going
            // through every step, so the kill lands anywhere in one.
            let micros = u64::try_from(span.as_micros()).unwrap().max(1);
            std::thread::sleep(Duration::from_micros(next_random(&mut seed) % micros));
        }
        proc.0.kill().unwrap();
        assert_eq!(proc.0.wait().unwrap().signal(), Some(libc::SIGKILL), "round {round}");
        let key_before = std::fs::read(&file).unwrap();
        let state = match (new.exists(), old.exists()) {
            (false, false) => "nothing",
            (false, true) => "<file>.old",
            (true, false) => "<file>.new",
            (true, true) => "<file>.new and <file>.old",
        };
        *left.entry(state).or_default() += 1;
        assert!(file.exists(), "round {round}: the key file is there");
        rt.block_on(async {
            let store =
                open_keyed(&db, &file).await.unwrap_or_else(|e| panic!("round {round} ({state}): {e}"));
            versions.insert(store.key_version());
            for (k, (v, m)) in &written {
                let got =
                    store.get(&key(k)).await.unwrap().unwrap_or_else(|| panic!("round {round}: {k} lost"));
                assert_eq!(got.value.expose_secret(), v.expose_secret(), "round {round}: {k}");
                assert_eq!(got.value.is_text(), v.is_text(), "round {round}: {k}");
                assert_eq!(&got.metadata, m, "round {round}: {k}");
            }
            assert_eq!(count_all(&store).await, written.len(), "round {round}");
        });
        assert!(
            !new.exists() && !old.exists(),
            "round {round} ({state}): the opening tidied the rotation's files"
        );
        if std::fs::read(&file).unwrap() != key_before {
            *left.entry("(then the opening completed the rotation)").or_default() += 1;
        }
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        wait_closed(&db);
    }
    println!(
        "{KEY_FILE_ROUNDS} kills in {:?}; files the kills left: {left:?}; key versions after: {} to {}",
        started.elapsed(),
        versions.first().unwrap(),
        versions.last().unwrap()
    );
    assert!(versions.len() > 1, "the children rotated");
    integrity_ok(&db);
}

// ---------------------------------------------------------------------------
// A read-only directory

const NOBODY: u32 = 65534;

fn try_open(path: &Path, master: &MasterKey) -> credstore_core::Result<SqliteStore> {
    runtime().block_on(SqliteStore::open(
        StoreId::new("ro").unwrap(),
        SqliteConfig::new(path).master_key(master.clone()),
    ))
}

fn describe(r: credstore_core::Result<SqliteStore>) -> String {
    match r {
        Ok(_) => "OK opened".into(),
        Err(e @ Error::PermissionDenied { .. }) => format!("PermissionDenied {e}"),
        Err(e) => format!("Other {e:?}"),
    }
}

fn readonly_child() {
    let dir = env_path(DB_ENV);
    let master = MasterKey::from_env(KEY_ENV).unwrap();
    say(&format!("RESULT existing {}", describe(try_open(&dir.join("ro.db"), &master))));
    say(&format!("RESULT new {}", describe(try_open(&dir.join("new.db"), &master))));
}

#[test]
fn a_read_only_directory_gives_a_clear_error_and_keeps_the_data() {
    if child_role().as_deref() == Some("readonly") {
        return readonly_child();
    }
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = root.path().join("ro");
    std::fs::create_dir(&dir).unwrap();
    let db = dir.join("ro.db");
    let master = MasterKey::generate();
    runtime().block_on(async { put(&open(&db, &master).await, "k", "kept").await });
    wait_closed(&db);
    let before = std::fs::read(&db).unwrap();
    // SAFETY: geteuid has no preconditions.
    let as_root = unsafe { libc::geteuid() } == 0;
    let results: Vec<String> = if as_root {
        // Root ignores permission bits, so the part of the user who cannot
        // write the directory is played by `nobody`, owning the file.
        chown(&dir, NOBODY);
        chown(&db, NOBODY);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500)).unwrap();
        let mut proc = Proc::spawn(
            child("a_read_only_directory_gives_a_clear_error_and_keeps_the_data", "readonly", &dir)
                .env(KEY_ENV, master.to_base64().unwrap().as_str())
                .uid(NOBODY)
                .gid(NOBODY),
        );
        let rx = lines_of(&mut proc.0);
        let status = proc.0.wait().unwrap();
        let lines: Vec<String> =
            rx.iter().filter_map(|l| l.strip_prefix("RESULT ").map(str::to_owned)).collect();
        assert!(status.success(), "child as nobody failed: {status}; {lines:?}");
        lines
    } else {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500)).unwrap();
        vec![
            format!("existing {}", describe(try_open(&db, &master))),
            format!("new {}", describe(try_open(&dir.join("new.db"), &master))),
        ]
    };
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    if as_root {
        chown(&dir, 0);
        chown(&db, 0);
    }
    println!("read-only directory: {results:?}");
    assert_eq!(results.len(), 2, "{results:?}");
    let existing = &results[0];
    assert!(existing.starts_with("existing PermissionDenied"), "{existing}");
    assert!(existing.contains("not writable") && existing.contains(&dir.display().to_string()), "{existing}");
    let new = &results[1];
    assert!(new.starts_with("new PermissionDenied") && new.contains("new.db"), "{new}");
    assert!(!dir.join("new.db").exists());
    assert_eq!(std::fs::read(&db).unwrap(), before, "the database is untouched");
    let store = try_open(&db, &master).unwrap();
    assert_eq!(runtime().block_on(value(&store, "k")).as_deref(), Some("kept"));
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
}

// ---------------------------------------------------------------------------
// Reads on the calling task while another process writes, rotates the key,
// or holds a write transaction open

/// Keys of the reader tests.
const READ_KEYS: usize = 40;
/// Rounds of writes of the writing child.
const WRITE_ROUNDS: usize = 30;

fn read_value(i: usize, round: usize) -> String {
    format!("k{i}:{round}")
}

fn writing_child() {
    let db = env_path(DB_ENV);
    runtime().block_on(async move {
        let store = open(&db, &MasterKey::from_env(KEY_ENV).unwrap()).await;
        for round in 1..=WRITE_ROUNDS {
            let sets: Vec<_> = (0..READ_KEYS)
                .map(|i| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        store
                            .set(&key(&format!("k{i}")), &secret(&read_value(i, round)), &Metadata::new())
                            .await
                            .unwrap()
                    })
                })
                .collect();
            for s in sets {
                s.await.unwrap();
            }
        }
        say("DONE");
    });
}

/// Starts `tasks` reader tasks calling `read(task, iteration)` until `stop`;
/// waits until each has read once.
fn start_readers<F, Fut>(
    tasks: usize,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
    read: F,
) -> Vec<tokio::task::JoinHandle<usize>>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    use std::sync::atomic::{AtomicUsize, Ordering};
    let started = std::sync::Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let (stop, read, started) = (stop.clone(), read.clone(), started.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while n == 0 || !stop.load(Ordering::SeqCst) {
                    read(t, n).await;
                    if n == 0 {
                        started.fetch_add(1, Ordering::SeqCst);
                    }
                    n += 1;
                }
                n
            })
        })
        .collect();
    wait_until("every reader to read once", Duration::from_secs(30), || {
        started.load(Ordering::SeqCst) == tasks
    });
    handles
}

#[test]
fn reads_while_another_process_writes_see_committed_values_only() {
    if child_role().as_deref() == Some("writing") {
        return writing_child();
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let (_dir, db, master) = keyed_temp_db("read-write.db");
    let rt = runtime();
    let store = open_seeded(&rt, SqliteConfig::new(&db).master_key(master.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    // Per reader and key, the last round seen: it never goes back.
    let seen = Arc::new(Mutex::new(vec![vec![0usize; READ_KEYS]; 4]));
    let _guard = rt.enter();
    let readers = {
        let (store, seen) = (store.clone(), seen.clone());
        start_readers(4, &stop, move |t, n| {
            let (store, seen) = (store.clone(), seen.clone());
            async move {
                let i = (t * 7 + n * 13) % READ_KEYS;
                let got =
                    store.get(&key(&format!("k{i}"))).await.unwrap_or_else(|e| panic!("read k{i}: {e}"));
                let got =
                    got.unwrap_or_else(|| panic!("k{i} vanished")).value.expose_str().unwrap().to_owned();
                let (name, round) = got.split_once(':').unwrap_or_else(|| panic!("k{i} holds {got:?}"));
                assert_eq!(name, format!("k{i}"), "k{i} holds another key's value");
                let round: usize = round.parse().unwrap();
                let mut seen = seen.lock().unwrap();
                assert!(round >= seen[t][i], "k{i} went back from round {} to {round}", seen[t][i]);
                seen[t][i] = round;
            }
        })
    };
    let mut proc = Proc::spawn(
        child("reads_while_another_process_writes_see_committed_values_only", "writing", &db)
            .env(KEY_ENV, master.to_base64().unwrap().as_str()),
    );
    let rx = lines_of(&mut proc.0);
    wait_line(&rx, "DONE", Duration::from_secs(120));
    assert!(proc.0.wait().unwrap().success());
    stop.store(true, Ordering::SeqCst);
    let reads: usize = rt.block_on(async {
        let mut total = 0;
        for r in readers {
            total += r.await.unwrap();
        }
        total
    });
    println!("{reads} reads while another process wrote {} rounds", WRITE_ROUNDS);
    assert!(reads >= 4);
    rt.block_on(async {
        for i in 0..READ_KEYS {
            assert_eq!(value(&store, &format!("k{i}")).await, Some(read_value(i, WRITE_ROUNDS)));
        }
    });
}

fn rotating_child() {
    let db = env_path(DB_ENV);
    runtime().block_on(async move {
        let store = open(&db, &MasterKey::from_env(KEY_ENV).unwrap()).await;
        let report = store.rotate_key(MasterKey::from_env(NEW_KEY_ENV).unwrap()).await.unwrap();
        say(&format!("ROTATED {}", report.rows));
    });
}

#[test]
fn reads_during_a_rotation_by_another_process_see_the_old_state_or_the_new_one() {
    if child_role().as_deref() == Some("rotating") {
        return rotating_child();
    }
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let (_dir, db) = temp_db("read-rotate.db");
    let (old, new) = (MasterKey::generate(), MasterKey::generate());
    let n = 2000;
    let rt = runtime();
    let store = open_filled(&rt, &db, &old, "r", n);
    let stop = Arc::new(AtomicBool::new(false));
    let (before, after) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // Per reader: whether it has seen the new state; it never goes back.
    let rotated: Arc<Vec<AtomicBool>> = Arc::new((0..4).map(|_| AtomicBool::new(false)).collect());
    let _guard = rt.enter();
    let readers = {
        let (store, before, after, rotated) = (store.clone(), before.clone(), after.clone(), rotated.clone());
        start_readers(4, &stop, move |t, i| {
            let (store, before, after, rotated) =
                (store.clone(), before.clone(), after.clone(), rotated.clone());
            async move {
                let k = (t * 501 + i * 7) % n;
                match store.get(&key(&format!("r{k}"))).await {
                    Ok(Some(c)) => {
                        assert_eq!(c.value.expose_str().unwrap(), format!("v{k}"));
                        assert!(!rotated[t].load(Ordering::SeqCst), "reader {t} went back to the old key");
                        before.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e @ Error::Config { .. }) if e.to_string().contains("rotated elsewhere") => {
                        rotated[t].store(true, Ordering::SeqCst);
                        after.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("read r{k} during another process's rotation: {other:?}"),
                }
            }
        })
    };
    let mut proc = Proc::spawn(
        child("reads_during_a_rotation_by_another_process_see_the_old_state_or_the_new_one", "rotating", &db)
            .env(KEY_ENV, old.to_base64().unwrap().as_str())
            .env(NEW_KEY_ENV, new.to_base64().unwrap().as_str()),
    );
    let rx = lines_of(&mut proc.0);
    let (line, _) = wait_line(&rx, "ROTATED", Duration::from_secs(120));
    assert_eq!(line, format!("ROTATED {n}"));
    assert!(proc.0.wait().unwrap().success());
    // Every reader reads the new state before it stops.
    wait_until("every reader to see the rotation", Duration::from_secs(30), || {
        rotated.iter().all(|r| r.load(Ordering::SeqCst))
    });
    stop.store(true, Ordering::SeqCst);
    rt.block_on(async {
        for r in readers {
            r.await.unwrap();
        }
    });
    println!(
        "reads during another process's rotation: {} of the old state, {} of the new",
        before.load(Ordering::Relaxed),
        after.load(Ordering::Relaxed)
    );
    assert!(before.load(Ordering::Relaxed) >= 4 && after.load(Ordering::Relaxed) >= 4);
    drop(store);
    rt.block_on(async {
        let store = open(&db, &new).await;
        assert_eq!(store.key_version(), 2);
        for k in (0..n).step_by(97) {
            assert_eq!(value(&store, &format!("r{k}")).await, Some(format!("v{k}")));
        }
    });
}

fn holding_child() {
    let db = env_path(DB_ENV);
    let conn = raw(&db);
    conn.execute_batch("BEGIN IMMEDIATE; INSERT INTO credstore_meta (name, value) VALUES ('held', 1);")
        .unwrap();
    say("HOLDING");
    // Hold the write lock until the parent closes our stdin.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    conn.execute_batch("ROLLBACK").unwrap();
    say("RELEASED");
}

#[test]
fn reads_while_another_process_holds_a_write_transaction_answer_without_waiting_for_it() {
    if child_role().as_deref() == Some("holding") {
        return holding_child();
    }
    let (_dir, db, master) = keyed_temp_db("held.db");
    let rt = runtime();
    // A busy timeout far beyond the test's patience: a read that waited for
    // the child's lock would hang the test.
    let store = open_seeded(
        &rt,
        SqliteConfig::new(&db).master_key(master.clone()).busy_timeout(Duration::from_secs(600)),
    );
    let mut proc = Proc::spawn(
        child(
            "reads_while_another_process_holds_a_write_transaction_answer_without_waiting_for_it",
            "holding",
            &db,
        )
        .stdin(Stdio::piped()),
    );
    let rx = lines_of(&mut proc.0);
    wait_line(&rx, "HOLDING", Duration::from_secs(60));
    rt.block_on(async {
        let blocked = open_with(
            SqliteConfig::new(&db).master_key(master.clone()).busy_timeout(Duration::from_millis(100)),
        )
        .await;
        let err = blocked.set(&key("w"), &secret("x"), &Metadata::new()).await.unwrap_err();
        assert!(err.is_retriable() && err.to_string().contains("locked"), "the child holds the lock: {err}");
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for round in 0..50 {
                        let i = (t + round * 3) % READ_KEYS;
                        assert_eq!(value(&store, &format!("k{i}")).await, Some(read_value(i, 0)));
                        assert!(store.has(&key(&format!("k{i}"))).await.unwrap());
                        assert!(store.version(&key(&format!("k{i}"))).await.unwrap().is_some());
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(count_all(&store).await, READ_KEYS);
    });
    drop(proc.0.stdin.take());
    wait_line(&rx, "RELEASED", Duration::from_secs(60));
    assert!(proc.0.wait().unwrap().success());
    rt.block_on(put(&store, "after", "written"));
    assert_eq!(rt.block_on(value(&store, "after")).as_deref(), Some("written"));
}
