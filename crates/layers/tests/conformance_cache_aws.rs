//! The whole conformance suite on a cache over `credstore-aws`, on a real
//! Secrets Manager API: moto's server on loopback.
//!
//! Every store is a fresh cache over an AWS store with its own random name
//! prefix on one shared server; the store id doubles as the prefix, so
//! `reopen` builds a new cache over the same secrets from the id alone
//! (`credstore_test_servers::stores`).

use credstore_conformance::conformance_main;
use credstore_core::StoreExt;
use credstore_layers::CacheLayer;
use credstore_test_servers::stores::ServerStoreFactory;

conformance_main!(
    ServerStoreFactory::moto("cached-aws").map(|f| f.wrapped(|s| s.with_layer(CacheLayer::new())))
);
