//! The Credential Stores API over real HTTP, against servers bound to
//! 127.0.0.1:0: every route, every error status, the API's two curl
//! commands, isolation and concurrency.

use crate::util::harness;
use crate::util::stores as test_stores;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use credstore_conformance::mock::{Fault, Op};
use credstore_core::StoreKind;
use credstore_server::auth::Action;
use credstore_server::state::FailedStore;
use harness::*;
use serde_json::{json, Value};
use test_stores::{faulty, hanging_probe, slow};

const T: &str = "tenant_123";
const P: &str = "project_456";

// ------------------------------------------------------------ the two curl commands

/// The two curl commands of the Credential Stores API's document, verbatim:
/// *List Credential Stores* and *Create Credential in Store*.
const LIST_STORES_CURL: &str = r#"curl -X GET "https://api.pilot.inkeep.com/manage/tenants/tenant_123/projects/project_456/credential-stores""#;
const CREATE_CREDENTIAL_CURL: &str = r#"curl -X POST "https://api.pilot.inkeep.com/manage/tenants/tenant_123/projects/project_456/credential-stores/resource_789/credentials" \ -H "Content-Type: application/json" \ -d '{ "key": "string", "value": "string" }'"#;

/// Splits a curl command line as a shell would (quotes, `\` continuations).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == c {
                        break;
                    }
                    cur.push(q);
                }
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    if !n.is_whitespace() {
                        cur.push(n);
                        in_word = true;
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// Runs a curl command line against `server`: same method, path, headers
/// and body, plus the bearer token.
async fn run_curl(server: &TestServer, line: &str) -> Reply {
    let words = shell_words(line);
    assert_eq!(words[0], "curl");
    let (mut method, mut url, mut headers, mut body) = ("GET".to_owned(), None, Vec::new(), None);
    let mut it = words[1..].iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "-X" => method = it.next().unwrap().clone(),
            "-H" => {
                let h = it.next().unwrap();
                let (k, v) = h.split_once(':').unwrap();
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
            "-d" => body = Some(it.next().unwrap().clone()),
            u if u.starts_with("http") => url = Some(u.to_owned()),
            other => panic!("unexpected curl argument {other}"),
        }
    }
    let url = url.unwrap();
    let path = &url[url.find("/manage").unwrap()..];
    let mut req = client().request(method.parse().unwrap(), server.url(path)).bearer_auth(ADMIN);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    Reply::from(req.send().await.unwrap()).await
}

#[tokio::test]
async fn the_credential_stores_api_curl_commands_as_written() {
    let server = TestServer::start_with(|o| o.extra.push(memory("resource_789"))).await;

    let list = run_curl(&server, LIST_STORES_CURL).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert!(list.content_type().starts_with("application/json"));
    let ids: Vec<_> = list.json()["data"].as_array().unwrap().iter().map(|e| e["id"].clone()).collect();
    assert_eq!(ids, [json!("memory-default"), json!("sqlite-default"), json!("resource_789")]);

    let created = run_curl(&server, CREATE_CREDENTIAL_CURL).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let v = created.json();
    let data = v["data"].as_object().unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["createdAt", "key", "storeId"]);
    assert_eq!(v["data"]["key"], "string");
    assert_eq!(v["data"]["storeId"], "resource_789");
    let created_at = v["data"]["createdAt"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(created_at).is_ok(), "{created_at}");
    assert!(!created.text.contains("\"value\""));

    // Without the token both are 401 problems.
    let anon = Reply::from(client().get(server.url(&stores_path(T, P))).send().await.unwrap()).await;
    anon.problem(401, &stores_path(T, P));
}

// ------------------------------------------------------------ list stores

#[tokio::test]
async fn list_stores_entries_have_exactly_the_members_of_the_credential_stores_api() {
    let server = TestServer::start_with(|o| {
        o.extra.push(FailedStore::arc(
            "broken".parse().unwrap(),
            StoreKind::from_static("vault"),
            "connection refused",
        ))
    })
    .await;
    let r = get(&client(), &server, ADMIN, &stores_path(T, P)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["data"]);
    for entry in v["data"].as_array().unwrap() {
        let keys: Vec<_> = entry.as_object().unwrap().keys().cloned().collect();
        // The four members of the Credential Stores API, and `checkedAt`
        // (a documented extension: when the availability was probed).
        assert_eq!(keys, ["available", "checkedAt", "id", "reason", "type"]);
        assert!(entry["reason"].is_string(), "reason is always a string");
        if entry["available"] == true {
            assert_eq!(entry["reason"], "");
        }
    }
    let mut v = v;
    strip_checked_at(&mut v);
    let by_id = |id: &str| v["data"].as_array().unwrap().iter().find(|e| e["id"] == id).unwrap().clone();
    assert_eq!(
        by_id("memory-default"),
        json!({"available": true, "id": "memory-default", "reason": "", "type": "memory"})
    );
    assert_eq!(by_id("sqlite-default")["type"], "encrypted-sqlite");
    assert_eq!(by_id("sqlite-default")["available"], true, "{}", r.text);
    assert_eq!(
        by_id("broken"),
        json!({"available": false, "id": "broken", "reason": "misconfigured", "type": "vault"})
    );
}

#[tokio::test]
async fn a_dead_backend_never_stalls_the_list() {
    let server = TestServer::start_with(|o| {
        o.settings.probe_timeout = Duration::from_millis(300);
        o.extra.push(hanging_probe("hangs-1"));
        o.extra.push(hanging_probe("hangs-2"));
        o.extra.push(faulty("panics", Fault::Panic));
    })
    .await;
    let started = Instant::now();
    let r = get(&client(), &server, ADMIN, &stores_path(T, P)).await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.text);
    // Probed concurrently: two hanging stores cost one timeout, not two.
    assert!(took < Duration::from_millis(550), "took {took:?}");
    let v = r.json();
    for id in ["hangs-1", "hangs-2"] {
        let e = v["data"].as_array().unwrap().iter().find(|e| e["id"] == id).unwrap();
        assert_eq!(e["available"], false);
        assert_eq!(e["reason"], "timeout", "{e}");
    }
    let e = v["data"].as_array().unwrap().iter().find(|e| e["id"] == "panics").unwrap();
    assert_eq!(e["available"], false);
    assert_eq!(v["data"][0]["available"], true);
}

// ------------------------------------------------------------ every route

#[tokio::test]
async fn every_route_on_every_embedded_store() {
    let server = TestServer::start().await;
    let c = client();
    for store in ["memory-default", "sqlite-default"] {
        let base = creds_path(T, P, store);
        let body =
            json!({"key": "github-token", "value": "ghp_s3cr3t_value", "metadata": {"owner": "payments"}});
        let r = create(&c, &server, ADMIN, &base, body).await;
        assert_eq!(r.status, 201, "{store}: {}", r.text);
        assert_eq!(r.headers["location"], cred_path(T, P, store, "github-token").as_str());
        let created_at = r.json()["data"]["createdAt"].clone();

        // Overwrite: 200, createdAt kept.
        let r = create(&c, &server, ADMIN, &base, json!({"key": "github-token", "value": "v2"})).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["data"]["createdAt"], created_at);

        // Read metadata: never the value.
        let r = get(&c, &server, ADMIN, &cred_path(T, P, store, "github-token")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let d = r.json()["data"].clone();
        assert_eq!(d["key"], "github-token");
        assert_eq!(d["storeId"], store);
        assert_eq!(d["metadata"], json!({}), "overwrite replaced the metadata");
        assert_eq!(d["createdAt"], created_at);
        assert!(d["updatedAt"].as_str().unwrap() >= created_at.as_str().unwrap());
        assert!(!r.text.contains("v2") && !r.text.contains("ghp_"), "{}", r.text);
        let r = create(
            &c,
            &server,
            ADMIN,
            &base,
            json!({"key": "github-token", "value": "v3", "metadata": {"a": "b"}}),
        )
        .await;
        assert_eq!(r.status, 200);
        let r = get(&c, &server, ADMIN, &cred_path(T, P, store, "github-token")).await;
        assert_eq!(r.json()["data"]["metadata"], json!({"a": "b"}));

        // List, paginated.
        for k in ["db.password", "aws.key", "zeta"] {
            assert_eq!(create(&c, &server, ADMIN, &base, json!({"key": k, "value": "x"})).await.status, 201);
        }
        let mut keys = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                Some(c) => format!("{base}?limit=2&cursor={c}"),
                None => format!("{base}?limit=2"),
            };
            let r = get(&c, &server, ADMIN, &q).await;
            assert_eq!(r.status, 200, "{}", r.text);
            let v = r.json();
            assert!(v["data"].as_array().unwrap().len() <= 2);
            keys.extend(v["data"].as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap().to_owned()));
            assert!(v["data"].as_array().unwrap().iter().all(|e| e.as_object().unwrap().len() == 1));
            match v["nextCursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        assert_eq!(keys, ["aws.key", "db.password", "github-token", "zeta"]);
        let r = get(&c, &server, ADMIN, &format!("{base}?prefix=d")).await;
        assert_eq!(r.json()["data"], json!([{"key": "db.password"}]));
        assert!(r.json()["nextCursor"].is_null());

        // Delete, then it is gone.
        let r = delete(&c, &server, ADMIN, &cred_path(T, P, store, "github-token")).await;
        assert_eq!(r.status, 204, "{}", r.text);
        assert!(r.text.is_empty());
        let path = cred_path(T, P, store, "github-token");
        delete(&c, &server, ADMIN, &path).await.problem(404, &path);
        get(&c, &server, ADMIN, &path).await.problem(404, &path);
    }
}

/// A store served with `cache = { .. }`: a lookup after a create or an
/// overwrite through the server reads the write back at once; a repeated
/// lookup is answered by the cache without a call to the store; projects
/// never share entries; another writer's change shows once the entry is
/// gone from the cache.
#[tokio::test]
async fn a_cached_store_reads_its_writes_and_answers_repeat_lookups_itself() {
    use credstore_core::{
        CredentialKey, CredentialStore, CredentialStoreExt, Metadata, Namespace, SecretValue,
    };
    let (mock, store) = test_stores::mock("cached");
    let layer = credstore_layers::CacheLayer::new().with_ttl(Duration::from_secs(600));
    let server = TestServer::start_with(|o| o.cached.push((store, layer))).await;
    let cache = server.stores.cache("cached").expect("the server kept the cache").clone();
    assert!(server.stores.cache("memory-default").is_none());
    let c = client();
    let base = creds_path(T, P, "cached");
    let path = cred_path(T, P, "cached", "api-key");
    let lookup = || async { get(&c, &server, ADMIN, &path).await };
    let rev = |r: &Reply| r.json()["data"]["metadata"]["rev"].as_str().map(str::to_owned);

    let list = get(&c, &server, ADMIN, &stores_path(T, P)).await;
    let entry = list.json()["data"].as_array().unwrap().iter().find(|e| e["id"] == "cached").cloned();
    assert_eq!(entry.unwrap()["available"], true, "{}", list.text);

    let r =
        create(&c, &server, ADMIN, &base, json!({"key": "api-key", "value": "v1", "metadata": {"rev": "1"}}))
            .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let gets = mock.calls(Op::Get);
    let first = lookup().await;
    assert_eq!((first.status, rev(&first).as_deref()), (200, Some("1")), "{}", first.text);
    assert_eq!(mock.calls(Op::Get), gets + 1, "the first lookup reads the store");
    let second = lookup().await;
    assert_eq!(second.json()["data"], first.json()["data"]);
    assert_eq!(mock.calls(Op::Get), gets + 1, "the second lookup is answered by the cache");
    let stats = cache.stats();
    assert_eq!((stats.hits, stats.loads), (1, 1), "{stats:?}");

    // An overwrite through the server is read back at once, though the
    // TTL is ten minutes; then it is cached again.
    let r =
        create(&c, &server, ADMIN, &base, json!({"key": "api-key", "value": "v2", "metadata": {"rev": "2"}}))
            .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(rev(&lookup().await).as_deref(), Some("2"));
    assert_eq!(rev(&lookup().await).as_deref(), Some("2"));
    assert_eq!(mock.calls(Op::Get), gets + 2, "one read after the overwrite, then a hit");

    // Another project's lookup of the same key never hits this project's entry.
    let other = cred_path(T, "project_other", "cached", "api-key");
    get(&c, &server, ADMIN, &other).await.problem(404, &other);
    assert_eq!(mock.calls(Op::Get), gets + 3);

    // A writer that bypasses this server: its change is not seen while the
    // entry is fresh, and is seen once the entry is gone.
    let ns = Namespace::new(format!("{T}/{P}")).unwrap();
    let behind = mock.with_namespace(&ns).unwrap();
    let meta = Metadata::try_from([("rev", "3")]).unwrap();
    behind.set(&CredentialKey::new("api-key").unwrap(), &SecretValue::from("v3"), &meta).await.unwrap();
    assert_eq!(rev(&lookup().await).as_deref(), Some("2"), "served from the cache within the TTL");
    cache.clear_all();
    assert_eq!(rev(&lookup().await).as_deref(), Some("3"));

    // A delete through the server is seen at once too.
    assert_eq!(delete(&c, &server, ADMIN, &path).await.status, 204);
    lookup().await.problem(404, &path);
    let stats = cache.stats();
    assert!(stats.hits >= 3 && stats.misses >= 4, "{stats:?}");
}

#[tokio::test]
async fn health_readiness_and_openapi() {
    let server = TestServer::start().await;
    let c = client();
    let r = Reply::from(c.get(server.url("/healthz")).send().await.unwrap()).await;
    assert_eq!((r.status, r.json()), (200, json!({"status": "ok"})));
    let r = Reply::from(c.get(server.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"status": "ready", "storesAvailable": 2, "storesTotal": 2}));

    let r = Reply::from(c.get(server.url("/openapi.json")).send().await.unwrap()).await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Credential Stores API");
    let description = doc["info"]["description"].as_str().unwrap();
    assert!(description.starts_with("The Credential Stores API"), "{description}");
    assert!(description.contains("412") && description.contains("512 bytes"), "{description}");
    let text = r.text.to_lowercase();
    for other_name in ["seed", "management api", "credential-stores api"] {
        assert!(!text.contains(other_name), "the document calls the API {other_name:?}");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearerAuth"]["scheme"], "bearer");
    let problem = &doc["components"]["schemas"]["Problem"];
    let mut members: Vec<_> = problem["properties"].as_object().unwrap().keys().cloned().collect();
    members.sort();
    assert_eq!(members, ["code", "detail", "error", "instance", "requestId", "status", "title"]);

    // Every documented operation exists on the server (no 404 route / 405 method),
    // and every /manage operation documents 401 and its error bodies as problem+json.
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations.insert((method.to_uppercase(), path.clone()));
            let concrete = path
                .replace("{tenantId}", T)
                .replace("{projectId}", P)
                .replace("{id}", "memory-default")
                .replace("{key}", "some-key");
            let r = Reply::from(
                c.request(method.to_uppercase().parse().unwrap(), server.url(&concrete))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert!(r.status != 405, "{method} {path}: {}", r.text);
            if r.status == 404 {
                assert!(!r.text.contains("no such route"), "{method} {path} is documented but not routed");
            }
            if path.starts_with("/manage") {
                assert_eq!(r.status, 401, "{method} {path} needs a token");
                assert_eq!(op["security"], json!([{"bearerAuth": []}, {"cookieAuth": []}]));
                for (status, resp) in op["responses"].as_object().unwrap() {
                    if status.starts_with('4') || status.starts_with('5') {
                        assert!(
                            resp["content"]["application/problem+json"].is_object(),
                            "{method} {path} {status}"
                        );
                    }
                }
                assert!(op["responses"]["401"].is_object());
            }
        }
    }
    let expected: BTreeSet<(String, String)> = [
        ("GET", "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores"),
        ("POST", "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials"),
        ("GET", "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials"),
        ("GET", "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials/{key}"),
        (
            "DELETE",
            "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials/{key}",
        ),
        (
            "GET",
            "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials/{key}/value",
        ),
        ("POST", "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials:batchRead"),
        ("GET", "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials/{key}/versions"),
        ("DELETE", "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials/{key}/versions"),
        ("GET", "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials/{key}/versions/{version}"),
        ("DELETE", "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials/{key}/versions/{version}"),
        ("GET", "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials/{key}/versions/{version}/value"),
        ("POST", "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials/{key}/versions/{version}/restore"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/openapi.json"),
    ]
    .iter()
    .map(|(m, p)| (m.to_string(), p.to_string()))
    .collect();
    assert_eq!(operations, expected);
    // The create body: exactly one of `value` and `valueBase64`, as a oneOf
    // of two closed objects (a body with both matches neither).
    let schemas = &doc["components"]["schemas"];
    let one_of: Vec<_> = schemas["CreateCredentialRequest"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["$ref"].as_str().unwrap().rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(one_of, ["CreateTextCredential", "CreateBinaryCredential"]);
    for (name, value_field) in [("CreateTextCredential", "value"), ("CreateBinaryCredential", "valueBase64")]
    {
        let s = &schemas[name];
        assert_eq!(s["required"], json!(["key", value_field]), "{name}");
        assert_eq!(s["additionalProperties"], false, "{name}");
        let mut props: Vec<_> = s["properties"].as_object().unwrap().keys().cloned().collect();
        props.sort();
        let mut expected =
            vec!["expiresAt".to_owned(), "key".to_owned(), "metadata".to_owned(), value_field.to_owned()];
        expected.sort();
        assert_eq!(props, expected, "{name}");
    }
    let b64 = &schemas["CreateBinaryCredential"]["properties"]["valueBase64"];
    assert_eq!(b64["maxLength"], 87_384);
    assert!(b64["pattern"].as_str().unwrap().contains("[AQgw]=="), "{b64}");
    assert_eq!(schemas["ValueKind"]["enum"], json!(["text", "binary"]));
    let info = &schemas["CredentialInfo"];
    for member in ["version", "valueKind"] {
        assert!(info["properties"][member].is_object(), "{member}");
        assert!(info["required"].as_array().unwrap().contains(&json!(member)), "{member}");
    }
    // The conditional headers, 412 and the ETag response header.
    let creds = "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials";
    let post = &doc["paths"][creds]["post"];
    let headers: Vec<_> = post["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "header")
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(headers, ["If-None-Match", "If-Match"]);
    assert!(post["responses"]["412"]["content"]["application/problem+json"].is_object());
    for status in ["200", "201"] {
        assert!(post["responses"][status]["headers"]["ETag"].is_object(), "{status}");
    }
    let get_op = &doc["paths"][format!("{creds}/{{key}}")]["get"];
    assert!(get_op["responses"]["200"]["headers"]["ETag"].is_object());
    assert!(doc["paths"][format!("{creds}/{{key}}")]["delete"]["responses"]["400"].is_object());
}

#[tokio::test]
async fn readyz_is_503_when_no_store_is_available() {
    let server = TestServer::start_with(|o| {
        o.default_stores = false;
        o.extra.push(FailedStore::arc("down".parse().unwrap(), StoreKind::from_static("vault"), "sealed"));
    })
    .await;
    let r = Reply::from(client().get(server.url("/readyz")).send().await.unwrap()).await;
    r.problem(503, "/readyz");
}

// ------------------------------------------------------------ errors

#[tokio::test]
async fn unauthorized_is_401_with_a_challenge() {
    let server = TestServer::start().await;
    let c = client();
    let path = stores_path(T, P);
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("none", c.get(server.url(&path))),
        ("wrong", c.get(server.url(&path)).bearer_auth("not-the-token")),
        ("basic", c.get(server.url(&path)).basic_auth("admin", Some(ADMIN))),
        ("empty bearer", c.get(server.url(&path)).header("authorization", "Bearer ")),
        ("cookie", c.get(server.url(&path)).header("cookie", "better-auth.session_token=abc")),
        (
            "post none",
            c.post(server.url(&creds_path(T, P, "memory-default"))).json(&json!({"key": "k", "value": "v"})),
        ),
    ];
    for (name, req) in cases {
        let r = Reply::from(req.send().await.unwrap()).await;
        assert_eq!(r.status, 401, "{name}");
        assert_problem_shape(&r, None);
        let challenge = r.headers["www-authenticate"].to_str().unwrap();
        assert!(challenge.starts_with("Bearer"), "{name}: {challenge}");
        if name == "cookie" {
            assert!(r.json()["detail"].as_str().unwrap().contains("session cookie is not valid"));
        }
        if name == "wrong" {
            assert!(challenge.contains("invalid_token"));
        }
        assert_eq!(r.json()["code"], "unauthorized");
    }
}

/// A server whose limit of refusals without a valid token per address is
/// `burst`, refilled at `per_minute`.
async fn with_auth_failure_limit(burst: u32, per_minute: u32) -> TestServer {
    use credstore_server::auth_failures::AuthFailureLimit;
    TestServer::start_with(|o| o.settings.auth_failure_limit = AuthFailureLimit { burst, per_minute }).await
}

#[tokio::test]
async fn an_anonymous_request_cannot_make_an_audit_record_longer_than_512_bytes() {
    // Every refusal is a 401 here (the limit per address has its own test).
    let server = with_auth_failure_limit(1000, 60).await;
    let c = client();
    // 200 percent-encoded control characters per segment: 4,994 bytes a
    // record when ids were copied as sent.
    let junk: String = (0..200).map(|i| format!("%{:02X}", 1 + i % 31)).collect();
    let long = "x".repeat(255);
    let versioned = format!("{}/versions/{}", cred_path(&long, &long, &long, &long), "x".repeat(128));
    let paths = [cred_path(&junk, &junk, &junk, &junk), cred_path(&long, &long, &long, &long), versioned];
    for _ in 0..50 {
        for path in &paths {
            let r =
                Reply::from(c.get(server.url(path)).bearer_auth("not-a-token").send().await.unwrap()).await;
            assert_eq!(r.status, 401, "{path}: {}", r.text);
        }
        let r = Reply::from(c.delete(server.url(&paths[0])).send().await.unwrap()).await;
        assert_eq!(r.status, 401);
    }
    let text = std::fs::read_to_string(server.dir.path().join("data").join("audit.log")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 200, "one record per refused /manage request");
    let longest = lines.iter().map(|l| l.len() + 1).max().unwrap();
    assert!(longest <= credstore_server::audit::MAX_ANONYMOUS_RECORD_LEN, "a record of {longest} bytes");
    let first: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first["tenant"], "(invalid)");
    assert_eq!(first["key"], "(invalid)");
    assert_eq!(first["token"], Value::Null);
    let second: Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(second["store"], format!("{}…", "x".repeat(48)), "valid ids are kept, cut");
    let third: Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(third["version"], format!("{}…", "x".repeat(48)), "a version is kept, cut, as an id");
}

#[tokio::test]
async fn bad_tokens_past_an_address_limit_are_429_and_recorded_once_per_run() {
    let server = with_auth_failure_limit(5, 6).await;
    let c = client();
    let path = stores_path(T, P);
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let r = get(&c, &server, "not-a-token", &path).await;
        if r.status == 429 {
            assert_eq!(r.headers["retry-after"], "10", "one more refusal every 10 s");
            assert_problem_shape(&r, Some(&path));
        }
        statuses.push(r.status);
    }
    assert_eq!(statuses, [[401; 5].as_slice(), &[429; 7]].concat());
    let metrics = Reply::from(c.get(server.url("/metrics")).send().await.unwrap()).await;
    assert_eq!(metrics.status, 429, "every route that takes a token is limited");
    // A known token is never limited.
    assert_eq!(get(&c, &server, ADMIN, &path).await.status, 200);
    let denied: Vec<u64> = audit_lines(&server).iter().map(|l| l["status"].as_u64().unwrap()).collect();
    assert_eq!(denied, [401, 401, 401, 401, 401, 429], "the run of 429s is recorded once");
}

#[tokio::test]
async fn tokens_are_scoped_to_tenants_projects_and_actions() {
    const VIEWER: &str = "viewer-token-for-tenant-a";
    const EDITOR: &str = "editor-token-for-a-p1-only";
    let server = TestServer::start_with(|o| {
        o.tokens.push(token("viewer", VIEWER, &["a"], &["*"], &[Action::View]));
        o.tokens.push(token("editor", EDITOR, &["a"], &["p1"], &[Action::View, Action::Edit]));
    })
    .await;
    let c = client();
    let body = || json!({"key": "k", "value": "v"});
    let creds = creds_path("a", "p1", "memory-default");
    assert_eq!(create(&c, &server, EDITOR, &creds, body()).await.status, 201);
    assert_eq!(get(&c, &server, VIEWER, &stores_path("a", "p1")).await.status, 200);
    assert_eq!(get(&c, &server, VIEWER, &creds).await.status, 200);
    assert_eq!(get(&c, &server, VIEWER, &cred_path("a", "p1", "memory-default", "k")).await.status, 200);

    let forbidden = [
        create(&c, &server, VIEWER, &creds, body()).await,
        delete(&c, &server, VIEWER, &cred_path("a", "p1", "memory-default", "k")).await,
        get(&c, &server, VIEWER, &stores_path("b", "p1")).await,
        get(&c, &server, EDITOR, &stores_path("a", "p2")).await,
        create(&c, &server, EDITOR, &creds_path("a", "p2", "memory-default"), body()).await,
        create(&c, &server, EDITOR, &creds_path("b", "p1", "memory-default"), body()).await,
        // 403 comes before 404: an unknown store is not revealed.
        create(&c, &server, EDITOR, &creds_path("b", "p1", "nosuch"), body()).await,
    ];
    for r in forbidden {
        assert_eq!(r.status, 403, "{}", r.text);
        assert_problem_shape(&r, None);
        assert_eq!(r.json()["title"], "Forbidden");
    }
    assert_eq!(delete(&c, &server, EDITOR, &cred_path("a", "p1", "memory-default", "k")).await.status, 204);
}

#[tokio::test]
async fn bad_requests_are_400() {
    let server = TestServer::start().await;
    let c = client();
    let path = creds_path(T, P, "memory-default");
    let send = |ct: Option<&'static str>, body: &'static str| {
        let mut req = c.post(server.url(&path)).bearer_auth(ADMIN).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        req
    };
    let cases = [
        (Some("application/json"), "{not json", "not valid JSON"),
        (Some("application/json"), "", "ends too early"),
        (Some("application/json"), "[1,2]", "JSON object"),
        (Some("application/json"), r#"{"value":"v"}"#, "missing field key"),
        (Some("application/json"), r#"{"key":"k"}"#, "missing field value"),
        (Some("application/json"), r#"{"key":7,"value":"v"}"#, "key must be a string"),
        (Some("application/json"), r#"{"key":"k","value":{"a":1}}"#, "value must be a string"),
        (Some("application/json"), r#"{"key":"k","value":"v","metadata":"x"}"#, "metadata must be an object"),
        (Some("application/json"), r#"{"key":"k","value":"v","metadata":{"n":1}}"#, "must be a string"),
        (Some("application/json"), r#"{"key":"k","value":"v","metdata":{}}"#, "unknown field"),
        // Wrong or missing content type: still a problem+json 400, even with a valid body.
        (Some("text/plain"), r#"{"key":"k","value":"v"}"#, "Content-Type"),
        (Some("application/x-www-form-urlencoded"), "key=k&value=v", "Content-Type"),
        (None, r#"{"key":"k","value":"v"}"#, "Content-Type"),
    ];
    for (ct, body, expect) in cases {
        let r = Reply::from(send(ct, body).send().await.unwrap()).await;
        let detail = r.problem(400, &path);
        assert!(detail.contains(expect), "{body}: {detail}");
        assert_eq!(r.json()["code"], "bad_request");
    }
    let r = get(&c, &server, ADMIN, &format!("{path}?limit=lots")).await;
    r.problem(400, &path);
    // Nothing was stored by any of them.
    let r = get(&c, &server, ADMIN, &path).await;
    assert_eq!(r.json()["data"], json!([]));
}

#[tokio::test]
async fn rule_breaking_input_is_422_naming_the_field() {
    let server = TestServer::start().await;
    let c = client();
    let path = creds_path(T, P, "sqlite-default");
    let long_meta: serde_json::Map<String, Value> = (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases = [
        (json!({"key": "has space", "value": "v"}), "invalid key"),
        (json!({"key": "", "value": "v"}), "invalid key"),
        (json!({"key": "x".repeat(256), "value": "v"}), "invalid key"),
        (json!({"key": "k", "value": "v".repeat(65_537)}), "invalid value"),
        (json!({"key": "k", "value": "v", "metadata": {"bad key": "x"}}), "metadata key"),
        (json!({"key": "k", "value": "v", "metadata": {"k": "x".repeat(257)}}), "metadata.k"),
        (json!({"key": "k", "value": "v", "metadata": {"k": "line\nbreak"}}), "metadata.k"),
        (json!({"key": "k", "value": "v", "metadata": long_meta}), "invalid metadata"),
    ];
    for (body, expect) in cases {
        let r = create(&c, &server, ADMIN, &path, body.clone()).await;
        let detail = r.problem(422, &path);
        assert!(detail.contains(expect), "{detail}");
        assert_eq!(r.json()["code"], "unprocessable_entity");
        assert!(!detail.contains("vvvvvvvv"), "the value is never echoed");
    }
    // The largest value is accepted.
    let r = create(&c, &server, ADMIN, &path, json!({"key": "big", "value": "v".repeat(65_536)})).await;
    assert_eq!(r.status, 201, "{}", r.text);

    // Path ids: tenantId, projectId, store id, key.
    let bad_paths = [
        (creds_path("bad%20tenant", P, "memory-default"), "tenantId"),
        (creds_path(T, "p%2Fq", "memory-default"), "projectId"),
        (creds_path(T, P, "bad%21store"), "invalid id"),
        (creds_path(&"t".repeat(256), P, "memory-default"), "tenantId"),
    ];
    for (path, expect) in bad_paths {
        let r = create(&c, &server, ADMIN, &path, json!({"key": "k", "value": "v"})).await;
        assert_eq!(r.status, 422, "{path}: {}", r.text);
        assert_problem_shape(&r, None);
        assert!(r.json()["detail"].as_str().unwrap().contains(expect), "{}", r.text);
    }
    // Dot-segments: HTTP clients normalize them away, so send them raw.
    let auth = format!("Bearer {ADMIN}");
    for (path, expect) in [
        (creds_path(T, "..", "memory-default"), "projectId"),
        (creds_path(".", P, "memory-default"), "tenantId"),
        (creds_path(T, "%2E%2E", "memory-default"), "projectId"),
        (stores_path("%2e", P), "tenantId"),
    ] {
        let body = br#"{"key":"k","value":"v"}"#;
        let headers = [("Authorization", auth.as_str()), ("Content-Type", "application/json")];
        let r = raw_request(server.addr, &raw_head("POST", &path, &headers, body.len()), body).await;
        let r = if path.ends_with("credential-stores") {
            raw_request(server.addr, &raw_head("GET", &path, &headers[..1], 0), b"").await
        } else {
            r
        };
        assert!(r.problem(422, &path).contains(expect), "{path}: {}", r.text);
        assert!(r.json()["detail"].as_str().unwrap().contains("'.' or '..'"));
    }
    let r = get(&c, &server, ADMIN, &stores_path("bad%20tenant", P)).await;
    assert!(r.problem(422, &stores_path("bad%20tenant", P)).contains("tenantId"));
    let key_path = cred_path(T, P, "memory-default", "bad%20key");
    assert!(get(&c, &server, ADMIN, &key_path).await.problem(422, &key_path).contains("key"));
    assert!(delete(&c, &server, ADMIN, &key_path).await.problem(422, &key_path).contains("key"));
    let list = creds_path(T, P, "memory-default");
    for (q, expect) in
        [("limit=0", "limit"), ("limit=1001", "limit"), ("cursor=zz", "cursor"), ("prefix=a%20b", "prefix")]
    {
        let r = get(&c, &server, ADMIN, &format!("{list}?{q}")).await;
        assert!(r.problem(422, &list).contains(expect), "{q}: {}", r.text);
    }
}

#[tokio::test]
async fn unknown_store_route_and_method_are_404_and_405() {
    let server = TestServer::start().await;
    let c = client();
    let path = creds_path(T, P, "resource_789");
    let r = create(&c, &server, ADMIN, &path, json!({"key": "k", "value": "v"})).await;
    assert!(r.problem(404, &path).contains("resource_789"));
    assert_eq!(get(&c, &server, ADMIN, &path).await.status, 404);
    let p = cred_path(T, P, "resource_789", "k");
    get(&c, &server, ADMIN, &p).await.problem(404, &p);
    delete(&c, &server, ADMIN, &p).await.problem(404, &p);
    for path in ["/", "/manage", "/manage/tenants/t/projects/p/credential-stores/", "/nope?x=1"] {
        let r = get(&c, &server, ADMIN, path).await;
        r.problem(404, path.split('?').next().unwrap());
    }
    let r = Reply::from(c.put(server.url(&stores_path(T, P))).bearer_auth(ADMIN).send().await.unwrap()).await;
    r.problem(405, &stores_path(T, P));
    assert!(r.headers.contains_key("allow"));
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let server = TestServer::start_with(|o| o.settings.body_limit = 4096).await;
    let c = client();
    let path = creds_path(T, P, "memory-default");
    let big = json!({"key": "k", "value": "x".repeat(5000)}).to_string();
    let r = Reply::from(
        c.post(server.url(&path))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.json()["code"], "payload_too_large");
    r.problem(413, &path);
    // Without Content-Length (chunked), the limit still holds.
    let stream = futures::stream::iter(
        big.into_bytes().chunks(1000).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>(),
    );
    let r = Reply::from(
        c.post(server.url(&path))
            .bearer_auth(ADMIN)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.problem(413, &path);
    assert_eq!(get(&c, &server, ADMIN, &path).await.json()["data"], json!([]));
}

#[tokio::test]
async fn unavailable_stores_are_503_naming_the_store_and_a_category_never_the_cause() {
    let server = TestServer::start_with(|o| {
        o.settings.store_timeout = Duration::from_millis(200);
        o.extra.push(FailedStore::arc(
            "vault-prod".parse().unwrap(),
            StoreKind::from_static("vault"),
            "connection refused at http://127.0.0.1:1",
        ));
        o.extra.push(slow("slow", Duration::from_secs(30)).1);
        o.extra.push(faulty("denied", Fault::PermissionDenied));
        o.extra.push(faulty("down", Fault::Unavailable));
    })
    .await;
    let c = client();
    let body = || json!({"key": "k", "value": "v"});
    let detail = |store: &str, category: &str| {
        format!("store '{store}' is unavailable ({category}); the cause is in the server log under this requestId")
    };
    let path = creds_path(T, P, "vault-prod");
    let r = create(&c, &server, ADMIN, &path, body()).await;
    assert_eq!(r.problem(503, &path), detail("vault-prod", "misconfigured"));
    assert_eq!(r.json()["code"], "service_unavailable");
    assert!(!r.text.contains("127.0.0.1:1") && !r.text.contains("refused at"), "{}", r.text);
    for path in [creds_path(T, P, "vault-prod"), cred_path(T, P, "vault-prod", "k")] {
        assert_eq!(
            get(&c, &server, ADMIN, &path).await.problem(503, &path),
            detail("vault-prod", "misconfigured")
        );
    }
    let path = creds_path(T, P, "slow");
    let started = Instant::now();
    let r = create(&c, &server, ADMIN, &path, body()).await;
    assert_eq!(r.problem(503, &path), detail("slow", "timeout"));
    assert!(started.elapsed() < Duration::from_secs(5));
    // The store's timeout layer bounds every operation, not just writes.
    let key_path = cred_path(T, P, "slow", "k");
    for r in [
        get(&c, &server, ADMIN, &path).await,
        get(&c, &server, ADMIN, &key_path).await,
        delete(&c, &server, ADMIN, &key_path).await,
    ] {
        assert_eq!(r.status, 503, "{}", r.text);
        assert_eq!(r.json()["detail"], detail("slow", "timeout"), "{}", r.text);
    }
    let path = creds_path(T, P, "denied");
    let r = create(&c, &server, ADMIN, &path, body()).await;
    assert_eq!(r.problem(503, &path), detail("denied", "refused"));
    assert!(!r.text.contains("scripted fault"), "{}", r.text);
    let path = creds_path(T, P, "down");
    let r = create(&c, &server, ADMIN, &path, body()).await;
    assert_eq!(r.problem(503, &path), detail("down", "unreachable"));
    assert!(!r.text.contains("scripted fault"), "{}", r.text);
}

#[tokio::test]
async fn the_request_timeout_answers_503() {
    let server = TestServer::start_with(|o| {
        o.settings.request_timeout = Duration::from_millis(200);
        o.extra.push(slow("slow", Duration::from_secs(30)).1);
    })
    .await;
    let path = creds_path(T, P, "slow");
    let r = create(&client(), &server, ADMIN, &path, json!({"key": "k", "value": "v"})).await;
    assert!(r.problem(503, &path).contains("did not complete within 200 ms"));
}

#[tokio::test]
async fn internal_errors_are_500_with_a_generic_detail() {
    let server = TestServer::start_with(|o| {
        o.extra.push(faulty("faulty", Fault::Backend));
        o.extra.push(faulty("panicky", Fault::Panic));
        o.extra.push(faulty("racy", Fault::Conflict));
    })
    .await;
    let c = client();
    let body = || json!({"key": "k", "value": "v"});
    for store in ["faulty", "panicky"] {
        let path = creds_path(T, P, store);
        let r = create(&c, &server, ADMIN, &path, body()).await;
        let detail = r.problem(500, &path);
        assert!(!detail.contains("scripted") && !detail.contains("panic"), "{detail}");
        assert_eq!(r.json()["code"], "internal_server_error");
    }
    let path = creds_path(T, P, "racy");
    let r = create(&c, &server, ADMIN, &path, body()).await;
    r.problem(409, &path);
    // The server still serves after a panic.
    assert_eq!(get(&c, &server, ADMIN, &stores_path(T, P)).await.status, 200);
}

#[tokio::test]
async fn request_ids_are_echoed_or_generated() {
    let server = TestServer::start().await;
    let c = client();
    let path = creds_path(T, P, "nosuch");
    let r = Reply::from(
        c.post(server.url(&path))
            .bearer_auth(ADMIN)
            .header("x-request-id", "req_1234567890")
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.problem(404, &path);
    assert_eq!(r.request_id(), "req_1234567890");
    assert_eq!(r.json()["requestId"], "req_1234567890");
    // Success responses carry it too.
    let r =
        Reply::from(c.get(server.url("/healthz")).header("x-request-id", "abc-123").send().await.unwrap())
            .await;
    assert_eq!(r.request_id(), "abc-123");
    // An unusable one is replaced, not rejected.
    for bad in ["has space", "x".repeat(200).as_str(), "ünï"] {
        let r = Reply::from(
            c.get(server.url(&path)).header("x-request-id", bad.as_bytes()).send().await.unwrap(),
        )
        .await;
        assert_eq!(r.status, 401);
        assert!(r.request_id().starts_with("req_") && r.request_id() != bad);
        assert_eq!(r.json()["requestId"], r.request_id());
    }
    let a = Reply::from(c.get(server.url("/healthz")).send().await.unwrap()).await;
    let b = Reply::from(c.get(server.url("/healthz")).send().await.unwrap()).await;
    assert_ne!(a.request_id(), b.request_id());
}

// ------------------------------------------------------------ isolation

#[tokio::test]
async fn tenants_and_projects_are_isolated_in_every_store() {
    const A: &str = "token-of-tenant-a-only";
    let server = TestServer::start_with(|o| {
        o.tokens.push(token("a", A, &["a"], &["*"], &[Action::View, Action::Edit]))
    })
    .await;
    let c = client();
    for store in ["memory-default", "sqlite-default"] {
        let scopes = [("a", "p1"), ("a", "p2"), ("b", "p1")];
        for (t, p) in scopes {
            let r = create(&c, &server, ADMIN, &creds_path(t, p, store), json!({"key": "shared", "value": format!("{t}-{p}"), "metadata": {"owner": format!("{t}/{p}")}})).await;
            assert_eq!(r.status, 201, "the same key under another project is a new credential: {}", r.text);
        }
        for (t, p) in scopes {
            let r = get(&c, &server, ADMIN, &cred_path(t, p, store, "shared")).await;
            assert_eq!(r.json()["data"]["metadata"]["owner"], format!("{t}/{p}"));
            let r = get(&c, &server, ADMIN, &creds_path(t, p, store)).await;
            assert_eq!(r.json()["data"], json!([{"key": "shared"}]));
        }
        // Only in a/p1.
        assert_eq!(
            create(
                &c,
                &server,
                ADMIN,
                &creds_path("a", "p1", store),
                json!({"key": "only-a-p1", "value": "x"})
            )
            .await
            .status,
            201
        );
        for (t, p) in [("a", "p2"), ("b", "p1"), ("b", "p2")] {
            let path = cred_path(t, p, store, "only-a-p1");
            get(&c, &server, ADMIN, &path).await.problem(404, &path);
            delete(&c, &server, ADMIN, &path).await.problem(404, &path);
            let keys = get(&c, &server, ADMIN, &creds_path(t, p, store)).await.json()["data"].clone();
            assert!(!keys.to_string().contains("only-a-p1"));
        }
        assert_eq!(get(&c, &server, ADMIN, &cred_path("a", "p1", store, "only-a-p1")).await.status, 200);
        // Deleting in one project leaves the others.
        assert_eq!(delete(&c, &server, ADMIN, &cred_path("a", "p2", store, "shared")).await.status, 204);
        assert_eq!(get(&c, &server, ADMIN, &cred_path("a", "p1", store, "shared")).await.status, 200);
        assert_eq!(get(&c, &server, ADMIN, &cred_path("b", "p1", store, "shared")).await.status, 200);
        // A tenant-a token cannot reach tenant b at all.
        for r in [
            get(&c, &server, A, &creds_path("b", "p1", store)).await,
            get(&c, &server, A, &cred_path("b", "p1", store, "shared")).await,
            create(
                &c,
                &server,
                A,
                &creds_path("b", "p1", store),
                json!({"key": "shared", "value": "overwrite"}),
            )
            .await,
            delete(&c, &server, A, &cred_path("b", "p1", store, "shared")).await,
        ] {
            assert_eq!(r.status, 403, "{}", r.text);
        }
        let r = get(&c, &server, ADMIN, &cred_path("b", "p1", store, "shared")).await;
        assert_eq!(r.json()["data"]["metadata"]["owner"], "b/p1", "not overwritten");
        // Look-alike ids do not collide: "a.p1" vs "a"/"p1".
        let r = get(&c, &server, ADMIN, &creds_path("a.p1", "x", store)).await;
        assert_eq!(r.json()["data"], json!([]));
    }
}

// ------------------------------------------------------------ concurrency

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_creates_all_land() {
    let server = TestServer::start().await;
    let c = client();
    for store in ["sqlite-default", "memory-default"] {
        let path = creds_path(T, P, store);
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let (c, url) = (c.clone(), server.url(&path));
                tokio::spawn(async move {
                    let body = json!({"key": format!("key-{i:02}"), "value": format!("value-{i}")});
                    c.post(url).bearer_auth(ADMIN).json(&body).send().await.unwrap().status().as_u16()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 201);
        }
        let r = get(&c, &server, ADMIN, &format!("{path}?limit=1000")).await;
        let keys: Vec<String> = r.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["key"].as_str().unwrap().to_owned())
            .collect();
        let expected: Vec<String> = (0..64).map(|i| format!("key-{i:02}")).collect();
        assert_eq!(keys, expected, "{store}");
    }
}

// ------------------------------------------------------------ shutdown

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight() {
    let (mock, store) = slow("slow", Duration::from_millis(400));
    let mut server = TestServer::start_with(|o| o.extra.push(store)).await;
    let c = client();
    let path = creds_path(T, P, "slow");
    let in_flight: Vec<_> = (0..10)
        .map(|i| {
            let (c, url) = (c.clone(), server.url(&path));
            tokio::spawn(async move {
                let r = c
                    .post(url)
                    .bearer_auth(ADMIN)
                    .json(&json!({"key": format!("k{i}"), "value": "v"}))
                    .send()
                    .await;
                r.map(|r| r.status().as_u16())
            })
        })
        .collect();
    // Wait until all ten are inside the store call, then ask the server to stop.
    let probe = c.clone();
    let readyz = server.url("/readyz");
    while mock.calls(Op::Set) < 10 {
        tokio::task::yield_now().await;
    }
    server.signal_stop();
    let started = Instant::now();
    for t in in_flight {
        assert_eq!(t.await.unwrap().expect("an in-flight request was cut off"), 201);
    }
    server.join().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    // Stopped: new connections are refused.
    assert!(probe.get(readyz).send().await.is_err());
}

// ------------------------------------------------------------ conditional and binary writes

/// Request headers as name and value.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// POSTs `body` to `path` with the admin token and `headers`.
async fn create_with(server: &TestServer, path: &str, body: Value, headers: &[(&str, &str)]) -> Reply {
    let mut req = client().post(server.url(path)).bearer_auth(ADMIN).json(&body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Reply::from(req.send().await.unwrap()).await
}

/// The response's `ETag`, checked to be a strong entity tag `"<version>"`.
fn strong_etag(r: &Reply) -> String {
    let tag = r.headers.get("etag").unwrap_or_else(|| panic!("no ETag: {}", r.text)).to_str().unwrap();
    assert!(tag.len() > 2 && tag.starts_with('"') && tag.ends_with('"') && !tag.starts_with("W/"), "{tag}");
    assert!(!tag[1..tag.len() - 1].contains('"'), "{tag}");
    tag.to_owned()
}

/// The metadata read of `key`: its data and its ETag (which must equal `version`).
async fn read_meta(server: &TestServer, path: &str) -> (Value, String) {
    let r = get(&client(), server, ADMIN, path).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let tag = strong_etag(&r);
    let data = r.json()["data"].clone();
    assert_eq!(format!("\"{}\"", data["version"].as_str().unwrap()), tag, "version and ETag agree");
    (data, tag)
}

#[tokio::test]
async fn if_none_match_star_creates_only() {
    let server = TestServer::start().await;
    for store in ["memory-default", "sqlite-default"] {
        let base = creds_path(T, P, store);
        let path = cred_path(T, P, store, "api-key");
        let body = json!({"key": "api-key", "value": "first", "metadata": {"rev": "1"}});
        let r = create_with(&server, &base, body, &[("If-None-Match", "*")]).await;
        assert_eq!(r.status, 201, "{store}: {}", r.text);
        let tag = strong_etag(&r);
        assert_eq!(r.headers["location"], path.as_str());
        let v = r.json();
        assert_eq!(
            v["data"].as_object().unwrap().keys().collect::<Vec<_>>(),
            ["createdAt", "key", "storeId"]
        );
        let (before, read_tag) = read_meta(&server, &path).await;
        assert_eq!(read_tag, tag, "the metadata read carries the create's ETag");
        assert_eq!(before["valueKind"], "text");

        let again = json!({"key": "api-key", "value": "second", "metadata": {"rev": "2"}});
        let r = create_with(&server, &base, again, &[("If-None-Match", "*")]).await;
        let detail = r.problem(412, &base);
        assert_eq!(r.json()["code"], "precondition_failed");
        assert_eq!(r.json()["title"], "Precondition Failed");
        assert!(detail.contains("'api-key'") && detail.contains("the key exists"), "{detail}");
        assert!(!detail.contains("second") && r.headers.get("etag").is_none(), "{}", r.text);
        let (after, after_tag) = read_meta(&server, &path).await;
        assert_eq!((after, after_tag), (before, tag), "{store}: the failed create changed nothing");
    }
}

#[tokio::test]
async fn if_match_replaces_only_the_version_it_names() {
    let server = TestServer::start().await;
    for store in ["memory-default", "sqlite-default"] {
        let base = creds_path(T, P, store);
        let path = cred_path(T, P, store, "db");
        let body = |rev: &str| json!({"key": "db", "value": format!("v{rev}"), "metadata": {"rev": rev}});
        let r = create(&client(), &server, ADMIN, &base, body("1")).await;
        assert_eq!(r.status, 201, "a create without headers is as before: {}", r.text);
        let first = strong_etag(&r);

        // The ETag from the create replaces: 200, a new ETag.
        let r = create_with(&server, &base, body("2"), &[("If-Match", &first)]).await;
        assert_eq!(r.status, 200, "{store}: {}", r.text);
        let second = strong_etag(&r);
        assert_ne!(second, first, "every write makes a new version");
        let (data, tag) = read_meta(&server, &path).await;
        assert_eq!((data["metadata"]["rev"].as_str(), tag.as_str()), (Some("2"), second.as_str()));

        // A stale ETag: 412, unchanged. So is a weak tag of the current version.
        for stale in [first.clone(), format!("W/{second}")] {
            let r = create_with(&server, &base, body("3"), &[("If-Match", &stale)]).await;
            let detail = r.problem(412, &base);
            assert_eq!(r.json()["code"], "precondition_failed");
            if stale.starts_with("W/") {
                assert!(detail.contains("weak entity tag"), "{detail}");
            } else {
                assert!(detail.contains("not the expected one") || detail.contains("version"), "{detail}");
            }
            let (after, tag) = read_meta(&server, &path).await;
            assert_eq!((after["metadata"].clone(), tag), (data["metadata"].clone(), second.clone()));
        }

        // If-Match: * replaces whatever the version.
        let r = create_with(&server, &base, body("4"), &[("If-Match", "*")]).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let fourth = strong_etag(&r);
        assert_ne!(fourth, second);
        assert_eq!(read_meta(&server, &path).await.1, fourth);

        // If-Match on a missing key: 412, and it is still missing.
        let missing = cred_path(T, P, store, "nope");
        for tag in [fourth.as_str(), "*", "\"1\""] {
            let r =
                create_with(&server, &base, json!({"key": "nope", "value": "x"}), &[("If-Match", tag)]).await;
            assert!(r.problem(412, &base).contains("does not exist"), "{tag}: {}", r.text);
            get(&client(), &server, ADMIN, &missing).await.problem(404, &missing);
        }
    }
}

#[tokio::test]
async fn malformed_or_unsupported_conditions_are_400() {
    let server = TestServer::start().await;
    let base = creds_path(T, P, "memory-default");
    let path = cred_path(T, P, "memory-default", "k");
    let r = create(&client(), &server, ADMIN, &base, json!({"key": "k", "value": "v"})).await;
    let tag = strong_etag(&r);
    let cases: [(&[(&str, &str)], &str); 8] = [
        (&[("If-Match", "\"1\", \"2\"")], "lists are not supported"),
        (&[("If-Match", "1")], "double quotes"),
        (&[("If-Match", "\"a b\"")], "double quotes"),
        (&[("If-Match", "\"1\""), ("If-Match", "\"2\"")], "more than once"),
        (&[("If-None-Match", "\"1\"")], "only *"),
        (&[("If-None-Match", "W/\"1\"")], "only *"),
        (&[("If-None-Match", "*, \"1\"")], "only *"),
        (&[("If-None-Match", "*"), ("If-Match", &tag)], "not both"),
    ];
    for (headers, expect) in cases {
        let r = create_with(&server, &base, json!({"key": "k", "value": "changed"}), headers).await;
        let detail = r.problem(400, &base);
        assert!(detail.contains(expect), "{headers:?}: {detail}");
        assert_eq!(r.json()["code"], "bad_request");
    }
    // Deletes are never conditional: the header is refused, not ignored.
    for (name, value) in [("If-Match", tag.as_str()), ("If-None-Match", "*")] {
        let r = Reply::from(
            client().delete(server.url(&path)).bearer_auth(ADMIN).header(name, value).send().await.unwrap(),
        )
        .await;
        assert!(r.problem(400, &path).contains("not supported on a delete"), "{}", r.text);
    }
    assert_eq!(read_meta(&server, &path).await.1, tag, "nothing changed");
}

#[tokio::test]
async fn value_base64_stores_bytes_and_the_metadata_read_says_which_kind() {
    use credstore_core::{CredentialKey, Namespace};
    let server = TestServer::start().await;
    let ns = Namespace::new(format!("{T}/{P}")).unwrap();
    for store in ["memory-default", "sqlite-default"] {
        let base = creds_path(T, P, store);
        let cases = [
            (
                "signing-key",
                json!({"valueBase64": "3q2+7w==", "metadata": {"alg": "raw"}}),
                &[0xde, 0xad, 0xbe, 0xef][..],
                "binary",
            ),
            ("all-bytes", json!({"valueBase64": "AP8A/w=="}), &[0, 255, 0, 255][..], "binary"),
            ("utf8-bytes", json!({"valueBase64": "aGk="}), b"hi", "text"),
            ("text", json!({"value": "hi"}), b"hi", "text"),
        ];
        for (key, mut body, bytes, kind) in cases {
            body["key"] = json!(key);
            let r = create(&client(), &server, ADMIN, &base, body).await;
            assert_eq!(r.status, 201, "{store} {key}: {}", r.text);
            let tag = strong_etag(&r);
            let path = cred_path(T, P, store, key);
            let (data, read_tag) = read_meta(&server, &path).await;
            assert_eq!((data["valueKind"].as_str(), read_tag), (Some(kind), tag), "{store} {key}");
            assert!(data.get("value").is_none() && data.get("valueBase64").is_none(), "{data}");
            let handle = server.stores.handle(store, &ns).unwrap().unwrap();
            let stored = handle.get(&CredentialKey::new(key).unwrap()).await.unwrap().unwrap();
            assert_eq!(stored.value.expose_secret(), bytes, "{store} {key}: stored exactly");
        }
        // A binary value replaces a text one under If-Match, and the kind follows.
        let path = cred_path(T, P, store, "text");
        let tag = read_meta(&server, &path).await.1;
        let r =
            create_with(&server, &base, json!({"key": "text", "valueBase64": "/w=="}), &[("If-Match", &tag)])
                .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(read_meta(&server, &path).await.0["valueKind"], "binary");
    }
}

#[tokio::test]
async fn value_field_errors_are_422_naming_the_fields() {
    let server = TestServer::start().await;
    let base = creds_path(T, P, "sqlite-default");
    let max = credstore_core::MAX_VALUE_BYTES;
    let over = "AAAA".repeat(max / 3) + "AAA="; // 65,537 bytes
    let cases = [
        (
            json!({"key": "k", "value": "v", "valueBase64": "dg=="}),
            "invalid value and valueBase64: give exactly one",
        ),
        (json!({"key": "k", "value": "", "valueBase64": ""}), "invalid value and valueBase64"),
        (json!({"key": "k", "valueBase64": "not base64!!"}), "invalid valueBase64: is not standard base64"),
        (json!({"key": "k", "valueBase64": "dg"}), "invalid valueBase64: is not padded base64"),
        (json!({"key": "k", "valueBase64": "dh=="}), "invalid valueBase64: is not canonical base64"),
        (json!({"key": "k", "valueBase64": "Zm9v\nYmFy"}), "invalid valueBase64"),
        (json!({"key": "k", "valueBase64": "Zm9v-_8="}), "invalid valueBase64"),
        (
            json!({"key": "k", "valueBase64": over}),
            "invalid valueBase64: decodes to 65537 bytes; the limit is 65536",
        ),
    ];
    for (body, expect) in cases {
        let r = create(&client(), &server, ADMIN, &base, body).await;
        let detail = r.problem(422, &base);
        assert!(detail.starts_with(expect), "{detail}");
        assert_eq!(r.json()["code"], "unprocessable_entity");
        assert!(!detail.contains("AAAA") && !detail.contains("Zm9v"), "never echoed: {detail}");
    }
    // Neither field is a missing field (400), as without valueBase64; a
    // non-string valueBase64 is mistyped (400).
    for (body, expect) in [
        (json!({"key": "k"}), "missing field value (or valueBase64"),
        (json!({"key": "k", "valueBase64": 7}), "valueBase64 must be a string"),
    ] {
        let r = create(&client(), &server, ADMIN, &base, body).await;
        assert!(r.problem(400, &base).contains(expect), "{}", r.text);
    }
    assert_eq!(get(&client(), &server, ADMIN, &base).await.json()["data"], json!([]), "nothing stored");
    // Exactly 65,536 decoded bytes are accepted.
    let r = create(
        &client(),
        &server,
        ADMIN,
        &base,
        json!({"key": "max", "valueBase64": "AAAA".repeat(max / 3) + "AA=="}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let path = cred_path(T, P, "sqlite-default", "max");
    assert_eq!(read_meta(&server, &path).await.0["valueKind"], "text", "65,536 zero bytes are UTF-8");

    // Over the body limit is 413 first, as for `value`.
    let small = TestServer::start_with(|o| o.settings.body_limit = 4096).await;
    let base = creds_path(T, P, "memory-default");
    let r = create(&client(), &small, ADMIN, &base, json!({"key": "k", "valueBase64": "AAAA".repeat(1500)}))
        .await;
    r.problem(413, &base);
}

#[tokio::test]
async fn a_store_without_conditional_or_binary_writes_answers_422_and_changes_nothing() {
    use credstore_conformance::mock::MockStore;
    use credstore_core::{CredentialStore, StoreId};
    let mock = MockStore::new(StoreId::new("plain").unwrap()).with_capabilities(
        MockStore::DEFAULT_CAPABILITIES
            .with_create_only(false)
            .with_replace_if_version(false)
            .with_binary(false),
    );
    let store: std::sync::Arc<dyn CredentialStore> = std::sync::Arc::new(mock.clone());
    let server = TestServer::start_with(|o| o.extra.push(store)).await;
    let base = creds_path(T, P, "plain");
    let r = create(&client(), &server, ADMIN, &base, json!({"key": "k", "value": "v1"})).await;
    assert_eq!(r.status, 201, "an unconditional create works: {}", r.text);
    let tag = strong_etag(&r);
    let sets = mock.calls(Op::Set);
    let cases: [(Headers, Value, &str); 4] = [
        (
            &[("If-None-Match", "*")],
            json!({"key": "new", "value": "v"}),
            "does not support create-only writes, so the If-None-Match condition cannot be honoured",
        ),
        (
            &[("If-Match", &tag)],
            json!({"key": "k", "value": "v2"}),
            "does not support replace-if-version writes, so the If-Match condition",
        ),
        (
            &[("If-Match", "*")],
            json!({"key": "k", "value": "v2"}),
            "does not support replace-if-version writes",
        ),
        (
            &[],
            json!({"key": "k", "valueBase64": "/w=="}),
            "credential store 'plain' does not support binary values",
        ),
    ];
    for (headers, body, expect) in cases {
        let r = create_with(&server, &base, body, headers).await;
        let detail = r.problem(422, &base);
        assert!(detail.contains(expect), "{headers:?}: {detail}");
        assert_eq!(r.json()["code"], "unprocessable_entity");
    }
    assert_eq!(mock.calls(Op::Set), sets, "the refused writes never reached the store");
    let (_, now) = read_meta(&server, &cred_path(T, P, "plain", "k")).await;
    assert_eq!(now, tag, "unchanged");
    get(&client(), &server, ADMIN, &cred_path(T, P, "plain", "new"))
        .await
        .problem(404, &cred_path(T, P, "plain", "new"));
}

/// Reads the audit log of a test server.
#[tokio::test]
async fn a_request_needs_one_grant_that_matches_its_tenant_project_store_and_action() {
    use credstore_server::auth::{Grant, Scope, TokenEntry, TokenHash};
    const DEPLOY: &str = "deploy-token-with-two-grants";
    let ids = |v: &[&str]| Scope::Only(v.iter().map(|s| s.to_string()).collect());
    let server = TestServer::start_with(|o| {
        o.tokens.push(TokenEntry {
            name: "deploy".into(),
            hash: TokenHash::of(DEPLOY),
            grants: vec![
                Grant {
                    tenants: ids(&["a"]),
                    projects: ids(&["web"]),
                    stores: Scope::All,
                    actions: [Action::View, Action::Edit].into(),
                },
                Grant {
                    tenants: ids(&["b"]),
                    projects: ids(&["api"]),
                    stores: ids(&["sqlite-default"]),
                    actions: [Action::View, Action::Edit].into(),
                },
            ],
        });
    })
    .await;
    let c = client();
    let body = || json!({"key": "k", "value": "v"});
    assert_eq!(
        create(&c, &server, DEPLOY, &creds_path("a", "web", "memory-default"), body()).await.status,
        201
    );
    assert_eq!(
        create(&c, &server, DEPLOY, &creds_path("b", "api", "sqlite-default"), body()).await.status,
        201
    );

    // The cross product of the two grants is not granted: a/api, b/web.
    for (tenant, project) in [("a", "api"), ("b", "web")] {
        let r = create(&c, &server, DEPLOY, &creds_path(tenant, project, "memory-default"), body()).await;
        let detail = r.problem(403, &creds_path(tenant, project, "memory-default"));
        assert!(detail.contains(&format!("project '{project}' of tenant '{tenant}'")), "{detail}");
    }
    // In b/api, only the granted store; one not served is refused the same
    // way, so a token learns nothing of stores it may not use.
    for store in ["memory-default", "nosuch"] {
        let path = creds_path("b", "api", store);
        let detail = create(&c, &server, DEPLOY, &path, body()).await.problem(403, &path);
        assert!(detail.contains(&format!("store '{store}'")), "{detail}");
        assert_eq!(get(&c, &server, DEPLOY, &path).await.status, 403);
    }
    // The list shows the stores the grants name, and all of them in a/web.
    let listed = |r: Reply| -> Vec<String> {
        r.json()["data"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(listed(get(&c, &server, DEPLOY, &stores_path("b", "api")).await), ["sqlite-default"]);
    assert_eq!(
        listed(get(&c, &server, DEPLOY, &stores_path("a", "web")).await),
        listed(get(&c, &server, ADMIN, &stores_path("a", "web")).await)
    );
    // Refusals are audited with the token's name.
    let denied: Vec<Value> = audit_lines(&server).into_iter().filter(|l| l["outcome"] == "denied").collect();
    assert_eq!(denied.len(), 6, "{denied:?}");
    assert!(denied.iter().all(|l| l["token"] == "deploy" && l["status"] == 403), "{denied:?}");
}

fn audit_lines(server: &TestServer) -> Vec<Value> {
    std::fs::read_to_string(server.dir.path().join("data").join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test]
async fn the_value_read_needs_the_reveal_action_and_is_audited() {
    use credstore_server::auth::{TokenEntry, TokenHash};
    const READER: &str = "reader-token-0123456789";
    const EDITOR: &str = "editor-token-0123456789";
    const ADMIN_REVEAL: &str = "admin-reveal-token-0123456789";
    const SECRET: &str = "s3cret-text-\"quoted\"-\u{e9}";
    let server = TestServer::start_with(|o| {
        o.tokens.push(token("reader", READER, &[T], &[P], &[Action::View, Action::Reveal]));
        o.tokens.push(token(
            "editor",
            EDITOR,
            &["*"],
            &["*"],
            &[Action::View, Action::Edit, Action::Metrics],
        ));
        o.tokens.push(TokenEntry::admin_with_reveal(TokenHash::of(ADMIN_REVEAL), true));
    })
    .await;
    let c = client();
    let base = creds_path(T, P, "memory-default");
    let r =
        create(&c, &server, ADMIN, &base, json!({"key": "text", "value": SECRET, "metadata": {"o": "p"}}))
            .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = create(&c, &server, ADMIN, &base, json!({"key": "bytes", "valueBase64": "3q2+7w=="})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let value_path = |key: &str| format!("{}/value", cred_path(T, P, "memory-default", key));
    let text = value_path("text");

    // No token has `reveal` by default, the admin token included.
    for token in [ADMIN, EDITOR] {
        let r = get(&c, &server, token, &text).await;
        let detail = r.problem(403, &text);
        assert!(detail.contains("'reveal'"), "{detail}");
        assert_eq!(r.json()["code"], "forbidden");
        assert!(!r.text.contains("s3cret"));
    }
    let r = Reply::from(c.get(server.url(&text)).send().await.unwrap()).await;
    r.problem(401, &text);
    assert!(r.headers.contains_key("www-authenticate"));
    // A token with `reveal` in another tenant may not.
    let other = format!("{}/value", cred_path("elsewhere", P, "memory-default", "text"));
    get(&c, &server, READER, &other).await.problem(403, &other);

    // With `reveal`: the text value as `value`, its version as ETag, never cached.
    let (meta, meta_tag) = read_meta(&server, &cred_path(T, P, "memory-default", "text")).await;
    for token in [READER, ADMIN_REVEAL] {
        let r = get(&c, &server, token, &text).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.content_type().starts_with("application/json"), "{}", r.content_type());
        assert_eq!(r.headers["cache-control"], "no-store");
        assert_eq!(strong_etag(&r), meta_tag);
        let data = &r.json()["data"];
        let mut members: Vec<&str> = data.as_object().unwrap().keys().map(String::as_str).collect();
        members.sort_unstable();
        assert_eq!(members, ["createdAt", "key", "storeId", "updatedAt", "value", "valueKind", "version"]);
        assert_eq!(data["value"], SECRET);
        assert_eq!(data["valueKind"], "text");
        assert_eq!((&data["key"], &data["storeId"]), (&json!("text"), &json!("memory-default")));
        assert_eq!(data["version"], meta["version"]);
        assert_eq!(data["createdAt"], meta["createdAt"]);
    }
    // A binary value as `valueBase64`.
    let bytes = value_path("bytes");
    let r = get(&c, &server, READER, &bytes).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.headers["cache-control"], "no-store");
    let data = &r.json()["data"];
    assert_eq!(data["valueBase64"], "3q2+7w==");
    assert_eq!(data["valueKind"], "binary");
    assert!(data.get("value").is_none(), "{data}");
    assert_eq!(format!("\"{}\"", data["version"].as_str().unwrap()), strong_etag(&r));

    // Errors, each in the problem+json shape.
    let missing = value_path("missing");
    assert!(get(&c, &server, READER, &missing).await.problem(404, &missing).contains("'missing'"));
    let unknown = format!("{}/value", cred_path(T, P, "resource_789", "text"));
    assert!(get(&c, &server, READER, &unknown).await.problem(404, &unknown).contains("resource_789"));
    let bad = value_path("bad%20key");
    assert!(get(&c, &server, READER, &bad).await.problem(422, &bad).contains("invalid key"));
    let r = Reply::from(c.post(server.url(&text)).bearer_auth(READER).send().await.unwrap()).await;
    r.problem(405, &text);

    // Every read with an outcome and every refusal is in the audit log, never the value.
    let reveals: Vec<(Value, Value, Value, Value)> = audit_lines(&server)
        .into_iter()
        .filter(|l| l["action"] == "reveal")
        .map(|l| (l["token"].clone(), l["key"].clone(), l["outcome"].clone(), l["status"].clone()))
        .collect();
    let line = |token: Value, key: &str, outcome: &str, status: u16| {
        (token, json!(key), json!(outcome), json!(status))
    };
    assert_eq!(
        reveals,
        [
            line(json!("admin"), "text", "denied", 403),
            line(json!("editor"), "text", "denied", 403),
            line(Value::Null, "text", "denied", 401),
            line(json!("reader"), "text", "denied", 403),
            line(json!("reader"), "text", "succeeded", 200),
            line(json!("admin"), "text", "succeeded", 200),
            line(json!("reader"), "bytes", "succeeded", 200),
            line(json!("reader"), "missing", "failed", 404),
        ]
    );
    let log = std::fs::read_to_string(server.dir.path().join("data").join("audit.log")).unwrap();
    for secret in ["s3cret", "3q2+7w==", READER, ADMIN_REVEAL] {
        assert!(!log.contains(secret), "the audit log holds {secret}");
    }
}

#[tokio::test]
async fn a_value_read_whose_record_cannot_be_written_is_503_and_reveals_nothing() {
    use credstore_core::{CredentialKey, CredentialStoreExt, Metadata, Namespace, SecretValue};
    const READER: &str = "reader-token-0123456789";
    let store = memory("m");
    let ns = Namespace::new(format!("{T}/{P}")).unwrap();
    let key = CredentialKey::new("k").unwrap();
    let handle = store.with_namespace(&ns).unwrap();
    handle.set(&key, &SecretValue::from("s3cret"), &Metadata::new()).await.unwrap();
    let server = TestServer::start_with(|o| {
        o.default_stores = false;
        // A directory cannot be opened as the log, even by root.
        o.settings.audit_log =
            credstore_server::audit::AuditTarget::File(o.settings.data_dir.parent().unwrap().to_path_buf());
        o.extra.push(store);
        o.tokens.push(token("reader", READER, &["*"], &["*"], &[Action::Reveal]));
    })
    .await;
    let path = format!("{}/value", cred_path(T, P, "m", "k"));
    let r = get(&client(), &server, READER, &path).await;
    assert!(r.problem(503, &path).contains("audit log"), "{}", r.text);
    assert!(!r.text.contains("s3cret"));
}
