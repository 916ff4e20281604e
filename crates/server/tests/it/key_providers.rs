//! Stores keyed by a `key = { provider = .. }`: served once an unreachable
//! provider comes back (the prober opens them), a wrong key-encryption key
//! refused without a change, the start-up warning for keys beside their
//! data, and the CLI's two kinds of rotation.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use credstore_core::{async_trait, CredentialKey, CredentialStoreExt, Error, Metadata, Result, SecretValue};
use credstore_seal::{DataKey, KeyLocation, KeyProvider, MasterKey, ProviderInfo, WrapContext, WrappedKey};
use credstore_server::backends::Backends;
use credstore_server::config::FileConfig;
use credstore_server::Settings;
use credstore_sqlite::RotationKind;
use serde_json::json;

use crate::util::harness::{client, create, creds_path, get, stores_path, Options, TestServer, ADMIN};
use crate::util::process::{run, Proc};

/// A remote KEK stand-in: a local key behind a service that answers
/// `Unavailable` for its first `fail_left` calls, counting every call.
#[derive(Debug, Clone)]
struct FlakyKms {
    key: MasterKey,
    info: ProviderInfo,
    fail_left: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
}

impl FlakyKms {
    fn new() -> Self {
        Self {
            key: MasterKey::generate(),
            info: ProviderInfo::new("test-kms", "alias/team", KeyLocation::Remote),
            fail_left: Arc::default(),
            calls: Arc::default(),
        }
    }

    fn call(&self, context: &WrapContext<'_>) -> Result<()> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let failing = self.fail_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match failing {
            Ok(_) => Err(Error::unavailable(context.store(), "test-kms at 10.9.8.7:443: connection refused")),
            Err(_) => Ok(()),
        }
    }
}

#[async_trait]
impl KeyProvider for FlakyKms {
    fn info(&self) -> &ProviderInfo {
        &self.info
    }

    async fn wrap(&self, key: &DataKey, context: &WrapContext<'_>) -> Result<WrappedKey> {
        self.call(context)?;
        self.key.wrap(key, context).await
    }

    async fn unwrap(&self, wrapped: &WrappedKey, context: &WrapContext<'_>) -> Result<DataKey> {
        self.call(context)?;
        self.key.unwrap(wrapped, context).await
    }
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FlakySettings {
    #[allow(dead_code)]
    key_id: String,
}

fn settings_in(dir: &Path, text: &str, backends: &Backends) -> Settings {
    // The data directory (and the audit log in it) inside `dir`.
    let file: FileConfig = toml::from_str(&format!("data_dir = \"data\"\n{text}")).unwrap();
    let mut settings = Settings::from_file(file, dir, |_| None, backends).unwrap();
    settings.probe_timeout = Duration::from_millis(500);
    settings
}

/// The store list's entry of `id`.
async fn entry(c: &reqwest::Client, server: &TestServer, id: &str) -> serde_json::Value {
    let list = get(c, server, ADMIN, &stores_path("t1", "p1")).await.json();
    list["data"].as_array().unwrap().iter().find(|e| e["id"] == id).cloned().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_whose_key_provider_is_unreachable_serves_once_the_prober_opens_it() {
    let dir = tempfile::tempdir().unwrap();
    let kms = FlakyKms::new();
    let mut backends = Backends::builtin();
    let provider = kms.clone();
    backends.key_providers_mut().register("test-kms", move |_id, _s: FlakySettings, _ctx| {
        let provider = provider.clone();
        async move { Ok(provider) }
    });
    let settings = settings_in(
        dir.path(),
        "default_stores = false\nprobe_interval_ms = 200\n\
         [[stores]]\nid = \"scratch\"\ntype = \"memory\"\n\
         [[stores]]\nid = \"team\"\ntype = \"encrypted-sqlite\"\npath = \"team.db\"\n\
         key = { provider = \"test-kms\", key_id = \"alias/team\" }\n",
        &backends,
    );
    // The store exists, keyed by the provider; then the provider goes away.
    let key = CredentialKey::new("before").unwrap();
    let store = settings.store("team").unwrap().open().await.unwrap();
    store.set(&key, &SecretValue::from("kept"), &Metadata::new()).await.unwrap();
    drop(store);
    kms.fail_left.store(4, Ordering::SeqCst);
    let calls_before = kms.calls.load(Ordering::SeqCst);

    let started = Instant::now();
    let mut opts = Options::new(dir.path());
    opts.settings = settings;
    let mut server = TestServer::start_in(dir, opts).await;
    let c = client();
    // The other store serves meanwhile; this one is unavailable with the
    // provider's reason (the category in the list, the words in its
    // availability), its calls refused as unavailable.
    let team = entry(&c, &server, "team").await;
    assert_eq!(
        (team["available"].clone(), team["reason"].clone()),
        (json!(false), json!("unreachable")),
        "{team}"
    );
    assert_eq!(entry(&c, &server, "scratch").await["available"], true);
    let r = create(&c, &server, ADMIN, &creds_path("t1", "p1", "scratch"), json!({"key": "a", "value": "v"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r =
        create(&c, &server, ADMIN, &creds_path("t1", "p1", "team"), json!({"key": "a", "value": "v"})).await;
    assert_eq!(r.status, 503, "{}", r.text);
    let availability = server.stores.root("team").unwrap().check_availability().await;
    let reason = availability.reason.unwrap_or_default();
    assert!(!availability.available && reason.contains("connection refused"), "{reason}");

    // The provider recovers after its failures: a later probe opens the
    // store, and it serves without a restart.
    let deadline = Instant::now() + Duration::from_secs(30);
    while entry(&c, &server, "team").await["available"] != true {
        assert!(Instant::now() < deadline, "the store never opened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r =
        create(&c, &server, ADMIN, &creds_path("t1", "p1", "team"), json!({"key": "a", "value": "v2"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = get(&c, &server, ADMIN, &format!("{}/a", creds_path("t1", "p1", "team"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["data"]["key"], "a");
    let root = server.stores.root("team").unwrap();
    assert_eq!(root.get(&key).await.unwrap().unwrap().value.expose_secret(), b"kept");
    // Bounded: the first opening, then at most one per 90 % of the
    // 200 ms interval; and no call per read or write once open.
    let calls = kms.calls.load(Ordering::SeqCst) - calls_before;
    let bound = 1 + (started.elapsed().as_millis() / 180) as usize + 1;
    assert!((5..=bound).contains(&calls), "{calls} provider calls, at most {bound}");
    root.get(&key).await.unwrap();
    assert_eq!(kms.calls.load(Ordering::SeqCst) - calls_before, calls);
    server.stop().await;
}

#[tokio::test]
async fn a_wrong_key_encryption_key_is_a_clear_reason_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let backends = Backends::builtin();
    let text = |key_file: &str| {
        format!(
            "default_stores = false\n[[stores]]\nid = \"team\"\ntype = \"encrypted-sqlite\"\npath = \"team.db\"\n\
             key = {{ provider = \"master-key\", key_file = \"{key_file}\" }}\n"
        )
    };
    let settings = settings_in(dir.path(), &text("keys/team.key"), &backends);
    let store = settings.store("team").unwrap().open().await.unwrap();
    store.set(&CredentialKey::new("k").unwrap(), &SecretValue::from("v"), &Metadata::new()).await.unwrap();
    drop(store);
    let before = dump(&dir.path().join("team.db"));
    let settings = settings_in(dir.path(), &text("keys/other.key"), &backends);
    let served = credstore_server::stores::open_or_retried(
        settings.store("team").unwrap(),
        credstore_server::stores::Retry::of(&settings),
    )
    .await;
    let availability = served.check_availability().await;
    let reason = availability.reason.unwrap_or_default();
    assert!(!availability.available, "{reason}");
    assert!(
        reason.starts_with(credstore_server::state::FAILED_TO_OPEN)
            && reason.contains("wrong key-encryption key"),
        "{reason}"
    );
    assert!(dump(&dir.path().join("team.db")) == before, "the database is as it was");
}

/// Every row of the database's tables, as stored: `(nonce, sealed)` of
/// every credential first.
fn sealed_rows(path: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn.prepare("SELECT nonce, sealed FROM credentials ORDER BY ns, key").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(|r| r.unwrap()).collect()
}

fn dump(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut out = Vec::new();
    for table in ["credentials", "credstore_meta"] {
        let mut stmt = conn.prepare(&format!("SELECT * FROM {table} ORDER BY 1, 2")).unwrap();
        let n = stmt.column_count();
        let rows = stmt
            .query_map([], |r| {
                (0..n).map(|i| r.get_ref(i).map(|v| format!("{v:?}"))).collect::<rusqlite::Result<Vec<_>>>()
            })
            .unwrap();
        out.extend(rows.map(|row| format!("{table}: {}", row.unwrap().join(" | "))));
    }
    out
}

#[test]
fn the_server_warns_at_start_of_each_key_beside_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("elsewhere")).unwrap();
    std::fs::write(
        d.join("credstore.toml"),
        "[[stores]]\nid = \"near\"\ntype = \"encrypted-sqlite\"\npath = \"near.db\"\n\
         key = { provider = \"master-key\", key_file = \"near.key\" }\n\
         [[stores]]\nid = \"apart\"\ntype = \"encrypted-sqlite\"\npath = \"apart.db\"\n\
         master_key_file = \"elsewhere/apart.key\"\n",
    )
    .unwrap();
    let env =
        [("CREDSTORE_ADMIN_TOKEN", "warn-test-admin-token-000"), ("CREDSTORE_CONFIG", "credstore.toml")];
    let (mut p, _) = Proc::serve(d, &env, &[]);
    assert!(p.terminate().success());
    let err = p.stderr_text();
    let warnings: Vec<&str> = err.lines().filter(|l| l.contains("same directory as its data")).collect();
    assert_eq!(warnings.len(), 2, "sqlite-default and near, not apart: {err}");
    let default_db = d.join("credstore-data/sqlite-default.db");
    let default_key = d.join("credstore-data/master.key");
    for (store, db, key) in [
        ("sqlite-default", default_db.to_str().unwrap(), default_key.to_str().unwrap()),
        ("near", &*d.join("near.db").to_string_lossy(), &*d.join("near.key").to_string_lossy()),
    ] {
        let line = warnings
            .iter()
            .find(|l| l.contains(&format!("store={store} ")))
            .unwrap_or_else(|| panic!("{store}: {err}"));
        assert!(line.contains("WARN") && line.contains(db) && line.contains(key), "{line}");
        assert!(line.contains("aws-kms, vault-transit, keychain, passphrase"), "{line}");
    }
    // With the key in the environment, nothing to warn of.
    let key = ("CREDSTORE_MASTER_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=");
    let (mut p, _) = Proc::serve(d, &[env[0], key], &[]);
    assert!(p.terminate().success());
    assert!(!p.stderr_text().contains("same directory as its data"), "{}", p.stderr_text());
}

/// A config with the store `team` keyed by `key_line`, and three
/// credentials written in it.
async fn team_with_three(d: &Path, key_line: &str) {
    std::fs::write(
        d.join("credstore.toml"),
        format!("[[stores]]\nid = \"team\"\ntype = \"encrypted-sqlite\"\npath = \"team.db\"\n{key_line}\n"),
    )
    .unwrap();
    let settings =
        settings_in(d, &std::fs::read_to_string(d.join("credstore.toml")).unwrap(), &Backends::builtin());
    let store = settings.store("team").unwrap().open().await.unwrap();
    for k in ["a", "b", "c"] {
        store
            .set(&CredentialKey::new(k).unwrap(), &SecretValue::from(format!("value-{k}")), &Metadata::new())
            .await
            .unwrap();
    }
}

/// The values of `a`, `b` and `c` as the CLI's `stores` sees the store
/// (available), read in process with `env`.
async fn values(d: &Path, env: &[(&str, &str)]) -> Vec<String> {
    let vars: std::collections::HashMap<String, String> =
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let file: FileConfig =
        toml::from_str(&std::fs::read_to_string(d.join("credstore.toml")).unwrap()).unwrap();
    let settings = Settings::from_file(file, d, move |k| vars.get(k).cloned(), &Backends::builtin()).unwrap();
    let store = settings.store("team").unwrap().open().await.unwrap();
    let mut out = Vec::new();
    for k in ["a", "b", "c"] {
        let c = store.get(&CredentialKey::new(k).unwrap()).await.unwrap().unwrap();
        out.push(String::from_utf8(c.value.expose_secret().to_vec()).unwrap());
    }
    out
}

const THREE: [&str; 3] = ["value-a", "value-b", "value-c"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kek_only_rotation_leaves_every_sealed_row_as_it_was_and_data_key_rotation_reseals_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    team_with_three(d, "master_key_file = \"team.key\"").await;
    let env = [("CREDSTORE_CONFIG", "credstore.toml")];
    let db = d.join("team.db");
    let rows = sealed_rows(&db);
    assert_eq!(rows.len(), 3);
    let key_before = std::fs::read(d.join("team.key")).unwrap();

    let (code, out, err) = run(d, &env, &["rotate-key", "--store", "team", "--kek-only"], "");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(RotationKind::KeyEncryptionKey.describe()) && out.contains("the new key is in"),
        "{out}"
    );
    assert!(sealed_rows(&db) == rows, "no sealed row touched");
    assert_ne!(std::fs::read(d.join("team.key")).unwrap(), key_before, "a new key-encryption key");
    assert_eq!(values(d, &[]).await, THREE);

    // With a key given on stdin, KEK only as well.
    let new_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let (code, out, err) =
        run(d, &env, &["rotate-key", "--store", "team", "--kek-only", "--new-key-stdin"], new_key);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(RotationKind::KeyEncryptionKey.describe()) && out.contains("store the new key where"),
        "{out}"
    );
    assert!(sealed_rows(&db) == rows, "no sealed row touched");
    std::fs::write(d.join("team.key"), format!("{new_key}\n")).unwrap();

    // The data key alone: every row re-sealed, the key file kept.
    let key_before = std::fs::read(d.join("team.key")).unwrap();
    let (code, out, err) = run(d, &env, &["rotate-data-key", "--store", "team"], "");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(RotationKind::DataKey.describe()) && out.contains("3 credentials re-sealed"),
        "{out}"
    );
    assert!(out.contains("data key version 2"), "{out}");
    let resealed = sealed_rows(&db);
    assert!(resealed.iter().zip(&rows).all(|(a, b)| a.1 != b.1), "every row re-sealed");
    assert_eq!(std::fs::read(d.join("team.key")).unwrap(), key_before);
    assert_eq!(values(d, &[]).await, THREE);

    // rotate-key without --kek-only: both keys, as before, and it says so.
    let (code, out, err) = run(d, &env, &["rotate-key", "--store", "team"], "");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(RotationKind::DataKey.describe()) && out.contains("3 credentials re-sealed"),
        "{out}"
    );
    assert!(sealed_rows(&db).iter().zip(&resealed).all(|(a, b)| a.1 != b.1));
    assert_ne!(std::fs::read(d.join("team.key")).unwrap(), key_before);
    assert_eq!(values(d, &[]).await, THREE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrap_key_moves_the_data_key_under_another_provider_and_prints_the_setting() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    team_with_three(d, "master_key_file = \"team.key\"").await;
    let db = d.join("team.db");
    let rows = sealed_rows(&db);
    let env = [("CREDSTORE_CONFIG", "credstore.toml"), ("TEAM_PASSPHRASE", "a long team passphrase")];

    // Mistakes in --to change nothing and say what is known.
    let before = dump(&db);
    let names = Backends::builtin().key_providers().names().collect::<Vec<_>>().join(", ");
    let unknown = format!("unknown provider \"aws-kmz\"; this build has: {names}");
    for (to, why) in [
        ("{ provider = \"aws-kmz\", key_id = \"k\" }", unknown.as_str()),
        ("{ provider = \"passphrase\", passphrase_fil = \"p\" }", "unknown field `passphrase_fil`"),
        ("{ provider = \"passphrase\", passphrase_env = \"UNSET\" }", "UNSET is not set"),
        ("provider = passphrase", "--to is not an inline TOML table"),
    ] {
        let (code, _, err) = run(d, &env, &["rewrap-key", "--store", "team", "--to", to], "");
        assert_eq!(code, 1, "{to}");
        assert!(err.contains(why), "{to}: {err}");
    }
    assert!(dump(&db) == before, "nothing changed");
    // The embedded store has no table to put a key setting in: refused.
    let (code, _, err) = run(d, &env, &["stores"], "");
    assert_eq!(code, 0, "{err}");
    let default_db = d.join("credstore-data/sqlite-default.db");
    let default_before = dump(&default_db);
    let to = "{ provider = \"passphrase\", passphrase_env = \"TEAM_PASSPHRASE\" }";
    let (code, _, err) = run(d, &env, &["rewrap-key", "--store", "sqlite-default", "--to", to], "");
    assert_eq!(code, 1);
    assert!(err.contains("embedded store") && err.contains("default_stores = false"), "{err}");
    assert!(dump(&default_db) == default_before, "nothing changed");

    let to = "{ provider = \"passphrase\", passphrase_env = \"TEAM_PASSPHRASE\" }";
    let (code, out, err) = run(d, &env, &["rewrap-key", "--store", "team", "--to", to], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(RotationKind::KeyEncryptionKey.describe()), "{out}");
    assert!(out.lines().any(|l| l.trim() == format!("key = {to}")), "{out}");
    assert!(sealed_rows(&db) == rows, "no sealed row touched");
    assert!(!out.contains("a long team passphrase") && !err.contains("a long team passphrase"));

    // The old setting no longer opens it; the printed one does.
    let (code, table, _) = run(d, &env, &["stores"], "");
    assert_eq!(code, 1);
    assert!(
        table.lines().any(|l| l.starts_with("team") && l.contains("wrong key-encryption key")),
        "{table}"
    );
    std::fs::write(
        d.join("credstore.toml"),
        format!("[[stores]]\nid = \"team\"\ntype = \"encrypted-sqlite\"\npath = \"team.db\"\nkey = {to}\n"),
    )
    .unwrap();
    let (code, table, err) = run(d, &env, &["stores"], "");
    assert_eq!(code, 0, "{table}{err}");
    assert_eq!(values(d, &env).await, THREE);
    // A store keyed by a provider rotates its data key with rotate-data-key.
    let (code, out, err) = run(d, &env, &["rotate-data-key", "--store", "team"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(RotationKind::DataKey.describe()), "{out}");
    assert_eq!(values(d, &env).await, THREE);
    let (code, _, err) = run(d, &env, &["rotate-key", "--store", "team"], "");
    assert_eq!(code, 1);
    assert!(err.contains("rotate-data-key") && err.contains("rewrap-key"), "{err}");
}
