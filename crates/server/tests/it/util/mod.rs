//! Helpers shared by the test modules: a server in-process (`harness`), the
//! binary as a process (`process`), test certificates (`certs`), stores that
//! fail on demand (`stores`) and generated inputs (`property`).

pub mod certs;
pub mod harness;
pub mod process;
pub mod property;
pub mod stores;
