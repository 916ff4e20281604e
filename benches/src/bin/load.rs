//! Server throughput and p99 latency under a bounded `wrk` load on loopback:
//! create-credential (memory, durable encrypted SQLite and encrypted
//! PostgreSQL stores; the PostgreSQL one on a cluster of the bench's own,
//! started by the test fixture, fsync on) and
//! list-stores, side by side with an OpenBao dev server's KV v2 write and
//! read driven by the same tool in the same run.
//!
//! The server's create and list-stores are also measured against a bare
//! axum handler started by the same run (`load --bare ADDR`, this binary
//! again): it parses the same create body and answers the same 201 JSON,
//! and answers the same list-stores JSON, with no auth, audit, logging,
//! metrics or store behind it.
//!
//! List-stores is also measured on a second server that serves, beside the
//! same default stores, a Vault store whose server accepts connections and
//! never answers (a loopback listener this binary opens), configured through
//! the server's TOML config file: its p99 against list-stores p99 with
//! healthy stores only shows that one dead store never stalls the list.
//!
//! Create (memory store) and list-stores are also measured over TLS, on a
//! second server started with a certificate this run makes, right after
//! the same requests over plaintext: wrk keeps its connections alive, so
//! the pair shows what TLS costs per request once the handshakes are done.
//!
//! The durable audit (a create's `started` record synced before the store
//! call) is measured against the same server whose audit log goes to
//! stderr, written and never synced, right after it.
//!
//! The server logs at `info` (to a file in the run's temporary folder), as
//! it would in production.
//!
//! Replica cache freshness: two servers over one PostgreSQL store, each
//! with a cache (10 min TTL), and the time from a write's answer on one to
//! the other's cached read returning the new version (the change feed).
//!
//! `load PATH/TO/credstore [SECONDS]`; writes `target/bench/extra/server_load.json`.
//! With `CREDSTORE_LOAD_ONLY=self` (or `tls`), only the rows measured
//! against the server itself run: TLS and the durable audit, and the runs
//! they are measured against (no OpenBao, no bare handler).

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use credstore_benches::out_dir;
use credstore_benches::summary::{Better, Row};
use credstore_test_servers::openbao::OpenBao;
use credstore_test_servers::postgres::Postgres;
use credstore_test_servers::{free_port, require_tool, wait_for_http, ServerProcess};

const CONNECTIONS: u32 = 32;
const THREADS: u32 = 2;

/// What one wrk run measured.
#[derive(Debug)]
struct Load {
    requests_per_sec: f64,
    p99_ms: f64,
}

/// A wrk script: `method`, `headers`, and a body with a fresh key per
/// request when `body` holds `{N}`.
fn script(method: &str, headers: &[(&str, &str)], body: Option<&str>) -> String {
    let mut s = String::from("local n = 0\nlocal tid = 0\nlocal counter = 0\n");
    s += "setup = function(thread) counter = counter + 1; thread:set(\"tid\", counter) end\n";
    s += "init = function(args) tid = wrk.thread:get(\"tid\") or 0 end\n";
    let _ = writeln!(s, "wrk.method = \"{method}\"");
    for (k, v) in headers {
        let _ = writeln!(s, "wrk.headers[\"{k}\"] = \"{v}\"");
    }
    match body {
        Some(b) => {
            let (head, tail) = b.split_once("{N}").unwrap_or((b, ""));
            let _ = writeln!(
                s,
                "request = function() n = n + 1; return wrk.format(nil, nil, nil, [[{head}]] .. tid .. \"-\" .. n .. [[{tail}]]) end"
            );
        }
        None => s += "request = function() return wrk.format() end\n",
    }
    // Fail the measurement on any non-2xx answer.
    s += "response = function(status) if status >= 300 then error(\"HTTP \" .. status) end end\n";
    s
}

fn wrk(name: &str, url: &str, script_text: &str, seconds: u64, dir: &Path) -> Load {
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, script_text).unwrap();
    let out = Command::new("wrk")
        .args(["-t", &THREADS.to_string(), "-c", &CONNECTIONS.to_string(), "-d", &format!("{seconds}s")])
        .args(["--latency", "--timeout", "5s", "-s"])
        .arg(&path)
        .arg(url)
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "wrk {name} failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("Non-2xx"), "wrk {name} saw error answers:\n{text}");
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk output:\n{text}"));
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| duration_ms(v.trim()))
        .unwrap_or_else(|| panic!("no 99% latency in wrk output:\n{text}"));
    assert!(rps > 0.0, "wrk {name} got no answer at all:\n{text}");
    println!("{name}: {rps:.0} req/s, p99 {p99:.2} ms");
    Load { requests_per_sec: rps, p99_ms: p99 }
}

/// wrk's latency text ("812.00us", "3.41ms", "1.02s") in milliseconds.
fn duration_ms(text: &str) -> f64 {
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: f64 = num.parse().unwrap_or_else(|_| panic!("latency {text:?}"));
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        other => panic!("unknown latency unit {other:?}"),
    }
}

/// The create body, parsed with the same shape as the server's.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    key: String,
    #[allow(dead_code)]
    value: String,
    #[allow(dead_code)]
    metadata: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    created_at: String,
    key: String,
    store_id: String,
}

#[derive(serde::Serialize)]
struct CreatedResponse {
    data: Created,
}

#[derive(serde::Serialize)]
struct StoreEntry {
    available: bool,
    id: String,
    reason: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "checkedAt")]
    checked_at: String,
}

#[derive(serde::Serialize)]
struct StoresResponse {
    data: Vec<StoreEntry>,
}

/// `load --bare ADDR`: the bare axum baseline, on the same kind of runtime
/// as the server (multi-threaded, one worker per core).
fn bare(addr: &str) {
    use axum::extract::Path as UrlPath;
    use axum::http::{header, HeaderValue, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::{get, post};

    async fn create(
        UrlPath((tenant, project, store)): UrlPath<(String, String, String)>,
        axum::Json(body): axum::Json<CreateBody>,
    ) -> axum::response::Response {
        let location = format!(
            "/manage/tenants/{tenant}/projects/{project}/credential-stores/{store}/credentials/{}",
            body.key
        );
        let answer = CreatedResponse {
            data: Created {
                created_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
                key: body.key,
                store_id: store,
            },
        };
        let mut resp = (StatusCode::CREATED, axum::Json(answer)).into_response();
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        resp
    }

    async fn list(UrlPath(_): UrlPath<(String, String)>) -> axum::response::Response {
        let now = std::time::SystemTime::now();
        let entry = |id: &str, kind: &str| StoreEntry {
            available: true,
            id: id.to_owned(),
            reason: String::new(),
            kind: kind.to_owned(),
            checked_at: humantime::format_rfc3339_millis(now).to_string(),
        };
        let answer = StoresResponse {
            data: vec![entry("memory-default", "memory"), entry("sqlite-default", "encrypted-sqlite")],
        };
        let mut resp = (StatusCode::OK, axum::Json(answer)).into_response();
        resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let app = axum::Router::new()
            .route("/readyz", get(|| async { "ok" }))
            .route("/manage/tenants/{tenant}/projects/{project}/credential-stores", get(list))
            .route(
                "/manage/tenants/{tenant}/projects/{project}/credential-stores/{id}/credentials",
                post(create),
            );
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind the bare handler");
        axum::serve(listener, app).await.expect("serve the bare handler");
    });
}

/// One `GET path` with `Authorization: auth`: the whole answer, headers
/// included (for a sanity check, not a measurement).
fn http_get(addr: SocketAddr, path: &str, auth: &str) -> String {
    http(addr, "GET", path, auth, None)
}

/// One request, `method path` with `Authorization: auth` and, when given, a
/// JSON body, on a connection of its own: the whole answer, headers included.
fn http(addr: SocketAddr, method: &str, path: &str, auth: &str, body: Option<&str>) -> String {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    stream.set_nodelay(true).expect("nodelay");
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    answer
}

/// The status code of an HTTP answer.
fn status_of(answer: &str) -> u16 {
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The strong `ETag` of an HTTP answer, without its quotes.
fn etag_of(answer: &str) -> Option<&str> {
    answer
        .split("\r\n\r\n")
        .next()?
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("etag")))
        .map(|(_, v)| v.trim().trim_matches('"'))
}

/// A loopback listener that accepts every connection and never reads from
/// it or answers: a server that hangs. Accepted connections stay open until
/// the process exits.
fn black_hole() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the black hole");
    let addr = listener.local_addr().expect("black hole address");
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    addr
}

/// A certificate for `127.0.0.1` and its key (wrk does not verify the
/// chain), written to `dir`: the TLS server's `CREDSTORE_TLS_CERT_FILE` and
/// `CREDSTORE_TLS_KEY_FILE`.
fn tls_files(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .and_then(|p| p.self_signed(&key))
        .expect("a certificate");
    let (cert_path, key_path) = (dir.join("tls-cert.pem"), dir.join("tls-key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// Waits until the server logging into `log` says it listens (a TLS
/// server, which `wait_for_http` cannot ask).
fn wait_for_listening(log: &Path, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while !std::fs::read_to_string(log).unwrap_or_default().contains("credstore listening") {
        assert!(std::time::Instant::now() < deadline, "credstore did not start: see {}", log.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `bin` on a free port with the bench's environment (a data folder
/// under `dir/name`, the admin token, logs at `info` into `dir/name.log`)
/// and `config`, when given, as its config file; waits until it is ready.
/// With `CREDSTORE_TLS_CERT_FILE` in `env`, the server serves TLS.
fn start_server(
    bin: &str,
    dir: &Path,
    name: &str,
    token: &str,
    config: Option<&Path>,
    env: &[(&str, &str)],
) -> (ServerProcess, SocketAddr) {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cmd = Command::new(bin);
    cmd.env("CREDSTORE_LISTEN", addr.to_string())
        .env("CREDSTORE_DATA_DIR", dir.join(format!("{name}-data")))
        .env("CREDSTORE_ADMIN_TOKEN", token)
        .env("CREDSTORE_LOG", "info")
        .stdout(std::fs::File::create(dir.join(format!("{name}.out"))).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap());
    if let Some(config) = config {
        cmd.env("CREDSTORE_CONFIG", config);
    }
    cmd.envs(env.iter().copied());
    let server = ServerProcess::spawn(cmd).unwrap_or_else(|e| panic!("start credstore ({name}): {e}"));
    if env.iter().any(|(k, _)| *k == "CREDSTORE_TLS_CERT_FILE") {
        wait_for_listening(&dir.join(format!("{name}.log")), Duration::from_secs(30));
    } else {
        wait_for_http(addr, "/readyz", &[200], Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("credstore ({name}) ready: {e}"));
    }
    (server, addr)
}

/// The config file of the dead-store server: the default stores and a
/// Vault store at `dead`, which never answers.
fn dead_store_config(dir: &Path, dead: SocketAddr) -> PathBuf {
    let path = dir.join("dead-store.toml");
    let text = format!(
        "[[stores]]\nid = \"vault-dead\"\ntype = \"vault\"\naddress = \"http://{dead}\"\ntoken_env = \"BENCH_DEAD_VAULT_TOKEN\"\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The key-encryption key of the PostgreSQL store's throwaway database (a
/// bench's own cluster in a temporary folder): no secret.
const PG_BENCH_KEK: &str = "YmVuY2gta2V5LWVuY3J5cHRpb24ta2V5LTMyLWJ5dGU=";

/// The config file of a PostgreSQL server: the default stores and a
/// PostgreSQL store `postgres-bench` on `pg`'s database `database` and
/// `schema`, with the `extra` settings lines (a cache), its password and
/// master key given by environment variables (`BENCH_PG_PASSWORD`,
/// `BENCH_PG_KEK`).
fn postgres_config(dir: &Path, pg: &Postgres, database: &str, schema: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("postgres-{schema}.toml"));
    let text = format!(
        "[[stores]]\nid = \"postgres-bench\"\ntype = \"postgres\"\nhost = \"{}\"\nport = {}\nuser = \"{}\"\n\
         database = \"{database}\"\npassword_env = \"BENCH_PG_PASSWORD\"\nschema = \"{schema}\"\n{extra}\
         key = {{ provider = \"master-key\", key_env = \"BENCH_PG_KEK\" }}\n",
        pg.host(),
        pg.port(),
        pg.user()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Samples of the replica freshness rows: 200, 100 in a quick run.
fn freshness_samples() -> usize {
    if credstore_benches::quick() {
        100
    } else {
        200
    }
}

/// `postgres replica cache freshness` between two `credstore` servers
/// (replicas A and B) over one PostgreSQL store, each with a cache whose TTL
/// (10 min) outlasts the run, so only the change feed can make B fresh. Per
/// sample: B reads the key (its cache answers), A overwrites it (its answer
/// carries the new version as its `ETag`), and from that answer B's read is
/// repeated at once until it returns the new version. Rows: p99 (at most
/// 100 ms) and p50 of that lag, beside B's read once fresh (one HTTP round
/// trip answered from B's cache).
fn replica_freshness(bin: &str, dir: &Path, token: &str, pg: &Postgres, database: &str) -> Vec<Row> {
    const FRESH_WITHIN: Duration = Duration::from_secs(5);
    let config = postgres_config(dir, pg, database, "bench_replicas", "cache = { ttl_ms = 600000 }\n");
    let env = [("BENCH_PG_PASSWORD", pg.password()), ("BENCH_PG_KEK", PG_BENCH_KEK)];
    let (a_server, a) = start_server(bin, dir, "replica-a", token, Some(&config), &env);
    let (b_server, b) = start_server(bin, dir, "replica-b", token, Some(&config), &env);
    let auth = format!("Bearer {token}");
    let path = "/manage/tenants/bench/projects/load/credential-stores/postgres-bench/credentials";
    let keys: Vec<String> = (0..16).map(|i| format!("fresh-{i}")).collect();
    let body = |k: &str| format!(r#"{{"key":"{k}","value":"{}"}}"#, "v".repeat(64));
    // A write through A: the new version.
    let write = |k: &str| {
        let answer = http(a, "POST", path, &auth, Some(&body(k)));
        assert!(matches!(status_of(&answer), 200 | 201), "write through A:\n{answer}");
        etag_of(&answer).expect("the write's ETag").to_owned()
    };
    // A read through B: its version.
    let read = |k: &str| {
        let answer = http(b, "GET", &format!("{path}/{k}"), &auth, None);
        assert_eq!(status_of(&answer), 200, "read through B:\n{answer}");
        etag_of(&answer).expect("the read's ETag").to_owned()
    };
    // Until B reads `version` of `k`: whether it did within FRESH_WITHIN.
    let until_fresh = |k: &str, version: &str| {
        let answered = std::time::Instant::now();
        while read(k) != version {
            if answered.elapsed() > FRESH_WITHIN {
                return (answered.elapsed(), false);
            }
        }
        (answered.elapsed(), true)
    };
    for k in &keys {
        write(k);
    }
    // B's first read subscribes its cache to the feed; a change made while
    // that is set up may be seen at TTL only: warm up until one is fresh.
    let mut warm = false;
    for k in keys.iter().take(8) {
        read(k);
        let version = write(k);
        if until_fresh(k, &version).1 {
            warm = true;
            break;
        }
    }
    assert!(warm, "replica B's cache never read a write of replica A within {FRESH_WITHIN:?}");
    let cache_counter = |name: &str| -> u64 {
        let metrics = http_get(b, "/metrics", &auth);
        let prefix = format!("credstore_cache_{name}_total{{store=\"postgres-bench\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {prefix} in replica B's metrics:\n{metrics}")) as u64
    };
    let (hits_before, loads_before) = (cache_counter("hits"), cache_counter("loads"));
    let (mut lags, mut hits, mut not_fresh) = (Vec::new(), Vec::new(), 0usize);
    for i in 0..freshness_samples() {
        let k = &keys[i % keys.len()];
        let before = read(k);
        assert_eq!(read(k), before);
        let version = write(k);
        assert_ne!(version, before, "a write makes a new version");
        let (lag, fresh) = until_fresh(k, &version);
        lags.push(lag.as_secs_f64() * 1e3);
        if !fresh {
            not_fresh += 1;
            if not_fresh == 3 {
                break;
            }
            continue;
        }
        let start = std::time::Instant::now();
        assert_eq!(read(k), version);
        hits.push(start.elapsed().as_secs_f64() * 1e3);
    }
    // B answered its reads before each write from its cache, and read the
    // store again about once per write: after the feed dropped the entry.
    let (hit, loaded) = (cache_counter("hits") - hits_before, cache_counter("loads") - loads_before);
    println!("replica B's cache over {} samples: {hit} hits, {loaded} loads", lags.len());
    assert!(hit >= 2 * lags.len() as u64, "replica B's reads were not answered from its cache: {hit} hits");
    assert!(loaded >= lags.len() as u64, "replica B read the store {loaded} times in {} samples", lags.len());
    a_server.stop();
    b_server.stop();
    let stopped = if not_fresh > 0 {
        format!("; {not_fresh} samples not fresh within {FRESH_WITHIN:?}, stopped after {}", lags.len())
    } else {
        String::new()
    };
    let label = |p: &str| {
        format!(
            "postgres replica cache freshness {p}, two credstore servers over HTTP (write answered by replica A \
             to replica B's cached read returning the new version; one PostgreSQL store, caches with a 10 min TTL; \
             {} samples{stopped})",
            lags.len()
        )
    };
    let baseline = |p: &str| format!("replica B's read once fresh (answered from its cache), {p}");
    let rows = Row::p99_and_p50(label, &lags, &hits, baseline, 100.0);
    for r in &rows {
        println!(
            "{}: ours {:.2} ms, baseline {:.2} ms, within the limit: {}",
            r.scenario,
            r.ours,
            r.baseline,
            r.meets_goal()
        );
    }
    rows
}

fn main() {
    let mut args = std::env::args().skip(1);
    if std::env::args().nth(1).as_deref() == Some("--bare") {
        bare(&std::env::args().nth(2).expect("load --bare ADDR"));
        return;
    }
    let bin = args.next().expect("usage: load PATH/TO/credstore [SECONDS]");
    let seconds: u64 = args.next().map_or(10, |s| s.parse().expect("seconds"));
    // `tls` (or `self`): only the rows measured against the server itself,
    // TLS beside plaintext and the durable audit beside an unsynced one.
    let only_tls = std::env::var("CREDSTORE_LOAD_ONLY").is_ok_and(|v| v == "tls" || v == "self");
    require_tool("wrk", "scripts/bench").expect("wrk");
    let dir = tempfile::tempdir().unwrap();

    // Our server: the embedded default stores, a known admin token; and the
    // same over TLS.
    let token = format!("bench-{}", credstore_conformance::unique_name("token"));
    let (server, addr) = start_server(&bin, dir.path(), "server", &token, None, &[]);
    let (cert, key) = tls_files(dir.path());
    let tls_env = [
        ("CREDSTORE_TLS_CERT_FILE", cert.to_str().expect("a UTF-8 path")),
        ("CREDSTORE_TLS_KEY_FILE", key.to_str().expect("a UTF-8 path")),
    ];
    let (tls_server, tls_addr) = start_server(&bin, dir.path(), "tls-server", &token, None, &tls_env);
    // The same server with its audit log on stderr (written, flushed, never
    // synced: as 0.2 wrote its file), the baseline of the durable audit.
    let unsynced_env = [("CREDSTORE_AUDIT_LOG", "-")];
    let (unsynced_server, unsynced_addr) =
        start_server(&bin, dir.path(), "unsynced-audit", &token, None, &unsynced_env);

    let auth = format!("Bearer {token}");
    let base = format!("http://{addr}/manage/tenants/bench/projects/load/credential-stores");
    let tls_base = format!("https://{tls_addr}/manage/tenants/bench/projects/load/credential-stores");
    let json = ("Content-Type", "application/json");
    let value = "v".repeat(64);
    let create_body = format!(r#"{{"key":"k-{{N}}","value":"{value}"}}"#);
    let ours_create = script("POST", &[json, ("Authorization", &auth)], Some(&create_body));
    let list_script = script("GET", &[("Authorization", &auth)], None);
    let load = format!("{THREADS} wrk threads, {CONNECTIONS} connections, {seconds} s");

    // The bare axum handler, started now and loaded right before the same
    // requests to our server, so each pair runs back to back on a shared
    // machine rather than minutes apart; likewise each TLS run right after
    // the same plaintext run.
    let bare = (!only_tls).then(|| {
        let bare_port = free_port();
        let bare_addr: SocketAddr = format!("127.0.0.1:{bare_port}").parse().unwrap();
        let mut bare_cmd = Command::new(std::env::current_exe().expect("this binary"));
        bare_cmd.arg("--bare").arg(bare_addr.to_string());
        let bare_server = ServerProcess::spawn(bare_cmd).expect("start the bare handler");
        wait_for_http(bare_addr, "/readyz", &[200], Duration::from_secs(30)).expect("bare handler ready");
        let bare_base = format!("http://{bare_addr}/manage/tenants/bench/projects/load/credential-stores");
        (bare_server, bare_base)
    });
    let run = |name: &str, url: &str, script_text: &str| wrk(name, url, script_text, seconds, dir.path());

    let sqlite = bare
        .as_ref()
        .map(|_| run("create-sqlite", &format!("{base}/sqlite-default/credentials"), &ours_create));
    let bare_create = bare.as_ref().map(|(_, bare_base)| {
        run("bare-create", &format!("{bare_base}/memory-default/credentials"), &ours_create)
    });
    let memory = run("create-memory", &format!("{base}/memory-default/credentials"), &ours_create);
    let unsynced_base =
        format!("http://{unsynced_addr}/manage/tenants/bench/projects/load/credential-stores");
    let memory_unsynced = run(
        "create-memory-unsynced-audit",
        &format!("{unsynced_base}/memory-default/credentials"),
        &ours_create,
    );
    unsynced_server.stop();
    let memory_tls =
        run("create-memory-tls", &format!("{tls_base}/memory-default/credentials"), &ours_create);
    let bare_list = bare.as_ref().map(|(_, bare_base)| run("bare-list-stores", bare_base, &list_script));
    let list = run("list-stores", &base, &list_script);
    let list_tls = run("list-stores-tls", &tls_base, &list_script);
    tls_server.stop();
    let tls_rows = [
        Row::new(
            Better::Higher,
            format!("server create over TLS vs plaintext, memory store (keep-alive; {load})"),
            "req/s",
            memory_tls.requests_per_sec,
            memory.requests_per_sec,
            "the same create over plaintext HTTP",
            Some(0.8),
        ),
        Row::new(
            Better::Higher,
            format!("server list-stores over TLS vs plaintext (keep-alive; {load})"),
            "req/s",
            list_tls.requests_per_sec,
            list.requests_per_sec,
            "the same list over plaintext HTTP",
            Some(0.8),
        ),
        Row::new(
            Better::Higher,
            format!(
                "server create with the durable audit (started record fdatasynced before the store call) vs \
                 unsynced, memory store ({load})"
            ),
            "req/s",
            memory.requests_per_sec,
            memory_unsynced.requests_per_sec,
            "the same create with the audit log written to stderr, never synced (as 0.2 wrote its file)",
            Some(0.8),
        ),
    ];
    let out = out_dir().join("extra");
    std::fs::create_dir_all(&out).unwrap();
    let (Some((bare_server, _)), Some(sqlite), Some(bare_create), Some(bare_list)) =
        (bare, sqlite, bare_create, bare_list)
    else {
        server.stop();
        std::fs::write(out.join("server_load.json"), serde_json::to_vec_pretty(&tls_rows).unwrap()).unwrap();
        return;
    };
    // The floor of every route: the middleware alone (request id, request
    // timeout, access log, metrics, panic guard), no auth and no store.
    let health = run("healthz", &format!("http://{addr}/healthz"), &script("GET", &[], None));
    bare_server.stop();

    // Logging stayed on at info: every request has its line.
    let logged = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
    assert!(logged.lines().filter(|l| l.contains("request")).count() > 1000, "the server logged no requests");
    server.stop();

    // The same list on a server with one more store, whose server accepts
    // connections and never answers.
    let dead = black_hole();
    let config = dead_store_config(dir.path(), dead);
    // The dead store's token: sent only to the black hole.
    let dead_token = [("BENCH_DEAD_VAULT_TOKEN", "bench-dead-vault-token")];
    let (dead_server, dead_addr) =
        start_server(&bin, dir.path(), "dead-store", &token, Some(&config), &dead_token);
    let dead_path = "/manage/tenants/bench/projects/load/credential-stores";
    let dead_base = format!("http://{dead_addr}{dead_path}");
    let listed = http_get(dead_addr, dead_path, &auth);
    assert!(
        listed.contains(r#""available":false,"id":"vault-dead""#),
        "the dead store is not listed as unavailable:\n{listed}"
    );
    let list_dead = wrk("list-stores-one-dead", &dead_base, &list_script, seconds, dir.path());
    dead_server.stop();

    // Our server over PostgreSQL (a cluster of the bench's own, fsync on),
    // loaded right before OpenBao.
    let pg = Postgres::start().expect("PostgreSQL installed (scripts/bench runs scripts/test-tools)");
    let database = pg.create_database("bench");
    let pg_config = postgres_config(dir.path(), &pg, &database, "bench_server", "");
    let pg_env = [("BENCH_PG_PASSWORD", pg.password()), ("BENCH_PG_KEK", PG_BENCH_KEK)];
    let (pg_server, pg_addr) = start_server(&bin, dir.path(), "postgres", &token, Some(&pg_config), &pg_env);
    let pg_base = format!("http://{pg_addr}/manage/tenants/bench/projects/load/credential-stores");
    let listed = http_get(pg_addr, "/manage/tenants/bench/projects/load/credential-stores", &auth);
    assert!(
        listed.contains(r#""available":true,"id":"postgres-bench""#),
        "the PostgreSQL store is not listed as available:\n{listed}"
    );
    let postgres = run("create-postgres", &format!("{pg_base}/postgres-bench/credentials"), &ours_create);
    pg_server.stop();
    let written =
        pg.psql(&database, "SELECT count(*) FROM bench_server.credentials").expect("count the rows");
    assert!(
        written.parse::<u64>().unwrap_or(0) > 1000,
        "the creates did not reach PostgreSQL: {written} rows"
    );
    let freshness = replica_freshness(&bin, dir.path(), &token, &pg, &database);
    drop(pg);

    let bao = OpenBao::start().expect("bao on PATH (scripts/bench puts it there)");
    let vault_token = ("X-Vault-Token", bao.root_token());
    let bao_body = format!(r#"{{"data":{{"value":"{value}","n":"{{N}}"}}}}"#);
    let bao_write = wrk(
        "openbao-kv2-write",
        &format!("{}/v1/secret/data/bench", bao.address()),
        &script("POST", &[json, vault_token], Some(&bao_body)),
        seconds,
        dir.path(),
    );
    let bao_read = wrk(
        "openbao-kv2-read",
        &format!("{}/v1/secret/data/bench", bao.address()),
        &script("GET", &[vault_token], None),
        seconds,
        dir.path(),
    );

    let write = "OpenBao dev server KV v2 write (in memory)";
    let read = "OpenBao dev server KV v2 read (in memory)";
    let mut rows = vec![
        Row::new(Better::Higher,
            format!("server create, memory store ({load})"),
            "req/s",
            memory.requests_per_sec,
            bao_write.requests_per_sec,
            write,
            Some(5.0),
        ),
        Row::new(Better::Higher,
            format!("server create, durable encrypted sqlite ({load})"),
            "req/s",
            sqlite.requests_per_sec,
            bao_write.requests_per_sec,
            write,
            Some(1.0),
        ),
        Row::new(Better::Higher,
            format!("postgres server create, encrypted PostgreSQL store (fsync on; {load})"),
            "req/s",
            postgres.requests_per_sec,
            bao_write.requests_per_sec,
            write,
            Some(3.0),
        ),
        Row::new(Better::Lower,
            "postgres server create p99, encrypted PostgreSQL store",
            "ms",
            postgres.p99_ms,
            bao_write.p99_ms,
            write,
            None,
        ),
        Row::new(Better::Higher,
            format!("server list-stores ({load})"),
            "req/s",
            list.requests_per_sec,
            bao_read.requests_per_sec,
            read,
            None,
        ),
        Row::new(Better::Higher,
            format!("server create, memory store vs bare axum handler (same body, same 201; {load})"),
            "req/s",
            memory.requests_per_sec,
            bare_create.requests_per_sec,
            "bare axum handler parsing the same body",
            Some(0.8),
        ),
        Row::new(Better::Higher,
            format!("server list-stores vs bare axum handler (same JSON; {load})"),
            "req/s",
            list.requests_per_sec,
            bare_list.requests_per_sec,
            "bare axum handler answering the same JSON",
            Some(0.8),
        ),
        Row::new(Better::Higher,
            format!("server /healthz (middleware only: no auth, no store) vs bare axum list-stores handler ({load})"),
            "req/s",
            health.requests_per_sec,
            bare_list.requests_per_sec,
            "bare axum handler answering the list-stores JSON",
            None,
        ),
        Row::new(Better::Lower,
            "server create p99, memory store",
            "ms",
            memory.p99_ms,
            bao_write.p99_ms,
            write,
            None,
        ),
        Row::new(Better::Lower,
            "server create p99, durable encrypted sqlite",
            "ms",
            sqlite.p99_ms,
            bao_write.p99_ms,
            write,
            None,
        ),
        Row::new(Better::Lower, "server list-stores p99", "ms", list.p99_ms, bao_read.p99_ms, read, None),
        Row::new(Better::Lower,
            format!(
                "server list-stores p99 with one dead store (accepts connections, never answers) vs healthy stores only ({load})"
            ),
            "ms",
            list_dead.p99_ms,
            list.p99_ms,
            "list-stores p99 with healthy stores only",
            // At most 2x the healthy p99; the ratio is healthy / ours.
            Some(0.5),
        ),
    ];
    rows.extend(tls_rows);
    rows.extend(freshness);
    std::fs::write(out.join("server_load.json"), serde_json::to_vec_pretty(&rows).unwrap()).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_latencies() {
        assert_eq!(duration_ms("812.00us"), 0.812);
        assert_eq!(duration_ms("3.41ms"), 3.41);
        assert_eq!(duration_ms("1.50s"), 1500.0);
    }

    #[test]
    fn scripts_number_each_request() {
        let s = script("POST", &[("A", "b")], Some(r#"{"key":"k-{N}"}"#));
        assert!(s.contains(r#"[[{"key":"k-]] .. tid .. "-" .. n .. [["}]]"#), "{s}");
        assert!(s.contains("wrk.headers[\"A\"] = \"b\""));
    }
}
