//! Tests of `type = "postgres"` stores through a whole config file: the
//! settings, the `key = { provider = .. }` table, an inline URL with a
//! password, and a database that cannot be reached. In a module of their
//! own, like `key_tests`, since they need both the backends and the key
//! providers.

use std::collections::HashMap;
use std::path::Path;

use credstore_core::Error;
use credstore_postgres::{KeySource, PostgresSettings};

use super::backends::Backends;
use crate::config::{FileConfig, Settings as ServerSettings};

fn load(dir: &Path, stores: &str, env: &[(&str, &str)]) -> std::result::Result<ServerSettings, String> {
    let map: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let file: FileConfig =
        toml::from_str(&format!("default_stores = false\n{stores}")).map_err(|e| e.to_string())?;
    ServerSettings::from_file(file, dir, move |k| map.get(k).cloned(), &Backends::builtin())
        .map_err(|e| e.to_string())
}

const TEAM_PG: &str = r#"
[[stores]]
id = "team-pg"
type = "postgres"
host = "db.internal"
port = 6543
user = "credstore"
database = "secrets"
password_env = "TEAM_PG_PASSWORD"
schema = "team_a"
tls = "verify-full"
ca_file = "tls/db-ca.pem"
max_connections = 4
connect_timeout_ms = 1500
acquire_timeout_ms = 2500
statement_timeout_ms = 3500
change_feed = false
cache = { ttl_ms = 60000 }
key = { provider = "master-key", key_file = "keys/team.key" }
"#;

#[test]
fn postgres_store_settings_parse_with_their_key_provider() {
    let dir = tempfile::tempdir().unwrap();
    let s = load(dir.path(), TEAM_PG, &[("TEAM_PG_PASSWORD", "hunter2-pg")]).unwrap();
    let spec = &s.stores[0];
    assert_eq!((spec.id().as_str(), spec.kind().as_str()), ("team-pg", "postgres"));
    assert!(s.caches.contains_key(spec.id()), "cache = {{ .. }} is the server's");
    let settings = spec.settings::<PostgresSettings>().expect("the postgres settings");
    assert_eq!(settings.schema(), "team_a");
    assert_eq!(settings.master_key(), &KeySource::Provider);
    let key = spec.key().expect("the key setting");
    assert_eq!(key.provider_name(), "master-key");
    assert_eq!(key.key_file(spec.context()).unwrap().path(), dir.path().join("keys/team.key"));

    // Every setting reaches the store's config; the password is read from
    // its variable and never shown.
    let config = settings.base_config(spec.id(), spec.context()).unwrap();
    let shown = format!("{config:?}");
    let ca = dir.path().join("tls/db-ca.pem");
    for part in [
        "host: \"db.internal\"",
        "port: 6543",
        "user: Some(\"credstore\")",
        "database: Some(\"secrets\")",
        "password: Some(\"<hidden>\")",
        "schema: \"team_a\"",
        "tls: VerifyFull",
        &format!("ca_file: Some({ca:?})"),
        "max_connections: 4",
        "connect_timeout: 1.5s",
        "acquire_timeout: 2.5s",
        "statement_timeout: 3.5s",
        "change_feed: false",
    ] {
        assert!(shown.contains(part), "{part} in {shown}");
    }
    assert!(!shown.contains("hunter2-pg") && !format!("{s:?}").contains("hunter2-pg"));

    // The store's own key settings, and the `postgres` type's other
    // providers, read as they are for encrypted SQLite.
    let own = "[[stores]]\nid = \"p\"\ntype = \"postgres\"\nurl_env = \"PG_URL\"\nmaster_key_env = \"K\"\n";
    let s = load(dir.path(), own, &[]).unwrap();
    assert!(s.stores[0].key().is_none());
    assert_eq!(s.stores[0].settings::<PostgresSettings>().unwrap().master_key(), &KeySource::Env("K".into()));
    let s = load(
        dir.path(),
        "[[stores]]\nid = \"p\"\ntype = \"postgres\"\nhost = \"/run/postgresql\"\nuser = \"u\"\n\
         key = { provider = \"passphrase\", passphrase_env = \"P\" }\n",
        &[],
    )
    .unwrap();
    assert_eq!(s.stores[0].key().unwrap().provider_name(), "passphrase");
}

#[test]
fn postgres_settings_mistakes_stop_the_start_naming_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = "stores[0]: store 'pg' (type \"postgres\"): ";
    let table = |rest: &str| format!("[[stores]]\nid = \"pg\"\ntype = \"postgres\"\n{rest}\n");
    let names = Backends::builtin().key_providers().names().collect::<Vec<_>>().join(", ");
    for (rest, why) in [
        (
            "url = \"postgres://credstore:s3cr3t-pw@db.internal/secrets\"\nmaster_key_env = \"K\"",
            "url holds a password, which a config file must not: put the whole URL in an environment variable \
             named by url_env",
        ),
        ("host = \"db\"\nmaster_key_env = \"K\"", "user is missing"),
        ("host = \"db\"\nuser = \"u\"", "exactly one of master_key_file"),
        ("host = \"db\"\nuser = \"u\"\nmaster_key_env = \"K\"\nkey = { provider = \"master-key\", key_env = \"K\" }", "two keys for one store"),
        ("host = \"db\"\nuser = \"u\"\nkey = { provider = \"aws-kmz\" }", &format!("key: unknown provider \"aws-kmz\"; this build has: {names}")),
        ("host = \"db\"\nuser = \"u\"\nmaster_key_env = \"K\"\npassword = \"x\"", "unknown field `password`"),
        ("host = \"db\"\nuser = \"u\"\nmaster_key_env = \"K\"\ntls = \"prefer\"", "tls is \"verify-full\" or \"disable\""),
    ] {
        let err = load(dir.path(), &table(rest), &[]).unwrap_err();
        assert!(err.starts_with(prefix) && err.contains(why), "{rest}: {err}");
        assert!(!err.contains("s3cr3t-pw"), "{err}");
    }
}

#[tokio::test]
async fn a_postgres_store_that_cannot_be_reached_fails_to_open_as_unavailable_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let text = format!(
        "[[stores]]\nid = \"pg-down\"\ntype = \"postgres\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"u\"\n\
         password_env = \"PW\"\nconnect_timeout_ms = 1000\nkey = {{ provider = \"master-key\", key_env = \"K\" }}\n"
    );
    let key = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let s = load(dir.path(), &text, &[("PW", "pw-not-shown"), ("K", key)]).unwrap();
    let started = std::time::Instant::now();
    let err = s.stores[0].open().await.map(|_| ()).unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(shown.contains("pg-down") && !shown.contains("pw-not-shown"), "{shown}");
}
