//! [`AwsConfig`]: the settings of an [`crate::AwsStore`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use credstore_core::{Clock, Error, Result, SecretValue, StoreId};

use crate::layout;

/// The default bound on one Secrets Manager request, retries included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default number of attempts per request (the first one included).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// What `delete` does to a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeletionPolicy {
    /// Delete at once, without recovery (`ForceDeleteWithoutRecovery`). The
    /// default.
    #[default]
    Immediate,
    /// Schedule the deletion after this many days (7 to 30), during which the
    /// secret can be recovered with the AWS console or CLI. The key is gone
    /// for this store at once; setting it again restores the secret and
    /// overwrites it (see the crate docs).
    RecoveryWindow(u8),
}

/// Explicit static credentials.
#[derive(Clone)]
pub(crate) struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: SecretValue,
    pub session_token: Option<SecretValue>,
}

/// Settings of an [`crate::AwsStore`], built step by step.
///
/// `Debug` shows every setting except the secret access key and session
/// token, which are redacted.
///
/// ```
/// use std::time::Duration;
/// use credstore_aws::{AwsConfig, DeletionPolicy};
/// use credstore_core::SecretValue;
///
/// let config = AwsConfig::new()
///     .region("eu-west-1")
///     .prefix("prod/payments")
///     .tag("team", "payments")
///     .deletion(DeletionPolicy::RecoveryWindow(7))
///     .timeout(Duration::from_secs(5))
///     .max_attempts(4)
///     .static_credentials("AKIAEXAMPLE", SecretValue::from("wJalrXUtnFEMI"));
/// let shown = format!("{config:?}");
/// assert!(shown.contains("eu-west-1") && !shown.contains("wJalrXUtnFEMI"));
/// ```
#[derive(Clone, Default)]
pub struct AwsConfig {
    pub(crate) region: Option<String>,
    pub(crate) endpoint_url: Option<String>,
    pub(crate) prefix: String,
    pub(crate) kms_key_id: Option<String>,
    pub(crate) tags: Vec<(String, String)>,
    pub(crate) deletion: DeletionPolicy,
    pub(crate) timeout: Option<Duration>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) credentials: Option<StaticCredentials>,
    pub(crate) allow_insecure_http: bool,
    /// The clock expiry is decided by; the system's when `None`.
    pub(crate) clock: Option<Arc<dyn Clock>>,
}

impl AwsConfig {
    /// No settings yet: no region, no endpoint override, no prefix,
    /// [`DeletionPolicy::Immediate`], [`DEFAULT_TIMEOUT`],
    /// [`DEFAULT_MAX_ATTEMPTS`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The AWS region, such as `us-east-1`. Required by
    /// [`crate::AwsStore::new`]; overrides the environment's region in
    /// [`crate::AwsStore::from_env`].
    pub fn region(mut self, region: &str) -> Self {
        self.region = Some(region.to_owned());
        self
    }

    /// Sends requests to this URL instead of the region's Secrets Manager
    /// endpoint: a VPC endpoint, LocalStack, moto. A plain `http://` URL
    /// must name a loopback host (`127.0.0.0/8`, `[::1]`, `localhost`)
    /// unless [`AwsConfig::allow_insecure_http`] is set.
    pub fn endpoint_url(mut self, url: &str) -> Self {
        self.endpoint_url = Some(url.to_owned());
        self
    }

    /// Accepts an `http://` endpoint to a host that is not loopback, given
    /// here or by the AWS environment (`AWS_ENDPOINT_URL`, ...). Off by
    /// default: over plain HTTP every value read or written, and the
    /// session token, cross the network in the clear, so the store refuses
    /// such an endpoint before sending anything. Loopback endpoints (moto,
    /// LocalStack on the same host) need no setting.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Puts every secret of the store under a name prefix: key `k` is the
    /// secret `{prefix}/k`. The prefix follows the namespace rules (id-valid
    /// segments joined by `/`, such as `prod/payments`) and is at most 256
    /// bytes; a trailing `/` is dropped. Empty (the default) means keys are
    /// secret names as they are. Every byte of prefix is a byte less for
    /// namespaces: see [`crate::AwsStore::max_namespace_len`].
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.strip_suffix('/').unwrap_or(prefix).to_owned();
        self
    }

    /// Encrypts values with this KMS key (id, ARN or alias) instead of the
    /// account's `aws/secretsmanager` key.
    pub fn kms_key_id(mut self, key_id: &str) -> Self {
        self.kms_key_id = Some(key_id.to_owned());
        self
    }

    /// Adds a tag to every secret this store creates. Tags are for the AWS
    /// side (billing, IAM conditions); credential metadata is kept elsewhere.
    /// At most 49: the store adds `credstore-created` itself (see the crate
    /// docs, "Layout").
    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The clock the store decides expiry by (a credential written with
    /// `expires_at` reads as absent from then on): the system's unless
    /// given, a [`ManualClock`](credstore_core::ManualClock) in tests.
    /// Timestamps (`created_at`, `updated_at`) are not taken from it.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// What `delete` does; [`DeletionPolicy::Immediate`] by default.
    pub fn deletion(mut self, policy: DeletionPolicy) -> Self {
        self.deletion = policy;
        self
    }

    /// The most one Secrets Manager request may take, retries included
    /// ([`DEFAULT_TIMEOUT`] by default). Also bounds connecting and the
    /// availability probe.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How many attempts one request gets, the first included
    /// ([`DEFAULT_MAX_ATTEMPTS`] by default; 1 disables retries). Only
    /// retriable failures (throttling, 5xx, timeouts, connection errors) are
    /// retried, with jittered exponential backoff.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// Signs requests with these keys instead of the credential chain.
    pub fn static_credentials(mut self, access_key_id: &str, secret_access_key: SecretValue) -> Self {
        let session_token = self.credentials.and_then(|c| c.session_token);
        self.credentials = Some(StaticCredentials {
            access_key_id: access_key_id.to_owned(),
            secret_access_key,
            session_token,
        });
        self
    }

    /// A session token to go with [`AwsConfig::static_credentials`]
    /// (temporary credentials). Ignored without static credentials.
    pub fn session_token(mut self, token: SecretValue) -> Self {
        if let Some(creds) = self.credentials.as_mut() {
            creds.session_token = Some(token);
        }
        self
    }

    pub(crate) fn effective_timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    pub(crate) fn effective_max_attempts(&self) -> u32 {
        self.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS)
    }

    /// Checks every setting that can be checked without I/O.
    pub(crate) fn validate(&self, store: &StoreId) -> Result<()> {
        let bad = |reason: String| Error::config(store, reason);
        layout::check_prefix(&self.prefix).map_err(|e| bad(format!("prefix: {e}")).with_source(e))?;
        let named = |field: &str, check: std::result::Result<(), String>| {
            check.map_err(|reason| bad(format!("{field}: {reason}")))
        };
        if let Some(region) = &self.region {
            named("region", check_region(region))?;
        }
        if let Some(url) = &self.endpoint_url {
            named("endpoint URL", check_endpoint(url))?;
            named("endpoint URL", check_cleartext(url, self.allow_insecure_http))?;
        }
        if let Some(key) = &self.kms_key_id {
            named("KMS key id", check_kms_key_id(key))?;
        }
        if self.tags.len() > 49 {
            return Err(bad(format!(
                "{} tags given; a secret takes at most 50, and this store adds `{}`",
                self.tags.len(),
                layout::CREATED_TAG
            )));
        }
        for (k, v) in &self.tags {
            if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
                return Err(bad(format!("tag {k:?}: keys take 1 to 128 characters, values at most 256")));
            }
            if k.to_ascii_lowercase().starts_with("aws:") {
                return Err(bad(format!("tag {k:?}: the aws: prefix is reserved by AWS")));
            }
            if k == layout::CREATED_TAG {
                return Err(bad(format!("tag {k:?}: this store writes that tag itself (creation times)")));
            }
        }
        if let DeletionPolicy::RecoveryWindow(days) = self.deletion {
            if !(7..=30).contains(&days) {
                return Err(bad(format!("a recovery window of {days} days; it must be 7 to 30")));
            }
        }
        named("timeout", check_timeout(self.effective_timeout()))?;
        named("max_attempts", check_max_attempts(self.effective_max_attempts()))?;
        if let Some(creds) = &self.credentials {
            if creds.access_key_id.is_empty() || creds.secret_access_key.is_empty() {
                return Err(bad(
                    "static credentials need a non-empty access key id and secret access key".into()
                ));
            }
            let binary = !creds.secret_access_key.is_text()
                || creds.session_token.as_ref().is_some_and(|t| !t.is_text());
            if binary {
                return Err(bad("the secret access key and session token must be text".into()));
            }
        }
        Ok(())
    }
}

/// `us-east-1`, `eu-central-2`, `us-gov-west-1`, `cn-north-1`: lowercase
/// letters, digits and inner dashes. Whether the region exists is for the
/// availability probe to find out.
fn check_region(region: &str) -> std::result::Result<(), String> {
    let valid = !region.is_empty()
        && region.len() <= 64
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{region:?} is not an AWS region name (lowercase letters, digits and '-', like us-east-1)"
        ))
    }
}

fn check_endpoint(url: &str) -> std::result::Result<(), String> {
    if (url.starts_with("http://") || url.starts_with("https://")) && url.len() >= "http://x".len() {
        Ok(())
    } else {
        Err(format!("{url:?} must start with http:// or https:// and name a host"))
    }
}

/// Refuses a plain `http://` endpoint to a host that is not loopback
/// (`127.0.0.0/8`, `::1`, `localhost`) unless `allowed`. What does not parse
/// as a URL is left to the other checks (and the SDK).
pub(crate) fn check_cleartext(endpoint: &str, allowed: bool) -> std::result::Result<(), String> {
    let Ok(url) = url::Url::parse(endpoint) else { return Ok(()) };
    let loopback = url.host_str().is_some_and(credstore_core::config::is_loopback_host);
    if url.scheme() != "http" || loopback || allowed {
        Ok(())
    } else {
        Err(format!(
            "{endpoint:?} is plain http:// to a host that is not loopback: values and the session token \
             would cross the network in the clear; use https://, or set allow_insecure_http if the path \
             is otherwise protected"
        ))
    }
}

pub(crate) fn check_kms_key_id(key: &str) -> std::result::Result<(), String> {
    if key.is_empty() || key.len() > 2048 {
        Err("must be 1 to 2048 characters".into())
    } else {
        Ok(())
    }
}

fn check_timeout(timeout: Duration) -> std::result::Result<(), String> {
    if timeout.is_zero() {
        Err("must be more than zero".into())
    } else {
        Ok(())
    }
}

fn check_max_attempts(attempts: u32) -> std::result::Result<(), String> {
    if (1..=20).contains(&attempts) {
        Ok(())
    } else {
        Err(format!("must be 1 to 20, not {attempts}"))
    }
}

/// The settings of one AWS Secrets Manager store as a configuration file
/// holds them: one `[[stores]]` table of `credstore-server` without its
/// `id`, `type` and `cache`, which the server reads itself. Every field is
/// optional. Credentials come from the standard AWS chain (environment,
/// profile, SSO, web identity, instance or container role); never from the
/// config file.
///
/// ```toml
/// region = "eu-west-1"          # default: from the AWS environment
/// endpoint = "https://vpce-0123.secretsmanager.eu-west-1.vpce.amazonaws.com"
/// prefix = "prod/payments"      # secret names are prefix/key
/// kms_key_id = "alias/payments" # default: the account's aws/secretsmanager key
/// timeout_ms = 5000             # per request, retries included; default 10000
/// max_attempts = 3              # per request, the first included; 1 to 20
/// allow_insecure_http = false   # accept an http:// endpoint to a host that is not loopback
/// ```
///
/// Deserializing checks every field as [`AwsStore::from_env`] would, and
/// refuses a bad one with a message naming it; unknown fields are refused
/// too:
///
/// ```
/// use credstore_aws::AwsSettings;
/// use credstore_core::config::ConfigContext;
/// use credstore_core::StoreId;
///
/// let settings: AwsSettings = toml::from_str(
///     r#"
///     region = "eu-west-1"
///     prefix = "prod/payments"
///     timeout_ms = 5000
///     "#,
/// )
/// .expect("valid settings");
/// assert_eq!(settings.region.as_deref(), Some("eu-west-1"));
/// assert_eq!((settings.timeout_ms, settings.max_attempts), (Some(5000), None));
///
/// let err = toml::from_str::<AwsSettings>("timeout_ms = 0").unwrap_err();
/// assert!(err.to_string().contains("timeout_ms: must be more than zero"), "{err}");
/// assert!(toml::from_str::<AwsSettings>("secret_access_key = \"x\"").is_err());
/// // Plain HTTP only to a loopback host, unless allowed.
/// let err = toml::from_str::<AwsSettings>("endpoint = \"http://sm.internal\"").unwrap_err();
/// assert!(err.to_string().contains("allow_insecure_http"), "{err}");
/// toml::from_str::<AwsSettings>("endpoint = \"http://127.0.0.1:4566\"").expect("loopback");
///
/// // Opening loads the AWS chain (environment, profile files); no request
/// // is sent until the store's first operation.
/// async fn open(settings: AwsSettings) -> credstore_core::Result<credstore_aws::AwsStore> {
///     settings.open(StoreId::new("aws-prod")?, &ConfigContext::new("/etc/credstore")).await
/// }
/// ```
///
/// [`AwsStore::from_env`]: crate::AwsStore::from_env
#[cfg(feature = "serde")]
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "de::Fields")]
pub struct AwsSettings {
    /// The region, such as `eu-west-1`; default from the AWS environment.
    pub region: Option<String>,
    /// An endpoint URL to use instead of AWS's (a VPC endpoint, LocalStack,
    /// moto): `https://`, or `http://` to a loopback host (`127.0.0.0/8`,
    /// `[::1]`, `localhost`) unless `allow_insecure_http` is set.
    pub endpoint: Option<String>,
    /// A prefix of every secret name this store manages (`prod/payments`):
    /// key `k` is the secret `prod/payments/k`. Segments follow the
    /// namespace rules, at most 256 bytes; a trailing `/` is dropped.
    /// Default: none, keys are secret names.
    pub prefix: Option<String>,
    /// A KMS key (id, ARN or alias) to encrypt values with; default the
    /// account's `aws/secretsmanager` key.
    pub kms_key_id: Option<String>,
    /// Timeout of one request, retries included, in milliseconds; more than
    /// zero. Default [`DEFAULT_TIMEOUT`].
    pub timeout_ms: Option<u64>,
    /// Attempts per request, the first included: 1 to 20. Default
    /// [`DEFAULT_MAX_ATTEMPTS`].
    pub max_attempts: Option<u32>,
    /// Accept a plain `http://` endpoint to a host that is not loopback
    /// (see [`AwsConfig::allow_insecure_http`]). Default `false`.
    pub allow_insecure_http: bool,
}

#[cfg(feature = "serde")]
impl AwsSettings {
    /// The [`AwsConfig`] holding these settings.
    pub(crate) fn into_config(self) -> AwsConfig {
        let mut config = connection_config(
            self.region.as_deref(),
            self.endpoint.as_deref(),
            self.timeout_ms,
            self.max_attempts,
            self.allow_insecure_http,
        );
        if let Some(prefix) = &self.prefix {
            config = config.prefix(prefix);
        }
        if let Some(key) = &self.kms_key_id {
            config = config.kms_key_id(key);
        }
        config
    }
}

/// An [`AwsConfig`] of the connection settings every AWS settings type
/// shares (the store's and the KMS provider's): region, endpoint, timeout,
/// attempts and plain HTTP.
#[cfg(feature = "serde")]
pub(crate) fn connection_config(
    region: Option<&str>,
    endpoint: Option<&str>,
    timeout_ms: Option<u64>,
    max_attempts: Option<u32>,
    allow_insecure_http: bool,
) -> AwsConfig {
    let mut config = AwsConfig::new();
    if let Some(region) = region {
        config = config.region(region);
    }
    if let Some(url) = endpoint {
        config = config.endpoint_url(url);
    }
    if let Some(ms) = timeout_ms {
        config = config.timeout(Duration::from_millis(ms));
    }
    if let Some(attempts) = max_attempts {
        config = config.max_attempts(attempts);
    }
    config.allow_insecure_http(allow_insecure_http)
}

/// The field checks of [`AwsSettings`]: each reads the field and refuses
/// what [`AwsConfig::validate`] would, with a message that starts with the
/// field's name.
#[cfg(feature = "serde")]
pub(crate) mod de {
    use std::time::Duration;

    use serde::de::{Deserializer, Error as _};
    use serde::Deserialize;

    fn checked<'de, D, T>(
        d: D,
        field: &str,
        check: impl FnOnce(&T) -> std::result::Result<(), String>,
    ) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        let value = T::deserialize(d)?;
        check(&value).map_err(|reason| D::Error::custom(format!("{field}: {reason}")))?;
        Ok(Some(value))
    }

    pub(crate) fn region<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        checked(d, "region", |r: &String| super::check_region(r))
    }

    pub(crate) fn endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        checked(d, "endpoint", |u: &String| super::check_endpoint(u))
    }

    pub(super) fn prefix<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        checked(d, "prefix", |p: &String| {
            let p = p.strip_suffix('/').unwrap_or(p);
            crate::layout::check_prefix(p).map_err(|e| match e {
                credstore_core::Error::InvalidNamespace { shown, reason } => format!("{shown} {reason}"),
                other => other.to_string(),
            })
        })
    }

    pub(super) fn kms_key_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        checked(d, "kms_key_id", |k: &String| super::check_kms_key_id(k))
    }

    pub(crate) fn timeout_ms<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        checked(d, "timeout_ms", |ms: &u64| super::check_timeout(Duration::from_millis(*ms)))
    }

    pub(crate) fn max_attempts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
        checked(d, "max_attempts", |n: &u32| super::check_max_attempts(*n))
    }

    /// The fields as read, each checked alone; [`super::AwsSettings`] is
    /// made from them once the checks that take two fields pass.
    /// The fields of a config file's table, also filled from a URI by
    /// [`crate::AwsScheme`] (whose values `AwsConfig::validate` checks when
    /// the store opens, before any I/O).
    #[derive(Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct Fields {
        #[serde(default, deserialize_with = "region")]
        pub(crate) region: Option<String>,
        #[serde(default, deserialize_with = "endpoint")]
        pub(crate) endpoint: Option<String>,
        #[serde(default, deserialize_with = "prefix")]
        pub(crate) prefix: Option<String>,
        #[serde(default, deserialize_with = "kms_key_id")]
        pub(crate) kms_key_id: Option<String>,
        #[serde(default, deserialize_with = "timeout_ms")]
        pub(crate) timeout_ms: Option<u64>,
        #[serde(default, deserialize_with = "max_attempts")]
        pub(crate) max_attempts: Option<u32>,
        #[serde(default)]
        pub(crate) allow_insecure_http: bool,
    }

    impl TryFrom<Fields> for super::AwsSettings {
        type Error = String;

        fn try_from(f: Fields) -> Result<Self, String> {
            if let Some(url) = &f.endpoint {
                super::check_cleartext(url, f.allow_insecure_http)
                    .map_err(|why| format!("endpoint: {why}"))?;
            }
            Ok(Self {
                region: f.region,
                endpoint: f.endpoint,
                prefix: f.prefix,
                kms_key_id: f.kms_key_id,
                timeout_ms: f.timeout_ms,
                max_attempts: f.max_attempts,
                allow_insecure_http: f.allow_insecure_http,
            })
        }
    }
}

impl fmt::Debug for AwsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsConfig")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("prefix", &self.prefix)
            .field("kms_key_id", &self.kms_key_id)
            .field("tags", &self.tags)
            .field("deletion", &self.deletion)
            .field("timeout", &self.effective_timeout())
            .field("max_attempts", &self.effective_max_attempts())
            .field("credentials", &self.credentials)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish()
    }
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[REDACTED]")
            .field("session_token", &self.session_token.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> StoreId {
        StoreId::new("aws-test").unwrap()
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = AwsConfig::new()
            .static_credentials("AKIDVISIBLE", SecretValue::from("very-secret-key"))
            .session_token(SecretValue::from("session-token-secret"));
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDVISIBLE"), "{shown}");
        assert!(!shown.contains("very-secret-key") && !shown.contains("session-token-secret"), "{shown}");
    }

    #[test]
    fn validation() {
        let ok = AwsConfig::new().region("us-east-1").prefix("a/b/");
        assert_eq!(ok.prefix, "a/b");
        ok.validate(&id()).unwrap();
        for bad in [
            AwsConfig::new().region("US East"),
            AwsConfig::new().prefix("a b"),
            AwsConfig::new().endpoint_url("localhost:4566"),
            AwsConfig::new().deletion(DeletionPolicy::RecoveryWindow(3)),
            AwsConfig::new().deletion(DeletionPolicy::RecoveryWindow(31)),
            AwsConfig::new().timeout(Duration::ZERO),
            AwsConfig::new().max_attempts(0),
            AwsConfig::new().tag("aws:reserved", "x"),
            AwsConfig::new().tag("", "x"),
            AwsConfig::new().static_credentials("", SecretValue::from("x")),
            AwsConfig::new().static_credentials("AKID", SecretValue::from(vec![0xff])),
        ] {
            let err = bad.validate(&id()).unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{err}");
        }
        AwsConfig::new().deletion(DeletionPolicy::RecoveryWindow(7)).validate(&id()).unwrap();
        for loopback in
            ["http://127.0.0.1:4566", "http://127.9.9.9", "http://[::1]:4566", "http://localhost:4566"]
        {
            AwsConfig::new().endpoint_url(loopback).validate(&id()).unwrap();
        }
        AwsConfig::new()
            .endpoint_url("https://vpce-1.secretsmanager.eu-west-1.vpce.amazonaws.com")
            .validate(&id())
            .unwrap();
        AwsConfig::new().region("us-gov-west-1").validate(&id()).unwrap();
        let err = AwsConfig::new().max_attempts(21).validate(&id()).unwrap_err();
        assert!(err.to_string().contains("max_attempts: must be 1 to 20, not 21"), "{err}");
    }

    #[test]
    fn plain_http_to_a_host_that_is_not_loopback_needs_allow_insecure_http() {
        for endpoint in [
            "http://secretsmanager.internal:4566",
            "http://10.0.0.5:4566",
            "http://[2001:db8::1]:4566",
            "http://localhost.example.com",
        ] {
            let config = AwsConfig::new().endpoint_url(endpoint);
            let err = config.validate(&id()).expect_err(endpoint);
            assert!(matches!(&err, Error::Config { store, .. } if store == &id()), "{endpoint}: {err:?}");
            let text = err.to_string();
            assert!(text.contains("endpoint URL") && text.contains("allow_insecure_http"), "{text}");
            config.allow_insecure_http(true).validate(&id()).unwrap();
        }
    }

    #[cfg(feature = "serde")]
    mod settings {
        use super::*;

        fn parse(text: &str) -> std::result::Result<AwsSettings, String> {
            toml::from_str::<AwsSettings>(text).map_err(|e| e.to_string())
        }

        #[test]
        fn every_field_deserializes_and_reaches_the_config() {
            let settings = parse(
                r#"
                region = "eu-west-1"
                endpoint = "http://127.0.0.1:4566"
                prefix = "prod/payments/"
                kms_key_id = "alias/payments"
                timeout_ms = 2500
                max_attempts = 4
                "#,
            )
            .unwrap();
            assert_eq!(
                settings,
                AwsSettings {
                    region: Some("eu-west-1".into()),
                    endpoint: Some("http://127.0.0.1:4566".into()),
                    prefix: Some("prod/payments/".into()),
                    kms_key_id: Some("alias/payments".into()),
                    timeout_ms: Some(2500),
                    max_attempts: Some(4),
                    allow_insecure_http: false,
                }
            );
            let config = settings.into_config();
            assert_eq!(config.region.as_deref(), Some("eu-west-1"));
            assert_eq!(config.endpoint_url.as_deref(), Some("http://127.0.0.1:4566"));
            assert_eq!(config.prefix, "prod/payments", "the trailing / is dropped");
            assert_eq!(config.kms_key_id.as_deref(), Some("alias/payments"));
            assert_eq!(config.effective_timeout(), Duration::from_millis(2500));
            assert_eq!(config.effective_max_attempts(), 4);
            assert!(config.credentials.is_none(), "credentials come from the chain");
            config.validate(&id()).unwrap();

            let empty = parse("").unwrap();
            assert_eq!(
                empty,
                AwsSettings {
                    region: None,
                    endpoint: None,
                    prefix: None,
                    kms_key_id: None,
                    timeout_ms: None,
                    max_attempts: None,
                    allow_insecure_http: false,
                }
            );
            let config = empty.into_config();
            assert_eq!((config.region.as_deref(), config.prefix.as_str()), (None, ""));
            assert_eq!(config.effective_timeout(), DEFAULT_TIMEOUT);
            assert_eq!(config.effective_max_attempts(), DEFAULT_MAX_ATTEMPTS);
        }

        /// As a server reads it: the `[[stores]]` table as a TOML table,
        /// its own keys taken out, the rest deserialized directly (through
        /// `#[serde(flatten)]`, serde would hand the struct only the fields
        /// it names, so unknown ones would pass unseen).
        #[test]
        fn a_stores_table_less_the_servers_keys_deserializes() {
            let file: toml::Table = toml::from_str(
                r#"
                [[stores]]
                id = "aws-prod"
                type = "aws-secrets-manager"
                cache = { ttl_ms = 1000 }
                region = "eu-west-1"
                max_attempts = 2

                [[stores]]
                id = "aws-typo"
                type = "aws-secrets-manager"
                regoin = "eu-west-1"
                "#,
            )
            .unwrap();
            let stores = file["stores"].as_array().unwrap();
            let settings = |i: usize| {
                let mut table = stores[i].as_table().unwrap().clone();
                for key in ["id", "type", "cache"] {
                    table.remove(key);
                }
                table.try_into::<AwsSettings>().map_err(|e| e.to_string())
            };
            let prod = settings(0).unwrap();
            assert_eq!((prod.region.as_deref(), prod.max_attempts), (Some("eu-west-1"), Some(2)));
            let err = settings(1).unwrap_err();
            assert!(err.contains("unknown field `regoin`"), "{err}");
        }

        #[test]
        fn unknown_fields_are_refused() {
            for field in ["secret_access_key = \"x\"", "id = \"aws\"", "cache = {}", "regoin = \"eu-west-1\""]
            {
                let err = parse(field).unwrap_err();
                assert!(err.contains("unknown field"), "{field}: {err}");
            }
        }

        #[test]
        fn bad_values_are_refused_naming_the_field() {
            for (text, expected) in [
                ("region = \"US East\"", "region: \"US East\" is not an AWS region name"),
                ("region = \"\"", "region: \"\" is not an AWS region name"),
                ("endpoint = \"localhost:4566\"", "endpoint: \"localhost:4566\" must start with http://"),
                ("endpoint = \"http://\"", "endpoint: \"http://\" must start with http://"),
                (
                    "endpoint = \"http://sm.internal:4566\"",
                    "endpoint: \"http://sm.internal:4566\" is plain http://",
                ),
                ("prefix = \"a b\"", "prefix: \"a b\" segment 0 breaks the id rules"),
                ("prefix = \"a//b\"", "prefix: "),
                ("kms_key_id = \"\"", "kms_key_id: must be 1 to 2048 characters"),
                ("timeout_ms = 0", "timeout_ms: must be more than zero"),
                ("max_attempts = 0", "max_attempts: must be 1 to 20, not 0"),
                ("max_attempts = 21", "max_attempts: must be 1 to 20, not 21"),
                ("timeout_ms = -1", "timeout_ms"),
                ("max_attempts = \"3\"", "max_attempts"),
            ] {
                let err = parse(text).unwrap_err();
                assert!(err.contains(expected), "{text}: {err}");
            }
            let long = format!("prefix = \"{}\"", "p".repeat(257));
            assert!(parse(&long).unwrap_err().contains("prefix: "));
            // What deserializing accepts, the store accepts.
            let allowed =
                parse("endpoint = \"http://sm.internal:4566\"\nallow_insecure_http = true").unwrap();
            assert!(allowed.allow_insecure_http);
            allowed.into_config().validate(&id()).unwrap();
            let longest = format!("prefix = \"{}/{}\"", "a".repeat(128), "b".repeat(127));
            parse(&longest).unwrap().into_config().validate(&id()).unwrap();
        }
    }
}
