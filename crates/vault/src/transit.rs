//! [`TransitKeyProvider`]: a store's key-encryption key kept in a Vault /
//! OpenBao Transit key, which wraps and unwraps the store's data key and
//! never hands its own key out.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use credstore_core::{async_trait, Error, Result, StoreId};
use credstore_seal::{wrong_key, DataKey, KeyLocation, KeyProvider, ProviderInfo, WrapContext, WrappedKey};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::client::{connect, errors_of, Connection};
use crate::errors::{Cause, Ctx, Failure};
use crate::layout::{scrub, validate_path};
use crate::VaultConfig;

/// The kind of [`TransitKeyProvider`] in a [`ProviderInfo`] and a store's
/// key record: `vault-transit`.
pub const TRANSIT_KIND: &str = "vault-transit";

/// The mount of the Transit secrets engine when none is given: `transit`.
pub const DEFAULT_TRANSIT_MOUNT: &str = "transit";

/// The longest Transit key name accepted, in bytes.
const MAX_KEY_NAME: usize = 255;

/// A store's key-encryption key (KEK) in a Vault or OpenBao Transit key: a
/// [`KeyProvider`] whose `wrap` is one `POST {mount}/encrypt/{key}` of the
/// data key and whose `unwrap` is one `POST {mount}/decrypt/{key}`, on the
/// same client as [`VaultStore`](crate::VaultStore) (address, TLS, token,
/// AppRole or JWT login, Vault namespace, timeout, no redirects).
///
/// The data key is bound to its store: every call sends Transit's
/// `associated_data`, the [`WrapContext::associated_data`] of the store's
/// uid and data key version, which the AEAD key types authenticate (the
/// default `aes256-gcm96`, `aes128-gcm96`, `chacha20-poly1305`). A key
/// record copied into another store, or given another key version, does
/// not unwrap. A key of another type (RSA, ...) is refused by the server
/// and the call fails with [`Error::Config`].
///
/// # Errors
/// As [`KeyProvider`]'s, naming the store of the [`WrapContext`]:
/// - [`Error::Unavailable`] (retriable): connection refused, no answer
///   within the timeout, sealed, standby, HTTP 429 or 5xx;
/// - [`Error::PermissionDenied`]: HTTP 403, a login refused;
/// - [`Error::Config`]: the mount or key does not exist, the key cannot
///   take associated data, the wrapped key is below the key's
///   `min_decryption_version`, a redirect; and
///   [`wrong_key`](credstore_seal::wrong_key) (its message starts with
///   `wrong key-encryption key`) for a wrapped key this Transit key did not
///   wrap for this store and key version ("cipher: message authentication
///   failed"), or that is no Transit ciphertext at all (refused before any
///   request);
/// - [`Error::Backend`]: any other answer.
///
/// Retries are bounded (3 attempts) and only for retriable failures; the
/// whole call, retries included, runs under the configured timeout.
///
/// # Secrets in memory
/// The request body that carries the data key (base64) is a zeroizing
/// buffer, wiped once sent; the raw body of a decrypt answer is wiped, and
/// the plaintext is moved out of the parsed answer, decoded into a zeroizing
/// buffer and wiped. The HTTP stack's own buffers are as the crate docs say
/// ("What stays in memory").
///
/// `Debug` shows the address, mount, key and login method, never a token.
///
/// ```no_run
/// use credstore_core::{SecretValue, StoreId};
/// use credstore_seal::{DataKey, KeyRecord, StoreUid};
/// use credstore_vault::{TransitKeyProvider, VaultConfig, DEFAULT_TRANSIT_MOUNT};
///
/// # async fn demo() -> credstore_core::Result<()> {
/// let config = VaultConfig::new("https://vault.example.com:8200").token(SecretValue::from("hvs.example"));
/// let kek = TransitKeyProvider::new(&config, DEFAULT_TRANSIT_MOUNT, "credstore")?;
/// let store = StoreId::new("team")?;
/// let record = KeyRecord::wrap(&store, StoreUid::generate(), 1, &DataKey::generate(), &kek).await?;
/// let dek = record.unwrap(&store, &kek).await?; // one request
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TransitKeyProvider {
    conn: Arc<Connection>,
    key: Arc<str>,
    info: ProviderInfo,
}

impl TransitKeyProvider {
    /// The provider of the Transit key `key` on the Transit mount `mount`
    /// ([`DEFAULT_TRANSIT_MOUNT`] unless the engine is mounted elsewhere) of
    /// the server `config` names. `config`'s address, login, Vault
    /// namespace, TLS settings and timeout are used; its KV mount and path
    /// prefix are not.
    ///
    /// # Behavior
    /// No request is sent: the key's existence is checked by the first
    /// wrap or unwrap. An AppRole or JWT login happens on first use and is
    /// renewed as a store's is.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `mount` or `key` when the mount is
    /// not a path (segments of `[a-zA-Z0-9-_.]`) or the key is not a Transit
    /// key name (letters, digits, `_`, `-` and `.`, beginning and ending with
    /// a letter, digit or `_`, at most 255 bytes); on field `vault` for what
    /// [`VaultStore::new`](crate::VaultStore::new) refuses in `config` (an
    /// address that is not an `http(s)` URL or is cleartext to a host that
    /// is not loopback, a token that is not text, a zero timeout, an
    /// unreadable CA file). No message holds a token.
    pub fn new(config: &VaultConfig, mount: &str, key: &str) -> Result<Self> {
        Self::build(config, mount, key)
            .map_err(|(field, reason)| Error::InvalidInput { field: field.into(), reason })
    }

    fn build(
        config: &VaultConfig,
        mount: &str,
        key: &str,
    ) -> std::result::Result<Self, (&'static str, String)> {
        let mount = check_mount(mount).map_err(|e| ("mount", e))?;
        check_key_name(key).map_err(|e| ("key", e))?;
        let conn = connect(config, mount.clone()).map_err(|e| ("vault", e))?;
        let info = ProviderInfo::new(TRANSIT_KIND, format!("{mount}/{key}"), KeyLocation::Remote);
        Ok(Self { conn: Arc::new(conn), key: Arc::from(key), info })
    }

    /// The Transit key's name.
    pub fn key_name(&self) -> &str {
        &self.key
    }

    /// The Transit mount.
    pub fn mount(&self) -> &str {
        &self.conn.mount
    }

    /// The server's address.
    pub fn address(&self) -> &str {
        &self.conn.address
    }

    fn ctx<'a>(&'a self, store: &'a StoreId) -> Ctx<'a> {
        Ctx { store, address: &self.conn.address, mount: &self.conn.mount, timeout: self.conn.timeout }
    }

    /// The key as messages name it.
    fn place(&self) -> String {
        format!("Transit key '{}' on mount '{}' at {}", self.key, self.conn.mount, self.conn.address)
    }

    /// Runs one wrap or unwrap under the timeout, retries included.
    async fn run<T>(
        &self,
        ctx: &Ctx<'_>,
        op: &'static str,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        let result = tokio::time::timeout(self.conn.timeout, fut)
            .await
            .unwrap_or_else(|_| Err(ctx.error(ctx.timed_out(), None)));
        if let Err(e) = &result {
            tracing::debug!(store = %ctx.store, op, key = %self.info, error = %e, "vault transit call failed");
        }
        result
    }

    /// One `POST {mount}/{action}/{key}` of `body`, retried as the client
    /// retries: the answer's `data` and `warnings` (HTTP 200) or its errors
    /// (HTTP 400, which Transit answers for a key or ciphertext it refuses).
    async fn post(&self, ctx: &Ctx<'_>, action: &str, body: bytes::Bytes) -> Result<Answer> {
        let path = format!("{}/{action}/{}", self.conn.mount, self.key);
        let (conn, path) = (&self.conn, path.as_str());
        let answer = conn
            .call(ctx, |session| {
                let body = body.clone();
                async move {
                    let (status, mut answer) = conn.raw_post(ctx, path, body, &session).await?;
                    let errors = errors_of(&answer);
                    let data = answer.get_mut("data").map(Value::take).unwrap_or_default();
                    let warnings: Vec<String> = answer["warnings"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|w| w.as_str().map(str::to_owned)).collect())
                        .unwrap_or_default();
                    scrub(answer);
                    match status {
                        200 => Ok(Answer::Data { data, warnings }),
                        400 => {
                            scrub(data);
                            Ok(Answer::Refused(errors.unwrap_or_default()))
                        }
                        other => {
                            scrub(data);
                            Err(ctx.status(other, errors.as_deref()))
                        }
                    }
                }
            })
            .await;
        answer.map_err(|f: Failure| ctx.error(f, None))
    }

    /// The error for a request Transit refused with HTTP 400.
    fn refused(&self, context: &WrapContext<'_>, unwrapping: bool, errors: &[String]) -> Error {
        let store = context.store();
        let said = if errors.is_empty() { "no detail".to_owned() } else { errors.join("; ") };
        let lower = said.to_ascii_lowercase();
        let cause = Cause::new(format!("HTTP 400: {said}"));
        let place = self.place();
        let error = if lower.contains("encryption key not found") {
            Error::config(store, format!("{place} does not exist"))
        } else if lower.contains("non-aead") {
            Error::config(
                store,
                format!(
                    "{place} cannot bind associated data ({said}): use a key of type aes256-gcm96 (the \
                     default), aes128-gcm96 or chacha20-poly1305"
                ),
            )
        } else if lower.contains("disallowed by policy") {
            Error::config(
                store,
                format!(
                    "the data key was wrapped by a version of {place} below the key's \
                     min_decryption_version ({said}): lower min_decryption_version, unwrap, and rewrap \
                     the data key (a key-encryption key rotation) before raising it again"
                ),
            )
        } else if unwrapping
            && (lower.contains("message authentication failed") || lower.contains("invalid ciphertext"))
        {
            wrong_key(context, &self.info, format_args!("Transit answered: {said}"))
        } else {
            return Error::backend(
                store,
                Cause::new(format!("vault answered HTTP 400: {said}")).with_source(Some(cause)),
            );
        };
        error.with_source(cause)
    }
}

/// What Transit answered a request it handled.
enum Answer {
    /// HTTP 200: the answer's `data` and its `warnings`.
    Data { data: Value, warnings: Vec<String> },
    /// HTTP 400: the server's errors.
    Refused(Vec<String>),
}

#[async_trait]
impl KeyProvider for TransitKeyProvider {
    /// Kind `vault-transit`, key `{mount}/{key}`, [`KeyLocation::Remote`].
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    /// One `POST {mount}/encrypt/{key}` of the data key (base64) with the
    /// context as `associated_data`; the wrapped key is Transit's ciphertext
    /// (`vault:v1:...`).
    async fn wrap(&self, key: &DataKey, context: &WrapContext<'_>) -> Result<WrappedKey> {
        let ctx = self.ctx(context.store());
        self.run(&ctx, "wrap", async {
            let body = encrypt_body(key, context);
            let (mut data, warnings) = match self.post(&ctx, "encrypt", body).await? {
                Answer::Data { data, warnings } => (data, warnings),
                Answer::Refused(errors) => return Err(self.refused(context, false, &errors)),
            };
            if let Some(ignored) = warnings.iter().find(|w| w.contains("associated_data")) {
                scrub(data);
                return Err(Error::config(
                    context.store(),
                    format!(
                        "vault at {} ignored associated_data ({ignored}): its Transit cannot bind the data \
                         key to its store; use a server whose Transit takes associated_data (OpenBao 2 \
                         does)",
                        self.conn.address
                    ),
                ));
            }
            let ciphertext = data.get_mut("ciphertext").map(Value::take);
            scrub(data);
            match ciphertext {
                Some(Value::String(c)) if is_transit_ciphertext(&c) => WrappedKey::new(c.into_bytes()),
                _ => Err(Error::backend(
                    context.store(),
                    Cause::new(format!("{} answered the encrypt without a Transit ciphertext", self.place())),
                )),
            }
        })
        .await
    }

    /// One `POST {mount}/decrypt/{key}` of the wrapped key with the context
    /// as `associated_data`. A wrapped key that is no Transit ciphertext is
    /// [`wrong_key`] without a request.
    async fn unwrap(&self, wrapped: &WrappedKey, context: &WrapContext<'_>) -> Result<DataKey> {
        let ciphertext = std::str::from_utf8(wrapped.as_bytes()).ok().filter(|c| is_transit_ciphertext(c));
        let Some(ciphertext) = ciphertext else {
            return Err(wrong_key(context, &self.info, "it is not a Transit ciphertext"));
        };
        let ctx = self.ctx(context.store());
        self.run(&ctx, "unwrap", async {
            let ad = BASE64.encode(context.associated_data());
            // Neither holds a character JSON escapes (checked, and base64).
            let body = format!(r#"{{"ciphertext":"{ciphertext}","associated_data":"{ad}"}}"#);
            let mut data = match self.post(&ctx, "decrypt", bytes::Bytes::from(body)).await? {
                Answer::Data { data, .. } => data,
                Answer::Refused(errors) => return Err(self.refused(context, true, &errors)),
            };
            let plaintext = match data.get_mut("plaintext").map(Value::take) {
                Some(Value::String(p)) => Zeroizing::new(p),
                _ => Zeroizing::new(String::new()),
            };
            scrub(data);
            decode_data_key(&plaintext).ok_or_else(|| {
                Error::backend(
                    context.store(),
                    Cause::new(format!("{} answered the decrypt without a 32-byte data key", self.place())),
                )
            })
        })
        .await
    }
}

impl fmt::Debug for TransitKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransitKeyProvider")
            .field("address", &self.conn.address)
            .field("mount", &self.conn.mount)
            .field("key", &self.key)
            .field("auth", &self.conn.auth_method())
            .finish_non_exhaustive()
    }
}

/// The encrypt request's body, `{"plaintext": "<base64 of the data key>",
/// "associated_data": "<base64>"}`, in a buffer wiped once the request is
/// sent (or dropped).
fn encrypt_body(key: &DataKey, context: &WrapContext<'_>) -> bytes::Bytes {
    const HEAD: &[u8] = br#"{"plaintext":""#;
    const MIDDLE: &[u8] = br#"","associated_data":""#;
    const TAIL: &[u8] = br#""}"#;
    let ad = BASE64.encode(context.associated_data());
    let mut encoded = Zeroizing::new([0u8; 44]);
    let n = BASE64.encode_slice(key.expose_secret(), &mut encoded[..]).unwrap_or(0);
    // Sized once: no reallocation leaves a copy behind.
    let mut body = Zeroizing::new(Vec::with_capacity(HEAD.len() + n + MIDDLE.len() + ad.len() + TAIL.len()));
    for part in [HEAD, &encoded[..n], MIDDLE, ad.as_bytes(), TAIL] {
        body.extend_from_slice(part);
    }
    bytes::Bytes::from_owner(body)
}

/// The data key from the base64 `plaintext` of a decrypt, decoded into a
/// zeroizing buffer; `None` unless it is 32 bytes.
fn decode_data_key(plaintext: &str) -> Option<DataKey> {
    let mut buf = Zeroizing::new([0u8; 48]);
    let n = BASE64.decode_slice(plaintext.as_bytes(), &mut buf[..]).ok()?;
    DataKey::from_slice(&buf[..n])
}

/// Whether `c` is a Transit ciphertext: `vault:v<version>:<base64>`.
fn is_transit_ciphertext(c: &str) -> bool {
    let Some(rest) = c.strip_prefix("vault:v") else { return false };
    let Some((version, data)) = rest.split_once(':') else { return false };
    !version.is_empty()
        && version.bytes().all(|b| b.is_ascii_digit())
        && !data.is_empty()
        && data.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

/// A Transit mount: a path, not empty.
fn check_mount(mount: &str) -> std::result::Result<String, String> {
    match validate_path(mount) {
        Ok(m) if !m.is_empty() => Ok(m),
        Ok(_) => Err("is empty".into()),
        Err(e) => Err(format!("{mount:?}: {e}")),
    }
}

/// A Transit key name as Transit's routes take it: letters, digits, `_`,
/// `-` and `.`, beginning and ending with a letter, digit or `_`.
fn check_key_name(key: &str) -> std::result::Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = key.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= MAX_KEY_NAME
        && bytes.iter().all(|&b| word(b) || matches!(b, b'-' | b'.'))
        && word(bytes[0])
        && word(bytes[bytes.len() - 1]);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{key:?} is not a Transit key name: 1 to {MAX_KEY_NAME} letters, digits, '_', '-' and '.', \
             beginning and ending with a letter, digit or '_'"
        ))
    }
}

/// The settings of a [`TransitKeyProvider`] in a config file (the `serde`
/// feature): those of a [`VaultSettings`](crate::VaultSettings) that say
/// where the server is and how to log in (`address`, `token_file` /
/// `token_env`, `approle_*`, `jwt_*`, `vault_namespace`, `ca_cert`,
/// `timeout_ms`, `allow_insecure_http`, with the same rules), plus `mount`
/// (the Transit mount, default `transit`) and `key` (the Transit key's
/// name, required). A store's `prefix` is refused.
///
/// ```toml
/// address = "https://vault.example.com:8200"
/// key = "credstore"                 # the Transit key
/// mount = "transit"                 # optional
/// token_file = "/run/secrets/vault-token"  # or token_env, approle_*, jwt_*
/// ```
///
/// ```
/// use credstore_vault::TransitKeySettings;
///
/// let settings: TransitKeySettings = serde_json::from_str(
///     r#"{"address": "http://127.0.0.1:8200", "key": "credstore", "token_env": "VAULT_TOKEN"}"#,
/// ).unwrap();
/// assert_eq!((settings.mount(), settings.key()), ("transit", "credstore"));
/// let mistake = serde_json::from_str::<TransitKeySettings>(r#"{"address": "http://127.0.0.1:8200"}"#);
/// assert!(mistake.unwrap_err().to_string().contains("`key` is required"));
/// ```
#[cfg(feature = "serde")]
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "crate::config::de::RawSettings")]
pub struct TransitKeySettings {
    server: crate::config::ServerSettings,
    mount: String,
    key: String,
}

#[cfg(feature = "serde")]
impl TransitKeySettings {
    /// The server's address.
    pub fn address(&self) -> &str {
        &self.server.address
    }

    /// The Transit mount (default `transit`).
    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// The Transit key's name.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// How the provider logs in.
    pub fn login(&self) -> &crate::LoginSettings {
        &self.server.login
    }

    /// The provider for the store `id`: the login's secret read from its
    /// source now (a JWT file at every login instead), relative paths
    /// resolved with `ctx`. No request is sent.
    ///
    /// # Errors
    /// [`Error::Config`] naming `id` when a token or secret id cannot be
    /// read, or for what [`TransitKeyProvider::new`] refuses.
    pub fn provider(
        &self,
        id: &StoreId,
        ctx: &credstore_core::config::ConfigContext,
    ) -> Result<TransitKeyProvider> {
        let config = self.server.to_config(id, ctx)?;
        TransitKeyProvider::build(&config, &self.mount, &self.key).map_err(|(field, reason)| {
            Error::config(id, format!("vault-transit key provider: {field} {reason}"))
        })
    }
}

#[cfg(feature = "serde")]
impl TryFrom<crate::config::de::RawSettings> for TransitKeySettings {
    type Error = String;

    fn try_from(raw: crate::config::de::RawSettings) -> std::result::Result<Self, String> {
        let (server, place) = raw.split()?;
        if place.prefix.is_some() {
            return Err("`prefix` is a setting of a vault store, not of a vault-transit key provider".into());
        }
        if place.max_versions.is_some() {
            return Err(
                "`max_versions` is a setting of a vault store, not of a vault-transit key provider".into()
            );
        }
        let key = place.key.ok_or("`key` is required: the name of the Transit key")?;
        check_key_name(&key).map_err(|e| format!("key {e}"))?;
        let mount = place.mount.unwrap_or_else(|| DEFAULT_TRANSIT_MOUNT.to_owned());
        let mount = check_mount(&mount).map_err(|e| format!("mount {e}"))?;
        Ok(Self { server, mount, key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credstore_core::SecretValue;
    use credstore_seal::StoreUid;

    fn config() -> VaultConfig {
        VaultConfig::new("http://127.0.0.1:1").token(SecretValue::from("tok-S3CRET"))
    }

    #[test]
    fn bad_mounts_keys_and_settings_are_refused_before_any_io() {
        let ok = TransitKeyProvider::new(&config(), "transit", "credstore").unwrap();
        assert_eq!(ok.info().kind(), "vault-transit");
        assert_eq!(ok.info().key_ref(), "transit/credstore");
        assert_eq!(ok.info().location(), &KeyLocation::Remote);
        assert!(TransitKeyProvider::new(&config(), "/teams/transit/", "k_1.a-b").is_ok());
        for (mount, key, field) in [
            ("", "k", "mount"),
            ("a//b", "k", "mount"),
            ("..", "k", "mount"),
            ("transit", "", "key"),
            ("transit", "a/b", "key"),
            ("transit", "-a", "key"),
            ("transit", "a.", "key"),
            ("transit", "a b", "key"),
            ("transit", &"k".repeat(256), "key"),
        ] {
            let err = TransitKeyProvider::new(&config(), mount, key).unwrap_err();
            assert!(
                matches!(&err, Error::InvalidInput { field: f, .. } if f == field),
                "{mount} {key}: {err:?}"
            );
        }
        let bad_token = VaultConfig::new("http://127.0.0.1:1").token(SecretValue::from("tok-S3CRET\n"));
        let plain = VaultConfig::new("http://vault.internal:8200").token(SecretValue::from("tok-S3CRET"));
        for bad in [bad_token, plain, config().timeout(std::time::Duration::ZERO)] {
            let err = TransitKeyProvider::new(&bad, "transit", "k").unwrap_err();
            assert!(matches!(&err, Error::InvalidInput { field, .. } if field == "vault"), "{err:?}");
            assert!(!format!("{err} {err:?}").contains("S3CRET"), "{err:?}");
        }
    }

    #[test]
    fn debug_names_the_key_never_the_token() {
        let p = TransitKeyProvider::new(&config(), "transit", "credstore").unwrap();
        let shown = format!("{p:?}");
        assert!(
            shown.contains("credstore") && shown.contains("transit") && shown.contains("token"),
            "{shown}"
        );
        assert!(!shown.contains("S3CRET"), "{shown}");
    }

    #[tokio::test]
    async fn a_wrapped_key_that_is_no_transit_ciphertext_is_the_wrong_key_without_a_request() {
        // Nothing listens on port 1: a request would be Unavailable.
        let p = TransitKeyProvider::new(&config(), "transit", "credstore").unwrap();
        let store = StoreId::new("s").unwrap();
        let context = WrapContext::new(&store, StoreUid::generate(), 1);
        for wrapped in
            [&b"\x01\x02 not text"[..], b"vault:v1:", b"vault:vx:AAAA", b"vault:v1:AA\"AA", b"AAAA"]
        {
            let err = p.unwrap(&WrappedKey::new(wrapped.to_vec()).unwrap(), &context).await.unwrap_err();
            assert!(
                matches!(&err, Error::Config { reason, .. } if reason.starts_with("wrong key-encryption key")),
                "{err:?}"
            );
        }
    }

    #[test]
    fn the_encrypt_body_carries_the_key_and_context_in_base64() {
        let store = StoreId::new("s").unwrap();
        let context = WrapContext::new(&store, StoreUid::from_bytes([3; 16]), 7);
        let key = DataKey::from_bytes(&[0xAB; 32]);
        let body: Value = serde_json::from_slice(&encrypt_body(&key, &context)).unwrap();
        let plaintext = BASE64.decode(body["plaintext"].as_str().unwrap()).unwrap();
        assert_eq!(plaintext, [0xAB; 32]);
        let ad = BASE64.decode(body["associated_data"].as_str().unwrap()).unwrap();
        assert_eq!(ad, context.associated_data());
        assert!(decode_data_key(body["plaintext"].as_str().unwrap()).is_some());
        assert!(decode_data_key(&BASE64.encode([1; 31])).is_none());
        assert!(decode_data_key(&BASE64.encode([1; 64])).is_none());
    }

    #[test]
    fn ciphertexts_are_recognised() {
        assert!(is_transit_ciphertext("vault:v1:8Ezi+nBY/Q=="));
        assert!(is_transit_ciphertext("vault:v12:AAAA"));
        for bad in
            ["vault:v1:", "vault:v:AAAA", "vault:1:AAAA", "vault:v1:AA AA", "vault:v1:AA\\u0022", "AAAA"]
        {
            assert!(!is_transit_ciphertext(bad), "{bad}");
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn settings_parse_and_name_their_mistakes() {
        use credstore_core::config::ConfigContext;
        let parse = |json: &str| serde_json::from_str::<TransitKeySettings>(json).map_err(|e| e.to_string());
        let s = parse(r#"{"address": "http://127.0.0.1:8200", "key": "k", "mount": "kek/transit", "approle_role_id": "r", "approle_secret_id_env": "S"}"#).unwrap();
        assert_eq!((s.mount(), s.key(), s.address()), ("kek/transit", "k", "http://127.0.0.1:8200"));
        assert!(matches!(s.login(), crate::LoginSettings::AppRole { .. }));
        for (json, needle) in [
            (r#"{"address": "http://127.0.0.1:8200"}"#, "`key` is required"),
            (r#"{"address": "http://127.0.0.1:8200", "key": "a/b"}"#, "not a Transit key name"),
            (r#"{"address": "http://127.0.0.1:8200", "key": "k", "mount": "a//b"}"#, "mount"),
            (
                r#"{"address": "http://127.0.0.1:8200", "key": "k", "prefix": "p"}"#,
                "`prefix` is a setting of a vault store",
            ),
            (r#"{"address": "http://vault.internal:8200", "key": "k"}"#, "allow_insecure_http"),
            (
                r#"{"address": "http://127.0.0.1:8200", "key": "k", "token_env": "T", "jwt_role": "r"}"#,
                "one of a token",
            ),
            (
                r#"{"address": "http://127.0.0.1:8200", "key": "k", "token": "hvs.x"}"#,
                "unknown field `token`",
            ),
        ] {
            let err = parse(json).unwrap_err();
            assert!(err.contains(needle), "{json}: {err}");
        }
        let ctx =
            ConfigContext::new("/etc/credstore").with_env(|v| (v == "T").then(|| "hvs.from-env".to_owned()));
        let id = StoreId::new("v").unwrap();
        let s = parse(r#"{"address": "http://127.0.0.1:8200", "key": "k", "token_env": "T"}"#).unwrap();
        let p = s.provider(&id, &ctx).unwrap();
        assert_eq!(p.info().key_ref(), "transit/k");
        assert!(!format!("{p:?}").contains("hvs.from-env"));
        // As a server's `key = { provider = "vault-transit", ... }` table
        // reads it: an internally tagged enum hands the rest to the settings.
        #[derive(serde::Deserialize)]
        #[serde(tag = "provider", rename_all = "kebab-case")]
        enum KeySettings {
            VaultTransit(TransitKeySettings),
        }
        let KeySettings::VaultTransit(tagged) = serde_json::from_str(
            r#"{"provider": "vault-transit", "address": "http://127.0.0.1:8200", "key": "k", "token_env": "T"}"#,
        )
        .unwrap();
        assert_eq!(tagged, s);
        let s = parse(r#"{"address": "http://127.0.0.1:8200", "key": "k", "token_env": "UNSET"}"#).unwrap();
        let err = s.provider(&id, &ctx).unwrap_err();
        assert!(matches!(&err, Error::Config { store, .. } if store == &id), "{err:?}");
    }
}
