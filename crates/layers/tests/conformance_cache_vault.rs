//! The whole conformance suite on a cache over `credstore-vault`, on a real
//! OpenBao dev server (`bao server -dev`, started once for this binary).
//!
//! Every store is a fresh cache over a Vault store with its own random path
//! prefix in the `secret/` KV v2 mount; the store id doubles as the prefix,
//! so `reopen` builds a new cache over the same secrets from the id alone
//! (`credstore_test_servers::stores`).

use credstore_conformance::conformance_main;
use credstore_core::StoreExt;
use credstore_layers::CacheLayer;
use credstore_test_servers::stores::ServerStoreFactory;

conformance_main!(
    ServerStoreFactory::openbao("cached-vault").map(|f| f.wrapped(|s| s.with_layer(CacheLayer::new())))
);
