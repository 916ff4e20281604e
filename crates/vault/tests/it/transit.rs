//! The Transit key-encryption key against a real OpenBao dev server: each
//! test enables a Transit engine at a mount of its own and creates the keys
//! it uses. Wrapping and unwrapping a data key, bound to its store's uid and
//! key version; the wrong key, a missing key or mount, a token without the
//! policy, an unreachable, sealed or silent server; a key rotation; the
//! requests each call makes, counted by a proxy; and a canned server for
//! what OpenBao does not do (ignore `associated_data`, answer 500).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use credstore_conformance::unique_name;
use credstore_core::{Error, SecretValue, StoreId};
use credstore_seal::{DataKey, KeyProvider, KeyRecord, StoreUid, WrapContext, WrappedKey};
use credstore_test_servers::canned::{CannedServer, Response};
use credstore_test_servers::free_port;
use credstore_test_servers::openbao::OpenBao;
use credstore_test_servers::proxy::CountingProxy;
use credstore_vault::{TransitKeyProvider, VaultConfig};

use crate::util::{bao_cli, reason_of};

/// A Transit engine at a fresh mount of the shared server with the keys
/// `keys` (default type, aes256-gcm96); the mount.
fn transit_mount(bao: &OpenBao, keys: &[&str]) -> String {
    let mount = unique_name("transit");
    bao_cli(bao, &["secrets", "enable", &format!("-path={mount}"), "transit"]);
    for key in keys {
        bao_cli(bao, &["write", "-f", &format!("{mount}/keys/{key}")]);
    }
    mount
}

/// A provider of `mount/key` at `address` with `token`.
fn provider_at(address: &str, token: &str, mount: &str, key: &str) -> TransitKeyProvider {
    let config = VaultConfig::new(address).token(SecretValue::from(token)).timeout(Duration::from_secs(5));
    TransitKeyProvider::new(&config, mount, key).unwrap()
}

/// A provider of `mount/key` on `bao` with the root token.
fn provider(bao: &OpenBao, mount: &str, key: &str) -> TransitKeyProvider {
    provider_at(&bao.address(), bao.root_token(), mount, key)
}

fn store_id() -> StoreId {
    StoreId::new("transit-store").unwrap()
}

/// The reason of a `wrong key-encryption key` error; panics on any other.
fn wrong_key_reason(err: Error) -> String {
    let reason = reason_of!(err, Config);
    assert!(reason.starts_with("wrong key-encryption key"), "{reason}");
    reason
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_key_round_trips_in_one_request_to_wrap_and_one_to_unwrap() {
    let Some(bao) = OpenBao::shared() else { return };
    let mount = transit_mount(bao, &["kek"]);
    let proxy = CountingProxy::start(SocketAddr::from(([127, 0, 0, 1], bao.port()))).unwrap();
    let kek = provider_at(&proxy.url(), bao.root_token(), &mount, "kek");
    let store = store_id();
    let context = WrapContext::new(&store, StoreUid::generate(), 1);
    let dek = DataKey::generate();

    let wrapped = kek.wrap(&dek, &context).await.unwrap();
    assert_eq!(proxy.take(), [format!("POST /v1/{mount}/encrypt/kek")], "wrap");
    assert!(wrapped.as_bytes().starts_with(b"vault:v1:"), "{wrapped:?}");
    let back = kek.unwrap(&wrapped, &context).await.unwrap();
    assert_eq!(proxy.take(), [format!("POST /v1/{mount}/decrypt/kek")], "unwrap");
    assert_eq!(back.expose_secret(), dek.expose_secret());
    // The same data key wraps differently each time; both unwrap.
    let again = kek.wrap(&dek, &context).await.unwrap();
    assert_ne!(again, wrapped);
    assert_eq!(kek.unwrap(&again, &context).await.unwrap().expose_secret(), dek.expose_secret());
    assert_eq!(proxy.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_record_wraps_and_unwraps_through_transit() {
    let Some(bao) = OpenBao::shared() else { return };
    let mount = transit_mount(bao, &["kek"]);
    let kek = provider(bao, &mount, "kek");
    let store = store_id();
    let dek = DataKey::generate();
    let record = KeyRecord::wrap(&store, StoreUid::generate(), 1, &dek, &kek).await.unwrap();
    assert_eq!(
        (record.provider_kind(), record.key_ref()),
        ("vault-transit", format!("{mount}/kek").as_str())
    );
    let read = KeyRecord::from_bytes(&store, &record.to_bytes()).unwrap();
    assert_eq!(read.unwrap(&store, &kek).await.unwrap().expose_secret(), dek.expose_secret());
    // A rotation of the key-encryption key to another Transit key.
    bao_cli(bao, &["write", "-f", &format!("{mount}/keys/next")]);
    let next = provider(bao, &mount, "next");
    let rewrapped = read.rewrap(&store, &dek, &next).await.unwrap();
    assert_eq!(rewrapped.uid(), record.uid());
    assert_eq!(rewrapped.unwrap(&store, &next).await.unwrap().expose_secret(), dek.expose_secret());
    wrong_key_reason(rewrapped.unwrap(&store, &kek).await.unwrap_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_key_wrapped_by_one_transit_key_is_the_wrong_key_for_another() {
    let Some(bao) = OpenBao::shared() else { return };
    let mount = transit_mount(bao, &["a", "b"]);
    let (a, b) = (provider(bao, &mount, "a"), provider(bao, &mount, "b"));
    let store = store_id();
    let context = WrapContext::new(&store, StoreUid::generate(), 1);
    let wrapped = a.wrap(&DataKey::generate(), &context).await.unwrap();
    let err = b.unwrap(&wrapped, &context).await.unwrap_err();
    assert!(matches!(&err, Error::Config { store: s, .. } if s == &store), "{err:?}");
    let reason = wrong_key_reason(err);
    assert!(reason.contains(&format!("vault-transit {mount}/b")), "{reason}");
    assert!(reason.contains("message authentication failed"), "{reason}");
    // And a record from the other key, read through `KeyRecord`, says the same.
    let record = KeyRecord::wrap(&store, context.uid(), 1, &DataKey::generate(), &a).await.unwrap();
    wrong_key_reason(record.unwrap(&store, &b).await.unwrap_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_key_wrapped_for_another_store_uid_or_key_version_does_not_unwrap() {
    let Some(bao) = OpenBao::shared() else { return };
    let mount = transit_mount(bao, &["kek"]);
    let kek = provider(bao, &mount, "kek");
    let store = store_id();
    let uid = StoreUid::generate();
    let wrapped = kek.wrap(&DataKey::generate(), &WrapContext::new(&store, uid, 1)).await.unwrap();
    assert!(kek.unwrap(&wrapped, &WrapContext::new(&store, uid, 1)).await.is_ok());
    for (what, context) in [
        ("another store's uid", WrapContext::new(&store, StoreUid::generate(), 1)),
        ("another key version", WrapContext::new(&store, uid, 2)),
    ] {
        let err = kek.unwrap(&wrapped, &context).await.unwrap_err();
        let reason = wrong_key_reason(err);
        assert!(reason.contains("message authentication failed"), "{what}: {reason}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_key_or_mount_is_a_config_error() {
    let Some(bao) = OpenBao::shared() else { return };
    let mount = transit_mount(bao, &["kek"]);
    let store = store_id();
    let context = WrapContext::new(&store, StoreUid::generate(), 1);
    let wrapped = provider(bao, &mount, "kek").wrap(&DataKey::generate(), &context).await.unwrap();

    let missing = provider(bao, &mount, "no-such-key");
    let reason = reason_of!(missing.unwrap(&wrapped, &context).await.unwrap_err(), Config);
    assert_eq!(
        reason,
        format!("Transit key 'no-such-key' on mount '{mount}' at {} does not exist", bao.address())
    );

    let no_mount = provider(bao, &unique_name("no-mount"), "kek");
    for err in [
        no_mount.wrap(&DataKey::generate(), &context).await.unwrap_err(),
        no_mount.unwrap(&wrapped, &context).await.unwrap_err(),
    ] {
        let reason = reason_of!(err, Config);
        assert!(reason.starts_with(&format!("mount '{}' does not exist", no_mount.mount())), "{reason}");
    }

    // With upserts disabled, an encrypt does not create a missing key: the
    // wrap is refused the same way.
    bao_cli(bao, &["write", &format!("{mount}/config/keys"), "disable_upsert=true"]);
    let err = missing.wrap(&DataKey::generate(), &context).await.unwrap_err();
    assert!(reason_of!(err, Config).ends_with("does not exist"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_type_that_cannot_bind_the_context_is_a_config_error() {
    let Some(bao) = OpenBao::shared() else { return };
    let mount = transit_mount(bao, &[]);
    bao_cli(bao, &["write", "-f", &format!("{mount}/keys/rsa"), "type=rsa-2048"]);
    let store = store_id();
    let err = provider(bao, &mount, "rsa")
        .wrap(&DataKey::generate(), &WrapContext::new(&store, StoreUid::generate(), 1))
        .await
        .unwrap_err();
    let reason = reason_of!(err, Config);
    assert!(reason.contains("cannot bind associated data") && reason.contains("aes256-gcm96"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_policy_suffices_and_a_token_without_it_is_permission_denied() {
    let Some(bao) = OpenBao::shared() else { return };
    let mount = transit_mount(bao, &["kek", "other"]);
    // The policy the crate docs give, for `kek` only.
    let policy = unique_name("transit-policy");
    bao.write_policy(
        &policy,
        &format!(
            r#"
path "{mount}/encrypt/kek" {{ capabilities = ["update"] }}
path "{mount}/decrypt/kek" {{ capabilities = ["update"] }}
"#
        ),
    );
    let token = bao_cli(bao, &["token", "create", &format!("-policy={policy}"), "-field=token"]);
    let store = store_id();
    let context = WrapContext::new(&store, StoreUid::generate(), 1);
    let dek = DataKey::generate();
    let allowed = provider_at(&bao.address(), &token, &mount, "kek");
    let wrapped = allowed.wrap(&dek, &context).await.unwrap();
    assert_eq!(allowed.unwrap(&wrapped, &context).await.unwrap().expose_secret(), dek.expose_secret());

    let other = provider_at(&bao.address(), &token, &mount, "other");
    let wrapped_other = provider(bao, &mount, "other").wrap(&dek, &context).await.unwrap();
    for err in [
        other.wrap(&dek, &context).await.unwrap_err(),
        other.unwrap(&wrapped_other, &context).await.unwrap_err(),
    ] {
        assert!(matches!(&err, Error::PermissionDenied { store: s, .. } if s == &store), "{err:?}");
        assert!(!format!("{err} {err:?}").contains(&token), "{err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approle_login_wraps_and_unwraps() {
    let Some(bao) = OpenBao::shared() else { return };
    let mount = transit_mount(bao, &["kek"]);
    let policy = unique_name("transit-approle");
    bao.write_policy(
        &policy,
        &format!("path \"{mount}/encrypt/kek\" {{ capabilities = [\"update\"] }}\npath \"{mount}/decrypt/kek\" {{ capabilities = [\"update\"] }}\n"),
    );
    let role = bao.enable_approle(&unique_name("approle"), "kek", &policy, "1m", "5m");
    let config = VaultConfig::new(bao.address()).approle(
        &role.mount,
        &role.role_id,
        SecretValue::from(role.secret_id.as_str()),
    );
    let kek = TransitKeyProvider::new(&config, &mount, "kek").unwrap();
    let store = store_id();
    let context = WrapContext::new(&store, StoreUid::generate(), 1);
    let dek = DataKey::generate();
    let wrapped = kek.wrap(&dek, &context).await.unwrap();
    assert_eq!(kek.unwrap(&wrapped, &context).await.unwrap().expose_secret(), dek.expose_secret());
    assert!(!format!("{kek:?}").contains(&role.secret_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_transit_key_still_unwraps_what_its_old_version_wrapped() {
    let Some(bao) = OpenBao::shared() else { return };
    let mount = transit_mount(bao, &["kek"]);
    let kek = provider(bao, &mount, "kek");
    let store = store_id();
    let context = WrapContext::new(&store, StoreUid::generate(), 1);
    let dek = DataKey::generate();
    let old = kek.wrap(&dek, &context).await.unwrap();
    bao_cli(bao, &["write", "-f", &format!("{mount}/keys/kek/rotate")]);
    assert_eq!(kek.unwrap(&old, &context).await.unwrap().expose_secret(), dek.expose_secret());
    let new = kek.wrap(&dek, &context).await.unwrap();
    assert!(new.as_bytes().starts_with(b"vault:v2:"), "{new:?}");
    // Until min_decryption_version passes the old version: then a clear
    // configuration error, not a wrong key.
    bao_cli(bao, &["write", &format!("{mount}/keys/kek/config"), "min_decryption_version=2"]);
    let reason = reason_of!(kek.unwrap(&old, &context).await.unwrap_err(), Config);
    assert!(reason.contains("min_decryption_version") && !reason.starts_with("wrong"), "{reason}");
    assert_eq!(kek.unwrap(&new, &context).await.unwrap().expose_secret(), dek.expose_secret());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable_and_retriable() {
    let address = format!("http://127.0.0.1:{}", free_port());
    let kek = provider_at(&address, "credstore-root-NOT-SENT", "transit", "kek");
    let store = store_id();
    let context = WrapContext::new(&store, StoreUid::generate(), 1);
    let wrapped = WrappedKey::new(b"vault:v1:AAAA".to_vec()).unwrap();
    let started = Instant::now();
    for err in [
        kek.wrap(&DataKey::generate(), &context).await.unwrap_err(),
        kek.unwrap(&wrapped, &context).await.unwrap_err(),
    ] {
        assert!(err.is_retriable(), "{err:?}");
        assert_eq!(reason_of!(err, Unavailable), format!("connection refused at {address}"));
    }
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_server_is_unavailable() {
    let Some(bao) = OpenBao::start() else { return };
    let mount = transit_mount(&bao, &["kek"]);
    let kek = provider(&bao, &mount, "kek");
    let store = store_id();
    let context = WrapContext::new(&store, StoreUid::generate(), 1);
    let wrapped = kek.wrap(&DataKey::generate(), &context).await.unwrap();
    tokio::task::block_in_place(|| bao.seal());
    for err in [
        kek.wrap(&DataKey::generate(), &context).await.unwrap_err(),
        kek.unwrap(&wrapped, &context).await.unwrap_err(),
    ] {
        assert!(err.is_retriable(), "{err:?}");
        assert_eq!(reason_of!(err, Unavailable), "vault is sealed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_unavailable_at_the_timeout() {
    let addr = credstore_test_servers::silent_server();
    let timeout = Duration::from_millis(600);
    let config = VaultConfig::new(format!("http://{addr}")).token(SecretValue::from("t")).timeout(timeout);
    let kek = TransitKeyProvider::new(&config, "transit", "kek").unwrap();
    let store = store_id();
    let started = Instant::now();
    let err =
        kek.wrap(&DataKey::generate(), &WrapContext::new(&store, StoreUid::generate(), 1)).await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed >= timeout && elapsed < timeout * 3, "{elapsed:?}");
    assert!(err.is_retriable(), "{err:?}");
    assert!(reason_of!(err, Unavailable).starts_with("no answer from"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_is_retried_a_bounded_number_of_times_then_unavailable() {
    let server = CannedServer::start(|_| Response::json(500, r#"{"errors":["internal error"]}"#)).unwrap();
    let kek = provider_at(&server.url(), "t", "transit", "kek");
    let store = store_id();
    let err =
        kek.wrap(&DataKey::generate(), &WrapContext::new(&store, StoreUid::generate(), 1)).await.unwrap_err();
    assert!(err.is_retriable(), "{err:?}");
    assert_eq!(reason_of!(err, Unavailable), "vault answered HTTP 500: internal error");
    assert_eq!(server.requests().len(), 3, "three attempts");
}

/// A server whose Transit does not know `associated_data` ignores it with a
/// warning: the wrap would not be bound to its store, so it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_ignores_the_associated_data_is_refused() {
    let server = CannedServer::start(|_| {
        Response::json(
            200,
            r#"{"data":{"ciphertext":"vault:v1:AAAA","key_version":1},
                "warnings":["Endpoint ignored these unrecognized parameters: [associated_data]"]}"#,
        )
    })
    .unwrap();
    let kek = provider_at(&server.url(), "t", "transit", "kek");
    let store = store_id();
    let dek = DataKey::from_bytes(&[0x5A; 32]);
    let err = kek.wrap(&dek, &WrapContext::new(&store, StoreUid::generate(), 1)).await.unwrap_err();
    let reason = reason_of!(err, Config);
    assert!(reason.contains("ignored associated_data"), "{reason}");
    // What was sent: the data key and the context, base64, to the encrypt path.
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].target.as_str()),
        ("POST", "/v1/transit/encrypt/kek")
    );
    let body: serde_json::Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert!(body["plaintext"].is_string() && body["associated_data"].is_string(), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_and_errors_never_show_the_token() {
    let Some(bao) = OpenBao::shared() else { return };
    let mount = transit_mount(bao, &["kek"]);
    let kek = provider(bao, &mount, "kek");
    let shown = format!("{kek:?}");
    assert!(shown.contains(&mount) && shown.contains("kek") && shown.contains("token"), "{shown}");
    assert!(!shown.contains(bao.root_token()), "{shown}");
    let store = store_id();
    let context = WrapContext::new(&store, StoreUid::generate(), 1);
    let err = provider(bao, &mount, "missing")
        .unwrap(&WrappedKey::new(b"vault:v1:AAAA".to_vec()).unwrap(), &context)
        .await
        .unwrap_err();
    assert!(!format!("{err} {err:?} {err:#}").contains(bao.root_token()), "{err:?}");
}

/// Over TLS, with the same settings as a store's: the CA given is trusted,
/// and without it the server's certificate is refused, a configuration
/// error (retrying would not change it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_settings_are_the_stores_a_trusted_ca_wraps_an_unknown_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let Some(bao) = tokio::task::block_in_place(|| OpenBao::start_tls(dir.path())) else { return };
    let mount = transit_mount(&bao, &["kek"]);
    let config = VaultConfig::new(bao.address()).token(SecretValue::from(bao.root_token()));
    let store = store_id();
    let context = WrapContext::new(&store, StoreUid::generate(), 1);
    let dek = DataKey::generate();

    let trusted =
        TransitKeyProvider::new(&config.clone().ca_cert(bao.ca_cert().unwrap()), &mount, "kek").unwrap();
    let wrapped = trusted.wrap(&dek, &context).await.unwrap();
    assert_eq!(trusted.unwrap(&wrapped, &context).await.unwrap().expose_secret(), dek.expose_secret());

    let untrusted = TransitKeyProvider::new(&config, &mount, "kek").unwrap();
    let err = untrusted.unwrap(&wrapped, &context).await.unwrap_err();
    assert!(matches!(&err, Error::Config { .. }) && !err.is_retriable(), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(bao.root_token()), "{err:?}");
}
