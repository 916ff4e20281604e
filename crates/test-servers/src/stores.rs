//! [`ServerStoreFactory`]: the conformance suite's stores on the shared
//! moto (feature `aws`) or OpenBao (feature `vault`) server, written once
//! for the backend's own suite and for the suites of layers over it.

use std::sync::Arc;
use std::time::Duration;

use credstore_conformance::{unique_name, StoreFactory};
use credstore_core::{Clock, CredentialStore, StoreId};

/// Where a store of a [`ServerStoreFactory`] points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// The shared server.
    Server,
    /// A loopback port that was just free (nothing listens there), with a
    /// short timeout: the store of [`StoreFactory::unreachable`].
    ClosedPort,
}

type Open = dyn Fn(Reach, StoreId) -> Arc<dyn CredentialStore> + Send + Sync;
type Wrap = dyn Fn(Arc<dyn CredentialStore>) -> Arc<dyn CredentialStore> + Send + Sync;
type OpenOnClock = dyn Fn(StoreId, Arc<dyn Clock>) -> Arc<dyn CredentialStore> + Send + Sync;

/// A [`StoreFactory`] of stores on one shared server. Every store has its
/// own random id, which doubles as its key prefix on the server
/// (`conformance/<id>`), so the isolation cases check prefixes and
/// namespaces on one server, and [`reopen`](StoreFactory::reopen) rebuilds
/// the same store (a new instance, nothing shared with the old one) from
/// its id and namespace alone.
///
/// ```no_run
/// use credstore_conformance::conformance_main;
/// use credstore_test_servers::stores::ServerStoreFactory;
///
/// conformance_main!(ServerStoreFactory::openbao("vault"));
/// ```
pub struct ServerStoreFactory {
    name: String,
    open: Box<Open>,
    wrap: Option<Box<Wrap>>,
    on_clock: Option<Box<OpenOnClock>>,
}

impl std::fmt::Debug for ServerStoreFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerStoreFactory").field("name", &self.name).finish_non_exhaustive()
    }
}

impl ServerStoreFactory {
    /// Stores whose ids start with `name`, opened by `open`.
    pub fn new(
        name: impl Into<String>,
        open: impl Fn(Reach, StoreId) -> Arc<dyn CredentialStore> + Send + Sync + 'static,
    ) -> Self {
        Self { name: name.into(), open: Box::new(open), wrap: None, on_clock: None }
    }

    /// Opens the stores of [`StoreFactory::create_on_clock`] with `open`: a
    /// store on the shared server that decides expiry by the clock given
    /// (then [`wrapped`](Self::wrapped) as every other store).
    pub fn on_clock(
        mut self,
        open: impl Fn(StoreId, Arc<dyn Clock>) -> Arc<dyn CredentialStore> + Send + Sync + 'static,
    ) -> Self {
        self.on_clock = Some(Box::new(open));
        self
    }

    /// Hands out every store (reopened and unreachable ones too) as `wrap`
    /// makes it of a fresh store, such as a layer over it.
    pub fn wrapped(
        mut self,
        wrap: impl Fn(Arc<dyn CredentialStore>) -> Arc<dyn CredentialStore> + Send + Sync + 'static,
    ) -> Self {
        self.wrap = Some(Box::new(wrap));
        self
    }

    fn open(&self, reach: Reach, id: StoreId) -> Arc<dyn CredentialStore> {
        let store = (self.open)(reach, id);
        match &self.wrap {
            Some(wrap) => wrap(store),
            None => store,
        }
    }

    fn fresh_id(&self, suffix: &str) -> StoreId {
        StoreId::new(unique_name(&format!("{}{suffix}", self.name))).expect("a valid store id")
    }
}

/// The key prefix of the store `id` on the shared server.
fn prefix(id: &StoreId) -> String {
    format!("conformance/{id}")
}

/// The address of a loopback port that was just free: nothing listens there.
fn closed_address() -> String {
    format!("http://127.0.0.1:{}", crate::free_port())
}

#[cfg(feature = "aws")]
impl ServerStoreFactory {
    /// `credstore-aws` stores on the shared moto server (`None` without
    /// one), with static credentials, a 20-second timeout, and 2 attempts
    /// of 2 seconds at most when unreachable.
    pub fn moto(name: impl Into<String>) -> Option<Self> {
        use credstore_aws::{AwsConfig, AwsStore};
        use credstore_core::SecretValue;

        use crate::moto::{Moto, ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};

        let endpoint = Moto::shared()?.endpoint();
        let config = |endpoint: &str| {
            AwsConfig::new()
                .region(REGION)
                .endpoint_url(endpoint)
                .static_credentials(ACCESS_KEY_ID, SecretValue::from(SECRET_ACCESS_KEY))
                .timeout(Duration::from_secs(20))
        };
        let on_server = {
            let endpoint = endpoint.clone();
            move |id: &StoreId| config(&endpoint).prefix(&prefix(id))
        };
        let factory = Self::new(name, move |reach, id| {
            let config = match reach {
                Reach::Server => config(&endpoint).prefix(&prefix(&id)),
                Reach::ClosedPort => config(&closed_address())
                    .timeout(Duration::from_secs(2))
                    .max_attempts(2)
                    .prefix(id.as_str()),
            };
            Arc::new(AwsStore::new(id, config).expect("aws store"))
        });
        Some(factory.on_clock(move |id, clock| {
            Arc::new(AwsStore::new(id.clone(), on_server(&id).clock(clock)).expect("aws store"))
        }))
    }
}

#[cfg(feature = "vault")]
impl ServerStoreFactory {
    /// `credstore-vault` stores in the `secret/` KV v2 mount of the shared
    /// OpenBao dev server (`None` without one), with its root token and a
    /// 10-second timeout (2 seconds when unreachable).
    pub fn openbao(name: impl Into<String>) -> Option<Self> {
        use credstore_core::SecretValue;
        use credstore_vault::{VaultConfig, VaultStore};

        use crate::openbao::OpenBao;

        let bao = OpenBao::shared()?;
        let on_server = move |id: &StoreId| {
            VaultConfig::new(bao.address())
                .prefix(&prefix(id))
                .timeout(Duration::from_secs(10))
                .token(SecretValue::from(bao.root_token()))
        };
        let factory = Self::new(name, move |reach, id| {
            let config = match reach {
                Reach::Server => on_server(&id),
                Reach::ClosedPort => VaultConfig::new(closed_address())
                    .timeout(Duration::from_secs(2))
                    .token(SecretValue::from(bao.root_token())),
            };
            Arc::new(VaultStore::new(id, config).expect("vault store"))
        });
        Some(factory.on_clock(move |id, clock| {
            Arc::new(VaultStore::new(id.clone(), on_server(&id).clock(clock)).expect("vault store"))
        }))
    }
}

#[credstore_core::async_trait]
impl StoreFactory for ServerStoreFactory {
    async fn create(&self) -> Arc<dyn CredentialStore> {
        self.open(Reach::Server, self.fresh_id(""))
    }

    async fn reopen(&self, store: Arc<dyn CredentialStore>) -> Option<Arc<dyn CredentialStore>> {
        let (id, namespace) = (store.info().id().clone(), store.info().namespace().clone());
        drop(store);
        let reopened = self.open(Reach::Server, id);
        if namespace.is_root() {
            return Some(reopened);
        }
        Some(reopened.with_namespace(&namespace).expect("the same namespace"))
    }

    async fn unreachable(&self) -> Option<Arc<dyn CredentialStore>> {
        Some(self.open(Reach::ClosedPort, self.fresh_id("-down")))
    }

    async fn create_on_clock(&self, clock: Arc<dyn Clock>) -> Option<Arc<dyn CredentialStore>> {
        let open = self.on_clock.as_ref()?;
        let store = open(self.fresh_id("-clock"), clock);
        Some(match &self.wrap {
            Some(wrap) => wrap(store),
            None => store,
        })
    }
}
