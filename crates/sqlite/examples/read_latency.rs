//! Measures reads without criterion: `get` against plain rusqlite on the same
//! schema without encryption (a cached statement called directly), in wall
//! time and in CPU time of the reading thread (steadier on a shared
//! machine), the `spawn_blocking` round trip alone, and the lag of a 1 ms
//! ticker while 8 tasks read as fast as they can, against the same ticker on
//! an idle runtime. Prints numbers; asserts nothing.
//!
//! ```text
//! ROUNDS=5 cargo run --release -p credstore-sqlite --example read_latency -- [keys] [seconds]
//! cargo run --release -p credstore-sqlite --example read_latency -- 10000 5 get-only   # for a profiler
//! cargo run --release -p credstore-sqlite --example read_latency -- 10000 5 plain-only
//! ```

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Metadata, SecretValue, StoreId};
use credstore_sqlite::{MasterKey, SqliteConfig, SqliteStore};
use rusqlite::{params, Connection};

const VALUE: &str = "sqlite-bench-secret-value-0123456789abcdef";
const PLAIN_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS credentials (
    ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, metadata TEXT NOT NULL,
    created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (ns, key)) WITHOUT ROWID;";

fn key_name(i: usize) -> String {
    format!("bench-key-{i:07}")
}

/// A cheap pseudo-random walk over `0..n`.
struct Walk(u64, u64);

impl Walk {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % self.1) as usize
    }
}

fn plain(path: &Path, n: usize) -> Connection {
    let mut conn = Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
        .unwrap();
    conn.execute_batch(PLAIN_SCHEMA).unwrap();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64;
    let tx = conn.transaction().unwrap();
    for i in 0..n {
        tx.execute(
            "INSERT INTO credentials VALUES ('', ?1, ?2, '{}', ?3, ?3, 1)",
            params![key_name(i), VALUE.as_bytes(), now],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    conn
}

fn plain_get(conn: &Connection, key: &str) -> (Vec<u8>, String, i64, i64, i64) {
    conn.prepare_cached(
        "SELECT value, metadata, created_at, updated_at, version FROM credentials WHERE ns = ?1 AND key = ?2",
    )
    .unwrap()
    .query_row(params!["", key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
    .unwrap()
}

/// CPU time of this thread: unlike wall time, not lengthened while the
/// operating system runs other work (the machine may be shared).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn per_op(d: Duration, n: u64) -> f64 {
    d.as_nanos() as f64 / n as f64
}

/// p50, p99 and max of a 1 ms ticker's lag (tick delivered minus tick due), in µs.
async fn ticker(run: Duration) -> (f64, f64, f64) {
    let mut interval = tokio::time::interval(Duration::from_millis(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    let mut lags = Vec::new();
    let end = Instant::now() + run;
    while Instant::now() < end {
        let due = interval.tick().await;
        lags.push(due.elapsed().as_secs_f64() * 1e6);
    }
    lags.sort_by(f64::total_cmp);
    let at = |q: f64| lags[((lags.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99), at(1.0))
}

fn main() {
    let keys: usize = std::env::args().nth(1).map_or(10_000, |a| a.parse().expect("a key count"));
    let seconds: u64 = std::env::args().nth(2).map_or(3, |a| a.parse().expect("seconds"));
    let rounds: u64 = std::env::var("ROUNDS").ok().map_or(3, |a| a.parse().expect("rounds"));
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let store = rt.block_on(async {
        let config = SqliteConfig::new(dir.path().join("ours.db")).master_key(MasterKey::generate());
        let store = SqliteStore::open(StoreId::new("bench").unwrap(), config).await.unwrap();
        // 64 writers at once: the writer group-commits them.
        let writers: Vec<_> = (0..64)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    let (value, meta) = (SecretValue::from(VALUE), Metadata::new());
                    for i in (w..keys).step_by(64) {
                        store.set(&CredentialKey::new(key_name(i)).unwrap(), &value, &meta).await.unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        store
    });
    let conn = plain(&dir.path().join("plain.db"), keys);
    let typed: Arc<Vec<CredentialKey>> =
        Arc::new((0..keys).map(|i| CredentialKey::new(key_name(i)).unwrap()).collect());
    let names: Vec<String> = (0..keys).map(key_name).collect();
    let budget = Duration::from_secs(seconds);
    if std::env::args().nth(3).as_deref() == Some("get-only") {
        // Only `get`, for a profiler.
        let mut walk = Walk(0x9E37_79B9_7F4A_7C15, keys as u64);
        rt.block_on(async {
            let start = Instant::now();
            while start.elapsed() < budget {
                for _ in 0..1000 {
                    std::hint::black_box(store.get(&typed[walk.next()]).await.unwrap().unwrap());
                }
            }
        });
        return;
    }
    if std::env::args().nth(3).as_deref() == Some("plain-only") {
        let mut walk = Walk(0x9E37_79B9_7F4A_7C15, keys as u64);
        let start = Instant::now();
        while start.elapsed() < budget {
            for _ in 0..1000 {
                std::hint::black_box(plain_get(&conn, &names[walk.next()]));
            }
        }
        return;
    }

    let (mut best_plain, mut best_ours, mut best_worker) = (f64::MAX, f64::MAX, f64::MAX);
    let mut cpu_ratios = Vec::new();
    for round in 0..rounds {
        // Plain rusqlite, on this thread.
        let mut walk = Walk(0x9E37_79B9_7F4A_7C15 | round, keys as u64);
        let (mut n, start, cpu) = (0u64, Instant::now(), thread_cpu());
        while start.elapsed() < budget / 3 {
            for _ in 0..1000 {
                std::hint::black_box(plain_get(&conn, &names[walk.next()]));
            }
            n += 1000;
        }
        let plain_ns = per_op(start.elapsed(), n);
        let plain_cpu = per_op(thread_cpu() - cpu, n);

        // Ours, called from block_on as criterion's async bencher does.
        let mut walk = Walk(0x9E37_79B9_7F4A_7C15 | round, keys as u64);
        let (ours_ns, ours_cpu) = rt.block_on(async {
            let (mut n, start, cpu) = (0u64, Instant::now(), thread_cpu());
            while start.elapsed() < budget / 3 {
                for _ in 0..1000 {
                    std::hint::black_box(store.get(&typed[walk.next()]).await.unwrap().unwrap());
                }
                n += 1000;
            }
            (per_op(start.elapsed(), n), per_op(thread_cpu() - cpu, n))
        });
        cpu_ratios.push(plain_cpu / ours_cpu);
        println!("round {round}: CPU time per get: plain {plain_cpu:.0} ns, ours (block_on) {ours_cpu:.0} ns = {:.2}x", plain_cpu / ours_cpu);

        // Ours, from a task on a worker thread.
        let (store2, typed2) = (store.clone(), typed.clone());
        let worker_ns = rt.block_on(async move {
            tokio::spawn(async move {
                let mut walk = Walk(0x9E37_79B9_7F4A_7C15 | round, keys as u64);
                let (mut n, start) = (0u64, Instant::now());
                while start.elapsed() < budget / 3 {
                    for _ in 0..1000 {
                        std::hint::black_box(store2.get(&typed2[walk.next()]).await.unwrap().unwrap());
                    }
                    n += 1000;
                }
                per_op(start.elapsed(), n)
            })
            .await
            .unwrap()
        });

        // The hop alone.
        let hop_ns = rt.block_on(async {
            let (mut n, start) = (0u64, Instant::now());
            while start.elapsed() < budget / 3 {
                for _ in 0..1000 {
                    tokio::task::spawn_blocking(|| std::hint::black_box(1)).await.unwrap();
                }
                n += 1000;
            }
            per_op(start.elapsed(), n)
        });
        best_plain = best_plain.min(plain_ns);
        best_ours = best_ours.min(ours_ns);
        best_worker = best_worker.min(worker_ns);
        println!(
            "round {round}: plain get {plain_ns:.0} ns, ours (block_on) {ours_ns:.0} ns = {:.2}x, ours (worker task) \
             {worker_ns:.0} ns = {:.2}x, spawn_blocking hop {hop_ns:.0} ns = {:.2}x",
            plain_ns / ours_ns,
            plain_ns / worker_ns,
            plain_ns / hop_ns,
        );
    }

    cpu_ratios.sort_by(f64::total_cmp);
    println!(
        "CPU-time ratio plain/ours over {rounds} rounds: median {:.2}",
        cpu_ratios[cpu_ratios.len() / 2]
    );
    println!(
        "best of {rounds}: plain get {best_plain:.0} ns, ours (block_on) {best_ours:.0} ns = {:.2}x, ours (worker task) \
         {best_worker:.0} ns = {:.2}x",
        best_plain / best_ours,
        best_plain / best_worker
    );
    for round in 0..2 {
        let (p50, p99, max) = rt.block_on(async { tokio::spawn(ticker(budget)).await.unwrap() });
        println!("round {round}: idle ticker lag p50 {p50:.0} µs, p99 {p99:.0} µs, max {max:.0} µs");
        let stop = Arc::new(AtomicBool::new(false));
        let reads = Arc::new(AtomicU64::new(0));
        let readers: Vec<_> = (0..8u64)
            .map(|t| {
                let (store, typed, stop, reads) = (store.clone(), typed.clone(), stop.clone(), reads.clone());
                rt.spawn(async move {
                    let mut walk = Walk((0x9E37_79B9_7F4A_7C15 ^ t) | 1, typed.len() as u64);
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::black_box(store.get(&typed[walk.next()]).await.unwrap());
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let (p50l, p99l, maxl) = rt.block_on(async { tokio::spawn(ticker(budget)).await.unwrap() });
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            rt.block_on(r).unwrap();
        }
        let rate = reads.load(Ordering::Relaxed) as f64 / budget.as_secs_f64();
        println!(
            "round {round}: loaded ticker lag p50 {p50l:.0} µs, p99 {p99l:.0} µs, max {maxl:.0} µs \
             (8 readers, {rate:.0} reads/s); p99 loaded / idle = {:.2}",
            p99l / p99
        );
    }
}
