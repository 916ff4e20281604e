//! A backend defined only in this test, registered as a type of its own
//! (`type = "test-kv"`), read from a config file and served over real HTTP
//! with everything the built-in backends get: auth, isolation per project,
//! problem+json, the audit log and metrics.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use credstore_core::config::{ConfigContext, SecretSource};
use credstore_core::{
    async_trait, Availability, Capabilities, Credential, CredentialKey, CredentialStore, ListOptions,
    ListPage, Namespace, Persistence, Result, SecretValue, SetMode, SetOutcome, StoreId, StoreInfo,
    StoreKind, Version, WriteRequest,
};
use credstore_server::auth::{Authenticator, TokenEntry, TokenHash};
use credstore_server::backends::Backends;
use credstore_server::config::FileConfig;
use credstore_server::{stores, Server, Settings};
use serde_json::{json, Value};

const ADMIN: &str = "custom-backend-admin-token";

type Entries = BTreeMap<(String, String), Credential>;

/// The test backend's kind, owned by it as a backend crate owns its own.
const KIND: StoreKind = StoreKind::from_static("test-kv");

/// The test's own store: a map shared by every namespace handle, keyed by
/// (namespace, key); it is "unavailable" until its greeting is set.
#[derive(Clone)]
struct TestKv {
    info: StoreInfo,
    greeting: Arc<SecretValue>,
    entries: Arc<Mutex<Entries>>,
    counter: Arc<AtomicU64>,
}

/// `[[stores]] type = "test-kv"`: its own settings, the secret named by
/// source only.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TestKvSettings {
    greeting_file: Option<std::path::PathBuf>,
    greeting_env: Option<String>,
}

impl TestKvSettings {
    async fn open(self, id: StoreId, ctx: &ConfigContext) -> Result<TestKv> {
        let source = SecretSource::one_of("greeting", self.greeting_file, self.greeting_env)
            .map_err(|reason| credstore_core::Error::config(&id, reason))?
            .ok_or_else(|| credstore_core::Error::config(&id, "give greeting_file or greeting_env"))?;
        let greeting = source.read(&id, ctx)?;
        Ok(TestKv {
            info: StoreInfo::new(id, KIND, Capabilities::full().with_persistence(Persistence::Process)),
            greeting: Arc::new(greeting),
            entries: Arc::default(),
            counter: Arc::default(),
        })
    }
}

impl std::fmt::Debug for TestKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestKv").field("info", &self.info).finish_non_exhaustive()
    }
}

#[async_trait]
impl CredentialStore for TestKv {
    fn info(&self) -> &StoreInfo {
        &self.info
    }
    fn with_namespace(&self, namespace: &Namespace) -> Result<Arc<dyn CredentialStore>> {
        let info = self.info.join(namespace)?;
        Ok(Arc::new(TestKv { info, ..self.clone() }))
    }
    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>> {
        let entries = self.entries.lock().unwrap();
        Ok(entries.get(&(self.info.namespace().as_str().to_owned(), key.to_string())).cloned())
    }
    async fn write(&self, request: &WriteRequest<'_>) -> Result<SetOutcome> {
        let key = request.key();
        let mut entries = self.entries.lock().unwrap();
        let slot = (self.info.namespace().as_str().to_owned(), key.to_string());
        let old = entries.get(&slot);
        let fail =
            |reason: &str| Err(credstore_core::Error::precondition_failed(self.info.id(), key, reason));
        match (request.mode(), old) {
            (SetMode::Create, Some(_)) => return fail("exists"),
            (SetMode::Replace(_), None) => return fail("missing"),
            (SetMode::Replace(v), Some(old)) if &old.version != v => return fail("another version"),
            _ => {}
        }
        let now = SystemTime::now();
        let created_at = old.map_or(now, |c| c.created_at);
        let version = Version::from_counter(self.counter.fetch_add(1, Ordering::SeqCst) + 1);
        let created = old.is_none();
        entries.insert(
            slot,
            Credential {
                key: key.clone(),
                value: request.value().clone(),
                metadata: request.metadata().clone(),
                version: version.clone(),
                created_at,
                updated_at: now,
                expires_at: None,
            },
        );
        Ok(SetOutcome { created, version, created_at, updated_at: now })
    }
    async fn delete(&self, key: &CredentialKey) -> Result<bool> {
        Ok(self
            .entries
            .lock()
            .unwrap()
            .remove(&(self.info.namespace().as_str().to_owned(), key.to_string()))
            .is_some())
    }
    async fn list(&self, options: &ListOptions) -> Result<ListPage> {
        let entries = self.entries.lock().unwrap();
        let ns = self.info.namespace().as_str().to_owned();
        let keys: Vec<CredentialKey> =
            entries.iter().filter(|((n, _), _)| *n == ns).map(|(_, c)| c.key.clone()).collect();
        Ok(options.page_from_sorted(keys))
    }
    async fn check_availability(&self) -> Availability {
        match self.greeting.expose_str() {
            Ok("hello") => Availability::up(),
            _ => Availability::down("the greeting is not hello"),
        }
    }
}

fn backends() -> Backends {
    let mut backends = Backends::builtin();
    backends.register(KIND, |id, s: TestKvSettings, ctx| async move { s.open(id, &ctx).await });
    backends
}

fn settings(dir: &Path, config: &str) -> std::result::Result<Settings, String> {
    let file: FileConfig = toml::from_str(config).map_err(|e| e.to_string())?;
    Settings::from_file(file, dir, |var| (var == "TEST_KV_GREETING").then(|| "hello".to_owned()), &backends())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_backend_defined_in_a_test_is_served_over_http() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("greeting"), "goodbye\n").unwrap();
    let config = r#"
listen = "127.0.0.1:0"
default_stores = false
data_dir = "data"
[[stores]]
id = "kv-env"
type = "test-kv"
greeting_env = "TEST_KV_GREETING"
[[stores]]
id = "kv-file"
type = "test-kv"
greeting_file = "greeting"
cache = { ttl_ms = 1000 }
"#;
    let settings = settings(dir.path(), config).unwrap();
    stores::prepare_data_dir(&settings.data_dir).unwrap();
    let stores = stores::open_all(&settings).await.unwrap();
    let auth = Authenticator::new(vec![TokenEntry::admin(TokenHash::of(ADMIN))]);
    let server = Server::bind(&settings, stores, auth).await.unwrap();
    let base = format!("http://{}/manage/tenants/t1/projects/p1/credential-stores", server.local_addr());
    let metrics = format!("http://{}/metrics", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();

    // Listed with its own type; availability from its own probe.
    let list: Value = http
        .get(&base)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    let entries = list["data"].as_array().unwrap();
    let summary: Vec<_> =
        entries.iter().map(|e| (e["id"].clone(), e["type"].clone(), e["available"].clone())).collect();
    assert_eq!(
        summary,
        [
            (json!("kv-env"), json!("test-kv"), json!(true)),
            (json!("kv-file"), json!("test-kv"), json!(false)),
        ]
    );
    assert_eq!(entries[1]["reason"], "unreachable", "its own probe's words are logged, not shown");

    // Created, isolated per project, conditional, refused without a token.
    let create =
        |project: &str| format!("{}/kv-env/credentials", base.replace("/p1/", &format!("/{project}/")));
    let resp = http
        .post(create("p1"))
        .bearer_auth(ADMIN)
        .json(&json!({"key": "api-key", "value": "v1", "metadata": {"team": "a"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["etag"], "\"1\"");
    let again = http
        .post(create("p1"))
        .bearer_auth(ADMIN)
        .header("if-none-match", "*")
        .json(&json!({"key": "api-key", "value": "v2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 412);
    assert_eq!(again.headers()["content-type"], "application/problem+json");
    let other = http.get(format!("{}/api-key", create("p2"))).bearer_auth(ADMIN).send().await.unwrap();
    assert_eq!(other.status(), 404, "another project does not see it");
    let meta: Value = http
        .get(format!("{}/api-key", create("p1")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["data"]["metadata"], json!({"team": "a"}));
    let anonymous = http.post(create("p1")).json(&json!({"key": "k", "value": "v"})).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    // Audited and counted like any store.
    let audit = std::fs::read_to_string(settings.data_dir.join("audit.log")).unwrap();
    assert!(
        audit.lines().any(|l| l.contains("\"store\":\"kv-env\"") && l.contains("\"outcome\":\"succeeded\"")),
        "{audit}"
    );
    assert!(!audit.contains("v1"), "no value in the audit log");
    let text = http.get(&metrics).bearer_auth(ADMIN).send().await.unwrap().text().await.unwrap();
    assert!(
        text.lines().any(|l| l.contains("store=\"kv-env\"") && l.contains("operation=\"set\"")),
        "{text}"
    );

    let _ = stop.send(());
    task.await.unwrap().unwrap();
}

#[test]
fn the_custom_types_settings_are_checked_when_the_config_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let table =
        |extra: &str| format!("default_stores = false\n[[stores]]\nid = \"kv\"\ntype = \"test-kv\"\n{extra}");
    let err = settings(dir.path(), &table("greeting = \"inline\"")).unwrap_err();
    assert!(err.contains("stores[0]: store 'kv' (type \"test-kv\"): unknown field `greeting`"), "{err}");
    let s = settings(dir.path(), &table("greeting_env = \"X\"\ngreeting_file = \"f\"")).unwrap();
    // Both sources given: refused when the store opens, naming the store.
    let opened = tokio::runtime::Runtime::new().unwrap().block_on(stores::open_store(&s.stores[0]));
    let err = opened.expect_err("refused");
    assert!(err.contains("kv") && err.contains("at most one of greeting_file and greeting_env"), "{err}");
    // Without the registration the type is unknown, and the error says what is served.
    let file: FileConfig = toml::from_str(&table("greeting_env = \"X\"")).unwrap();
    let err = Settings::from_file(file, dir.path(), |_| None, &Backends::builtin()).unwrap_err().to_string();
    assert!(err.contains("unknown type \"test-kv\"; this build serves:"), "{err}");
}
