//! The process environment, taken once at start: the variables that hold
//! secrets are copied into zeroizing memory and wiped from the process
//! before any thread starts, so that nothing the process runs inherits
//! them and `/proc/<pid>/environ` no longer shows them.
//!
//! Which variables hold secrets: the server's own (`CREDSTORE_ADMIN_TOKEN`,
//! `CREDSTORE_MASTER_KEY`), the CLI's bearer token for `--server`
//! (`CREDSTORE_TOKEN`, so `credstore run` never passes it on), `VAULT_TOKEN` (which a `vault` store without a
//! token setting reads), and every variable the config file names with a
//! `*_env` key (`master_key_env`, `token_env`, `secret_id_env`, ...), the
//! convention every backend's settings follow for secrets, or by a `*_env`
//! parameter of a store URI (a `uri = "…"` store, the CLI's `--uri`). Other variables
//! (`CREDSTORE_LISTEN`, `AWS_REGION`, the AWS SDK's own credentials, which
//! it reads itself) are left as they are.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::config::MASTER_KEY_ENV;

/// The variables known to hold secrets whatever the config file says.
const KNOWN_SECRETS: [&str; 4] =
    ["CREDSTORE_ADMIN_TOKEN", MASTER_KEY_ENV, super::target::TOKEN_ENV, "VAULT_TOKEN"];

/// The secret variables, copied out of the process environment.
pub(crate) struct Environment {
    secrets: HashMap<String, Zeroizing<String>>,
}

impl Environment {
    /// Copies out and wipes the secret variables: the known ones and those
    /// the config file (`config`, else `CREDSTORE_CONFIG`) names by `*_env`
    /// keys, and those `extra` (more TOML: `rewrap-key`'s `--to` as
    /// `key = { .. }`) names. A text that cannot be read or parsed names none
    /// here; loading the settings (or the command) reports it.
    ///
    /// Call it before any thread starts: changing the environment races with
    /// every other thread that reads it.
    pub(crate) fn take_secrets(config: Option<&Path>, extra: Option<&str>, more: &[String]) -> Self {
        let path =
            config.map(Path::to_path_buf).or_else(|| std::env::var_os("CREDSTORE_CONFIG").map(Into::into));
        let config = path.and_then(|p| std::fs::read_to_string(p).ok());
        let mut names = secret_names([config.as_deref(), extra]);
        names.extend(more.iter().cloned());
        let mut secrets = HashMap::new();
        for name in names {
            if let Ok(value) = std::env::var(&name) {
                secrets.insert(name.clone(), Zeroizing::new(value));
                wipe(&name);
            }
        }
        Self { secrets }
    }

    /// How the settings look a variable up: a secret from the copy, any
    /// other from the process environment.
    pub(crate) fn lookup(self) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
        let this = Arc::new(self);
        move |name| match this.secrets.get(name) {
            Some(value) => Some(value.as_str().to_owned()),
            None => std::env::var(name).ok(),
        }
    }
}

/// The variables a store URI names by `*_env` parameters (`--uri
/// sqlite:app.db?master_key_env=APP_KEY` names `APP_KEY`); none for a URI
/// that does not parse (opening it reports why).
pub(crate) fn uri_secret_names(uri: Option<&str>) -> Vec<String> {
    let Some(uri) = uri.and_then(|u| credstore_core::StoreUri::parse(u).ok()) else { return Vec::new() };
    uri.params().filter(|(k, _)| k.ends_with("_env")).map(|(_, v)| v.to_owned()).collect()
}

/// The known secret variables and those the TOML `texts` name by `*_env`
/// keys (a text that does not parse names none).
fn secret_names<'a>(texts: impl IntoIterator<Item = Option<&'a str>>) -> Vec<String> {
    let mut names: Vec<String> = KNOWN_SECRETS.iter().map(|&n| n.to_owned()).collect();
    for text in texts.into_iter().flatten() {
        if let Ok(doc) = text.parse::<toml::Table>() {
            env_names(&doc, &mut names);
        }
    }
    names
}

/// Every string value under a key ending in `_env`, at any depth.
fn env_names(table: &toml::Table, names: &mut Vec<String>) {
    fn walk(value: &toml::Value, key: &str, names: &mut Vec<String>) {
        match value {
            toml::Value::String(s) if key.ends_with("_env") => names.push(s.clone()),
            // A store given as one URI (`uri = "sqlite:a.db?master_key_env=A_KEY"`)
            // names its variables as `*_env` parameters.
            toml::Value::String(s) if key == "uri" => names.extend(uri_secret_names(Some(s))),
            toml::Value::Table(t) => t.iter().for_each(|(k, v)| walk(v, k, names)),
            toml::Value::Array(items) => items.iter().for_each(|v| walk(v, key, names)),
            _ => {}
        }
    }
    table.iter().for_each(|(k, v)| walk(v, k, names));
}

/// Removes `name` from the environment, first overwriting its value where
/// the process holds it: on Linux `/proc/<pid>/environ` shows the block the
/// process started with, which removing a variable does not change.
fn wipe(name: &str) {
    #[cfg(target_os = "linux")]
    {
        extern "C" {
            static mut environ: *mut *mut std::ffi::c_char;
        }
        // SAFETY: called before any other thread exists (see
        // `take_secrets`), so nothing reads or changes the environment
        // meanwhile. `environ` is the C library's null-terminated array of
        // pointers to writable, NUL-terminated `NAME=value` strings; only
        // the bytes of a value, before its NUL, are written.
        unsafe {
            let mut entry = std::ptr::addr_of!(environ).read();
            while !entry.is_null() && !(*entry).is_null() {
                let text = std::ffi::CStr::from_ptr(*entry).to_bytes();
                if text.len() > name.len() && text.starts_with(name.as_bytes()) && text[name.len()] == b'=' {
                    let value = (*entry).cast::<u8>().add(name.len() + 1);
                    for i in 0..text.len() - name.len() - 1 {
                        std::ptr::write_volatile(value.add(i), 0);
                    }
                }
                entry = entry.add(1);
            }
        }
    }
    std::env::remove_var(name);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys_are_found_at_any_depth_and_nothing_else() {
        let doc: toml::Table = r#"
            listen = "127.0.0.1:1"
            [[stores]]
            id = "a"
            type = "encrypted-sqlite"
            master_key_env = "A_KEY"
            path = "a.db"
            [[stores]]
            id = "v"
            type = "vault"
            token_env = "V_TOKEN"
            login = { secret_id_env = "V_SECRET", role_id = "r" }
            environment = "not a name"
            [[stores]]
            id = "u"
            uri = "sqlite:u.db?master_key_env=U_KEY"
        "#
        .parse()
        .unwrap();
        let mut names = Vec::new();
        env_names(&doc, &mut names);
        names.sort();
        assert_eq!(names, ["A_KEY", "U_KEY", "V_SECRET", "V_TOKEN"]);
    }

    #[test]
    fn a_store_uri_names_its_secret_variables() {
        let names = uri_secret_names(Some("sqlite:app.db?master_key_env=APP_KEY&max_versions=3"));
        assert_eq!(names, ["APP_KEY"]);
        assert!(uri_secret_names(Some("not a uri")).is_empty());
        assert!(uri_secret_names(None).is_empty());
    }

    #[test]
    fn the_key_table_of_rewrap_key_names_secrets_too() {
        let config = "[[stores]]\nid = \"a\"\ntype = \"sqlite\"\npath = \"a.db\"\nmaster_key_env = \"A_KEY\"";
        let to = "key = { provider = \"passphrase\", passphrase_env = \"TEAM_PASSPHRASE\" }";
        let names = secret_names([Some(config), Some(to), Some("not toml = = ="), None]);
        for name in ["CREDSTORE_ADMIN_TOKEN", "CREDSTORE_TOKEN", "A_KEY", "TEAM_PASSPHRASE"] {
            assert!(names.iter().any(|n| n == name), "{name}: {names:?}");
        }
    }
}
