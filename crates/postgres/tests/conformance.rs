//! The conformance suite against `credstore-postgres`, on a real PostgreSQL
//! server (the fixture of `credstore-test-servers`, started once for this
//! test binary), with the default retention (10 versions, no age limit).
//! The stores are made by `factory/mod.rs`.

mod factory;

credstore_conformance::conformance_main!(factory::Factory::new(credstore_postgres::DEFAULT_RETENTION));
