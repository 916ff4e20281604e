//! The Secret Service (org.freedesktop.secrets) as a platform, over zbus.
//!
//! Each credential is one item of the configured collection, with the
//! attributes `service` (the service name) and `account` (the key), the
//! label `{key} ({service})`, and the entry as its secret. A write is one
//! `CreateItem` call with `replace` set, which the provider applies as one
//! change. The store never prompts: a locked collection is reported, not
//! unlocked.

use std::collections::HashMap;
use std::sync::Arc;

use credstore_core::{async_trait, Capabilities, Persistence};
use secret_service::{EncryptionType, Error as SsError};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::errors::{Cause, Failure, Kind, PResult};
use crate::layout::ValueEncoding;
use crate::platform::Platform;
use crate::SecretServiceOptions;

/// The Secret Service platform. The connection is opened on first use and
/// again after it fails.
pub(crate) struct SecretService {
    options: SecretServiceOptions,
    conn: Mutex<Option<Arc<Conn>>>,
}

impl std::fmt::Debug for SecretService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretService").field("options", &self.options).finish()
    }
}

impl SecretService {
    pub(crate) fn new(options: SecretServiceOptions) -> Self {
        Self { options, conn: Mutex::new(None) }
    }

    fn bus(&self) -> String {
        self.options.bus_address.clone().unwrap_or_else(|| "the session bus".to_owned())
    }

    /// The connection, and whether it was made just now.
    async fn service(&self) -> PResult<(Arc<Conn>, bool)> {
        let mut slot = self.conn.lock().await;
        if let Some(ss) = slot.as_ref() {
            return Ok((Arc::clone(ss), false));
        }
        let conn = match &self.options.bus_address {
            Some(addr) => {
                zbus::connection::Builder::address(addr.as_str())
                    .map_err(|e| Failure::new(Kind::Config, format!("bad D-Bus address {addr:?}: {e}")))?
                    .build()
                    .await
            }
            None => zbus::Connection::session().await,
        }
        .map_err(|e| {
            Failure::new(Kind::Unavailable, format!("cannot connect to {}: {e}", self.bus()))
                .with_source(Cause(e.to_string()))
        })?;
        let ss = secret_service::SecretService::connect_with_existing(EncryptionType::Dh, conn)
            .await
            .map_err(|e| self.failure(e, "cannot open a Secret Service session"))?;
        let ss = Arc::new(ss);
        *slot = Some(Arc::clone(&ss));
        Ok((ss, true))
    }

    /// Runs `op` on the connection. When it fails as unavailable on a
    /// connection made earlier (the provider restarted, the bus went away),
    /// the connection is dropped and `op` runs once more on a new one; a
    /// locked collection is not retried.
    async fn call<'s, T, Fut>(&'s self, op: impl Fn(Arc<Conn>) -> Fut) -> PResult<T>
    where
        Fut: std::future::Future<Output = PResult<T>> + 's,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (ss, fresh) = self.service().await?;
            match op(ss).await {
                Err(f) if f.kind == Kind::Unavailable && !f.reason.contains("is locked") => {
                    *self.conn.lock().await = None;
                    if fresh || attempt == 2 {
                        return Err(f);
                    }
                }
                other => return other,
            }
        }
    }

    /// Names a Secret Service failure with the provider's own cause.
    fn failure(&self, e: SsError, what: &str) -> Failure {
        let text = e.to_string();
        let (kind, cause) = match &e {
            SsError::Unavailable => (Kind::Unavailable, format!("no D-Bus session bus at {}", self.bus())),
            SsError::Locked => {
                (Kind::Unavailable, format!("collection '{}' is locked", self.options.collection))
            }
            SsError::Prompt | SsError::PromptDisconnected => {
                (Kind::Denied, "the Secret Service asked for a prompt, which was dismissed".to_owned())
            }
            SsError::NoResult => {
                (Kind::Unavailable, format!("no collection with alias '{}'", self.options.collection))
            }
            _ if text.contains("ServiceUnknown")
                || text.contains("org.freedesktop.secrets was not provided") =>
            {
                (
                    Kind::Unavailable,
                    format!("no Secret Service provider (org.freedesktop.secrets) on {}", self.bus()),
                )
            }
            _ if text.contains("IsLocked") => {
                (Kind::Unavailable, format!("collection '{}' is locked", self.options.collection))
            }
            _ if text.contains("AccessDenied") => (Kind::Denied, text.clone()),
            SsError::Crypto(c) => (Kind::Other, format!("Secret Service session encryption failed: {c}")),
            _ => (Kind::Unavailable, text.clone()),
        };
        // Only the message text is kept: zbus errors can hold reply bodies.
        Failure::new(kind, format!("{what}: {cause}")).with_source(Cause(text))
    }

    /// The items of `collection` under `service`: those of `account` only
    /// when it is given, else all of them.
    async fn search<'c>(
        &self,
        collection: &'c secret_service::Collection<'_>,
        service: &str,
        account: Option<&str>,
    ) -> PResult<Vec<secret_service::Item<'c>>> {
        collection
            .search_items(attributes(service, account))
            .await
            .map_err(|e| self.failure(e, "cannot search"))
    }

    /// The configured collection, refused when locked: the store never
    /// prompts.
    async fn open<'a>(&self, ss: &'a Conn) -> PResult<secret_service::Collection<'a>> {
        let collection = ss
            .get_collection_by_alias(&self.options.collection)
            .await
            .map_err(|e| self.failure(e, "cannot open the collection"))?;
        if collection.is_locked().await.map_err(|e| self.failure(e, "cannot query the collection"))? {
            return Err(Failure::new(
                Kind::Unavailable,
                format!(
                    "collection '{}' is locked; unlock it (for example by logging in)",
                    self.options.collection
                ),
            ));
        }
        Ok(collection)
    }
}

impl SecretService {
    /// One `CreateItem` call: with `replace`, an item of the same
    /// attributes is replaced; without, a second one is added beside it.
    async fn create(&self, service: &str, account: &str, entry: &[u8], replace: bool) -> PResult<()> {
        self.call(|ss| async move {
            let c = self.open(&ss).await?;
            let label = format!("{account} ({service})");
            c.create_item(&label, attributes(service, Some(account)), entry, replace, "text/plain")
                .await
                .map(drop)
                .map_err(|e| self.failure(e, "cannot store the secret"))
        })
        .await
    }
}

/// A connection to the Secret Service with its session.
type Conn = secret_service::SecretService<'static>;

/// Whether a D-Bus error says the object is gone (deleted meanwhile).
fn is_gone(e: &SsError) -> bool {
    let text = e.to_string();
    matches!(e, SsError::NoResult) || text.contains("NoSuchObject") || text.contains("UnknownObject")
}

fn attributes<'a>(service: &'a str, account: Option<&'a str>) -> HashMap<&'a str, &'a str> {
    let mut attrs = HashMap::from([("service", service)]);
    if let Some(account) = account {
        attrs.insert("account", account);
    }
    attrs
}

#[async_trait]
impl Platform for SecretService {
    fn name(&self) -> &'static str {
        "Secret Service"
    }

    fn capabilities(&self) -> Capabilities {
        // CreateItem either replaces or adds a duplicate: no atomic
        // create-only, no compare-and-swap.
        Capabilities::full()
            .with_persistence(Persistence::Durable)
            .with_create_only(false)
            .with_replace_if_version(false)
            // Enforced by the store: `x` in the entry's header.
            .with_expiry(true)
    }

    fn encoding(&self) -> ValueEncoding {
        // KWallet keeps text only.
        ValueEncoding::TextOrBase64
    }

    async fn read(&self, service: &str, account: &str) -> PResult<Option<Zeroizing<Vec<u8>>>> {
        self.call(|ss| async move {
            let c = self.open(&ss).await?;
            let items = self.search(&c, service, Some(account)).await?;
            let Some(item) = items.first() else { return Ok(None) };
            match item.get_secret().await {
                Ok(secret) => Ok(Some(Zeroizing::new(secret))),
                Err(e) if is_gone(&e) => Ok(None),
                Err(e) => Err(self.failure(e, "cannot read the secret")),
            }
        })
        .await
    }

    async fn write(&self, service: &str, account: &str, entry: &[u8], _create_only: bool) -> PResult<()> {
        self.create(service, account, entry, true).await
    }

    /// Every item of `account`, duplicates included.
    async fn read_all(&self, service: &str, account: &str) -> PResult<Vec<Zeroizing<Vec<u8>>>> {
        self.call(|ss| async move {
            let c = self.open(&ss).await?;
            let mut out = Vec::new();
            for item in &self.search(&c, service, Some(account)).await? {
                match item.get_secret().await {
                    Ok(secret) => out.push(Zeroizing::new(secret)),
                    Err(e) if is_gone(&e) => {}
                    Err(e) => return Err(self.failure(e, "cannot read the secret")),
                }
            }
            Ok(out)
        })
        .await
    }

    /// `CreateItem` without `replace`: an item another process added
    /// meanwhile is kept beside this one, never replaced.
    async fn add(&self, service: &str, account: &str, entry: &[u8]) -> PResult<bool> {
        if self.exists(service, account).await? {
            return Ok(false);
        }
        self.create(service, account, entry, false).await.map(|()| true)
    }

    async fn delete(&self, service: &str, account: &str) -> PResult<bool> {
        self.call(|ss| async move {
            let c = self.open(&ss).await?;
            let items = self.search(&c, service, Some(account)).await?;
            let mut deleted = false;
            for item in &items {
                match item.delete().await {
                    Ok(()) => deleted = true,
                    Err(e) if is_gone(&e) => {}
                    Err(e) => return Err(self.failure(e, "cannot delete the item")),
                }
            }
            Ok(deleted)
        })
        .await
    }

    async fn list(&self, service: &str) -> PResult<Vec<String>> {
        self.call(|ss| async move {
            let c = self.open(&ss).await?;
            let items = self.search(&c, service, None).await?;
            let mut accounts = Vec::with_capacity(items.len());
            for item in &items {
                match item.get_attributes().await {
                    Ok(mut attrs) => accounts.extend(attrs.remove("account")),
                    Err(e) if is_gone(&e) => {}
                    Err(e) => return Err(self.failure(e, "cannot read item attributes")),
                }
            }
            Ok(accounts)
        })
        .await
    }

    async fn probe(&self) -> PResult<()> {
        self.call(|ss| async move { self.open(&ss).await.map(drop) }).await
    }
}
