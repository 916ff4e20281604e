//! The integration tests of credstore-postgres against a real PostgreSQL
//! (the fixture of `credstore-test-servers`), one module per topic; the
//! conformance suite runs apart (`tests/conformance.rs`, its own harness),
//! and so do the tests of what it logs (`tests/logs.rs`).
//!
//! Without PostgreSQL installed every test returns early after a loud
//! notice; under `CI=true` they fail instead.

mod config;
mod feed;
mod history;
mod keys;
mod migrate;
mod store;
mod timeouts;
mod tls;
mod uri;
mod util;
