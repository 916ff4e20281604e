//! What the property tests over real HTTP share: a runtime for the server
//! and the client, and a proptest runner with a fixed seed.

use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// A two-worker runtime for the in-process server and the client.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A runner of `cases` cases with a fixed seed, so a run (and the coverage
/// it asserts) is reproducible; set `CREDSTORE_FUZZ_RANDOM=1` to explore
/// with a random seed.
pub fn runner(cases: u32) -> TestRunner {
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    if std::env::var_os("CREDSTORE_FUZZ_RANDOM").is_some() {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    }
}
