//! How long a cache hit takes against the memory store's own `get`: a warm
//! [`CachedStore`](credstore_layers::CachedStore) over a memory store, both
//! read the same way (1,000 sequential gets of one key per timed call,
//! through `dyn CredentialStore`, alternating sides, median of the rounds).
//!
//! `cargo run --release -p credstore-layers --example hit_latency`

use std::sync::Arc;
use std::time::Instant;

use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Metadata, SecretValue, StoreId};
use credstore_layers::CacheLayer;
use credstore_memory::MemoryStore;

const GETS: u32 = 1000;
const BATCH: u32 = 200;
const ROUNDS: usize = 15;

async fn per_get(store: &dyn CredentialStore, key: &CredentialKey) -> f64 {
    let start = Instant::now();
    for _ in 0..BATCH {
        for _ in 0..GETS {
            std::hint::black_box(store.get(key).await.expect("get"));
        }
    }
    start.elapsed().as_nanos() as f64 / f64::from(BATCH * GETS)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let key = CredentialKey::new("bench-key").expect("key");
    let value = SecretValue::from("a-secret-value-of-some-forty-bytes-long!");
    let memory: Arc<dyn CredentialStore> = Arc::new(MemoryStore::new(StoreId::new("baseline").expect("id")));
    memory.set(&key, &value, &Metadata::new()).await.expect("set");
    let inner: Arc<dyn CredentialStore> = Arc::new(MemoryStore::new(StoreId::new("inner").expect("id")));
    inner.set(&key, &value, &Metadata::new()).await.expect("set");
    let cached = CacheLayer::new().build(inner);
    cached.get(&key).await.expect("warm").expect("present");
    let cached_dyn: Arc<dyn CredentialStore> = cached.clone();

    let (mut c, mut m) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        if round % 2 == 0 {
            c.push(per_get(&*cached_dyn, &key).await);
            m.push(per_get(&*memory, &key).await);
        } else {
            m.push(per_get(&*memory, &key).await);
            c.push(per_get(&*cached_dyn, &key).await);
        }
    }
    let (c, m) = (median(c), median(m));
    let stats = cached.stats();
    assert_eq!(stats.loads, 1, "every timed get was a hit: {stats:?}");
    println!(
        "memory get: {m:.1} ns, cached hit: {c:.1} ns; hit/memory {:.2}x, row (memory/cached) {:.2}",
        c / m,
        m / c
    );
}
