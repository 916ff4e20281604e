//! Stores keyed by a `key = { provider = .. }`: served once an unreachable
//! provider comes back (the prober opens them), a wrong key-encryption key
//! refused without a change, the start-up warning for keys beside their
//! data.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use credstore_core::{async_trait, CredentialKey, CredentialStoreExt, Error, Metadata, Result, SecretValue};
use credstore_seal::{DataKey, KeyLocation, KeyProvider, MasterKey, ProviderInfo, WrapContext, WrappedKey};
use credstore_server::backends::Backends;
use credstore_server::config::FileConfig;
use credstore_server::Settings;
use serde_json::json;

use crate::util::harness::{client, create, creds_path, get, stores_path, Options, TestServer, ADMIN};
use crate::util::process::Proc;

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
