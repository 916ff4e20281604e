//! The conformance suite against the encrypted SQLite backend keeping no
//! history (`Retention::NONE`): it declares neither `versions` nor
//! `recover_deleted`, and the capability cases check that both ways.

mod factory;

use credstore_core::Retention;

credstore_conformance::conformance_main!(Some(factory::SqliteFactory::new(Retention::NONE)));
