//! The shared conformance suite against the encrypted SQLite backend with
//! its default retention (10 versions, no age limit); see
//! `factory/mod.rs` for how the stores are made.

mod factory;

use credstore_sqlite::DEFAULT_RETENTION;

credstore_conformance::conformance_main!(Some(factory::SqliteFactory::new(DEFAULT_RETENTION)));
