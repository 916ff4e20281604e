//! The conformance suite against `credstore-vault`, on a real OpenBao dev
//! server (`bao server -dev`, started once for this test binary).
//!
//! Every store gets its own random path prefix in the `secret/` KV v2 mount
//! of the shared server; the store id doubles as that prefix, so `reopen`
//! rebuilds the same store from its id (`credstore_test_servers::stores`).
//! Namespace handles come from the store itself (`with_namespace`), under
//! that prefix.

use credstore_conformance::conformance_main;
use credstore_test_servers::stores::ServerStoreFactory;

conformance_main!(ServerStoreFactory::openbao("vault"));
