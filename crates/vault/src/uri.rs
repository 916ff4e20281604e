//! [`VaultScheme`]: Vault / OpenBao KV v2 stores named by URI (the `serde`
//! feature).

use std::path::PathBuf;
use std::sync::Arc;

use credstore_core::config::ConfigContext;
use credstore_core::{async_trait, CredentialStore, Error, Result, StoreId, StoreScheme, StoreUri};

use crate::config::de::RawSettings;
use crate::VaultSettings;

/// Opens `vault+https:` and `vault+http:` URIs into a [`crate::VaultStore`],
/// with the [`VaultSettings`] a config file gives: every setting is a
/// parameter of the same name, checked as in a config file.
///
/// | URI part | setting |
/// |---|---|
/// | `vault+https://host:port` | `address`: `https://host:port` |
/// | the path | `mount`: the KV v2 mount (`/secret`; the default mount when empty) |
/// | `id` | the store id (default `vault`) |
/// | `token_env` / `token_file` | the token (else the variable `VAULT_TOKEN`, as in a config file) |
/// | `approle_role_id`, `approle_secret_id_env` / `approle_secret_id_file`, `approle_mount` | an AppRole login |
/// | `jwt_role`, `jwt_file`, `jwt_mount` | a JWT login |
/// | `prefix`, `vault_namespace`, `ca_cert`, `timeout_ms`, `max_versions`, `allow_insecure_http` | as in a config file |
///
/// `vault+http:` is plain HTTP, taken only to a loopback host (unless
/// `allow_insecure_http`), as in a config file.
///
/// ```
/// use credstore_core::StoreUri;
/// use credstore_vault::VaultScheme;
///
/// let uri = StoreUri::parse("vault+https://vault.internal:8200/kv?token_env=VAULT_TOKEN&prefix=team-a")?;
/// let (id, settings) = VaultScheme::settings(uri)?;
/// assert_eq!((id.as_str(), settings.address()), ("vault", "https://vault.internal:8200"));
/// assert!(VaultScheme::settings(StoreUri::parse("vault+http://vault.internal/kv")?).is_err()); // cleartext
/// # Ok::<(), credstore_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct VaultScheme;

impl VaultScheme {
    /// The store id and the settings `uri` names, read without any I/O.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on `uri` when it is not a `vault+http:` or
    /// `vault+https:` URI, has no host or has a user, or on `uri.{name}`
    /// for a parameter that is unknown or does not parse;
    /// [`Error::InvalidKey`] for an `id` that is not a store id;
    /// [`Error::Config`] naming the store for settings a config file could
    /// not have either (two logins, plain HTTP to another host, ...).
    pub fn settings(mut uri: StoreUri) -> Result<(StoreId, VaultSettings)> {
        let http = match uri.scheme() {
            "vault+https" => "https",
            "vault+http" => "http",
            other => return Err(invalid(format!("{other}: is not a vault+https: URI"))),
        };
        let Some(host) = uri.host() else {
            return Err(invalid("a vault+https: URI names the server: vault+https://host:8200/mount".into()));
        };
        if uri.username().is_some() {
            return Err(invalid(
                "a vault+https: URI has no user: log in with token_env, approle_* or jwt_*".into(),
            ));
        }
        let address = match uri.port() {
            Some(port) => format!("{http}://{host}:{port}"),
            None => format!("{http}://{host}"),
        };
        let mount = Some(uri.path().trim_matches('/').to_owned()).filter(|m| !m.is_empty());
        let id = uri.take_store_id(crate::KIND.as_str())?;
        let (token_file, token_env) = uri.take_secret_fields("token")?;
        let (approle_secret_id_file, approle_secret_id_env) = uri.take_secret_fields("approle_secret_id")?;
        let raw = RawSettings {
            address,
            mount,
            prefix: uri.take("prefix"),
            key: None,
            vault_namespace: uri.take("vault_namespace"),
            token_file,
            token_env,
            approle_role_id: uri.take("approle_role_id"),
            approle_secret_id_file,
            approle_secret_id_env,
            approle_mount: uri.take("approle_mount"),
            jwt_role: uri.take("jwt_role"),
            jwt_file: uri.take("jwt_file").map(PathBuf::from),
            jwt_mount: uri.take("jwt_mount"),
            ca_cert: uri.take("ca_cert").map(PathBuf::from),
            timeout_ms: uri.take_parsed("timeout_ms")?,
            max_versions: uri.take_parsed("max_versions")?,
            max_version_age: None,
            allow_insecure_http: uri.take_bool("allow_insecure_http")?.unwrap_or(false),
        };
        uri.finish()?;
        let settings = VaultSettings::try_from(raw).map_err(|reason| Error::config(&id, reason))?;
        Ok((id, settings))
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidInput { field: "uri".into(), reason }
}

#[async_trait]
impl StoreScheme for VaultScheme {
    fn schemes(&self) -> &[&'static str] {
        &["vault+http", "vault+https"]
    }

    /// Opens the store as [`VaultSettings::open`] does.
    async fn open(&self, uri: StoreUri, ctx: &ConfigContext) -> Result<Arc<dyn CredentialStore>> {
        let (id, settings) = Self::settings(uri)?;
        Ok(Arc::new(settings.open(id, ctx).await?))
    }
}
