//! Peak RSS of credstore-memory holding N credentials against the
//! hand-written map holding the same, each measured in a fresh process.
//!
//! `rss [N]` runs both children and writes `target/bench/extra/memory_rss.json`;
//! `rss --child ours|baseline N` is one child: it fills its store and prints
//! its peak RSS in KiB.

use std::process::Command;

use credstore_benches::baseline::MapStore;
use credstore_benches::summary::{Better, Row};
use credstore_benches::{key_name, out_dir};
use credstore_core::{CredentialKey, CredentialStoreExt, Metadata, SecretValue, StoreId};
use credstore_memory::MemoryStore;

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

fn child(which: &str, n: usize) {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let value = "v".repeat(32);
    let base = peak_rss_kib();
    rt.block_on(async {
        match which {
            "ours" => {
                let store = MemoryStore::new(StoreId::new("rss").unwrap());
                let (secret, meta) = (SecretValue::from(value.as_str()), Metadata::new());
                for i in 0..n {
                    store.set(&CredentialKey::new(key_name(i)).unwrap(), &secret, &meta).await.unwrap();
                }
                std::hint::black_box(&store);
            }
            "baseline" => {
                let map = MapStore::new();
                for i in 0..n {
                    map.set(&key_name(i), &value).await;
                }
                std::hint::black_box(&map);
            }
            other => panic!("unknown store {other}"),
        }
    });
    println!("{}", peak_rss_kib().saturating_sub(base));
}

fn measure(which: &str, n: usize) -> f64 {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--child", which, &n.to_string()])
        .output()
        .expect("run rss child");
    assert!(out.status.success(), "rss child {which} failed: {}", String::from_utf8_lossy(&out.stderr));
    let kib: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().expect("KiB");
    kib / 1024.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(&args[1], args[2].parse().expect("count"));
    }
    let n: usize = args.first().map_or(1_000_000, |a| a.parse().expect("count"));
    let (ours, baseline) = (measure("ours", n), measure("baseline", n));
    let row = Row::new(
        Better::Lower,
        format!("memory peak RSS, {n} credentials of 32 B"),
        "MiB",
        ours,
        baseline,
        "tokio RwLock<HashMap<String, String>>",
        None,
    );
    let dir = out_dir().join("extra");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("memory_rss.json"), serde_json::to_vec_pretty(&[&row]).unwrap()).unwrap();
    println!(
        "peak RSS for {n} credentials: ours {ours:.1} MiB, baseline {baseline:.1} MiB, ratio {:.2}",
        row.ratio
    );
}
