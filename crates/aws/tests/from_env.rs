//! `AwsStore::from_env` against moto: the standard aws-config chain reads the
//! environment, and `AwsConfig` settings override it.
//!
//! One test in its own binary, because it sets process environment
//! variables; it points the shared config files at nothing and disables
//! instance metadata, so no request leaves loopback.

use std::time::Duration;

use credstore_aws::{AwsConfig, AwsStore};
use credstore_conformance::unique_name;
use credstore_core::{
    CredentialKey, CredentialStore, CredentialStoreExt, Error, Metadata, SecretValue, StoreId,
};
use credstore_test_servers::moto::{Moto, ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};

#[test]
fn from_env_uses_the_chain_and_config_overrides_it() {
    // Before any other thread exists: set the environment, then start moto.
    let missing = std::env::temp_dir().join(unique_name("no-aws-config"));
    for (name, value) in [
        ("AWS_CONFIG_FILE", missing.to_str().expect("utf-8 path")),
        ("AWS_SHARED_CREDENTIALS_FILE", missing.to_str().expect("utf-8 path")),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
    ] {
        std::env::set_var(name, value);
    }
    for name in [
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
        "AWS_ENDPOINT_URL_KMS",
    ] {
        std::env::remove_var(name);
    }
    let Some(moto) = Moto::start() else { return };
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        let id = || StoreId::new(unique_name("aws-env")).expect("id");
        let prefix = unique_name("env");

        // No region anywhere: a configuration error, before any request.
        let err = AwsStore::from_env(id(), AwsConfig::new()).await.expect_err("no region");
        assert!(matches!(&err, Error::Config { reason, .. } if reason.contains("region")), "{err:?}");

        // Region and endpoint from the environment, credentials from the environment.
        std::env::set_var("AWS_REGION", REGION);
        std::env::set_var("AWS_ENDPOINT_URL", moto.endpoint());
        let store = AwsStore::from_env(id(), AwsConfig::new().prefix(&prefix)).await.expect("from_env");
        let k = CredentialKey::new("from-env").expect("key");
        store.set(&k, &SecretValue::from("chain"), &Metadata::new()).await.expect("set");
        assert_eq!(
            store.get(&k).await.expect("get").expect("present").value.expose_str().expect("text"),
            "chain"
        );
        assert!(store.check_availability().await.available);

        // Plain HTTP to a host that is not loopback, from the environment:
        // refused before any request, naming where it came from, unless allowed.
        for var in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SECRETS_MANAGER"] {
            std::env::set_var(var, "http://secretsmanager.internal:4566");
            let err = AwsStore::from_env(id(), AwsConfig::new()).await.expect_err("cleartext endpoint");
            let text = err.to_string();
            assert!(matches!(&err, Error::Config { .. }), "{var}: {err:?}");
            assert!(
                text.contains("AWS_ENDPOINT_URL") && text.contains("allow_insecure_http"),
                "{var}: {text}"
            );
            AwsStore::from_env(id(), AwsConfig::new().allow_insecure_http(true)).await.expect("allowed");
            std::env::remove_var(var);
        }
        std::env::set_var("AWS_ENDPOINT_URL", moto.endpoint());

        // An explicit endpoint beats AWS_ENDPOINT_URL: a closed port, so it fails.
        let closed = format!("http://127.0.0.1:{}", credstore_test_servers::free_port());
        let config = AwsConfig::new()
            .prefix(&prefix)
            .endpoint_url(&closed)
            .timeout(Duration::from_secs(2))
            .max_attempts(1);
        let overridden = AwsStore::from_env(id(), config).await.expect("from_env");
        let a = overridden.check_availability().await;
        assert!(!a.available && a.reason.as_deref().unwrap_or("").contains(&closed), "{a:?}");

        // Explicit credentials beat the environment's; moto does not check
        // them here, so the data is the same.
        let config = AwsConfig::new()
            .prefix(&prefix)
            .static_credentials("AKIDOTHER", SecretValue::from("other-secret"));
        let explicit = AwsStore::from_env(id(), config).await.expect("from_env");
        assert!(explicit.has(&k).await.expect("has"));

        // The settings of a config file: the same store, opened from a
        // `[[stores]]` table (without id, type and cache).
        #[cfg(feature = "serde")]
        {
            let ctx = credstore_core::config::ConfigContext::new(env!("CARGO_MANIFEST_DIR"));
            let table =
                format!("endpoint = \"{}\"\nprefix = \"{prefix}/\"\ntimeout_ms = 5000\n", moto.endpoint());
            let settings: credstore_aws::AwsSettings = toml::from_str(&table).expect("settings");
            let opened = settings.open(id(), &ctx).await.expect("open");
            assert_eq!(opened.prefix(), prefix, "the trailing / is dropped");
            let got = opened.get(&k).await.expect("get").expect("present");
            assert_eq!(got.value.expose_str().expect("text"), "chain");

            // The same store named by a URI: the region as its host, the
            // credentials from the environment.
            let uri =
                format!("aws-sm://{REGION}?endpoint={}&prefix={prefix}&timeout_ms=5000", moto.endpoint());
            let mut schemes = credstore_core::SchemeRegistry::new();
            schemes.register(credstore_aws::AwsScheme).expect("register");
            let named = schemes.open(&uri).await.expect("open the URI");
            assert_eq!(named.info().kind(), &credstore_aws::KIND);
            assert_eq!(
                named.get(&k).await.expect("get").expect("present").value.expose_str().expect("text"),
                "chain"
            );
            let k2 = CredentialKey::new("from-uri").expect("key");
            named
                .set(&k2, &SecretValue::from("named"), &Metadata::new())
                .await
                .expect("set through the URI's store");
            assert!(opened.has(&k2).await.expect("has"), "the URI's store is the settings' store");

            // A KMS key provider from a store's `key` table, on the same
            // chain: AWS_ENDPOINT_URL reaches moto's KMS too.
            kms_provider_from_settings(&moto.endpoint(), &ctx).await;

            // No region in the settings or the chain: refused when opened.
            std::env::remove_var("AWS_REGION");
            let settings: credstore_aws::AwsSettings = toml::from_str("prefix = \"x\"").expect("settings");
            let err = settings.open(id(), &ctx).await.expect_err("no region");
            assert!(matches!(&err, Error::Config { reason, .. } if reason.contains("region")), "{err:?}");
        }
    });
}

/// `KmsKeySettings::open` with the environment set above: a round trip
/// through moto's KMS on a key made with the SDK; `AWS_ENDPOINT_URL_KMS`
/// wins over `AWS_ENDPOINT_URL` for KMS only, and is refused in plain HTTP
/// to a host that is not loopback.
#[cfg(feature = "serde")]
async fn kms_provider_from_settings(endpoint: &str, ctx: &credstore_core::config::ConfigContext) {
    use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
    use credstore_aws::KmsKeySettings;
    use credstore_seal::{DataKey, KeyProvider, StoreUid, WrapContext};

    let raw = aws_sdk_kms::Client::from_conf(
        aws_sdk_kms::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None, None, "test"))
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build(),
    );
    let key = raw.create_key().send().await.expect("CreateKey").key_metadata.expect("metadata").key_id;
    let store = StoreId::new(unique_name("kms-env")).expect("id");
    let settings = |extra: &str| -> KmsKeySettings {
        toml::from_str(&format!("key_id = \"{key}\"\ntimeout_ms = 2000\n{extra}")).expect("settings")
    };
    let context = WrapContext::new(&store, StoreUid::generate(), 1);
    let dek = DataKey::generate();
    let kek = settings("").open(&store, ctx).await.expect("open");
    assert_eq!(kek.endpoint(), endpoint, "AWS_ENDPOINT_URL");
    let wrapped = kek.wrap(&dek, &context).await.expect("wrap");
    assert_eq!(kek.unwrap(&wrapped, &context).await.expect("unwrap").expose_secret(), dek.expose_secret());

    // The Secrets Manager variable does not move KMS; the KMS one does.
    std::env::set_var("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:9");
    let kek = settings("").open(&store, ctx).await.expect("open");
    kek.unwrap(&wrapped, &context).await.expect("still moto");
    std::env::remove_var("AWS_ENDPOINT_URL_SECRETS_MANAGER");
    let closed = format!("http://127.0.0.1:{}", credstore_test_servers::free_port());
    std::env::set_var("AWS_ENDPOINT_URL_KMS", &closed);
    let kek = settings("").open(&store, ctx).await.expect("open");
    let err = kek.unwrap(&wrapped, &context).await.expect_err("closed port");
    assert!(matches!(&err, Error::Unavailable { .. }) && err.to_string().contains(&closed), "{err:?}");
    // The settings' endpoint wins over the environment's.
    let kek = settings(&format!("endpoint = \"{endpoint}\"")).open(&store, ctx).await.expect("open");
    kek.unwrap(&wrapped, &context).await.expect("the settings' endpoint");
    std::env::set_var("AWS_ENDPOINT_URL_KMS", "http://kms.internal:4566");
    let err = settings("").open(&store, ctx).await.expect_err("cleartext endpoint");
    let text = err.to_string();
    assert!(text.contains("AWS_ENDPOINT_URL_KMS") && text.contains("allow_insecure_http"), "{text}");
    std::env::remove_var("AWS_ENDPOINT_URL_KMS");

    // The settings' timeout bounds a call to a service that never answers,
    // retries included.
    let silent = format!("http://{}", credstore_test_servers::silent_server());
    let kek: KmsKeySettings =
        toml::from_str(&format!("key_id = \"{key}\"\nendpoint = \"{silent}\"\ntimeout_ms = 800"))
            .expect("settings");
    let kek = kek.open(&store, ctx).await.expect("open");
    let started = std::time::Instant::now();
    let err = kek.unwrap(&wrapped, &context).await.expect_err("silent");
    let took = started.elapsed();
    assert!(matches!(&err, Error::Unavailable { .. }) && err.to_string().contains("within 800ms"), "{err:?}");
    assert!(took >= Duration::from_millis(700) && took <= Duration::from_millis(1800), "{took:?}");
}
