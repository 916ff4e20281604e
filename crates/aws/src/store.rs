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
    async_trait, Availability, Capabilities, Credential, CredentialKey, CredentialStore, Error, ListOptions,
    ListPage, Metadata, Namespace, Persistence, PurgeTarget, Result, Retention, SecretValue, SetMode,
    SetOutcome, StoreId, StoreInfo, Version, VersionInfo, VersionListOptions, VersionPage, VersionState,
    WriteRequest,
};

use crate::errors::{self, translate, Failure, Kind, Target};
use crate::last_seen::{Known, LastSeen, Proof};
use crate::layout::{self, Envelope, Names, Payload, Previous, CREATED_TAG, STAGED_LABEL};
use crate::{AwsConfig, DeletionPolicy};

/// Sets the value of `$value` (a [`Payload`]) on `$req`, a builder of one of
/// the SDK's three writes (`CreateSecret`, `UpdateSecret`,
/// `PutSecretValue`: three types with the same setters, so a macro rather
/// than a function). With `described_by $envelope`, also the envelope as
/// description and its version as `ClientRequestToken`.
macro_rules! with_payload {
    ($req:expr, $value:expr) => {{
        let req = $req;
        match $value {
            Payload::Text(text) => req.secret_string(text.as_str()),
            Payload::Binary(bytes) => req.secret_binary(Blob::new(bytes.to_vec())),
        }
    }};
    ($req:expr, $value:expr, described_by $envelope:expr) => {{
        let envelope: &Envelope = $envelope;
        with_payload!($req.description(envelope.encode()).client_request_token(&envelope.v), $value)
    }};
}

/// The staging label of a secret's current version.
const CURRENT: &str = "AWSCURRENT";
/// The staging label the service moves to the version `AWSCURRENT` left.
const PREVIOUS: &str = "AWSPREVIOUS";
/// Rounds of the one-round-trip upsert (update, or create when missing)
/// before the slow path takes over from a key that keeps appearing and
/// disappearing.
const FAST_ROUNDS: usize = 8;
/// ListSecrets' largest page.
const LIST_PAGE: i32 = 100;
/// A bound on ListSecrets pages in one listing, against a service that keeps
/// answering with a next token.
const MAX_LIST_PAGES: usize = 100_000;
/// The most secret ids one `BatchGetSecretValue` takes.
const BATCH_IDS: usize = 20;
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
    /// What this store last saw of each secret it wrote or read whole.
    seen: LastSeen,
}

/// A credential store on AWS Secrets Manager. See the crate docs for the
/// layout and the behaviour of each operation.
///
/// Cloning is cheap and shares the SDK client; so do the handles of
/// [`CredentialStore::with_namespace`].
#[derive(Clone)]
pub struct AwsStore {
    /// Id, kind, capabilities and this handle's namespace.
    info: StoreInfo,
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
    /// The description names a version of ours that is not there: a read
    /// looks again rather than pair the current value with that metadata.
    unsettled: bool,
}

impl View {
    /// `None` when the secret has no current version.
    fn of(store: &StoreId, name: &str, desc: &DescribeSecretOutput) -> Result<Option<Self>> {
        let envelope = Envelope::decode(store, name, desc.description())?;
        let named = envelope.as_ref().map(|e| e.v.as_str());
        let Some(current) = current_of(desc.version_ids_to_stages(), named) else { return Ok(None) };
        let mut unsettled = false;
        let (visible, ours) = match &envelope {
            Some(env) if env.v == current => (current.to_owned(), true),
            // A write of ours moved AWSCURRENT and has not written its
            // description yet: the description's version is the last
            // complete write.
            Some(env) if layout::is_our_version(current) && has_version(desc, &env.v) => {
                (env.v.clone(), true)
            }
            // The description names a version of ours that does not exist
            // (yet): an UpdateSecret seen half-way, if the service ever
            // shows one. Its metadata is not the current value's.
            Some(env) if layout::is_our_version(current) && layout::is_our_version(&env.v) => {
                unsettled = true;
                (current.to_owned(), false)
            }
            // A value written by another tool (console, rotation) wins.
            _ => (current.to_owned(), false),
        };
        Ok(Some(Self { current: current.to_owned(), visible, envelope, ours, unsettled }))
    }

    /// Whether a write of ours is between its two steps.
    fn in_flight(&self) -> bool {
        self.visible != self.current
    }

    /// Whether the version read has expired at `now` (by its envelope; a
    /// value another tool wrote never expires).
    fn expired(&self, now: SystemTime) -> bool {
        self.ours && self.envelope.as_ref().is_some_and(|e| e.expired(now))
    }

    /// What the next write's description keeps of the version read: `None`
    /// unless this crate described it.
    fn as_previous(&self) -> Option<Previous> {
        self.envelope.as_ref().filter(|_| self.ours && !self.in_flight()).map(Envelope::as_previous)
    }
}

fn has_version(desc: &DescribeSecretOutput, version: &str) -> bool {
    desc.version_ids_to_stages().is_some_and(|m| m.contains_key(version))
}

/// A version the store keeps, as the secret's labels and description say.
#[derive(Debug, Clone)]
struct Kept {
    id: String,
    metadata: Metadata,
    updated_at: SystemTime,
    expires_at: Option<SystemTime>,
    /// Its value is empty (the placeholder).
    empty: bool,
    /// It is the version reads return (unless it expired).
    current: bool,
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
    expires_at: Option<SystemTime>,
}

/// How the one-round-trip upsert ended.
enum Fast {
    Done(SetOutcome),
    /// No such secret: create it.
    Missing,
    /// Scheduled for deletion or being purged: the slow path deals with it.
    Slow,
}

/// How one round of a write ended, when it did not fail for good.
enum Round {
    /// Written.
    Done(SetOutcome),
    /// Look again at once: the secret changed under the write.
    Now,
    /// Wait a little first: the service or another writer is busy (with the
    /// error to report if that lasts).
    Later(Option<Error>),
}

/// What the rounds of one write carry from one to the next.
#[derive(Default)]
struct Rounds {
    /// A `RestoreSecret` of this write went through.
    restored: bool,
    /// The current version of the secret this write restored, which it
    /// overwrites as a new key.
    restored_version: Option<String>,
    /// A write of ours seen between its two steps, and since when.
    in_flight: Option<(View, Instant)>,
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
    /// window, timeout, attempts); a plain `http://` endpoint URL to a host
    /// that is not loopback without [`AwsConfig::allow_insecure_http`].
    pub fn new(id: StoreId, config: AwsConfig) -> Result<Self> {
        config.validate(&id)?;
        let connection = crate::client::explicit(
            &id,
            &config,
            crate::client::SECRETS_MANAGER,
            "AwsStore::new",
            "AwsStore::from_env",
        )?;
        let client = crate::client::secrets_manager(&connection);
        Ok(Self::assemble(id, config, client, connection.target))
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
    /// invalid; a plain `http://` endpoint to a host that is not loopback,
    /// from `config` or from the environment (`AWS_ENDPOINT_URL`, ...),
    /// without [`AwsConfig::allow_insecure_http`].
    pub async fn from_env(id: StoreId, config: AwsConfig) -> Result<Self> {
        config.validate(&id)?;
        let connection = crate::client::from_env(&id, &config, crate::client::SECRETS_MANAGER).await?;
        let client = crate::client::secrets_manager(&connection);
        Ok(Self::assemble(id, config, client, connection.target))
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
            seen: LastSeen::default(),
        };
        let mut info = StoreInfo::new(id, crate::KIND, CAPABILITIES);
        if let Some(clock) = config.clock {
            info = info.with_clock(clock);
        }
        Self { info, shared: Arc::new(shared), names: root }
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

    /// The credential of a version read by `GetSecretValue` that this store
    /// [`Known`]s (see [`LastSeen`]).
    fn credential_of_known(
        &self,
        key: &CredentialKey,
        known: Known,
        mut out: ValueRead,
    ) -> Result<Credential> {
        let value = self.value_read(key, known.envelope.e, &mut out)?;
        let version = Version::new(known.version).map_err(|e| Error::backend(self.info.id(), e))?;
        Ok(Credential {
            key: key.clone(),
            value,
            updated_at: known.envelope.updated_at(),
            expires_at: known.envelope.expires_at(),
            metadata: known.envelope.m,
            version,
            created_at: known.created_at,
        })
    }

    /// The value of `key` that `GetSecretValue` read, or the empty value
    /// when the credential's envelope says it is `empty` (its stored value
    /// is a placeholder); a version without a value is a backend error.
    fn value_read(&self, key: &CredentialKey, empty: bool, out: &mut ValueRead) -> Result<SecretValue> {
        if empty {
            return Ok(SecretValue::default());
        }
        out.take_value().ok_or_else(|| {
            let name = self.names.name(key);
            Error::backend(self.info.id(), format!("secret {name:?} has a version without a value"))
        })
    }

    fn precondition(&self, key: &CredentialKey, reason: impl Into<String>) -> Error {
        Error::precondition_failed(self.info.id(), key, reason)
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

    /// `env` keeping `previous` in the description, if it fits; says so in
    /// the log when it does not (that version is then not kept).
    fn keeping(&self, name: &str, env: Envelope, previous: Option<Previous>) -> Envelope {
        let wanted = previous.as_ref().map(|p| p.v.clone());
        let env = env.with_previous(previous);
        if let (Some(version), None) = (wanted, &env.p) {
            tracing::info!(store = %self.info.id(), secret = name, version, "the previous version's metadata does not fit the description with this write's: it is not kept");
        }
        env
    }

    /// The view of a live secret, `None` when missing, deleted, without a
    /// current version, or expired.
    async fn view(&self, name: &str) -> Result<Option<(Box<DescribeSecretOutput>, View)>> {
        let State::Live(desc) = self.describe(name).await? else { return Ok(None) };
        let now = self.info.now();
        Ok(View::of(self.info.id(), name, &desc)?.filter(|v| !v.expired(now)).map(|view| (desc, view)))
    }

    fn credential(
        &self,
        key: &CredentialKey,
        desc: &DescribeSecretOutput,
        view: &View,
        mut out: ValueRead,
    ) -> Result<Credential> {
        let name = self.names.name(key);
        let envelope = view.envelope.as_ref();
        let value = self.value_read(key, view.ours && envelope.is_some_and(|e| e.e), &mut out)?;
        let version = Version::new(view.visible.as_str()).map_err(|e| {
            Error::backend(
                self.info.id(),
                format!("secret {name:?} has a version id that is not a version: {e}"),
            )
        })?;
        let created_at = created_at_of(desc, envelope);
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
        let expires_at = envelope.filter(|_| view.ours).and_then(Envelope::expires_at);
        Ok(Credential { key: key.clone(), value, metadata, version, created_at, updated_at, expires_at })
    }

    /// `CreateSecret` with value, description and the [`CREATED_TAG`] tag in
    /// one call. Returns the secret's ARN.
    async fn create_secret(
        &self,
        name: &str,
        value: &Payload,
        envelope: &Envelope,
        created_at: SystemTime,
    ) -> std::result::Result<Option<String>, Failure> {
        let mut req = with_payload!(self.client().create_secret().name(name), value, described_by envelope);
        if let Some(kms) = &self.shared.kms_key_id {
            req = req.kms_key_id(kms);
        }
        for (k, v) in &self.shared.tags {
            req = req.tags(Tag::builder().key(k).value(v).build());
        }
        req = req.tags(Tag::builder().key(CREATED_TAG).value(layout::created_tag_value(created_at)).build());
        req.send().await.map(|out| out.arn).map_err(|e| self.fail("CreateSecret", true, e))
    }

    /// `UpdateSecret` with value and description in one call: a new version
    /// (`ClientRequestToken` = the envelope's version) that becomes
    /// `AWSCURRENT` unconditionally, with its description. Returns the
    /// secret's ARN. `with_kms` also sets the configured KMS key (for a
    /// secret this store takes over; an overwrite keeps the secret's key).
    async fn update_secret(
        &self,
        name: &str,
        value: &Payload,
        envelope: &Envelope,
        with_kms: bool,
    ) -> std::result::Result<Option<String>, Failure> {
        let mut req =
            with_payload!(self.client().update_secret().secret_id(name), value, described_by envelope);
        if let Some(kms) = self.shared.kms_key_id.as_ref().filter(|_| with_kms) {
            req = req.kms_key_id(kms);
        }
        req.send().await.map(|out| out.arn).map_err(|e| self.fail("UpdateSecret", true, e))
    }

    /// `PutSecretValue` of a new version under [`STAGED_LABEL`] only:
    /// `AWSCURRENT` stays where it is.
    async fn stage(&self, name: &str, version: &str, value: &Payload) -> std::result::Result<(), Failure> {
        let req = self.client().put_secret_value().secret_id(name).client_request_token(version);
        with_payload!(req.version_stages(STAGED_LABEL), value)
            .send()
            .await
            .map(drop)
            .map_err(|e| self.fail("PutSecretValue", true, e))
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
            tracing::debug!(store = %self.info.id(), secret = name, error = %f.error, "staged version left labelled");
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

    /// `GetSecretValue` of `version`, or of `AWSCURRENT` when `None`.
    async fn read_value(&self, name: &str, version: Option<&str>) -> std::result::Result<ValueRead, Failure> {
        let req = self.client().get_secret_value().secret_id(name);
        let req = match version {
            Some(v) => req.version_id(v),
            // As a bare read: the service's current version.
            None => req,
        };
        req.send().await.map(ValueRead).map_err(|e| self.fail("GetSecretValue", false, e))
    }

    /// `BatchGetSecretValue` of the secrets `ids` (at most [`BATCH_IDS`]):
    /// what it answered of each. A secret it did not find is
    /// [`Missing`](BatchAnswer::Missing), one it cannot read now (scheduled
    /// for deletion) is [`Unsettled`](BatchAnswer::Unsettled); any other
    /// error of one secret fails the batch with that error.
    async fn batch_read(&self, ids: &[String]) -> Result<Vec<(String, BatchAnswer)>> {
        let out = self
            .client()
            .batch_get_secret_value()
            .set_secret_id_list(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|e| self.fail("BatchGetSecretValue", false, e).error)?;
        let (values, failed) = (out.secret_values, out.errors);
        // Every value goes into a `ValueRead` first, which wipes it when dropped.
        let mut answers: Vec<(String, BatchAnswer)> = Vec::with_capacity(ids.len());
        for entry in values.unwrap_or_default() {
            let Some(name) = entry.name.clone() else { continue };
            let read = GetSecretValueOutput::builder()
                .set_arn(entry.arn)
                .set_name(entry.name)
                .set_version_id(entry.version_id)
                .set_secret_string(entry.secret_string)
                .set_secret_binary(entry.secret_binary)
                .set_version_stages(entry.version_stages)
                .set_created_date(entry.created_date)
                .build();
            answers.push((name, BatchAnswer::Value(ValueRead(read))));
        }
        for e in failed.unwrap_or_default() {
            let Some(id) = e.secret_id else { continue };
            let f = errors::service_failure(
                self.target(),
                "BatchGetSecretValue",
                false,
                e.error_code,
                e.message,
                None,
            );
            let answer = match f.kind {
                Kind::NotFound => BatchAnswer::Missing,
                Kind::InvalidRequest => BatchAnswer::Unsettled,
                _ => return Err(f.error),
            };
            answers.push((id, answer));
        }
        Ok(answers)
    }

    /// `TagResource` of [`CREATED_TAG`]: `created_at` of a key set anew on
    /// an existing secret (restored, or made elsewhere without a value).
    async fn tag_created(&self, name: &str, created_at: SystemTime) -> std::result::Result<(), Failure> {
        self.client()
            .tag_resource()
            .secret_id(name)
            .tags(Tag::builder().key(CREATED_TAG).value(layout::created_tag_value(created_at)).build())
            .send()
            .await
            .map(drop)
            .map_err(|e| self.fail("TagResource", false, e))
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

    /// A new key: one `CreateSecret` with value, description and the
    /// [`CREATED_TAG`] tag.
    async fn create_new(
        &self,
        name: &str,
        payload: &Payload,
        metadata: &Metadata,
        empty: bool,
        expires_at: Option<SystemTime>,
    ) -> std::result::Result<SetOutcome, Failure> {
        let now = layout::next_updated_at();
        let version = layout::new_version_id();
        let env = Envelope::new(metadata, Some(now), now, version.clone(), empty).with_expires_at(expires_at);
        let sent = Instant::now();
        let arn = self.create_secret(name, payload, &env, now).await?;
        self.shared.seen.put(name, Known::new(&version, &env, now, Proof::of(arn.as_deref(), true, sent)));
        let version = Version::new(version)
            .map_err(|e| Failure { kind: Kind::Other, error: Error::backend(self.info.id(), e) })?;
        Ok(SetOutcome { created: true, version, created_at: now, updated_at: now })
    }

    /// An upsert of a key that exists: `UpdateSecret` with value and
    /// description (a new `AWSCURRENT` version and the envelope naming it,
    /// in one call, so no reader sees one without the other), the envelope
    /// keeping the version it overwrites. One round trip when a fresh
    /// [`Proof`] and the remembered envelope say what the update overwrites
    /// (and the update answers that ARN); otherwise a `DescribeSecret`
    /// first, which also gives the outcome (`created_at` is in the
    /// [`CREATED_TAG`] tag or the secret's creation date, which the update
    /// does not touch). An expired key goes to the slow path.
    async fn upsert_in_one(
        &self,
        name: &str,
        payload: &Payload,
        metadata: &Metadata,
        empty: bool,
        expires_at: Option<SystemTime>,
    ) -> Result<Fast> {
        let now = self.info.now();
        // A remembered version that has expired since: the key is missing,
        // which the slow path (a new creation time) deals with.
        let known = self.shared.seen.get(name).filter(|k| !k.envelope.expired(now));
        let proof = known.as_ref().and_then(|k| k.proof.clone()).filter(Proof::fresh);
        let mut updated_at = layout::next_updated_at();
        if let Some(known) = known.as_ref().filter(|_| proof.is_some()) {
            // Strictly after the write this store saw last, even if another
            // writer's clock is ahead.
            updated_at = updated_at.max(known.envelope.updated_at() + Duration::from_nanos(1));
        }
        let version = layout::new_version_id();
        let env =
            Envelope::new(metadata, None, updated_at, version.clone(), empty).with_expires_at(expires_at);
        let sent = Instant::now();
        let (written, seen, env) = match (&proof, &known) {
            (Some(proof), Some(known)) => {
                // The version this store saw is the one the update moves to
                // AWSPREVIOUS (if another writer got in between, the
                // description names a version without that label, which is
                // then not kept).
                let env = self.keeping(name, env, Some(known.envelope.as_previous()));
                let written = self.update_secret(name, payload, &env, false).await;
                if matches!(&written, Ok(Some(arn)) if *arn == proof.arn) {
                    // The secret this store saw, with its creation-time tag:
                    // it had a value then and a secret never loses its
                    // current version, so the key was present.
                    let created_at = known.created_at;
                    self.shared.seen.put(name, Known::new(&version, &env, created_at, Some(proof.clone())));
                    let version = Version::new(version).map_err(|e| Error::backend(self.info.id(), e))?;
                    return Ok(Fast::Done(SetOutcome { created: false, version, created_at, updated_at }));
                }
                // Another secret under that name (deleted and made again),
                // or no ARN in the answer: described below.
                (written, None, env)
            }
            _ => {
                // Described first, so that the description written keeps
                // the version it overwrites.
                let seen = self.describe(name).await;
                let view = match &seen {
                    Ok(State::Missing) => return Ok(Fast::Missing),
                    Ok(State::Live(desc)) => View::of(self.info.id(), name, desc)?,
                    Ok(State::Deleted) => return Ok(Fast::Slow),
                    Err(_) => None,
                };
                let Some(view) = view.filter(|v| !v.unsettled && !v.expired(now)) else {
                    // Expired, without a value, or between two steps of
                    // another write: the slow path.
                    return match seen {
                        Err(e) => Err(e),
                        Ok(_) => Ok(Fast::Slow),
                    };
                };
                let env = self.keeping(name, env, view.as_previous());
                let written = self.update_secret(name, payload, &env, false).await;
                (written, Some(seen), env)
            }
        };
        let arn = match written {
            Ok(arn) => arn,
            Err(f) if f.is(Kind::NotFound) => {
                self.shared.seen.forget(name);
                return Ok(Fast::Missing);
            }
            // Scheduled for deletion, or being purged.
            Err(f) if f.is(Kind::InvalidRequest) => {
                self.shared.seen.forget(name);
                return Ok(Fast::Slow);
            }
            Err(f) => return Err(f.error),
        };
        let same = |d: &DescribeSecretOutput| arn.is_none() || d.arn() == arn.as_deref();
        let desc = match seen {
            Some(Ok(State::Live(d))) if same(&d) => Some((d, sent)),
            // Deleted and made again around the update (or the describe
            // failed, or was not sent): look once more.
            _ => {
                let again = Instant::now();
                match self.describe(name).await {
                    Ok(State::Live(d)) if same(&d) => Some((d, again)),
                    _ => None,
                }
            }
        };
        let Some((desc, described)) = desc else {
            tracing::warn!(store = %self.info.id(), secret = name, "written, but the secret could not be described for the outcome");
            self.shared.seen.forget(name);
            let version = Version::new(version).map_err(|e| Error::backend(self.info.id(), e))?;
            return Ok(Fast::Done(SetOutcome {
                created: false,
                version,
                created_at: updated_at,
                updated_at,
            }));
        };
        // The key was absent (a secret without a value) when no other
        // version is or was just current.
        let created = !desc.version_ids_to_stages().is_some_and(|m| {
            m.iter()
                .any(|(id, labels)| *id != version && labels.iter().any(|l| l == CURRENT || l == PREVIOUS))
        });
        let tagged = created_tag(&desc);
        let created_at = match tagged {
            Some(t) => t,
            None => self.adopt_created_at(name, &desc, &version, created, updated_at).await,
        };
        let proof = Proof::of(desc.arn().filter(|_| arn.is_some()), tagged.is_some(), described);
        self.shared.seen.put(name, Known::new(&version, &env, created_at, proof));
        let version = Version::new(version).map_err(|e| Error::backend(self.info.id(), e))?;
        Ok(Fast::Done(SetOutcome { created, version, created_at, updated_at }))
    }

    /// `created_at` of a secret without the [`CREATED_TAG`] tag that an
    /// upsert just wrote: one made by another tool keeps its creation date;
    /// one last written by credstore 0.1 (the time in its envelope, when the
    /// describe saw that envelope) and one that had no value get the tag, so
    /// that readers agree with the outcome.
    async fn adopt_created_at(
        &self,
        name: &str,
        desc: &DescribeSecretOutput,
        written: &str,
        created: bool,
        now: SystemTime,
    ) -> SystemTime {
        let before = Envelope::decode(self.info.id(), name, desc.description())
            .ok()
            .flatten()
            .filter(|e| e.v != written);
        let keep = if created { Some(now) } else { before.and_then(|e| e.created_at()) };
        let fallback = desc.created_date().and_then(to_system_time).unwrap_or(now);
        let Some(t) = keep else { return fallback };
        match self.tag_created(name, t).await {
            Ok(()) => t,
            Err(f) => {
                tracing::warn!(store = %self.info.id(), secret = name, error = %f.error, "could not tag the creation time");
                fallback
            }
        }
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
        described: Instant,
    ) -> Result<Round> {
        let Write { key, name, payload, metadata, empty, mode, expires_at } = *write;
        // A key whose version expired is missing: written over as a new one.
        let expired = view.expired(self.info.now());
        match mode {
            SetMode::Create if !restored && !expired => return Err(self.precondition(key, "the key exists")),
            SetMode::Replace(_) if expired => return Err(self.precondition(key, "the key does not exist")),
            SetMode::Replace(expected) if expected.as_str() != view.visible => {
                return Err(self
                    .precondition(key, format!("the current version is {}, not {expected}", view.visible)));
            }
            _ => {}
        }
        let created = restored || expired;
        let now = layout::next_updated_at();
        let old = view.envelope.as_ref();
        let created_at = if created { now } else { created_at_of(desc, old) };
        // Strictly after the previous write, even if the clock stepped back.
        let after_previous =
            old.filter(|_| !created).map_or(created_at, |env| env.updated_at() + Duration::from_nanos(1));
        let updated_at = now.max(after_previous).max(created_at);
        let version = layout::new_version_id();
        let env = Envelope::new(metadata, Some(created_at), updated_at, version.clone(), empty)
            .with_expires_at(expires_at);
        // A new key has no previous version; AWSPREVIOUS then holds a
        // version of its earlier life, which is not kept.
        let env = self.keeping(name, env, if created { None } else { view.as_previous() });
        if created {
            // A restored or expired secret is a new key: its creation time starts again.
            self.tag_created(name, created_at).await.map_err(|f| f.error)?;
        }

        match self.stage(name, &version, payload).await {
            Ok(()) => {}
            // Deleted meanwhile: look again.
            Err(f) if f.is(Kind::NotFound) || f.is(Kind::InvalidRequest) => return Ok(Round::Now),
            Err(f) => return Err(f.error),
        }
        if let Err(f) = self.move_current(name, &version, &view.current).await {
            if let Some(round) = self.after_failed_move(write, view, &version, f).await? {
                return Ok(round);
            }
        }
        if let Err(f) = self.describe_as(name, &env).await {
            // Put AWSCURRENT back, so that nothing changed; if that fails
            // too, readers still see the previous write (the description
            // names it) until the next write.
            if let Err(undo) = self.move_current(name, &view.current, &version).await {
                tracing::warn!(store = %self.info.id(), key = %key, error = %undo.error, "could not move AWSCURRENT back after a failed write");
            }
            self.unstage(name, &version).await;
            return Err(f.error);
        }
        // The tag holds `created_at` when the description showed it, or
        // after the restore above wrote it.
        let proof = Proof::of(desc.arn(), created || created_tag(desc).is_some(), described);
        self.shared.seen.put(name, Known::new(&version, &env, created_at, proof));
        let version = Version::new(version).map_err(|e| Error::backend(self.info.id(), e))?;
        Ok(Round::Done(SetOutcome { created, version, created_at, updated_at }))
    }

    /// After `UpdateSecretVersionStage` from the version seen to ours
    /// failed: `None` when `AWSCURRENT` is on our version after all (a
    /// retried request that had gone through), else how the round ends, the
    /// staged version unlabelled.
    async fn after_failed_move(
        &self,
        write: &Write<'_>,
        view: &View,
        version: &str,
        f: Failure,
    ) -> Result<Option<Round>> {
        let Write { key, name, mode, .. } = *write;
        // Refused (AWSCURRENT moved on), the secret gone, or a failure:
        // look at what happened.
        let (now_current, still_staged) = match self.describe(name).await {
            Ok(State::Live(d)) => {
                let staged = has_version(&d, version);
                // Ours if the label is on our version, else the one the
                // write started from if still there (a service showing
                // the label twice), else whichever.
                let stages = d.version_ids_to_stages();
                let current = current_of(stages, Some(version))
                    .filter(|c| *c == version)
                    .or_else(|| current_of(stages, Some(&view.current)));
                (current.map(str::to_owned), staged)
            }
            Ok(_) => (None, false),
            Err(e) => {
                self.unstage(name, version).await;
                return Err(e);
            }
        };
        match now_current {
            // A retried request that had gone through: the move is ours.
            Some(c) if c == version => Ok(None),
            // AWSCURRENT did not move: the move itself failed. When the
            // staged version lost its label to a later staging (and may
            // be gone), start over; otherwise it is a real failure.
            Some(c) if c == view.current => {
                self.unstage(name, version).await;
                if still_staged {
                    Err(f.error)
                } else {
                    Ok(Some(Round::Now))
                }
            }
            // Another write moved AWSCURRENT first, or the key is gone:
            // the condition no longer holds.
            _ => {
                self.unstage(name, version).await;
                match mode {
                    SetMode::Replace(expected) => Err(self.precondition(
                        key,
                        format!(
                            "the key was written or deleted concurrently; {expected} is no longer current"
                        ),
                    )),
                    _ => Ok(Some(Round::Now)),
                }
            }
        }
    }
}

/// `AWSCURRENT`'s version, the first found if a broken service shows two.
fn current_version(stages: Option<&HashMap<String, Vec<String>>>) -> Option<&str> {
    current_of(stages, None)
}

/// `AWSCURRENT`'s version. When a service shows the label on more than one
/// version (moto does, after `UpdateSecretVersionStage` then
/// `UpdateSecret`), the one `named` by the description if it is among
/// them, else the first by id: the same answer for every reader.
fn current_of<'a>(stages: Option<&'a HashMap<String, Vec<String>>>, named: Option<&str>) -> Option<&'a str> {
    let mut found: Vec<&str> = stages?
        .iter()
        .filter(|(_, labels)| labels.iter().any(|l| l == CURRENT))
        .map(|(id, _)| id.as_str())
        .collect();
    if let Some(n) = named.and_then(|n| found.iter().find(|id| **id == n)) {
        return Some(n);
    }
    found.sort_unstable();
    found.first().copied()
}

/// A credential's `created_at`: the [`CREATED_TAG`] tag, else the envelope's
/// `c` (written by 0.1 and by writes that read first), else the secret's
/// creation date.
fn created_at_of(desc: &DescribeSecretOutput, envelope: Option<&Envelope>) -> SystemTime {
    created_tag(desc)
        .or_else(|| envelope.and_then(Envelope::created_at))
        .or_else(|| desc.created_date().and_then(to_system_time))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The [`CREATED_TAG`] tag of a secret, when it holds a time.
fn created_tag(desc: &DescribeSecretOutput) -> Option<SystemTime> {
    desc.tags()
        .iter()
        .find(|t| t.key() == Some(CREATED_TAG))
        .and_then(|t| t.value())
        .and_then(layout::parse_created_tag)
}

/// Whether a version read carries `AWSCURRENT` (moto answers a bare
/// `GetSecretValue` with a version that lost it to
/// `UpdateSecretVersionStage`).
/// What `BatchGetSecretValue` answered of one secret.
enum BatchAnswer {
    /// Its current version, as `GetSecretValue` answers it.
    Value(ValueRead),
    /// `ResourceNotFoundException`: no such secret.
    Missing,
    /// An answer that does not settle it (the secret is scheduled for
    /// deletion, or was not answered): `get` reads it.
    Unsettled,
}

/// A `GetSecretValue` answer: its value is moved out by
/// [`ValueRead::take_value`], or overwritten when the answer is dropped
/// unused (a read of the wrong version, a retry, an error).
pub(crate) struct ValueRead(GetSecretValueOutput);

impl ValueRead {
    /// The value, moved (not copied) out of the answer.
    fn take_value(&mut self) -> Option<SecretValue> {
        if let Some(s) = self.0.secret_string.take() {
            Some(SecretValue::from_text(s))
        } else {
            self.0.secret_binary.take().map(|blob| SecretValue::from_bytes(blob.into_inner()))
        }
    }

    fn wipe(&mut self) {
        use zeroize::Zeroize as _;
        if let Some(s) = self.0.secret_string.as_mut() {
            s.zeroize();
        }
        if let Some(blob) = self.0.secret_binary.take() {
            blob.into_inner().zeroize();
        }
    }
}

impl std::ops::Deref for ValueRead {
    type Target = GetSecretValueOutput;

    fn deref(&self) -> &GetSecretValueOutput {
        &self.0
    }
}

impl Drop for ValueRead {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl zeroize::ZeroizeOnDrop for ValueRead {}

fn is_current(out: &GetSecretValueOutput) -> bool {
    out.version_stages().iter().any(|l| l == CURRENT)
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
            .field("id", self.info.id())
            .field("endpoint", &self.shared.target.endpoint)
            .field("region", &self.shared.target.region)
            .field("prefix", &self.names.prefix())
            .field("namespace", self.info.namespace())
            .field("deletion", &self.shared.deletion)
            .finish_non_exhaustive()
    }
}

/// Everything, durable: create-only through `CreateSecret`,
/// replace-if-version through `UpdateSecretVersionStage` (see the crate
/// docs, "Writes"); versions as deep as the staging labels go (the current
/// version and `AWSPREVIOUS`: two), expiry kept in the description. No
/// recovery after a delete (see the crate docs, "History").
const CAPABILITIES: Capabilities = Capabilities::full()
    .with_persistence(Persistence::Durable)
    .with_versions(true)
    .with_expiry(true)
    .with_retention(Retention::versions(KEPT_VERSIONS));

/// The versions of a key this store keeps: the ones the service keeps
/// labelled, `AWSCURRENT` and `AWSPREVIOUS`.
const KEPT_VERSIONS: u32 = 2;

#[async_trait]
impl CredentialStore for AwsStore {
    fn info(&self) -> &StoreInfo {
        &self.info
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
        let info = self.info.join(namespace)?;
        info.namespace().check_len(self.max_namespace_len())?;
        let names = self.shared.root.child(info.namespace());
        Ok(Arc::new(Self { info, shared: self.shared.clone(), names }))
    }

    /// # Behavior
    /// `GetSecretValue` alone when the current version is one this store
    /// wrote or read whole (it remembers that version's envelope); otherwise
    /// `GetSecretValue` and `DescribeSecret` at the same time: one round
    /// trip either way. When the value read is not the version the description goes
    /// with (a write landed in between, a replace is between its steps),
    /// one more `GetSecretValue` reads that version by id, so the value,
    /// metadata, version and timestamps always come from one write (see the
    /// crate docs, "Reads"). A secret scheduled for
    /// deletion, or without a current version, is absent. A value written by
    /// another tool wins: it is returned with the last metadata this crate
    /// wrote. A binary value (`SecretBinary`) is returned as its bytes.
    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        let name = self.names.name(key);
        // A version this store wrote or read whole: the value alone.
        let mut first = None;
        if let Some(known) = self.shared.seen.get(&name) {
            match self.read_value(&name, None).await {
                Ok(out) if out.version_id() == Some(known.version.as_str()) && is_current(&out) => {
                    if known.envelope.expired(self.info.now()) {
                        return Ok(None);
                    }
                    return self.credential_of_known(key, known, out).map(Some);
                }
                other => first = Some(other),
            }
        }
        for round in 0..READ_ROUNDS {
            // Both at once: the description says which version goes with
            // it, the value read is usually that version.
            let described = Instant::now();
            let (state, current) = match first.take() {
                Some(Err(f)) if !(f.is(Kind::NotFound) || f.is(Kind::InvalidRequest)) => return Err(f.error),
                Some(current) => (self.describe(&name).await, current),
                None => tokio::join!(self.describe(&name), self.read_value(&name, None)),
            };
            let State::Live(desc) = state? else {
                self.shared.seen.forget(&name);
                return Ok(None);
            };
            let Some(view) = View::of(self.info.id(), &name, &desc)? else { return Ok(None) };
            if view.expired(self.info.now()) {
                return Ok(None);
            }
            if view.unsettled {
                tracing::debug!(store = %self.info.id(), key = %key, round, "description ahead of the value; retrying");
                tokio::time::sleep(Duration::from_millis(5 << round)).await;
                continue;
            }
            let read = match current {
                Ok(out) if out.version_id() == Some(view.visible.as_str()) => Ok(out),
                // A write landed between the two answers, a write of ours is
                // between its steps, or the service answered with another
                // version: read the one the description goes with.
                Ok(_) => self.read_value(&name, Some(&view.visible)).await,
                Err(f) if f.is(Kind::NotFound) || f.is(Kind::InvalidRequest) => {
                    self.read_value(&name, Some(&view.visible)).await
                }
                Err(f) => return Err(f.error),
            };
            match read {
                Ok(out) => {
                    let credential = self.credential(key, &desc, &view, out)?;
                    if let Some(env) = view.envelope.as_ref().filter(|_| view.ours) {
                        let proof = Proof::of(desc.arn(), created_tag(&desc).is_some(), described);
                        self.shared
                            .seen
                            .put(&name, Known::new(&view.visible, env, credential.created_at, proof));
                    }
                    return Ok(Some(credential));
                }
                Err(f) if f.is(Kind::NotFound) || f.is(Kind::InvalidRequest) => {
                    // Deleted or overwritten since DescribeSecret: look again.
                    tracing::debug!(store = %self.info.id(), key = %key, round, "secret changed while read; retrying");
                }
                Err(f) => return Err(f.error),
            }
        }
        Err(Error::conflict(self.info.id(), format!("key '{key}' kept changing while it was read")))
    }

    /// `BatchGetSecretValue` of up to 20 secrets per call (up to
    /// [`BATCH_CONCURRENCY`](credstore_core::BATCH_CONCURRENCY) calls at
    /// once), then a `get` of each key whose answer alone does not settle
    /// it; see the crate docs, "Batch reads".
    async fn get_many(&self, keys: &[CredentialKey]) -> Result<Vec<Option<Credential>>> {
        use futures::{StreamExt as _, TryStreamExt as _};
        credstore_core::check_batch(keys)?;
        let names: Vec<String> = keys.iter().map(|k| self.names.name(k)).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        let calls: Vec<_> = unique.chunks(BATCH_IDS).map(|ids| self.batch_read(ids)).collect();
        let mut read: HashMap<String, BatchAnswer> = HashMap::with_capacity(unique.len());
        let answers: Vec<Vec<(String, BatchAnswer)>> =
            futures::stream::iter(calls).buffered(credstore_core::BATCH_CONCURRENCY).try_collect().await?;
        read.extend(answers.into_iter().flatten());
        let mut out: Vec<Option<Credential>> = Vec::with_capacity(keys.len());
        // The keys the batch's answer does not settle: read one by one.
        let mut unsettled: Vec<(usize, CredentialKey)> = Vec::new();
        for (i, (key, name)) in keys.iter().zip(&names).enumerate() {
            match read.get(name.as_str()) {
                Some(BatchAnswer::Missing) => out.push(None),
                Some(BatchAnswer::Value(value)) => match self.shared.seen.get(name) {
                    // As `get`'s first step: a version this store knows, as
                    // `AWSCURRENT`, needs no `DescribeSecret`.
                    Some(known)
                        if value.version_id() == Some(known.version.as_str()) && is_current(value) =>
                    {
                        if known.envelope.expired(self.info.now()) {
                            out.push(None);
                        } else {
                            let copy = ValueRead(value.0.clone());
                            out.push(Some(self.credential_of_known(key, known, copy)?));
                        }
                    }
                    _ => {
                        out.push(None);
                        unsettled.push((i, key.clone()));
                    }
                },
                Some(BatchAnswer::Unsettled) | None => {
                    out.push(None);
                    unsettled.push((i, key.clone()));
                }
            }
        }
        drop(read);
        if !unsettled.is_empty() {
            let again: Vec<CredentialKey> = unsettled.iter().map(|(_, k)| k.clone()).collect();
            let answers = credstore_core::get_many_concurrently(self, &again).await?;
            for ((i, _), answer) in unsettled.into_iter().zip(answers) {
                out[i] = answer;
            }
        }
        Ok(out)
    }

    /// # Behavior
    /// - [`SetMode::Upsert`]: `UpdateSecret` with value and description in
    ///   one call. Alone when this store saw the secret's ARN and
    ///   creation-time tag in the last 30 s (it made, wrote or read the
    ///   key) and the update answers that ARN; otherwise after a
    ///   `DescribeSecret` (the description written keeps the version
    ///   overwritten, and the outcome's `created_at` comes from it). A
    ///   missing key is then created with `CreateSecret`; an expired one is
    ///   written over as new, through the staging label.
    /// - [`SetMode::Create`]: one `CreateSecret` (value, description and
    ///   creation-time tag; atomic, so of racing create-only writes exactly
    ///   one wins).
    /// - [`SetMode::Replace`]: `DescribeSecret` checks the version;
    ///   `PutSecretValue` stages the new version under the label
    ///   `credstore-staged`; `UpdateSecretVersionStage` moves `AWSCURRENT` to
    ///   it from the expected version (refused by the service if another
    ///   write moved it first); then `UpdateSecret` writes the description.
    /// - A secret scheduled for deletion is restored (`RestoreSecret`) and
    ///   overwritten as a new key; one still being purged after an immediate
    ///   delete is waited for (up to 30 s).
    ///
    /// # Errors
    /// [`Error::PreconditionFailed`] when the key exists (`Create`), or is
    /// missing or not at the given version (`Replace`); nothing is changed
    /// then (the staged version loses its label).
    async fn write(&self, request: &WriteRequest<'_>) -> Result<SetOutcome> {
        let (key, value, metadata, mode) =
            (request.key(), request.value(), request.metadata(), request.mode());
        let name = self.names.name(key);
        let payload = Payload::of(value);
        let empty = value.is_empty();
        let write = Write {
            key,
            name: &name,
            payload: &payload,
            metadata,
            empty,
            mode,
            expires_at: request.expires_at(),
        };
        if let Some(outcome) = self.write_fast(&write).await? {
            return Ok(outcome);
        }
        self.write_in_rounds(&write).await
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
        Version::new(view.visible).map(Some).map_err(|e| Error::backend(self.info.id(), e))
    }

    /// # Behavior
    /// `DescribeSecret`, then `DeleteSecret` as the [`DeletionPolicy`] says.
    /// Returns false for a missing secret or one already scheduled for
    /// deletion, and when another deleter got there first.
    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        let name = self.names.name(key);
        self.shared.seen.forget(&name);
        let State::Live(desc) = self.describe(&name).await? else { return Ok(false) };
        let now = self.info.now();
        let existed = View::of(self.info.id(), &name, &desc)?.is_some_and(|v| !v.expired(now));
        match self.delete_name(&name).await {
            Ok(()) => Ok(existed),
            Err(f) if f.is(Kind::NotFound) || f.is(Kind::InvalidRequest) => Ok(false),
            Err(f) => Err(f.error),
        }
    }

    /// # Behavior
    /// `DescribeSecret` (the labels and the description say which versions
    /// are kept), then `GetSecretValue` of that version id. Only the version
    /// `get` reads and the one `AWSPREVIOUS` is on, when the description
    /// kept what it was written with, are kept; any other is `None`.
    async fn get_version(&self, key: &CredentialKey, version: &Version) -> Result<Option<Credential>> {
        let name = self.names.name(key);
        let Some((desc, kept)) = self.kept_of(&name).await? else { return Ok(None) };
        let Some(k) = kept.into_iter().find(|k| k.id == version.as_str()) else { return Ok(None) };
        let mut out = match self.read_value(&name, Some(&k.id)).await {
            Ok(out) => out,
            Err(f) if f.is(Kind::NotFound) || f.is(Kind::InvalidRequest) => return Ok(None),
            Err(f) => return Err(f.error),
        };
        let value = self.value_read(key, k.empty, &mut out)?;
        let envelope = Envelope::decode(self.info.id(), &name, desc.description())?;
        let created_at = created_at_of(&desc, envelope.as_ref()).min(k.updated_at);
        Ok(Some(Credential {
            key: key.clone(),
            value,
            metadata: k.metadata,
            version: version.clone(),
            created_at,
            updated_at: k.updated_at,
            expires_at: k.expires_at,
        }))
    }

    /// # Behavior
    /// One `DescribeSecret`: the kept versions (at most two, see
    /// [`get_version`](CredentialStore::get_version)) with what the
    /// description says of them; no value is read.
    async fn list_versions(&self, key: &CredentialKey, options: &VersionListOptions) -> Result<VersionPage> {
        let name = self.names.name(key);
        let Some((_, kept)) = self.kept_of(&name).await? else { return Ok(VersionPage::default()) };
        let now = self.info.now();
        let mut infos = Vec::with_capacity(kept.len());
        for k in kept {
            let state = match (k.expires_at.is_some_and(|t| t <= now), k.current) {
                (true, _) => VersionState::Expired,
                (false, true) => VersionState::Current,
                (false, false) => VersionState::Previous,
            };
            let version = Version::new(k.id).map_err(|e| Error::backend(self.info.id(), e))?;
            infos.push(
                VersionInfo::new(version, state, k.updated_at)
                    .with_expires_at(k.expires_at)
                    .with_metadata(k.metadata),
            );
        }
        Ok(options.page_from_newest(infos))
    }

    /// # Behavior
    /// - `Key`: `DeleteSecret` with `ForceDeleteWithoutRecovery`, whatever
    ///   the [`DeletionPolicy`]: the secret and every version go at once.
    /// - `Version`: takes `AWSPREVIOUS` off that version
    ///   (`UpdateSecretVersionStage`), after which no read of this store
    ///   returns it. Secrets Manager has no call that destroys one version:
    ///   the unlabelled version stays in the service, readable by its id
    ///   with `secretsmanager:GetSecretValue`, until the service removes it
    ///   (see the crate docs, "History"); purge the key to destroy a value
    ///   for certain. The version `get` reads is refused, and so is the
    ///   version `AWSCURRENT` is on once it has expired (the label cannot
    ///   be taken off it alone: purge the key).
    async fn purge(&self, key: &CredentialKey, target: &PurgeTarget) -> Result<bool> {
        let name = self.names.name(key);
        self.shared.seen.forget(&name);
        match target {
            PurgeTarget::Key => {
                if let State::Missing = self.describe(&name).await? {
                    return Ok(false);
                }
                let req = self.client().delete_secret().secret_id(&name).force_delete_without_recovery(true);
                match req.send().await {
                    Ok(_) => Ok(true),
                    Err(e) => {
                        let f = self.fail("DeleteSecret", false, e);
                        if f.is(Kind::NotFound) {
                            Ok(false)
                        } else {
                            Err(f.error)
                        }
                    }
                }
            }
            PurgeTarget::Version(version) => {
                let Some((desc, kept)) = self.kept_of(&name).await? else { return Ok(false) };
                let current = kept.iter().find(|k| k.current).map(|k| k.id.clone());
                match kept.iter().find(|k| k.id == version.as_str()) {
                    Some(k) if k.current && k.expires_at.is_some_and(|t| t <= self.info.now()) => Err(self
                        .precondition(
                            key,
                            format!(
                                "version {version} has expired, but it is the one AWSCURRENT is on, which \
                                 Secrets Manager cannot take off a version alone; purge the key instead"
                            ),
                        )),
                    Some(k) if k.current => Err(self.precondition(
                        key,
                        format!(
                            "version {version} is the current version; write a new one first, then purge it"
                        ),
                    )),
                    Some(k) => {
                        let labels = desc.version_ids_to_stages().and_then(|m| m.get(&k.id));
                        let stray_current = labels.is_some_and(|l| l.iter().any(|l| l == CURRENT));
                        if let (true, Some(current)) = (stray_current, current) {
                            // moto leaves AWSCURRENT on it after a staged
                            // write: moved to the current version (which
                            // moves AWSPREVIOUS onto it, taken off below).
                            self.client()
                                .update_secret_version_stage()
                                .secret_id(&name)
                                .version_stage(CURRENT)
                                .move_to_version_id(current)
                                .remove_from_version_id(&k.id)
                                .send()
                                .await
                                .map_err(|e| self.fail("UpdateSecretVersionStage", false, e).error)?;
                        }
                        let req = self
                            .client()
                            .update_secret_version_stage()
                            .secret_id(&name)
                            .version_stage(PREVIOUS)
                            .remove_from_version_id(&k.id);
                        match req.send().await {
                            Ok(_) => Ok(true),
                            Err(e) => {
                                let f = self.fail("UpdateSecretVersionStage", false, e);
                                if f.is(Kind::NotFound) || f.is(Kind::InvalidRequest) {
                                    Ok(false)
                                } else {
                                    Err(f.error)
                                }
                            }
                        }
                    }
                    None => Ok(false),
                }
            }
            other => Err(Error::backend(self.info.id(), format!("purge of {other:?} is not supported"))),
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
                if self.expired_entry(entry) {
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
        Err(Error::backend(self.info.id(), "ListSecrets kept returning a next token"))
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
                "no answer from {} at {} within {:?}",
                self.target().service,
                self.target().endpoint,
                self.target().timeout
            )),
        }
    }
}

impl AwsStore {
    /// Whether a `ListSecrets` entry's current version has expired, by its
    /// description's envelope (a value another tool wrote never expires).
    fn expired_entry(&self, entry: &aws_sdk_secretsmanager::types::SecretListEntry) -> bool {
        let name = entry.name().unwrap_or_default();
        let Ok(Some(env)) = Envelope::decode(self.info.id(), name, entry.description()) else { return false };
        let current = current_of(entry.secret_versions_to_stages(), Some(&env.v));
        current == Some(env.v.as_str()) && env.expired(self.info.now())
    }

    /// The versions of a live secret this store keeps, newest first: the
    /// one it reads, then the one `AWSPREVIOUS` is on when the description
    /// kept what that version was written with.
    fn kept(&self, desc: &DescribeSecretOutput, view: &View) -> Vec<Kept> {
        let env = view.envelope.as_ref();
        let created_at = created_at_of(desc, env);
        let visible = match env.filter(|_| view.ours) {
            Some(env) => Kept {
                id: view.visible.clone(),
                metadata: env.m.clone(),
                updated_at: env.updated_at(),
                expires_at: env.expires_at(),
                empty: env.e,
                current: true,
            },
            None => Kept {
                id: view.visible.clone(),
                metadata: env.map(|e| e.m.clone()).unwrap_or_default(),
                updated_at: desc
                    .last_changed_date()
                    .and_then(to_system_time)
                    .unwrap_or(created_at)
                    .max(created_at),
                expires_at: None,
                empty: false,
                current: true,
            },
        };
        let mut kept = vec![visible];
        if view.in_flight() {
            return kept;
        }
        // The version a write moved AWSCURRENT from carries AWSPREVIOUS
        // (moto leaves it AWSCURRENT after a staged write: see `current_of`).
        let labelled = |id: &str| {
            id != view.current
                && desc
                    .version_ids_to_stages()
                    .and_then(|m| m.get(id))
                    .is_some_and(|labels| labels.iter().any(|l| l == PREVIOUS || l == CURRENT))
        };
        let previous = match env {
            Some(env) if view.ours => env.p.as_ref().filter(|p| labelled(&p.v)).cloned(),
            // A value another tool wrote over one of ours: ours is AWSPREVIOUS.
            Some(env) if labelled(&env.v) => Some(env.as_previous()),
            _ => None,
        };
        if let Some(p) = previous {
            kept.push(Kept {
                metadata: p.m.clone(),
                updated_at: p.updated_at(),
                expires_at: p.expires_at(),
                empty: p.e,
                current: false,
                id: p.v,
            });
        }
        kept
    }

    /// The kept versions of `name`, with its description, when it is live.
    async fn kept_of(&self, name: &str) -> Result<Option<(Box<DescribeSecretOutput>, Vec<Kept>)>> {
        let State::Live(desc) = self.describe(name).await? else { return Ok(None) };
        let Some(view) = View::of(self.info.id(), name, &desc)? else { return Ok(None) };
        let kept = self.kept(&desc, &view);
        Ok(Some((desc, kept)))
    }

    /// The fast paths of a write: one round trip for an overwrite or a
    /// create-only write, two for an upsert of a new key. `None` leaves the
    /// write to [`AwsStore::write_in_rounds`]: a secret scheduled for
    /// deletion or being purged, a create-only write over a key that exists,
    /// a replace.
    async fn write_fast(&self, write: &Write<'_>) -> Result<Option<SetOutcome>> {
        let Write { name, payload, metadata, empty, mode, .. } = *write;
        match mode {
            SetMode::Upsert => {
                for _ in 0..FAST_ROUNDS {
                    match self.upsert_in_one(name, payload, metadata, empty, write.expires_at).await? {
                        Fast::Done(outcome) => return Ok(Some(outcome)),
                        Fast::Slow => break,
                        Fast::Missing => {
                            match self.create_new(name, payload, metadata, empty, write.expires_at).await {
                                Ok(outcome) => return Ok(Some(outcome)),
                                // Created meanwhile by another writer: overwrite it.
                                Err(f) if f.is(Kind::Exists) => {}
                                Err(f) if f.is(Kind::InvalidRequest) => break,
                                Err(f) => return Err(f.error),
                            }
                        }
                    }
                }
                Ok(None)
            }
            SetMode::Create => {
                match self.create_new(name, payload, metadata, empty, write.expires_at).await {
                    Ok(outcome) => Ok(Some(outcome)),
                    // Exists, or scheduled for deletion: looked at in rounds.
                    Err(f) if f.is(Kind::Exists) || f.is(Kind::InvalidRequest) => Ok(None),
                    Err(f) => Err(f.error),
                }
            }
            _ => Ok(None),
        }
    }

    /// A write in rounds: each describes the secret and takes the step its
    /// state calls for, until one writes or fails for good, or
    /// [`WRITE_ROUNDS`] or the patience run out.
    async fn write_in_rounds(&self, write: &Write<'_>) -> Result<SetOutcome> {
        let started = Instant::now();
        let patience = WRITE_PATIENCE.max(self.abandoned_after() * 2);
        let mut rounds = Rounds::default();
        let mut pause = Duration::from_millis(20);
        let mut last: Option<Error> = None;
        for _ in 0..WRITE_ROUNDS {
            if started.elapsed() > patience {
                break;
            }
            let described = Instant::now();
            let round = match self.describe(write.name).await? {
                State::Missing => self.create_missing(write).await?,
                State::Deleted => self.restore_deleted(write, &mut rounds).await?,
                State::Live(desc) => match View::of(self.info.id(), write.name, &desc)? {
                    None => self.write_valueless(write).await?,
                    Some(view) => self.write_live(write, &desc, view, &mut rounds, described).await?,
                },
            };
            match round {
                Round::Done(outcome) => return Ok(outcome),
                Round::Now => {}
                Round::Later(error) => {
                    if error.is_some() {
                        last = error;
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::conflict(self.info.id(), format!("key '{}' kept changing while it was written", write.key))
        }))
    }

    /// A round on a missing key: create it.
    async fn create_missing(&self, write: &Write<'_>) -> Result<Round> {
        let Write { key, name, payload, metadata, empty, mode, .. } = *write;
        if let SetMode::Replace(_) = mode {
            return Err(self.precondition(key, "the key does not exist"));
        }
        match self.create_new(name, payload, metadata, empty, write.expires_at).await {
            Ok(outcome) => Ok(Round::Done(outcome)),
            // Another writer created it first.
            Err(f) if f.is(Kind::Exists) => match mode {
                SetMode::Create => Err(self.precondition(key, "the key exists")),
                _ => Ok(Round::Now),
            },
            // Real AWS: a secret being purged after an immediate delete.
            Err(f) if f.is(Kind::InvalidRequest) => Ok(Round::Later(Some(f.error))),
            Err(f) => Err(f.error),
        }
    }

    /// A round on a secret scheduled for deletion: restore it, so that the
    /// next round writes over it as a new key.
    async fn restore_deleted(&self, write: &Write<'_>, rounds: &mut Rounds) -> Result<Round> {
        let Write { key, name, mode, .. } = *write;
        if let SetMode::Replace(_) = mode {
            return Err(self.precondition(key, "the key does not exist"));
        }
        match self.client().restore_secret().secret_id(name).send().await {
            Ok(_) => {
                tracing::debug!(store = %self.info.id(), key = %key, "restored a secret scheduled for deletion to set it again");
                rounds.restored = true;
                Ok(Round::Now)
            }
            Err(e) => {
                let f = self.fail("RestoreSecret", false, e);
                match f.kind {
                    Kind::NotFound => Ok(Round::Now),
                    Kind::InvalidRequest => Ok(Round::Later(Some(f.error))),
                    _ => Err(f.error),
                }
            }
        }
    }

    /// A round on a secret made by another tool without a value (a key
    /// without a value is absent): tag its creation time, then write the
    /// value and the description in one `UpdateSecret`.
    async fn write_valueless(&self, write: &Write<'_>) -> Result<Round> {
        let Write { key, name, payload, metadata, empty, mode, expires_at } = *write;
        if let SetMode::Replace(_) = mode {
            return Err(self.precondition(key, "the key does not exist"));
        }
        let now = layout::next_updated_at();
        let version = layout::new_version_id();
        let env = Envelope::new(metadata, Some(now), now, version.clone(), empty).with_expires_at(expires_at);
        if let Err(f) = self.tag_created(name, now).await {
            return match f.kind {
                Kind::NotFound | Kind::InvalidRequest => Ok(Round::Now),
                _ => Err(f.error),
            };
        }
        match self.update_secret(name, payload, &env, true).await {
            Ok(_) => {
                let version = Version::new(version).map_err(|e| Error::backend(self.info.id(), e))?;
                Ok(Round::Done(SetOutcome { created: true, version, created_at: now, updated_at: now }))
            }
            Err(f) if f.is(Kind::NotFound) || f.is(Kind::InvalidRequest) => Ok(Round::Now),
            Err(f) => Err(f.error),
        }
    }

    /// A round on a live secret with a current version: let another write
    /// of ours between its two steps finish (unless it was abandoned), else
    /// write over the secret ([`AwsStore::write_over`]). A failed write over
    /// a secret this write restored deletes it again.
    async fn write_live(
        &self,
        write: &Write<'_>,
        desc: &DescribeSecretOutput,
        view: View,
        rounds: &mut Rounds,
        described: Instant,
    ) -> Result<Round> {
        let Write { key, name, mode, .. } = *write;
        if rounds.restored && rounds.restored_version.is_none() {
            rounds.restored_version = Some(view.current.clone());
        }
        let restored = rounds.restored_version.as_deref() == Some(view.current.as_str());
        let abandoned = match &rounds.in_flight {
            Some((seen, since)) if *seen == view => since.elapsed() > self.abandoned_after(),
            _ => false,
        };
        if view.in_flight() && !restored && matches!(mode, SetMode::Create) {
            // Exists whichever way the other write ends.
            return Err(self.precondition(key, "the key exists"));
        }
        if view.in_flight() && !restored && !abandoned {
            // Another write is between its two steps: let it finish.
            if rounds.in_flight.as_ref().is_none_or(|(seen, _)| *seen != view) {
                rounds.in_flight = Some((view, Instant::now()));
            }
            return Ok(Round::Later(None));
        }
        let round = self.write_over(write, desc, &view, restored, described).await;
        if let Err(e) = &round {
            if restored && !matches!(e, Error::PreconditionFailed { .. }) {
                self.undo_restore(key, name, &view).await;
            }
        }
        round
    }

    /// After a write over a secret this call restored failed: delete it
    /// again (best effort) if nothing else wrote it meanwhile, so that the
    /// old value does not come back.
    async fn undo_restore(&self, key: &CredentialKey, name: &str, view: &View) {
        let untouched = match self.describe(name).await {
            Ok(State::Live(d)) => {
                current_of(d.version_ids_to_stages(), Some(&view.current)) == Some(view.current.as_str())
            }
            _ => false,
        };
        if untouched {
            if let Err(undo) = self.delete_name(name).await {
                tracing::warn!(store = %self.info.id(), key = %key, error = %undo.error, "could not re-delete a restored secret after a failed set");
            }
        }
    }
}

/// Opening a store from its settings lives here, beside the store: the
/// settings (in `config`) know nothing of the store they open.
#[cfg(feature = "serde")]
impl crate::AwsSettings {
    /// Opens the store `id` with these settings, as
    /// [`AwsStore::from_env`](crate::AwsStore::from_env) with an
    /// [`AwsConfig`] holding them.
    ///
    /// # Behavior
    /// Loads the standard AWS chain for what the settings leave out (region,
    /// endpoint) and for the credentials, which the settings never hold: the
    /// process environment (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, ...), the
    /// shared config and credentials files, SSO, web identity, container and
    /// instance metadata. Credentials are resolved at the first request, so
    /// a broken chain shows up in the store's availability check, not here.
    /// `ctx` is not used: these settings name no file and no secret, and the
    /// chain reads the process environment itself, not `ctx`'s.
    ///
    /// # Errors
    /// [`Error::Config`](credstore_core::Error::Config) naming `id`: no
    /// region in the settings or the chain, or a setting is invalid (only
    /// possible for settings built in code rather than deserialized, which
    /// checks them).
    pub async fn open(
        self,
        id: StoreId,
        ctx: &credstore_core::config::ConfigContext,
    ) -> Result<crate::AwsStore> {
        let _ = ctx;
        crate::AwsStore::from_env(id, self.into_config()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stages(entries: &[(&str, &[&str])]) -> HashMap<String, Vec<String>> {
        entries
            .iter()
            .map(|(id, labels)| ((*id).to_owned(), labels.iter().map(|l| (*l).to_owned()).collect()))
            .collect()
    }

    #[test]
    fn a_value_read_is_moved_out_or_wiped() {
        fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let answer = || GetSecretValueOutput::builder().secret_string("s3cret").version_id("v1").build();
        let mut read = ValueRead(answer());
        zeroized_on_drop(&read);
        assert_eq!(read.take_value().unwrap().expose_str().unwrap(), "s3cret");
        assert!(read.secret_string().is_none() && read.take_value().is_none(), "moved, not copied");
        let mut unused = ValueRead(answer());
        unused.wipe();
        assert_eq!(unused.secret_string(), Some(""), "overwritten");
        let binary = GetSecretValueOutput::builder().secret_binary(Blob::new(vec![1, 2, 3])).build();
        let mut unused = ValueRead(binary);
        unused.wipe();
        assert!(unused.secret_binary().is_none());
        let binary = GetSecretValueOutput::builder().secret_binary(Blob::new(vec![0xff])).build();
        assert_eq!(ValueRead(binary).take_value().unwrap().expose_secret(), [0xff]);
    }

    #[test]
    fn the_current_version_is_the_described_one_when_the_label_shows_twice() {
        let one = stages(&[("b", &[CURRENT]), ("a", &[PREVIOUS])]);
        assert_eq!(current_of(Some(&one), None), Some("b"));
        assert_eq!(current_of(Some(&one), Some("a")), Some("b"), "a named version without the label");
        let twice = stages(&[("b", &[CURRENT, STAGED_LABEL]), ("c", &[CURRENT]), ("a", &[PREVIOUS])]);
        assert_eq!(current_of(Some(&twice), Some("c")), Some("c"));
        assert_eq!(current_of(Some(&twice), Some("b")), Some("b"));
        assert_eq!(current_of(Some(&twice), None), Some("b"), "else the first by id");
        assert_eq!(current_of(Some(&twice), Some("a")), Some("b"));
        assert_eq!(current_of(Some(&stages(&[("a", &[PREVIOUS])])), None), None);
        assert_eq!(current_of(None, Some("a")), None);
    }
}
