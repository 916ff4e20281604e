//! Stores named by one string: [`StoreUri`], the parsed name, and
//! [`SchemeRegistry`], the [`StoreScheme`]s that open them.
//!
//! Each backend crate owns its scheme (`memory:`, `sqlite:`, `vault+https:`,
//! ...): a [`StoreScheme`] that reads the parts of a [`StoreUri`] it knows
//! into the backend's settings and opens the store. An application (or the
//! `credstore` crate's default registry) registers the schemes it wants,
//! custom ones included, and opens stores by URI.
//!
//! # What a URI holds
//! `scheme:[//[user@]host[:port]][path][?name=value&...]`. The parameters
//! are the backend's settings, by the same names as in a configuration file
//! (`max_versions=5`, `key_env=APP_KEY`). Every parameter must be used:
//! one the scheme does not know is an error naming it.
//!
//! # No secrets in URIs
//! URIs end up in shell history, process listings and logs, so
//! [`StoreUri::parse`] refuses one that holds a secret, before anything is
//! opened: a password in the user part, or a parameter whose last `_`-part
//! is `password`, `token`, `secret`, `key` or `passphrase` (`token=...`,
//! `master_key=...`), or that ends in `secret_id` (`approle_secret_id=...`).
//! The error names the way to give it instead:
//! `{name}_env` (an environment variable) or `{name}_file` (a file), read
//! with [`StoreUri::take_secret`].
//!
//! ```
//! use credstore_core::config::SecretSource;
//! use credstore_core::{Error, StoreUri};
//!
//! # fn main() -> credstore_core::Result<()> {
//! let mut uri = StoreUri::parse("vault+https://vault.internal:8200/secret?token_env=VAULT_TOKEN&max_versions=5")?;
//! assert_eq!((uri.scheme(), uri.host(), uri.port(), uri.path()), ("vault+https", Some("vault.internal"), Some(8200), "/secret"));
//! assert_eq!(uri.take_secret("token")?, Some(SecretSource::Env("VAULT_TOKEN".into())));
//! assert_eq!(uri.take_parsed::<u32>("max_versions")?, Some(5));
//! uri.finish()?; // every parameter was used
//!
//! let refused = StoreUri::parse("vault+https://vault.internal/secret?token=hvs.s3cr3t").unwrap_err();
//! assert!(matches!(&refused, Error::InvalidInput { field, .. } if field == "uri.token"));
//! assert!(refused.to_string().contains("token_env") && !refused.to_string().contains("s3cr3t"));
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::{ConfigContext, SecretSource};
use crate::{CredentialStore, Error, Result, StoreId};

/// The last `_`-parts of a parameter name that mark it as a secret.
const SECRET_NAMES: [&str; 5] = ["password", "token", "secret", "key", "passphrase"];

/// A parsed store URI. It holds no secret ([`StoreUri::parse`] refuses
/// them), so its `Display` and `Debug` are safe to log.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUri {
    text: String,
    scheme: String,
    username: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    path: String,
    params: Vec<(String, String)>,
}

/// Whether the parameter `name` is a secret: its last `_`-part is one of
/// [`SECRET_NAMES`], or it is a secret id (`approle_secret_id`, Vault's
/// AppRole secret), whose last part is only `id`.
fn is_secret_name(name: &str) -> bool {
    name.rsplit('_').next().is_some_and(|last| SECRET_NAMES.contains(&last))
        || name == "secret_id"
        || name.ends_with("_secret_id")
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidInput { field: field.into(), reason: reason.into() }
}

/// The error for a secret written into a URI: names the parameter and the
/// two ways to give it, never the value.
fn secret_refused(name: &str) -> Error {
    invalid(
        format!("uri.{name}"),
        format!(
            "a secret does not belong in a URI (shell history, process lists and logs keep it): \
             name the environment variable with {name}_env=VAR or the file with {name}_file=PATH"
        ),
    )
}

impl StoreUri {
    /// Parses `text`: a scheme (lowercased), an optional authority, a path
    /// and query parameters, percent-decoded.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on the field `uri` when `text` is not a
    /// URI, or on `uri.{name}` when it holds a secret (see the module
    /// docs) or gives the parameter `name` twice. No value appears in the
    /// message.
    pub fn parse(text: &str) -> Result<Self> {
        let url = url::Url::parse(text).map_err(|e| invalid("uri", format!("not a store URI: {e}")))?;
        if url.password().is_some() {
            return Err(secret_refused("password"));
        }
        let mut params: Vec<(String, String)> = Vec::new();
        for (name, value) in url.query_pairs() {
            let name = name.into_owned();
            if is_secret_name(&name) {
                return Err(secret_refused(&name));
            }
            if params.iter().any(|(seen, _)| *seen == name) {
                return Err(invalid(format!("uri.{name}"), "given twice"));
            }
            params.push((name, value.into_owned()));
        }
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        let username = Some(decode(url.username())).filter(|u| !u.is_empty());
        let host = url.host_str().filter(|h| !h.is_empty()).map(decode);
        Ok(Self {
            text: text.to_owned(),
            scheme: url.scheme().to_owned(),
            username,
            host,
            port: url.port(),
            path: decode(url.path()),
            params,
        })
    }

    /// The scheme, lowercase: `sqlite`, `vault+https`.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The user named before `@`, if any (never a password: those are
    /// refused).
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The host, if the URI has an authority (`//host`). IPv6 addresses
    /// keep their brackets.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// The port, if given.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The path, percent-decoded: `/var/lib/app.db` in
    /// `sqlite:///var/lib/app.db`, `app.db` in `sqlite:app.db`, empty in
    /// `memory:`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The parameters not taken yet, in the order given.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The value of the parameter `name`, left in place.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Takes the parameter `name` out: a scheme takes each one it uses, and
    /// [`finish`](StoreUri::finish) refuses what is left.
    pub fn take(&mut self, name: &str) -> Option<String> {
        let at = self.params.iter().position(|(n, _)| n == name)?;
        Some(self.params.remove(at).1)
    }

    /// Takes the parameter `name` and parses it.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on `uri.{name}` when it does not parse.
    pub fn take_parsed<T>(&mut self, name: &str) -> Result<Option<T>>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.take(name)
            .map(|v| v.parse::<T>().map_err(|e| invalid(format!("uri.{name}"), format!("{v:?}: {e}"))))
            .transpose()
    }

    /// Takes a yes-or-no parameter: `true`/`false`, `yes`/`no`, `1`/`0`;
    /// a name given with no value (`?read_only`) is `true`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on `uri.{name}` for any other value.
    pub fn take_bool(&mut self, name: &str) -> Result<Option<bool>> {
        self.take(name)
            .map(|v| match v.to_ascii_lowercase().as_str() {
                "" | "true" | "yes" | "1" => Ok(true),
                "false" | "no" | "0" => Ok(false),
                _ => Err(invalid(format!("uri.{name}"), format!("{v:?} is not true or false"))),
            })
            .transpose()
    }

    /// Takes a duration parameter: a number with a unit, `ms`, `s`, `m`,
    /// `h` or `d` (`250ms`, `30s`, `5m`), or a bare number of seconds.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on `uri.{name}` when it does not parse.
    pub fn take_duration(&mut self, name: &str) -> Result<Option<Duration>> {
        self.take(name)
            .map(|v| {
                parse_duration(&v).ok_or_else(|| {
                    invalid(
                        format!("uri.{name}"),
                        format!("{v:?} is not a duration such as 30s, 5m or 250ms"),
                    )
                })
            })
            .transpose()
    }

    /// Takes the pair `{name}_env` / `{name}_file`: where the secret
    /// `name` comes from, read when the store is opened.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on `uri.{name}` when both are given.
    pub fn take_secret(&mut self, name: &str) -> Result<Option<SecretSource>> {
        let env = self.take(&format!("{name}_env"));
        let file = self.take(&format!("{name}_file")).map(Into::into);
        SecretSource::one_of(name, file, env).map_err(|reason| invalid(format!("uri.{name}"), reason))
    }

    /// Takes the pair `{name}_file` / `{name}_env` as a config file's table
    /// has them, for settings that keep the two fields: at most one is set.
    ///
    /// # Errors
    /// As [`take_secret`](StoreUri::take_secret).
    pub fn take_secret_fields(&mut self, name: &str) -> Result<(Option<std::path::PathBuf>, Option<String>)> {
        Ok(match self.take_secret(name)? {
            Some(SecretSource::File(path)) => (Some(path), None),
            Some(SecretSource::Env(var)) => (None, Some(var)),
            None => (None, None),
        })
    }

    /// The store id: the parameter `id` if given, `default` otherwise.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] when the id is not a valid [`StoreId`].
    pub fn take_store_id(&mut self, default: &str) -> Result<StoreId> {
        match self.take("id") {
            Some(id) => StoreId::new(id),
            None => StoreId::new(default),
        }
    }

    /// Checks that every parameter was taken.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on `uri.{name}` for the first one left,
    /// naming this URI's scheme.
    pub fn finish(self) -> Result<()> {
        match self.params.first() {
            None => Ok(()),
            Some((name, _)) => {
                Err(invalid(format!("uri.{name}"), format!("not a parameter of {}: URIs", self.scheme)))
            }
        }
    }
}

/// `250ms`, `30s`, `5m`, `2h`, `1d` or a bare number of seconds.
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let seconds = |factor: u64| n.checked_mul(factor).map(Duration::from_secs);
    match unit {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => seconds(1),
        "m" => seconds(60),
        "h" => seconds(3600),
        "d" => seconds(86_400),
        _ => None,
    }
}

impl FromStr for StoreUri {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for StoreUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for StoreUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreUri").field(&self.text).finish()
    }
}

/// Opens the stores of one or more URI schemes: what a backend crate
/// provides so that its stores can be named by URI.
///
/// ```
/// use std::sync::Arc;
/// use credstore_conformance::mock::MockStore;
/// use credstore_core::config::ConfigContext;
/// use credstore_core::{async_trait, CredentialStore, Result, SchemeRegistry, StoreScheme, StoreUri};
///
/// /// `mock:` stores, for this example; a real scheme reads its settings
/// /// from the URI.
/// #[derive(Debug)]
/// struct MockScheme;
///
/// #[async_trait]
/// impl StoreScheme for MockScheme {
///     fn schemes(&self) -> &[&'static str] {
///         &["mock"]
///     }
///
///     async fn open(&self, mut uri: StoreUri, _ctx: &ConfigContext) -> Result<Arc<dyn CredentialStore>> {
///         let id = uri.take_store_id("mock")?;
///         uri.finish()?;
///         Ok(Arc::new(MockStore::new(id)))
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<()> {
/// let mut schemes = SchemeRegistry::new();
/// schemes.register(MockScheme)?;
/// let store = schemes.open("mock:?id=team-a").await?;
/// assert_eq!(store.info().id().as_str(), "team-a");
/// assert!(schemes.open("mock:?colour=blue").await.is_err()); // a parameter the scheme does not know
/// assert!(schemes.open("nope:").await.is_err()); // a scheme nobody registered
/// # Ok(()) }
/// ```
#[async_trait]
pub trait StoreScheme: Send + Sync + fmt::Debug {
    /// The URI schemes this opens, lowercase (`["vault+http",
    /// "vault+https"]`).
    fn schemes(&self) -> &[&'static str];

    /// Opens the store `uri` names. Relative paths start at
    /// [`ConfigContext::base_dir`] and `*_env` secrets are read through
    /// `ctx`.
    ///
    /// # Behavior
    /// Takes every parameter it knows from `uri` and then calls
    /// [`StoreUri::finish`], so that a misspelt parameter is an error, not
    /// a default silently used. Opening does what the backend's own
    /// constructor does (creating a file, connecting) and nothing more.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on `uri.{name}` for a parameter that is
    /// unknown or does not parse, before any I/O; otherwise the backend's
    /// own errors of opening a store ([`Error::Config`] and the common
    /// ones).
    async fn open(&self, uri: StoreUri, ctx: &ConfigContext) -> Result<Arc<dyn CredentialStore>>;
}

/// The [`StoreScheme`]s an application opens URIs with, by scheme.
#[derive(Debug, Default, Clone)]
pub struct SchemeRegistry {
    schemes: BTreeMap<String, Arc<dyn StoreScheme>>,
}

impl SchemeRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `scheme` under each of its [`schemes`](StoreScheme::schemes).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on the field `scheme` when one of them is
    /// already registered; the registry is unchanged.
    pub fn register(&mut self, scheme: impl StoreScheme + 'static) -> Result<()> {
        let scheme: Arc<dyn StoreScheme> = Arc::new(scheme);
        if let Some(taken) = scheme.schemes().iter().find(|name| self.schemes.contains_key(**name)) {
            return Err(invalid("scheme", format!("{taken}: is already registered")));
        }
        for name in scheme.schemes() {
            self.schemes.insert(name.to_ascii_lowercase(), Arc::clone(&scheme));
        }
        Ok(())
    }

    /// The registered scheme names, sorted.
    pub fn schemes(&self) -> impl Iterator<Item = &str> {
        self.schemes.keys().map(String::as_str)
    }

    /// Opens the store `uri` names, with relative paths from the current
    /// directory and secrets from the process environment.
    ///
    /// # Errors
    /// As [`SchemeRegistry::open_uri`], and [`StoreUri::parse`]'s.
    pub async fn open(&self, uri: &str) -> Result<Arc<dyn CredentialStore>> {
        let ctx = ConfigContext::new(std::env::current_dir().unwrap_or_default());
        self.open_uri(StoreUri::parse(uri)?, &ctx).await
    }

    /// Opens a parsed URI with the scheme registered for it.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on the field `uri` when no scheme is
    /// registered for it (the message lists those that are); otherwise
    /// [`StoreScheme::open`]'s.
    pub async fn open_uri(&self, uri: StoreUri, ctx: &ConfigContext) -> Result<Arc<dyn CredentialStore>> {
        let Some(scheme) = self.schemes.get(uri.scheme()) else {
            let known: Vec<&str> = self.schemes().collect();
            return Err(invalid(
                "uri",
                format!("no store scheme {}: is registered (known: {})", uri.scheme(), known.join(", ")),
            ));
        };
        scheme.open(uri, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_percent_decoded_and_the_scheme_lowercased() {
        let uri = StoreUri::parse("SQLite:///var/lib/my%20app/creds.db?max_versions=3&id=app").unwrap();
        assert_eq!(uri.scheme(), "sqlite");
        assert_eq!(uri.path(), "/var/lib/my app/creds.db");
        assert_eq!(uri.host(), None);
        assert_eq!(uri.params().collect::<Vec<_>>(), [("max_versions", "3"), ("id", "app")]);
        let relative = StoreUri::parse("sqlite:data/creds.db").unwrap();
        assert_eq!((relative.host(), relative.path()), (None, "data/creds.db"));
        let bare = StoreUri::parse("memory:").unwrap();
        assert_eq!((bare.path(), bare.params().count()), ("", 0));
    }

    #[test]
    fn every_kind_of_secret_is_refused_without_echoing_it() {
        for (text, field) in [
            ("vault+https://h/secret?token=hvs.TOPSECRET", "uri.token"),
            ("sqlite:a.db?master_key=TOPSECRET", "uri.master_key"),
            ("aws-sm://eu-west-1?secret_access_key=TOPSECRET", "uri.secret_access_key"),
            ("postgres://app:TOPSECRET@db/creds", "uri.password"),
            ("sqlite:a.db?key=TOPSECRET", "uri.key"),
            ("x:?api_key=TOPSECRET", "uri.api_key"),
            ("x:?passphrase=TOPSECRET", "uri.passphrase"),
            ("vault+https://h/secret?approle_role_id=r&approle_secret_id=TOPSECRET", "uri.approle_secret_id"),
        ] {
            let err = StoreUri::parse(text).unwrap_err();
            assert!(matches!(&err, Error::InvalidInput { field: f, .. } if f == field), "{text}: {err}");
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("TOPSECRET"), "{text}: {shown}");
            assert!(shown.contains("_env") && shown.contains("_file"), "{text}: {shown}");
        }
        // The ways to name a secret, and names that only end like one, pass.
        let mut ok = StoreUri::parse("x:?key_env=K&token_file=/run/t&kms_key_id=alias/app").unwrap();
        assert_eq!(ok.take_secret("key").unwrap(), Some(SecretSource::Env("K".into())));
        assert_eq!(ok.take_secret("token").unwrap(), Some(SecretSource::File("/run/t".into())));
        assert_eq!(ok.take("kms_key_id").as_deref(), Some("alias/app"));
        ok.finish().unwrap();
        // As a config file's pair of fields: one of them, never both.
        let mut pair = StoreUri::parse("x:?password_file=/run/p").unwrap();
        assert_eq!(pair.take_secret_fields("password").unwrap(), (Some("/run/p".into()), None));
        let mut both = StoreUri::parse("x:?password_file=/run/p&password_env=P").unwrap();
        let err = both.take_secret_fields("password").unwrap_err();
        assert!(matches!(&err, Error::InvalidInput { field, .. } if field == "uri.password"), "{err}");
    }

    #[test]
    fn a_parameter_given_twice_or_left_unused_is_an_error_naming_it() {
        let twice = StoreUri::parse("memory:?id=a&id=b").unwrap_err();
        assert!(matches!(&twice, Error::InvalidInput { field, .. } if field == "uri.id"), "{twice}");
        let mut uri = StoreUri::parse("memory:?id=a&max_versoins=3").unwrap();
        uri.take_store_id("memory").unwrap();
        let left = uri.finish().unwrap_err();
        assert!(matches!(&left, Error::InvalidInput { field, .. } if field == "uri.max_versoins"), "{left}");
        assert!(left.to_string().contains("memory:"), "{left}");
    }

    #[test]
    fn typed_parameters_parse_or_name_the_parameter() {
        let mut uri =
            StoreUri::parse("x:?ttl=250ms&age=5m&n=7&bad=x&flag&off=no&plain=30&big=99999999999999999999h")
                .unwrap();
        assert_eq!(uri.take_duration("ttl").unwrap(), Some(Duration::from_millis(250)));
        assert_eq!(uri.take_duration("age").unwrap(), Some(Duration::from_secs(300)));
        assert_eq!(uri.take_duration("plain").unwrap(), Some(Duration::from_secs(30)));
        assert!(uri.take_duration("big").is_err());
        assert_eq!(uri.take_parsed::<u32>("n").unwrap(), Some(7));
        let bad = uri.take_parsed::<u32>("bad").unwrap_err();
        assert!(matches!(&bad, Error::InvalidInput { field, .. } if field == "uri.bad"), "{bad}");
        assert_eq!(uri.take_bool("flag").unwrap(), Some(true));
        assert_eq!(uri.take_bool("off").unwrap(), Some(false));
        assert_eq!(uri.take_bool("absent").unwrap(), None);
        uri.finish().unwrap();
    }

    #[test]
    fn not_a_uri_is_invalid_input_on_uri() {
        for text in ["", "no-scheme", "/var/lib/a.db"] {
            let err = StoreUri::parse(text).unwrap_err();
            assert!(matches!(&err, Error::InvalidInput { field, .. } if field == "uri"), "{text}: {err}");
        }
    }
}
