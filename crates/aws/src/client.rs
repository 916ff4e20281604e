//! Builds the SDK clients (Secrets Manager, and KMS with the `kms` feature)
//! from an [`AwsConfig`]: explicitly, or from the standard aws-config chain.
//! Both services share one way of building: an [`SdkConfig`] holding the
//! HTTP client, region, credentials, timeouts and retries ([`explicit`],
//! [`from_env`]), which each service's client is then made from.

use std::time::Duration;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_secretsmanager::config::retry::RetryConfig;
use aws_sdk_secretsmanager::config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager::config::{Credentials, Region, SharedHttpClient};
use aws_sdk_secretsmanager::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_types::sdk_config::SharedCredentialsProvider;
use credstore_core::{Error, Result, StoreId};

use crate::config::StaticCredentials;
use crate::errors::Target;
use crate::AwsConfig;

/// One AWS service, as the client builder needs to know it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Service {
    /// The service as messages name it.
    pub name: &'static str,
    /// The first label of its regional endpoint (`secretsmanager.{region}...`).
    pub endpoint_prefix: &'static str,
    /// The SDK's service id, which names its endpoint in the environment
    /// (`AWS_ENDPOINT_URL_SECRETS_MANAGER`) and in a profile's `services`.
    pub service_id: &'static str,
    /// That environment variable, for messages.
    pub endpoint_env: &'static str,
}

/// AWS Secrets Manager.
pub(crate) const SECRETS_MANAGER: Service = Service {
    name: "AWS Secrets Manager",
    endpoint_prefix: "secretsmanager",
    service_id: "Secrets Manager",
    endpoint_env: "AWS_ENDPOINT_URL_SECRETS_MANAGER",
};

/// AWS Key Management Service.
#[cfg(feature = "kms")]
pub(crate) const KMS: Service = Service {
    name: "AWS KMS",
    endpoint_prefix: "kms",
    service_id: "KMS",
    endpoint_env: "AWS_ENDPOINT_URL_KMS",
};

/// What a service's client is made from: the shared settings, and where its
/// requests go, for messages.
pub(crate) struct Connection {
    pub sdk: SdkConfig,
    pub target: Target,
    /// An endpoint given in [`AwsConfig`], which wins over the environment's
    /// (the service's own builder would otherwise prefer
    /// `AWS_ENDPOINT_URL_<SERVICE>`).
    pub endpoint_url: Option<String>,
    /// Attempts per request; set again on the service's client, with the
    /// timeouts, so that nothing from the chain (`AWS_MAX_ATTEMPTS`, a
    /// profile's `max_attempts`) loosens them.
    pub max_attempts: u32,
}

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

fn target(store: &StoreId, config: &AwsConfig, service: Service, region: &str) -> Target {
    let (endpoint, overridden) = match &config.endpoint_url {
        Some(url) => (url.clone(), true),
        None => {
            let domain = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
            (format!("https://{}.{region}.{domain}", service.endpoint_prefix), false)
        }
    };
    Target {
        store: store.clone(),
        service: service.name,
        endpoint,
        overridden,
        region: region.to_owned(),
        timeout: config.effective_timeout(),
    }
}

/// The settings of a client from explicit settings only: no environment,
/// profile or instance metadata is read. `constructor` names the call that
/// needs them, for messages (`AwsStore::new`).
pub(crate) fn explicit(
    store: &StoreId,
    config: &AwsConfig,
    service: Service,
    constructor: &str,
    from_env: &str,
) -> Result<Connection> {
    let missing = |what: &str| {
        Error::config(store, format!("{constructor} needs {what}; use {from_env} for the standard AWS chain"))
    };
    let region = config.region.as_deref().ok_or_else(|| missing("a region"))?;
    let creds = config.credentials.as_ref().ok_or_else(|| missing("static credentials"))?;
    let mut builder = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .credentials_provider(SharedCredentialsProvider::new(credentials(creds)))
        .http_client(http_client())
        .timeout_config(timeouts(config.effective_timeout()))
        .retry_config(retries(config.effective_max_attempts()));
    if let Some(url) = &config.endpoint_url {
        builder = builder.endpoint_url(url);
    }
    Ok(Connection {
        sdk: builder.build(),
        target: target(store, config, service, region),
        endpoint_url: config.endpoint_url.clone(),
        max_attempts: config.effective_max_attempts(),
    })
}

/// The endpoint the environment gives `service`, looked up as the SDK's
/// `Builder::from(&SdkConfig)` does: the service's own
/// (`AWS_ENDPOINT_URL_SECRETS_MANAGER`, a profile's `services` section),
/// else the global one (`AWS_ENDPOINT_URL`, a profile's `endpoint_url`).
fn environment_endpoint(sdk: &SdkConfig, service: Service) -> Option<String> {
    let key = aws_types::service_config::ServiceConfigKey::builder()
        .service_id(service.service_id)
        .env("AWS_ENDPOINT_URL")
        .profile("endpoint_url")
        .build()
        .ok()?;
    sdk.service_config().and_then(|c| c.load_config(key)).or_else(|| sdk.endpoint_url().map(str::to_owned))
}

/// The settings of a client from the standard aws-config chain
/// (environment, profile, SSO, web identity, container and instance
/// metadata), with `config`'s settings taking precedence.
pub(crate) async fn from_env(store: &StoreId, config: &AwsConfig, service: Service) -> Result<Connection> {
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
    let mut target = target(store, config, service, &region);
    // Settings given explicitly win over the environment's (AWS_ENDPOINT_URL...):
    // the service's client sets `endpoint_url` again (see `Connection`).
    if config.endpoint_url.is_none() {
        if let Some(url) = environment_endpoint(&sdk, service) {
            // Checked with the rest of `config` before when given there.
            crate::config::check_cleartext(&url, config.allow_insecure_http).map_err(|why| {
                Error::config(
                    store,
                    format!(
                        "endpoint URL from the AWS environment ({}, AWS_ENDPOINT_URL or a profile's \
                         endpoint_url): {why}",
                        service.endpoint_env
                    ),
                )
            })?;
            target.endpoint = url;
            target.overridden = true;
        }
    }
    Ok(Connection {
        sdk,
        target,
        endpoint_url: config.endpoint_url.clone(),
        max_attempts: config.effective_max_attempts(),
    })
}

/// The Secrets Manager client of `connection`.
pub(crate) fn secrets_manager(connection: &Connection) -> Client {
    let mut builder = aws_sdk_secretsmanager::config::Builder::from(&connection.sdk)
        .timeout_config(timeouts(connection.target.timeout))
        .retry_config(retries(connection.max_attempts));
    if let Some(url) = &connection.endpoint_url {
        builder = builder.endpoint_url(url);
    }
    Client::from_conf(builder.build())
}

/// The KMS client of `connection`.
#[cfg(feature = "kms")]
pub(crate) fn kms(connection: &Connection) -> aws_sdk_kms::Client {
    let mut builder = aws_sdk_kms::config::Builder::from(&connection.sdk)
        .timeout_config(timeouts(connection.target.timeout))
        .retry_config(retries(connection.max_attempts));
    if let Some(url) = &connection.endpoint_url {
        builder = builder.endpoint_url(url);
    }
    aws_sdk_kms::Client::from_conf(builder.build())
}
