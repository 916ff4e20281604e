//! The integration tests of credstore-postgres against a real PostgreSQL
//! (the fixture of `credstore-test-servers`), one module per topic; the
//! conformance suite runs apart (`tests/conformance.rs`, its own harness).
//!
//! Without PostgreSQL installed every test returns early after a loud
//! notice; under `CI=true` they fail instead.

mod config;
mod feed;
mod keys;
mod logs;
mod migrate;
mod store;
mod timeouts;
mod tls;
mod util;
