//! [`AwsConfig`]: the settings of an [`crate::AwsStore`].

use std::fmt;
use std::time::Duration;

use credstore_core::{Error, Result, SecretValue, StoreId};

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
    /// endpoint: a VPC endpoint, LocalStack, moto.
    pub fn endpoint_url(mut self, url: &str) -> Self {
        self.endpoint_url = Some(url.to_owned());
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
        if let Some(region) = &self.region {
            if !valid_region(region) {
                return Err(bad(format!(
                    "region {region:?} is not an AWS region name (lowercase letters, digits and '-', like us-east-1)"
                )));
            }
        }
        if let Some(url) = &self.endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < "http://x".len() {
                return Err(bad(format!("endpoint URL {url:?} must start with http:// or https://")));
            }
        }
        if let Some(key) = &self.kms_key_id {
            if key.is_empty() || key.len() > 2048 {
                return Err(bad("the KMS key id must be 1 to 2048 characters".into()));
            }
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
        if self.effective_timeout().is_zero() {
            return Err(bad("the timeout must be more than zero".into()));
        }
        if !(1..=20).contains(&self.effective_max_attempts()) {
            return Err(bad(format!(
                "max_attempts is {}; it must be 1 to 20",
                self.effective_max_attempts()
            )));
        }
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
fn valid_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 64
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !region.starts_with('-')
        && !region.ends_with('-')
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
        AwsConfig::new().region("us-gov-west-1").validate(&id()).unwrap();
    }
}
