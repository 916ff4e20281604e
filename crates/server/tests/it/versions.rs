//! A credential's history over HTTP: the versions listing, one version's
//! metadata and value, restore (undo a rotation, recover a deleted key),
//! purge, and `expiresAt` with expiry on a store whose clock the test
//! moves (a memory store on a `ManualClock`, served beside the defaults).

use crate::util::harness;

use std::sync::Arc;
use std::time::Duration;

use credstore_core::{
    async_trait, Availability, Capabilities, Credential, CredentialKey, CredentialStore, ListOptions,
    ListPage, ManualClock, Namespace, SetOutcome, StoreId, StoreInfo, StoreKind, WriteRequest,
};
use credstore_memory::{MemoryConfig, MemoryStore};
use credstore_server::auth::Action;
use harness::*;
use serde_json::{json, Value};

const T: &str = "tenant_123";
const P: &str = "project_456";
/// The memory store on the test's clock.
const STORE: &str = "history";
const READER: &str = "reader-token-0123456789";
const EDITOR: &str = "editor-token-0123456789";
const PURGER: &str = "purger-token-0123456789";

/// A server with the default stores, the memory store `history` on
/// `clock`, and the tokens `reader` (view, reveal), `editor` (view, edit)
/// and `purger` (purge).
async fn server_on(clock: &ManualClock) -> TestServer {
    let config = MemoryConfig::new().clock(Arc::new(clock.clone()));
    let history: Arc<dyn CredentialStore> =
        Arc::new(MemoryStore::with_config(StoreId::new(STORE).unwrap(), config));
    TestServer::start_with(|o| {
        o.extra.push(history);
        o.extra.push(Arc::new(NoHistory::new("plain")));
        o.tokens.push(token("reader", READER, &["*"], &["*"], &[Action::View, Action::Reveal]));
        o.tokens.push(token("editor", EDITOR, &["*"], &["*"], &[Action::View, Action::Edit]));
        o.tokens.push(token("purger", PURGER, &["*"], &["*"], &[Action::Purge]));
    })
    .await
}

async fn server() -> TestServer {
    server_on(&ManualClock::starting_now()).await
}

fn key_path(store: &str, key: &str) -> String {
    cred_path(T, P, store, key)
}

fn versions_path(store: &str, key: &str) -> String {
    format!("{}/versions", key_path(store, key))
}

fn version_path(store: &str, key: &str, version: &str) -> String {
    format!("{}/{version}", versions_path(store, key))
}

async fn send(
    server: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Reply {
    let mut req = client().request(method.parse().unwrap(), server.url(path)).bearer_auth(token);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    Reply::from(req.send().await.unwrap()).await
}

/// Writes `value` under `key` of `store` with `{"rev": rev}`; its version.
async fn write(server: &TestServer, store: &str, key: &str, value: &str, rev: &str) -> String {
    let body = json!({"key": key, "value": value, "metadata": {"rev": rev}});
    let r = create(&client(), server, ADMIN, &creds_path(T, P, store), body).await;
    assert!(r.status == 200 || r.status == 201, "{}", r.text);
    unquote(&r)
}

/// The version of a response's strong `ETag`.
fn unquote(r: &Reply) -> String {
    let tag = r.headers.get("etag").unwrap_or_else(|| panic!("no ETag: {}", r.text)).to_str().unwrap();
    assert!(tag.starts_with('"') && tag.ends_with('"') && tag.len() > 2, "{tag}");
    tag[1..tag.len() - 1].to_owned()
}

/// The whole versions listing of `key`: (version, state, rev) newest first.
async fn history(server: &TestServer, store: &str, key: &str) -> Vec<(String, String, String)> {
    let r = get(&client(), server, ADMIN, &versions_path(store, key)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["nextCursor"], Value::Null);
    r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let rev = v["metadata"]["rev"].as_str().unwrap_or_default().to_owned();
            (v["version"].as_str().unwrap().to_owned(), v["state"].as_str().unwrap().to_owned(), rev)
        })
        .collect()
}

/// The current value of `key`, read with the `reveal` token; `None` on 404.
async fn value(server: &TestServer, store: &str, key: &str) -> Option<String> {
    let r = get(&client(), server, READER, &format!("{}/value", key_path(store, key))).await;
    match r.status {
        200 => Some(r.json()["data"]["value"].as_str().unwrap().to_owned()),
        404 => None,
        other => panic!("{other}: {}", r.text),
    }
}

/// The audit log's records, parsed.
fn audit(server: &TestServer) -> Vec<Value> {
    let text = std::fs::read_to_string(server.dir.path().join("data").join("audit.log")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The (outcome, status) of the audit records of `action` on `key`, with
/// their `version` member.
fn audited(server: &TestServer, action: &str, key: &str) -> Vec<(String, Value, Value)> {
    audit(server)
        .into_iter()
        .filter(|r| r["action"] == action && r["key"] == key)
        .map(|r| (r["outcome"].as_str().unwrap().to_owned(), r["status"].clone(), r["version"].clone()))
        .collect()
}

/// The stores of the server that keep versions, of `candidates`; the
/// others are reported as skipped.
fn with_versions<'a>(server: &TestServer, candidates: &[&'a str]) -> Vec<&'a str> {
    candidates
        .iter()
        .copied()
        .filter(|id| {
            let store = server.stores.registry().get(id).unwrap();
            let keeps = credstore_core::CredentialStoreExt::capabilities(store.as_ref()).versions;
            if !keeps {
                eprintln!("skipped on {id}: the store declares no version history");
            }
            keeps
        })
        .collect()
}

// ------------------------------------------------------------ listing

#[tokio::test]
async fn versions_are_listed_newest_first_with_state_times_and_metadata_and_paginate() {
    let server = server().await;
    let stores = with_versions(&server, &[STORE, "memory-default", "sqlite-default"]);
    assert!(stores.contains(&STORE) && stores.contains(&"memory-default"), "{stores:?}");
    for store in stores {
        let v1 = write(&server, store, "db-password", "one", "1").await;
        let v2 = write(&server, store, "db-password", "two", "2").await;
        let v3 = write(&server, store, "db-password", "three", "3").await;
        let all = history(&server, store, "db-password").await;
        let expected = [(&v3, "current", "3"), (&v2, "previous", "2"), (&v1, "previous", "1")];
        assert_eq!(all.len(), 3, "{store}: {all:?}");
        for ((v, state, rev), (want_v, want_state, want_rev)) in all.iter().zip(expected) {
            assert_eq!((v, state.as_str(), rev.as_str()), (want_v, want_state, want_rev), "{store}");
        }
        let r =
            get(&client(), &server, ADMIN, &format!("{}?limit=2", versions_path(store, "db-password"))).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let page = r.json();
        let members: Vec<_> = page["data"][0].as_object().unwrap().keys().cloned().collect();
        assert_eq!(members, ["expiresAt", "metadata", "state", "version", "writtenAt"], "{store}");
        assert_eq!(page["data"][0]["expiresAt"], Value::Null);
        assert!(page["data"][0]["writtenAt"].as_str().unwrap().ends_with('Z'));
        assert_eq!(page["data"].as_array().unwrap().len(), 2);
        let cursor = page["nextCursor"].as_str().expect("a next page").to_owned();
        let r = get(
            &client(),
            &server,
            ADMIN,
            &format!("{}?limit=2&cursor={cursor}", versions_path(store, "db-password")),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.json()["data"][0]["version"], v1.as_str());
        assert_eq!((r.json()["data"].as_array().unwrap().len(), &r.json()["nextCursor"]), (1, &Value::Null));
        // A key never written has an empty history, not a 404.
        assert!(history(&server, store, "never-written").await.is_empty());
        // A bad cursor or limit is 422 problem+json.
        let path = versions_path(store, "db-password");
        for query in ["cursor=v1zz", "cursor=c16b", "limit=0", "limit=1001"] {
            let r = get(&client(), &server, ADMIN, &format!("{path}?{query}")).await;
            r.problem(422, &path);
        }
    }
}

#[tokio::test]
async fn a_store_without_history_answers_422_problem_json_on_every_version_route() {
    let server = server().await;
    write(&server, "plain", "k", "v", "1").await;
    let list = versions_path("plain", "k");
    let one = version_path("plain", "k", "1");
    let restore = format!("{one}/restore");
    let cases = [
        ("GET", list.as_str(), ADMIN, vec![]),
        ("GET", one.as_str(), ADMIN, vec![]),
        ("GET", &format!("{one}/value"), READER, vec![]),
        ("POST", restore.as_str(), ADMIN, vec![("If-Match", "\"1\"")]),
        ("DELETE", one.as_str(), ADMIN, vec![]),
    ];
    for (method, path, token, headers) in cases {
        let r = send(&server, method, path, token, &headers, None).await;
        let detail = r.problem(422, path);
        assert!(detail.contains("does not support version history"), "{method} {path}: {detail}");
    }
    // Expiry likewise, before anything is written.
    let at = humantime::format_rfc3339(std::time::SystemTime::now() + Duration::from_secs(3600)).to_string();
    let body = json!({"key": "k", "value": "new", "expiresAt": at});
    let r = create(&client(), &server, ADMIN, &creds_path(T, P, "plain"), body).await;
    let detail = r.problem(422, &creds_path(T, P, "plain"));
    assert!(detail.contains("does not support expiring credentials"), "{detail}");
    assert_eq!(value(&server, "plain", "k").await.as_deref(), Some("v"));
    // The purge of a key is its delete there.
    let r = send(&server, "DELETE", &list, PURGER, &[], None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(value(&server, "plain", "k").await, None);
}

// ------------------------------------------------------------ one version

#[tokio::test]
async fn a_version_reads_its_metadata_and_its_value_only_with_the_reveal_grant() {
    let server = server().await;
    let v1 = write(&server, STORE, "api-key", "first-secret", "1").await;
    let v2 = write(&server, STORE, "api-key", "second-secret", "2").await;

    let r = get(&client(), &server, ADMIN, &version_path(STORE, "api-key", &v1)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let data = &r.json()["data"];
    assert_eq!((data["key"].as_str(), data["storeId"].as_str()), (Some("api-key"), Some(STORE)));
    assert_eq!((data["version"].as_str(), data["state"].as_str()), (Some(v1.as_str()), Some("previous")));
    assert_eq!(data["metadata"], json!({"rev": "1"}));
    assert!(!r.text.contains("first-secret"), "the metadata read never holds the value");
    let r = get(&client(), &server, ADMIN, &version_path(STORE, "api-key", &v2)).await;
    assert_eq!(r.json()["data"]["state"], "current");

    // The value: 403 without `reveal` (the admin token has none), recorded.
    let value_path = format!("{}/value", version_path(STORE, "api-key", &v1));
    let r = get(&client(), &server, ADMIN, &value_path).await;
    let detail = r.problem(403, &value_path);
    assert!(detail.contains("'reveal'") && !r.text.contains("first-secret"), "{detail}");
    // With it: the shape of the value read, this version's ETag, no-store.
    let r = get(&client(), &server, READER, &value_path).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(unquote(&r), v1);
    assert_eq!(r.headers["cache-control"], "no-store");
    let data = &r.json()["data"];
    let mut members: Vec<_> = data.as_object().unwrap().keys().cloned().collect();
    members.sort();
    assert_eq!(members, ["createdAt", "key", "storeId", "updatedAt", "value", "valueKind", "version"]);
    assert_eq!((data["value"].as_str(), data["version"].as_str()), (Some("first-secret"), Some(v1.as_str())));
    // Recorded: the refusal, then the read, each with the version.
    let records = audited(&server, "reveal", "api-key");
    assert_eq!(
        records,
        [
            ("denied".to_owned(), json!(403), json!(v1.as_str())),
            ("succeeded".to_owned(), json!(200), json!(v1.as_str())),
        ]
    );

    // A version never written: 404 problem+json for the metadata, the value and a restore.
    let gone = version_path(STORE, "api-key", "999999");
    let r = get(&client(), &server, ADMIN, &gone).await;
    assert!(r.problem(404, &gone).contains("'999999'"));
    let r = get(&client(), &server, READER, &format!("{gone}/value")).await;
    r.problem(404, &format!("{gone}/value"));
    let r =
        send(&server, "POST", &format!("{gone}/restore"), ADMIN, &[("If-Match", &format!("\"{v2}\""))], None)
            .await;
    r.problem(404, &format!("{gone}/restore"));
    // A version no store can have: 422 naming the field.
    let bad = version_path(STORE, "api-key", "a%22b");
    let r = get(&client(), &server, ADMIN, &bad).await;
    assert!(r.problem(422, &bad).starts_with("invalid version"), "{}", r.text);
}

// ------------------------------------------------------------ restore

#[tokio::test]
async fn restore_with_if_match_current_writes_the_old_value_back_as_a_new_version() {
    let server = server().await;
    let stores = with_versions(&server, &[STORE, "memory-default", "sqlite-default"]);
    for store in stores {
        let good = write(&server, store, "token", "good", "1").await;
        let bad = write(&server, store, "token", "bad", "2").await;
        let path = format!("{}/restore", version_path(store, "token", &good));
        let r = send(&server, "POST", &path, EDITOR, &[("If-Match", &format!("\"{bad}\""))], None).await;
        assert_eq!(r.status, 200, "{store}: {}", r.text);
        let restored = unquote(&r);
        assert!(restored != good && restored != bad, "{store}: a new version");
        assert_eq!(r.headers["location"], key_path(store, "token").as_str());
        assert_eq!(r.json()["data"]["key"], "token");
        assert_eq!(value(&server, store, "token").await.as_deref(), Some("good"), "{store}");
        let meta = get(&client(), &server, ADMIN, &key_path(store, "token")).await;
        assert_eq!(
            (unquote(&meta), &meta.json()["data"]["metadata"]),
            (restored.clone(), &json!({"rev": "1"}))
        );
        let states: Vec<_> =
            history(&server, store, "token").await.into_iter().map(|(v, s, _)| (v, s)).collect();
        assert_eq!(
            states,
            [(restored, "current".to_owned()), (bad, "previous".to_owned()), (good, "previous".to_owned()),],
            "{store}"
        );
    }
    let records = audited(&server, "restore", "token");
    assert!(records.len() >= 2, "{records:?}");
    assert_eq!(records[0].0, "started");
    assert_eq!((records[1].0.as_str(), &records[1].1), ("succeeded", &json!(200)));
    assert!(records.iter().all(|(_, _, v)| v.is_string()), "restore records name the version: {records:?}");
}

#[tokio::test]
async fn restore_with_a_stale_if_match_is_412_and_changes_nothing() {
    let server = server().await;
    let v1 = write(&server, STORE, "token", "secret-v1", "1").await;
    let v2 = write(&server, STORE, "token", "secret-v2", "2").await;
    let v3 = write(&server, STORE, "token", "secret-v3", "3").await;
    let path = format!("{}/restore", version_path(STORE, "token", &v1));
    // A rotation (v3) raced the rollback that read v2.
    let r = send(&server, "POST", &path, EDITOR, &[("If-Match", &format!("\"{v2}\""))], None).await;
    let detail = r.problem(412, &path);
    assert!(detail.contains("'token'") && !r.text.contains("secret-v"), "{detail}");
    assert!(r.headers.get("etag").is_none());
    assert_eq!(value(&server, STORE, "token").await.as_deref(), Some("secret-v3"));
    assert_eq!(history(&server, STORE, "token").await.len(), 3, "nothing written");
    assert_eq!(history(&server, STORE, "token").await[0].0, v3);
    let records = audited(&server, "restore", "token");
    assert_eq!(records.last().map(|r| (r.0.as_str(), r.1.clone())), Some(("failed", json!(412))));
}

#[tokio::test]
async fn restore_without_a_condition_is_428_and_changes_nothing() {
    let server = server().await;
    let v1 = write(&server, STORE, "token", "one", "1").await;
    write(&server, STORE, "token", "two", "2").await;
    let path = format!("{}/restore", version_path(STORE, "token", &v1));
    let r = send(&server, "POST", &path, EDITOR, &[], None).await;
    let detail = r.problem(428, &path);
    assert_eq!(r.json()["code"], "precondition_required");
    assert!(detail.contains("If-Match") && detail.contains("If-None-Match: *"), "{detail}");
    assert_eq!(value(&server, STORE, "token").await.as_deref(), Some("two"));
    // A token without `edit` may not restore.
    let r = send(&server, "POST", &path, READER, &[("If-Match", "*")], None).await;
    r.problem(403, &path);
    assert_eq!(history(&server, STORE, "token").await.len(), 2);
}

#[tokio::test]
async fn a_deleted_key_is_recovered_with_if_none_match_star() {
    let server = server().await;
    write(&server, STORE, "token", "one", "1").await;
    let v2 = write(&server, STORE, "token", "two", "2").await;
    let r = delete(&client(), &server, ADMIN, &key_path(STORE, "token")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(value(&server, STORE, "token").await, None);
    let all = history(&server, STORE, "token").await;
    assert_eq!((all[0].0.as_str(), all[0].1.as_str()), (v2.as_str(), "deleted"), "{all:?}");
    // If-Match cannot restore an absent key.
    let path = format!("{}/restore", version_path(STORE, "token", &v2));
    let r = send(&server, "POST", &path, EDITOR, &[("If-Match", &format!("\"{v2}\""))], None).await;
    r.problem(412, &path);
    let r = send(&server, "POST", &path, EDITOR, &[("If-None-Match", "*")], None).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let recovered = unquote(&r);
    assert_ne!(recovered, v2);
    assert_eq!(value(&server, STORE, "token").await.as_deref(), Some("two"));
    // Create-only: a second recovery finds the key present.
    let r = send(&server, "POST", &path, EDITOR, &[("If-None-Match", "*")], None).await;
    assert!(r.problem(412, &path).contains("exists"), "{}", r.text);
    assert_eq!(history(&server, STORE, "token").await[0], (recovered, "current".to_owned(), "2".to_owned()));
}

// ------------------------------------------------------------ purge

#[tokio::test]
async fn purge_destroys_one_version_then_the_key_with_its_history_and_needs_the_purge_grant() {
    let server = server().await;
    let leaked = write(&server, STORE, "token", "leaked", "1").await;
    let v2 = write(&server, STORE, "token", "rotated", "2").await;
    let one = version_path(STORE, "token", &leaked);
    // `edit` is not enough.
    let r = send(&server, "DELETE", &one, EDITOR, &[], None).await;
    assert!(r.problem(403, &one).contains("'purge'"), "{}", r.text);
    // Never conditional.
    let r = send(&server, "DELETE", &one, PURGER, &[("If-Match", "*")], None).await;
    r.problem(400, &one);
    // The current version is refused: rotate first.
    let current = version_path(STORE, "token", &v2);
    let r = send(&server, "DELETE", &current, PURGER, &[], None).await;
    assert!(r.problem(409, &current).contains("current version"), "{}", r.text);
    assert_eq!(history(&server, STORE, "token").await.len(), 2);

    let r = send(&server, "DELETE", &one, PURGER, &[], None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let all = history(&server, STORE, "token").await;
    assert_eq!(all.iter().map(|v| v.0.as_str()).collect::<Vec<_>>(), [v2.as_str()]);
    let r = get(&client(), &server, READER, &format!("{one}/value")).await;
    r.problem(404, &format!("{one}/value"));
    let r = send(&server, "DELETE", &one, PURGER, &[], None).await;
    r.problem(404, &one);
    assert_eq!(value(&server, STORE, "token").await.as_deref(), Some("rotated"));

    // The key with its whole history, deleted versions included.
    write(&server, STORE, "token", "third", "3").await;
    let r = delete(&client(), &server, ADMIN, &key_path(STORE, "token")).await;
    assert_eq!(r.status, 204);
    assert_eq!(history(&server, STORE, "token").await.len(), 2, "delete kept the history");
    let all_versions = versions_path(STORE, "token");
    let r = send(&server, "DELETE", &all_versions, EDITOR, &[], None).await;
    r.problem(403, &all_versions);
    let r = send(&server, "DELETE", &all_versions, PURGER, &[], None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(history(&server, STORE, "token").await.is_empty());
    let r = send(
        &server,
        "POST",
        &format!("{}/restore", version_path(STORE, "token", &v2)),
        EDITOR,
        &[("If-None-Match", "*")],
        None,
    )
    .await;
    assert_eq!(r.status, 404, "a purged key cannot be recovered: {}", r.text);
    let r = send(&server, "DELETE", &all_versions, PURGER, &[], None).await;
    r.problem(404, &all_versions);

    let purges = audited(&server, "purge", "token");
    let outcomes: Vec<_> = purges.iter().map(|(o, s, _)| (o.as_str(), s.clone())).collect();
    assert_eq!(
        outcomes,
        [
            ("denied", json!(403)),
            ("started", Value::Null),
            ("failed", json!(409)),
            ("started", Value::Null),
            ("succeeded", json!(204)),
            ("started", Value::Null),
            ("failed", json!(404)),
            ("denied", json!(403)),
            ("started", Value::Null),
            ("succeeded", json!(204)),
            ("started", Value::Null),
            ("failed", json!(404)),
        ]
    );
    assert_eq!(purges[4].2, json!(leaked.as_str()), "a version's purge names it");
    assert_eq!(purges[9].2, Value::Null, "a key's purge names no version");
}

// ------------------------------------------------------------ expiry

#[tokio::test]
async fn expires_at_round_trips_and_the_credential_reads_as_absent_from_that_instant() {
    let clock = ManualClock::new(std::time::UNIX_EPOCH + Duration::from_secs(2_000_000_000));
    let server = server_on(&clock).await;
    let creds = creds_path(T, P, STORE);
    let at = clock.now_plus(60);
    let body = json!({"key": "oauth", "value": "access", "expiresAt": "2033-05-18T04:34:20+01:00"});
    // 2033-05-18T03:34:20Z is 2,000,000,060 s after the epoch.
    assert_eq!(humantime::parse_rfc3339("2033-05-18T03:34:20Z").unwrap(), at);
    let r = create(&client(), &server, ADMIN, &creds, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let version = unquote(&r);
    let meta = get(&client(), &server, ADMIN, &key_path(STORE, "oauth")).await;
    assert_eq!(meta.json()["data"]["expiresAt"], "2033-05-18T03:34:20.000Z");
    let listed = get(&client(), &server, ADMIN, &versions_path(STORE, "oauth")).await;
    assert_eq!(listed.json()["data"][0]["expiresAt"], "2033-05-18T03:34:20.000Z");
    // A credential without one shows null.
    write(&server, STORE, "forever", "v", "1").await;
    let meta = get(&client(), &server, ADMIN, &key_path(STORE, "forever")).await;
    assert_eq!(meta.json()["data"]["expiresAt"], Value::Null);

    // One second before: present. At the instant: absent everywhere.
    clock.advance(Duration::from_secs(59));
    assert_eq!(value(&server, STORE, "oauth").await.as_deref(), Some("access"));
    clock.advance(Duration::from_secs(1));
    assert_eq!(value(&server, STORE, "oauth").await, None);
    let r = get(&client(), &server, ADMIN, &key_path(STORE, "oauth")).await;
    r.problem(404, &key_path(STORE, "oauth"));
    let keys = get(&client(), &server, ADMIN, &creds).await;
    assert_eq!(keys.json()["data"], json!([{"key": "forever"}]));
    assert_eq!(history(&server, STORE, "oauth").await, [(version, "expired".to_owned(), String::new())]);
    // A create-only write succeeds over it.
    let r = send(
        &server,
        "POST",
        &creds,
        ADMIN,
        &[("If-None-Match", "*")],
        Some(json!({"key": "oauth", "value": "fresh"})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);

    // An expiresAt not in the store's future is refused before anything is written.
    for past in ["2033-05-18T03:34:20Z", "2001-01-01T00:00:00Z"] {
        let body = json!({"key": "late", "value": "v", "expiresAt": past});
        let r = create(&client(), &server, ADMIN, &creds, body).await;
        let detail = r.problem(422, &creds);
        assert!(detail.starts_with("invalid expiresAt") && detail.contains("not in the future"), "{detail}");
    }
    for (bad, status) in [(json!("tomorrow"), 422), (json!(5), 400), (json!("2033-05-18T09:34:20"), 422)] {
        let body = json!({"key": "late", "value": "v", "expiresAt": bad});
        let r = create(&client(), &server, ADMIN, &creds, body).await;
        assert!(r.problem(status, &creds).contains("expiresAt"), "{bad}: {}", r.text);
    }
    assert_eq!(value(&server, STORE, "late").await, None);
    assert!(audited(&server, "create", "late").is_empty(), "refused before the audit record");
}

#[tokio::test]
async fn a_restore_takes_a_new_expires_at_and_never_the_old_one() {
    let clock = ManualClock::new(std::time::UNIX_EPOCH + Duration::from_secs(2_000_000_000));
    let server = server_on(&clock).await;
    let creds = creds_path(T, P, STORE);
    let body = json!({"key": "oauth", "value": "first", "expiresAt": "2033-05-18T03:34:20Z"});
    let r = create(&client(), &server, ADMIN, &creds, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let expired = unquote(&r);
    clock.advance(Duration::from_secs(60));
    assert_eq!(value(&server, STORE, "oauth").await, None);
    let restore = format!("{}/restore", version_path(STORE, "oauth", &expired));
    let star = [("If-None-Match", "*")];
    // Refused before anything is written: a time not in the future, a bad one, a bad body.
    let cases = [
        (json!({"expiresAt": "2033-05-18T03:34:20Z"}), 422, "not in the future"),
        (json!({"expiresAt": "soon"}), 422, "invalid expiresAt"),
        (json!({"expiresAt": 5}), 400, "expiresAt"),
        (json!({"expires": "2040-01-01T00:00:00Z"}), 400, "unknown field"),
    ];
    for (body, status, words) in cases {
        let r = send(&server, "POST", &restore, EDITOR, &star, Some(body.clone())).await;
        assert!(r.problem(status, &restore).contains(words), "{body}: {}", r.text);
    }
    assert_eq!(value(&server, STORE, "oauth").await, None, "nothing was restored");
    // A new time: restored, expiring then.
    let body = json!({"expiresAt": "2033-05-18T04:00:00+00:00"});
    let r = send(&server, "POST", &restore, EDITOR, &star, Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let meta = get(&client(), &server, ADMIN, &key_path(STORE, "oauth")).await;
    assert_eq!(meta.json()["data"]["expiresAt"], "2033-05-18T04:00:00.000Z");
    assert_eq!(value(&server, STORE, "oauth").await.as_deref(), Some("first"));
    // No body (or null): never expires, whenever the version restored did.
    let current = unquote(&meta);
    let r = send(
        &server,
        "POST",
        &restore,
        EDITOR,
        &[("If-Match", &format!("\"{current}\""))],
        Some(Value::Null),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let meta = get(&client(), &server, ADMIN, &key_path(STORE, "oauth")).await;
    assert_eq!(meta.json()["data"]["expiresAt"], Value::Null);
    clock.advance(Duration::from_secs(86_400));
    assert_eq!(value(&server, STORE, "oauth").await.as_deref(), Some("first"));
}

#[tokio::test]
async fn a_cached_store_answers_an_expired_credential_as_absent_from_the_instant() {
    let clock = ManualClock::new(std::time::UNIX_EPOCH + Duration::from_secs(2_000_000_000));
    let config = MemoryConfig::new().clock(Arc::new(clock.clone()));
    let store: Arc<dyn CredentialStore> =
        Arc::new(MemoryStore::with_config(StoreId::new("cached").unwrap(), config));
    let layer = credstore_layers::CacheLayer::new().with_ttl(Duration::from_secs(3600));
    let server = TestServer::start_with(|o| {
        o.cached.push((store, layer));
        o.tokens.push(token("reader", READER, &["*"], &["*"], &[Action::View, Action::Reveal]));
    })
    .await;
    let body = json!({"key": "oauth", "value": "access", "expiresAt": "2033-05-18T03:34:20Z"});
    let r = create(&client(), &server, ADMIN, &creds_path(T, P, "cached"), body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // Read once: the cache holds it now, for an hour.
    assert_eq!(value(&server, "cached", "oauth").await.as_deref(), Some("access"));
    let meta = get(&client(), &server, ADMIN, &key_path("cached", "oauth")).await;
    assert_eq!(meta.status, 200);
    clock.advance(Duration::from_secs(60));
    assert_eq!(value(&server, "cached", "oauth").await, None, "the value read answers it absent");
    let r = get(&client(), &server, ADMIN, &key_path("cached", "oauth")).await;
    r.problem(404, &key_path("cached", "oauth"));
}

trait NowPlus {
    fn now_plus(&self, secs: u64) -> std::time::SystemTime;
}

impl NowPlus for ManualClock {
    fn now_plus(&self, secs: u64) -> std::time::SystemTime {
        credstore_core::Clock::now(self) + Duration::from_secs(secs)
    }
}

// ------------------------------------------------------------ a store without history

/// A memory store that declares no history and no expiry: the trait's
/// provided methods answer for it.
#[derive(Debug)]
struct NoHistory {
    info: StoreInfo,
    inner: Arc<dyn CredentialStore>,
}

impl NoHistory {
    fn new(id: &str) -> Self {
        let id = StoreId::new(id).unwrap();
        let info = StoreInfo::new(id.clone(), StoreKind::from_static("memory"), Capabilities::full());
        Self { info, inner: Arc::new(MemoryStore::new(id)) }
    }
}

#[async_trait]
impl CredentialStore for NoHistory {
    fn info(&self) -> &StoreInfo {
        &self.info
    }
    fn with_namespace(&self, namespace: &Namespace) -> credstore_core::Result<Arc<dyn CredentialStore>> {
        let inner = self.inner.with_namespace(namespace)?;
        let info = self.info.join(namespace)?;
        Ok(Arc::new(NoHistory { info, inner }))
    }
    async fn get(&self, key: &CredentialKey) -> credstore_core::Result<Option<Credential>> {
        self.inner.get(key).await
    }
    async fn write(&self, request: &WriteRequest<'_>) -> credstore_core::Result<SetOutcome> {
        self.inner.write(request).await
    }
    async fn delete(&self, key: &CredentialKey) -> credstore_core::Result<bool> {
        self.inner.delete(key).await
    }
    async fn list(&self, options: &ListOptions) -> credstore_core::Result<ListPage> {
        self.inner.list(options).await
    }
    async fn check_availability(&self) -> Availability {
        Availability::up()
    }
}
