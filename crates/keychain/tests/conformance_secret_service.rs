//! The conformance suite on the Secret Service, against gnome-keyring-daemon
//! on a private D-Bus bus started for this test binary and closed at its
//! end (see `it/util/secret_service.rs`). Skipped loudly when the daemon is not
//! installed; a failure under `CI=true`.

// `pub`: this runner uses a few of the fixtures the `it` binary uses all of.
#[path = "it/util/secret_service.rs"]
pub mod secret_service;

use std::process::ExitCode;
use std::sync::Arc;

use credstore_conformance::{unique_name, StoreFactory};
use credstore_core::{Clock, CredentialStore, CredentialStoreExt};
use secret_service::Bus;

struct SecretServiceFactory {
    bus: Bus,
    down: Option<Bus>,
}

#[credstore_conformance::async_trait]
impl StoreFactory for SecretServiceFactory {
    async fn create(&self) -> Arc<dyn CredentialStore> {
        Arc::new(self.bus.store(&unique_name("secret-service")))
    }

    async fn reopen(&self, store: Arc<dyn CredentialStore>) -> Option<Arc<dyn CredentialStore>> {
        let id = store.id().clone();
        drop(store);
        Some(Arc::new(self.bus.store(id.as_str())))
    }

    async fn create_on_clock(&self, clock: Arc<dyn Clock>) -> Option<Arc<dyn CredentialStore>> {
        Some(Arc::new(self.bus.store_on(&unique_name("secret-service"), clock)))
    }

    async fn unreachable(&self) -> Option<Arc<dyn CredentialStore>> {
        // A bus with no Secret Service provider on it.
        self.down
            .as_ref()
            .map(|b| Arc::new(b.store(&unique_name("secret-service-down"))) as Arc<dyn CredentialStore>)
    }
}

fn main() -> ExitCode {
    // One bus with gnome-keyring for the whole run, stopped with its files
    // removed when the run ends and drops the factory.
    let factory = Bus::start(true).map(|bus| SecretServiceFactory { bus, down: Bus::start(false) });
    credstore_conformance::run(factory)
}
