//! `uri = "…"`: a store's whole configuration in one string, opened by the
//! `credstore` crate's schemes (those of this build's backend features).
//!
//! ```toml
//! [[stores]]
//! id = "team"                                            # the store's id, as in every table
//! uri = "sqlite:team.db?master_key_env=TEAM_KEY&max_versions=5"
//! cache = { ttl_secs = 60 }                              # optional, as in every table
//! ```
//!
//! The table holds `id`, `uri` and optionally `cache`, nothing else: the
//! URI's scheme names the backend (no `type`) and its parameters are the
//! backend's settings, by the names a table of that type uses. A URI that
//! holds a secret (a password in its user part, `token=`, `master_key=`,
//! ...) is refused when the config is read, naming `{name}_env` and
//! `{name}_file`. The layer parameters of the `credstore` crate
//! (`cache_ttl`, `read_only`, `retries`) apply; `cache_ttl` and a `cache`
//! table together are refused (one cache per store).

use std::fmt;
use std::sync::Arc;

use credstore_core::config::ConfigContext;
use credstore_core::{CredentialStore, StoreId, StoreKind, StoreUri};

/// The type name of a store configured by `uri`, and its
/// [`StoreKind`] until it opens (an opened store reports its backend's).
pub const URI_KIND: StoreKind = StoreKind::from_static("uri");

/// The settings of a `[[stores]]` table that gives `uri`: the parsed URI,
/// which holds no secret (so `Debug` may show it).
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "RawUriSettings")]
pub struct UriSettings {
    uri: StoreUri,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUriSettings {
    uri: String,
}

impl TryFrom<RawUriSettings> for UriSettings {
    type Error = String;

    fn try_from(raw: RawUriSettings) -> Result<Self, String> {
        let uri = StoreUri::parse(&raw.uri).map_err(|e| format!("uri: {e}"))?;
        if uri.param("id").is_some() {
            return Err("uri: leave id= out of the URI: the table's `id` names the store".into());
        }
        let schemes = credstore::schemes();
        if !schemes.schemes().any(|s| s == uri.scheme()) {
            let known: Vec<&str> = schemes.schemes().collect();
            return Err(format!(
                "uri: no store scheme {}: in this build (known: {})",
                uri.scheme(),
                known.join(", ")
            ));
        }
        Ok(Self { uri })
    }
}

impl UriSettings {
    /// The URI, as written.
    pub fn uri(&self) -> &StoreUri {
        &self.uri
    }

    /// Opens the store `id` the URI names with [`credstore::open_with`]:
    /// relative paths from the config file's directory, `*_env` secrets
    /// from the server's environment.
    ///
    /// # Errors
    /// Those of [`credstore::open_with`]: a parameter the backend does not
    /// know, settings it refuses ([`credstore_core::Error::Config`] naming
    /// the store), or the backend's errors of opening.
    pub async fn open(
        &self,
        id: &StoreId,
        ctx: &ConfigContext,
    ) -> credstore_core::Result<Arc<dyn CredentialStore>> {
        let text = self.uri.to_string();
        let sep = if text.contains('?') { '&' } else { '?' };
        credstore::open_with(&credstore::schemes(), &format!("{text}{sep}id={id}"), ctx).await
    }
}

/// The environment variables a store URI names for its secrets: the values
/// of its `*_env` parameters (`master_key_env=TEAM_KEY` names `TEAM_KEY`);
/// none when `text` is not a URI. What a process that wipes its secret
/// variables at start must take from a `uri` beside the `*_env` keys of the
/// config file's tables.
pub fn env_variables(text: &str) -> Vec<String> {
    match StoreUri::parse(text) {
        Ok(uri) => {
            uri.params().filter(|(name, _)| name.ends_with("_env")).map(|(_, var)| var.to_owned()).collect()
        }
        Err(_) => Vec::new(),
    }
}

impl fmt::Debug for UriSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UriSettings").field("uri", &self.uri.to_string()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_variables_are_the_values_of_the_env_parameters() {
        assert_eq!(
            env_variables(
                "postgres://app@db/c?password_env=PG_PW&master_key_env=KEK&schema=s&url_env=DB_URL"
            ),
            ["PG_PW", "KEK", "DB_URL"]
        );
        assert!(env_variables("memory:").is_empty());
        assert!(
            env_variables("sqlite:a.db?master_key=refused").is_empty(),
            "not a usable URI: nothing named"
        );
    }
}
