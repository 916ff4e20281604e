//! The integration tests of credstore-vault against OpenBao (the store and
//! the Transit key-encryption key), one module per
//! topic; the conformance suite runs apart (`tests/conformance.rs`, its own
//! harness).

mod approle;
mod conditional;
mod faults;
mod history;
mod interop;
mod jwt;
mod login_answers;
mod logs;
mod redirects;
mod requests;
mod transit;
mod uri;
mod util;
