//! The conformance suite on Linux kernel keyutils, in a session keyring of
//! this test run's own: the binary joins a new anonymous session keyring
//! before any thread starts, every store lives in it, and at the end of the
//! run the check below finds nothing else in it, clears it, and finds no
//! staging keyring left in the process keyring. Nothing outside those two
//! keyrings is written.

use std::process::ExitCode;
use std::sync::Arc;

use credstore_conformance::{unique_name, StoreFactory};
use credstore_core::{Clock, CredentialStore, CredentialStoreExt, StoreId};
use credstore_keychain::{KeychainConfig, KeychainStore, KeyutilsKeyring, Platform};
use credstore_test_servers::keyctl;

struct KeyutilsFactory;

fn store(id: StoreId, ring: KeyutilsKeyring) -> Arc<dyn CredentialStore> {
    let config = KeychainConfig::new().platform(Platform::Keyutils(ring));
    Arc::new(KeychainStore::new(id, config).expect("keychain store"))
}

fn store_on(id: StoreId, clock: Arc<dyn Clock>) -> Arc<dyn CredentialStore> {
    let config = KeychainConfig::new().platform(Platform::Keyutils(KeyutilsKeyring::Session)).clock(clock);
    Arc::new(KeychainStore::new(id, config).expect("keychain store"))
}

#[credstore_conformance::async_trait]
impl StoreFactory for KeyutilsFactory {
    async fn create(&self) -> Arc<dyn CredentialStore> {
        store(StoreId::new(unique_name("keyutils")).unwrap(), KeyutilsKeyring::Session)
    }

    async fn reopen(&self, store_: Arc<dyn CredentialStore>) -> Option<Arc<dyn CredentialStore>> {
        let id = store_.id().clone();
        drop(store_);
        Some(store(id, KeyutilsKeyring::Session))
    }

    async fn create_on_clock(&self, clock: Arc<dyn Clock>) -> Option<Arc<dyn CredentialStore>> {
        Some(store_on(StoreId::new(unique_name("keyutils")).unwrap(), clock))
    }

    async fn unreachable(&self) -> Option<Arc<dyn CredentialStore>> {
        // A keyring that no longer exists: the kernel answers ENOKEY.
        let ring = keyctl::add_keyring(&unique_name("gone"), keyctl::SESSION_KEYRING).expect("add a keyring");
        keyctl::invalidate(ring).expect("invalidate it");
        Some(store(StoreId::new(unique_name("keyutils-down")).unwrap(), KeyutilsKeyring::Serial(ring)))
    }
}

/// The end-of-run check: after the stores of the run are cleared from the
/// run's own session keyring, nothing is left in it, and the process
/// keyring holds no staging keyring.
fn assert_nothing_left(session: i32) {
    let left = keyctl::tree(session);
    assert!(
        left.iter().all(|k| k.starts_with("keyring /credstore:") || k.contains("/credstore:")),
        "keys outside credstore's layout in the run's session keyring: {left:?}"
    );
    keyctl::clear(session).expect("clear the run's session keyring");
    assert_eq!(
        keyctl::tree(session),
        Vec::<String>::new(),
        "the session keyring is not empty after clearing"
    );
    let staging: Vec<String> =
        keyctl::tree(keyctl::PROCESS_KEYRING).into_iter().filter(|k| k.contains("credstore-stage")).collect();
    assert!(staging.is_empty(), "staging keyrings left behind: {staging:?}");
}

fn main() -> ExitCode {
    let session = match keyctl::usable().and_then(|()| keyctl::own_session().map_err(|e| e.to_string())) {
        Ok(ring) => Some(ring),
        Err(why) => {
            assert!(!credstore_test_servers::in_ci(), "CI=true and {why}");
            eprintln!("\n!!!! SKIPPED: {why} !!!!\n");
            None
        }
    };
    let code = credstore_conformance::run(session.map(|_| KeyutilsFactory));
    if let Some(session) = session {
        assert_nothing_left(session);
        eprintln!("keyutils: nothing left behind in the run's session keyring");
    }
    code
}
