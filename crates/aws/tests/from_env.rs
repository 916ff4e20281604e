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

            // No region in the settings or the chain: refused when opened.
            std::env::remove_var("AWS_REGION");
            let settings: credstore_aws::AwsSettings = toml::from_str("prefix = \"x\"").expect("settings");
            let err = settings.open(id(), &ctx).await.expect_err("no region");
            assert!(matches!(&err, Error::Config { reason, .. } if reason.contains("region")), "{err:?}");
        }
    });
}
