//! The integration tests of credstore-sqlite, one module per topic; the
//! conformance suite runs apart (`tests/conformance.rs`, its own harness).

mod batch;
mod envelope;
mod history;
mod migration;
mod processes;
mod rotation;
mod store;
mod uri;
mod util;
