//! `KmsKeyProvider` against moto's KMS, with keys each test creates through
//! the SDK (`CreateKey`); a counting proxy in front of moto for the request
//! counts, and canned loopback services for answers moto does not give
//! (moto 5 encrypts with a disabled key, never throttles, and answers a
//! `Decrypt` with another key's id with `AccessDeniedException` where KMS
//! answers `IncorrectKeyException`).

use std::time::{Duration, Instant};

use credstore_aws::{AwsConfig, KmsKeyProvider};
use credstore_conformance::unique_name;
use credstore_core::{Error, SecretValue, StoreId};
use credstore_seal::{
    DataKey, KeyLocation, KeyProvider, KeyRecord, MasterKey, StoreUid, WrapContext, WrappedKey,
};
use credstore_test_servers::canned::{CannedServer, Request, Response};
use credstore_test_servers::free_port;
use credstore_test_servers::moto::{Moto, ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};
use credstore_test_servers::proxy::CountingProxy;

const WRONG_KEY: &str = "wrong key-encryption key";

fn store_id() -> StoreId {
    StoreId::new(unique_name("kms")).expect("id")
}

fn config(endpoint: &str) -> AwsConfig {
    AwsConfig::new()
        .region(REGION)
        .endpoint_url(endpoint)
        .static_credentials(ACCESS_KEY_ID, SecretValue::from(SECRET_ACCESS_KEY))
}

fn provider(store: &StoreId, key_id: &str, endpoint: &str) -> KmsKeyProvider {
    KmsKeyProvider::new(store, key_id, &config(endpoint)).expect("provider")
}

/// A raw SDK client on moto, to create and look at keys as other AWS tools do.
fn raw_client(endpoint: &str) -> aws_sdk_kms::Client {
    raw_sdk_client!(aws_sdk_kms, endpoint)
}

/// A new symmetric encryption key on moto: its id and ARN.
async fn create_key(raw: &aws_sdk_kms::Client) -> (String, String) {
    let out = raw.create_key().description("credstore test").send().await.expect("CreateKey");
    let meta = out.key_metadata.expect("key metadata");
    (meta.key_id, meta.arn.expect("arn"))
}

/// The shared moto server's endpoint (`None` without one: skipped loudly,
/// or a failure under CI=true).
async fn moto() -> Option<String> {
    let moto = tokio::task::spawn_blocking(Moto::shared).await.expect("moto")?;
    Some(moto.endpoint())
}

fn assert_wrong_key(err: &Error, store: &StoreId) {
    assert!(matches!(err, Error::Config { store: s, .. } if s == store), "{err:?}");
    assert!(err.to_string().contains(&format!("{WRONG_KEY}: aws-kms")), "{err}");
    let Error::Config { reason, .. } = err else { unreachable!() };
    assert!(reason.starts_with(WRONG_KEY), "{reason}");
}

#[tokio::test]
async fn a_data_key_round_trips_through_kms_and_a_key_record() {
    let Some(endpoint) = moto().await else { return };
    let raw = raw_client(&endpoint);
    let (key_id, arn) = create_key(&raw).await;
    let store = store_id();
    let kek = provider(&store, &key_id, &endpoint);
    assert_eq!((kek.info().kind(), kek.info().key_ref()), ("aws-kms", key_id.as_str()));
    assert_eq!(kek.info().location(), &KeyLocation::Remote);

    let dek = DataKey::generate();
    let uid = StoreUid::generate();
    let context = WrapContext::new(&store, uid, 1);
    let wrapped = kek.wrap(&dek, &context).await.expect("wrap");
    assert!(
        !wrapped.as_bytes().windows(32).any(|w| w == dek.expose_secret()),
        "the data key is not stored in the clear"
    );
    // The key ARN KMS answered is recorded after the layout version.
    assert_eq!(&wrapped.as_bytes()[3..3 + arn.len()], arn.as_bytes());
    let back = kek.unwrap(&wrapped, &context).await.expect("unwrap");
    assert_eq!(back.expose_secret(), dek.expose_secret());

    // KMS itself decrypts the ciphertext with the documented context.
    let blob = &wrapped.as_bytes()[3 + arn.len()..];
    let mut decrypt = raw.decrypt().ciphertext_blob(aws_sdk_kms::primitives::Blob::new(blob));
    for (name, value) in context.pairs() {
        decrypt = decrypt.encryption_context(name, value);
    }
    let out = decrypt.send().await.expect("Decrypt with the SDK");
    assert_eq!(out.plaintext.expect("plaintext").as_ref(), dek.expose_secret());

    // Through the seal crate's key record, by key ARN and by alias alike.
    let alias = format!("alias/{}", unique_name("credstore"));
    raw.create_alias().alias_name(&alias).target_key_id(&key_id).send().await.expect("CreateAlias");
    for name in [arn.as_str(), alias.as_str()] {
        let kek = provider(&store, name, &endpoint);
        let record = KeyRecord::wrap(&store, uid, 3, &dek, &kek).await.expect("record");
        assert_eq!((record.provider_kind(), record.key_ref()), ("aws-kms", name));
        let record = KeyRecord::from_bytes(&store, &record.to_bytes()).expect("read back");
        let back = record.unwrap(&store, &kek).await.expect("unwrap the record");
        assert_eq!(back.expose_secret(), dek.expose_secret(), "{name}");
    }
}

#[tokio::test]
async fn a_data_key_wrapped_by_one_kms_key_is_refused_by_another_before_any_request() {
    let Some(endpoint) = moto().await else { return };
    let raw = raw_client(&endpoint);
    let ((key_a, arn_a), (key_b, arn_b)) = (create_key(&raw).await, create_key(&raw).await);
    let moto_addr: std::net::SocketAddr = endpoint.trim_start_matches("http://").parse().expect("addr");
    let proxy = CountingProxy::start(moto_addr).expect("proxy");
    let store = store_id();
    let dek = DataKey::generate();
    let record =
        KeyRecord::wrap(&store, StoreUid::generate(), 1, &dek, &provider(&store, &key_a, &proxy.url()))
            .await
            .expect("wrap under A");
    assert_eq!(proxy.take().len(), 1);
    for b in [key_b.as_str(), arn_b.as_str()] {
        let err = record.unwrap(&store, &provider(&store, b, &proxy.url())).await.expect_err("B unwraps A's");
        assert_wrong_key(&err, &store);
        assert!(err.to_string().contains(&format!("wrapped by {arn_a}")), "names the wrapping key: {err}");
        assert!(proxy.take().is_empty(), "refused before any request");
    }
    // Named by an alias, only KMS knows the key: the refusal comes from
    // `Decrypt` with B's id (moto answers AccessDenied, KMS
    // IncorrectKeyException, see the canned test below), naming A's ARN.
    let alias_b = format!("alias/{}", unique_name("b"));
    raw.create_alias().alias_name(&alias_b).target_key_id(&key_b).send().await.expect("CreateAlias");
    let err = record.unwrap(&store, &provider(&store, &alias_b, &proxy.url())).await.expect_err("alias of B");
    assert!(matches!(err, Error::PermissionDenied { .. } | Error::Config { .. }), "{err:?}");
    assert!(err.to_string().contains(&arn_a), "{err}");
    assert_eq!(proxy.take().len(), 1);
    // A still unwraps it.
    let back = record.unwrap(&store, &provider(&store, &key_a, &proxy.url())).await.expect("A");
    assert_eq!(back.expose_secret(), dek.expose_secret());
}

#[tokio::test]
async fn a_data_key_wrapped_for_another_uid_or_key_version_is_refused() {
    let Some(endpoint) = moto().await else { return };
    let raw = raw_client(&endpoint);
    let (key_id, _) = create_key(&raw).await;
    let store = store_id();
    let kek = provider(&store, &key_id, &endpoint);
    let uid = StoreUid::generate();
    let wrapped = kek.wrap(&DataKey::generate(), &WrapContext::new(&store, uid, 2)).await.expect("wrap");
    for (what, other) in [
        ("another uid", WrapContext::new(&store, StoreUid::generate(), 2)),
        ("another key version", WrapContext::new(&store, uid, 1)),
        ("a later key version", WrapContext::new(&store, uid, 3)),
    ] {
        let err = kek.unwrap(&wrapped, &other).await.expect_err(what);
        assert_wrong_key(&err, &store);
        assert!(err.to_string().contains("InvalidCiphertextException"), "{what}: {err}");
    }
    kek.unwrap(&wrapped, &WrapContext::new(&store, uid, 2)).await.expect("its own context");
    // A damaged record: a flipped ciphertext byte, then another layout.
    let mut bytes = wrapped.as_bytes().to_vec();
    *bytes.last_mut().expect("a byte") ^= 1;
    let err =
        kek.unwrap(&WrappedKey::new(bytes.clone()).expect("w"), &WrapContext::new(&store, uid, 2)).await;
    assert_wrong_key(&err.expect_err("flipped"), &store);
    bytes[0] = 9;
    let err = kek.unwrap(&WrappedKey::new(bytes).expect("w"), &WrapContext::new(&store, uid, 2)).await;
    let err = err.expect_err("another layout");
    assert_wrong_key(&err, &store);
    assert!(err.to_string().contains("not in the layout"), "{err}");
}

#[tokio::test]
async fn a_kms_key_that_does_not_exist_is_a_config_error() {
    let Some(endpoint) = moto().await else { return };
    let store = store_id();
    let missing = "11111111-2222-3333-4444-555555555555";
    let kek = provider(&store, missing, &endpoint);
    let err = kek.wrap(&DataKey::generate(), &WrapContext::new(&store, StoreUid::generate(), 1)).await;
    let err = err.expect_err("no such key");
    assert!(matches!(&err, Error::Config { store: s, .. } if s == &store), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("NotFoundException") && text.contains(missing), "{text}");
    assert!(!err.is_retriable());
    let source = std::error::Error::source(&err).expect("source");
    assert!(source.to_string().starts_with("Encrypt failed: NotFoundException"), "{source}");
}

/// A canned KMS: `Encrypt` answers a ciphertext of `arn`, `Decrypt` what
/// `decrypt` says.
fn canned_kms(arn: &'static str, decrypt: Response) -> CannedServer {
    CannedServer::start(move |req: &Request| match req.header("x-amz-target") {
        Some("TrentService.Encrypt") => {
            Response::json(200, &format!("{{\"CiphertextBlob\":\"AAECAwQFBgc=\",\"KeyId\":\"{arn}\"}}"))
        }
        _ => decrypt.clone(),
    })
    .expect("canned server")
}

fn kms_error(status: u16, code: &str) -> Response {
    Response::json(status, &format!("{{\"__type\":\"{code}\",\"message\":\"canned {code}\"}}"))
        .with_header("x-amzn-ErrorType", code)
}

#[tokio::test]
async fn kms_answers_map_to_the_key_provider_errors_and_only_retriable_ones_are_retried() {
    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/aaaaaaaa-1111-2222-3333-444444444444";
    let store = store_id();
    let context = WrapContext::new(&store, StoreUid::generate(), 1);
    for (status, code, attempts_made) in [
        (400, "IncorrectKeyException", 1),
        (400, "InvalidCiphertextException", 1),
        (400, "DisabledException", 1),
        (400, "KMSInvalidStateException", 1),
        (400, "AccessDeniedException", 1),
        (400, "ThrottlingException", 3),
        (500, "KMSInternalException", 3),
        (500, "KeyUnavailableException", 3),
    ] {
        let server = canned_kms(ARN, kms_error(status, code));
        // Named by alias: no check before the request.
        let kek = KmsKeyProvider::new(&store, "alias/canned", &config(&server.url()).max_attempts(3))
            .expect("provider");
        let wrapped = kek.wrap(&DataKey::generate(), &context).await.expect("canned Encrypt");
        let err = kek.unwrap(&wrapped, &context).await.expect_err(code);
        let text = err.to_string();
        assert!(text.contains(code), "{code}: {text}");
        match code {
            "IncorrectKeyException" | "InvalidCiphertextException" => {
                assert_wrong_key(&err, &store);
                assert!(text.contains(&format!("wrapped by {ARN}")), "{text}");
            }
            "DisabledException" | "KMSInvalidStateException" => {
                assert!(
                    matches!(err, Error::Config { .. }) && text.contains("alias/canned"),
                    "{code}: {err:?}"
                );
            }
            "AccessDeniedException" => {
                assert!(matches!(err, Error::PermissionDenied { .. }), "{code}: {err:?}");
                assert!(text.contains("kms:Decrypt") && text.contains(ARN), "{text}");
            }
            _ => assert!(matches!(err, Error::Unavailable { .. }) && err.is_retriable(), "{code}: {err:?}"),
        }
        let decrypts = server
            .requests()
            .iter()
            .filter(|r| r.header("x-amz-target") == Some("TrentService.Decrypt"))
            .count();
        assert_eq!(decrypts, attempts_made, "{code}: Decrypt requests");
    }
    // And on `Encrypt`: a disabled key is a Config error, sent once.
    let server = CannedServer::start(|_: &Request| kms_error(400, "DisabledException")).expect("canned");
    let kek = KmsKeyProvider::new(&store, "alias/canned", &config(&server.url()).max_attempts(3)).expect("p");
    let err = kek.wrap(&DataKey::generate(), &context).await.expect_err("disabled");
    assert!(matches!(&err, Error::Config { .. }) && err.to_string().contains("DisabledException"), "{err:?}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn an_unreachable_kms_is_unavailable_within_the_timeout() {
    let store = store_id();
    let context = WrapContext::new(&store, StoreUid::generate(), 1);
    let timeout = Duration::from_secs(2);
    let closed = format!("http://127.0.0.1:{}", free_port());
    let kek = KmsKeyProvider::new(&store, "alias/k", &config(&closed).timeout(timeout)).expect("provider");
    let started = Instant::now();
    let err = kek.wrap(&DataKey::generate(), &context).await.expect_err("closed port");
    assert!(
        matches!(&err, Error::Unavailable { store: s, .. } if s == &store) && err.is_retriable(),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("AWS KMS") && text.contains(&closed) && text.contains("connection refused"),
        "{text}"
    );
    let wrapped = WrappedKey::new(vec![1, 0, 0, 7]).expect("wrapped");
    let err = kek.unwrap(&wrapped, &context).await.expect_err("closed port");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert!(started.elapsed() < timeout, "two refused calls took {:?}", started.elapsed());

    // A service that accepts and never answers: bounded by the timeout.
    let silent = format!("http://{}", credstore_test_servers::silent_server());
    let timeout = Duration::from_millis(800);
    let kek = KmsKeyProvider::new(&store, "alias/k", &config(&silent).timeout(timeout)).expect("provider");
    let started = Instant::now();
    let err = kek.unwrap(&wrapped, &context).await.expect_err("silent");
    let took = started.elapsed();
    assert!(matches!(err, Error::Unavailable { .. }) && err.to_string().contains("within"), "{err:?}");
    assert!(
        took >= timeout - Duration::from_millis(100) && took <= timeout + Duration::from_secs(1),
        "{took:?}"
    );
}

#[tokio::test]
async fn one_kms_request_per_wrap_and_per_unwrap() {
    let Some(endpoint) = moto().await else { return };
    let (key_id, _) = create_key(&raw_client(&endpoint)).await;
    let moto_addr: std::net::SocketAddr = endpoint.trim_start_matches("http://").parse().expect("addr");
    let proxy = CountingProxy::start(moto_addr).expect("proxy");
    let store = store_id();
    let kek = provider(&store, &key_id, &proxy.url());
    let context = WrapContext::new(&store, StoreUid::generate(), 1);
    let dek = DataKey::generate();
    let wrapped = kek.wrap(&dek, &context).await.expect("wrap");
    assert_eq!(proxy.take(), ["POST /"], "one Encrypt");
    kek.unwrap(&wrapped, &context).await.expect("unwrap");
    assert_eq!(proxy.take(), ["POST /"], "one Decrypt");
    let record = KeyRecord::wrap(&store, context.uid(), 1, &dek, &kek).await.expect("record");
    assert_eq!(proxy.take().len(), 1, "KeyRecord::wrap");
    record.unwrap(&store, &kek).await.expect("record unwrap");
    assert_eq!(proxy.take().len(), 1, "KeyRecord::unwrap");
    record.rewrap(&store, &dek, &kek).await.expect("rewrap");
    assert_eq!(proxy.take().len(), 1, "KeyRecord::rewrap");
    // A record another kind of provider wrapped: refused without a call.
    let local = KeyRecord::wrap(&store, context.uid(), 1, &dek, &MasterKey::generate()).await.expect("local");
    let err = local.unwrap(&store, &kek).await.expect_err("wrapped by a master key");
    assert_wrong_key(&err, &store);
    assert!(proxy.take().is_empty(), "no request");
}

#[test]
fn debug_of_the_provider_and_its_settings_shows_no_secret() {
    let secret = "wJalrXUtnFEMI-K7MDENG-never-shown";
    let token = "session-token-never-shown";
    let config = AwsConfig::new()
        .region("eu-west-1")
        .static_credentials("AKIAVISIBLE", SecretValue::from(secret))
        .session_token(SecretValue::from(token));
    let kek = KmsKeyProvider::new(&store_id(), "alias/credstore", &config).expect("provider");
    let shown = format!("{kek:?} {kek:#?} {}", kek.info());
    assert!(shown.contains("alias/credstore") && shown.contains("eu-west-1"), "{shown}");
    assert!(!shown.contains(secret) && !shown.contains(token) && !shown.contains("AKIAVISIBLE"), "{shown}");
    let settings: credstore_aws::KmsKeySettings =
        toml::from_str("key_id = \"alias/credstore\"\nregion = \"eu-west-1\"").expect("settings");
    let shown = format!("{settings:?}");
    assert!(shown.contains("alias/credstore"), "{shown}");
    assert!(WrappedKey::new(vec![7; 40]).map(|w| format!("{w:?}")).expect("w") == "WrappedKey(40 bytes)");
}
