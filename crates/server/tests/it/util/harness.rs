//! An in-process server on 127.0.0.1:0 for the integration tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use credstore_core::{CredentialStore, StoreId};
use credstore_layers::CacheLayer;
use credstore_memory::MemoryStore;
use credstore_server::auth::{Action, Authenticator, Grant, Scope, TokenEntry, TokenHash};
use credstore_server::state::Stores;
use credstore_server::{Server, Settings};
use reqwest::header::HeaderMap;
use serde_json::Value;

/// The admin token every test server accepts.
pub const ADMIN: &str = "test-admin-token-0123456789";

/// A running server, its data directory and a way to stop it.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The separate metrics listener, when `metrics_listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    /// The stores as the server serves them (caches included).
    pub stores: Arc<Stores>,
    /// The console's sessions (their clock can be set).
    pub sessions: Arc<credstore_server::auth::sessions::Sessions>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// What to start a server with.
pub struct Options {
    pub settings: Settings,
    /// Open the default stores of `settings` (memory-default, sqlite-default).
    pub default_stores: bool,
    pub extra: Vec<Arc<dyn CredentialStore>>,
    /// Further stores, each served through a read-through cache.
    pub cached: Vec<(Arc<dyn CredentialStore>, CacheLayer)>,
    pub tokens: Vec<TokenEntry>,
}

impl Options {
    pub fn new(dir: &std::path::Path) -> Self {
        let mut settings = Settings::defaults("127.0.0.1:0".parse().unwrap(), dir.join("data"));
        settings.probe_timeout = Duration::from_millis(500);
        Self { settings, default_stores: true, extra: Vec::new(), cached: Vec::new(), tokens: Vec::new() }
    }
}

pub fn memory(id: &str) -> Arc<dyn CredentialStore> {
    Arc::new(MemoryStore::new(StoreId::new(id).unwrap()))
}

pub fn token(
    name: &str,
    secret: &str,
    tenants: &[&str],
    projects: &[&str],
    actions: &[Action],
) -> TokenEntry {
    let list = |v: &[&str]| Scope::from_list(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    TokenEntry {
        name: name.into(),
        hash: TokenHash::of(secret),
        grants: vec![Grant {
            tenants: list(tenants),
            projects: list(projects),
            stores: Scope::All,
            actions: actions.iter().copied().collect(),
        }],
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut Options)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = Options::new(dir.path());
        configure(&mut opts);
        Self::start_in(dir, opts).await
    }

    pub async fn start_in(dir: tempfile::TempDir, opts: Options) -> Self {
        let mut served = Vec::new();
        if opts.default_stores {
            credstore_server::stores::prepare_data_dir(&opts.settings.data_dir).unwrap();
            for spec in &opts.settings.stores {
                let cache = opts.settings.cache(spec.id().as_str());
                let retry = credstore_server::stores::Retry::of(&opts.settings);
                served.push((credstore_server::stores::open_or_retried(spec, retry).await, cache));
            }
        }
        served.extend(opts.extra.into_iter().map(|s| (s, None)));
        served.extend(opts.cached.into_iter().map(|(s, c)| (s, Some(c))));
        let stores = Stores::with_caches(served, opts.settings.store_timeout).unwrap();
        let mut tokens = vec![TokenEntry::admin(TokenHash::of(ADMIN))];
        tokens.extend(opts.tokens);
        let server = Server::bind(&opts.settings, stores, Authenticator::new(tokens)).await.unwrap();
        let addr = server.local_addr();
        let metrics_addr = server.metrics_addr();
        let stores = server.state().stores.clone();
        let sessions = server.state().sessions.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Self { addr, metrics_addr, dir, stores, sessions, stop: Some(tx), task: Some(task) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Signals shutdown and waits for the server to finish.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Sends a shutdown signal without waiting.
    pub fn signal_stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Waits for the server task.
    pub async fn join(&mut self) {
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap()
}

pub fn stores_path(tenant: &str, project: &str) -> String {
    format!("/manage/tenants/{tenant}/projects/{project}/credential-stores")
}

pub fn creds_path(tenant: &str, project: &str, store: &str) -> String {
    format!("/manage/tenants/{tenant}/projects/{project}/credential-stores/{store}/credentials")
}

pub fn cred_path(tenant: &str, project: &str, store: &str, key: &str) -> String {
    format!("{}/{key}", creds_path(tenant, project, store))
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub async fn from(resp: reqwest::Response) -> Self {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        Self { status, headers, text }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn content_type(&self) -> &str {
        self.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    pub fn request_id(&self) -> &str {
        self.headers.get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// Asserts the problem+json shape of the Credential Stores API exactly,
    /// with this status and `instance`, and returns the detail.
    pub fn problem(&self, status: u16, instance: &str) -> String {
        assert_eq!(self.status, status, "{}", self.text);
        assert_problem_shape(self, Some(instance));
        self.json()["detail"].as_str().unwrap().to_owned()
    }
}

/// Checks an error response: problem+json with exactly the members of the
/// Credential Stores API, consistent values, and the request id echoed in
/// the header.
pub fn assert_problem_shape(reply: &Reply, instance: Option<&str>) {
    assert!(
        reply.content_type().starts_with("application/problem+json"),
        "{:?}: {}",
        reply.content_type(),
        reply.text
    );
    let v = reply.json();
    let obj = v.as_object().unwrap_or_else(|| panic!("not an object: {}", reply.text));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["code", "detail", "error", "instance", "requestId", "status", "title"],
        "{}",
        reply.text
    );
    let err = v["error"].as_object().unwrap();
    let mut ek: Vec<&str> = err.keys().map(String::as_str).collect();
    ek.sort_unstable();
    assert_eq!(ek, ["code", "message"]);
    assert_eq!(v["status"].as_u64().unwrap() as u16, reply.status);
    assert_eq!(v["error"]["code"], v["code"]);
    assert_eq!(v["error"]["message"], v["detail"]);
    let code = v["code"].as_str().unwrap();
    assert!(!code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{code}");
    assert!(v["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(v["requestId"].as_str().unwrap(), reply.request_id(), "requestId echoed in X-Request-ID");
    assert!(!reply.request_id().is_empty());
    if let Some(instance) = instance {
        assert_eq!(v["instance"].as_str().unwrap(), instance);
    }
}

/// Removes `checkedAt` *(extension)* from every entry of a store list,
/// checking that each has one, so the rest compares exactly.
pub fn strip_checked_at(list: &mut Value) {
    for e in list["data"].as_array_mut().unwrap() {
        let at = e.as_object_mut().unwrap().remove("checkedAt");
        assert!(at.is_some_and(|v| v.is_string()), "checkedAt (extension) on every entry");
    }
}

/// Asserts that a store list names exactly `stores` (id and type), in that
/// order, each available, and each with a `checkedAt`.
pub fn assert_all_available(mut list: Value, stores: &[(&str, &str)]) {
    strip_checked_at(&mut list);
    let data: Vec<Value> = stores
        .iter()
        .map(|(id, kind)| serde_json::json!({"available": true, "id": id, "reason": "", "type": kind}))
        .collect();
    assert_eq!(list, serde_json::json!({ "data": data }));
}

pub async fn create(
    client: &reqwest::Client,
    server: &TestServer,
    token: &str,
    path: &str,
    body: Value,
) -> Reply {
    Reply::from(client.post(server.url(path)).bearer_auth(token).json(&body).send().await.unwrap()).await
}

pub async fn get(client: &reqwest::Client, server: &TestServer, token: &str, path: &str) -> Reply {
    Reply::from(client.get(server.url(path)).bearer_auth(token).send().await.unwrap()).await
}

pub async fn delete(client: &reqwest::Client, server: &TestServer, token: &str, path: &str) -> Reply {
    Reply::from(client.delete(server.url(path)).bearer_auth(token).send().await.unwrap()).await
}

/// Sends one raw HTTP/1.1 request (the path exactly as given, no client
/// normalization) and reads the whole response.
pub async fn raw_request(addr: SocketAddr, head: &str, body: &[u8]) -> Reply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = head.as_bytes().to_vec();
    req.extend_from_slice(body);
    stream.write_all(&req).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut buf)).await.unwrap().unwrap();
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = HeaderMap::new();
    for line in lines {
        let (k, v) = line.split_once(':').unwrap();
        headers.append(
            reqwest::header::HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
            reqwest::header::HeaderValue::from_str(v.trim()).unwrap(),
        );
    }
    let text = String::from_utf8_lossy(&buf[split + 4..]).into_owned();
    Reply { status, headers, text }
}

/// A raw request head for `method path` with `headers`, closing the connection.
pub fn raw_head(method: &str, path: &str, headers: &[(&str, &str)], body_len: usize) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if body_len > 0 {
        head.push_str(&format!("Content-Length: {body_len}\r\n"));
    }
    head.push_str("\r\n");
    head
}
