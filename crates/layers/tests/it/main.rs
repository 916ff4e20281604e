//! The integration tests of credstore-layers, one module per layer. Apart:
//! the conformance runners (`tests/conformance_*.rs`, their own harness) and
//! `tests/cache_logs.rs`, which installs a `tracing` subscriber and so needs
//! a process of its own.

mod cache;
mod cache_feed;
mod fallback;
mod read_only;
mod retry;
