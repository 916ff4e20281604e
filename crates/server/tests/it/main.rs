//! The integration tests of `credstore-server`, one binary: each module
//! drives the server in-process or the `credstore` binary as a process,
//! with the helpers of `util`.

mod util;

mod api;
mod backends;
mod batch;
mod browser;
mod cli;
mod connections;
mod console;
mod custom_backend;
mod fuzz;
mod internals;
mod key_providers;
mod keychain;
mod observability;
mod openapi;
mod process;
mod replicas;
mod sessions;
mod tls;
mod versions;
