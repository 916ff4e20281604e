//! The conformance suite against the encrypted SQLite backend keeping a
//! small retention with an age limit (3 versions, one day), so that the
//! retention cases write past both: versions past the count and versions
//! superseded a day ago, by the store's clock, are gone.

mod factory;

use std::time::Duration;

use credstore_core::Retention;

const RETENTION: Retention = Retention::versions(3).with_max_age(Some(Duration::from_secs(86_400)));

credstore_conformance::conformance_main!(Some(factory::SqliteFactory::new(RETENTION)));
