//! The conformance suite against `credstore-aws`, on a real Secrets Manager
//! API: moto's server on loopback (`credstore_test_servers::moto`).
//!
//! Every created store has its own random name prefix on one shared server,
//! so the isolation cases check prefixes and namespaces on one account. The
//! unreachable store points at a closed loopback port with a short timeout
//! and few attempts (`credstore_test_servers::stores`).

use credstore_conformance::conformance_main;
use credstore_test_servers::stores::ServerStoreFactory;

conformance_main!(ServerStoreFactory::moto("aws"));
