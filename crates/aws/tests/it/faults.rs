//! Fault and service-behaviour tests of `credstore-aws` against moto's
//! Secrets Manager API on loopback: a server stopped mid-run and restarted,
//! wrong credentials, refused and silent endpoints, delete-then-create
//! loops, listing past the service's page size, racing creators, the
//! on-AWS layout as other tools see it (text and binary values, the
//! namespace cap), conditional writes and the service's enforcement of
//! `UpdateSecretVersionStage`'s `RemoveFromVersionId`, `AWSCURRENT` shown on
//! two versions (moto), a description ahead of its value, and secrets last
//! written by credstore 0.1.
//!
//! Run through `scripts/test` (or with `.test-tools/venv/bin` on `PATH`);
//! without `moto_server` the tests skip loudly, and fail under `CI=true`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;
use credstore_aws::{AwsConfig, AwsStore, DeletionPolicy, MAX_SECRET_NAME_LEN};
use credstore_conformance::fixtures::key;
use credstore_conformance::unique_name;
use credstore_core::{
    Credential, CredentialKey, CredentialStore, CredentialStoreExt, Error, ListOptions, Metadata, Namespace,
    NamespaceError, SecretValue, StoreId,
};
use credstore_test_servers::free_port;
use credstore_test_servers::moto::{Moto, ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};

fn text(c: &Credential) -> &str {
    c.value.expose_str().expect("a text value")
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
    raw_sdk_client!(aws_sdk_secretsmanager, endpoint)
}

/// A store on the shared moto server (`None` without one), and a raw SDK
/// client to the same server: what another AWS tool sees.
async fn store_and_raw() -> Option<(AwsStore, Client)> {
    let moto = blocking(Moto::shared).await?;
    Some((store(base_config(&moto.endpoint())), raw_client(&moto.endpoint())))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

fn assert_retriable(op: &str, err: &Error) {
    assert!(
        matches!(err, Error::Unavailable { .. }) && err.is_retriable(),
        "{op}: expected Unavailable, got {err:?}"
    );
    // The native cause travels along: the operation and what failed.
    let source = std::error::Error::source(err).unwrap_or_else(|| panic!("{op}: no source in {err:?}"));
    assert!(source.to_string().contains(" failed"), "{op}: source {source}");
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
    assert_eq!(text(&store.get(&k).await.expect("get").expect("present")), "after");
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
            let source = std::error::Error::source(&err).map(|s| format!("{s} {s:?}"));
            let source = source.unwrap_or_else(|| panic!("{case}: no source in {err:?}"));
            let text = format!("{err} {err:?} {source} {store:?}");
            for secret in [user_secret.as_str(), wrong_secret.as_str(), v.expose_str().expect("text")] {
                assert!(!text.contains(secret), "{case}: a secret shows in {text}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_endpoint_fails_fast_with_a_reason() {
    let closed = format!("http://127.0.0.1:{}", free_port());
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
    let endpoint = format!("http://{}", credstore_test_servers::silent_server());
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
}

async fn delete_create_loop(policy: DeletionPolicy, rounds: usize) {
    let Some(moto) = blocking(Moto::shared).await else { return };
    let store = store(base_config(&moto.endpoint()).deletion(policy));
    let k = key("phoenix");
    let mut last_created = None;
    for round in 0..rounds {
        let v = SecretValue::new(format!("life-{round}"));
        let m = Metadata::try_from([("round", round.to_string().as_str())]).expect("metadata");
        // Create-only and upsert alike set a deleted key again.
        let out = if round % 2 == 0 { store.create(&k, &v, &m).await } else { store.set(&k, &v, &m).await }
            .unwrap_or_else(|e| panic!("{policy:?} round {round}: set: {e}"));
        assert!(out.created, "{policy:?} round {round}: a re-created key reports created");
        if let Some(previous) = last_created {
            assert!(out.created_at > previous, "{policy:?} round {round}: created_at was not reset");
        }
        last_created = Some(out.created_at);
        let c = store.get(&k).await.expect("get").expect("present");
        assert!(c.value == v, "{policy:?} round {round}: wrong value");
        assert_eq!(c.metadata, m);
        assert_eq!((c.created_at, c.updated_at), (out.created_at, out.updated_at));
        assert_eq!(c.version, out.version);
        // An overwrite keeps created_at and makes a new version.
        let again = store.set(&k, &v, &m).await.expect("overwrite");
        assert!(!again.created && again.created_at == out.created_at && again.updated_at > out.updated_at);
        assert_ne!(again.version, out.version);
        assert!(matches!(store.create(&k, &v, &m).await, Err(Error::PreconditionFailed { .. })));
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
    let Some((store, raw)) = store_and_raw().await else { return };
    let k = key("db.password");
    let name = store.secret_name(&k);
    assert_eq!(name, format!("{}/db.password", store.prefix()));

    // The SecretString is the value; the description holds the envelope;
    // the version is the VersionId of AWSCURRENT.
    let meta = Metadata::try_from([("owner", "ops \"team\" ✓")]).expect("m");
    let out = store.set(&k, &SecretValue::from("s3cr3t"), &meta).await.expect("set");
    let got = raw_current(&raw, &name).await;
    assert_eq!(got.secret_string(), Some("s3cr3t"));
    assert_eq!(got.version_id(), Some(out.version.as_str()));
    let desc = raw.describe_secret().secret_id(&name).send().await.expect("describe");
    let text_desc = desc.description().expect("description");
    assert!(text_desc.starts_with("{\"cs\":1,\"m\":{\"owner\":\"ops \\\"team\\\" ✓\"}"), "{text_desc}");
    // An overwrite is a new AWSCURRENT version, written through the staging label.
    let out = store.set(&k, &SecretValue::from("s3cr3t-2"), &meta).await.expect("overwrite");
    let got = raw_current(&raw, &name).await;
    assert_eq!((got.secret_string(), got.version_id()), (Some("s3cr3t-2"), Some(out.version.as_str())));
    assert_eq!(store.get(&k).await.expect("get").expect("present").version, out.version);

    // The empty value: a placeholder the envelope flags, read back as "".
    store.set(&k, &SecretValue::from(""), &Metadata::new()).await.expect("set empty");
    assert_eq!(raw_current(&raw, &name).await.secret_string(), Some(" "));
    assert_eq!(text(&store.get(&k).await.expect("get").expect("present")), "");
    // A real single space is not mistaken for the empty value.
    store.set(&k, &SecretValue::from(" "), &Metadata::new()).await.expect("set space");
    assert_eq!(text(&store.get(&k).await.expect("get").expect("present")), " ");

    // A value written by another tool wins, keeping the last metadata. (As a
    // rotation writes it: stage AWSPENDING, then move AWSCURRENT. moto's
    // plain PutSecretValue loses track of AWSCURRENT once the label has been
    // moved by UpdateSecretVersionStage, which real Secrets Manager does not.)
    store.set(&k, &SecretValue::from("mine"), &meta).await.expect("set");
    let before = store.get(&k).await.expect("get").expect("present");
    let rotated = "0c5f5b7e-5d1c-4a2b-9d4e-2f6a8b9c0d1e";
    raw.put_secret_value()
        .secret_id(&name)
        .client_request_token(rotated)
        .secret_string("rotated-elsewhere")
        .version_stages("AWSPENDING")
        .send()
        .await
        .expect("put");
    raw.update_secret_version_stage()
        .secret_id(&name)
        .version_stage("AWSCURRENT")
        .move_to_version_id(rotated)
        .remove_from_version_id(before.version.as_str())
        .send()
        .await
        .expect("rotate");
    let after = store.get(&k).await.expect("get").expect("present");
    assert_eq!(text(&after), "rotated-elsewhere");
    assert_eq!(after.version.as_str(), rotated);
    assert_eq!(after.metadata, meta);
    assert_eq!(after.created_at, before.created_at);
    assert_eq!(store.version(&k).await.expect("version").as_ref(), Some(&after.version));
    // ... and can be replaced at its own version.
    let replaced =
        store.replace(&k, &SecretValue::from("back"), &meta, &after.version).await.expect("replace");
    assert_eq!(text(&store.get(&k).await.expect("get").expect("present")), "back");
    assert_ne!(replaced.version, after.version);

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
    assert_eq!(text(&c), "plain");
    assert!(c.metadata.is_empty());
    assert!(c.updated_at >= c.created_at);
    let listed = store.list(&ListOptions::new()).await.expect("list").keys;
    assert_eq!(listed, vec![k.clone(), foreign.clone()]);
    // Overwriting it through the store keeps its creation date.
    let out = store.set(&foreign, &SecretValue::from("adopted"), &Metadata::new()).await.expect("set");
    assert!(!out.created);
    assert_eq!(out.created_at, c.created_at);

    // Namespaced handles share the client and stay apart from the parent.
    let ns = Namespace::new("tenant-1/project-a").expect("namespace");
    let tenant = store.with_namespace(&ns).expect("namespace");
    assert_eq!(tenant.namespace(), &ns);
    tenant.set(&k, &SecretValue::from("tenant value"), &Metadata::new()).await.expect("set");
    let tenant_name = format!("{}/tenant-1/project-a/db.password", store.prefix());
    assert_eq!(raw_current(&raw, &tenant_name).await.secret_string(), Some("tenant value"));
    assert_eq!(text(&store.get(&k).await.expect("get").expect("present")), "back");
    assert_eq!(store.list(&ListOptions::new()).await.expect("list").keys, vec![k.clone(), foreign]);
    assert_eq!(tenant.list(&ListOptions::new()).await.expect("list").keys, vec![k]);
}

/// The AWSCURRENT version as another tool reads it.
async fn raw_current(
    raw: &Client,
    name: &str,
) -> aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput {
    raw.get_secret_value().secret_id(name).version_stage("AWSCURRENT").send().await.expect("raw get")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_values_use_secret_binary_and_text_uses_secret_string() {
    let Some((store, raw)) = store_and_raw().await else { return };
    let k = key("blob");
    let name = store.secret_name(&k);
    let every_byte: Vec<u8> = (0..=255).collect();
    let meta = Metadata::try_from([("kind", "der")]).expect("m");

    // Created binary: SecretBinary, no SecretString.
    store.set(&k, &SecretValue::from(every_byte.clone()), &meta).await.expect("set binary");
    let got = raw_current(&raw, &name).await;
    assert_eq!(got.secret_binary().map(|b| b.as_ref()), Some(every_byte.as_slice()));
    assert_eq!(got.secret_string(), None);
    let c = store.get(&k).await.expect("get").expect("present");
    assert_eq!(c.value.expose_secret(), every_byte.as_slice());
    assert!(matches!(c.value.expose_str(), Err(Error::NotText { valid_up_to: 128 })));
    assert_eq!(c.metadata, meta);

    // Overwritten with text: SecretString again; and back to binary.
    store.set(&k, &SecretValue::from("now text"), &meta).await.expect("set text");
    let got = raw_current(&raw, &name).await;
    assert_eq!((got.secret_string(), got.secret_binary().is_none()), (Some("now text"), true));
    let invalid_utf8 = vec![b'o', b'k', 0xc3, 0x28];
    store.set(&k, &SecretValue::from(invalid_utf8.clone()), &meta).await.expect("set invalid utf-8");
    let got = raw_current(&raw, &name).await;
    assert_eq!(got.secret_binary().map(|b| b.as_ref()), Some(invalid_utf8.as_slice()));
    assert_eq!(store.get(&k).await.expect("get").expect("present").value.expose_secret(), invalid_utf8);

    // A binary secret made by another tool reads as its bytes.
    let foreign = key("foreign-blob");
    raw.create_secret()
        .name(store.secret_name(&foreign))
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(vec![0u8, 0xff, 0x10]))
        .send()
        .await
        .expect("raw create");
    let c = store.get(&foreign).await.expect("get").expect("present");
    assert_eq!(c.value.expose_secret(), &[0u8, 0xff, 0x10]);
    assert!(c.metadata.is_empty());
}

#[test]
fn namespaces_longer_than_secret_names_allow_are_refused_before_any_io() {
    // A closed port: a request would fail, and none is made.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let plain = store(base_config(&endpoint).prefix(""));
    assert_eq!(plain.max_namespace_len(), MAX_SECRET_NAME_LEN - 1 - 255);
    let prefixed = store(base_config(&endpoint).prefix("prod/app"));
    assert_eq!(prefixed.max_namespace_len(), 256 - "prod/app/".len());
    for s in [&plain, &prefixed] {
        let max = s.max_namespace_len();
        let fits = Namespace::new(format!("{}/{}", "a".repeat(100), "b".repeat(max - 101))).expect("ns");
        assert_eq!(fits.as_str().len(), max);
        assert!(s.with_namespace(&fits).is_ok());
        let over = Namespace::new(format!("{}/{}", "c".repeat(100), "d".repeat(max - 100))).expect("ns");
        match s.with_namespace(&over).expect_err("too long") {
            Error::InvalidNamespace { reason, .. } => {
                assert_eq!(reason, NamespaceError::TooLong { len: max + 1, max });
            }
            other => panic!("expected InvalidNamespace, got {other:?}"),
        }
        // Nesting counts the whole: a handle on `a` has max - 2 bytes left.
        let a = s.with_namespace(&Namespace::new("a").expect("ns")).expect("a");
        let child = |len: usize| Namespace::new(format!("{}/{}", "d".repeat(100), "e".repeat(len - 101)));
        assert!(a.with_namespace(&child(max - 2).expect("ns")).is_ok());
        let err = a.with_namespace(&child(max - 1).expect("ns")).expect_err("nested");
        assert!(matches!(err, Error::InvalidNamespace { .. }), "{err:?}");
        assert!(err.to_string().contains(&format!("the limit is {max}")), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_longest_namespace_and_key_make_a_512_character_secret_name() {
    let Some(moto) = blocking(Moto::shared).await else { return };
    let store = store(base_config(&moto.endpoint()));
    let max = store.max_namespace_len();
    let ns = Namespace::new("n".repeat(max)).expect("ns");
    let handle = store.with_namespace(&ns).expect("fits");
    let k = key(&"k".repeat(255));
    handle.set(&k, &SecretValue::from("at the limit"), &Metadata::new()).await.expect("set");
    assert_eq!(text(&handle.get(&k).await.expect("get").expect("present")), "at the limit");
    let name = format!("{}/{}/{}", store.prefix(), ns, k);
    assert_eq!(name.len(), MAX_SECRET_NAME_LEN);
    let raw = raw_client(&moto.endpoint());
    assert_eq!(raw_current(&raw, &name).await.secret_string(), Some("at the limit"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_writes_check_and_a_failed_condition_changes_nothing() {
    let Some((store, raw)) = store_and_raw().await else { return };
    let k = key("guarded");
    let name = store.secret_name(&k);
    let m1 = Metadata::try_from([("by", "one")]).expect("m");
    let m2 = Metadata::try_from([("by", "two")]).expect("m");

    let nowhere = credstore_core::Version::new("v1").expect("v");
    let missing = store.replace(&k, &SecretValue::from("x"), &m1, &nowhere).await;
    assert!(matches!(missing, Err(Error::PreconditionFailed { .. })), "replace of a missing key");
    assert!(!store.has(&k).await.expect("has"));

    let first = store.create(&k, &SecretValue::from("one"), &m1).await.expect("create");
    assert!(first.created);
    let err = store.create(&k, &SecretValue::from("other"), &m2).await.expect_err("second create");
    assert!(matches!(err, Error::PreconditionFailed { .. }) && !err.is_retriable(), "{err:?}");

    let second = store.replace(&k, &SecretValue::from("two"), &m2, &first.version).await.expect("replace");
    assert!(!second.created && second.version != first.version);
    assert_eq!(second.created_at, first.created_at);

    // A stale version: refused, and value, metadata and version stay.
    let before = store.get(&k).await.expect("get").expect("present");
    let stale = store.replace(&k, &SecretValue::from("stale"), &m1, &first.version).await;
    assert!(matches!(stale, Err(Error::PreconditionFailed { .. })), "{stale:?}");
    let after = store.get(&k).await.expect("get").expect("present");
    assert_eq!((text(&after), &after.metadata, &after.version), ("two", &m2, &second.version));
    assert_eq!((after.created_at, after.updated_at), (before.created_at, before.updated_at));
    let current = raw_current(&raw, &name).await;
    assert_eq!(current.version_id(), Some(second.version.as_str()));
    // No version but the current one is left staged.
    let desc = raw.describe_secret().secret_id(&name).send().await.expect("describe");
    for (version, labels) in desc.version_ids_to_stages().expect("stages") {
        if labels.iter().any(|l| l == "credstore-staged") {
            assert_eq!(version, second.version.as_str(), "a refused write left a staged version: {labels:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_replaces_from_one_version_have_exactly_one_winner() {
    let Some(moto) = blocking(Moto::shared).await else { return };
    let store = Arc::new(store(base_config(&moto.endpoint())));
    let k = key("contended");
    let mut version =
        store.set(&k, &SecretValue::from("start"), &Metadata::new()).await.expect("set").version;
    for round in 0..5 {
        let writers = (0..16).map(|i| {
            let (store, k, version) = (store.clone(), k.clone(), version.clone());
            tokio::spawn(async move {
                let value = SecretValue::new(format!("r{round}-w{i}"));
                let meta = Metadata::try_from([("writer", i.to_string().as_str())]).expect("m");
                (i, store.replace(&k, &value, &meta, &version).await)
            })
        });
        let results = futures::future::join_all(writers).await;
        let mut winners = Vec::new();
        for result in results {
            let (i, res) = result.expect("task");
            match res {
                Ok(out) => winners.push((i, out)),
                Err(Error::PreconditionFailed { .. }) => {}
                Err(e) => panic!("round {round}: writer {i} failed otherwise: {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {} winners", winners.len());
        let (i, out) = winners.remove(0);
        let c = store.get(&k).await.expect("get").expect("present");
        assert_eq!(text(&c), format!("r{round}-w{i}"), "round {round}");
        assert_eq!(c.metadata.get("writer"), Some(i.to_string().as_str()), "round {round}");
        assert_eq!(c.version, out.version);
        version = out.version;
    }
}

/// The experiment behind `replace_if_version`: does the service refuse
/// `UpdateSecretVersionStage` when `AWSCURRENT` is no longer on
/// `RemoveFromVersionId`, also when 16 moves race from one version?
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_service_refuses_all_but_one_of_racing_stage_moves() {
    let Some(moto) = blocking(Moto::shared).await else { return };
    let raw = Arc::new(raw_client(&moto.endpoint()));
    let name = format!("raw-race/{}", unique_name("s"));
    let created = raw.create_secret().name(&name).secret_string("v0").send().await.expect("create");
    let mut from = created.version_id().expect("version").to_owned();
    for round in 0..10 {
        let mut staged = Vec::new();
        for i in 0..16 {
            let token = format!("round-{round:02}-writer-{i:02}-{}", "0".repeat(20));
            raw.put_secret_value()
                .secret_id(&name)
                .client_request_token(&token)
                .secret_string(format!("r{round}w{i}"))
                .version_stages(format!("L{i}"))
                .send()
                .await
                .expect("stage");
            staged.push(token);
        }
        let moves = staged.iter().map(|to| {
            let (raw, name, to, from) = (raw.clone(), name.clone(), to.clone(), from.clone());
            tokio::spawn(async move {
                let res = raw
                    .update_secret_version_stage()
                    .secret_id(&name)
                    .version_stage("AWSCURRENT")
                    .move_to_version_id(&to)
                    .remove_from_version_id(&from)
                    .send()
                    .await;
                (to, res.is_ok())
            })
        });
        let won: Vec<String> = futures::future::join_all(moves)
            .await
            .into_iter()
            .map(|r| r.expect("task"))
            .filter(|(_, ok)| *ok)
            .map(|(to, _)| to)
            .collect();
        assert_eq!(won.len(), 1, "round {round}: {} moves from one version succeeded", won.len());
        let desc = raw.describe_secret().secret_id(&name).send().await.expect("describe");
        let current: Vec<&String> = desc
            .version_ids_to_stages()
            .expect("stages")
            .iter()
            .filter(|(_, labels)| labels.iter().any(|l| l == "AWSCURRENT"))
            .map(|(v, _)| v)
            .collect();
        assert_eq!(current, vec![&won[0]], "round {round}: AWSCURRENT is on the winner only");
        from = won[0].clone();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_abandoned_between_its_steps_reads_as_before_and_is_taken_over() {
    let Some(moto) = blocking(Moto::shared).await else { return };
    let timeout = Duration::from_secs(1);
    let store = store(base_config(&moto.endpoint()).timeout(timeout));
    let raw = raw_client(&moto.endpoint());
    let k = key("half-done");
    let name = store.secret_name(&k);
    let meta = Metadata::try_from([("by", "complete")]).expect("m");
    let done = store.set(&k, &SecretValue::from("complete"), &meta).await.expect("set");
    // What a writer that died after moving AWSCURRENT leaves: a staged
    // version of ours is current, the description names the previous one.
    let orphan = format!("credstore1-{}", "f".repeat(32));
    raw.put_secret_value()
        .secret_id(&name)
        .client_request_token(&orphan)
        .secret_string("orphaned value")
        .version_stages("credstore-staged")
        .send()
        .await
        .expect("stage");
    raw.update_secret_version_stage()
        .secret_id(&name)
        .version_stage("AWSCURRENT")
        .move_to_version_id(&orphan)
        .remove_from_version_id(done.version.as_str())
        .send()
        .await
        .expect("move");
    // Readers see the last complete write, value and metadata together.
    let c = store.get(&k).await.expect("get").expect("present");
    assert_eq!((text(&c), &c.metadata, &c.version), ("complete", &meta, &done.version));
    assert_eq!(store.version(&k).await.expect("version"), Some(done.version.clone()));
    // A write waits for the half-done one, then takes over.
    let started = Instant::now();
    let next = store.replace(&k, &SecretValue::from("next"), &Metadata::new(), &done.version).await;
    let next = next.expect("replace after the abandoned write");
    assert!(started.elapsed() >= timeout * 3, "took over after {:?}", started.elapsed());
    let c = store.get(&k).await.expect("get").expect("present");
    assert_eq!((text(&c), c.metadata.is_empty(), &c.version), ("next", true, &next.version));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_secrets_carry_tags_and_kms_key() {
    let Some(moto) = blocking(Moto::shared).await else { return };
    let store = store(
        base_config(&moto.endpoint()).tag("team", "payments").tag("env", "test").kms_key_id("alias/custom"),
    );
    let k = key("tagged");
    let out = store.set(&k, &SecretValue::from("v"), &Metadata::new()).await.expect("set");
    let raw = raw_client(&moto.endpoint());
    let desc = raw.describe_secret().secret_id(store.secret_name(&k)).send().await.expect("describe");
    let mut tags: Vec<(String, String)> = desc
        .tags()
        .iter()
        .map(|t| (t.key().unwrap_or_default().to_owned(), t.value().unwrap_or_default().to_owned()))
        .collect();
    tags.sort();
    // Yours, and the creation time this store keeps in a tag of its own.
    let created = out.created_at.duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_nanos();
    assert_eq!(
        tags,
        [
            ("credstore-created".to_owned(), created.to_string()),
            ("env".to_owned(), "test".to_owned()),
            ("team".to_owned(), "payments".to_owned())
        ]
    );
    assert_eq!(desc.kms_key_id(), Some("alias/custom"));
    // An overwrite keeps the tags and the KMS key.
    store.set(&k, &SecretValue::from("v2"), &Metadata::new()).await.expect("overwrite");
    let again = raw.describe_secret().secret_id(store.secret_name(&k)).send().await.expect("describe");
    assert_eq!((again.tags().len(), again.kms_key_id()), (3, Some("alias/custom")));
    assert_eq!(store.get(&k).await.expect("get").expect("present").created_at, out.created_at);
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
    assert_eq!(*ok.kind(), credstore_aws::KIND);
    assert_eq!(ok.id().as_str(), "aws-config-test");
    let shown = format!("{ok:?} {shown_config}");
    assert!(shown.contains("127.0.0.1:9") && shown.contains("AKIDSHOWN"), "{shown}");
    assert!(
        !shown.contains("distinctive-secret-key") && !shown.contains("distinctive-session-token"),
        "{shown}"
    );
}

/// moto keeps `AWSCURRENT` on a version `UpdateSecretVersionStage` moved it
/// to when a later `UpdateSecret` makes a new current version, so it shows
/// the label twice; the store goes by the version the description names,
/// and replaces from it go through at once (no write is taken for one
/// between its steps).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_shown_on_two_versions_reads_and_replaces_as_the_described_one() {
    let Some((store, raw)) = store_and_raw().await else { return };
    let k = key("twice-current");
    let name = store.secret_name(&k);
    let mut last = store.set(&k, &SecretValue::from("v0"), &Metadata::new()).await.expect("set");
    for round in 0..4 {
        let started = Instant::now();
        let value = format!("replaced-{round}");
        let replaced =
            store.replace(&k, &SecretValue::new(value.clone()), &Metadata::new(), &last.version).await;
        let replaced = replaced.unwrap_or_else(|e| panic!("round {round}: replace: {e}"));
        assert!(started.elapsed() < Duration::from_secs(3), "round {round}: the replace waited");
        let c = store.get(&k).await.expect("get").expect("present");
        assert_eq!((text(&c), &c.version), (value.as_str(), &replaced.version), "round {round}");
        let value = format!("set-{round}");
        last = store.set(&k, &SecretValue::new(value.clone()), &Metadata::new()).await.expect("set");
        let c = store.get(&k).await.expect("get").expect("present");
        assert_eq!((text(&c), &c.version), (value.as_str(), &last.version), "round {round}");
        assert_eq!(store.version(&k).await.expect("version"), Some(last.version.clone()));
    }
    let desc = raw.describe_secret().secret_id(&name).send().await.expect("describe");
    let current = desc
        .version_ids_to_stages()
        .expect("stages")
        .values()
        .filter(|labels| labels.iter().any(|l| l == "AWSCURRENT"))
        .count();
    assert!(current >= 2, "moto no longer shows AWSCURRENT twice ({current}); this test can go");
}

/// A description naming a version of ours that does not exist (what a
/// reader would see of an `UpdateSecret` half-way) is never paired with the
/// current value: the read looks again, then gives up with a retriable
/// conflict; the next write settles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_description_ahead_of_its_value_is_not_paired_with_another_value() {
    let Some(moto) = blocking(Moto::shared).await else { return };
    let config = base_config(&moto.endpoint());
    let store = store(config.clone());
    let raw = raw_client(&moto.endpoint());
    let k = key("ahead");
    let name = store.secret_name(&k);
    store.set(&k, &SecretValue::from("settled"), &Metadata::new()).await.expect("set");
    let ahead =
        format!("{{\"cs\":2,\"m\":{{\"by\":\"ahead\"}},\"u\":1,\"v\":\"credstore1-{}\"}}", "0".repeat(32));
    raw.update_secret().secret_id(&name).description(ahead).send().await.expect("describe ahead");
    // The writer knows the version it wrote and the envelope written with
    // it: still that pair.
    let c = store.get(&k).await.expect("get").expect("present");
    assert_eq!((text(&c), c.metadata.is_empty()), ("settled", true));
    // A store that has not seen the version reads the description, and
    // looks again rather than pair them.
    let reader = self::store(config);
    let err = reader.get(&k).await.expect_err("a value paired with another write's metadata");
    assert!(matches!(err, Error::Conflict { .. }) && err.is_retriable(), "{err:?}");
    let out = store.set(&k, &SecretValue::from("next"), &Metadata::new()).await.expect("set");
    let c = reader.get(&k).await.expect("get").expect("present");
    assert_eq!((text(&c), c.metadata.is_empty(), &c.version), ("next", true, &out.version));
}

/// A secret last written by credstore 0.1 (layout 1: `created_at` in the
/// envelope, no tag) reads with its times; an overwrite reports the
/// `created_at` readers then see (the envelope's, tagged, when the describe
/// sent with the update saw it; else the secret's creation date), and later
/// writes keep it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_written_by_0_1_keeps_agreeing_times_when_overwritten() {
    let Some((store, raw)) = store_and_raw().await else { return };
    let k = key("from-0-1");
    let name = store.secret_name(&k);
    let (c, u) = (1_600_000_000_123_456_789u64, 1_600_000_100_000_000_001u64);
    let nanos = |n: u64| std::time::UNIX_EPOCH + Duration::from_nanos(n);
    let v0 = format!("credstore1-{}", "1".repeat(32));
    raw.create_secret()
        .name(&name)
        .secret_string("old")
        .client_request_token(&v0)
        .description(format!("{{\"cs\":1,\"m\":{{\"by\":\"0.1\"}},\"c\":{c},\"u\":{u},\"v\":\"{v0}\"}}"))
        .send()
        .await
        .expect("raw create");
    let got = store.get(&k).await.expect("get").expect("present");
    assert_eq!((text(&got), got.version.as_str(), got.metadata.get("by")), ("old", v0.as_str(), Some("0.1")));
    assert_eq!((got.created_at, got.updated_at), (nanos(c), nanos(u)));

    let out = store.set(&k, &SecretValue::from("new"), &Metadata::new()).await.expect("overwrite");
    assert!(!out.created);
    let desc = raw.describe_secret().secret_id(&name).send().await.expect("describe");
    let service_date = desc.created_date().map(|d| std::time::SystemTime::try_from(*d).expect("date"));
    assert!(
        out.created_at == nanos(c) || Some(out.created_at) == service_date,
        "created_at {:?} is neither the envelope's nor the service's",
        out.created_at
    );
    let after = store.get(&k).await.expect("get").expect("present");
    assert_eq!((text(&after), after.created_at, after.updated_at), ("new", out.created_at, out.updated_at));
    let replaced = store.replace(&k, &SecretValue::from("newer"), &Metadata::new(), &out.version).await;
    let replaced = replaced.expect("replace");
    let again = store.set(&k, &SecretValue::from("newest"), &Metadata::new()).await.expect("overwrite");
    assert_eq!((replaced.created_at, again.created_at), (out.created_at, out.created_at));
    assert_eq!(store.get(&k).await.expect("get").expect("present").created_at, out.created_at);
}
