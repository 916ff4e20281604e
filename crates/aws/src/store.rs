//! [`AwsStore`]: the `CredentialStore` implementation.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_secretsmanager::operation::describe_secret::DescribeSecretOutput;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
use aws_sdk_secretsmanager::primitives::{Blob, DateTime};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType, Tag};
use aws_sdk_secretsmanager::Client;
use credstore_core::{
    async_trait, check_set, Availability, Capabilities, Credential, CredentialKey, CredentialStore, Error,
    ListOptions, ListPage, Metadata, Namespace, Persistence, Result, SecretValue, SetMode, SetOptions,
    SetOutcome, StoreId, StoreKind, Version,
};

use crate::errors::{translate, Failure, Kind, Target};
use crate::layout::{self, Envelope, Names, Payload, STAGED_LABEL};
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
/// Rounds of a write (describe, then create, restore or stage and move)
/// before it gives up on a key that keeps changing under it.
const WRITE_ROUNDS: usize = 200;
/// How long a write waits for a secret being deleted to go (the service
/// deletes asynchronously), or for other writers, before it gives up.
const WRITE_PATIENCE: Duration = Duration::from_secs(30);

/// The settings every handle of one store shares.
struct Shared {
    client: Client,
    target: Target,
    deletion: DeletionPolicy,
    kms_key_id: Option<String>,
    tags: Vec<(String, String)>,
    /// The configured prefix: the names of the root namespace.
    root: Names,
}

/// A credential store on AWS Secrets Manager. See the crate docs for the
/// layout and the behaviour of each operation.
///
/// Cloning is cheap and shares the SDK client; so do the handles of
/// [`CredentialStore::with_namespace`].
#[derive(Clone)]
pub struct AwsStore {
    id: StoreId,
    shared: Arc<Shared>,
    namespace: Namespace,
    names: Names,
}

/// What `DescribeSecret` found under a name.
enum State {
    Missing,
    /// Scheduled for deletion (or being deleted).
    Deleted,
    Live(Box<DescribeSecretOutput>),
}

/// How a live secret's versions and description relate: which version this
/// store reports and reads, and which one a write must move `AWSCURRENT`
/// from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    /// The version `AWSCURRENT` is on.
    current: String,
    /// The version reported and read: `current`, except while a write of
    /// this crate is between moving `AWSCURRENT` and writing its description
    /// (then the version the description names, the last complete write).
    visible: String,
    /// The description's envelope, if it is one.
    envelope: Option<Envelope>,
    /// Whether the envelope was written with `visible` (so its metadata,
    /// times and empty flag belong to the value read).
    ours: bool,
}

impl View {
    /// `None` when the secret has no current version.
    fn of(store: &StoreId, name: &str, desc: &DescribeSecretOutput) -> Result<Option<Self>> {
        let Some(current) = current_version(desc.version_ids_to_stages()) else { return Ok(None) };
        let envelope = Envelope::decode(store, name, desc.description())?;
        let (visible, ours) = match &envelope {
            Some(env) if env.v == current => (current.to_owned(), true),
            // A write of ours moved AWSCURRENT and has not written its
            // description yet: the description's version is the last
            // complete write.
            Some(env) if layout::is_our_version(current) && has_version(desc, &env.v) => {
                (env.v.clone(), true)
            }
            // A value written by another tool (console, rotation) wins.
            _ => (current.to_owned(), false),
        };
        Ok(Some(Self { current: current.to_owned(), visible, envelope, ours }))
    }

    /// Whether a write of ours is between its two steps.
    fn in_flight(&self) -> bool {
        self.visible != self.current
    }
}

fn has_version(desc: &DescribeSecretOutput, version: &str) -> bool {
    desc.version_ids_to_stages().is_some_and(|m| m.contains_key(version))
}

/// What one write is asked to do.
#[derive(Clone, Copy)]
struct Write<'a> {
    key: &'a CredentialKey,
    /// The secret name.
    name: &'a str,
    payload: &'a Payload,
    metadata: &'a Metadata,
    /// Whether the value is empty (stored as the placeholder).
    empty: bool,
    mode: &'a SetMode,
}

/// Why a write round ended without an answer.
enum Again {
    /// Look again at once: the secret changed under the write.
    Now,
    /// Wait a little first: the service or another writer is busy.
    Later(Option<Error>),
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
        let root = Names::new(&config.prefix);
        let shared = Shared {
            client,
            target,
            deletion: config.deletion,
            kms_key_id: config.kms_key_id,
            tags: config.tags,
            root: root.clone(),
        };
        Self { id, shared: Arc::new(shared), namespace: Namespace::root(), names: root }
    }

    /// The longest namespace, in bytes, that
    /// [`with_namespace`](CredentialStore::with_namespace) accepts on this
    /// store, nesting included: what is left of a secret name's
    /// [`MAX_SECRET_NAME_LEN`](crate::MAX_SECRET_NAME_LEN) (512) characters
    /// after the configured prefix, a `/`, and the longest key (255 bytes)
    /// with its `/`. 256 without a prefix; 247 with the prefix `prod/app`.
    pub fn max_namespace_len(&self) -> usize {
        layout::max_namespace_len(self.shared.root.prefix())
    }

    /// The secret name prefix of this handle (configured prefix, then
    /// namespace), without the trailing `/`; empty for none.
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

    /// How long a write of ours may sit between moving `AWSCURRENT` and
    /// writing its description before other writers take it for abandoned
    /// (its process died): past every bound its own requests have.
    fn abandoned_after(&self) -> Duration {
        self.target().timeout * 3 + Duration::from_secs(1)
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

    fn precondition(&self, key: &CredentialKey, reason: impl Into<String>) -> Error {
        Error::precondition_failed(&self.id, key, reason)
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

    /// The view of a live secret, `None` when missing, deleted or without a
    /// current version.
    async fn view(&self, name: &str) -> Result<Option<(Box<DescribeSecretOutput>, View)>> {
        let State::Live(desc) = self.describe(name).await? else { return Ok(None) };
        Ok(View::of(&self.id, name, &desc)?.map(|view| (desc, view)))
    }

    fn credential(
        &self,
        key: &CredentialKey,
        desc: &DescribeSecretOutput,
        view: &View,
        mut out: GetSecretValueOutput,
    ) -> Result<Credential> {
        let name = self.names.name(key);
        let envelope = view.envelope.as_ref();
        let value = if view.ours && envelope.is_some_and(|e| e.e) {
            SecretValue::default()
        } else if let Some(s) = out.secret_string.take() {
            SecretValue::from_text(s)
        } else if let Some(blob) = out.secret_binary.take() {
            SecretValue::from_bytes(blob.into_inner())
        } else {
            return Err(Error::backend(&self.id, format!("secret {name:?} has a version without a value")));
        };
        let version = Version::new(view.visible.as_str()).map_err(|e| {
            Error::backend(&self.id, format!("secret {name:?} has a version id that is not a version: {e}"))
        })?;
        let created_at = match envelope {
            Some(env) => env.created_at(),
            None => desc.created_date().and_then(to_system_time).unwrap_or(SystemTime::UNIX_EPOCH),
        };
        let updated_at = match envelope {
            Some(env) if view.ours => env.updated_at(),
            _ => out
                .created_date()
                .or(desc.last_changed_date())
                .and_then(to_system_time)
                .unwrap_or(created_at)
                .max(created_at),
        };
        let metadata = envelope.map(|e| e.m.clone()).unwrap_or_default();
        Ok(Credential { key: key.clone(), value, metadata, version, created_at, updated_at })
    }

    /// `CreateSecret` with value and description in one call.
    async fn create_secret(
        &self,
        name: &str,
        value: &Payload,
        envelope: &Envelope,
    ) -> std::result::Result<(), Failure> {
        let mut req = self
            .client()
            .create_secret()
            .name(name)
            .description(envelope.encode())
            .client_request_token(&envelope.v);
        req = match value {
            Payload::Text(text) => req.secret_string(text),
            Payload::Binary(bytes) => req.secret_binary(Blob::new(bytes.clone())),
        };
        if let Some(kms) = &self.shared.kms_key_id {
            req = req.kms_key_id(kms);
        }
        for (k, v) in &self.shared.tags {
            req = req.tags(Tag::builder().key(k).value(v).build());
        }
        req.send().await.map(drop).map_err(|e| self.fail("CreateSecret", true, e))
    }

    /// `UpdateSecret` with value and description: a new version that becomes
    /// `AWSCURRENT` unconditionally. Only for a secret without a current
    /// version.
    async fn update_secret(
        &self,
        name: &str,
        value: &Payload,
        envelope: &Envelope,
    ) -> std::result::Result<(), Failure> {
        let mut req = self
            .client()
            .update_secret()
            .secret_id(name)
            .description(envelope.encode())
            .client_request_token(&envelope.v);
        req = match value {
            Payload::Text(text) => req.secret_string(text),
            Payload::Binary(bytes) => req.secret_binary(Blob::new(bytes.clone())),
        };
        if let Some(kms) = &self.shared.kms_key_id {
            req = req.kms_key_id(kms);
        }
        req.send().await.map(drop).map_err(|e| self.fail("UpdateSecret", true, e))
    }

    /// `PutSecretValue` of a new version under [`STAGED_LABEL`] only:
    /// `AWSCURRENT` stays where it is.
    async fn stage(&self, name: &str, version: &str, value: &Payload) -> std::result::Result<(), Failure> {
        let mut req = self
            .client()
            .put_secret_value()
            .secret_id(name)
            .client_request_token(version)
            .version_stages(STAGED_LABEL);
        req = match value {
            Payload::Text(text) => req.secret_string(text),
            Payload::Binary(bytes) => req.secret_binary(Blob::new(bytes.clone())),
        };
        req.send().await.map(drop).map_err(|e| self.fail("PutSecretValue", true, e))
    }

    /// `UpdateSecretVersionStage` of `AWSCURRENT` from `from` to `to`, which
    /// the service refuses unless the label is still on `from`.
    async fn move_current(&self, name: &str, to: &str, from: &str) -> std::result::Result<(), Failure> {
        self.client()
            .update_secret_version_stage()
            .secret_id(name)
            .version_stage(CURRENT)
            .move_to_version_id(to)
            .remove_from_version_id(from)
            .send()
            .await
            .map(drop)
            .map_err(|e| self.fail("UpdateSecretVersionStage", false, e))
    }

    /// Takes [`STAGED_LABEL`] off `version`, best effort: a version without
    /// labels is deprecated and removed by the service in time.
    async fn unstage(&self, name: &str, version: &str) {
        let res = self
            .client()
            .update_secret_version_stage()
            .secret_id(name)
            .version_stage(STAGED_LABEL)
            .remove_from_version_id(version)
            .send()
            .await;
        if let Err(e) = res {
            let f = self.fail("UpdateSecretVersionStage", false, e);
            tracing::debug!(store = %self.id, secret = name, error = %f.error, "staged version left labelled");
        }
    }

    /// `UpdateSecret` of the description alone (no new version).
    async fn describe_as(&self, name: &str, envelope: &Envelope) -> std::result::Result<(), Failure> {
        self.client()
            .update_secret()
            .secret_id(name)
            .description(envelope.encode())
            .send()
            .await
            .map(drop)
            .map_err(|e| self.fail("UpdateSecret", false, e))
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

    /// One round of a write against a live secret with a current version:
    /// check the condition, stage the new version, move `AWSCURRENT` to it
    /// from the version seen, then write the description.
    async fn write_over(
        &self,
        write: &Write<'_>,
        desc: &DescribeSecretOutput,
        view: &View,
        restored: bool,
    ) -> std::result::Result<SetOutcome, std::result::Result<Again, Error>> {
        let Write { key, name, payload, metadata, empty, mode } = *write;
        match mode {
            SetMode::Create if !restored => return Err(Err(self.precondition(key, "the key exists"))),
            SetMode::Replace(expected) if expected.as_str() != view.visible => {
                return Err(Err(self
                    .precondition(key, format!("the current version is {}, not {expected}", view.visible))));
            }
            _ => {}
        }
        let created = restored;
        let now = SystemTime::now();
        let old = view.envelope.as_ref();
        let created_at = match (old, created) {
            (_, true) => now,
            (Some(env), false) => env.created_at(),
            (None, false) => desc.created_date().and_then(to_system_time).unwrap_or(now).min(now),
        };
        // Strictly after the previous write, even if the clock stepped back.
        let after_previous =
            old.filter(|_| !created).map_or(created_at, |env| env.updated_at() + Duration::from_nanos(1));
        let updated_at = now.max(after_previous).max(created_at);
        let version = layout::new_version_id();
        let env = Envelope::new(metadata, created_at, updated_at, version.clone(), empty);

        match self.stage(name, &version, payload).await {
            Ok(()) => {}
            // Deleted meanwhile: look again.
            Err(f) if f.is(Kind::NotFound) || f.is(Kind::InvalidRequest) => return Err(Ok(Again::Now)),
            Err(f) => return Err(Err(f.error)),
        }
        if let Err(f) = self.move_current(name, &version, &view.current).await {
            // Refused (AWSCURRENT moved on), the secret gone, or a failure:
            // look at what happened.
            let (now_current, still_staged) = match self.describe(name).await {
                Ok(State::Live(d)) => {
                    let staged = has_version(&d, &version);
                    (current_version(d.version_ids_to_stages()).map(str::to_owned), staged)
                }
                Ok(_) => (None, false),
                Err(e) => {
                    self.unstage(name, &version).await;
                    return Err(Err(e));
                }
            };
            match now_current {
                // A retried request that had gone through: the move is ours.
                Some(c) if c == version => {}
                // AWSCURRENT did not move: the move itself failed. When the
                // staged version lost its label to a later staging (and may
                // be gone), start over; otherwise it is a real failure.
                Some(c) if c == view.current => {
                    self.unstage(name, &version).await;
                    return if still_staged { Err(Err(f.error)) } else { Err(Ok(Again::Now)) };
                }
                // Another write moved AWSCURRENT first, or the key is gone:
                // the condition no longer holds.
                _ => {
                    self.unstage(name, &version).await;
                    return match mode {
                        SetMode::Replace(expected) => Err(Err(self.precondition(
                            key,
                            format!("the key was written or deleted concurrently; {expected} is no longer current"),
                        ))),
                        _ => Err(Ok(Again::Now)),
                    };
                }
            }
        }
        if let Err(f) = self.describe_as(name, &env).await {
            // Put AWSCURRENT back, so that nothing changed; if that fails
            // too, readers still see the previous write (the description
            // names it) until the next write.
            if let Err(undo) = self.move_current(name, &view.current, &version).await {
                tracing::warn!(store = %self.id, key = %key, error = %undo.error, "could not move AWSCURRENT back after a failed write");
            }
            self.unstage(name, &version).await;
            return Err(Err(f.error));
        }
        let version = Version::new(version).map_err(|e| Err(Error::backend(&self.id, e)))?;
        Ok(SetOutcome { created, version, created_at, updated_at })
    }
}

/// `AWSCURRENT`'s version, the first found if a broken service shows two.
fn current_version(stages: Option<&HashMap<String, Vec<String>>>) -> Option<&str> {
    let mut found: Vec<&str> = stages?
        .iter()
        .filter(|(_, labels)| labels.iter().any(|l| l == CURRENT))
        .map(|(id, _)| id.as_str())
        .collect();
    found.sort_unstable();
    found.first().copied()
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
            .field("namespace", &self.namespace)
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

    /// Everything, durable: create-only through `CreateSecret`,
    /// replace-if-version through `UpdateSecretVersionStage` (see the crate
    /// docs, "Writes").
    fn capabilities(&self) -> Capabilities {
        Capabilities::full().with_persistence(Persistence::Durable)
    }

    fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// # Behavior
    /// Keys of namespace `a/b` live under `{prefix}/a/b/`. No I/O.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`] when the joined namespace is longer than
    /// [`AwsStore::max_namespace_len`] (at most 256 bytes, less the
    /// configured prefix): its secret names would not fit Secrets Manager's
    /// 512 characters.
    fn with_namespace(&self, namespace: &Namespace) -> Result<Arc<dyn CredentialStore>> {
        let joined = self.namespace.join(namespace)?;
        joined.check_len(self.max_namespace_len())?;
        let names = self.shared.root.child(&joined);
        Ok(Arc::new(Self { id: self.id.clone(), shared: self.shared.clone(), namespace: joined, names }))
    }

    /// # Behavior
    /// `DescribeSecret`, then `GetSecretValue` of the version the description
    /// names (normally `AWSCURRENT`), so the value, metadata, version and
    /// timestamps always come from one write. A secret scheduled for
    /// deletion, or without a current version, is absent. A value written by
    /// another tool wins: it is returned with the last metadata this crate
    /// wrote. A binary value (`SecretBinary`) is returned as its bytes.
    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        let name = self.names.name(key);
        for round in 0..READ_ROUNDS {
            let Some((desc, view)) = self.view(&name).await? else { return Ok(None) };
            match self.client().get_secret_value().secret_id(&name).version_id(&view.visible).send().await {
                Ok(out) => return self.credential(key, &desc, &view, out).map(Some),
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
        Err(Error::conflict(&self.id, format!("key '{key}' kept changing while it was read")))
    }

    /// # Behavior
    /// - A missing key: `CreateSecret` (value and description in one call;
    ///   atomic, so of racing create-only writes exactly one wins).
    /// - An existing key: `PutSecretValue` stages the new version under the
    ///   label `credstore-staged`, `UpdateSecretVersionStage` moves
    ///   `AWSCURRENT` to it from the version just seen (refused by the
    ///   service if another write moved it first), then `UpdateSecret` writes
    ///   the description. [`SetMode::Replace`] checks the version before and
    ///   relies on the move for atomicity; [`SetMode::Upsert`] starts over
    ///   when the move is refused.
    /// - A secret scheduled for deletion is restored (`RestoreSecret`) and
    ///   overwritten as a new key; one still being purged after an immediate
    ///   delete is waited for (up to 30 s).
    ///
    /// # Errors
    /// [`Error::PreconditionFailed`] when the key exists (`Create`), or is
    /// missing or not at the given version (`Replace`); nothing is changed
    /// then (the staged version loses its label).
    async fn set_opts(
        &self,
        key: &CredentialKey,
        value: &SecretValue,
        metadata: &Metadata,
        options: &SetOptions,
    ) -> Result<SetOutcome> {
        check_set(self, value, metadata, options)?;
        let mode = &options.mode;
        let name = self.names.name(key);
        let payload = Payload::of(value);
        let empty = value.is_empty();
        let started = Instant::now();
        let patience = WRITE_PATIENCE.max(self.abandoned_after() * 2);
        // After a RestoreSecret of ours: the current version of the restored
        // secret, which this write overwrites as a new key.
        let mut restored = false;
        let mut restored_version: Option<String> = None;
        let mut pause = Duration::from_millis(20);
        let mut last: Option<Error> = None;
        // A write of ours seen between its two steps, and since when.
        let mut in_flight: Option<(View, Instant)> = None;
        for _ in 0..WRITE_ROUNDS {
            if started.elapsed() > patience {
                break;
            }
            let again = match self.describe(&name).await? {
                State::Missing => {
                    if let SetMode::Replace(_) = mode {
                        return Err(self.precondition(key, "the key does not exist"));
                    }
                    let now = SystemTime::now();
                    let version = layout::new_version_id();
                    let env = Envelope::new(metadata, now, now, version.clone(), empty);
                    match self.create_secret(&name, &payload, &env).await {
                        Ok(()) => {
                            let version = Version::new(version).map_err(|e| Error::backend(&self.id, e))?;
                            return Ok(SetOutcome {
                                created: true,
                                version,
                                created_at: now,
                                updated_at: now,
                            });
                        }
                        // Another writer created it first.
                        Err(f) if f.is(Kind::Exists) => match mode {
                            SetMode::Create => return Err(self.precondition(key, "the key exists")),
                            _ => Again::Now,
                        },
                        // Real AWS: a secret being purged after an immediate delete.
                        Err(f) if f.is(Kind::InvalidRequest) => Again::Later(Some(f.error)),
                        Err(f) => return Err(f.error),
                    }
                }
                State::Deleted => {
                    if let SetMode::Replace(_) = mode {
                        return Err(self.precondition(key, "the key does not exist"));
                    }
                    match self.client().restore_secret().secret_id(&name).send().await {
                        Ok(_) => {
                            tracing::debug!(store = %self.id, key = %key, "restored a secret scheduled for deletion to set it again");
                            restored = true;
                            Again::Now
                        }
                        Err(e) => {
                            let f = self.fail("RestoreSecret", false, e);
                            match f.kind {
                                Kind::NotFound => Again::Now,
                                Kind::InvalidRequest => Again::Later(Some(f.error)),
                                _ => return Err(f.error),
                            }
                        }
                    }
                }
                State::Live(desc) => match View::of(&self.id, &name, &desc)? {
                    None => {
                        // A secret made by another tool without a value: a
                        // key without a value is absent.
                        if let SetMode::Replace(_) = mode {
                            return Err(self.precondition(key, "the key does not exist"));
                        }
                        let now = SystemTime::now();
                        let version = layout::new_version_id();
                        let env = Envelope::new(metadata, now, now, version.clone(), empty);
                        match self.update_secret(&name, &payload, &env).await {
                            Ok(()) => {
                                let version =
                                    Version::new(version).map_err(|e| Error::backend(&self.id, e))?;
                                return Ok(SetOutcome {
                                    created: true,
                                    version,
                                    created_at: now,
                                    updated_at: now,
                                });
                            }
                            Err(f) if f.is(Kind::NotFound) || f.is(Kind::InvalidRequest) => Again::Now,
                            Err(f) => return Err(f.error),
                        }
                    }
                    Some(view) => {
                        if restored && restored_version.is_none() {
                            restored_version = Some(view.current.clone());
                        }
                        let restored = restored_version.as_deref() == Some(view.current.as_str());
                        let abandoned = match &in_flight {
                            Some((seen, since)) if *seen == view => since.elapsed() > self.abandoned_after(),
                            _ => false,
                        };
                        if view.in_flight() && !restored && matches!(mode, SetMode::Create) {
                            // Exists whichever way the other write ends.
                            return Err(self.precondition(key, "the key exists"));
                        }
                        if view.in_flight() && !restored && !abandoned {
                            // Another write is between its two steps: let it finish.
                            if in_flight.as_ref().is_none_or(|(seen, _)| *seen != view) {
                                in_flight = Some((view, Instant::now()));
                            }
                            Again::Later(None)
                        } else {
                            let write = Write { key, name: &name, payload: &payload, metadata, empty, mode };
                            let res = self.write_over(&write, &desc, &view, restored).await;
                            match res {
                                Ok(outcome) => return Ok(outcome),
                                Err(Ok(again)) => again,
                                Err(Err(e)) => {
                                    if restored && !matches!(e, Error::PreconditionFailed { .. }) {
                                        self.undo_restore(key, &name, &view).await;
                                    }
                                    return Err(e);
                                }
                            }
                        }
                    }
                },
            };
            if let Again::Later(error) = again {
                if error.is_some() {
                    last = error;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::conflict(&self.id, format!("key '{key}' kept changing while it was written"))
        }))
    }

    /// # Behavior
    /// One `DescribeSecret`; the value is not read. A secret scheduled for
    /// deletion, or without a current version, is absent.
    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        Ok(self.view(&self.names.name(key)).await?.is_some())
    }

    /// # Behavior
    /// One `DescribeSecret`; the value is not read. The version is the one
    /// [`get`](CredentialStore::get) would return.
    async fn version(&self, key: &CredentialKey) -> Result<Option<Version>> {
        let name = self.names.name(key);
        let Some((_, view)) = self.view(&name).await? else { return Ok(None) };
        Version::new(view.visible).map(Some).map_err(|e| Error::backend(&self.id, e))
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

impl AwsStore {
    /// After a write over a secret this call restored failed: delete it
    /// again (best effort) if nothing else wrote it meanwhile, so that the
    /// old value does not come back.
    async fn undo_restore(&self, key: &CredentialKey, name: &str, view: &View) {
        let untouched = match self.describe(name).await {
            Ok(State::Live(d)) => current_version(d.version_ids_to_stages()) == Some(view.current.as_str()),
            _ => false,
        };
        if untouched {
            if let Err(undo) = self.delete_name(name).await {
                tracing::warn!(store = %self.id, key = %key, error = %undo.error, "could not re-delete a restored secret after a failed set");
            }
        }
    }
}
