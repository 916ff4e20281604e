//! [`VaultConfig`]: where the Vault or OpenBao server is, how to log in, and
//! where in it the credentials live.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use credstore_core::{Error, Result, SecretValue};

/// The default KV v2 mount.
pub const DEFAULT_MOUNT: &str = "secret";
/// The default timeout of one operation, retries included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How the store authenticates.
#[derive(Clone)]
pub(crate) enum Auth {
    /// No token: for a Vault Agent or proxy that adds its own.
    None,
    /// A fixed token.
    Token(SecretValue),
    /// AppRole login; the token it yields is renewed and replaced as needed.
    AppRole { mount: String, role_id: String, secret_id: SecretValue },
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
}

impl VaultConfig {
    /// Settings for the server at `address` (`https://vault.example.com:8200`),
    /// with no token, the mount `secret`, no path prefix, no Vault namespace,
    /// a 10 second timeout and TLS verified against the system's roots.
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
        }
    }

    /// Reads the variables the Vault CLI reads: `VAULT_ADDR` (required),
    /// `VAULT_TOKEN`, `VAULT_NAMESPACE` and `VAULT_CACERT`. Each falls back to
    /// OpenBao's spelling (`BAO_ADDR`, `BAO_TOKEN`, ...); empty variables
    /// count as unset. Everything else keeps the defaults of [`VaultConfig::new`].
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
        let mut config = Self::new(address);
        if let Some(token) = var("TOKEN") {
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

    /// Authenticates with a fixed token, sent as `X-Vault-Token`.
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
    /// Not to be confused with [`crate::VaultStore::with_namespace`], which
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

    /// Trusts only the CA certificates in this PEM file for `https`
    /// addresses, instead of the system's roots.
    pub fn ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_cert = Some(path.into());
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

    /// The CA certificate file, if any.
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.ca_cert.as_deref()
    }

    /// Which authentication is configured: `"none"`, `"token"` or `"approle"`.
    pub fn auth_method(&self) -> &'static str {
        match self.auth {
            Auth::None => "none",
            Auth::Token(_) => "token",
            Auth::AppRole { .. } => "approle",
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
        d.field("mount", &self.mount)
            .field("prefix", &self.prefix)
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .field("ca_cert", &self.ca_cert)
            .field("skip_verify", &self.skip_verify)
            .finish()
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
        ] {
            std::env::remove_var(v);
        }
        let err = VaultConfig::from_env().unwrap_err();
        assert!(matches!(&err, Error::InvalidInput { field, .. } if field == "VAULT_ADDR"), "{err:?}");
        std::env::set_var("BAO_ADDR", "http://bao:8200");
        std::env::set_var("BAO_TOKEN", "bao-token");
        let c = VaultConfig::from_env().unwrap();
        assert_eq!((c.address(), c.auth_method()), ("http://bao:8200", "token"));
        std::env::set_var("VAULT_ADDR", "https://vault:8200");
        std::env::set_var("VAULT_TOKEN", "vault-token");
        std::env::set_var("VAULT_NAMESPACE", "admin/team");
        std::env::set_var("VAULT_CACERT", "/etc/vault/ca.pem");
        let c = VaultConfig::from_env().unwrap();
        assert_eq!(c.address(), "https://vault:8200");
        assert!(matches!(&c.auth, Auth::Token(t) if t.expose_secret() == "vault-token"));
        assert_eq!(c.vault_namespace(), Some("admin/team"));
        assert_eq!(c.ca_cert_path(), Some(Path::new("/etc/vault/ca.pem")));
        std::env::set_var("VAULT_TOKEN", "");
        assert!(
            matches!(&VaultConfig::from_env().unwrap().auth, Auth::Token(t) if t.expose_secret() == "bao-token")
        );
        for v in ["VAULT_ADDR", "VAULT_TOKEN", "VAULT_NAMESPACE", "VAULT_CACERT", "BAO_ADDR", "BAO_TOKEN"] {
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
