//! The integration tests of credstore-aws against moto, one module per topic.
//! Apart: the conformance suite (`tests/conformance.rs`, its own harness) and
//! `tests/from_env.rs`, which sets process environment variables and so needs
//! a process of its own.

mod faults;
mod kms;
mod redirects;
mod requests;
