//! The conformance suite against `credstore-postgres` keeping no history
//! (`Retention::NONE`, `max_versions = 1`): it declares neither `versions`
//! nor `recover_deleted`, and the capability cases check that both ways.
//! The stores are made by `factory/mod.rs`.

use credstore_core::Retention;

mod factory;

credstore_conformance::conformance_main!(factory::Factory::new(Retention::NONE));
