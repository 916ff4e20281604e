//! Tests of the `key = { provider = .. }` settings through a whole config
//! file: they need both the backends and the key providers, which do not
//! import each other's way.

use std::collections::HashMap;
use std::path::Path;

use credstore_core::{CredentialKey, CredentialStoreExt, Error, Metadata, SecretValue};
use credstore_sqlite::SqliteSettings;

use super::backends::Backends;
use crate::config::{FileConfig, Settings as ServerSettings};

fn load(dir: &Path, stores: &str, env: &[(&str, &str)]) -> std::result::Result<ServerSettings, String> {
    let map: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let file: FileConfig =
        toml::from_str(&format!("default_stores = false\n{stores}")).map_err(|e| e.to_string())?;
    ServerSettings::from_file(file, dir, move |k| map.get(k).cloned(), &Backends::builtin())
        .map_err(|e| e.to_string())
}

/// Every row of the database's tables, as stored.
pub(crate) fn dump(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut out = Vec::new();
    for (table, columns) in [("credentials", "*"), ("credstore_meta", "*")] {
        let mut stmt = conn.prepare(&format!("SELECT {columns} FROM {table} ORDER BY 1, 2")).unwrap();
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                (0..n).map(|i| r.get_ref(i).map(|v| format!("{v:?}"))).collect::<rusqlite::Result<Vec<_>>>()
            })
            .unwrap();
        for row in rows {
            out.push(format!("{table}: {}", row.unwrap().join(" | ")));
        }
    }
    out
}

fn store(key: &str) -> String {
    format!("[[stores]]\nid = \"team\"\ntype = \"encrypted-sqlite\"\npath = \"team.db\"\nkey = {key}\n")
}

#[test]
fn key_tables_name_a_registered_provider_and_its_fields() {
    let dir = tempfile::tempdir().unwrap();
    let s =
        load(dir.path(), &store(r#"{ provider = "master-key", key_file = "keys/team.key" }"#), &[]).unwrap();
    let key = s.stores[0].key().expect("the key setting");
    assert_eq!(key.provider_name(), "master-key");
    let file = key.key_file(s.stores[0].context()).expect("a key file");
    assert_eq!(file.path(), dir.path().join("keys/team.key"), "relative to the config file");
    let sqlite = s.stores[0].settings::<SqliteSettings>().unwrap();
    assert_eq!(sqlite.master_key(), &credstore_sqlite::KeySource::Provider);
    let s = load(dir.path(), &store(r#"{ provider = "passphrase", passphrase_env = "P" }"#), &[]).unwrap();
    assert_eq!(s.stores[0].key().unwrap().provider_name(), "passphrase");
    assert!(s.stores[0].key().unwrap().key_file(s.stores[0].context()).is_none());
    assert!(format!("{:?}", s.stores[0]).contains("passphrase"), "Debug shows the provider");

    let prefix = "stores[0]: store 'team' (type \"encrypted-sqlite\"): ";
    // The providers of this build, as the errors list them.
    let names = Backends::builtin().key_providers().names().collect::<Vec<_>>().join(", ");
    assert!(names.contains("master-key") && names.contains("passphrase"), "{names}");
    let unknown = format!("key: unknown provider \"aws-kmz\"; this build has: {names}");
    let missing = format!("key: missing field `provider`; this build has the providers: {names}");
    for (key, why) in [
        (r#"{ provider = "aws-kmz", key_id = "k" }"#, unknown.as_str()),
        (
            r#"{ provider = "master-key", kye_file = "k" }"#,
            "key (provider \"master-key\"): unknown field `kye_file`",
        ),
        (r#"{ provider = "master-key" }"#, "key (provider \"master-key\"): give one of key_file and key_env"),
        (
            r#"{ provider = "master-key", key_file = "k", key_env = "K" }"#,
            "at most one of key_file and key_env",
        ),
        (
            r#"{ provider = "passphrase", key_file = "k" }"#,
            "key (provider \"passphrase\"): unknown field `key_file`",
        ),
        (r#"{ key_file = "k" }"#, missing.as_str()),
        (r#"{ provider = 5 }"#, "`provider` must be a string"),
        (r#""team.key""#, "`key` must be a table"),
    ] {
        let err = load(dir.path(), &store(key), &[]).unwrap_err();
        assert!(err.starts_with(prefix) && err.contains(why), "{key}: {err}");
    }
    // One key per store.
    for other in ["master_key_file = \"k\"", "master_key_env = \"K\"", "passphrase_env = \"P\""] {
        let text = format!("{}{other}\n", store(r#"{ provider = "master-key", key_env = "K" }"#));
        let err = load(dir.path(), &text, &[]).unwrap_err();
        assert!(err.starts_with(prefix) && err.contains("two keys for one store"), "{other}: {err}");
    }
    // Only the keyed backends read `key`.
    let err = load(
        dir.path(),
        "[[stores]]\nid = \"m\"\ntype = \"memory\"\nkey = { provider = \"master-key\" }",
        &[],
    )
    .unwrap_err();
    assert!(err.contains("unknown field `key`"), "{err}");
}

#[tokio::test]
async fn stores_open_with_their_key_provider_and_refuse_another() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("TEAM_PASSPHRASE", "correct horse battery staple"), ("OTHER", "another passphrase")];
    let s =
        load(dir.path(), &store(r#"{ provider = "passphrase", passphrase_env = "TEAM_PASSPHRASE" }"#), &env)
            .unwrap();
    let opened = s.stores[0].open().await.unwrap();
    let k = CredentialKey::new("api").unwrap();
    opened.set(&k, &SecretValue::from("v1"), &Metadata::new()).await.unwrap();
    drop(opened);
    let before = dump(&dir.path().join("team.db"));
    for wrong in [
        r#"{ provider = "passphrase", passphrase_env = "OTHER" }"#,
        r#"{ provider = "master-key", key_file = "other.key" }"#,
    ] {
        let s = load(dir.path(), &store(wrong), &env).unwrap();
        let err = s.stores[0].open().await.unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{wrong}: {err}");
        assert!(err.to_string().contains("wrong key-encryption key"), "{wrong}: {err}");
        assert!(!err.to_string().contains("another passphrase"), "{err}");
    }
    assert!(dump(&dir.path().join("team.db")) == before, "a wrong key changes nothing");
    let s =
        load(dir.path(), &store(r#"{ provider = "passphrase", passphrase_env = "TEAM_PASSPHRASE" }"#), &env)
            .unwrap();
    let opened = s.stores[0].open().await.unwrap();
    assert_eq!(opened.get(&k).await.unwrap().unwrap().value.expose_secret(), b"v1");

    // A master-key key file is created when missing, owner-only, and
    // opens the store again; an unset key_env is named.
    let s = load(dir.path(), "[[stores]]\nid = \"b\"\ntype = \"sqlite\"\npath = \"b.db\"\nkey = { provider = \"master-key\", key_file = \"b.key\" }", &[]).unwrap();
    s.stores[0].open().await.unwrap();
    assert!(dir.path().join("b.key").exists());
    s.stores[0].open().await.unwrap();
    let s = load(dir.path(), "[[stores]]\nid = \"c\"\ntype = \"sqlite\"\npath = \"c.db\"\nkey = { provider = \"master-key\", key_env = \"UNSET\" }", &[]).unwrap();
    let err = s.stores[0].open().await.unwrap_err();
    assert!(err.to_string().contains("UNSET (key_env) is not set"), "{err}");
    assert!(!dir.path().join("c.db").exists(), "nothing made without a key");
}
