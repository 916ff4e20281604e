//! Nothing secret reaches the logs: every `tracing` event (and `log` record)
//! at TRACE level, from this crate, vaultrs and the HTTP stack, is captured
//! while a token store, an AppRole store and a JWT store work, fail and
//! probe, and the capture is searched for the values, the root token, the
//! secret id and the JWT.

use std::time::Duration;

use credstore_conformance::fixtures::LogCapture;
use credstore_conformance::unique_name;
use credstore_core::{
    CredentialKey, CredentialStore, CredentialStoreExt, ListOptions, Metadata, Namespace, SecretValue,
    StoreId,
};
use credstore_test_servers::free_port;
use credstore_test_servers::jwt::JwtSigner;
use credstore_test_servers::openbao::OpenBao;
use credstore_vault::{VaultConfig, VaultStore};

use crate::util::prefix_policy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_value_token_or_secret_id_in_trace_logs() {
    let Some(bao) = OpenBao::shared() else { return };
    let capture = LogCapture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let prefix = unique_name("logs");
    let policy = tokio::task::block_in_place(|| prefix_policy(bao, &prefix));
    let role = tokio::task::block_in_place(|| {
        bao.enable_approle(&unique_name("approle"), "logs", &policy, "1m", "5m")
    });
    let signer = JwtSigner::generate();
    let jwt_role = tokio::task::block_in_place(|| {
        bao.enable_jwt(&unique_name("jwt"), "logs", &policy, &signer.public_key_pem(), "1m", "5m")
    });
    let jwt_dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique_name("logs-jwt"));
    std::fs::create_dir_all(&jwt_dir).unwrap();
    let jwt_file = jwt_dir.join("token");
    let jwt =
        signer.token("logs", &jwt_role.audience, std::time::SystemTime::now() + Duration::from_secs(600));
    std::fs::write(&jwt_file, &jwt).unwrap();
    let value = SecretValue::new(unique_name("VALUE-SECRET"));
    let token_store = VaultStore::new(
        StoreId::new("vault-logs").unwrap(),
        VaultConfig::new(bao.address()).token(SecretValue::from(bao.root_token())).prefix(&prefix),
    )
    .unwrap();
    let approle_store = VaultStore::new(
        StoreId::new("vault-logs-approle").unwrap(),
        VaultConfig::new(bao.address())
            .approle(&role.mount, &role.role_id, SecretValue::from(role.secret_id.as_str()))
            .prefix(&format!("{prefix}/approle")),
    )
    .unwrap();
    let jwt_store = VaultStore::new(
        StoreId::new("vault-logs-jwt").unwrap(),
        VaultConfig::new(bao.address())
            .jwt(&jwt_role.role, &jwt_file)
            .jwt_mount(&jwt_role.mount)
            .prefix(&format!("{prefix}/jwt")),
    )
    .unwrap();
    let down = VaultStore::new(
        StoreId::new("vault-logs-down").unwrap(),
        VaultConfig::new(format!("http://127.0.0.1:{}", free_port()))
            .token(SecretValue::from(bao.root_token()))
            .timeout(Duration::from_secs(1)),
    )
    .unwrap();

    let k = CredentialKey::new("logged").unwrap();
    let meta = Metadata::try_from([("owner", "logs")]).unwrap();
    for store in [&token_store, &approle_store, &jwt_store] {
        assert!(store.check_availability().await.available);
        store.set(&k, &value, &meta).await.unwrap();
        assert!(store.get(&k).await.unwrap().unwrap().value == value);
        store.list(&ListOptions::new()).await.unwrap();
        let current = store.version(&k).await.unwrap().expect("present");
        assert!(store.create(&k, &value, &meta).await.is_err(), "exists");
        store.replace(&k, &value, &meta, &current).await.unwrap();
        assert!(store.replace(&k, &value, &meta, &current).await.is_err(), "stale");
        assert!(store.delete(&k).await.unwrap());
    }
    // The token store writes where the AppRole may not: a refusal, logged.
    let outside = token_store.with_namespace(&Namespace::new("outside").unwrap()).unwrap();
    outside.set(&k, &value, &meta).await.unwrap();
    assert!(down.set(&k, &value, &meta).await.is_err());
    assert!(!down.check_availability().await.available);

    let logs = capture.text();
    assert!(logs.contains("vault AppRole login"), "the capture works: {} bytes", logs.len());
    assert!(logs.contains("vault JWT login"), "the JWT store logged in");
    // A JWT login that is refused is logged too, without the JWT.
    let expired =
        signer.token("logs", &jwt_role.audience, std::time::SystemTime::now() - Duration::from_secs(60));
    std::fs::write(&jwt_file, &expired).unwrap();
    let refused = VaultStore::new(
        StoreId::new("vault-logs-jwt-expired").unwrap(),
        VaultConfig::new(bao.address()).jwt(&jwt_role.role, &jwt_file).jwt_mount(&jwt_role.mount),
    )
    .unwrap();
    assert!(refused.get(&k).await.is_err());
    let logs = capture.text();
    let signature = |t: &str| t.rsplit('.').next().unwrap().to_owned();
    for (what, secret) in [
        ("value", value.expose_str().unwrap()),
        ("root token", bao.root_token()),
        ("secret id", role.secret_id.as_str()),
        ("JWT", jwt.as_str()),
        ("JWT signature", &signature(&jwt)),
        ("expired JWT", expired.as_str()),
    ] {
        assert!(!logs.contains(secret), "the {what} appears in the logs");
    }
    std::fs::remove_dir_all(&jwt_dir).unwrap();
}
