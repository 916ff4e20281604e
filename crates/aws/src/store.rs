//! [`AwsStore`]: the `CredentialStore` implementation.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
use aws_sdk_secretsmanager::primitives::DateTime;
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, Tag};
use aws_sdk_secretsmanager::Client;
use credstore_core::{
    async_trait, check_value, validate_namespace, Availability, Capabilities, Credential, CredentialKey,
    CredentialStore, Error, ListOptions, ListPage, Metadata, Result, SecretValue, SetOutcome, StoreId,
    StoreKind,
};

use crate::errors::{translate, Failure, Kind, Target};
use crate::layout::{self, Envelope, Names, EMPTY_PLACEHOLDER};
use crate::{AwsConfig, DeletionPolicy};

/// The staging label of a secret's current version.
const CURRENT: &str = "AWSCURRENT";
/// ListSecrets' largest page.
const LIST_PAGE: i32 = 100;
/// A bound on ListSecrets pages in one listing, against a service that keeps
/// answering with a next token.
const MAX_LIST_PAGES: usize = 100_000;
/// Describe/read rounds before `get` gives up on a secret that keeps changing.
const READ_ROUNDS: usize = 6;
/// Rounds of `set` (describe, then create, restore or update) before it gives
/// up on a key that keeps changing under it.
const WRITE_ROUNDS: usize = 40;
/// How long `set` waits for a secret being deleted to go (the service deletes
/// asynchronously) before it gives up.
const WRITE_PATIENCE: Duration = Duration::from_secs(30);

/// The settings every handle of one store shares.
struct Shared {
    client: Client,
    target: Target,
    deletion: DeletionPolicy,
    kms_key_id: Option<String>,
    tags: Vec<(String, String)>,
}

/// A credential store on AWS Secrets Manager. See the crate docs for the
/// layout and the behaviour of each operation.
///
/// Cloning is cheap and shares the SDK client; so does
/// [`AwsStore::with_namespace`].
#[derive(Clone)]
pub struct AwsStore {
    id: StoreId,
    shared: Arc<Shared>,
    names: Names,
}

/// What `DescribeSecret` found under a name.
enum State {
    Missing,
    /// Scheduled for deletion (or being deleted).
    Deleted,
    Live(Box<DescribeSecretOutput>),
}

impl AwsStore {
    /// A store from explicit settings only: `config` must give a region and
    /// [`AwsConfig::static_credentials`]. Nothing is read from the
    /// environment, profiles or instance metadata, and nothing is sent until
    /// the first operation.
    ///
    /// # Errors
    /// [`Error::Config`] when the region or the credentials are missing, or a
    /// setting is invalid (prefix, region name, endpoint URL, tags, recovery
    /// window, timeout, attempts).
    pub fn new(id: StoreId, config: AwsConfig) -> Result<Self> {
        config.validate(&id)?;
        let (client, target) = crate::client::explicit(&id, &config)?;
        Ok(Self::assemble(id, config, client, target))
    }

    /// A store configured by the standard AWS chain (environment variables,
    /// shared config and credentials files, SSO, web identity, container and
    /// instance metadata), as `aws-config` loads it; every setting given in
    /// `config` takes precedence over the chain's.
    ///
    /// # Behavior
    /// Loading reads files and the environment; credentials are resolved
    /// lazily, at the first request (so a broken chain shows up in
    /// [`CredentialStore::check_availability`], not here).
    ///
    /// # Errors
    /// [`Error::Config`] when no region can be found, or a setting is
    /// invalid.
    pub async fn from_env(id: StoreId, config: AwsConfig) -> Result<Self> {
        config.validate(&id)?;
        let (client, target) = crate::client::from_env(&id, &config).await?;
        Ok(Self::assemble(id, config, client, target))
    }

    fn assemble(id: StoreId, config: AwsConfig, client: Client, target: Target) -> Self {
        let names = Names::new(&config.prefix);
        let shared = Shared {
            client,
            target,
            deletion: config.deletion,
            kms_key_id: config.kms_key_id,
            tags: config.tags,
        };
        Self { id, shared: Arc::new(shared), names }
    }

    /// A handle whose keys live under `{prefix}/{ns}/`: same id, kind and
    /// SDK client, separate keys.
    ///
    /// # Behavior
    /// Two handles with different namespaces never see each other's keys
    /// (keys hold no `/`, so a namespace's secrets are never keys of its
    /// parent); the same namespace twice sees the same data.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `namespace` when `ns` is not one or
    /// more id-valid segments joined by `/`, or the whole prefix would pass
    /// 256 bytes.
    pub fn with_namespace(&self, ns: &str) -> Result<Self> {
        validate_namespace(ns)?;
        let prefix = self.names.child(ns);
        layout::check_prefix(&prefix, "namespace")?;
        Ok(Self { id: self.id.clone(), shared: self.shared.clone(), names: Names::new(&prefix) })
    }

    /// The secret name prefix of this handle, without the trailing `/`; empty
    /// for none.
    pub fn prefix(&self) -> &str {
        self.names.prefix()
    }

    /// The secret name that holds `key`: `{prefix}/{key}`, or `key` without a
    /// prefix.
    pub fn secret_name(&self, key: &CredentialKey) -> String {
        self.names.name(key)
    }

    fn client(&self) -> &Client {
        &self.shared.client
    }

    fn target(&self) -> &Target {
        &self.shared.target
    }

    fn fail<E>(
        &self,
        operation: &'static str,
        carries_value: bool,
        err: aws_sdk_secretsmanager::error::SdkError<E, aws_sdk_secretsmanager::config::http::HttpResponse>,
    ) -> Failure
    where
        E: aws_sdk_secretsmanager::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        translate(self.target(), operation, carries_value, err)
    }

    async fn describe(&self, name: &str) -> Result<State> {
        match self.client().describe_secret().secret_id(name).send().await {
            Ok(out) if out.deleted_date().is_some() => Ok(State::Deleted),
            Ok(out) => Ok(State::Live(Box::new(out))),
            Err(e) => {
                let f = self.fail("DescribeSecret", false, e);
                if f.is(Kind::NotFound) {
                    Ok(State::Missing)
                } else {
                    Err(f.error)
                }
            }
        }
    }

    fn credential(
        &self,
        key: &CredentialKey,
        desc: &DescribeSecretOutput,
        envelope: Option<&Envelope>,
        ours: bool,
        mut out: GetSecretValueOutput,
    ) -> Result<Credential> {
        let name = self.names.name(key);
        let value = if ours && envelope.is_some_and(|e| e.e) {
            SecretValue::default()
        } else if let Some(s) = out.secret_string.take() {
            SecretValue::new(s)
        } else if let Some(blob) = out.secret_binary.take() {
            SecretValue::from_utf8(blob.into_inner()).map_err(|_| {
                Error::backend(&self.id, format!("secret {name:?} holds binary data that is not UTF-8 text"))
            })?
        } else {
            return Err(Error::backend(&self.id, format!("secret {name:?} has a version without a value")));
        };
        let created_at = match envelope {
            Some(env) => env.created_at(),
            None => desc.created_date().and_then(to_system_time).unwrap_or(SystemTime::UNIX_EPOCH),
        };
        let updated_at = match envelope {
            Some(env) if ours => env.updated_at(),
            _ => out
                .created_date()
                .or(desc.last_changed_date())
                .and_then(to_system_time)
                .unwrap_or(created_at)
                .max(created_at),
        };
        let metadata = envelope.map(|e| e.m.clone()).unwrap_or_default();
        Ok(Credential { key: key.clone(), value, metadata, created_at, updated_at })
    }

    async fn create(
        &self,
        name: &str,
        value: &SecretValue,
        envelope: &Envelope,
    ) -> std::result::Result<(), Failure> {
        let mut req = self
            .client()
            .create_secret()
            .name(name)
            .secret_string(stored_string(value))
            .description(envelope.encode())
            .client_request_token(&envelope.v);
        if let Some(kms) = &self.shared.kms_key_id {
            req = req.kms_key_id(kms);
        }
        for (k, v) in &self.shared.tags {
            req = req.tags(Tag::builder().key(k).value(v).build());
        }
        req.send().await.map(drop).map_err(|e| self.fail("CreateSecret", true, e))
    }

    async fn update(
        &self,
        name: &str,
        value: &SecretValue,
        envelope: &Envelope,
    ) -> std::result::Result<(), Failure> {
        let mut req = self
            .client()
            .update_secret()
            .secret_id(name)
            .secret_string(stored_string(value))
            .description(envelope.encode())
            .client_request_token(&envelope.v);
        if let Some(kms) = &self.shared.kms_key_id {
            req = req.kms_key_id(kms);
        }
        req.send().await.map(drop).map_err(|e| self.fail("UpdateSecret", true, e))
    }

    async fn delete_name(&self, name: &str) -> std::result::Result<(), Failure> {
        let req = self.client().delete_secret().secret_id(name);
        let req = match self.shared.deletion {
            DeletionPolicy::Immediate => req.force_delete_without_recovery(true),
            DeletionPolicy::RecoveryWindow(days) => req.recovery_window_in_days(i64::from(days)),
        };
        req.send().await.map(drop).map_err(|e| self.fail("DeleteSecret", false, e))
    }

    fn name_filter(&self, key_prefix: &str) -> Option<Filter> {
        let value = format!("{}{key_prefix}", self.names.name_start());
        (!value.is_empty()).then(|| Filter::builder().key(FilterNameStringType::Name).values(value).build())
    }

    async fn probe(&self) -> Result<()> {
        let mut req = self.client().list_secrets().max_results(1);
        if let Some(filter) = self.name_filter("") {
            req = req.filters(filter);
        }
        req.send().await.map(drop).map_err(|e| self.fail("ListSecrets", false, e).error)
    }
}

/// What `SecretString` holds for `value`.
fn stored_string(value: &SecretValue) -> String {
    if value.is_empty() {
        EMPTY_PLACEHOLDER.to_owned()
    } else {
        value.expose_secret().to_owned()
    }
}

fn current_version(stages: Option<&HashMap<String, Vec<String>>>) -> Option<&str> {
    stages?.iter().find(|(_, labels)| labels.iter().any(|l| l == CURRENT)).map(|(id, _)| id.as_str())
}

fn to_system_time(t: &DateTime) -> Option<SystemTime> {
    SystemTime::try_from(*t).ok()
}

fn reason_of(error: Error) -> String {
    match error {
        Error::Unavailable { reason, .. }
        | Error::PermissionDenied { reason, .. }
        | Error::Config { reason, .. } => reason,
        other => other.to_string(),
    }
}

impl fmt::Debug for AwsStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsStore")
            .field("id", &self.id)
            .field("endpoint", &self.shared.target.endpoint)
            .field("region", &self.shared.target.region)
            .field("prefix", &self.names.prefix())
            .field("deletion", &self.shared.deletion)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl CredentialStore for AwsStore {
    fn id(&self) -> &StoreId {
        &self.id
    }

    fn kind(&self) -> StoreKind {
        StoreKind::AwsSecretsManager
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::full()
    }

    /// # Behavior
    /// `DescribeSecret`, then `GetSecretValue` of the version the description
    /// names, so the value, metadata and timestamps always come from one
    /// `set`. A secret scheduled for deletion, or without a current version,
    /// is absent. A value written by another tool (`PutSecretValue`) wins:
    /// it is returned with the last metadata this crate wrote.
    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        let name = self.names.name(key);
        for round in 0..READ_ROUNDS {
            let State::Live(desc) = self.describe(&name).await? else { return Ok(None) };
            let Some(current) = current_version(desc.version_ids_to_stages()) else { return Ok(None) };
            let envelope = Envelope::decode(&self.id, &name, desc.description())?;
            // Read the version our description was written with, unless the
            // current version is someone else's; in the last round, read the
            // current one whatever happens.
            let ours = envelope.is_some() && layout::is_our_version(current) && round + 1 < READ_ROUNDS;
            let version = match (&envelope, ours) {
                (Some(env), true) => env.v.clone(),
                _ => current.to_owned(),
            };
            let ours = envelope.as_ref().is_some_and(|env| env.v == version);
            match self.client().get_secret_value().secret_id(&name).version_id(&version).send().await {
                Ok(out) => return self.credential(key, &desc, envelope.as_ref(), ours, out).map(Some),
                Err(e) => {
                    let f = self.fail("GetSecretValue", false, e);
                    if !(f.is(Kind::NotFound) || f.is(Kind::InvalidRequest)) {
                        return Err(f.error);
                    }
                    // Deleted or overwritten since DescribeSecret: look again.
                    tracing::debug!(store = %self.id, key = %key, round, "secret changed while read; retrying");
                }
            }
        }
        Err(Error::Conflict {
            store: self.id.clone(),
            reason: format!("key '{key}' kept changing while it was read"),
        })
    }

    /// # Behavior
    /// `DescribeSecret`, then `CreateSecret` for a new key or `UpdateSecret`
    /// (value and description in one call) for an existing one. A create
    /// that loses a race to another writer falls back to the update; a
    /// secret scheduled for deletion is restored (`RestoreSecret`) and
    /// overwritten as a new key; a secret still being purged after an
    /// immediate delete is waited for (up to 30 s).
    async fn set(&self, key: &CredentialKey, value: &SecretValue, metadata: &Metadata) -> Result<SetOutcome> {
        check_value(value)?;
        let name = self.names.name(key);
        let started = Instant::now();
        let mut restored = false;
        let mut pause = Duration::from_millis(50);
        let mut last: Option<Error> = None;
        for _ in 0..WRITE_ROUNDS {
            if started.elapsed() > WRITE_PATIENCE {
                break;
            }
            let wait = match self.describe(&name).await? {
                State::Missing => {
                    let now = SystemTime::now();
                    let env = Envelope::new(metadata, now, now, layout::new_version_id(), value.is_empty());
                    match self.create(&name, value, &env).await {
                        Ok(()) => return Ok(SetOutcome { created: true, created_at: now, updated_at: now }),
                        // Another writer created it first: update it instead.
                        Err(f) if f.is(Kind::Exists) => false,
                        // Real AWS: a secret being purged after an immediate delete.
                        Err(f) if f.is(Kind::InvalidRequest) => {
                            last = Some(f.error);
                            true
                        }
                        Err(f) => return Err(f.error),
                    }
                }
                State::Deleted => match self.client().restore_secret().secret_id(&name).send().await {
                    Ok(_) => {
                        tracing::debug!(store = %self.id, key = %key, "restored a secret scheduled for deletion to set it again");
                        restored = true;
                        false
                    }
                    Err(e) => {
                        let f = self.fail("RestoreSecret", false, e);
                        match f.kind {
                            Kind::NotFound => false,
                            Kind::InvalidRequest => {
                                last = Some(f.error);
                                true
                            }
                            _ => return Err(f.error),
                        }
                    }
                },
                State::Live(desc) => {
                    let old = Envelope::decode(&self.id, &name, desc.description()).ok().flatten();
                    let had_value = current_version(desc.version_ids_to_stages()).is_some();
                    let created = restored || !had_value;
                    let now = SystemTime::now();
                    let created_at = match (&old, created) {
                        (Some(env), false) => env.created_at(),
                        (None, false) => desc.created_date().and_then(to_system_time).unwrap_or(now).min(now),
                        (_, true) => now,
                    };
                    // Strictly after the previous write, even if the clock stepped back.
                    let after_previous = old
                        .as_ref()
                        .filter(|_| !created)
                        .map_or(created_at, |env| env.updated_at() + Duration::from_nanos(1));
                    let updated_at = now.max(after_previous).max(created_at);
                    let env = Envelope::new(
                        metadata,
                        created_at,
                        updated_at,
                        layout::new_version_id(),
                        value.is_empty(),
                    );
                    match self.update(&name, value, &env).await {
                        Ok(()) => return Ok(SetOutcome { created, created_at, updated_at }),
                        // Deleted meanwhile: start over.
                        Err(f) if f.is(Kind::NotFound) || f.is(Kind::InvalidRequest) => false,
                        Err(f) => {
                            if restored {
                                // Best effort: do not leave a restored old value behind.
                                if let Err(undo) = self.delete_name(&name).await {
                                    tracing::warn!(store = %self.id, key = %key, error = %undo.error, "could not re-delete a restored secret after a failed set");
                                }
                            }
                            return Err(f.error);
                        }
                    }
                }
            };
            if wait {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
        Err(last.unwrap_or_else(|| Error::Conflict {
            store: self.id.clone(),
            reason: format!("key '{key}' kept changing while it was written"),
        }))
    }

    /// # Behavior
    /// One `DescribeSecret`; the value is not read. A secret scheduled for
    /// deletion, or without a current version, is absent.
    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        match self.describe(&self.names.name(key)).await? {
            State::Live(desc) => Ok(current_version(desc.version_ids_to_stages()).is_some()),
            State::Missing | State::Deleted => Ok(false),
        }
    }

    /// # Behavior
    /// `DescribeSecret`, then `DeleteSecret` as the [`DeletionPolicy`] says.
    /// Returns false for a missing secret or one already scheduled for
    /// deletion, and when another deleter got there first.
    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        let name = self.names.name(key);
        let State::Live(desc) = self.describe(&name).await? else { return Ok(false) };
        let existed = current_version(desc.version_ids_to_stages()).is_some();
        match self.delete_name(&name).await {
            Ok(()) => Ok(existed),
            Err(f) if f.is(Kind::NotFound) || f.is(Kind::InvalidRequest) => Ok(false),
            Err(f) => Err(f.error),
        }
    }

    /// # Behavior
    /// Pages through `ListSecrets` (100 a page, `NextToken`) with a name
    /// filter on the store prefix and the key prefix, skipping secrets
    /// scheduled for deletion, without a current version, or outside this
    /// namespace; sorts the keys and cuts the page at the cursor.
    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let filter = self.name_filter(options.prefix());
        let mut keys = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let mut req = self.client().list_secrets().max_results(LIST_PAGE).include_planned_deletion(false);
            if let Some(f) = &filter {
                req = req.filters(f.clone());
            }
            if let Some(token) = next.take() {
                req = req.next_token(token);
            }
            let out = req.send().await.map_err(|e| self.fail("ListSecrets", false, e).error)?;
            for entry in out.secret_list() {
                if entry.deleted_date().is_some() {
                    continue;
                }
                if entry.secret_versions_to_stages().is_some()
                    && current_version(entry.secret_versions_to_stages()).is_none()
                {
                    continue;
                }
                if let Some(key) = entry.name().and_then(|n| self.names.key_of(n)) {
                    if options.admits(key.as_str()) {
                        keys.push(key);
                    }
                }
            }
            match out.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_owned()),
                _ => {
                    keys.sort();
                    keys.dedup();
                    return Ok(options.page_from_sorted(keys));
                }
            }
        }
        Err(Error::backend(&self.id, "ListSecrets kept returning a next token"))
    }

    /// # Behavior
    /// One `ListSecrets` of at most one entry, filtered on the prefix, under
    /// the store's timeout. The reason names what failed: the endpoint that
    /// cannot be reached or did not answer in time, invalid credentials,
    /// access denied, an unknown region.
    async fn check_availability(&self) -> Availability {
        let limit = self.target().timeout + Duration::from_secs(1);
        match tokio::time::timeout(limit, self.probe()).await {
            Ok(Ok(())) => Availability::up(),
            Ok(Err(e)) => Availability::down(reason_of(e)),
            Err(_) => Availability::down(format!(
                "no answer from AWS Secrets Manager at {} within {:?}",
                self.target().endpoint,
                self.target().timeout
            )),
        }
    }
}
