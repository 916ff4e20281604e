//! What a backend needs to read its settings from a configuration file:
//! where relative paths start ([`ConfigContext`]) and where secrets come
//! from ([`SecretSource`]).
//!
//! Each backend crate owns the settings of its stores: with its `serde`
//! feature, a `*Settings` type deserializes from the table of one store in
//! a config file (for example one `[[stores]]` table of `credstore-server`)
//! and opens the store with a [`ConfigContext`]. Settings never hold a
//! secret inline: they name the file (`*_file`) or environment variable
//! (`*_env`) that holds it, read when the store is opened.
//!
//! ```
//! use credstore_core::config::{ConfigContext, SecretSource};
//! use credstore_core::StoreId;
//!
//! # fn main() -> credstore_core::Result<()> {
//! let ctx = ConfigContext::new("/etc/credstore").with_env(|var| {
//!     (var == "TEAM_TOKEN").then(|| "s3cr3t".to_owned())
//! });
//! assert_eq!(ctx.path("team.db"), std::path::Path::new("/etc/credstore/team.db"));
//!
//! let store = StoreId::new("vault-prod")?;
//! let source = SecretSource::one_of("token", None, Some("TEAM_TOKEN".into()))
//!     .map_err(|reason| credstore_core::Error::config(&store, reason))?
//!     .expect("one source given");
//! let token = source.read(&store, &ctx)?;
//! assert_eq!(token.expose_str()?, "s3cr3t");
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::{Error, Result, SecretValue, StoreId};

type EnvLookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// Where a store's settings are resolved: the directory relative paths
/// start from (a config file's own directory), and how environment
/// variables are looked up (the process environment unless replaced, so
/// tests can pass their own).
#[derive(Clone)]
pub struct ConfigContext {
    base_dir: PathBuf,
    env: Arc<EnvLookup>,
}

impl ConfigContext {
    /// Relative paths start at `base_dir`; variables come from the process
    /// environment (a variable that is not Unicode is not set).
    pub fn new(base_dir: impl Into<PathBuf>) -> Self {
        Self { base_dir: base_dir.into(), env: Arc::new(|var| std::env::var(var).ok()) }
    }

    /// Looks variables up with `env` instead of the process environment.
    pub fn with_env(mut self, env: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        self.env = Arc::new(env);
        self
    }

    /// The directory relative paths start from.
    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// `path` resolved against [`base_dir`](Self::base_dir); an absolute
    /// path is returned as it is.
    pub fn path(&self, path: impl AsRef<Path>) -> PathBuf {
        self.base_dir.join(path)
    }

    /// The value of the environment variable `var`, if it is set.
    pub fn env(&self, var: &str) -> Option<String> {
        (self.env)(var)
    }
}

impl fmt::Debug for ConfigContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigContext").field("base_dir", &self.base_dir).finish_non_exhaustive()
    }
}

/// Where a secret named by a store's settings lives: never the secret
/// itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A file holding the secret; surrounding ASCII whitespace (a trailing
    /// newline) is not part of it. A relative path is resolved with
    /// [`ConfigContext::path`] when read.
    File(PathBuf),
    /// The environment variable of this name.
    Env(String),
}

impl SecretSource {
    /// The source given by the pair of settings `{name}_file` and
    /// `{name}_env`: `None` when neither is set.
    ///
    /// # Errors
    /// Both are set; the message names the two settings.
    pub fn one_of(
        name: &str,
        file: Option<PathBuf>,
        env: Option<String>,
    ) -> std::result::Result<Option<Self>, String> {
        match (file, env) {
            (Some(_), Some(_)) => Err(format!("give at most one of {name}_file and {name}_env")),
            (Some(path), None) => Ok(Some(SecretSource::File(path))),
            (None, Some(var)) => Ok(Some(SecretSource::Env(var))),
            (None, None) => Ok(None),
        }
    }

    /// Reads the secret for the store `store`.
    ///
    /// # Behavior
    /// A file is read whole into a buffer that is zeroized afterwards;
    /// leading and trailing ASCII whitespace is dropped. The value is text
    /// when it is UTF-8 and bytes otherwise. An environment variable is
    /// read through `ctx`.
    ///
    /// # Errors
    /// [`Error::Config`] naming `store` and the source (never the value):
    /// the file cannot be read, the variable is not set, or the secret is
    /// empty.
    pub fn read(&self, store: &StoreId, ctx: &ConfigContext) -> Result<SecretValue> {
        let value = match self {
            SecretSource::File(path) => {
                let path = ctx.path(path);
                let bytes = Zeroizing::new(
                    std::fs::read(&path)
                        .map_err(|e| Error::config(store, format!("cannot read {}: {e}", path.display())))?,
                );
                SecretValue::new(bytes.trim_ascii())
            }
            SecretSource::Env(var) => match ctx.env(var) {
                Some(text) => SecretValue::from_text(text),
                None => {
                    return Err(Error::config(store, format!("the environment variable {var} is not set")))
                }
            },
        };
        if value.expose_secret().is_empty() {
            return Err(Error::config(store, format!("{self} is empty")));
        }
        Ok(value)
    }
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(path) => write!(f, "the file {}", path.display()),
            SecretSource::Env(var) => write!(f, "the environment variable {var}"),
        }
    }
}

/// Whether `host` (a URL's host: a name, an IPv4 address, or an IPv6
/// address with or without its brackets) is this machine's loopback:
/// `127.0.0.0/8`, `::1` or `localhost`. Backends refuse plain `http://` to
/// any other host unless told otherwise, since secrets would cross the
/// network in the clear.
///
/// ```
/// use credstore_core::config::is_loopback_host;
/// assert!(is_loopback_host("127.0.0.2") && is_loopback_host("[::1]") && is_loopback_host("LocalHost"));
/// assert!(!is_loopback_host("vault.internal") && !is_loopback_host("10.0.0.1"));
/// ```
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

/// The history a store's settings ask for, from the two settings every
/// backend with history spells the same: `max_versions` (versions kept per
/// key, the current one included) and `max_version_age_secs` (how long a
/// version is kept once it stopped being current). A setting left out keeps
/// `default`'s.
///
/// ```
/// use std::time::Duration;
/// use credstore_core::{config::retention_from, Retention};
/// let r = retention_from(Some(3), Some(86_400), Retention::versions(10))?;
/// assert_eq!(r, Retention::versions(3).with_max_age(Some(Duration::from_secs(86_400))));
/// assert_eq!(retention_from(None, None, Retention::versions(10))?, Retention::versions(10));
/// assert!(retention_from(Some(0), None, Retention::versions(10)).is_err());
/// # Ok::<(), String>(())
/// ```
///
/// # Errors
/// A message naming the setting when either is 0 (keep at least the
/// current version; leave the age out for no limit).
pub fn retention_from(
    max_versions: Option<u32>,
    max_version_age_secs: Option<u64>,
    default: crate::Retention,
) -> std::result::Result<crate::Retention, String> {
    let mut retention = default;
    match max_versions {
        Some(0) => return Err("max_versions must be at least 1 (the current version is always kept)".into()),
        Some(n) => retention.max_versions = Some(n),
        None => {}
    }
    match max_version_age_secs {
        Some(0) => {
            return Err("max_version_age_secs must be at least 1; leave it out for no age limit".into())
        }
        Some(secs) => retention.max_age = Some(std::time::Duration::from_secs(secs)),
        None => {}
    }
    Ok(retention)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> StoreId {
        StoreId::new("s").unwrap()
    }

    #[test]
    fn one_of_takes_at_most_one_source() {
        assert_eq!(SecretSource::one_of("token", None, None).unwrap(), None);
        assert_eq!(
            SecretSource::one_of("token", Some("t".into()), None).unwrap(),
            Some(SecretSource::File("t".into()))
        );
        let err = SecretSource::one_of("token", Some("t".into()), Some("T".into())).unwrap_err();
        assert_eq!(err, "give at most one of token_file and token_env");
    }

    #[test]
    fn files_resolve_against_the_base_and_are_trimmed() {
        let dir = std::env::temp_dir().join(format!("credstore-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), b"  abc\n").unwrap();
        let ctx = ConfigContext::new(&dir);
        let value = SecretSource::File("token".into()).read(&store(), &ctx).unwrap();
        assert_eq!(value.expose_str().unwrap(), "abc");

        std::fs::write(dir.join("blank"), b"\n").unwrap();
        let err = SecretSource::File("blank".into()).read(&store(), &ctx).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err}");
        assert!(err.to_string().contains("is empty"), "{err}");
        let missing = SecretSource::File("missing".into()).read(&store(), &ctx).unwrap_err();
        assert!(missing.to_string().contains("cannot read"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn env_comes_from_the_context_and_errors_never_show_it() {
        let ctx = ConfigContext::new("/").with_env(|v| (v == "SET").then(|| "hunter2".to_owned()));
        let v = SecretSource::Env("SET".into()).read(&store(), &ctx).unwrap();
        assert_eq!(v.expose_str().unwrap(), "hunter2");
        let err = SecretSource::Env("UNSET".into()).read(&store(), &ctx).unwrap_err();
        assert_eq!(err.store(), Some(&store()));
        assert!(err.to_string().contains("UNSET is not set"), "{err}");
        assert!(!format!("{ctx:?}").contains("hunter2"));
    }
}
