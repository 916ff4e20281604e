//! [`VaultStore`]: the `CredentialStore` implementation.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use credstore_core::{
    async_trait, Availability, Capabilities, Credential, CredentialKey, CredentialStore, Error, ListOptions,
    ListPage, Namespace, PurgeTarget, Result, Retention, SetMode, SetOutcome, StoreId, StoreInfo, Version,
    VersionInfo, VersionListOptions, VersionPage, VersionState, WriteRequest,
};
use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use vaultrs::api::kv2::requests::{ReadSecretRequest, SetSecretMetadataRequest, SetSecretRequestOptions};
use vaultrs::api::kv2::responses::{ReadSecretMetadataResponse, ReadSecretResponse, SecretVersionMetadata};
use vaultrs::kv2;

use crate::client::{connect, AuthStats, Connection, Retry};
use crate::errors::{Ctx, Failure};
use crate::last_seen::Current;
use crate::layout::{
    created_at_of, created_from_metadata, decode_key, encode_key, expires_at_of, from_wire, is_delete_marker,
    is_new_credential, kept_versions, key_state, live_version, metadata_of, parse_time, parse_version,
    read_version_live, run_start, same_write, scrub, undestroyed_version, validate_path, version_text,
    within_retention, DeleteMarker, Kept, KeyState, Standing, Wire,
};
use crate::{VaultConfig, DEFAULT_MAX_VERSIONS};

/// How many keys `list` checks for soft deletion at once.
const LIST_CONCURRENCY: usize = 16;
/// How many times an upsert reads the key and writes with `cas` before it
/// writes without (only concurrent writers make it try again).
const UPSERT_CAS_ATTEMPTS: u32 = 3;
/// How many times a create-only write tries `cas` against a key that is
/// absent but has a deleted current version another tool left.
const CREATE_ATTEMPTS: u32 = 3;
/// How many times `delete` writes its marker with `cas` against a key that
/// concurrent writers keep changing.
const DELETE_ATTEMPTS: u32 = 3;
/// How many versions' data `list_versions` reads at once.
const VERSION_READ_CONCURRENCY: usize = 8;

/// A credential store in a Vault or OpenBao KV v2 mount. See the crate docs
/// for the layout.
///
/// Cloning is cheap and gives another handle on the same client, token and
/// namespace.
#[derive(Clone)]
pub struct VaultStore {
    /// Id, kind, capabilities and the namespace of this handle, below `base`.
    info: StoreInfo,
    conn: Arc<Connection>,
    /// The configured path prefix inside the mount, no slash at either end;
    /// empty for the top of the mount.
    base: Arc<str>,
    /// Versions kept per key ([`VaultConfig::max_versions`]).
    max_versions: u32,
}

impl VaultStore {
    /// A store over the server and path `config` names, on the root
    /// namespace.
    ///
    /// # Behavior
    /// No request is sent: a server that is down does not stop the store
    /// from being built, and [`CredentialStore::check_availability`] reports
    /// it. An AppRole store logs in on its first request.
    ///
    /// # Errors
    /// [`Error::Config`] when the address is not an `http(s)` URL or is
    /// plain `http://` to a host that is not loopback without
    /// [`VaultConfig::allow_insecure_http`] (the message names the address,
    /// and `VAULT_ADDR` when it came from there), the mount,
    /// path prefix or AppRole mount is not a valid path (segments of
    /// `[a-zA-Z0-9-_.]` joined by `/`, none `.` or `..`), the token or Vault
    /// namespace cannot be sent in a header, the timeout is zero, or the CA
    /// file cannot be read. Messages never contain the token or secret id.
    pub fn new(id: StoreId, config: VaultConfig) -> Result<Self> {
        let config_error = |reason: String| Error::config(&id, reason);
        let mount = validate_path(&config.mount)
            .map_err(|e| config_error(format!("mount {:?}: {e}", config.mount)))?;
        if mount.is_empty() {
            return Err(config_error("the mount is empty".into()));
        }
        let base = validate_path(&config.prefix)
            .map_err(|e| config_error(format!("path prefix {:?}: {e}", config.prefix)))?;
        if config.max_versions == 0 {
            return Err(config_error(
                "max_versions is 0; it must be at least 1 (the current version)".into(),
            ));
        }
        let conn = connect(&config, mount).map_err(config_error)?;
        let capabilities = Capabilities::full()
            .with_versions(true)
            .with_recover_deleted(true)
            .with_expiry(true)
            .with_retention(Retention::versions(config.max_versions));
        let info = StoreInfo::new(id, crate::KIND, capabilities).with_clock(config.clock.clone());
        Ok(Self { info, conn: Arc::new(conn), base: Arc::from(base), max_versions: config.max_versions })
    }

    /// The path of `key` as the Vault CLI names it,
    /// `{mount}/{prefix}/{namespace}/{key}`: `bao kv get -field=value <path>`
    /// prints a text value.
    pub fn secret_path(&self, key: &CredentialKey) -> String {
        format!("{}/{}", self.conn.mount, self.path(key))
    }

    /// How often this store (and its namespace handles) logged in with
    /// AppRole and renewed its token. Always zero with a fixed token.
    pub fn auth_stats(&self) -> AuthStats {
        self.conn.stats()
    }

    /// The handle's folder inside the mount: prefix and namespace, no slash
    /// at either end; empty for the top of the mount.
    fn folder(&self) -> String {
        match (self.base.is_empty(), self.info.namespace().is_root()) {
            (true, true) => String::new(),
            (false, true) => self.base.to_string(),
            (true, false) => self.info.namespace().as_str().to_owned(),
            (false, false) => format!("{}/{}", self.base, self.info.namespace()),
        }
    }

    /// The key's path inside the mount.
    fn path(&self, key: &CredentialKey) -> String {
        let segment = encode_key(key.as_str());
        let folder = self.folder();
        if folder.is_empty() {
            segment.into_owned()
        } else {
            format!("{folder}/{segment}")
        }
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            store: self.info.id(),
            address: &self.conn.address,
            mount: &self.conn.mount,
            timeout: self.conn.timeout,
        }
    }

    /// Runs one operation under the store's timeout and translates its
    /// failure; `key` names the credential of a failed precondition.
    async fn run<T>(
        &self,
        op: &'static str,
        key: Option<&CredentialKey>,
        fut: impl Future<Output = Result<T, Failure>>,
    ) -> Result<T> {
        let ctx = self.ctx();
        let result =
            tokio::time::timeout(self.conn.timeout, fut).await.unwrap_or_else(|_| Err(ctx.timed_out()));
        result.map_err(|failure| {
            tracing::debug!(store = %self.info.id(), op, ?failure, "vault operation failed");
            ctx.error(failure, key)
        })
    }

    /// The key's KV v2 metadata: its current version number and live state
    /// (`created_at` from the run of live versions). One request.
    async fn current(&self, ctx: &Ctx<'_>, path: &str) -> Result<Current, Failure> {
        let mount = self.conn.mount.as_str();
        match self.conn.call(ctx, |s| async move { kv2::read_metadata(&s.client, mount, path).await }).await {
            Ok(meta) => {
                let state = key_state(&meta, SystemTime::now()).map_err(Failure::other)?;
                Ok(Current { number: meta.current_version, state })
            }
            Err(Failure::NotFound) => Ok(Current::ABSENT),
            Err(f) => Err(f),
        }
    }

    /// The key's KV v2 metadata, `None` when it has none. One request.
    async fn metadata(
        &self,
        ctx: &Ctx<'_>,
        path: &str,
    ) -> Result<Option<ReadSecretMetadataResponse>, Failure> {
        let mount = self.conn.mount.as_str();
        found(self.conn.call(ctx, |s| async move { kv2::read_metadata(&s.client, mount, path).await }).await)
    }

    /// The data and version metadata of version `number` (`?version=N`),
    /// `None` when KV v2 answers 404 (never written, pruned, soft-deleted
    /// or destroyed). One request.
    async fn read_at(
        &self,
        ctx: &Ctx<'_>,
        path: &str,
        number: u64,
    ) -> Result<Option<ReadSecretResponse>, Failure> {
        let mount = self.conn.mount.as_str();
        let read = self.conn.call(ctx, |s| async move {
            let endpoint =
                ReadSecretRequest { mount: mount.to_owned(), path: path.to_owned(), version: Some(number) };
            vaultrs::api::exec_with_result(&s.client, endpoint).await
        });
        found(read.await)
    }

    /// A listed version's entry: its data read for metadata and expiry
    /// (the value zeroized unread), its state from where it stands. `None`
    /// when it went (pruned, deleted) since the metadata was read, or is a
    /// delete marker.
    async fn version_info(
        &self,
        ctx: &Ctx<'_>,
        path: &str,
        kept: Kept,
    ) -> Result<Option<VersionInfo>, Failure> {
        let Some(ReadSecretResponse { data, metadata }) = self.read_at(ctx, path, kept.number).await? else {
            return Ok(None);
        };
        let same = parse_time(&metadata.created_time) == Some(kept.written_at);
        if !same || is_delete_marker(&data) {
            scrub(data);
            return Ok(None);
        }
        let read = expires_at_of(&data).and_then(|e| metadata_of(&data).map(|m| (e, m)));
        scrub(data);
        let (expires_at, meta) = read.map_err(|why| {
            Failure::other(format!(
                "version {} of secret '{path}' is not a credstore credential: {why}",
                kept.number
            ))
        })?;
        let state = if expires_at.is_some_and(|t| t <= self.info.now()) {
            VersionState::Expired
        } else {
            match kept.standing {
                Standing::Newest => VersionState::Current,
                Standing::BeforeDelete => VersionState::Deleted,
                Standing::Earlier => VersionState::Previous,
            }
        };
        Ok(Some(
            VersionInfo::new(kept.version(), state, kept.written_at)
                .with_expires_at(expires_at)
                .with_metadata(meta),
        ))
    }

    /// Soft-deletes version `number` (a delete marker), best effort: the
    /// marker alone already makes the key read as missing here.
    async fn soft_delete(&self, ctx: &Ctx<'_>, path: &str, number: u64) {
        let mount = self.conn.mount.as_str();
        let deleted = self
            .conn
            .call(ctx, |s| async move { kv2::delete_versions(&s.client, mount, path, vec![number]).await });
        if let Err(failure) = deleted.await {
            tracing::warn!(store = %self.info.id(), path, ?failure, "the delete marker stays live");
        }
    }

    /// Destroys one version, unless it is the live current one
    /// (`PreconditionFailed`): whether it was a kept version.
    async fn destroy(
        &self,
        ctx: &Ctx<'_>,
        path: &str,
        meta: &ReadSecretMetadataResponse,
        version: &Version,
    ) -> Result<bool, Failure> {
        let Some((number, nanos)) = parse_version(version) else { return Ok(false) };
        // Held (live or soft-deleted) and of this life of the key.
        if !undestroyed_version(meta, number).is_some_and(|t| same_write(t, nanos)) {
            return Ok(false);
        }
        let now = SystemTime::now();
        let kept =
            within_retention(meta, number, self.max_versions) && live_version(meta, number, now).is_some();
        if kept && number == meta.current_version && self.head(ctx, path).await?.as_ref() == Some(version) {
            return Err(Failure::Precondition(format!(
                "version {version} is the current version; write a new one first, then purge it"
            )));
        }
        let mount = self.conn.mount.as_str();
        self.conn
            .call(ctx, |s| async move { kv2::destroy_versions(&s.client, mount, path, vec![number]).await })
            .await?;
        Ok(kept)
    }

    /// Reads the key's current version, data and version metadata in one
    /// request, and records what it saw. `None` when the key is missing
    /// (never written, deleted, or its current version soft-deleted or
    /// destroyed). `created_at` is the data's own when it records one, the
    /// version's `created_time` for version 1; otherwise (data written by
    /// credstore 0.1 or another tool over an earlier version) a second
    /// request reads the key's metadata for it.
    async fn read_current(&self, ctx: &Ctx<'_>, path: &str) -> Result<Option<(KeyState, Value)>, Failure> {
        let mount = self.conn.mount.as_str();
        let read = self.conn.call(ctx, |s| async move {
            let endpoint =
                ReadSecretRequest { mount: mount.to_owned(), path: path.to_owned(), version: None };
            vaultrs::api::exec_with_result(&s.client, endpoint).await
        });
        let ReadSecretResponse { data, metadata } = match read.await {
            Ok(found) => found,
            Err(Failure::NotFound) => {
                self.conn.seen.put(path, Current::ABSENT);
                return Ok(None);
            }
            Err(f) => return Err(f),
        };
        let now = SystemTime::now();
        let expires_at = match self.live_data(&data, &metadata, now) {
            Ok(Some(expires_at)) => expires_at,
            Ok(None) => {
                scrub(data);
                self.conn.seen.put(path, Current { number: metadata.version, state: None });
                return Ok(None);
            }
            Err(f) => {
                scrub(data);
                return Err(f);
            }
        };
        let version = metadata.version;
        let updated_at = match parse_time(&metadata.created_time) {
            Some(t) => t,
            None => {
                scrub(data);
                return Err(Failure::other("unreadable created_time in vault's answer"));
            }
        };
        let created_at = match created_at_of(&data) {
            _ if is_new_credential(&data) => updated_at,
            Some(t) => t,
            None if version == 1 => updated_at,
            None => {
                let read =
                    self.conn.call(ctx, |s| async move { kv2::read_metadata(&s.client, mount, path).await });
                match read.await {
                    Ok(meta) => created_from_metadata(&meta, version, now).map_err(Failure::other)?,
                    // Deleted between the two reads.
                    Err(Failure::NotFound) => {
                        scrub(data);
                        self.conn.seen.put(path, Current::ABSENT);
                        return Ok(None);
                    }
                    Err(f) => {
                        scrub(data);
                        return Err(f);
                    }
                }
            }
        };
        let state = KeyState { version, created_at: created_at.min(updated_at), updated_at, expires_at };
        self.conn.seen.put(path, Current::live(state));
        Ok(Some((state, data)))
    }

    /// Whether a version's data, as a data read answered it, is a live
    /// credential: `Ok(Some(expires_at))` when it is, `Ok(None)` when it is
    /// soft-deleted or destroyed, a delete marker, or expired by the
    /// store's clock. The caller scrubs the data.
    fn live_data(
        &self,
        data: &Value,
        metadata: &SecretVersionMetadata,
        now: SystemTime,
    ) -> Result<Option<Option<SystemTime>>, Failure> {
        if !read_version_live(metadata, now) || is_delete_marker(data) {
            return Ok(None);
        }
        let expires_at = expires_at_of(data).map_err(Failure::other)?;
        if expires_at.is_some_and(|t| t <= self.info.now()) {
            return Ok(None);
        }
        Ok(Some(expires_at))
    }

    /// One data read of the key's current version: its version when it is
    /// live (not deleted, not a delete marker, not expired), the data
    /// zeroized unread. Records what it saw as a hint for upserts.
    async fn head(&self, ctx: &Ctx<'_>, path: &str) -> Result<Option<Version>, Failure> {
        let mount = self.conn.mount.as_str();
        let read = self.conn.call(ctx, |s| async move {
            let endpoint =
                ReadSecretRequest { mount: mount.to_owned(), path: path.to_owned(), version: None };
            vaultrs::api::exec_with_result(&s.client, endpoint).await
        });
        match read.await {
            Ok(ReadSecretResponse { data, metadata }) => {
                let live = self.live_data(&data, &metadata, SystemTime::now());
                let created_at = if is_new_credential(&data) { None } else { created_at_of(&data) };
                let new = is_new_credential(&data);
                scrub(data);
                let Some(expires_at) = live? else {
                    self.conn.seen.put(path, Current { number: metadata.version, state: None });
                    return Ok(None);
                };
                let at = parse_time(&metadata.created_time)
                    .ok_or_else(|| Failure::other("unreadable created_time in vault's answer"))?;
                // A hint for a later upsert, when the data says when the
                // credential began (no second request for it here).
                let created_at = created_at.or((metadata.version == 1 || new).then_some(at));
                if let Some(created_at) = created_at {
                    let state = KeyState {
                        version: metadata.version,
                        created_at: created_at.min(at),
                        updated_at: at,
                        expires_at,
                    };
                    self.conn.seen.put(path, Current::live(state));
                }
                Ok(Some(version_text(metadata.version, at)))
            }
            Err(Failure::NotFound) => {
                self.conn.seen.put(path, Current::ABSENT);
                Ok(None)
            }
            Err(f) => Err(f),
        }
    }

    /// The key's current version number and live state, for a write's
    /// `cas`: one data read (a live version, a delete marker or an expired
    /// one answer with their number), and the key's metadata when that
    /// read finds nothing (its current version soft-deleted: a number the
    /// data read does not tell).
    async fn current_for_write(&self, ctx: &Ctx<'_>, path: &str) -> Result<Current, Failure> {
        let seen = self.observe(ctx, path).await?;
        if seen.state.is_some() || seen.number != 0 {
            return Ok(seen);
        }
        let meta = self.current(ctx, path).await?;
        Ok(Current { number: meta.number, state: None })
    }

    /// [`VaultStore::read_current`] without the data, which is zeroized.
    async fn observe(&self, ctx: &Ctx<'_>, path: &str) -> Result<Current, Failure> {
        Ok(match self.read_current(ctx, path).await? {
            Some((state, data)) => {
                scrub(data);
                Current::live(state)
            }
            None => Current::ABSENT,
        })
    }

    /// Writes a new version. With `cas`, only if the key's current version
    /// is still that one (0: the key has no version). `retry` says which
    /// failures are sent again: a conditional write's retry could meet its
    /// own first attempt and report a mismatch for a write that succeeded.
    async fn write(
        &self,
        ctx: &Ctx<'_>,
        path: &str,
        wire: &(impl Serialize + Sync),
        cas: Option<u64>,
        retry: Retry,
    ) -> Result<(u64, SystemTime), Failure> {
        let mount = self.conn.mount.as_str();
        let written: SecretVersionMetadata = match cas {
            None => {
                self.conn.call(ctx, |s| async move { kv2::set(&s.client, mount, path, wire).await }).await?
            }
            Some(cas) => {
                let cas = u32::try_from(cas).map_err(|_| {
                    Failure::other(format!("version {cas} is beyond what check-and-set takes"))
                })?;
                self.conn
                    .call_with(ctx, retry, |s| async move {
                        let options = SetSecretRequestOptions { cas };
                        kv2::set_with_options(&s.client, mount, path, wire, options).await
                    })
                    .await?
            }
        };
        let created = parse_time(&written.created_time)
            .ok_or_else(|| Failure::other("unreadable created_time in vault's answer"))?;
        if written.version == 1 && self.max_versions != DEFAULT_MAX_VERSIONS {
            self.keep_versions(ctx, path).await;
        }
        Ok((written.version, created))
    }

    /// Sets the key's KV v2 `max_versions` to the store's, after the write
    /// that made its first version, when the store's is not KV v2's default
    /// (10): one request per key, when it is new.
    /// A failure is logged, not returned (the write is done): KV v2 then
    /// prunes by the mount's setting, and reads still show no version
    /// beyond the store's.
    async fn keep_versions(&self, ctx: &Ctx<'_>, path: &str) {
        let mount = self.conn.mount.as_str();
        let max_versions = u64::from(self.max_versions);
        let set = self
            .conn
            .call(ctx, |s| async move {
                let endpoint = SetSecretMetadataRequest {
                    mount: mount.to_owned(),
                    path: path.to_owned(),
                    max_versions: Some(max_versions),
                    ..Default::default()
                };
                vaultrs::api::exec_with_empty(&s.client, endpoint).await
            })
            .await;
        if let Err(failure) = set {
            tracing::warn!(store = %self.info.id(), path, ?failure, "could not set the key's max_versions");
        }
    }

    /// Records the outcome of a write as the key's current state.
    fn wrote(&self, path: &str, out: &SetOutcome, number: u64, expires_at: Option<SystemTime>) {
        let state =
            KeyState { version: number, created_at: out.created_at, updated_at: out.updated_at, expires_at };
        self.conn.seen.put(path, Current::live(state));
    }

    /// [`SetMode::Upsert`]: writes with `cas` at the version this
    /// connection last saw (reading the key first when it saw none within
    /// [`SEEN_TTL`](crate::last_seen::SEEN_TTL)), carrying the credential's
    /// `created_at`, so that `created` and `created_at` are exact. A
    /// concurrent writer makes it read and try again; after
    /// [`UPSERT_CAS_ATTEMPTS`] it writes without `cas`, as an overwrite.
    async fn upsert(
        &self,
        ctx: &Ctx<'_>,
        path: &str,
        wire: &mut Wire<'_>,
        expires_at: Option<SystemTime>,
    ) -> Result<SetOutcome, Failure> {
        let mut current = match self.conn.seen.get(path) {
            Some(seen) => seen.as_of(self.info.now()),
            None => self.observe(ctx, path).await?,
        };
        for attempt in 1..=UPSERT_CAS_ATTEMPTS {
            wire.set_created_at(current.state.map(|s| s.created_at));
            // A retry that meets its own first attempt only writes once more.
            match self.write(ctx, path, wire, Some(current.number), Retry::Always).await {
                Ok((number, at)) => {
                    let out = outcome(current.state, number, at);
                    self.wrote(path, &out, number, expires_at);
                    return Ok(out);
                }
                Err(Failure::CasMismatch) if attempt < UPSERT_CAS_ATTEMPTS => {
                    // Missing, perhaps over a soft-deleted version: its number.
                    current = self.current_for_write(ctx, path).await?;
                }
                Err(Failure::CasMismatch) => break,
                Err(f) => {
                    self.conn.seen.forget(path);
                    return Err(f);
                }
            }
        }
        // Still contended: the key was written since the last read, so this
        // write overwrites it (a mount that requires cas cannot take it).
        self.conn.seen.forget(path);
        let before = self.observe(ctx, path).await?.state;
        wire.set_created_at(before.map(|s| s.created_at));
        let (number, at) = match self.write(ctx, path, wire, None, Retry::Always).await {
            Err(Failure::CasRequired) => return Err(Failure::CasMismatch),
            other => other?,
        };
        let mut out = outcome(before, number, at);
        out.created = number == 1;
        if out.created {
            out.created_at = at;
        }
        self.wrote(path, &out, number, expires_at);
        Ok(out)
    }

    /// [`SetMode::Create`]: writes with `cas=0`, which KV v2 accepts only
    /// while the key has no version. A key whose current version another
    /// tool deleted counts as missing: its number is the `cas` to use.
    async fn create_only(
        &self,
        ctx: &Ctx<'_>,
        path: &str,
        wire: &mut Wire<'_>,
        expires_at: Option<SystemTime>,
    ) -> Result<SetOutcome, Failure> {
        wire.set_created_at(None);
        // A key this connection saw deleted or expired: its number.
        let now = self.info.now();
        let mut cas = match self.conn.seen.get(path).map(|seen| seen.as_of(now)) {
            Some(Current { number, state: None }) => number,
            _ => 0,
        };
        for _ in 0..CREATE_ATTEMPTS {
            match self.write(ctx, path, wire, Some(cas), Retry::IfNotApplied).await {
                Ok((number, at)) => {
                    let out = outcome(None, number, at);
                    self.wrote(path, &out, number, expires_at);
                    return Ok(out);
                }
                Err(Failure::CasMismatch) => {
                    let current = self.current_for_write(ctx, path).await?;
                    if current.state.is_some() {
                        return Err(Failure::Precondition("the key exists".into()));
                    }
                    cas = current.number;
                }
                Err(f) => return Err(f),
            }
        }
        Err(Failure::Precondition("the key was written and deleted concurrently; it may exist now".into()))
    }

    /// [`SetMode::Replace`]: reads the key's current version, checks it is
    /// `expected` (number and time of the write), then writes with `cas`
    /// set to that number, carrying `created_at`.
    async fn replace_at(
        &self,
        ctx: &Ctx<'_>,
        path: &str,
        wire: &mut Wire<'_>,
        expected: &Version,
        expires_at: Option<SystemTime>,
    ) -> Result<SetOutcome, Failure> {
        let Some(state) = self.observe(ctx, path).await?.state else {
            return Err(Failure::Precondition("the key does not exist".into()));
        };
        if state.version_text() != *expected {
            return Err(Failure::Precondition(format!(
                "the current version is {}, not {expected}",
                state.version_text()
            )));
        }
        wire.set_created_at(Some(state.created_at));
        match self.write(ctx, path, wire, Some(state.version), Retry::IfNotApplied).await {
            Ok((number, at)) => {
                let out = outcome(Some(state), number, at);
                self.wrote(path, &out, number, expires_at);
                Ok(out)
            }
            Err(Failure::CasMismatch) => {
                self.conn.seen.forget(path);
                Err(Failure::Precondition(format!(
                    "the key was written concurrently after version {expected}"
                )))
            }
            Err(f) => {
                self.conn.seen.forget(path);
                Err(f)
            }
        }
    }
}

/// The outcome of writing version `number` at `at` over `before`.
fn outcome(before: Option<KeyState>, number: u64, at: SystemTime) -> SetOutcome {
    let (created, created_at) = match before {
        Some(b) => (false, b.created_at.min(at)),
        None => (true, at),
    };
    SetOutcome { created, version: version_text(number, at), created_at, updated_at: at }
}

impl fmt::Debug for VaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultStore")
            .field("id", self.info.id())
            .field("address", &self.conn.address)
            .field("mount", &self.conn.mount)
            .field("prefix", &self.base)
            .field("namespace", self.info.namespace())
            .field("auth", &self.conn.auth_method())
            .finish_non_exhaustive()
    }
}

/// A read's answer, with KV v2's 404 as `None`.
fn found<T>(read: Result<T, Failure>) -> Result<Option<T>, Failure> {
    match read {
        Ok(answer) => Ok(Some(answer)),
        Err(Failure::NotFound) => Ok(None),
        Err(f) => Err(f),
    }
}

#[async_trait]
impl CredentialStore for VaultStore {
    /// Everything: durable, list, metadata, binary values, create-only
    /// (`cas=0`) and replace-if-version (`cas=N`), can be unavailable; and
    /// versions, recovery after a delete and expiry, with a retention of
    /// [`VaultConfig::max_versions`] versions and no age limit.
    fn info(&self) -> &StoreInfo {
        &self.info
    }

    /// A handle on `{prefix}/{this namespace}/{namespace}`, sharing this
    /// store's client and token; no I/O. The root namespace gives a handle
    /// on this handle's own namespace.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`] when the joined namespace is longer than
    /// [`MAX_NAMESPACE_LEN`](credstore_core::MAX_NAMESPACE_LEN).
    fn with_namespace(&self, namespace: &Namespace) -> Result<Arc<dyn CredentialStore>> {
        Ok(Arc::new(Self { info: self.info.join(namespace)?, ..self.clone() }))
    }

    /// One request: the data and version metadata of the key's current
    /// version (a second one, for the key's metadata, only for data that
    /// records no `created_at`: see the crate docs).
    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        let path = self.path(key);
        self.run("get", None, async {
            let ctx = self.ctx();
            self.conn.ensure_kv2(&ctx).await?;
            let Some((state, data)) = self.read_current(&ctx, &path).await? else { return Ok(None) };
            let (value, metadata) = from_wire(data).map_err(|why| {
                Failure::other(format!("secret '{path}' is not a credstore credential: {why}"))
            })?;
            Ok(Some(Credential {
                key: key.clone(),
                value,
                metadata,
                version: state.version_text(),
                created_at: state.created_at,
                updated_at: state.updated_at,
                expires_at: state.expires_at,
            }))
        })
        .await
    }

    /// Writes a new version holding value and metadata in one request, so
    /// readers and concurrent writers never see a value with another write's
    /// metadata. Every mode writes with KV v2's `cas`; see the crate docs.
    async fn write(&self, request: &WriteRequest<'_>) -> Result<SetOutcome> {
        let (key, value, metadata) = (request.key(), request.value(), request.metadata());
        let path = self.path(key);
        let mut wire = Wire::new(value, metadata);
        let expires_at = request.expires_at();
        wire.set_expires_at(expires_at);
        self.run("set", Some(key), async {
            let ctx = self.ctx();
            self.conn.ensure_kv2(&ctx).await?;
            match request.mode() {
                SetMode::Upsert => self.upsert(&ctx, &path, &mut wire, expires_at).await,
                SetMode::Create => self.create_only(&ctx, &path, &mut wire, expires_at).await,
                SetMode::Replace(expected) => {
                    self.replace_at(&ctx, &path, &mut wire, expected, expires_at).await
                }
                other => Err(Failure::other(format!("write mode {other:?} is not supported"))),
            }
        })
        .await
    }

    /// One request, as [`CredentialStore::version`].
    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        Ok(self.version(key).await?.is_some())
    }

    /// One request: the key's current version (its data is zeroized
    /// unread).
    async fn version(&self, key: &CredentialKey) -> Result<Option<Version>> {
        let path = self.path(key);
        self.run("version", None, async {
            let ctx = self.ctx();
            self.conn.ensure_kv2(&ctx).await?;
            self.head(&ctx, &path).await
        })
        .await
    }

    /// A recoverable delete: writes a delete marker over the current
    /// version with `cas` (so a concurrent write is never deleted unseen),
    /// then soft-deletes the marker, so that the key reads as missing here
    /// and in `bao kv get`, and its last version stays readable as
    /// [`VersionState::Deleted`]. Three requests: a read (did it exist?),
    /// the marker, its soft delete. See the crate docs.
    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        let path = self.path(key);
        self.run("delete", None, async {
            let ctx = self.ctx();
            self.conn.ensure_kv2(&ctx).await?;
            let path = path.as_str();
            for _ in 0..DELETE_ATTEMPTS {
                let Some(state) = self.observe(&ctx, path).await?.state else { return Ok(false) };
                let marker = DeleteMarker::at(SystemTime::now());
                match self.write(&ctx, path, &marker, Some(state.version), Retry::IfNotApplied).await {
                    Ok((number, _)) => {
                        self.conn.seen.put(path, Current { number, state: None });
                        self.soft_delete(&ctx, path, number).await;
                        return Ok(true);
                    }
                    Err(Failure::CasMismatch) => continue,
                    Err(f) => {
                        self.conn.seen.forget(path);
                        return Err(f);
                    }
                }
            }
            Err(Failure::Unavailable("the key kept changing under the delete; try again".into(), None))
        })
        .await
    }

    /// Reads the version's data (`?version=N`) and the key's metadata, at
    /// once: two requests. A version of an earlier life of the key (same
    /// number, another time), one past the store's `max_versions`, one
    /// soft-deleted or destroyed, and a delete marker are `None`.
    async fn get_version(&self, key: &CredentialKey, version: &Version) -> Result<Option<Credential>> {
        let path = self.path(key);
        let Some((number, nanos)) = parse_version(version) else { return Ok(None) };
        self.run("get_version", None, async {
            let ctx = self.ctx();
            self.conn.ensure_kv2(&ctx).await?;
            let (meta, read) = tokio::join!(self.metadata(&ctx, &path), self.read_at(&ctx, &path, number));
            let (meta, read) = match (meta, read) {
                (Ok(Some(meta)), Ok(Some(read))) => (meta, read),
                (meta, read) => {
                    let failed = meta.err().or(read.as_ref().err().cloned());
                    if let Ok(Some(read)) = read {
                        scrub(read.data);
                    }
                    return failed.map_or(Ok(None), Err);
                }
            };
            let ReadSecretResponse { data, metadata } = read;
            let now = SystemTime::now();
            let written_at = parse_time(&metadata.created_time);
            let kept = within_retention(&meta, number, self.max_versions)
                && read_version_live(&metadata, now)
                && !is_delete_marker(&data)
                && written_at.is_some_and(|t| same_write(t, nanos));
            let Some(written_at) = written_at.filter(|_| kept) else {
                scrub(data);
                return Ok(None);
            };
            let expires_at = match expires_at_of(&data) {
                Ok(t) => t,
                Err(why) => {
                    scrub(data);
                    return Err(Failure::other(why));
                }
            };
            let created_at = if is_new_credential(&data) { Some(written_at) } else { created_at_of(&data) };
            let created_at = match created_at {
                Some(t) => t,
                None => match run_start(&meta, number, now) {
                    Ok((t, _)) => t,
                    Err(why) => {
                        scrub(data);
                        return Err(Failure::other(why));
                    }
                },
            };
            let (value, metadata) = from_wire(data).map_err(|why| {
                Failure::other(format!("secret '{path}' is not a credstore credential: {why}"))
            })?;
            Ok(Some(Credential {
                key: key.clone(),
                value,
                metadata,
                version: version_text(number, written_at),
                created_at: created_at.min(written_at),
                updated_at: written_at,
                expires_at,
            }))
        })
        .await
    }

    /// The key's metadata (one request), then the data of each version on
    /// the page (one request each, 8 at a time) for its metadata and
    /// expiry; values are zeroized unread.
    async fn list_versions(&self, key: &CredentialKey, options: &VersionListOptions) -> Result<VersionPage> {
        let path = self.path(key);
        self.run("list_versions", None, async {
            let ctx = self.ctx();
            self.conn.ensure_kv2(&ctx).await?;
            let Some(meta) = self.metadata(&ctx, &path).await? else { return Ok(VersionPage::default()) };
            let kept = kept_versions(&meta, self.max_versions, SystemTime::now()).map_err(Failure::other)?;
            // The page's versions by the metadata alone, then their data.
            let listed: Vec<VersionInfo> = kept
                .iter()
                .map(|k| VersionInfo::new(k.version(), VersionState::Previous, k.written_at))
                .collect();
            let page = options.page_from_newest(listed);
            let by_version = |v: &Version| kept.iter().find(|k| k.version() == *v).copied();
            let page_kept: Vec<Kept> = page.versions.iter().filter_map(|v| by_version(&v.version)).collect();
            let ctx = &ctx;
            let path = path.as_str();
            let mut reads = futures::stream::iter(page_kept)
                .map(|k| async move { self.version_info(ctx, path, k).await })
                .buffered(VERSION_READ_CONCURRENCY);
            let mut versions = Vec::with_capacity(page.versions.len());
            while let Some(info) = reads.next().await {
                versions.extend(info?);
            }
            Ok(VersionPage { versions, next_cursor: page.next_cursor })
        })
        .await
    }

    /// `Key`: deletes the key's metadata, and so every version (two
    /// requests: a metadata read, did it exist?, then the delete).
    /// `Version`: destroys that version (KV v2 `destroy`, which removes its
    /// data from storage) after a metadata read; the current version is
    /// refused unless it has expired.
    async fn purge(&self, key: &CredentialKey, target: &PurgeTarget) -> Result<bool> {
        let path = self.path(key);
        let precondition = match target {
            PurgeTarget::Key => None,
            PurgeTarget::Version(v) => Some(v),
            other => {
                return Err(Error::backend(self.info.id(), format!("purge of {other:?} is not supported")))
            }
        };
        self.run("purge", Some(key), async {
            let ctx = self.ctx();
            self.conn.ensure_kv2(&ctx).await?;
            let (mount, path) = (self.conn.mount.as_str(), path.as_str());
            let Some(meta) = self.metadata(&ctx, path).await? else {
                self.conn.seen.put(path, Current::ABSENT);
                return Ok(false);
            };
            match precondition {
                None => {
                    let deleted = self
                        .conn
                        .call(&ctx, |s| async move { kv2::delete_metadata(&s.client, mount, path).await })
                        .await;
                    self.conn.seen.forget(path);
                    match deleted {
                        Ok(()) | Err(Failure::NotFound) => {
                            self.conn.seen.put(path, Current::ABSENT);
                            Ok(!meta.versions.is_empty())
                        }
                        Err(f) => Err(f),
                    }
                }
                Some(version) => self.destroy(&ctx, path, &meta, version).await,
            }
        })
        .await
    }

    /// One LIST of the handle's folder, then the metadata of the candidates
    /// in key order until the page is full, to leave out soft-deleted keys.
    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        self.run("list", None, async {
            let ctx = self.ctx();
            self.conn.ensure_kv2(&ctx).await?;
            let mount = self.conn.mount.as_str();
            let folder = self.folder();
            let folder = if folder.is_empty() { folder } else { format!("{folder}/") };
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
                .filter_map(|n| decode_key(n))
                .filter(|n| options.admits(n))
                .filter_map(|n| CredentialKey::new(n).ok())
                .collect();
            candidates.sort_unstable();
            candidates.dedup();
            let ctx = &ctx;
            let mut checked = futures::stream::iter(candidates)
                .map(|key| async move {
                    let path = self.path(&key);
                    self.head(ctx, &path).await.map(|v| v.is_some().then_some(key))
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

/// Opening a store from its settings lives here, beside the store: the
/// settings (in `config`) know nothing of the store they open.
#[cfg(feature = "serde")]
impl crate::VaultSettings {
    /// Builds the store `id` these settings describe; no I/O beyond reading
    /// the login's secret (the store connects on first use).
    ///
    /// # Errors
    /// Those of [`VaultSettings::to_config`](crate::VaultSettings::to_config) and of
    /// [`crate::VaultStore::new`] (an invalid address, mount or prefix, a
    /// token that is not text).
    pub async fn open(
        self,
        id: credstore_core::StoreId,
        ctx: &credstore_core::config::ConfigContext,
    ) -> Result<crate::VaultStore> {
        let config = self.to_config(&id, ctx)?;
        crate::VaultStore::new(id, config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credstore_core::{CredentialStoreExt, Metadata, SecretValue};

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
            ok().max_versions(0),
            ok().ca_cert("/nonexistent/ca.pem"),
            VaultConfig::new("http://127.0.0.1").token(SecretValue::from("tok-S3CRET\n")),
            VaultConfig::new("http://127.0.0.1").approle("a//b", "role", SecretValue::from("tok-S3CRET")),
            VaultConfig::new("http://127.0.0.1").token(SecretValue::from(&b"tok-S3CRET\xff"[..])),
            VaultConfig::new("http://127.0.0.1").approle(
                "approle",
                "role",
                SecretValue::from(&b"S3CRET\xff"[..]),
            ),
            VaultConfig::new("http://127.0.0.1").jwt("", "/run/token"),
            VaultConfig::new("http://127.0.0.1").jwt("role", ""),
            VaultConfig::new("http://127.0.0.1").jwt("role", "/run/token").jwt_mount("a//b"),
            VaultConfig::new("http://127.0.0.1").jwt("role", "/run/token").jwt_mount(""),
        ] {
            let shown = format!("{bad:?}");
            let err = store(bad).expect_err(&shown);
            assert!(matches!(err, Error::Config { .. }), "{err:?}");
            assert!(!format!("{err} {err:?}").contains("S3CRET"), "{err:?}");
        }
    }

    #[test]
    fn plain_http_is_refused_unless_the_host_is_loopback_or_it_is_allowed() {
        let with_token = |address: &str| VaultConfig::new(address).token(SecretValue::from("tok-S3CRET"));
        for address in [
            "http://vault.internal:8200",
            "http://10.0.0.5:8200",
            "http://[2001:db8::1]:8200",
            "http://localhost.example.com:8200",
            "http://127.0.0.1.nip.io:8200",
            "HTTP://vault.internal",
        ] {
            let err = store(with_token(address)).expect_err(address);
            assert!(
                matches!(&err, Error::Config { store, .. } if store.as_str() == "v"),
                "{address}: {err:?}"
            );
            let text = format!("{err}");
            assert!(text.contains("address") && text.contains("allow_insecure_http"), "{address}: {text}");
            assert!(!text.contains("S3CRET"), "{text}");
            assert!(store(with_token(address).allow_insecure_http(true)).is_ok(), "{address} allowed");
        }
        for address in [
            "http://127.0.0.1:8200",
            "http://127.5.6.7:1",
            "http://[::1]:8200",
            "http://localhost:8200",
            "http://LocalHost",
        ] {
            assert!(store(with_token(address)).is_ok(), "{address} is loopback");
        }
        assert!(store(VaultConfig::new("https://vault.internal:8200").skip_verify(true)).is_ok());
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

    fn debug_of(store: &dyn CredentialStore) -> String {
        format!("{store:?}")
    }

    #[test]
    fn paths_namespaces_and_escapes() {
        let root = store(VaultConfig::new("http://127.0.0.1:1").prefix("/apps/x/")).unwrap();
        let k = CredentialKey::new("..").unwrap();
        assert_eq!(root.secret_path(&k), "secret/apps/x/~..");
        assert!(root.namespace().is_root());
        let ns = |s: &str| Namespace::new(s).unwrap();
        let t1 = root.with_namespace(&ns("t1/p.1")).unwrap();
        assert_eq!(t1.namespace().as_str(), "t1/p.1");
        assert_eq!(t1.id(), root.id());
        assert_eq!(*t1.kind(), crate::KIND);
        assert!(debug_of(&*t1).contains("t1/p.1"), "{t1:?}");
        // Nested: a handle on t1/p.1 asked for env is t1/p.1/env.
        let env = t1.with_namespace(&ns("env")).unwrap();
        assert_eq!(env.namespace().as_str(), "t1/p.1/env");
        // The root gives a handle on the same namespace.
        assert_eq!(env.with_namespace(&Namespace::root()).unwrap().namespace(), env.namespace());
        let direct = VaultStore { info: root.info.in_namespace(ns("t1/p.1/env")), ..root.clone() };
        assert_eq!(direct.secret_path(&CredentialKey::new("db").unwrap()), "secret/apps/x/t1/p.1/env/db");
        assert_eq!(direct.secret_path(&k), "secret/apps/x/t1/p.1/env/~..");
        // The whole namespace is capped, before any I/O.
        let big = ns(&"x".repeat(255));
        let twice = root.with_namespace(&big).unwrap().with_namespace(&big).unwrap();
        let err = twice.with_namespace(&big).unwrap_err();
        assert!(matches!(err, Error::InvalidNamespace { .. }), "{err:?}");
        let top = store(VaultConfig::new("http://127.0.0.1:1").mount("kv/team")).unwrap();
        assert_eq!(top.secret_path(&CredentialKey::new("k").unwrap()), "kv/team/k");
        let top_ns = VaultStore { info: top.info.in_namespace(ns("t")), ..top };
        assert_eq!(top_ns.secret_path(&CredentialKey::new("k").unwrap()), "kv/team/t/k");
        assert!(store(VaultConfig::new("http://127.0.0.1:1").prefix("a/../b")).is_err());
    }

    #[tokio::test]
    async fn writes_are_checked_before_any_io() {
        // Nothing listens on port 1: any request would fail as unavailable.
        let s = store(VaultConfig::new("http://127.0.0.1:1")).unwrap();
        let k = CredentialKey::new("k").unwrap();
        let big = SecretValue::from(vec![b'x'; credstore_core::MAX_VALUE_BYTES + 1]);
        let err = s.set(&k, &big, &Metadata::new()).await.unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    }

    #[test]
    fn outcomes_follow_the_state_before() {
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(100);
        let t1 = t0 + std::time::Duration::from_secs(5);
        let fresh = outcome(None, 1, t1);
        assert!(fresh.created);
        assert_eq!((fresh.created_at, fresh.updated_at), (t1, t1));
        assert_eq!(fresh.version, version_text(1, t1));
        let before = KeyState { version: 4, created_at: t0, updated_at: t0, expires_at: None };
        let over = outcome(Some(before), 5, t1);
        assert!(!over.created);
        assert_eq!((over.created_at, over.updated_at), (t0, t1));
        assert_eq!(over.version.as_str(), "5-105000000000");
    }
}
