//! Builds the Secrets Manager SDK client from an [`AwsConfig`]: explicitly,
//! or from the standard aws-config chain.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_secretsmanager::config::retry::RetryConfig;
use aws_sdk_secretsmanager::config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager::config::{Credentials, Region, SharedHttpClient};
use aws_sdk_secretsmanager::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use credstore_core::{Error, Result, StoreId};

use crate::config::StaticCredentials;
use crate::errors::Target;
use crate::AwsConfig;

/// The HTTPS client: hyper on rustls with ring, system trust roots.
fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

fn timeouts(timeout: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .operation_attempt_timeout(timeout)
        .operation_timeout(timeout)
        .build()
}

fn retries(max_attempts: u32) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(max_attempts)
        .with_initial_backoff(Duration::from_millis(50))
        .with_max_backoff(Duration::from_secs(2))
}

fn credentials(c: &StaticCredentials) -> Credentials {
    Credentials::new(
        c.access_key_id.clone(),
        text(&c.secret_access_key),
        c.session_token.as_ref().map(text),
        None,
        "credstore-static",
    )
}

/// Credentials are text; [`crate::AwsConfig::validate`] refuses binary ones.
fn text(value: &credstore_core::SecretValue) -> String {
    value.expose_str().unwrap_or_default().to_owned()
}

fn target(store: &StoreId, config: &AwsConfig, region: &str) -> Target {
    let (endpoint, overridden) = match &config.endpoint_url {
        Some(url) => (url.clone(), true),
        None => {
            let domain = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
            (format!("https://secretsmanager.{region}.{domain}"), false)
        }
    };
    Target {
        store: store.clone(),
        endpoint,
        overridden,
        region: region.to_owned(),
        timeout: config.effective_timeout(),
    }
}

/// A client from explicit settings only: no environment, profile or
/// instance metadata is read.
pub(crate) fn explicit(store: &StoreId, config: &AwsConfig) -> Result<(Client, Target)> {
    let missing = |what: &str| {
        Error::config(
            store,
            format!("AwsStore::new needs {what}; use AwsStore::from_env for the standard AWS chain"),
        )
    };
    let region = config.region.as_deref().ok_or_else(|| missing("a region"))?;
    let creds = config.credentials.as_ref().ok_or_else(|| missing("static credentials"))?;
    let mut builder = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(credentials(creds))
        .http_client(http_client())
        .timeout_config(timeouts(config.effective_timeout()))
        .retry_config(retries(config.effective_max_attempts()));
    if let Some(url) = &config.endpoint_url {
        builder = builder.endpoint_url(url);
    }
    Ok((Client::from_conf(builder.build()), target(store, config, region)))
}

/// The endpoint the environment gives Secrets Manager, looked up as the
/// SDK's `Builder::from(&SdkConfig)` does: the service's own
/// (`AWS_ENDPOINT_URL_SECRETS_MANAGER`, a profile's `services` section),
/// else the global one (`AWS_ENDPOINT_URL`, a profile's `endpoint_url`).
fn environment_endpoint(sdk: &aws_config::SdkConfig) -> Option<String> {
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id("Secrets Manager")
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok()?;
    sdk.service_config().and_then(|c| c.load_config(key)).or_else(|| sdk.endpoint_url().map(str::to_owned))
}

/// A client from the standard aws-config chain (environment, profile, SSO,
/// web identity, container and instance metadata), with `config`'s settings
/// taking precedence.
pub(crate) async fn from_env(store: &StoreId, config: &AwsConfig) -> Result<(Client, Target)> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .timeout_config(timeouts(config.effective_timeout()))
        .retry_config(retries(config.effective_max_attempts()));
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &config.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(creds) = &config.credentials {
        loader = loader.credentials_provider(credentials(creds));
    }
    let sdk = loader.load().await;
    let region = sdk.region().map(|r| r.as_ref().to_owned()).ok_or_else(|| {
        Error::config(store, "no AWS region: set AWS_REGION, a profile region, or AwsConfig::region")
    })?;
    if sdk.credentials_provider().is_none() {
        return Err(Error::config(store, "the AWS credential chain is empty"));
    }
    // Settings given explicitly win over the environment's (AWS_ENDPOINT_URL...).
    let mut builder = aws_sdk_secretsmanager::config::Builder::from(&sdk)
        .timeout_config(timeouts(config.effective_timeout()))
        .retry_config(retries(config.effective_max_attempts()));
    let mut target = target(store, config, &region);
    match &config.endpoint_url {
        // Checked with the rest of `config` before.
        Some(url) => builder = builder.endpoint_url(url),
        None => {
            if let Some(url) = environment_endpoint(&sdk) {
                crate::config::check_cleartext(&url, config.allow_insecure_http).map_err(|why| {
                    Error::config(
                        store,
                        format!(
                            "endpoint URL from the AWS environment (AWS_ENDPOINT_URL_SECRETS_MANAGER, \
                             AWS_ENDPOINT_URL or a profile's endpoint_url): {why}"
                        ),
                    )
                })?;
                target.endpoint = url;
                target.overridden = true;
            }
        }
    }
    Ok((Client::from_conf(builder.build()), target))
}
