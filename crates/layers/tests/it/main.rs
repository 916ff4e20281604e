//! The integration tests of credstore-layers, one module per layer. Apart:
//! the conformance runners (`tests/conformance_*.rs`, their own harness) and
//! `tests/cache_logs.rs`, which installs a `tracing` subscriber and so needs
//! a process of its own.

mod cache;
mod cache_batch;
mod cache_durable;
mod cache_feed;
mod cache_prefetch;
mod cache_process;
mod fallback;
mod read_only;
mod retry;
