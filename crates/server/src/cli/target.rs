//! Which store the data commands (`get`, `set`, `ls`, `rm`, `run`) use,
//! and the operations they need on it, the same through a store opened in
//! the process or through a running server.
//!
//! - `--store ID` (default `sqlite-default`, the embedded store): a store of
//!   the config file, opened as `stores`, `migrate` and the rotations open
//!   it ([`stores::open_one`]: the same settings, paths and keys as
//!   `credstore serve`, each call bounded by `store_timeout_ms`, no cache).
//!   With `--tenant T --project P` the commands read and write that
//!   project's namespace, `T/P`, the one the Credential Stores API uses for
//!   `/manage/tenants/T/projects/P/…` ([`project_namespace`]), so a value
//!   set here is the value the API returns; without them, the store's root
//!   namespace (as `migrate` without them).
//! - `--uri URI`: a store opened from a URI with the schemes of this build
//!   (`credstore::open_with`), its relative paths from the current
//!   directory, each call bounded by `--timeout`; `--tenant`/`--project` as
//!   for `--store`.
//! - `--server URL`: the store `--store ID` of a running server, through
//!   the Credential Stores API ([`super::client`]), with the bearer token in
//!   `CREDSTORE_TOKEN`; `--tenant` and `--project` are then required (they
//!   are in every path).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use credstore_core::layers::TimeoutLayer;
use credstore_core::{
    CredentialKey, CredentialStore, CredentialStoreExt, ListCursor, ListOptions, Metadata, SecretValue,
    SetOptions, StoreExt, MAX_BATCH_KEYS,
};

use super::client::{Endpoint, Remote};
use super::entry::{Entry, Written};
use super::exit::{Exit, Failure};
use super::Context;
use crate::config::SQLITE_DEFAULT_ID;
use crate::ids::project_namespace;
use crate::runtime::stores;

/// The environment variable that holds the bearer token of `--server`.
pub const TOKEN_ENV: &str = "CREDSTORE_TOKEN";

/// The store a data command uses.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// The store's id: in the config file (`sqlite-default`, the embedded
    /// encrypted store, when not given), or on the server with --server.
    #[arg(long, value_name = "ID", env = "CREDSTORE_STORE", default_value = SQLITE_DEFAULT_ID)]
    pub store: String,
    /// A store opened from a URI instead of the config file, e.g.
    /// `sqlite:app.db?master_key_env=APP_KEY` (schemes: memory:, sqlite:,
    /// vault+https:, aws-sm:, postgres:, keychain:, as this build has them);
    /// secrets only by `*_env` / `*_file` parameters.
    #[arg(long, value_name = "URI", env = "CREDSTORE_URI", conflicts_with_all = ["server", "store"])]
    pub uri: Option<String>,
    /// A running credstore server to go through, e.g. `https://credstore.internal:8443`;
    /// the bearer token is read from CREDSTORE_TOKEN.
    #[arg(long, value_name = "URL", env = "CREDSTORE_SERVER")]
    pub server: Option<String>,
    /// The tenant whose project to use (with --project; required with --server).
    #[arg(long, value_name = "ID", env = "CREDSTORE_TENANT", requires = "project")]
    pub tenant: Option<String>,
    /// The project to use (with --tenant): the namespace the API uses for it.
    #[arg(long, value_name = "ID", env = "CREDSTORE_PROJECT", requires = "tenant")]
    pub project: Option<String>,
    /// With --server: trust only the CA certificates of this PEM file (default: the system's).
    #[arg(long, value_name = "PATH", requires = "server")]
    pub ca_cert: Option<PathBuf>,
    /// With --server: allow plain http to an address that is not loopback
    /// (the token then crosses the network unencrypted).
    #[arg(long, requires = "server")]
    pub allow_plaintext: bool,
    /// With --server: how long each request may take (connecting included);
    /// with --uri, each store call.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// The store of a data command.
pub(crate) enum Target {
    /// Opened in this process, on the namespace the arguments chose.
    Local(Arc<dyn CredentialStore>),
    /// A store of a running server.
    Remote(Remote),
}

fn timestamp(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// A credential key from an argument: core's id rule, and (as in every
/// path of the API) not `.` or `..`.
///
/// # Errors
/// [`Exit::Usage`] naming the rule.
pub(crate) fn parse_key(text: &str) -> Result<CredentialKey, Failure> {
    if text == "." || text == ".." {
        return Err(Failure::usage(format!("invalid credential key {text:?}: must not be '.' or '..'")));
    }
    CredentialKey::new(text).map_err(Failure::from)
}

impl Target {
    /// Opens the store `args` name.
    ///
    /// # Errors
    /// [`Exit::Usage`] for bad ids or a missing token or project with
    /// `--server`, [`Exit::NotFound`] for an unknown store id, else
    /// [`Exit::Failure`] (the config file, the store cannot be opened).
    pub(crate) async fn open(args: &StoreArgs, ctx: &Context<'_>) -> Result<Self, Failure> {
        let scope = match (&args.tenant, &args.project) {
            (Some(t), Some(p)) => Some((t.as_str(), p.as_str())),
            _ => None,
        };
        let namespace = scope.map(|(t, p)| project_namespace(t, p)).transpose().map_err(|e| {
            Failure::usage(e.to_string().replace("tenantId", "--tenant").replace("projectId", "--project"))
        })?;
        if let Some(server) = &args.server {
            let Some((tenant, project)) = scope else {
                return Err(Failure::usage(
                    "--server needs --tenant and --project (or CREDSTORE_TENANT and CREDSTORE_PROJECT): the API's \
                     paths name them",
                ));
            };
            crate::ids::check_scope_id("store id", &args.store).map_err(|e| Failure::usage(e.to_string()))?;
            let token = ctx.env(TOKEN_ENV).ok_or_else(|| {
                Failure::usage(format!(
                    "--server needs the bearer token in the environment variable {TOKEN_ENV}"
                ))
            })?;
            let token = zeroize::Zeroizing::new(token);
            let endpoint = Endpoint {
                server,
                ca_cert: args.ca_cert.as_deref(),
                timeout: args.timeout,
                allow_plaintext: args.allow_plaintext,
            };
            let remote = Remote::new(&endpoint, tenant, project, &args.store, &token)?;
            return Ok(Self::Remote(remote));
        }
        if let Some(uri) = &args.uri {
            // As the config file's paths and `*_env` settings: relative to
            // the current directory, variables through the copy taken at
            // start (a secret variable is no longer in the process).
            ctx.start_logging();
            let base = std::env::current_dir()
                .map_err(|e| Failure::error(format!("cannot read the current directory: {e}")))?;
            let config = ctx.config_context(base);
            let store = credstore::open_with(&credstore::schemes(), uri, &config).await?;
            let store = store.with_layer(TimeoutLayer::new(args.timeout));
            let store = match &namespace {
                Some(ns) => store.with_namespace(ns)?,
                None => store,
            };
            return Ok(Self::Local(store));
        }
        let settings = ctx.settings()?;
        if settings.store(&args.store).is_none() {
            let ids: Vec<String> = settings.stores.iter().map(|s| s.id().to_string()).collect();
            return Err(Failure::new(
                Exit::NotFound,
                format!("no store with id '{}'; the stores are: {}", args.store, ids.join(", ")),
            ));
        }
        // As `serve`: the data directory of the embedded stores is made
        // owner-only before a store creates files in it.
        if args.store == SQLITE_DEFAULT_ID {
            stores::prepare_data_dir(&settings.data_dir).map_err(|e| {
                Failure::error(format!(
                    "cannot create the data directory {}: {e}",
                    settings.data_dir.display()
                ))
            })?;
        }
        let store = stores::open_one(&settings, &args.store).await.map_err(Failure::error)?;
        let store = match &namespace {
            Some(ns) => store.with_namespace(ns)?,
            None => store,
        };
        Ok(Self::Local(store))
    }

    /// The store's id.
    pub(crate) fn store_id(&self) -> &str {
        match self {
            Self::Local(s) => s.id().as_str(),
            Self::Remote(r) => r.store(),
        }
    }

    /// `key` with its metadata, version and times, and its value when
    /// `value` is set; `None` when missing (or expired).
    pub(crate) async fn read(&self, key: &CredentialKey, value: bool) -> Result<Option<Entry>, Failure> {
        match self {
            Self::Remote(r) => r.read(key, value).await,
            Self::Local(s) => Ok(s.get(key).await?.map(|c| Entry {
                key: c.key.as_str().to_owned(),
                store_id: s.id().as_str().to_owned(),
                text: c.value.is_text(),
                value: value.then_some(c.value),
                version: c.version.as_str().to_owned(),
                created_at: timestamp(c.created_at),
                updated_at: timestamp(c.updated_at),
                expires_at: c.expires_at.map(timestamp),
                metadata: c.metadata.into_map(),
            })),
        }
    }

    /// The values of `keys` in their order, `None` for a missing one: the
    /// store's batch read ([`CredentialStore::get_many`]), by batches of
    /// [`MAX_BATCH_KEYS`].
    pub(crate) async fn values(&self, keys: &[CredentialKey]) -> Result<Vec<Option<SecretValue>>, Failure> {
        match self {
            Self::Remote(r) => r.values(keys).await,
            Self::Local(s) => {
                let mut out = Vec::with_capacity(keys.len());
                for batch in keys.chunks(MAX_BATCH_KEYS) {
                    out.extend(s.get_many(batch).await?.into_iter().map(|c| c.map(|c| c.value)));
                }
                Ok(out)
            }
        }
    }

    /// Writes `key`.
    pub(crate) async fn write(
        &self,
        key: &CredentialKey,
        value: &SecretValue,
        metadata: &Metadata,
        options: &SetOptions,
    ) -> Result<Written, Failure> {
        match self {
            Self::Remote(r) => r.write(key, value, metadata, options).await,
            Self::Local(s) => {
                let out = s.set_opts(key, value, metadata, options).await?;
                Ok(Written {
                    created: out.created,
                    version: out.version.as_str().to_owned(),
                    created_at: timestamp(out.created_at),
                    updated_at: Some(timestamp(out.updated_at)),
                })
            }
        }
    }

    /// One page of at most `limit` keys under `prefix`, after `cursor`; the
    /// cursor of the next page.
    pub(crate) async fn list(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), Failure> {
        match self {
            Self::Remote(r) => r.list(prefix, cursor, limit).await,
            Self::Local(s) => {
                let cursor = cursor.map(ListCursor::parse).transpose()?;
                let opts = ListOptions::new().with_prefix(prefix)?.with_limit(limit)?.with_cursor(cursor);
                let page = s.list(&opts).await?;
                Ok((
                    page.keys.into_iter().map(|k| k.as_str().to_owned()).collect(),
                    page.next_cursor.map(|c| c.to_string()),
                ))
            }
        }
    }

    /// Deletes `key`; whether it existed.
    pub(crate) async fn delete(&self, key: &CredentialKey) -> Result<bool, Failure> {
        match self {
            Self::Remote(r) => r.delete(key).await,
            Self::Local(s) => Ok(s.delete(key).await?),
        }
    }
}
