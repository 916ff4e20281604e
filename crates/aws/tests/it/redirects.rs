//! Redirects are never followed: an endpoint answering 307 to another
//! origin gets no second request there, so neither the signed request (with
//! its session token) nor a written value leaves for a host the
//! configuration does not name. The SDK's HTTP client (hyper, through
//! aws-smithy-http-client) has no redirect support at all; these tests pin
//! that down and check that the 307 becomes an error naming the target's
//! origin. Canned loopback servers stand in for both ends; no moto needed.

use std::time::Duration;

use credstore_aws::{AwsConfig, AwsStore};
use credstore_core::{
    CredentialKey, CredentialStore, CredentialStoreExt, Error, Metadata, SecretValue, StoreId,
};
use credstore_test_servers::canned::{CannedServer, Response};

const SESSION_TOKEN: &str = "SESSION-TOKEN-SECRET";
const VALUE: &str = "written-VALUE-SECRET";

fn store(endpoint: &str) -> AwsStore {
    let config = AwsConfig::new()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .static_credentials("AKIDREDIRECT", SecretValue::from("secret-access-key"))
        .session_token(SecretValue::from(SESSION_TOKEN))
        .timeout(Duration::from_secs(5));
    AwsStore::new(StoreId::new("aws-redirected").unwrap(), config).unwrap()
}

fn check_refused(err: &Error, elsewhere: &CannedServer) {
    assert!(matches!(err, Error::Config { .. }), "a redirect is a configuration fault: {err:?}");
    elsewhere.assert_refused_redirect(&format!("{err} | {err:?}"), "aws-redirected", &[SESSION_TOKEN, VALUE]);
}

#[tokio::test]
async fn a_read_redirected_to_another_origin_fails_naming_it_and_nothing_goes_there() {
    let elsewhere = CannedServer::start(|_| Response::json(200, "{}")).unwrap();
    let redirecting = CannedServer::redirecting_to(&elsewhere).unwrap();
    let store = store(&redirecting.url());

    let read = store.get(&CredentialKey::new("k").unwrap()).await;

    assert!(redirecting.received(SESSION_TOKEN.as_bytes()), "the test sends the token where it should");
    elsewhere.assert_not_reached(&[("the token", SESSION_TOKEN)]);
    check_refused(&read.expect_err("a redirect is not an answer"), &elsewhere);
}

#[tokio::test]
async fn a_write_redirected_to_another_origin_fails_naming_it_and_nothing_goes_there() {
    let elsewhere = CannedServer::start(|_| Response::json(200, "{}")).unwrap();
    let redirecting = CannedServer::redirecting_to(&elsewhere).unwrap();
    let store = store(&redirecting.url());

    let key = CredentialKey::new("k").unwrap();
    let written = store.create(&key, &SecretValue::from(VALUE), &Metadata::new()).await;

    assert!(redirecting.received(VALUE.as_bytes()), "the write went to the configured endpoint");
    elsewhere.assert_not_reached(&[("the value", VALUE), ("the token", SESSION_TOKEN)]);
    check_refused(&written.map(drop).expect_err("not followed"), &elsewhere);
}
