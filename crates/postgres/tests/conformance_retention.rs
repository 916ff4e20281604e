//! The conformance suite against `credstore-postgres` with a small retention
//! and an age limit (3 versions, one day), so that the retention cases
//! write past both: versions past the count and versions superseded a day
//! ago, by the store's clock, are gone. The stores are made by
//! `factory/mod.rs`.

use std::time::Duration;

use credstore_core::Retention;

mod factory;

const RETENTION: Retention = Retention::versions(3).with_max_age(Some(Duration::from_secs(86_400)));

credstore_conformance::conformance_main!(factory::Factory::new(RETENTION));
