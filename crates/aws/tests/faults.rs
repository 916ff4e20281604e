//! Fault and service-behaviour tests of `credstore-aws` against moto's
//! Secrets Manager API on loopback: a server stopped mid-run and restarted,
//! wrong credentials, refused and silent endpoints, delete-then-create
//! loops, listing past the service's page size, racing creators, and the
//! on-AWS layout as other tools see it.
//!
//! Run through `scripts/test` (or with `.test-tools/venv/bin` on `PATH`);
//! without `moto_server` the tests skip loudly, and fail under `CI=true`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_secretsmanager::Client;
use credstore_aws::{AwsConfig, AwsStore, DeletionPolicy};
use credstore_test_servers::moto::{Moto, ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};
use credstore_conformance::{servers, unique_name};
use credstore_core::{CredentialKey, CredentialStore, Error, ListOptions, Metadata, SecretValue, StoreId};

fn key(s: &str) -> CredentialKey {
    CredentialKey::new(s).expect("test key")
}

fn base_config(endpoint: &str) -> AwsConfig {
    AwsConfig::new()
        .region(REGION)
        .endpoint_url(endpoint)
        .static_credentials(ACCESS_KEY_ID, SecretValue::from(SECRET_ACCESS_KEY))
        .prefix(&format!("faults/{}", unique_name("t")))
}

fn store(config: AwsConfig) -> AwsStore {
    AwsStore::new(StoreId::new(unique_name("aws-fault")).expect("id"), config).expect("store")
}

/// A raw SDK client on the same server, to look at secrets as other AWS tools do.
fn raw_client(endpoint: &str) -> Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None, None, "test"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .build();
    Client::from_conf(config)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

fn assert_retriable(op: &str, err: &Error) {
    assert!(
        matches!(err, Error::Unavailable { .. }) && err.is_retriable(),
        "{op}: expected Unavailable, got {err:?}"
    );
}

/// Every operation of `store` fails fast with a retriable error.
async fn assert_all_fail_retriable(store: &AwsStore, within: Duration) {
    let k = key("down");
    let v = SecretValue::from("value-while-down");
    let started = Instant::now();
    assert_retriable("get", &store.get(&k).await.expect_err("get while down"));
    assert_retriable("has", &store.has(&k).await.expect_err("has while down"));
    assert_retriable("set", &store.set(&k, &v, &Metadata::new()).await.expect_err("set while down"));
    assert_retriable("delete", &store.delete(&k).await.expect_err("delete while down"));
    assert_retriable("list", &store.list(&ListOptions::new()).await.expect_err("list while down"));
    assert!(started.elapsed() < within, "five failing calls took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_stopped_mid_run_then_recovers_on_restart_without_rebuilding_the_store() {
    let Some(moto) = blocking(Moto::start).await else { return };
    let moto = Arc::new(moto);
    let timeout = Duration::from_secs(2);
    let store = Arc::new(store(base_config(&moto.endpoint()).timeout(timeout).max_attempts(2)));
    let k = key("survivor");
    store.set(&k, &SecretValue::from("before"), &Metadata::new()).await.expect("set while up");
    assert!(store.check_availability().await.available);

    // A writer keeps going while the server dies and comes back.
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (store, ok, failed) = (store.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut i = 0u32;
            while Instant::now() < deadline && ok.load(Ordering::SeqCst) < 1_000_000 {
                i += 1;
                let k = key(&format!("busy-{}", i % 8));
                match store.set(&k, &SecretValue::new(format!("v{i}")), &Metadata::new()).await {
                    Ok(_) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        assert!(e.is_retriable(), "a write during the outage failed non-retriably: {e:?}");
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::task::yield_now().await;
            }
        })
    };
    wait_until("the writer to make progress", || ok.load(Ordering::SeqCst) >= 5).await;

    let m = moto.clone();
    blocking(move || m.stop()).await;
    assert!(!moto.is_running());
    wait_until("writes to fail during the outage", || failed.load(Ordering::SeqCst) >= 3).await;

    let started = Instant::now();
    let a = store.check_availability().await;
    let took = started.elapsed();
    assert!(!a.available, "a stopped server must be unavailable");
    let reason = a.reason.expect("a reason");
    assert!(reason.contains(&moto.endpoint()) && reason.contains("connection refused"), "{reason}");
    assert!(
        took <= timeout + Duration::from_secs(1),
        "the probe took {took:?}, past the {timeout:?} timeout"
    );
    assert_all_fail_retriable(&store, Duration::from_secs(10)).await;

    let m = moto.clone();
    blocking(move || m.restart()).await;
    let before = ok.load(Ordering::SeqCst);
    wait_until("writes to succeed again after the restart", || ok.load(Ordering::SeqCst) >= before + 5).await;
    writer.abort();
    let _ = writer.await;

    // The same store object works again; moto forgot everything, so the
    // key set before the outage is gone.
    let a = store.check_availability().await;
    assert!(a.available, "available again after the restart: {:?}", a.reason);
    assert!(store.get(&k).await.expect("get after restart").is_none());
    store.set(&k, &SecretValue::from("after"), &Metadata::new()).await.expect("set after restart");
    assert_eq!(store.get(&k).await.expect("get").expect("present").value.expose_secret(), "after");
}

async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_and_access_denied_are_permission_denied() {
    // Two unchecked requests make an IAM user without policies; every
    // request after them is authenticated and authorized.
    let Some(moto) = blocking(|| Moto::start_with_iam_auth(2)).await else { return };
    let moto = Arc::new(moto);
    let m = moto.clone();
    let (user_key, user_secret) =
        blocking(move || m.create_access_key("no-policy")).await.expect("access key");
    let endpoint = moto.endpoint();
    let with = |id: &str, secret: &str| {
        store(base_config(&endpoint).static_credentials(id, SecretValue::from(secret)).max_attempts(3))
    };
    let wrong_secret = format!("{user_secret}-wrong");
    let cases = [
        ("unknown access key", with("AKIAUNKNOWNKEY000000", "whatever"), "invalid AWS credentials"),
        ("wrong secret key", with(&user_key, &wrong_secret), "invalid AWS credentials"),
        ("no permissions", with(&user_key, &user_secret), "access denied"),
    ];
    for (case, store, expected) in cases {
        let a = store.check_availability().await;
        assert!(!a.available, "{case}: reported available");
        let reason = a.reason.unwrap_or_default();
        assert!(reason.contains(expected), "{case}: reason {reason:?} does not say {expected:?}");
        assert!(
            !reason.contains(&user_secret) && !reason.contains(&wrong_secret),
            "{case}: reason shows a secret"
        );
        let k = key("denied");
        let v = SecretValue::from("value-that-must-not-leak");
        let errors = [
            store.get(&k).await.map(drop).expect_err("get"),
            store.set(&k, &v, &Metadata::new()).await.map(drop).expect_err("set"),
            store.list(&ListOptions::new()).await.map(drop).expect_err("list"),
        ];
        for err in errors {
            assert!(
                matches!(err, Error::PermissionDenied { .. }),
                "{case}: expected PermissionDenied, got {err:?}"
            );
            assert!(!err.is_retriable(), "{case}: {err:?}");
            let text = format!("{err} {err:?} {store:?}");
            for secret in [user_secret.as_str(), wrong_secret.as_str(), v.expose_secret()] {
                assert!(!text.contains(secret), "{case}: a secret shows in {text}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_endpoint_fails_fast_with_a_reason() {
    let closed = format!("http://127.0.0.1:{}", servers::free_port());
    let timeout = Duration::from_secs(2);
    let store = store(base_config(&closed).timeout(timeout).max_attempts(3));
    let started = Instant::now();
    let a = store.check_availability().await;
    assert!(!a.available);
    let reason = a.reason.expect("reason");
    assert!(reason.contains("connection refused") && reason.contains(&closed), "{reason}");
    assert!(started.elapsed() <= timeout + Duration::from_secs(1), "probe took {:?}", started.elapsed());
    assert_all_fail_retriable(&store, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_endpoint_is_bounded_by_the_timeout() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let hole = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let timeout = Duration::from_millis(1500);
    let store = store(base_config(&endpoint).timeout(timeout).max_attempts(2));
    let started = Instant::now();
    let a = store.check_availability().await;
    let took = started.elapsed();
    assert!(!a.available);
    let reason = a.reason.expect("reason");
    assert!(reason.contains("within"), "{reason}");
    assert!(
        took >= timeout - Duration::from_millis(100) && took <= timeout + Duration::from_secs(1),
        "took {took:?}"
    );
    let started = Instant::now();
    let err = store.get(&key("x")).await.expect_err("get against a silent server");
    assert_retriable("get", &err);
    assert!(started.elapsed() <= timeout + Duration::from_secs(1), "get took {:?}", started.elapsed());
    hole.abort();
}

async fn delete_create_loop(policy: DeletionPolicy, rounds: usize) {
    let Some(moto) = blocking(Moto::shared).await else { return };
    let store = store(base_config(&moto.endpoint()).deletion(policy));
    let k = key("phoenix");
    let mut last_created = None;
    for round in 0..rounds {
        let v = SecretValue::new(format!("life-{round}"));
        let m = Metadata::try_from([("round", round.to_string().as_str())]).expect("metadata");
        let out =
            store.set(&k, &v, &m).await.unwrap_or_else(|e| panic!("{policy:?} round {round}: set: {e}"));
        assert!(out.created, "{policy:?} round {round}: a re-created key reports created");
        if let Some(previous) = last_created {
            assert!(out.created_at > previous, "{policy:?} round {round}: created_at was not reset");
        }
        last_created = Some(out.created_at);
        let c = store.get(&k).await.expect("get").expect("present");
        assert!(c.value == v, "{policy:?} round {round}: wrong value");
        assert_eq!(c.metadata, m);
        assert_eq!((c.created_at, c.updated_at), (out.created_at, out.updated_at));
        // An overwrite keeps created_at.
        let again = store.set(&k, &v, &m).await.expect("overwrite");
        assert!(!again.created && again.created_at == out.created_at && again.updated_at > out.updated_at);
        assert!(store.delete(&k).await.expect("delete"), "{policy:?} round {round}: delete returns true");
        assert!(!store.has(&k).await.expect("has"));
        assert!(store.get(&k).await.expect("get").is_none());
        assert!(!store.delete(&k).await.expect("delete again"), "{policy:?} round {round}: second delete");
        assert!(store.list(&ListOptions::new()).await.expect("list").keys.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_then_create_loop_immediate() {
    delete_create_loop(DeletionPolicy::Immediate, 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_then_create_loop_with_recovery_window() {
    delete_create_loop(DeletionPolicy::RecoveryWindow(7), 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_pages_past_100_and_skips_secrets_pending_deletion() {
    let Some(moto) = blocking(Moto::shared).await else { return };
    let store = Arc::new(store(base_config(&moto.endpoint()).deletion(DeletionPolicy::RecoveryWindow(7))));
    let keys: Vec<CredentialKey> = (0..230).map(|i| key(&format!("item-{i:03}"))).collect();
    let (v, m) = (SecretValue::from("v"), Metadata::new());
    for chunk in keys.chunks(16) {
        futures::future::try_join_all(chunk.iter().map(|k| store.set(k, &v, &m))).await.expect("set");
    }
    // Every third key goes into its recovery window: still on the service,
    // gone for the store.
    let mut kept = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        if i % 3 == 0 {
            assert!(store.delete(k).await.expect("delete"));
        } else {
            kept.push(k.clone());
        }
    }
    let raw = raw_client(&moto.endpoint());
    let pending = raw
        .list_secrets()
        .include_planned_deletion(true)
        .filters(
            aws_sdk_secretsmanager::types::Filter::builder()
                .key(aws_sdk_secretsmanager::types::FilterNameStringType::Name)
                .values(format!("{}/", store.prefix()))
                .build(),
        )
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|page| page.expect("raw list"))
        .flat_map(|page| page.secret_list.unwrap_or_default())
        .filter(|s| s.deleted_date().is_some())
        .count();
    assert_eq!(pending, 77, "the deleted secrets wait out their recovery window on the service");

    let mut seen = Vec::new();
    let mut opts = ListOptions::new().with_limit(60).expect("limit");
    loop {
        let page = store.list(&opts).await.expect("list");
        seen.extend(page.keys);
        match page.next_cursor {
            Some(c) => opts = opts.with_cursor(Some(c)),
            None => break,
        }
    }
    assert_eq!(seen, kept);
    let all = store.list(&ListOptions::new().with_limit(1000).expect("limit")).await.expect("list");
    assert_eq!(all.keys.len(), 153);
    assert!(all.next_cursor.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creators_of_a_new_key_both_succeed() {
    let Some(moto) = blocking(Moto::shared).await else { return };
    let store = Arc::new(store(base_config(&moto.endpoint())));
    for round in 0..10 {
        let k = key(&format!("race-{round}"));
        let (a, b) = (SecretValue::from("from-a"), SecretValue::from("from-b"));
        let (ma, mb) =
            (Metadata::try_from([("by", "a")]).expect("m"), Metadata::try_from([("by", "b")]).expect("m"));
        let (ra, rb) = tokio::join!(store.set(&k, &a, &ma), store.set(&k, &b, &mb));
        let (ra, rb) = (ra.expect("writer a"), rb.expect("writer b"));
        assert!(ra.created || rb.created, "round {round}: one writer created the key");
        let c = store.get(&k).await.expect("get").expect("present");
        let by = c.metadata.get("by").expect("by");
        let expected = if by == "a" { &a } else { &b };
        assert!(c.value == *expected, "round {round}: value and metadata from different writers");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layout_as_other_aws_tools_see_it() {
    let Some(moto) = blocking(Moto::shared).await else { return };
    let store = store(base_config(&moto.endpoint()));
    let raw = raw_client(&moto.endpoint());
    let k = key("db.password");
    let name = store.secret_name(&k);
    assert_eq!(name, format!("{}/db.password", store.prefix()));

    // The SecretString is the value; the description holds the envelope.
    let meta = Metadata::try_from([("owner", "ops \"team\" ✓")]).expect("m");
    store.set(&k, &SecretValue::from("s3cr3t"), &meta).await.expect("set");
    let got = raw.get_secret_value().secret_id(&name).send().await.expect("raw get");
    assert_eq!(got.secret_string(), Some("s3cr3t"));
    let desc = raw.describe_secret().secret_id(&name).send().await.expect("describe");
    let text = desc.description().expect("description");
    assert!(text.starts_with("{\"cs\":1,\"m\":{\"owner\":\"ops \\\"team\\\" ✓\"}"), "{text}");

    // The empty value: a placeholder the envelope flags, read back as "".
    store.set(&k, &SecretValue::from(""), &Metadata::new()).await.expect("set empty");
    let got = raw.get_secret_value().secret_id(&name).send().await.expect("raw get");
    assert_eq!(got.secret_string(), Some(" "));
    assert_eq!(store.get(&k).await.expect("get").expect("present").value.expose_secret(), "");
    // A real single space is not mistaken for the empty value.
    store.set(&k, &SecretValue::from(" "), &Metadata::new()).await.expect("set space");
    assert_eq!(store.get(&k).await.expect("get").expect("present").value.expose_secret(), " ");

    // A value written by another tool wins, keeping the last metadata.
    store.set(&k, &SecretValue::from("mine"), &meta).await.expect("set");
    let before = store.get(&k).await.expect("get").expect("present");
    raw.put_secret_value().secret_id(&name).secret_string("rotated-elsewhere").send().await.expect("put");
    let after = store.get(&k).await.expect("get").expect("present");
    assert_eq!(after.value.expose_secret(), "rotated-elsewhere");
    assert_eq!(after.metadata, meta);
    assert_eq!(after.created_at, before.created_at);

    // A secret made by another tool, with a plain description, reads with
    // empty metadata and the service's dates, and lists like any other key.
    let foreign = key("made-elsewhere");
    raw.create_secret()
        .name(store.secret_name(&foreign))
        .secret_string("plain")
        .description("Created by hand in the console")
        .send()
        .await
        .expect("raw create");
    let c = store.get(&foreign).await.expect("get").expect("present");
    assert_eq!(c.value.expose_secret(), "plain");
    assert!(c.metadata.is_empty());
    assert!(c.updated_at >= c.created_at);
    let listed = store.list(&ListOptions::new()).await.expect("list").keys;
    assert_eq!(listed, vec![k.clone(), foreign.clone()]);
    // Overwriting it through the store keeps its creation date.
    let out = store.set(&foreign, &SecretValue::from("adopted"), &Metadata::new()).await.expect("set");
    assert!(!out.created);
    assert_eq!(out.created_at, c.created_at);

    // Namespaced handles share the client and stay apart from the parent.
    let tenant = store.with_namespace("tenant-1/project-a").expect("namespace");
    assert_eq!(tenant.prefix(), format!("{}/tenant-1/project-a", store.prefix()));
    tenant.set(&k, &SecretValue::from("tenant value"), &Metadata::new()).await.expect("set");
    assert_eq!(
        store.get(&k).await.expect("get").expect("present").value.expose_secret(),
        "rotated-elsewhere"
    );
    assert_eq!(store.list(&ListOptions::new()).await.expect("list").keys, vec![k.clone(), foreign]);
    assert_eq!(tenant.list(&ListOptions::new()).await.expect("list").keys, vec![k]);
    assert!(store.with_namespace("bad ns").is_err());
    assert!(store.with_namespace("a//b").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_secrets_carry_tags_and_kms_key() {
    let Some(moto) = blocking(Moto::shared).await else { return };
    let store = store(
        base_config(&moto.endpoint()).tag("team", "payments").tag("env", "test").kms_key_id("alias/custom"),
    );
    let k = key("tagged");
    store.set(&k, &SecretValue::from("v"), &Metadata::new()).await.expect("set");
    let raw = raw_client(&moto.endpoint());
    let desc = raw.describe_secret().secret_id(store.secret_name(&k)).send().await.expect("describe");
    let mut tags: Vec<(String, String)> = desc
        .tags()
        .iter()
        .map(|t| (t.key().unwrap_or_default().to_owned(), t.value().unwrap_or_default().to_owned()))
        .collect();
    tags.sort();
    assert_eq!(tags, [("env".to_owned(), "test".to_owned()), ("team".to_owned(), "payments".to_owned())]);
    assert_eq!(desc.kms_key_id(), Some("alias/custom"));
}

#[test]
fn constructors_refuse_bad_settings_before_any_io() {
    let id = || StoreId::new("aws-config-test").expect("id");
    let no_region = AwsConfig::new().static_credentials("AKID", SecretValue::from("s"));
    let no_creds = AwsConfig::new().region(REGION);
    for (what, config) in [("no region", no_region), ("no credentials", no_creds)] {
        let err = AwsStore::new(id(), config).expect_err(what);
        assert!(matches!(err, Error::Config { .. }), "{what}: {err:?}");
    }
    let config = base_config("http://127.0.0.1:9")
        .static_credentials("AKIDSHOWN", SecretValue::from("distinctive-secret-key"))
        .session_token(SecretValue::from("distinctive-session-token"));
    let shown_config = format!("{config:?}");
    let ok = AwsStore::new(id(), config).expect("valid settings build without I/O");
    assert_eq!(ok.kind(), credstore_core::StoreKind::AwsSecretsManager);
    assert_eq!(ok.id().as_str(), "aws-config-test");
    let shown = format!("{ok:?} {shown_config}");
    assert!(shown.contains("127.0.0.1:9") && shown.contains("AKIDSHOWN"), "{shown}");
    assert!(
        !shown.contains("distinctive-secret-key") && !shown.contains("distinctive-session-token"),
        "{shown}"
    );
}
