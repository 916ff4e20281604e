//! Shared pieces of the credstore benchmarks: the baselines they are measured
//! against, the scenario settings, and the summary format.
//!
//! Every figure is a ratio against a baseline measured in the same run:
//! machines here are shared and noisy, absolute numbers are not comparable
//! across runs. `scripts/bench` runs everything and writes
//! `target/bench/summary.json` with [`summary::Row`]s.
#![warn(missing_docs)]

pub mod baseline;
pub mod envelope;
pub mod rounds;
pub mod summary;

use std::path::PathBuf;
use std::time::Duration;

/// Whether `CREDSTORE_BENCH_QUICK` asks for the short run (`scripts/bench --quick`).
pub fn quick() -> bool {
    std::env::var_os("CREDSTORE_BENCH_QUICK").is_some_and(|v| v != "0")
}

/// Whether the bench binary runs as a test (`cargo test --all-targets`
/// runs it without `--bench`): criterion then runs each routine once, and the
/// benches use tiny data so the test suite stays fast.
pub fn test_mode() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

/// A `Criterion` for these benches: short in quick mode
/// (`scripts/bench --quick`), steadier otherwise.
pub fn criterion() -> criterion::Criterion {
    let c = criterion::Criterion::default().without_plots().configure_from_args();
    if quick() {
        c.sample_size(10)
            .warm_up_time(Duration::from_millis(200))
            .measurement_time(Duration::from_millis(800))
    } else {
        c.sample_size(30).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4))
    }
}

/// Where the summary and its inputs go: `$CREDSTORE_BENCH_OUT`, or
/// `target/bench` of the workspace.
pub fn out_dir() -> PathBuf {
    std::env::var_os("CREDSTORE_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench")))
}

/// Where a bench target writes its rows: [`out_dir`], or a `test-mode`
/// folder below it when the bench runs as a test ([`test_mode`]), so the
/// test suite never overwrites a real run's figures. Only bench targets call
/// this: the binaries are never run without `--bench` by mistake.
pub fn bench_out_dir() -> PathBuf {
    if test_mode() {
        out_dir().join("test-mode")
    } else {
        out_dir()
    }
}

/// A cheap, deterministic sequence of indexes in `0..n` (an LCG), so every
/// task reads a spread of keys without a random-number dependency.
#[derive(Debug, Clone)]
pub struct KeyWalk {
    state: u64,
    n: u64,
}

impl KeyWalk {
    /// A walk over `0..n` starting from `seed`.
    pub fn new(seed: u64, n: usize) -> Self {
        Self { state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, n: n as u64 }
    }

    /// The next index.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> usize {
        self.state =
            self.state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.state >> 33) % self.n) as usize
    }
}

/// The key name of index `i`, the same in every store and baseline.
pub fn key_name(i: usize) -> String {
    format!("bench-key-{i:07}")
}

/// The workspace README's Rust examples (quick start, layers, a custom
/// backend's conformance test) compile and run as doctests here: this crate
/// depends on every crate they use and is never published.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct WorkspaceReadmeDoctests;
