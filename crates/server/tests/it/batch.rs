//! *Read Credential Values* (`POST …/credentials:batchRead`): many values in
//! one request, in order, for `reveal` tokens only, each key audited.

use crate::util::harness::*;
use crate::util::stores as test_stores;

use credstore_conformance::mock::Op;
use credstore_core::MAX_BATCH_KEYS;
use credstore_server::auth::Action;
use serde_json::{json, Value};

const T: &str = "tenant_123";
const P: &str = "project_456";
const READER: &str = "reader-token-0123456789";
const EDITOR: &str = "editor-token-0123456789";

fn batch_path(store: &str) -> String {
    format!("{}:batchRead", creds_path(T, P, store))
}

async fn batch(server: &TestServer, token: &str, path: &str, body: Value) -> Reply {
    let c = client();
    Reply::from(c.post(server.url(path)).bearer_auth(token).json(&body).send().await.unwrap()).await
}

/// The `reveal` records of the audit log: token, key, outcome and status.
fn reveals(server: &TestServer) -> Vec<(Value, Value, Value, Value)> {
    std::fs::read_to_string(server.dir.path().join("data").join("audit.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|l| l["action"] == "reveal")
        .map(|l| (l["token"].clone(), l["key"].clone(), l["outcome"].clone(), l["status"].clone()))
        .collect()
}

fn line(token: &str, key: &str, outcome: &str, status: u16) -> (Value, Value, Value, Value) {
    (json!(token), json!(key), json!(outcome), json!(status))
}

async fn start() -> TestServer {
    TestServer::start_with(|o| {
        o.tokens.push(token("reader", READER, &[T], &[P], &[Action::View, Action::Reveal]));
        o.tokens.push(token("editor", EDITOR, &["*"], &["*"], &[Action::View, Action::Edit]));
    })
    .await
}

#[tokio::test]
async fn batch_read_answers_each_key_in_order_marks_missing_keys_and_audits_every_key() {
    const SECRET: &str = "s3cret-text-\"quoted\"-\u{e9}";
    let server = start().await;
    let c = client();
    let base = creds_path(T, P, "memory-default");
    let body = json!({"key": "text", "value": SECRET, "metadata": {"owner": "ops"}});
    assert_eq!(create(&c, &server, ADMIN, &base, body).await.status, 201);
    let body = json!({"key": "bytes", "valueBase64": "3q2+7w==", "expiresAt": "2999-01-01T00:00:00.000Z"});
    assert_eq!(create(&c, &server, ADMIN, &base, body).await.status, 201);
    let meta =
        get(&c, &server, ADMIN, &cred_path(T, P, "memory-default", "text")).await.json()["data"].clone();

    let path = batch_path("memory-default");
    let r = batch(&server, READER, &path, json!({"keys": ["bytes", "missing", "text", "bytes"]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.content_type().starts_with("application/json"), "{}", r.content_type());
    assert_eq!(r.headers["cache-control"], "no-store");
    let answer = r.json();
    assert_eq!(answer["storeId"], "memory-default");
    let data = answer["data"].as_array().unwrap();
    let keys: Vec<&str> = data.iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["bytes", "missing", "text", "bytes"], "the answers follow the keys asked");
    assert_eq!(data[1], json!({"key": "missing", "found": false}), "a missing key is marked, nothing else");
    let text = &data[2];
    assert_eq!(
        (&text["found"], &text["value"], &text["valueKind"]),
        (&json!(true), &json!(SECRET), &json!("text"))
    );
    assert!(text.get("valueBase64").is_none(), "{text}");
    for member in ["version", "metadata", "createdAt", "updatedAt", "expiresAt"] {
        assert_eq!(text[member], meta[member], "{member} differs from the metadata read's");
    }
    let bytes = &data[0];
    assert_eq!((&bytes["valueBase64"], &bytes["valueKind"]), (&json!("3q2+7w=="), &json!("binary")));
    assert!(bytes.get("value").is_none(), "{bytes}");
    assert_eq!(bytes["expiresAt"], "2999-01-01T00:00:00.000Z");
    assert_eq!(data[3], data[0], "a key asked twice is answered twice");

    // One record per key, in order, naming the token; a missing key as a
    // single read of it is recorded.
    assert_eq!(
        reveals(&server),
        [
            line("reader", "bytes", "succeeded", 200),
            line("reader", "missing", "failed", 404),
            line("reader", "text", "succeeded", 200),
            line("reader", "bytes", "succeeded", 200),
        ]
    );
    let log = std::fs::read_to_string(server.dir.path().join("data").join("audit.log")).unwrap();
    for secret in ["s3cret", "3q2+7w==", READER] {
        assert!(!log.contains(secret), "the audit log holds {secret}");
    }

    // An empty batch answers an empty list.
    let r = batch(&server, READER, &path, json!({"keys": []})).await;
    assert_eq!((r.status, &r.json()["data"]), (200, &json!([])), "{}", r.text);
}

#[tokio::test]
async fn batch_read_without_the_reveal_action_is_403_and_records_no_read() {
    let server = start().await;
    let c = client();
    let base = creds_path(T, P, "memory-default");
    assert_eq!(
        create(&c, &server, ADMIN, &base, json!({"key": "text", "value": "s3cret"})).await.status,
        201
    );
    let path = batch_path("memory-default");
    for token in [ADMIN, EDITOR] {
        let r = batch(&server, token, &path, json!({"keys": ["text"]})).await;
        assert!(r.problem(403, &path).contains("'reveal'"), "{}", r.text);
        assert!(!r.text.contains("s3cret"));
    }
    // A token with `reveal` in another tenant may not either.
    let other = format!("{}:batchRead", creds_path("elsewhere", P, "memory-default"));
    batch(&server, READER, &other, json!({"keys": ["text"]})).await.problem(403, &other);
    let records = reveals(&server);
    assert!(records.iter().all(|(_, _, outcome, _)| outcome == "denied"), "{records:?}");
    assert_eq!(records.len(), 3, "{records:?}");
}

#[tokio::test]
async fn batch_read_over_the_limit_or_with_a_bad_key_is_refused_before_any_read() {
    let (mock, store) = test_stores::mock("m");
    let server = TestServer::start_with(|o| {
        o.extra.push(store);
        o.tokens.push(token("reader", READER, &["*"], &["*"], &[Action::Reveal]));
    })
    .await;
    let path = batch_path("m");
    let too_many: Vec<String> = (0..=MAX_BATCH_KEYS).map(|i| format!("k{i}")).collect();
    let r = batch(&server, READER, &path, json!({ "keys": too_many })).await;
    let detail = r.problem(422, &path);
    assert!(detail.contains("keys") && detail.contains(&MAX_BATCH_KEYS.to_string()), "{detail}");
    let r = batch(&server, READER, &path, json!({"keys": ["good", "bad key", "also-good"]})).await;
    assert!(r.problem(422, &path).contains("keys[1]"), "{}", r.text);
    for body in [json!({"keys": "a"}), json!({"key": ["a"]}), json!({"keys": ["a"], "more": 1}), json!([])] {
        batch(&server, READER, &path, body).await.problem(400, &path);
    }
    let c = client();
    let r = Reply::from(
        c.post(server.url(&path)).bearer_auth(READER).body("{\"keys\":[]}").send().await.unwrap(),
    )
    .await;
    assert!(r.problem(400, &path).contains("Content-Type"), "{}", r.text);
    assert_eq!(mock.calls(Op::Get), 0, "a refused batch read the store");
    assert!(reveals(&server).is_empty(), "a refused batch was recorded as a read");

    // Exactly the limit is read.
    let at_limit: Vec<String> = (0..MAX_BATCH_KEYS).map(|i| format!("k{i}")).collect();
    let r = batch(&server, READER, &path, json!({ "keys": at_limit })).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["data"].as_array().unwrap().len(), MAX_BATCH_KEYS);
    assert_eq!(reveals(&server).len(), MAX_BATCH_KEYS, "one record per key");
}
