//! The integration tests of credstore-memory. The conformance suite runs
//! apart (`tests/conformance.rs`, its own harness).
//!
//! This binary counts its allocations (see `memory_use`): a test added here
//! allocates beside the measurement.

mod memory_use;
