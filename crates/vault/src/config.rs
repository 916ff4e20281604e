//! [`VaultConfig`]: where the Vault or OpenBao server is, how to log in, and
//! where in it the credentials live.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use credstore_core::{Clock, Error, Result, SecretValue, SystemClock};

/// The default KV v2 mount.
pub const DEFAULT_MOUNT: &str = "secret";
/// The default timeout of one operation, retries included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default number of versions kept per key, the current one included:
/// KV v2's own default.
pub const DEFAULT_MAX_VERSIONS: u32 = 10;
/// The default mount of the JWT auth method.
pub const DEFAULT_JWT_MOUNT: &str = "jwt";
/// Where Kubernetes mounts a pod's service-account token: the JWT file
/// [`VaultConfig::from_env`] uses when `VAULT_JWT_ROLE` is set and
/// `VAULT_JWT_FILE` is not.
pub const DEFAULT_JWT_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// How the store authenticates.
#[derive(Clone)]
pub(crate) enum Auth {
    /// No token: for a Vault Agent or proxy that adds its own.
    None,
    /// A fixed token.
    Token(SecretValue),
    /// AppRole login; the token it yields is renewed and replaced as needed.
    AppRole { mount: String, role_id: String, secret_id: SecretValue },
    /// JWT login with the token in `file`, read at every login; the Vault
    /// token it yields is renewed and replaced as AppRole's is. The mount
    /// is [`VaultConfig::jwt_mount`]'s.
    Jwt { role: String, file: PathBuf },
}

/// Settings of a [`crate::VaultStore`].
///
/// Built with [`VaultConfig::new`] and the chained setters, or read from the
/// usual environment variables with [`VaultConfig::from_env`]. Nothing is
/// checked or contacted until [`crate::VaultStore::new`], which validates
/// the settings (still without any I/O).
///
/// `Debug` never shows the token or the AppRole secret id.
///
/// ```
/// use std::time::Duration;
/// use credstore_core::SecretValue;
/// use credstore_vault::VaultConfig;
///
/// let config = VaultConfig::new("https://vault.example.com:8200")
///     .token(SecretValue::from("hvs.example"))
///     .mount("kv")
///     .prefix("apps/payments")
///     .timeout(Duration::from_secs(5));
/// assert!(!format!("{config:?}").contains("hvs.example"));
/// ```
#[derive(Clone)]
pub struct VaultConfig {
    pub(crate) address: String,
    pub(crate) auth: Auth,
    pub(crate) mount: String,
    pub(crate) prefix: String,
    pub(crate) namespace: Option<String>,
    pub(crate) timeout: Duration,
    pub(crate) ca_cert: Option<PathBuf>,
    pub(crate) skip_verify: bool,
    pub(crate) jwt_mount: String,
    pub(crate) allow_insecure_http: bool,
    /// The environment variable the address came from, for messages.
    pub(crate) address_var: Option<&'static str>,
    pub(crate) max_versions: u32,
    pub(crate) clock: Arc<dyn Clock>,
}

impl VaultConfig {
    /// Settings for the server at `address` (`https://vault.example.com:8200`),
    /// with no token, the mount `secret`, no path prefix, no Vault namespace,
    /// a 10 second timeout and TLS verified against the system's roots.
    ///
    /// An `http://` address must name a loopback host (`127.0.0.0/8`,
    /// `[::1]`, `localhost`) unless [`VaultConfig::allow_insecure_http`] is
    /// set: [`crate::VaultStore::new`] refuses it otherwise.
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            auth: Auth::None,
            mount: DEFAULT_MOUNT.to_owned(),
            prefix: String::new(),
            namespace: None,
            timeout: DEFAULT_TIMEOUT,
            ca_cert: None,
            skip_verify: false,
            jwt_mount: DEFAULT_JWT_MOUNT.to_owned(),
            allow_insecure_http: false,
            address_var: None,
            max_versions: DEFAULT_MAX_VERSIONS,
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads the variables the Vault CLI reads: `VAULT_ADDR` (required),
    /// `VAULT_TOKEN`, `VAULT_NAMESPACE` and `VAULT_CACERT`, and for a JWT
    /// login (such as a Kubernetes service-account token) `VAULT_JWT_ROLE`,
    /// `VAULT_JWT_FILE` and `VAULT_JWT_MOUNT`. Each falls back to OpenBao's
    /// spelling (`BAO_ADDR`, `BAO_TOKEN`, `BAO_JWT_ROLE`, ...); empty
    /// variables count as unset. Everything else keeps the defaults of
    /// [`VaultConfig::new`].
    ///
    /// # Behavior
    /// When `VAULT_JWT_ROLE` is set the store logs in with
    /// [`VaultConfig::jwt`] (`VAULT_TOKEN` is then not used): the JWT is read
    /// from `VAULT_JWT_FILE`, by default [`DEFAULT_JWT_FILE`] (the pod's
    /// service-account token), at the auth mount `VAULT_JWT_MOUNT`, by
    /// default [`DEFAULT_JWT_MOUNT`]. Otherwise `VAULT_TOKEN`, if set, is
    /// the token.
    ///
    /// An `http://` address to a host that is not loopback is refused by
    /// [`crate::VaultStore::new`], naming the variable, unless
    /// [`VaultConfig::allow_insecure_http`] is set on the result.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `VAULT_ADDR` when neither it nor
    /// `BAO_ADDR` is set.
    pub fn from_env() -> Result<Self> {
        fn var(name: &str) -> Option<String> {
            [format!("VAULT_{name}"), format!("BAO_{name}")]
                .iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
        }
        let address = var("ADDR").ok_or_else(|| Error::InvalidInput {
            field: "VAULT_ADDR".into(),
            reason: "is not set (nor BAO_ADDR)".into(),
        })?;
        let from_vault = std::env::var("VAULT_ADDR").is_ok_and(|v| !v.is_empty());
        let mut config = Self::new(address);
        config.address_var = Some(if from_vault { "VAULT_ADDR" } else { "BAO_ADDR" });
        if let Some(role) = var("JWT_ROLE") {
            let file = var("JWT_FILE").unwrap_or_else(|| DEFAULT_JWT_FILE.to_owned());
            config = config.jwt(role, file);
            if let Some(mount) = var("JWT_MOUNT") {
                config = config.jwt_mount(&mount);
            }
        } else if let Some(token) = var("TOKEN") {
            config = config.token(SecretValue::new(token));
        }
        if let Some(ns) = var("NAMESPACE") {
            config = config.namespace(ns);
        }
        if let Some(ca) = var("CACERT") {
            config = config.ca_cert(ca);
        }
        Ok(config)
    }

    /// Authenticates with a fixed token, sent as `X-Vault-Token`. It must be
    /// text ([`crate::VaultStore::new`] refuses one that is not).
    ///
    /// # Behavior
    /// The token is used as given and never renewed; when it expires, calls
    /// fail with [`Error::PermissionDenied`]. Use [`VaultConfig::approle`] for
    /// a login that renews itself. Replaces any earlier `approle` setting.
    pub fn token(mut self, token: SecretValue) -> Self {
        self.auth = Auth::Token(token);
        self
    }

    /// Authenticates through the AppRole method mounted at `mount`
    /// (usually `approle`) with `role_id` and `secret_id`.
    ///
    /// # Behavior
    /// The store logs in on first use, renews its token once two thirds of
    /// its lease have passed, and logs in again when renewal fails, the
    /// token reaches its maximum TTL, or the server refuses it. Replaces any
    /// earlier `token` setting.
    pub fn approle(
        mut self,
        mount: impl Into<String>,
        role_id: impl Into<String>,
        secret_id: SecretValue,
    ) -> Self {
        self.auth = Auth::AppRole { mount: mount.into(), role_id: role_id.into(), secret_id };
        self
    }

    /// Authenticates through the JWT auth method (the one that takes
    /// Kubernetes service-account tokens) as `role`, with the JWT in the file
    /// `jwt_file`, at the mount [`VaultConfig::jwt_mount`] names (default
    /// `jwt`). Works the same with the `kubernetes` auth method, which takes
    /// the same login: set `jwt_mount("kubernetes")`.
    ///
    /// # Behavior
    /// The file is read at every login, never kept, so a projected token
    /// that the kubelet rotates is picked up by the next login; surrounding
    /// whitespace is ignored. The store logs in on first use, renews its
    /// Vault token once two thirds of its lease have passed, and logs in
    /// again (reading the file again) when renewal fails, the token reaches
    /// its maximum TTL, or the server refuses it, exactly as with
    /// [`VaultConfig::approle`]. A login the server refuses, an expired JWT
    /// among them, fails the call with
    /// [`Error::PermissionDenied`](credstore_core::Error::PermissionDenied)
    /// whose reason holds the server's words and, when the JWT's `exp` has
    /// passed, when it expired; a file that cannot be read fails it with
    /// [`Error::Config`]. The next call tries to log in again. Replaces any
    /// earlier `token` or `approle` setting.
    ///
    /// ```
    /// use credstore_vault::VaultConfig;
    ///
    /// // A projected service-account token with audience "vault".
    /// let config = VaultConfig::new("https://vault.example.com:8200")
    ///     .jwt("payments", "/var/run/secrets/tokens/vault")
    ///     .jwt_mount("kubernetes-prod");
    /// assert_eq!(config.auth_method(), "jwt");
    /// assert_eq!(config.jwt_mount_path(), "kubernetes-prod");
    /// ```
    pub fn jwt(mut self, role: impl Into<String>, jwt_file: impl Into<PathBuf>) -> Self {
        self.auth = Auth::Jwt { role: role.into(), file: jwt_file.into() };
        self
    }

    /// The mount of the JWT auth method [`VaultConfig::jwt`] logs in at,
    /// such as `jwt` (the default), `kubernetes` or `jwt-prod`. Used only
    /// with [`VaultConfig::jwt`], in any order.
    pub fn jwt_mount(mut self, mount: &str) -> Self {
        self.jwt_mount = mount.to_owned();
        self
    }

    /// The KV version 2 mount the credentials live in. Default `secret`.
    pub fn mount(mut self, mount: &str) -> Self {
        self.mount = mount.to_owned();
        self
    }

    /// The path inside the mount under which this store keeps its keys, such
    /// as `apps/payments`: one or more segments of `[a-zA-Z0-9-_.]` joined by
    /// `/`. Default: none (keys at the top of the mount).
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_owned();
        self
    }

    /// The Vault Enterprise / OpenBao namespace, sent as `X-Vault-Namespace`.
    /// Not to be confused with
    /// [`CredentialStore::with_namespace`](credstore_core::CredentialStore::with_namespace), which
    /// namespaces keys inside the path prefix.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The longest one operation may take, retries included, and the
    /// longest [`check_availability`](credstore_core::CredentialStore::check_availability)
    /// waits. Default 10 seconds.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many versions of each key the store keeps, the current one (and
    /// the delete marker a `delete` writes) included. Default
    /// [`DEFAULT_MAX_VERSIONS`] (10). The store sets it as the KV v2
    /// `max_versions` of each key it creates, so that KV v2 destroys older
    /// versions as new ones are written, and never reads a version older
    /// than that, whatever the key's or the mount's setting. A mount whose
    /// own `max_versions` is lower wins (KV v2 keeps the smaller): set the
    /// store's no higher than the mount's. Zero is refused by
    /// [`crate::VaultStore::new`].
    pub fn max_versions(mut self, max_versions: u32) -> Self {
        self.max_versions = max_versions;
        self
    }

    /// The clock the store decides expiry by (a credential written with
    /// `expires_at` reads as absent from then on): the system's unless
    /// given, a [`ManualClock`](credstore_core::ManualClock) in tests.
    /// Timestamps (`created_at`, `updated_at`) stay the server's.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Trusts only the CA certificates in this PEM file for `https`
    /// addresses, instead of the system's roots.
    pub fn ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(path.into());
        self
    }

    /// Accepts an `http://` address to a host that is not loopback. Off by
    /// default: over plain HTTP the token, and every value read or written,
    /// cross the network in the clear, so [`crate::VaultStore::new`] refuses
    /// such an address unless this is set. Loopback addresses
    /// (`127.0.0.0/8`, `[::1]`, `localhost`), such as a Vault Agent or a dev
    /// server on the same host, need no setting.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Accepts any TLS certificate. For tests against self-signed servers
    /// only: it makes the connection open to interception.
    pub fn skip_verify(mut self, skip: bool) -> Self {
        self.skip_verify = skip;
        self
    }

    /// The server address as given.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The KV v2 mount.
    pub fn mount_path(&self) -> &str {
        &self.mount
    }

    /// The path prefix inside the mount.
    pub fn path_prefix(&self) -> &str {
        &self.prefix
    }

    /// The Vault namespace, if any.
    pub fn vault_namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The operation timeout.
    pub fn request_timeout(&self) -> Duration {
        self.timeout
    }

    /// The versions kept per key ([`VaultConfig::max_versions`]).
    pub fn versions_kept(&self) -> u32 {
        self.max_versions
    }

    /// The CA certificate file, if any.
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.ca_cert.as_deref()
    }

    /// Which authentication is configured: `"none"`, `"token"`, `"approle"`
    /// or `"jwt"`.
    pub fn auth_method(&self) -> &'static str {
        self.auth.method()
    }

    /// The JWT file of a [`VaultConfig::jwt`] login, if that is the method.
    pub fn jwt_file(&self) -> Option<&Path> {
        match &self.auth {
            Auth::Jwt { file, .. } => Some(file),
            _ => None,
        }
    }

    /// The mount of the JWT auth method (used only with [`VaultConfig::jwt`]).
    pub fn jwt_mount_path(&self) -> &str {
        &self.jwt_mount
    }
}

impl Auth {
    pub(crate) fn method(&self) -> &'static str {
        match self {
            Auth::None => "none",
            Auth::Token(_) => "token",
            Auth::AppRole { .. } => "approle",
            Auth::Jwt { .. } => "jwt",
        }
    }
}

impl fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("VaultConfig");
        d.field("address", &self.address).field("auth", &self.auth_method());
        if let Auth::AppRole { mount, .. } = &self.auth {
            d.field("approle_mount", mount);
        }
        if let Auth::Jwt { role, file } = &self.auth {
            d.field("jwt_mount", &self.jwt_mount).field("jwt_role", role).field("jwt_file", file);
        }
        d.field("mount", &self.mount)
            .field("prefix", &self.prefix)
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .field("max_versions", &self.max_versions)
            .field("ca_cert", &self.ca_cert)
            .field("skip_verify", &self.skip_verify)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .finish()
    }
}

/// Refuses plain `http://` to a host that is not loopback (`127.0.0.0/8`,
/// `::1`, `localhost`) unless `allowed`: the token and every value would
/// cross the network in the clear. The message follows the address.
pub(crate) fn check_cleartext(url: &url::Url, allowed: bool) -> Result<(), String> {
    let loopback = url.host_str().is_some_and(credstore_core::config::is_loopback_host);
    if url.scheme() != "http" || loopback || allowed {
        Ok(())
    } else {
        Err("is plain http:// to a host that is not loopback: the token and every value would cross the \
             network in the clear; use https://, or set allow_insecure_http if the path is otherwise \
             protected"
            .into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_token_and_secret_id() {
        let c = VaultConfig::new("http://127.0.0.1:8200").token(SecretValue::from("tok-SECRET-1"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("tok-SECRET-1"), "{shown}");
        assert!(shown.contains("token"), "{shown}");
        let c = c.approle("approle", "role-id-1", SecretValue::from("sid-SECRET-2"));
        let shown = format!("{c:?}");
        assert!(!shown.contains("sid-SECRET-2") && !shown.contains("tok-SECRET-1"), "{shown}");
        assert!(shown.contains("approle"), "{shown}");
        let c = c.jwt("app", "/run/token").jwt_mount("k8s");
        let shown = format!("{c:?}");
        assert!(shown.contains("jwt") && shown.contains("/run/token") && shown.contains("k8s"), "{shown}");
        assert!(!shown.contains("sid-SECRET-2"), "{shown}");
    }

    #[test]
    fn from_env_reads_vault_then_bao_variables() {
        // The only test of this crate that touches these variables.
        for v in [
            "VAULT_ADDR",
            "VAULT_TOKEN",
            "VAULT_NAMESPACE",
            "VAULT_CACERT",
            "BAO_ADDR",
            "BAO_TOKEN",
            "BAO_NAMESPACE",
            "BAO_CACERT",
            "VAULT_JWT_ROLE",
            "VAULT_JWT_FILE",
            "VAULT_JWT_MOUNT",
            "BAO_JWT_ROLE",
            "BAO_JWT_FILE",
            "BAO_JWT_MOUNT",
        ] {
            std::env::remove_var(v);
        }
        let err = VaultConfig::from_env().unwrap_err();
        assert!(matches!(&err, Error::InvalidInput { field, .. } if field == "VAULT_ADDR"), "{err:?}");
        std::env::set_var("BAO_ADDR", "http://bao:8200");
        std::env::set_var("BAO_TOKEN", "bao-token");
        let c = VaultConfig::from_env().unwrap();
        assert_eq!((c.address(), c.auth_method()), ("http://bao:8200", "token"));
        // Plain HTTP to a host that is not loopback: refused, naming the variable.
        let id = credstore_core::StoreId::new("v").unwrap();
        let err = crate::VaultStore::new(id.clone(), c.clone()).unwrap_err();
        assert!(matches!(&err, Error::Config { .. }), "{err:?}");
        assert!(
            err.to_string().contains("(from BAO_ADDR)") && err.to_string().contains("allow_insecure_http")
        );
        assert!(crate::VaultStore::new(id, c.allow_insecure_http(true)).is_ok());
        std::env::set_var("VAULT_ADDR", "https://vault:8200");
        std::env::set_var("VAULT_TOKEN", "vault-token");
        std::env::set_var("VAULT_NAMESPACE", "admin/team");
        std::env::set_var("VAULT_CACERT", "/etc/vault/ca.pem");
        let c = VaultConfig::from_env().unwrap();
        assert_eq!(c.address(), "https://vault:8200");
        assert!(matches!(&c.auth, Auth::Token(t) if t.expose_secret() == b"vault-token"));
        assert_eq!(c.vault_namespace(), Some("admin/team"));
        assert_eq!(c.ca_cert_path(), Some(Path::new("/etc/vault/ca.pem")));
        std::env::set_var("VAULT_TOKEN", "");
        assert!(
            matches!(&VaultConfig::from_env().unwrap().auth, Auth::Token(t) if t.expose_secret() == b"bao-token")
        );
        // JWT: the role decides; the file and mount have defaults.
        std::env::set_var("VAULT_JWT_ROLE", "payments");
        let c = VaultConfig::from_env().unwrap();
        assert_eq!(c.auth_method(), "jwt");
        assert_eq!(c.jwt_file(), Some(Path::new(DEFAULT_JWT_FILE)));
        assert_eq!(c.jwt_mount_path(), "jwt");
        assert!(matches!(&c.auth, Auth::Jwt { role, .. } if role == "payments"));
        std::env::set_var("BAO_JWT_FILE", "/var/run/secrets/tokens/vault");
        std::env::set_var("VAULT_JWT_MOUNT", "kubernetes");
        let c = VaultConfig::from_env().unwrap();
        assert_eq!(c.jwt_file(), Some(Path::new("/var/run/secrets/tokens/vault")));
        assert_eq!(c.jwt_mount_path(), "kubernetes");
        std::env::set_var("VAULT_JWT_ROLE", "");
        assert_eq!(VaultConfig::from_env().unwrap().auth_method(), "token", "an empty role is unset");
        for v in [
            "VAULT_ADDR",
            "VAULT_TOKEN",
            "VAULT_NAMESPACE",
            "VAULT_CACERT",
            "BAO_ADDR",
            "BAO_TOKEN",
            "VAULT_JWT_ROLE",
            "BAO_JWT_FILE",
            "VAULT_JWT_MOUNT",
        ] {
            std::env::remove_var(v);
        }
    }

    #[test]
    fn defaults() {
        let c = VaultConfig::new("http://x:1");
        assert_eq!(c.mount_path(), "secret");
        assert_eq!(c.path_prefix(), "");
        assert_eq!(c.request_timeout(), DEFAULT_TIMEOUT);
        assert_eq!(c.auth_method(), "none");
        assert!(!c.skip_verify);
    }
}

/// How a store opened from [`VaultSettings`] logs in: never the secret
/// itself, only where it is.
#[cfg(feature = "serde")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginSettings {
    /// `token_file` or `token_env`; with neither (and no other login), the
    /// `VAULT_TOKEN` variable when set, else no token (for a Vault Agent or
    /// proxy that adds its own).
    Token(Option<credstore_core::config::SecretSource>),
    /// `approle_role_id` with `approle_secret_id_file` or
    /// `approle_secret_id_env`, at `approle_mount` (default `approle`).
    AppRole {
        /// The auth mount.
        mount: String,
        /// The role id (not secret).
        role_id: String,
        /// Where the secret id is.
        secret_id: credstore_core::config::SecretSource,
    },
    /// `jwt_role` with `jwt_file` (default [`DEFAULT_JWT_FILE`]) at
    /// `jwt_mount` (default [`DEFAULT_JWT_MOUNT`]); the file is read at
    /// every login.
    Jwt {
        /// The auth mount.
        mount: String,
        /// The role to log in as.
        role: String,
        /// The JWT's file.
        file: PathBuf,
    },
}

/// The settings of a Vault / OpenBao store in a config file (the `serde`
/// feature): one store's table, such as a `credstore-server` `[[stores]]`
/// table without its `id`, `type` and `cache`. Tokens and secret ids are
/// named by file or environment variable, never written inline; relative
/// paths are relative to the
/// [`ConfigContext`](credstore_core::config::ConfigContext)'s base
/// directory.
///
/// ```toml
/// address = "https://vault.example.com:8200"
/// mount = "secret"                  # optional: the KV v2 mount
/// prefix = "apps/payments"          # optional: a path prefix inside the mount
/// vault_namespace = "team-a"        # optional: X-Vault-Namespace
/// ca_cert = "vault-ca.pem"          # optional: CA certificates to trust instead of the system's
/// timeout_ms = 10000                # optional: one operation, retries included
/// max_versions = 10                 # optional: versions kept per key, the current one included (>= 1)
/// allow_insecure_http = false       # optional: accept an http:// address to a host that is not loopback
/// # One login (or none: VAULT_TOKEN when set):
/// token_file = "/run/secrets/vault-token"          # or token_env = "VAULT_TOKEN_PROD"
/// # approle_role_id = "..."; approle_secret_id_file = "..." (or _env); approle_mount = "approle"
/// # jwt_role = "payments"; jwt_file = "/var/run/secrets/tokens/vault"; jwt_mount = "jwt"
/// ```
///
/// ```
/// use credstore_vault::{LoginSettings, VaultSettings};
///
/// let settings: VaultSettings = serde_json::from_str(
///     r#"{"address": "http://127.0.0.1:8200", "jwt_role": "payments", "jwt_mount": "kubernetes"}"#,
/// ).unwrap();
/// assert!(matches!(settings.login(), LoginSettings::Jwt { mount, .. } if mount == "kubernetes"));
/// let mistake = serde_json::from_str::<VaultSettings>(
///     r#"{"address": "http://127.0.0.1:8200", "token_file": "t", "jwt_role": "payments"}"#,
/// );
/// assert!(mistake.unwrap_err().to_string().contains("one of a token, an AppRole login and a JWT login"));
/// // Plain HTTP only to a loopback host, unless allowed.
/// let cleartext = serde_json::from_str::<VaultSettings>(r#"{"address": "http://vault.internal:8200"}"#);
/// assert!(cleartext.unwrap_err().to_string().contains("allow_insecure_http"));
/// let allowed: VaultSettings =
///     serde_json::from_str(r#"{"address": "http://vault.internal:8200", "allow_insecure_http": true}"#).unwrap();
/// assert!(allowed.insecure_http_allowed());
/// ```
#[cfg(feature = "serde")]
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "de::RawSettings")]
pub struct VaultSettings {
    server: ServerSettings,
    mount: Option<String>,
    prefix: Option<String>,
    max_versions: Option<u32>,
}

#[cfg(feature = "serde")]
impl VaultSettings {
    /// The server's address.
    pub fn address(&self) -> &str {
        &self.server.address
    }

    /// How the store logs in.
    pub fn login(&self) -> &LoginSettings {
        &self.server.login
    }

    /// Whether `allow_insecure_http = true` was given: an `http://` address
    /// to a host that is not loopback is accepted (see
    /// [`VaultConfig::allow_insecure_http`]).
    pub fn insecure_http_allowed(&self) -> bool {
        self.server.allow_insecure_http
    }

    /// The [`VaultConfig`] of store `id`: the login's secret read from its
    /// source now (a JWT file is read at every login instead), relative
    /// paths resolved with `ctx`.
    ///
    /// # Errors
    /// [`Error::Config`] naming `id` and the source when a token or secret
    /// id cannot be read.
    pub fn to_config(
        &self,
        id: &credstore_core::StoreId,
        ctx: &credstore_core::config::ConfigContext,
    ) -> Result<VaultConfig> {
        let mut c = self.server.to_config(id, ctx)?;
        if let Some(m) = &self.mount {
            c = c.mount(m);
        }
        if let Some(p) = &self.prefix {
            c = c.prefix(p);
        }
        if let Some(n) = self.max_versions {
            c = c.max_versions(n);
        }
        Ok(c)
    }
}

/// What a store's settings and a Transit key provider's settings share:
/// where the server is, how to trust it, and how to log in. Parsed from the
/// same fields, with the same checks, for both.
#[cfg(feature = "serde")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerSettings {
    pub(crate) address: String,
    vault_namespace: Option<String>,
    ca_cert: Option<PathBuf>,
    timeout: Option<Duration>,
    pub(crate) login: LoginSettings,
    pub(crate) allow_insecure_http: bool,
}

#[cfg(feature = "serde")]
impl ServerSettings {
    /// The [`VaultConfig`] of these settings for `id` (mount and prefix left
    /// at their defaults): the login's secret read from its source now.
    pub(crate) fn to_config(
        &self,
        id: &credstore_core::StoreId,
        ctx: &credstore_core::config::ConfigContext,
    ) -> Result<VaultConfig> {
        let mut c = VaultConfig::new(self.address.clone()).allow_insecure_http(self.allow_insecure_http);
        if let Some(n) = &self.vault_namespace {
            c = c.namespace(n.clone());
        }
        if let Some(ca) = &self.ca_cert {
            c = c.ca_cert(ctx.path(ca));
        }
        if let Some(t) = self.timeout {
            c = c.timeout(t);
        }
        Ok(match &self.login {
            LoginSettings::Jwt { mount, role, file } => c.jwt(role.clone(), ctx.path(file)).jwt_mount(mount),
            LoginSettings::AppRole { mount, role_id, secret_id } => {
                c.approle(mount.clone(), role_id.clone(), secret_id.read(id, ctx)?)
            }
            LoginSettings::Token(Some(source)) => c.token(source.read(id, ctx)?),
            LoginSettings::Token(None) => match ctx.env("VAULT_TOKEN") {
                Some(token) => c.token(SecretValue::from_text(token)),
                None => c,
            },
        })
    }
}

#[cfg(feature = "serde")]
pub(crate) mod de {
    use super::*;
    use credstore_core::config::SecretSource;

    /// The fields of a store's settings and of a Transit key provider's,
    /// parsed once for both: the server and login parts are checked in
    /// [`RawSettings::split`], each type checks the rest.
    /// The fields of a config file's table, also filled from a URI by
    /// [`crate::VaultScheme`] and checked by the same `try_from`.
    #[derive(Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(crate) struct RawSettings {
        pub(crate) address: String,
        #[serde(default)]
        pub(crate) mount: Option<String>,
        #[serde(default)]
        pub(crate) prefix: Option<String>,
        #[serde(default)]
        pub(crate) key: Option<String>,
        #[serde(default)]
        pub(crate) vault_namespace: Option<String>,
        #[serde(default)]
        pub(crate) token_file: Option<PathBuf>,
        #[serde(default)]
        pub(crate) token_env: Option<String>,
        #[serde(default)]
        pub(crate) approle_role_id: Option<String>,
        #[serde(default)]
        pub(crate) approle_secret_id_file: Option<PathBuf>,
        #[serde(default)]
        pub(crate) approle_secret_id_env: Option<String>,
        #[serde(default)]
        pub(crate) approle_mount: Option<String>,
        #[serde(default)]
        pub(crate) jwt_role: Option<String>,
        #[serde(default)]
        pub(crate) jwt_file: Option<PathBuf>,
        #[serde(default)]
        pub(crate) jwt_mount: Option<String>,
        #[serde(default)]
        pub(crate) ca_cert: Option<PathBuf>,
        #[serde(default)]
        pub(crate) timeout_ms: Option<u64>,
        #[serde(default)]
        pub(crate) max_versions: Option<u32>,
        /// Refused with a reason: KV v2 has no age limit this store can honour.
        #[serde(default)]
        pub(crate) max_version_age: Option<serde::de::IgnoredAny>,
        #[serde(default)]
        pub(crate) allow_insecure_http: bool,
    }

    /// The settings that say where in the server: a store's mount and
    /// prefix, a Transit provider's mount and key.
    pub(crate) struct Place {
        pub mount: Option<String>,
        pub prefix: Option<String>,
        pub key: Option<String>,
        pub max_versions: Option<u32>,
    }

    impl TryFrom<RawSettings> for VaultSettings {
        type Error = String;

        fn try_from(r: RawSettings) -> std::result::Result<Self, String> {
            let (server, place) = r.split()?;
            if place.key.is_some() {
                return Err("`key` names a Transit key: it is a setting of a vault-transit key provider, \
                            not of a vault store"
                    .into());
            }
            if place.max_versions == Some(0) {
                return Err("max_versions must be at least 1 (the current version)".into());
            }
            Ok(VaultSettings {
                server,
                mount: place.mount,
                prefix: place.prefix,
                max_versions: place.max_versions,
            })
        }
    }

    impl RawSettings {
        /// The server and login settings, checked, and the rest.
        pub(crate) fn split(self) -> std::result::Result<(ServerSettings, Place), String> {
            let r = self;
            if r.max_version_age.is_some() {
                return Err(
                    "max_version_age is not supported by vault stores: KV v2's delete_version_after \
                            counts from a version's creation, the current version's too, not from when it \
                            stopped being current; bound the history with max_versions"
                        .into(),
                );
            }
            if r.address.is_empty() {
                return Err("address is empty".into());
            }
            // What does not parse is left to `VaultStore::new`, which says why.
            if let Ok(url) = url::Url::parse(r.address.trim()) {
                check_cleartext(&url, r.allow_insecure_http)
                    .map_err(|why| format!("address {:?} {why}", r.address))?;
            }
            let token = SecretSource::one_of("token", r.token_file, r.token_env)?;
            let secret_id =
                SecretSource::one_of("approle_secret_id", r.approle_secret_id_file, r.approle_secret_id_env)?;
            let approle = match (r.approle_role_id, secret_id) {
                (Some(role_id), Some(secret_id)) => {
                    Some((r.approle_mount.unwrap_or_else(|| "approle".to_owned()), role_id, secret_id))
                }
                (None, None) if r.approle_mount.is_none() => None,
                _ => {
                    return Err("AppRole needs approle_role_id and one of approle_secret_id_file and \
                                approle_secret_id_env"
                        .into())
                }
            };
            if r.jwt_role.is_none() && (r.jwt_file.is_some() || r.jwt_mount.is_some()) {
                return Err("jwt_file and jwt_mount need jwt_role".into());
            }
            let logins = usize::from(token.is_some())
                + usize::from(approle.is_some())
                + usize::from(r.jwt_role.is_some());
            if logins > 1 {
                return Err("give one of a token, an AppRole login and a JWT login".into());
            }
            let login = match (approle, r.jwt_role) {
                (Some((mount, role_id, secret_id)), _) => {
                    LoginSettings::AppRole { mount, role_id, secret_id }
                }
                (None, Some(role)) => LoginSettings::Jwt {
                    mount: r.jwt_mount.unwrap_or_else(|| DEFAULT_JWT_MOUNT.to_owned()),
                    role,
                    file: r.jwt_file.unwrap_or_else(|| DEFAULT_JWT_FILE.into()),
                },
                (None, None) => LoginSettings::Token(token),
            };
            let timeout = match r.timeout_ms {
                Some(0) => return Err("timeout_ms must be at least 1".into()),
                ms => ms.map(Duration::from_millis),
            };
            let server = ServerSettings {
                address: r.address,
                vault_namespace: r.vault_namespace,
                ca_cert: r.ca_cert,
                timeout,
                login,
                allow_insecure_http: r.allow_insecure_http,
            };
            Ok((server, Place { mount: r.mount, prefix: r.prefix, key: r.key, max_versions: r.max_versions }))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use credstore_core::config::ConfigContext;

        fn parse(json: &str) -> std::result::Result<VaultSettings, String> {
            serde_json::from_str(json).map_err(|e| e.to_string())
        }

        #[test]
        fn max_versions_reaches_the_store_and_its_declared_retention() {
            let id: credstore_core::StoreId = "v".parse().unwrap();
            let ctx = ConfigContext::new("/etc/credstore");
            let s = parse(r#"{"address": "http://127.0.0.1:8200", "max_versions": 3}"#).unwrap();
            let store = crate::VaultStore::new(id.clone(), s.to_config(&id, &ctx).unwrap()).unwrap();
            use credstore_core::CredentialStoreExt as _;
            assert_eq!(store.capabilities().retention, credstore_core::Retention::versions(3));
            let s = parse(r#"{"address": "http://127.0.0.1:8200"}"#).unwrap();
            assert_eq!(s.to_config(&id, &ctx).unwrap().versions_kept(), crate::DEFAULT_MAX_VERSIONS);
            let err = serde_json::from_str::<crate::TransitKeySettings>(
                r#"{"address": "http://127.0.0.1:8200", "key": "k", "max_versions": 3}"#,
            )
            .unwrap_err();
            assert!(err.to_string().contains("`max_versions` is a setting of a vault store"), "{err}");
        }

        #[test]
        fn logins_parse() {
            let s = parse(r#"{"address": "http://127.0.0.1:8200"}"#).unwrap();
            assert_eq!(s.login(), &LoginSettings::Token(None));
            let s = parse(r#"{"address": "http://127.0.0.1:8200", "token_env": "T"}"#).unwrap();
            assert_eq!(s.login(), &LoginSettings::Token(Some(SecretSource::Env("T".into()))));
            let s = parse(
                r#"{"address": "http://127.0.0.1:8200", "approle_role_id": "r", "approle_secret_id_file": "s"}"#,
            )
            .unwrap();
            assert_eq!(
                s.login(),
                &LoginSettings::AppRole {
                    mount: "approle".into(),
                    role_id: "r".into(),
                    secret_id: SecretSource::File("s".into())
                }
            );
            let s = parse(r#"{"address": "http://127.0.0.1:8200", "jwt_role": "app"}"#).unwrap();
            assert_eq!(
                s.login(),
                &LoginSettings::Jwt {
                    mount: "jwt".into(),
                    role: "app".into(),
                    file: DEFAULT_JWT_FILE.into()
                }
            );
        }

        #[test]
        fn plain_http_to_a_host_that_is_not_loopback_needs_allow_insecure_http() {
            let err = parse(r#"{"address": "http://vault.internal:8200"}"#).unwrap_err();
            assert!(err.contains("address \"http://vault.internal:8200\" is plain http://"), "{err}");
            assert!(err.contains("allow_insecure_http"), "{err}");
            for loopback in ["http://127.0.0.1:8200", "http://[::1]:8200", "http://localhost:8200"] {
                let s = parse(&format!(r#"{{"address": "{loopback}"}}"#)).unwrap();
                assert!(!s.insecure_http_allowed());
            }
            let s =
                parse(r#"{"address": "http://vault.internal:8200", "allow_insecure_http": true}"#).unwrap();
            assert!(s.insecure_http_allowed());
            let id: credstore_core::StoreId = "v".parse().unwrap();
            let config = s.to_config(&id, &ConfigContext::new("/etc/credstore")).unwrap();
            assert!(crate::VaultStore::new(id, config).is_ok(), "the setting reaches the store");
            parse(r#"{"address": "https://vault.internal:8200"}"#).unwrap();
        }

        #[test]
        fn mistakes_are_named() {
            for (json, needle) in [
                (
                    r#"{"address": "a", "token_file": "t", "token_env": "T"}"#,
                    "at most one of token_file and token_env",
                ),
                (r#"{"address": "a", "approle_role_id": "r"}"#, "AppRole needs approle_role_id"),
                (r#"{"address": "a", "approle_secret_id_env": "S"}"#, "AppRole needs approle_role_id"),
                (r#"{"address": "a", "approle_mount": "m"}"#, "AppRole needs approle_role_id"),
                (r#"{"address": "a", "jwt_file": "f"}"#, "jwt_file and jwt_mount need jwt_role"),
                (
                    r#"{"address": "a", "token_env": "T", "approle_role_id": "r", "approle_secret_id_env": "S"}"#,
                    "one of a token",
                ),
                (r#"{"address": "a", "timeout_ms": 0}"#, "timeout_ms must be at least 1"),
                (r#"{"address": ""}"#, "address is empty"),
                (r#"{"address": "a", "token": "hvs.x"}"#, "unknown field `token`"),
                (r#"{"address": "a", "key": "credstore"}"#, "a setting of a vault-transit key provider"),
                (r#"{"address": "a", "max_versions": 0}"#, "max_versions must be at least 1"),
                (r#"{"address": "a", "max_version_age": "30d"}"#, "max_version_age is not supported"),
                (r#"{"address": "a", "max_versions": -1}"#, "invalid value"),
            ] {
                let err = parse(json).unwrap_err();
                assert!(err.contains(needle), "{json}: {err}");
            }
        }

        #[test]
        fn secrets_are_read_from_their_source_and_paths_resolved() {
            let ctx = ConfigContext::new("/etc/credstore")
                .with_env(|v| (v == "T").then(|| "hvs.from-env".to_owned()));
            let id: credstore_core::StoreId = "v".parse().unwrap();
            let s = parse(r#"{"address": "http://127.0.0.1:8200", "token_env": "T", "ca_cert": "ca.pem"}"#)
                .unwrap();
            let c = s.to_config(&id, &ctx).unwrap();
            assert_eq!(c.auth_method(), "token");
            assert_eq!(c.ca_cert_path(), Some(std::path::Path::new("/etc/credstore/ca.pem")));
            assert!(!format!("{c:?}").contains("hvs.from-env"));
            let s = parse(r#"{"address": "http://127.0.0.1:8200", "token_env": "UNSET"}"#).unwrap();
            let err = s.to_config(&id, &ctx).unwrap_err();
            assert!(err.to_string().contains("UNSET is not set"), "{err}");
            let s =
                parse(r#"{"address": "http://127.0.0.1:8200", "jwt_role": "r", "jwt_file": "jwt"}"#).unwrap();
            let c = s.to_config(&id, &ctx).unwrap();
            assert_eq!(c.jwt_file(), Some(std::path::Path::new("/etc/credstore/jwt")));
            // Neither a token nor a login: VAULT_TOKEN from the context, if set.
            let s = parse(r#"{"address": "http://127.0.0.1:8200"}"#).unwrap();
            assert_eq!(s.to_config(&id, &ctx).unwrap().auth_method(), "none");
        }
    }
}
