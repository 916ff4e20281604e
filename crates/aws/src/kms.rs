//! [`KmsKeyProvider`]: an AWS KMS key as the key-encryption key (KEK) of an
//! encrypting store (see the crate docs, "AWS KMS as the key-encryption
//! key").

use std::fmt;

use async_trait::async_trait;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use credstore_core::{Error, Result, StoreId};
use credstore_seal::{wrong_key, DataKey, KeyLocation, KeyProvider, ProviderInfo, WrapContext, WrappedKey};
use zeroize::Zeroizing;

use crate::errors::{AwsError, Target};
use crate::AwsConfig;

/// The [`ProviderInfo::kind`] of a [`KmsKeyProvider`], recorded in a
/// store's key record: `aws-kms`.
pub const KMS_PROVIDER_KIND: &str = "aws-kms";

/// The first byte of a wrapped data key this provider writes: the version
/// of its layout (see the crate docs, "AWS KMS as the key-encryption key").
const LAYOUT_VERSION: u8 = 1;

/// The codes that mean the key cannot do this, whatever the data key: it
/// does not exist, is disabled or pending deletion, or is not a symmetric
/// encryption key.
const KEY_UNUSABLE: &[&str] = &[
    "NotFoundException",
    "DisabledException",
    "KMSInvalidStateException",
    "InvalidKeyUsageException",
    "UnsupportedOperationException",
    "InvalidArnException",
];

/// The codes KMS documents as worth retrying.
const KMS_UNAVAILABLE: &[&str] =
    &["KeyUnavailableException", "DependencyTimeoutException", "KMSInternalException"];

/// The codes of a ciphertext the key did not wrap, or wrapped for another
/// encryption context (another store uid, another key version).
const NOT_THIS_KEY: &[&str] = &["IncorrectKeyException", "InvalidCiphertextException"];

/// The codes of a caller the key's policy or IAM refuses.
const DENIED: &[&str] = &["AccessDeniedException", "AccessDenied"];

/// A [`KeyProvider`] whose key-encryption key is an AWS KMS key: the data
/// key is wrapped with one KMS `Encrypt` and unwrapped with one `Decrypt`,
/// both bound to the store by the encryption context
/// ([`WrapContext::pairs`]). The key never leaves KMS.
///
/// Built from an [`AwsConfig`] for the connection (region, endpoint,
/// credentials, timeout, attempts; its prefix, tags, deletion policy and
/// `kms_key_id` are not used), or from `KmsKeySettings` (the `serde`
/// feature). Every call is bounded by [`AwsConfig::timeout`], retries
/// included, and retried at most [`AwsConfig::max_attempts`] times, only
/// when retriable.
///
/// `Debug` shows the key, region, endpoint and timeout; never credentials.
///
/// ```
/// use credstore_aws::{AwsConfig, KmsKeyProvider};
/// use credstore_core::{SecretValue, StoreId};
/// use credstore_seal::{KeyLocation, KeyProvider};
///
/// # fn main() -> credstore_core::Result<()> {
/// // Explicit settings: nothing is read from the environment, nothing is sent yet.
/// let kek = KmsKeyProvider::new(
///     &StoreId::new("team")?,
///     "alias/credstore",
///     &AwsConfig::new()
///         .region("eu-west-1")
///         .static_credentials("AKIAIOSFODNN7EXAMPLE", SecretValue::from("wJalrXUtnFEMI/K7MDENG")),
/// )?;
/// assert_eq!((kek.info().kind(), kek.info().key_ref()), ("aws-kms", "alias/credstore"));
/// assert_eq!(kek.info().location(), &KeyLocation::Remote);
/// assert!(!format!("{kek:?}").contains("wJalrXUtnFEMI"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct KmsKeyProvider {
    info: ProviderInfo,
    key_id: String,
    /// The key id `key_id` names when it is a key id or key ARN (not an
    /// alias): what a wrapped data key's recorded key is checked against
    /// before any request.
    key_uuid: Option<String>,
    client: aws_sdk_kms::Client,
    target: Target,
}

impl KmsKeyProvider {
    /// A provider of the KMS key `key_id` (a key id, key ARN, alias name
    /// `alias/...` or alias ARN), from explicit settings only: `config`
    /// must give a region and [`AwsConfig::static_credentials`]. Nothing is
    /// read from the environment, profiles or instance metadata, and
    /// nothing is sent until the first wrap or unwrap. `store` is the store
    /// it serves, named in errors.
    ///
    /// # Errors
    /// [`Error::Config`] naming `store` when the key id is empty, longer
    /// than 2048 characters or holds whitespace; when the region or the
    /// credentials are missing; when a setting of `config` is invalid (see
    /// [`crate::AwsStore::new`]).
    pub fn new(store: &StoreId, key_id: &str, config: &AwsConfig) -> Result<Self> {
        check(store, key_id, config)?;
        let connection = crate::client::explicit(
            store,
            config,
            crate::client::KMS,
            "KmsKeyProvider::new",
            "KmsKeyProvider::from_env",
        )?;
        Ok(Self::assemble(key_id, crate::client::kms(&connection), connection.target))
    }

    /// A provider of the KMS key `key_id` configured by the standard AWS
    /// chain (environment variables, shared config and credentials files,
    /// SSO, web identity, container and instance metadata), as
    /// [`crate::AwsStore::from_env`]; every setting given in `config` takes
    /// precedence over the chain's. An endpoint from the environment is
    /// `AWS_ENDPOINT_URL_KMS`, else `AWS_ENDPOINT_URL`.
    ///
    /// # Errors
    /// As [`KmsKeyProvider::new`], less the static credentials; no region in
    /// `config` or the chain; a plain `http://` endpoint from the
    /// environment to a host that is not loopback, without
    /// [`AwsConfig::allow_insecure_http`].
    pub async fn from_env(store: &StoreId, key_id: &str, config: &AwsConfig) -> Result<Self> {
        check(store, key_id, config)?;
        let connection = crate::client::from_env(store, config, crate::client::KMS).await?;
        Ok(Self::assemble(key_id, crate::client::kms(&connection), connection.target))
    }

    fn assemble(key_id: &str, client: aws_sdk_kms::Client, target: Target) -> Self {
        Self {
            info: ProviderInfo::new(KMS_PROVIDER_KIND, key_id, KeyLocation::Remote),
            key_id: key_id.to_owned(),
            key_uuid: key_uuid(key_id).map(str::to_owned),
            client,
            target,
        }
    }

    /// The KMS key, as given (key id, key ARN, alias name or alias ARN).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The endpoint requests go to, as messages name it.
    pub fn endpoint(&self) -> &str {
        &self.target.endpoint
    }

    /// Translates a failed `operation`. `wrapped_by` is the key ARN a
    /// wrapped data key records, for `Decrypt`.
    fn failure<E>(
        &self,
        context: &WrapContext<'_>,
        operation: &'static str,
        wrapped_by: Option<&str>,
        err: SdkError<E, HttpResponse>,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let store = context.store();
        let target = Target { store: store.clone(), ..self.target.clone() };
        let (code, message) = (err.code().map(str::to_owned), err.message().map(str::to_owned));
        let status = err.raw_response().map(|r| r.status().as_u16());
        let Some(code_str) = code.as_deref() else {
            // Timeouts, connection failures, redirects, unreadable answers:
            // as the store's own requests. `Encrypt` carries the data key.
            return crate::errors::translate(&target, operation, operation == "Encrypt", err).error;
        };
        let is = |codes: &[&str]| codes.contains(&code_str);
        let what = match &message {
            Some(m) => format!("{code_str}: {m}"),
            None => code_str.to_owned(),
        };
        let key = &self.key_id;
        let error = if is(NOT_THIS_KEY) && operation == "Decrypt" {
            let by = wrapped_by.filter(|arn| !arn.is_empty()).map(|arn| format!(", wrapped by {arn}"));
            wrong_key(
                context,
                &self.info,
                format_args!("KMS refused {operation}{}: {what}", by.unwrap_or_default()),
            )
        } else if is(KEY_UNUSABLE) {
            Error::config(
                store,
                format!(
                    "the KMS key {key} cannot be used for {operation} ({what}): it must exist in region {}, be \
                     enabled, and be a symmetric encryption key",
                    self.target.region
                ),
            )
        } else if is(KMS_UNAVAILABLE) {
            Error::unavailable(
                store,
                format!("AWS KMS at {} could not serve {operation} now ({what})", self.target.endpoint),
            )
        } else if is(DENIED) {
            let hint = match wrapped_by.filter(|arn| !arn.is_empty()) {
                Some(arn) => format!(
                    "; the data key was wrapped by {arn}: key_id must name that key, and the caller needs \
                     kms:{operation} on it"
                ),
                None => format!("; the caller needs kms:{operation} on the key"),
            };
            Error::permission_denied(
                store,
                format!("access denied to {operation} with KMS key {key} ({what}){hint}"),
            )
        } else {
            return crate::errors::translate(&target, operation, operation == "Encrypt", err).error;
        };
        error.with_source(AwsError::new(operation, code, message, status))
    }
}

/// The checks made before any I/O.
fn check(store: &StoreId, key_id: &str, config: &AwsConfig) -> Result<()> {
    check_key_id(key_id).map_err(|reason| Error::config(store, format!("KMS key id: {reason}")))?;
    config.validate(store)
}

/// A key id, key ARN, alias name or alias ARN: 1 to 2048 characters, no
/// whitespace or control character. Whether the key exists is for KMS.
fn check_key_id(key_id: &str) -> std::result::Result<(), String> {
    crate::config::check_kms_key_id(key_id)?;
    if key_id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{key_id:?} holds whitespace or a control character"));
    }
    Ok(())
}

/// The key id a key id or key ARN names (`None` for an alias, whose key
/// only KMS knows).
fn key_uuid(key_id: &str) -> Option<&str> {
    if key_id.starts_with("arn:") {
        key_id.split_once(":key/").map(|(_, id)| id)
    } else if key_id.starts_with("alias/") {
        None
    } else {
        Some(key_id)
    }
}

/// The wrapped data key's bytes: the layout version, the key ARN KMS
/// answered (u16 BE length and UTF-8), the ciphertext blob.
fn encode(key_arn: &str, blob: &[u8]) -> Option<Vec<u8>> {
    let arn_len = u16::try_from(key_arn.len()).ok()?;
    let mut out = Vec::with_capacity(3 + key_arn.len() + blob.len());
    out.push(LAYOUT_VERSION);
    out.extend_from_slice(&arn_len.to_be_bytes());
    out.extend_from_slice(key_arn.as_bytes());
    out.extend_from_slice(blob);
    Some(out)
}

/// The key ARN and ciphertext blob of a wrapped data key; `None` when the
/// bytes are not that layout.
fn decode(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let (&version, rest) = bytes.split_first()?;
    if version != LAYOUT_VERSION {
        return None;
    }
    let arn_len = usize::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?));
    let arn = std::str::from_utf8(rest.get(2..2 + arn_len)?).ok()?;
    let blob = rest.get(2 + arn_len..)?;
    (!blob.is_empty()).then_some((arn, blob))
}

#[async_trait]
impl KeyProvider for KmsKeyProvider {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    /// One KMS `Encrypt` of the data key's 32 bytes under the key, with the
    /// encryption context of `context`.
    async fn wrap(&self, key: &DataKey, context: &WrapContext<'_>) -> Result<WrappedKey> {
        // The request takes its own copy of the key, which the SDK encodes
        // and sends and does not wipe (see the crate docs, "What stays in
        // memory").
        let mut request =
            self.client.encrypt().key_id(&self.key_id).plaintext(Blob::new(key.expose_secret().to_vec()));
        for (name, value) in context.pairs() {
            request = request.encryption_context(name, value);
        }
        let out = request.send().await.map_err(|e| self.failure(context, "Encrypt", None, e))?;
        let bad_answer =
            |what: String| Error::backend(context.store(), AwsError::new("Encrypt", None, Some(what), None));
        let blob = out.ciphertext_blob.map(Blob::into_inner).unwrap_or_default();
        if blob.is_empty() {
            return Err(bad_answer("the answer holds no CiphertextBlob".into()));
        }
        let bytes = encode(out.key_id.as_deref().unwrap_or_default(), &blob)
            .ok_or_else(|| bad_answer("the answer's KeyId is longer than 65535 bytes".into()))?;
        WrappedKey::new(bytes)
            .map_err(|e| bad_answer(format!("the answer's ciphertext cannot be stored: {e}")))
    }

    /// One KMS `Decrypt` of the wrapped data key with the provider's key id
    /// (so a ciphertext of another key is refused) and the encryption
    /// context of `context`. A data key wrapped by another key, when the
    /// provider names its key by id or key ARN, is refused before any
    /// request.
    async fn unwrap(&self, wrapped: &WrappedKey, context: &WrapContext<'_>) -> Result<DataKey> {
        let Some((wrapped_by, blob)) = decode(wrapped.as_bytes()) else {
            return Err(wrong_key(
                context,
                &self.info,
                "the wrapped data key is not in the layout this provider writes: a damaged or edited key record",
            ));
        };
        if let (Some(mine), Some(theirs)) = (&self.key_uuid, key_uuid(wrapped_by)) {
            if !wrapped_by.is_empty() && mine != theirs {
                return Err(wrong_key(context, &self.info, format_args!("it was wrapped by {wrapped_by}")));
            }
        }
        let mut request = self.client.decrypt().key_id(&self.key_id).ciphertext_blob(Blob::new(blob));
        for (name, value) in context.pairs() {
            request = request.encryption_context(name, value);
        }
        let mut out =
            request.send().await.map_err(|e| self.failure(context, "Decrypt", Some(wrapped_by), e))?;
        // Moved, not copied, out of the answer into a buffer wiped on drop.
        let plaintext = Zeroizing::new(out.plaintext.take().map(Blob::into_inner).unwrap_or_default());
        drop(out);
        DataKey::from_slice(&plaintext).ok_or_else(|| {
            Error::backend(
                context.store(),
                AwsError::new(
                    "Decrypt",
                    None,
                    Some(format!("the answer holds {} bytes, not a 32-byte data key", plaintext.len())),
                    None,
                ),
            )
        })
    }
}

impl fmt::Debug for KmsKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmsKeyProvider")
            .field("key_id", &self.key_id)
            .field("region", &self.target.region)
            .field("endpoint", &self.target.endpoint)
            .field("timeout", &self.target.timeout)
            .finish_non_exhaustive()
    }
}

/// The settings of a [`KmsKeyProvider`] as a configuration file holds them:
/// a store's `key = { provider = "aws-kms", ... }` table without its
/// `provider`, which the server reads itself. Only `key_id` is required.
/// Credentials come from the standard AWS chain (environment, profile, SSO,
/// web identity, instance or container role); never from the config file.
///
/// ```toml
/// key_id = "alias/credstore"  # key id, key ARN, alias name or alias ARN
/// region = "eu-west-1"        # default: from the AWS environment
/// endpoint = "https://vpce-0123-kms.kms.eu-west-1.vpce.amazonaws.com"
/// timeout_ms = 5000           # per call, retries included; default 10000
/// max_attempts = 3            # per call, the first included; 1 to 20
/// allow_insecure_http = false # accept an http:// endpoint to a host that is not loopback
/// ```
///
/// Deserializing checks every field as [`KmsKeyProvider::from_env`] would,
/// and refuses a bad one with a message naming it; unknown fields are
/// refused too:
///
/// ```
/// use credstore_aws::KmsKeySettings;
///
/// let settings: KmsKeySettings =
///     toml::from_str("key_id = \"alias/credstore\"\nregion = \"eu-west-1\"").expect("valid settings");
/// assert_eq!(settings.key_id, "alias/credstore");
/// let err = toml::from_str::<KmsKeySettings>("region = \"eu-west-1\"").unwrap_err();
/// assert!(err.to_string().contains("missing field `key_id`"), "{err}");
/// let err = toml::from_str::<KmsKeySettings>("key_id = \"\"").unwrap_err();
/// assert!(err.to_string().contains("key_id: must be 1 to 2048 characters"), "{err}");
/// assert!(toml::from_str::<KmsKeySettings>("key_id = \"k\"\nsecret_access_key = \"x\"").is_err());
/// ```
#[cfg(feature = "serde")]
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "de::Fields")]
pub struct KmsKeySettings {
    /// The KMS key: a key id, key ARN, alias name (`alias/credstore`) or
    /// alias ARN. Required.
    pub key_id: String,
    /// The region, such as `eu-west-1`; default from the AWS environment.
    /// A key ARN names its own region; give the same one.
    pub region: Option<String>,
    /// An endpoint URL to use instead of AWS's (a VPC endpoint, moto,
    /// LocalStack): `https://`, or `http://` to a loopback host unless
    /// `allow_insecure_http` is set.
    pub endpoint: Option<String>,
    /// Timeout of one call, retries included, in milliseconds; more than
    /// zero. Default [`crate::DEFAULT_TIMEOUT`].
    pub timeout_ms: Option<u64>,
    /// Attempts per call, the first included: 1 to 20. Default
    /// [`crate::DEFAULT_MAX_ATTEMPTS`].
    pub max_attempts: Option<u32>,
    /// Accept a plain `http://` endpoint to a host that is not loopback
    /// (see [`AwsConfig::allow_insecure_http`]). Default `false`.
    pub allow_insecure_http: bool,
}

#[cfg(feature = "serde")]
impl KmsKeySettings {
    /// The [`AwsConfig`] holding the connection settings.
    fn into_config(self) -> (String, AwsConfig) {
        let config = crate::config::connection_config(
            self.region.as_deref(),
            self.endpoint.as_deref(),
            self.timeout_ms,
            self.max_attempts,
            self.allow_insecure_http,
        );
        (self.key_id, config)
    }

    /// The provider of these settings for the store `store`, as
    /// [`KmsKeyProvider::from_env`] with an [`AwsConfig`] holding them.
    ///
    /// # Behavior
    /// Loads the standard AWS chain for what the settings leave out (region,
    /// endpoint) and for the credentials, which the settings never hold.
    /// Credentials are resolved at the first call, so a broken chain shows
    /// up at the first unwrap, not here. `ctx` is not used: these settings
    /// name no file and no secret.
    ///
    /// # Errors
    /// [`Error::Config`] naming `store`: no region in the settings or the
    /// chain, or a setting is invalid (only possible for settings built in
    /// code rather than deserialized, which checks them).
    pub async fn open(
        self,
        store: &StoreId,
        ctx: &credstore_core::config::ConfigContext,
    ) -> Result<KmsKeyProvider> {
        let _ = ctx;
        let (key_id, config) = self.into_config();
        KmsKeyProvider::from_env(store, &key_id, &config).await
    }
}

/// The field checks of [`KmsKeySettings`], as [`crate::AwsSettings`]'s.
#[cfg(feature = "serde")]
mod de {
    use serde::de::{Deserializer, Error as _};
    use serde::Deserialize;

    use crate::config::de::{endpoint, max_attempts, region, timeout_ms};

    fn key_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let value = String::deserialize(d)?;
        super::check_key_id(&value).map_err(|reason| D::Error::custom(format!("key_id: {reason}")))?;
        Ok(value)
    }

    /// The fields as read, each checked alone.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Fields {
        #[serde(deserialize_with = "key_id")]
        key_id: String,
        #[serde(default, deserialize_with = "region")]
        region: Option<String>,
        #[serde(default, deserialize_with = "endpoint")]
        endpoint: Option<String>,
        #[serde(default, deserialize_with = "timeout_ms")]
        timeout_ms: Option<u64>,
        #[serde(default, deserialize_with = "max_attempts")]
        max_attempts: Option<u32>,
        #[serde(default)]
        allow_insecure_http: bool,
    }

    impl TryFrom<Fields> for super::KmsKeySettings {
        type Error = String;

        fn try_from(f: Fields) -> Result<Self, String> {
            if let Some(url) = &f.endpoint {
                crate::config::check_cleartext(url, f.allow_insecure_http)
                    .map_err(|why| format!("endpoint: {why}"))?;
            }
            Ok(Self {
                key_id: f.key_id,
                region: f.region,
                endpoint: f.endpoint,
                timeout_ms: f.timeout_ms,
                max_attempts: f.max_attempts,
                allow_insecure_http: f.allow_insecure_http,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrapped_layout_round_trips_and_refuses_what_it_did_not_write() {
        let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let bytes = encode(arn, b"blob").unwrap();
        assert_eq!(bytes[0], LAYOUT_VERSION);
        assert_eq!(decode(&bytes), Some((arn, &b"blob"[..])));
        assert_eq!(decode(&encode("", b"b").unwrap()), Some(("", &b"b"[..])));
        for cut in 0..bytes.len() - 4 {
            assert_eq!(decode(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut other = bytes.clone();
        other[0] = 2;
        assert_eq!(decode(&other), None, "another layout version");
        assert_eq!(decode(&encode(arn, b"").unwrap()), None, "no ciphertext");
    }

    #[test]
    fn key_ids_and_key_arns_name_a_key_aliases_do_not() {
        let id = "1234abcd-12ab-34cd-56ef-1234567890ab";
        assert_eq!(key_uuid(id), Some(id));
        assert_eq!(key_uuid(&format!("arn:aws:kms:us-east-1:111122223333:key/{id}")), Some(id));
        assert_eq!(
            key_uuid("mrk-1234abcd12ab34cd56ef1234567890ab"),
            Some("mrk-1234abcd12ab34cd56ef1234567890ab")
        );
        assert_eq!(key_uuid("alias/credstore"), None);
        assert_eq!(key_uuid("arn:aws:kms:us-east-1:111122223333:alias/credstore"), None);
    }

    #[test]
    fn bad_key_ids_are_refused_before_any_io() {
        let store = StoreId::new("s").unwrap();
        let config = AwsConfig::new().region("us-east-1").static_credentials("AKID", "secret".into());
        for bad in ["", "alias/with space", "key\n", &"k".repeat(2049)] {
            let err = KmsKeyProvider::new(&store, bad, &config).unwrap_err();
            assert!(matches!(&err, Error::Config { .. }) && err.to_string().contains("KMS key id"), "{err}");
        }
        let err = KmsKeyProvider::new(&store, "alias/k", &AwsConfig::new().region("us-east-1")).unwrap_err();
        assert!(err.to_string().contains("KmsKeyProvider::new needs static credentials"), "{err}");
        let err = KmsKeyProvider::new(&store, "alias/k", &config.clone().endpoint_url("http://kms.internal"))
            .unwrap_err();
        assert!(err.to_string().contains("allow_insecure_http"), "{err}");
    }

    #[cfg(feature = "serde")]
    mod settings {
        use super::*;

        fn parse(text: &str) -> std::result::Result<KmsKeySettings, String> {
            toml::from_str::<KmsKeySettings>(text).map_err(|e| e.to_string())
        }

        #[test]
        fn every_field_deserializes_and_reaches_the_config() {
            let settings = parse(
                r#"
                key_id = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
                region = "eu-west-1"
                endpoint = "http://127.0.0.1:4566"
                timeout_ms = 2500
                max_attempts = 4
                "#,
            )
            .unwrap();
            assert_eq!(settings.region.as_deref(), Some("eu-west-1"));
            let (key_id, config) = settings.clone().into_config();
            assert!(key_id.ends_with(":key/1234abcd-12ab-34cd-56ef-1234567890ab"));
            assert_eq!(config.region.as_deref(), Some("eu-west-1"));
            assert_eq!(config.endpoint_url.as_deref(), Some("http://127.0.0.1:4566"));
            assert_eq!(config.effective_timeout(), std::time::Duration::from_millis(2500));
            assert_eq!(config.effective_max_attempts(), 4);
            assert!(config.credentials.is_none(), "credentials come from the chain");
            let (_, defaults) = parse("key_id = \"alias/k\"").unwrap().into_config();
            assert_eq!(defaults.effective_timeout(), crate::DEFAULT_TIMEOUT);
            assert_eq!(defaults.effective_max_attempts(), crate::DEFAULT_MAX_ATTEMPTS);
        }

        #[test]
        fn bad_and_unknown_fields_are_refused_naming_the_field() {
            for (text, expected) in [
                ("region = \"eu-west-1\"", "missing field `key_id`"),
                ("key_id = \"\"", "key_id: must be 1 to 2048 characters"),
                ("key_id = \"alias/a b\"", "key_id: \"alias/a b\" holds whitespace"),
                ("key_id = \"k\"\nregion = \"US East\"", "region: \"US East\" is not an AWS region name"),
                ("key_id = \"k\"\nendpoint = \"http://kms.internal\"", "allow_insecure_http"),
                ("key_id = \"k\"\ntimeout_ms = 0", "timeout_ms: must be more than zero"),
                ("key_id = \"k\"\nmax_attempts = 21", "max_attempts: must be 1 to 20, not 21"),
                ("key_id = \"k\"\nsecret_access_key = \"x\"", "unknown field `secret_access_key`"),
                ("key_id = \"k\"\nprovider = \"aws-kms\"", "unknown field `provider`"),
            ] {
                let err = parse(text).unwrap_err();
                assert!(err.contains(expected), "{text}: {err}");
            }
            parse("key_id = \"k\"\nendpoint = \"http://kms.internal\"\nallow_insecure_http = true").unwrap();
        }

        /// As a server may read a store's `key` table: an enum tagged by
        /// `provider`, whose `aws-kms` variant is these settings.
        #[test]
        fn a_key_table_tagged_by_provider_deserializes_into_the_settings() {
            #[derive(Debug, serde::Deserialize)]
            #[serde(tag = "provider")]
            enum Key {
                #[serde(rename = "aws-kms")]
                AwsKms(KmsKeySettings),
            }
            #[derive(Debug, serde::Deserialize)]
            struct Store {
                key: Key,
            }
            let store: Store = toml::from_str(
                "key = { provider = \"aws-kms\", key_id = \"alias/k\", region = \"eu-west-1\" }",
            )
            .unwrap();
            let Key::AwsKms(settings) = store.key;
            assert_eq!(
                (settings.key_id.as_str(), settings.region.as_deref()),
                ("alias/k", Some("eu-west-1"))
            );
            let err =
                toml::from_str::<Store>("key = { provider = \"aws-kms\", key_id = \"k\", regoin = \"x\" }")
                    .unwrap_err();
            assert!(err.to_string().contains("unknown field `regoin`"), "{err}");
        }
    }
}
