//! The integration tests of credstore-aws against moto, one module per topic.
//! Apart: the conformance suite (`tests/conformance.rs`, its own harness) and
//! `tests/from_env.rs`, which sets process environment variables and so needs
//! a process of its own.

/// A raw client of the SDK crate `$sdk` on the moto server at `$endpoint`,
/// to look at what the store wrote (or make keys) as other AWS tools do.
macro_rules! raw_sdk_client {
    ($sdk:ident, $endpoint:expr) => {
        $sdk::Client::from_conf(
            $sdk::Config::builder()
                .behavior_version($sdk::config::BehaviorVersion::latest())
                .region($sdk::config::Region::new(credstore_test_servers::moto::REGION))
                .endpoint_url($endpoint)
                .credentials_provider($sdk::config::Credentials::new(
                    credstore_test_servers::moto::ACCESS_KEY_ID,
                    credstore_test_servers::moto::SECRET_ACCESS_KEY,
                    None,
                    None,
                    "test",
                ))
                .http_client(aws_smithy_http_client::Builder::new().build_http())
                .build(),
        )
    };
}

mod faults;
mod history;
mod kms;
mod redirects;
mod requests;
mod uri;
