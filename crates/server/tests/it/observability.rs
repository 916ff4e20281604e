//! Store status, the audit trail and `/metrics`, over real HTTP against
//! servers bound to 127.0.0.1:0. The prober's timing is tested with
//! paused time in `src/runtime/status.rs`; these tests check what a client sees.

use crate::util::harness;
use crate::util::stores as test_stores;

use std::sync::Arc;
use std::time::{Duration, Instant};

use credstore_conformance::mock::{Fault, Op};
use credstore_core::{Availability, CredentialKey, CredentialStoreExt, Metadata, Namespace, SecretValue};
use credstore_server::audit::AuditTarget;
use credstore_server::auth::Action;
use harness::*;
use serde_json::{json, Value};
use test_stores::{hanging_probe, mock};

const T: &str = "tenant_123";
const P: &str = "project_456";

fn entry<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["data"].as_array().unwrap().iter().find(|e| e["id"] == id).unwrap_or_else(|| panic!("{id}: {list}"))
}

fn checked_at(e: &Value) -> std::time::SystemTime {
    humantime::parse_rfc3339(e["checkedAt"].as_str().unwrap()).unwrap()
}

// ------------------------------------------------------------ store status

#[tokio::test]
async fn list_stores_never_waits_on_a_store_that_never_answers() {
    let server = TestServer::start_with(|o| {
        o.settings.probe_timeout = Duration::from_millis(1500);
        // The prober of the hanging store is almost always inside a probe.
        o.settings.probe_interval = Duration::from_millis(20);
        o.settings.probe_staleness = Duration::from_millis(20);
        o.extra.push(hanging_probe("hangs"));
    })
    .await;
    let c = client();
    let mut slowest = Duration::ZERO;
    for _ in 0..30 {
        let started = Instant::now();
        let r = get(&c, &server, ADMIN, &stores_path(T, P)).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(r.status, 200, "{}", r.text);
        let v = r.json();
        let e = entry(&v, "hangs");
        assert_eq!(e["available"], false);
        assert_eq!(e["reason"], "timeout");
        assert_eq!(entry(&v, "memory-default")["available"], true);
        let r = Reply::from(c.get(server.url("/readyz")).send().await.unwrap()).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["storesAvailable"], 2);
        assert_eq!(r.json()["storesTotal"], 3);
    }
    // Waiting on a probe would take up to its 1500 ms.
    assert!(slowest < Duration::from_millis(750), "a request waited on the probe: {slowest:?}");
}

#[tokio::test]
async fn entries_keep_the_four_members_and_add_checked_at() {
    let before = std::time::SystemTime::now();
    let server = TestServer::start().await;
    let v = get(&client(), &server, ADMIN, &stores_path(T, P)).await.json();
    for e in v["data"].as_array().unwrap() {
        let keys: Vec<_> = e.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["available", "checkedAt", "id", "reason", "type"]);
        let at = checked_at(e);
        assert!(at + Duration::from_millis(1) >= before, "{e}");
        assert!(e["checkedAt"].as_str().unwrap().ends_with('Z'));
    }
}

#[tokio::test]
async fn results_refresh_after_the_interval() {
    let (mock, store) = mock("m");
    let server = TestServer::start_with(|o| {
        o.default_stores = false;
        o.settings.probe_interval = Duration::from_millis(100);
        o.extra.push(store);
    })
    .await;
    let c = client();
    let first = get(&c, &server, ADMIN, &stores_path(T, P)).await.json();
    assert_eq!(entry(&first, "m")["available"], true);
    mock.set_availability(Availability::down("sealed"));
    // The answer changes once the prober has run, with no request asking.
    let deadline = Instant::now() + Duration::from_secs(5);
    let now = loop {
        let v = get(&c, &server, ADMIN, &stores_path(T, P)).await.json();
        if entry(&v, "m")["available"] == false {
            break v;
        }
        assert!(Instant::now() < deadline, "never refreshed: {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(entry(&now, "m")["reason"], "unreachable");
    assert!(checked_at(entry(&now, "m")) > checked_at(entry(&first, "m")));
    let r = Reply::from(c.get(server.url("/readyz")).send().await.unwrap()).await;
    r.problem(503, "/readyz");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_results_refresh_on_demand_with_one_probe_for_many_requests() {
    let (mock, store) = mock("m");
    let server = TestServer::start_with(|o| {
        o.default_stores = false;
        o.settings.probe_interval = Duration::from_secs(3600);
        o.settings.probe_staleness = Duration::from_millis(1000);
        o.extra.push(store);
    })
    .await;
    assert_eq!(mock.calls(Op::CheckAvailability), 1, "probed once at start");
    mock.set_availability(Availability::down("sealed"));
    // Let the probe from start go stale; no prober is due for an hour.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let c = client();
    let answers = futures::future::join_all(
        (0..40).map(|_| async { get(&c, &server, ADMIN, &stores_path(T, P)).await.json() }),
    )
    .await;
    // Each answered at once: the one that found the result stale (and
    // those before the probe finished) with the result taken at start.
    assert!(answers.iter().all(|v| v["data"].as_array().unwrap().len() == 1));
    assert!(answers.iter().any(|v| v["data"][0]["available"] == true), "a stale answer did not wait");
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.calls(Op::CheckAvailability) < 2 {
        assert!(Instant::now() < deadline, "no probe on demand");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let v = get(&c, &server, ADMIN, &stores_path(T, P)).await.json();
    assert_eq!(entry(&v, "m")["reason"], "unreachable", "the next answer has the fresh result");
    assert_eq!(mock.calls(Op::CheckAvailability), 2, "one probe for forty stale requests");
}

#[tokio::test]
async fn shutdown_stops_the_probers() {
    let (mock, store) = mock("m");
    let mut server = TestServer::start_with(|o| {
        o.default_stores = false;
        o.settings.probe_interval = Duration::from_millis(10);
        o.extra.push(store);
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while mock.calls(Op::CheckAvailability) < 3 {
        assert!(Instant::now() < deadline, "the prober does not run");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.stop().await;
    let calls = mock.calls(Op::CheckAvailability);
    // Twenty intervals without a probe.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(mock.calls(Op::CheckAvailability), calls);
}

// ------------------------------------------------------------ audit trail

const SECRET_VALUE: &str = "v4lue-that-must-never-be-logged";
const VIEWER: &str = "viewer-token-0123456789";

fn audit_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test]
async fn mixed_requests_give_exactly_the_expected_audit_lines() {
    let (mock, flaky) = mock("flaky");
    let server = TestServer::start_with(|o| {
        o.extra.push(flaky);
        o.tokens.push(token("viewer", VIEWER, &[T], &["*"], &[Action::View]));
    })
    .await;
    let log = server.dir.path().join("data").join("audit.log");
    let c = client();
    let send = |req: reqwest::RequestBuilder, id: &str| {
        let req = req.header("X-Request-ID", id);
        async move { Reply::from(req.send().await.unwrap()).await }
    };
    let creds = creds_path(T, P, "memory-default");
    let body = json!({"key": "db-password", "value": SECRET_VALUE, "metadata": {"owner": "payments"}});
    let statuses = [
        send(c.post(server.url(&creds)).bearer_auth(ADMIN).json(&body), "r1").await.status,
        send(c.post(server.url(&creds)).bearer_auth(ADMIN).json(&body), "r2").await.status,
        // Reads are not audited.
        send(c.get(server.url(&creds)).bearer_auth(ADMIN), "r3").await.status,
        send(c.get(server.url(&format!("{creds}/db-password"))).bearer_auth(VIEWER), "r4").await.status,
        // Refused: no token, a wrong token, a viewer editing, another tenant.
        send(c.get(server.url(&stores_path(T, P))), "r5").await.status,
        send(c.post(server.url(&creds)).bearer_auth("not-a-known-token-42").json(&body), "r6").await.status,
        send(c.post(server.url(&creds)).bearer_auth(VIEWER).json(&body), "r7").await.status,
        send(c.get(server.url(&stores_path("other", P))).bearer_auth(VIEWER), "r8").await.status,
        // Refused before any store call: not a mutation carried out.
        send(c.post(server.url(&creds)).bearer_auth(ADMIN).json(&json!({"key": "k"})), "r9").await.status,
        send(c.delete(server.url(&format!("{creds}/db-password"))).bearer_auth(ADMIN), "r10").await.status,
        send(c.delete(server.url(&format!("{creds}/db-password"))).bearer_auth(ADMIN), "r11").await.status,
        {
            mock.fail_next_op(Op::Set, 1, Fault::Unavailable);
            let flaky = creds_path(T, P, "flaky");
            send(c.post(server.url(&flaky)).bearer_auth(ADMIN).json(&body), "r12").await.status
        },
    ];
    assert_eq!(statuses, [201, 200, 200, 200, 401, 401, 403, 403, 400, 204, 404, 503]);
    let lines = audit_lines(&log);
    let shown: Vec<String> = lines
        .iter()
        .map(|l| {
            format!(
                "{} {} {} {}/{} {} {} {} {}",
                l["requestId"].as_str().unwrap(),
                l["action"].as_str().unwrap(),
                l["outcome"].as_str().unwrap(),
                l["tenant"].as_str().unwrap_or("-"),
                l["project"].as_str().unwrap_or("-"),
                l["store"].as_str().unwrap_or("-"),
                l["key"].as_str().unwrap_or("-"),
                l["token"].as_str().unwrap_or("-"),
                l["status"].as_u64().map_or("-".to_owned(), |s| s.to_string()),
            )
        })
        .collect();
    let m = "tenant_123/project_456 memory-default";
    assert_eq!(
        shown,
        [
            format!("r1 create started {m} db-password admin -"),
            format!("r1 create succeeded {m} db-password admin 201"),
            format!("r2 create started {m} db-password admin -"),
            format!("r2 create succeeded {m} db-password admin 200"),
            "r5 list-stores denied tenant_123/project_456 - - - 401".to_owned(),
            format!("r6 create denied {m} - - 401"),
            format!("r7 create denied {m} - viewer 403"),
            "r8 list-stores denied other/project_456 - - viewer 403".to_owned(),
            format!("r10 delete started {m} db-password admin -"),
            format!("r10 delete succeeded {m} db-password admin 204"),
            format!("r11 delete started {m} db-password admin -"),
            format!("r11 delete failed {m} db-password admin 404"),
            "r12 create started tenant_123/project_456 flaky db-password admin -".to_owned(),
            "r12 create failed tenant_123/project_456 flaky db-password admin 503".to_owned(),
        ]
    );
    for l in &lines {
        let keys: std::collections::BTreeSet<&str> =
            l.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "action",
                "key",
                "outcome",
                "project",
                "requestId",
                "status",
                "store",
                "tenant",
                "time",
                "token"
            ]
            .into()
        );
        humantime::parse_rfc3339(l["time"].as_str().unwrap()).unwrap();
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let hash = |t: &str| credstore_server::auth::TokenHash::of(t).to_hex();
    for secret in [SECRET_VALUE, ADMIN, VIEWER, "not-a-known-token-42", &hash(ADMIN), &hash(VIEWER)] {
        assert!(!text.contains(secret), "the audit log holds {secret}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[tokio::test]
async fn a_mutation_cut_off_by_the_request_timeout_is_recorded_abandoned() {
    let (_mock, store) = test_stores::slow("slow", Duration::from_millis(1500));
    let server = TestServer::start_with(|o| {
        o.default_stores = false;
        o.settings.request_timeout = Duration::from_millis(300);
        o.extra.push(store);
    })
    .await;
    let log = server.dir.path().join("data").join("audit.log");
    let creds = creds_path(T, P, "slow");
    let r = Reply::from(
        client()
            .post(server.url(&creds))
            .bearer_auth(ADMIN)
            .header("X-Request-ID", "cut")
            .json(&json!({"key": "k", "value": SECRET_VALUE}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.problem(503, &creds);
    let lines = audit_lines(&log);
    let shown: Vec<_> =
        lines.iter().map(|l| (l["requestId"].clone(), l["outcome"].clone(), l["status"].clone())).collect();
    assert_eq!(
        shown,
        [(json!("cut"), json!("started"), Value::Null), (json!("cut"), json!("abandoned"), Value::Null)]
    );
}

#[tokio::test]
async fn an_unwritable_audit_log_refuses_mutations_with_503_and_changes_nothing() {
    let (_mock, store) = mock("m");
    let kept = store.with_namespace(&Namespace::new(format!("{T}/{P}")).unwrap()).unwrap();
    let key = CredentialKey::new("kept").unwrap();
    kept.set(&key, &SecretValue::from("v"), &Metadata::new()).await.unwrap();
    let server = TestServer::start_with(|o| {
        o.default_stores = false;
        // A directory cannot be opened as the log, even by root.
        o.settings.audit_log = AuditTarget::File(o.settings.data_dir.parent().unwrap().to_path_buf());
        o.extra.push(store);
    })
    .await;
    let c = client();
    let creds = creds_path(T, P, "m");
    let r = create(&c, &server, ADMIN, &creds, json!({"key": "new", "value": "v"})).await;
    let detail = r.problem(503, &creds);
    assert!(detail.contains("audit"), "{detail}");
    let r = delete(&c, &server, ADMIN, &cred_path(T, P, "m", "kept")).await;
    r.problem(503, &cred_path(T, P, "m", "kept"));
    // A refusal that cannot be recorded is refused all the same, as 503.
    let r = Reply::from(c.get(server.url(&stores_path(T, P))).send().await.unwrap()).await;
    r.problem(503, &stores_path(T, P));
    // Nothing changed; reads, which are not audited, still work.
    assert!(kept.get(&key).await.unwrap().is_some());
    assert!(kept.get(&CredentialKey::new("new").unwrap()).await.unwrap().is_none());
    assert_eq!(get(&c, &server, ADMIN, &cred_path(T, P, "m", "kept")).await.status, 200);
    assert_eq!(get(&c, &server, ADMIN, &cred_path(T, P, "m", "new")).await.status, 404);
}

// ------------------------------------------------------------ metrics

const SCRAPER: &str = "scraper-token-0123456789";

fn has_line(text: &str, line: &str) {
    assert!(text.lines().any(|l| l == line), "no line {line} in\n{text}");
}

#[tokio::test]
async fn metrics_expose_requests_store_operations_and_probes() {
    let server = TestServer::start_with(|o| {
        o.tokens.push(token("viewer", VIEWER, &["*"], &["*"], &[Action::View]));
        o.tokens.push(token("scraper", SCRAPER, &[], &[], &[Action::Metrics]));
        o.cached.push((memory("cached"), credstore_layers::CacheLayer::new()));
    })
    .await;
    let c = client();
    let r = create(&c, &server, ADMIN, &creds_path(T, P, "cached"), json!({"key": "c", "value": "v"})).await;
    assert_eq!(r.status, 201);
    let cached = cred_path(T, P, "cached", "c");
    assert_eq!(get(&c, &server, ADMIN, &cached).await.status, 200);
    assert_eq!(get(&c, &server, ADMIN, &cached).await.status, 200);
    let creds = creds_path(T, P, "memory-default");
    for i in 0..3 {
        let r =
            create(&c, &server, ADMIN, &creds, json!({"key": format!("k{i}"), "value": SECRET_VALUE})).await;
        assert_eq!(r.status, 201);
    }
    assert_eq!(get(&c, &server, ADMIN, &format!("{creds}/k0")).await.status, 200);
    assert_eq!(get(&c, &server, ADMIN, &format!("{creds}/missing")).await.status, 404);
    assert_eq!(get(&c, &server, ADMIN, &stores_path(T, P)).await.status, 200);
    assert_eq!(get(&c, &server, ADMIN, "/no/such/route").await.status, 404);
    // Behind a token with the `metrics` action (the admin token has it).
    let m = server.url("/metrics");
    Reply::from(c.get(&m).send().await.unwrap()).await.problem(401, "/metrics");
    Reply::from(c.get(&m).bearer_auth(VIEWER).send().await.unwrap()).await.problem(403, "/metrics");
    let r = Reply::from(c.get(&m).bearer_auth(SCRAPER).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.content_type().starts_with("application/openmetrics-text"), "{}", r.content_type());
    let text = &r.text;
    let route = "/manage/tenants/{tenantId}/projects/{projectId}/credential-stores";
    has_line(
        text,
        &format!(
            r#"credstore_http_requests_total{{method="POST",route="{route}/{{id}}/credentials",status="201"}} 4"#
        ),
    );
    has_line(
        text,
        &format!(
            r#"credstore_http_requests_total{{method="GET",route="{route}/{{id}}/credentials/{{key}}",status="200"}} 3"#
        ),
    );
    has_line(
        text,
        &format!(
            r#"credstore_http_requests_total{{method="GET",route="{route}/{{id}}/credentials/{{key}}",status="404"}} 1"#
        ),
    );
    has_line(
        text,
        &format!(r#"credstore_http_requests_total{{method="GET",route="{route}",status="200"}} 1"#),
    );
    has_line(text, r#"credstore_http_requests_total{method="GET",route="unmatched",status="404"} 1"#);
    has_line(text, r#"credstore_http_requests_total{method="GET",route="/metrics",status="401"} 1"#);
    has_line(
        text,
        &format!(
            r#"credstore_http_request_duration_seconds_count{{method="POST",route="{route}/{{id}}/credentials"}} 4"#
        ),
    );
    has_line(
        text,
        r#"credstore_store_operations_total{store="memory-default",operation="set",outcome="ok"} 3"#,
    );
    has_line(
        text,
        r#"credstore_store_operations_total{store="memory-default",operation="get",outcome="ok"} 2"#,
    );
    has_line(
        text,
        r#"credstore_store_operation_duration_seconds_count{store="memory-default",operation="set"} 3"#,
    );
    has_line(text, r#"credstore_store_available{store="memory-default"} 1"#);
    has_line(text, r#"credstore_store_available{store="sqlite-default"} 1"#);
    assert!(
        text.lines()
            .any(|l| l
                .starts_with(r#"credstore_store_probes_total{store="memory-default",outcome="available"} "#)),
        "{text}"
    );
    assert!(text.contains("credstore_store_probe_duration_seconds_bucket"));
    // The cache's figures; its hits never reach the store.
    let stats = server.stores.cache("cached").unwrap().stats();
    assert!(stats.hits >= 1, "{stats:?}");
    has_line(text, &format!(r#"credstore_cache_hits_total{{store="cached"}} {}"#, stats.hits));
    has_line(text, &format!(r#"credstore_cache_misses_total{{store="cached"}} {}"#, stats.misses));
    has_line(text, &format!(r#"credstore_cache_entries{{store="cached"}} {}"#, stats.entries));
    has_line(
        text,
        &format!(
            r#"credstore_store_operations_total{{store="cached",operation="get",outcome="ok"}} {}"#,
            stats.loads
        ),
    );
    assert!(!text.contains(r#"credstore_cache_hits_total{store="memory-default"}"#), "no cache, no figures");
    // Never a raw path, an id from a path, a key or a value.
    for leak in [T, P, "k0", "missing", SECRET_VALUE, "/no/such/route"] {
        assert!(!text.contains(leak), "the exposition holds {leak}");
    }
}

/// The value of the series `series` (name and labels) in the exposition.
fn series_value(text: &str, series: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_each_caches_change_feed_invalidations_losses_and_whether_it_is_live() {
    use credstore_conformance::mock::MockStore;
    let fed = MockStore::new("fed".parse().unwrap())
        .with_capabilities(MockStore::DEFAULT_CAPABILITIES.with_change_feed(true));
    let (_, unfed) = mock("unfed");
    let served: Arc<dyn credstore_core::CredentialStore> = Arc::new(fed.clone());
    let server = TestServer::start_with(|o| {
        o.cached.push((served, credstore_layers::CacheLayer::new()));
        o.cached.push((unfed, credstore_layers::CacheLayer::new()));
    })
    .await;
    let c = client();
    let scrape = || async {
        let r = Reply::from(c.get(server.url("/metrics")).bearer_auth(ADMIN).send().await.unwrap()).await;
        assert_eq!(r.status, 200, "{}", r.text);
        r.text
    };
    let figures = |text: &str, store: &str| {
        [
            "credstore_cache_feed_invalidations_total",
            "credstore_cache_feed_lost_total",
            "credstore_cache_feed_live",
        ]
        .map(|name| series_value(text, &format!("{name}{{store=\"{store}\"}}")).unwrap_or_else(|| "-".into()))
    };
    // Polls the exposition until `store`'s three figures are `want`.
    let until = |store: &'static str, want: [&'static str; 3]| {
        let scrape = &scrape;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let text = scrape().await;
                if figures(&text, store) == want {
                    return text;
                }
                assert!(Instant::now() < deadline, "{store}: {:?}, not {want:?}", figures(&text, store));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // Before the first read no cache follows a feed; a store without a
    // cache has no such series.
    let text = until("fed", ["0", "0", "0"]).await;
    assert_eq!(figures(&text, "unfed"), ["0", "0", "0"]);
    assert!(!text.contains(r#"credstore_cache_feed_live{store="memory-default"}"#), "no cache, no figures");

    let path = cred_path(T, P, "fed", "k");
    assert_eq!(
        create(&c, &server, ADMIN, &creds_path(T, P, "fed"), json!({"key": "k", "value": "v1"})).await.status,
        201
    );
    assert_eq!(get(&c, &server, ADMIN, &path).await.status, 200);
    assert_eq!(get(&c, &server, ADMIN, &cred_path(T, P, "unfed", "k")).await.status, 404);
    // The first read subscribed the cache of the store with a feed.
    until("fed", ["0", "0", "1"]).await;
    let version = |r: Reply| r.json()["data"]["version"].as_str().unwrap().to_owned();
    let v1 = version(get(&c, &server, ADMIN, &path).await);

    // Another writer (the store itself, not through the server's cache):
    // the feed reports it and the cache drops the entry.
    let other =
        credstore_core::CredentialStore::with_namespace(&fed, &Namespace::new(format!("{T}/{P}")).unwrap())
            .unwrap();
    other.set(&CredentialKey::new("k").unwrap(), &SecretValue::from("v2"), &Metadata::new()).await.unwrap();
    until("fed", ["1", "0", "1"]).await;
    assert_ne!(version(get(&c, &server, ADMIN, &path).await), v1, "read fresh, TTL or not");

    // The feed lost: counted, not live; back: live again.
    fed.change_hub().lost("scripted loss");
    until("fed", ["1", "1", "0"]).await;
    fed.change_hub().restored();
    let text = until("fed", ["1", "1", "1"]).await;
    let stats = server.stores.cache("fed").unwrap().stats();
    assert_eq!((stats.feed_invalidations, stats.feed_lost, stats.feed_live), (1, 1, true), "{stats:?}");
    // A store without a feed is never live, and never lost.
    assert_eq!(figures(&text, "unfed"), ["0", "0", "0"]);
    has_line(&text, "# TYPE credstore_cache_feed_live gauge");
    has_line(&text, "# TYPE credstore_cache_feed_lost counter");
}

#[tokio::test]
async fn metrics_can_be_served_on_a_separate_listener_without_a_token() {
    let (mock, store) = mock("m");
    let server = TestServer::start_with(|o| {
        o.default_stores = false;
        o.settings.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        o.extra.push(store);
    })
    .await;
    mock.set_availability(Availability::down("sealed"));
    let addr = server.metrics_addr.expect("a metrics listener");
    assert_ne!(addr, server.addr);
    let c = client();
    let r = Reply::from(c.get(format!("http://{addr}/metrics")).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    has_line(&r.text, r#"credstore_store_available{store="m"} 1"#);
    has_line(&r.text, r#"credstore_store_probes_total{store="m",outcome="available"} 1"#);
    // Only /metrics there.
    let r = Reply::from(c.get(format!("http://{addr}{}", stores_path(T, P))).send().await.unwrap()).await;
    assert_eq!(r.status, 404);
    // The main listener still wants a token.
    assert_eq!(Reply::from(c.get(server.url("/metrics")).send().await.unwrap()).await.status, 401);
}
