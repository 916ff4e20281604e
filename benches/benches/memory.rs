//! credstore-memory against a hand-written `tokio::sync::RwLock<HashMap>`:
//! get / set / has at 1 and 8 concurrent tasks, 1,000 and 1,000,000 keys,
//! 32 B and 4 KiB values.

use std::sync::Arc;
use std::time::Instant;

use credstore_benches::baseline::MapStore;
use credstore_benches::summary::Scenario;
use credstore_benches::{key_name, quick, test_mode, KeyWalk};
use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Metadata, SecretValue, StoreId};
use credstore_memory::MemoryStore;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};

#[derive(Clone, Copy, Debug)]
enum Op {
    Get,
    Set,
    Has,
}

/// What each sample of a case runs on.
#[derive(Clone, Copy)]
struct Load<'a> {
    rt: &'a tokio::runtime::Runtime,
    /// Concurrent tasks.
    tasks: usize,
    /// Keys in the store, walked by each task.
    keys: usize,
}

/// Benchmarks `name`: each sample splits its operations over the load's
/// tasks, each task calling `op` with its own clone of `state`, its own
/// walk over the keys and its share of the operations; the sample's time
/// is the wall time.
fn measure<S, F, Fut>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, load: Load<'_>, state: S, op: F)
where
    S: Clone + Send + 'static,
    F: Fn(S, KeyWalk, u64) -> Fut + Copy + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Load { rt, tasks, keys } = load;
    g.bench_function(name, |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let per_task = iters.div_ceil(tasks as u64);
                let start = Instant::now();
                let handles: Vec<_> = (0..tasks)
                    .map(|t| tokio::spawn(op(state.clone(), KeyWalk::new(t as u64 + 1, keys), per_task)))
                    .collect();
                for h in handles {
                    h.await.expect("bench task");
                }
                start.elapsed()
            })
        })
    });
}

fn bench_case(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    op: Op,
    tasks: usize,
    keys: usize,
    size: usize,
) {
    let group = format!("memory_{op:?}_t{tasks}_k{keys}_v{size}").to_lowercase();
    Scenario {
        group: group.clone(),
        scenario: format!("memory {op:?}, {tasks} task(s), {keys} keys, {size} B values").to_lowercase(),
        ops_per_iter: 1,
        baseline_name: "tokio RwLock<HashMap<String, String>>".into(),
        goal: matches!(op, Op::Get).then_some(0.8),
    }
    .register();

    let value = "v".repeat(size);
    let names: Arc<Vec<String>> = Arc::new((0..keys).map(key_name).collect());
    let mut g = c.benchmark_group(&group);
    let load = Load { rt, tasks, keys };

    // Ours, filled then measured, then dropped before the baseline is built.
    {
        let store = Arc::new(MemoryStore::new(StoreId::new("bench").unwrap()));
        let typed: Arc<Vec<CredentialKey>> =
            Arc::new(names.iter().map(|n| CredentialKey::new(n.clone()).unwrap()).collect());
        let secret = SecretValue::from(value.as_str());
        rt.block_on(async {
            for k in typed.iter() {
                store.set(k, &secret, &Metadata::new()).await.unwrap();
            }
        });
        let state = (store, typed, secret);
        measure(&mut g, "ours", load, state, move |(store, typed, secret), mut walk, n| async move {
            let meta = Metadata::new();
            for _ in 0..n {
                let k = &typed[walk.next()];
                match op {
                    Op::Get => drop(std::hint::black_box(store.get(k).await.unwrap())),
                    Op::Set => _ = std::hint::black_box(store.set(k, &secret, &meta).await.unwrap()),
                    Op::Has => drop(std::hint::black_box(store.has(k).await.unwrap())),
                }
            }
        });
    }
    {
        let map = Arc::new(MapStore::new());
        rt.block_on(async {
            for n in names.iter() {
                map.set(n, &value).await;
            }
        });
        let value = Arc::new(value);
        let state = (map, names, value);
        measure(&mut g, "baseline", load, state, move |(map, names, value), mut walk, n| async move {
            for _ in 0..n {
                let k = &names[walk.next()];
                match op {
                    Op::Get => drop(std::hint::black_box(map.get(k).await)),
                    Op::Set => map.set(k, &value).await,
                    Op::Has => drop(std::hint::black_box(map.has(k).await)),
                }
            }
        });
    }
    g.finish();
}

fn main() {
    let mut c = credstore_benches::criterion();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let key_counts: &[usize] = if test_mode() {
        &[100]
    } else if quick() {
        &[1_000, 100_000]
    } else {
        &[1_000, 1_000_000]
    };
    for &keys in key_counts {
        for size in [32, 4096] {
            // 1,000,000 × 4 KiB is 4 GiB per store: measured in the full run only.
            if quick() && keys > 1_000 && size > 32 {
                continue;
            }
            for op in [Op::Get, Op::Set, Op::Has] {
                for tasks in [1, 8] {
                    bench_case(&mut c, &rt, op, tasks, keys, size);
                }
            }
        }
    }
    c.final_summary();
}
