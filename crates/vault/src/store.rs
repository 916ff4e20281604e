//! [`VaultStore`]: the `CredentialStore` implementation.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use credstore_core::{
    async_trait, check_value, validate_namespace, Availability, Capabilities, Credential, CredentialKey,
    CredentialStore, Error, ListOptions, ListPage, Metadata, Result, SecretValue, SetOutcome, StoreId,
    StoreKind,
};
use futures::StreamExt;
use serde_json::Value;
use vaultrs::kv2;

use crate::client::{connect, AuthStats, Connection};
use crate::errors::{Ctx, Failure};
use crate::layout::{
    decode_segment, encode_path, encode_segment, from_wire, key_state, parse_time, KeyState, Wire,
};
use crate::VaultConfig;

/// How many keys `list` checks for soft deletion at once.
const LIST_CONCURRENCY: usize = 16;

/// A credential store in a Vault or OpenBao KV v2 mount. See the crate docs
/// for the layout.
///
/// Cloning is cheap and gives another handle on the same client and token.
#[derive(Clone)]
pub struct VaultStore {
    id: StoreId,
    conn: Arc<Connection>,
    /// The encoded path inside the mount, no slash at either end; empty for
    /// the top of the mount.
    prefix: Arc<str>,
}

impl VaultStore {
    /// A store over the server and path `config` names.
    ///
    /// # Behavior
    /// No request is sent: a server that is down does not stop the store
    /// from being built, and [`CredentialStore::check_availability`] reports
    /// it. An AppRole store logs in on its first request.
    ///
    /// # Errors
    /// [`Error::Config`] when the address is not an `http(s)` URL, the mount,
    /// path prefix or AppRole mount is not a valid path, the token or Vault
    /// namespace cannot be sent in a header, the timeout is zero, or the CA
    /// file cannot be read. Messages never contain the token or secret id.
    pub fn new(id: StoreId, config: VaultConfig) -> Result<Self> {
        let config_error = |reason: String| Error::Config { store: id.clone(), reason };
        let mount =
            encode_path(&config.mount).map_err(|e| config_error(format!("mount {:?}: {e}", config.mount)))?;
        if mount.is_empty() {
            return Err(config_error("the mount is empty".into()));
        }
        let prefix = encode_path(&config.prefix)
            .map_err(|e| config_error(format!("path prefix {:?}: {e}", config.prefix)))?;
        let conn = connect(&config, mount).map_err(config_error)?;
        Ok(Self { id, conn: Arc::new(conn), prefix: Arc::from(prefix) })
    }

    /// A handle whose keys live under `ns` inside this store's path prefix
    /// (`{prefix}/{ns}/{key}`), sharing this store's client and token. Same
    /// id and kind.
    ///
    /// # Behavior
    /// Two handles with different namespaces never see each other's keys;
    /// the same namespace twice sees the same data. A handle's `list` does
    /// not show the keys of namespaces inside it.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `namespace` when `ns` is not one or
    /// more `[a-zA-Z0-9-_.]` segments joined by `/`.
    pub fn with_namespace(&self, ns: &str) -> Result<Self> {
        validate_namespace(ns)?;
        let ns = ns.split('/').map(encode_segment).collect::<Vec<_>>().join("/");
        let prefix = if self.prefix.is_empty() { ns } else { format!("{}/{ns}", self.prefix) };
        Ok(Self { prefix: Arc::from(prefix), ..self.clone() })
    }

    /// The path of `key` as the Vault CLI names it, `{mount}/{prefix}/{key}`:
    /// `bao kv get -field=value <path>` prints the value.
    pub fn secret_path(&self, key: &CredentialKey) -> String {
        format!("{}/{}", self.conn.mount, self.path(key))
    }

    /// How often this store (and its namespace handles) logged in with
    /// AppRole and renewed its token. Always zero with a fixed token.
    pub fn auth_stats(&self) -> AuthStats {
        self.conn.stats()
    }

    /// The key's path inside the mount.
    fn path(&self, key: &CredentialKey) -> String {
        let segment = encode_segment(key.as_str());
        if self.prefix.is_empty() {
            segment.into_owned()
        } else {
            format!("{}/{segment}", self.prefix)
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            store: &self.id,
            address: &self.conn.address,
            mount: &self.conn.mount,
            timeout: self.conn.timeout,
        }
    }

    /// Runs one operation under the store's timeout and translates its failure.
    async fn run<T>(&self, op: &'static str, fut: impl Future<Output = Result<T, Failure>>) -> Result<T> {
        let ctx = self.ctx();
        let result =
            tokio::time::timeout(self.conn.timeout, fut).await.unwrap_or_else(|_| Err(ctx.timed_out()));
        result.map_err(|failure| {
            tracing::debug!(store = %self.id, op, ?failure, "vault operation failed");
            ctx.error(failure)
        })
    }

    /// The key's KV v2 metadata: `None` when it has no live version.
    async fn state(&self, ctx: &Ctx<'_>, path: &str) -> Result<Option<KeyState>, Failure> {
        let mount = self.conn.mount.as_str();
        match self.conn.call(ctx, |s| async move { kv2::read_metadata(&s.client, mount, path).await }).await {
            Ok(meta) => key_state(&meta, SystemTime::now()).map_err(Failure::Other),
            Err(Failure::NotFound) => Ok(None),
            Err(f) => Err(f),
        }
    }
}

impl fmt::Debug for VaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultStore")
            .field("id", &self.id)
            .field("address", &self.conn.address)
            .field("mount", &self.conn.mount)
            .field("prefix", &self.prefix)
            .field("approle", &self.conn.is_approle())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl CredentialStore for VaultStore {
    fn id(&self) -> &StoreId {
        &self.id
    }

    fn kind(&self) -> StoreKind {
        StoreKind::Vault
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::full()
    }

    /// Reads the key's metadata, then the data of its current version.
    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        let path = self.path(key);
        self.run("get", async {
            let ctx = self.ctx();
            self.conn.ensure_kv2(&ctx).await?;
            let Some(state) = self.state(&ctx, &path).await? else { return Ok(None) };
            let (mount, path, version) = (self.conn.mount.as_str(), path.as_str(), state.version);
            let read = self.conn.call(&ctx, |s| async move {
                kv2::read_version::<Value>(&s.client, mount, path, version).await
            });
            let data = match read.await {
                Ok(data) => data,
                // Deleted between the two reads.
                Err(Failure::NotFound) => return Ok(None),
                Err(f) => return Err(f),
            };
            let (value, metadata) = from_wire(data).map_err(|why| {
                Failure::Other(format!("secret '{path}' is not a credstore credential: {why}"))
            })?;
            Ok(Some(Credential {
                key: key.clone(),
                value,
                metadata,
                created_at: state.created_at,
                updated_at: state.updated_at,
            }))
        })
        .await
    }

    /// Writes a new version holding `{"value": ..., "metadata": {...}}` in
    /// one request, so readers and concurrent writers never see a value with
    /// another write's metadata.
    async fn set(&self, key: &CredentialKey, value: &SecretValue, metadata: &Metadata) -> Result<SetOutcome> {
        check_value(value)?;
        let path = self.path(key);
        self.run("set", async {
            let ctx = self.ctx();
            self.conn.ensure_kv2(&ctx).await?;
            let before = self.state(&ctx, &path).await?;
            let wire = &Wire::new(value, metadata);
            let (mount, path) = (self.conn.mount.as_str(), path.as_str());
            let written =
                self.conn.call(&ctx, |s| async move { kv2::set(&s.client, mount, path, wire).await }).await?;
            let updated_at = parse_time(&written.created_time)
                .ok_or_else(|| Failure::Other("unreadable created_time in vault's answer".into()))?;
            let (created, created_at) = match before {
                Some(b) => (false, b.created_at.min(updated_at)),
                None => (true, updated_at),
            };
            Ok(SetOutcome { created, created_at, updated_at })
        })
        .await
    }

    /// Reads the key's metadata only.
    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        let path = self.path(key);
        self.run("has", async {
            let ctx = self.ctx();
            self.conn.ensure_kv2(&ctx).await?;
            Ok(self.state(&ctx, &path).await?.is_some())
        })
        .await
    }

    /// Deletes the key's metadata and every version. A key whose latest
    /// version was only soft-deleted (by another tool) is purged too, and
    /// counts as missing.
    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        let path = self.path(key);
        self.run("delete", async {
            let ctx = self.ctx();
            self.conn.ensure_kv2(&ctx).await?;
            let (mount, path) = (self.conn.mount.as_str(), path.as_str());
            let existed = match self
                .conn
                .call(&ctx, |s| async move { kv2::read_metadata(&s.client, mount, path).await })
                .await
            {
                Ok(meta) => key_state(&meta, SystemTime::now()).map_err(Failure::Other)?.is_some(),
                Err(Failure::NotFound) => return Ok(false),
                Err(f) => return Err(f),
            };
            match self
                .conn
                .call(&ctx, |s| async move { kv2::delete_metadata(&s.client, mount, path).await })
                .await
            {
                Ok(()) | Err(Failure::NotFound) => Ok(existed),
                Err(f) => Err(f),
            }
        })
        .await
    }

    /// One LIST of the prefix folder, then the metadata of the candidates in
    /// key order until the page is full, to leave out soft-deleted keys.
    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.run("list", async {
            let ctx = self.ctx();
            self.conn.ensure_kv2(&ctx).await?;
            let mount = self.conn.mount.as_str();
            let folder = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
            let folder = folder.as_str();
            let names = match self
                .conn
                .call(&ctx, |s| async move { kv2::list(&s.client, mount, folder).await })
                .await
            {
                Ok(names) => names,
                Err(Failure::NotFound) => Vec::new(),
                Err(f) => return Err(f),
            };
            let mut candidates: Vec<CredentialKey> = names
                .iter()
                .filter(|n| !n.ends_with('/'))
                .filter_map(|n| decode_segment(n))
                .filter(|n| options.admits(n))
                .filter_map(|n| CredentialKey::new(n).ok())
                .collect();
            candidates.sort_unstable();
            candidates.dedup();
            let ctx = &ctx;
            let mut checked = futures::stream::iter(candidates)
                .map(|key| async move {
                    let path = self.path(&key);
                    self.state(ctx, &path).await.map(|s| s.is_some().then_some(key))
                })
                .buffered(LIST_CONCURRENCY);
            let mut live = Vec::with_capacity(options.limit() + 1);
            while let Some(found) = checked.next().await {
                if let Some(key) = found? {
                    live.push(key);
                    if live.len() > options.limit() {
                        break;
                    }
                }
            }
            Ok(options.page_from_sorted(live))
        })
        .await
    }

    /// Health (reachable, initialized, unsealed), token lookup, then the
    /// mount's type, all within the store's timeout.
    async fn check_availability(&self) -> Availability {
        let ctx = self.ctx();
        match tokio::time::timeout(self.conn.timeout, self.conn.probe(&ctx)).await {
            Ok(Ok(())) => Availability::up(),
            Ok(Err(reason)) => Availability::down(reason),
            Err(_) => Availability::down(crate::client::reason(&ctx.timed_out())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(config: VaultConfig) -> Result<VaultStore> {
        VaultStore::new(StoreId::new("v").unwrap(), config)
    }

    #[test]
    fn bad_settings_are_config_errors_without_secrets() {
        let ok = || VaultConfig::new("http://127.0.0.1:8200").token(SecretValue::from("tok-S3CRET"));
        assert!(store(ok()).is_ok());
        for bad in [
            VaultConfig::new("not a url"),
            VaultConfig::new("ftp://host"),
            ok().mount(""),
            ok().mount("a//b"),
            ok().prefix("a b"),
            ok().timeout(std::time::Duration::ZERO),
            ok().ca_cert("/nonexistent/ca.pem"),
            VaultConfig::new("http://h").token(SecretValue::from("tok-S3CRET\n")),
            VaultConfig::new("http://h").approle("a//b", "role", SecretValue::from("tok-S3CRET")),
        ] {
            let shown = format!("{bad:?}");
            let err = store(bad).expect_err(&shown);
            assert!(matches!(err, Error::Config { .. }), "{err:?}");
            assert!(!format!("{err} {err:?}").contains("S3CRET"), "{err:?}");
        }
    }

    #[test]
    fn https_with_ca_file_or_skip_verify_builds() {
        let dir = std::env::temp_dir().join(temp_name());
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        assert!(store(VaultConfig::new("https://vault.example:8200").ca_cert(&empty)).is_err());
        assert!(store(VaultConfig::new("https://vault.example:8200").skip_verify(true)).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn temp_name() -> String {
        format!("credstore-vault-test-{}", std::process::id())
    }

    #[test]
    fn paths_namespaces_and_escapes() {
        let root = store(VaultConfig::new("http://h:1").prefix("/apps/x/")).unwrap();
        let k = CredentialKey::new("..").unwrap();
        assert_eq!(root.secret_path(&k), "secret/apps/x/~..");
        assert!(root.with_namespace("t1/.").is_err(), "a namespace never climbs or stays put");
        assert!(root.with_namespace("t1/..").is_err());
        let ns = root.with_namespace("t1/p.1").unwrap();
        assert_eq!(ns.secret_path(&CredentialKey::new("db").unwrap()), "secret/apps/x/t1/p.1/db");
        assert_eq!(ns.id(), root.id());
        assert_eq!(ns.kind(), StoreKind::Vault);
        assert!(root.with_namespace("a//b").is_err());
        assert!(root.with_namespace("").is_err());
        let top = store(VaultConfig::new("http://h:1").mount("kv/team")).unwrap();
        assert_eq!(top.secret_path(&CredentialKey::new("k").unwrap()), "kv/team/k");
    }
}
