//! The integration tests of credstore-keychain on the real platforms; the
//! conformance suites run apart (`tests/conformance_*.rs`, their own harness)
//! and share the `util` fixtures.

mod expiry;
mod faults;
mod kek;
mod layout;
mod uri;
mod util;
