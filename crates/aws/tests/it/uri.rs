//! `aws-sm:` URIs: how [`AwsScheme`] reads them into the settings of a
//! config file, and what it refuses. Opening a store from one against moto
//! is in `tests/from_env.rs`, which can set the environment's credentials.

use credstore_aws::AwsScheme;
use credstore_core::config::ConfigContext;
use credstore_core::{Error, SchemeRegistry, StoreScheme, StoreUri};

fn field(err: &Error) -> &str {
    match err {
        Error::InvalidInput { field, .. } => field,
        other => panic!("not InvalidInput: {other}"),
    }
}

fn settings(text: &str) -> credstore_core::Result<(credstore_core::StoreId, credstore_aws::AwsSettings)> {
    AwsScheme::settings(StoreUri::parse(text)?)
}

#[test]
fn the_host_is_the_region_and_parameters_are_the_settings_by_name() {
    let (id, s) = settings(
        "aws-sm://eu-west-1?id=team&endpoint=https://vpce.internal&prefix=team-a&kms_key_id=alias/app\
         &timeout_ms=2000&max_attempts=4",
    )
    .unwrap();
    assert_eq!(id.as_str(), "team");
    assert_eq!(s.region.as_deref(), Some("eu-west-1"));
    assert_eq!(s.endpoint.as_deref(), Some("https://vpce.internal"));
    assert_eq!((s.prefix.as_deref(), s.kms_key_id.as_deref()), (Some("team-a"), Some("alias/app")));
    assert_eq!((s.timeout_ms, s.max_attempts), (Some(2000), Some(4)));
    let (id, s) = settings("aws-sm:").unwrap();
    assert_eq!((id.as_str(), s.region), ("aws-secrets-manager", None), "the environment's region");
    assert_eq!(settings("aws-sm:?region=us-east-1").unwrap().1.region.as_deref(), Some("us-east-1"));
}

#[tokio::test]
async fn an_unknown_parameter_is_refused_naming_it() {
    let mut schemes = SchemeRegistry::new();
    schemes.register(AwsScheme).unwrap();
    let err = schemes.open("aws-sm://eu-west-1?regoin=x").await.unwrap_err();
    assert_eq!(field(&err), "uri.regoin", "{err}");
    assert!(err.to_string().contains("aws-sm:"), "{err}");
}

#[test]
fn keys_in_the_uri_are_refused_naming_the_env_and_file_ways() {
    for (text, name) in [
        ("aws-sm://eu-west-1?secret_access_key=TOPSECRET", "secret_access_key"),
        ("aws-sm://eu-west-1?session_token=TOPSECRET", "session_token"),
        ("aws-sm://AKID:TOPSECRET@eu-west-1", "password"),
    ] {
        let err = StoreUri::parse(text).unwrap_err();
        assert_eq!(field(&err), format!("uri.{name}"), "{err}");
        let shown = err.to_string();
        assert!(shown.contains(&format!("{name}_env")) && !shown.contains("TOPSECRET"), "{shown}");
    }
    // A name the URI may hold, but the scheme has no use for, is still refused.
    let err = settings("aws-sm://eu-west-1?access_key_id=AKID").unwrap_err();
    assert_eq!(field(&err), "uri.access_key_id", "{err}");
}

#[tokio::test]
async fn wrong_shapes_and_values_are_refused_before_any_request() {
    for text in ["aws-sm://eu-west-1/team", "aws-sm://eu-west-1:443", "aws-sm://eu-west-1?region=eu-west-2"] {
        assert_eq!(field(&settings(text).unwrap_err()), "uri", "{text}");
    }
    assert_eq!(field(&settings("aws-sm://eu-west-1?max_attempts=lots").unwrap_err()), "uri.max_attempts");
    let err = settings("aws-sm://eu-west-1?id=a&endpoint=http://sm.internal:4566").unwrap_err();
    assert!(matches!(&err, Error::Config { .. }) && err.to_string().contains("allow_insecure_http"), "{err}");
    // Values the settings check are checked when the store opens, before any request.
    let ctx = ConfigContext::new(".");
    for (text, needle) in
        [("aws-sm://US-EAST?id=a", "region"), ("aws-sm://eu-west-1?id=a&max_attempts=50", "max_attempts")]
    {
        let err = AwsScheme.open(StoreUri::parse(text).unwrap(), &ctx).await.unwrap_err();
        assert!(matches!(&err, Error::Config { .. }) && err.to_string().contains(needle), "{text}: {err}");
    }
}
