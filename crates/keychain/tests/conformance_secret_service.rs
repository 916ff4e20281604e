//! The conformance suite on the Secret Service, against gnome-keyring-daemon
//! on a private D-Bus bus started for this test binary and closed at its
//! end (see `common::secret_service`). Skipped loudly when the daemon is not
//! installed; a failure under `CI=true`.

mod common;

use std::process::ExitCode;
use std::sync::Arc;

use common::secret_service::Bus;
use credstore_conformance::{unique_name, StoreFactory};
use credstore_core::CredentialStore;

struct SecretServiceFactory {
    bus: &'static Bus,
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

    async fn unreachable(&self) -> Option<Arc<dyn CredentialStore>> {
        // A bus with no Secret Service provider on it.
        self.down
            .as_ref()
            .map(|b| Arc::new(b.store(&unique_name("secret-service-down"))) as Arc<dyn CredentialStore>)
    }
}

fn main() -> ExitCode {
    // One bus with gnome-keyring for the whole run, closed at its end.
    let bus: Option<&'static Bus> = Bus::start(true).map(|b| &*Box::leak(Box::new(b)));
    let factory = bus.map(|bus| SecretServiceFactory { bus, down: Bus::start(false) });
    let code = credstore_conformance::run(factory);
    if let Some(bus) = bus {
        bus.close();
    }
    code
}
