//! Measures master key rotation: fills a database with N credentials (default
//! 100,000; pass another count as the first argument) and rotates its key.
//!
//! ```text
//! cargo run --release -p credstore-sqlite --example rotation_bench -- 100000
//! ```

use std::time::Instant;

use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Metadata, SecretValue, StoreId};
use credstore_sqlite::{MasterKey, SqliteConfig, SqliteStore};

#[tokio::main]
async fn main() -> credstore_core::Result<()> {
    let count: usize = std::env::args().nth(1).map_or(100_000, |a| a.parse().expect("a count"));
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("bench.db");
    let config = SqliteConfig::new(&path).master_key(MasterKey::generate());
    let store = SqliteStore::open(StoreId::new("bench")?, config).await?;

    let started = Instant::now();
    let writers = 256;
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut meta = Metadata::new();
                meta.insert("owner", "team-payments")?;
                meta.insert("rotated-by", "ci")?;
                for i in (w..count).step_by(writers) {
                    let key = CredentialKey::new(format!("service-{i:07}.api-key"))?;
                    let value = SecretValue::new(format!("sk_live_{i:016x}_{:032x}", i * 7919));
                    store.set(&key, &value, &meta).await?;
                }
                Ok::<_, credstore_core::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("writer task")?;
    }
    let filled = started.elapsed();
    let stats = store.writer_stats();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "filled {count} credentials in {filled:.2?} ({:.0} sets/s, {} transactions, {:.1} MB)",
        count as f64 / filled.as_secs_f64(),
        stats.transactions,
        size as f64 / 1e6
    );

    for round in 1..=3 {
        let report = store.rotate_key(MasterKey::generate()).await?;
        let per_100k = report.elapsed.as_secs_f64() * 100_000.0 / report.rows.max(1) as f64;
        println!(
            "rotation {round}: {} rows in {:.2?} = {per_100k:.2} s per 100,000 credentials",
            report.rows, report.elapsed
        );
    }
    let key = CredentialKey::new("service-0000042.api-key")?;
    assert!(store.get(&key).await?.is_some());
    Ok(())
}
