//! `vault+http:` / `vault+https:` URIs: [`VaultScheme`] opens a working
//! store on a real OpenBao dev server, with the settings a config file
//! gives, and refuses what it does not know.

use credstore_conformance::unique_name;
use credstore_core::config::ConfigContext;
use credstore_core::{
    CredentialKey, CredentialStoreExt, Error, Metadata, SchemeRegistry, SecretValue, StoreUri,
};
use credstore_test_servers::openbao::OpenBao;
use credstore_vault::VaultScheme;

use crate::util::bao_cli;

fn registry() -> SchemeRegistry {
    let mut schemes = SchemeRegistry::new();
    schemes.register(VaultScheme).unwrap();
    schemes
}

fn field(err: &Error) -> &str {
    match err {
        Error::InvalidInput { field, .. } => field,
        other => panic!("not InvalidInput: {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_vault_uri_opens_a_store_on_the_server_that_keeps_what_is_written() {
    let Some(bao) = OpenBao::shared() else { return };
    let token = bao.root_token().to_owned();
    let ctx = ConfigContext::new(".").with_env(move |var| (var == "BAO_TOKEN").then(|| token.clone()));
    let prefix = unique_name("uri");
    let text = format!(
        "vault+http://127.0.0.1:{}/secret?id=bao&token_env=BAO_TOKEN&prefix={prefix}&timeout_ms=10000",
        bao.port()
    );
    let store = registry().open_uri(StoreUri::parse(&text).unwrap(), &ctx).await.unwrap();
    assert_eq!(store.info().id().as_str(), "bao");
    let key = CredentialKey::new("db-password").unwrap();
    store.set(&key, &SecretValue::from("hunter2"), &Metadata::new()).await.unwrap();
    let read = store.get(&key).await.unwrap().expect("just written");
    assert_eq!(read.value.expose_str().unwrap(), "hunter2");
    // It is in the mount and under the prefix the URI named.
    let path = format!("secret/{prefix}/db-password");
    assert_eq!(bao_cli(bao, &["kv", "get", "-field=value", &path]), "hunter2");
}

#[test]
fn an_unknown_parameter_is_refused_naming_it() {
    let err =
        VaultScheme::settings(StoreUri::parse("vault+https://v.internal/secret?namespace=team").unwrap())
            .unwrap_err();
    assert_eq!(field(&err), "uri.namespace", "{err}");
    assert!(err.to_string().contains("vault+https:"), "{err}");
}

#[test]
fn a_token_in_the_uri_is_refused_naming_the_env_and_file_ways() {
    for (text, name) in [
        ("vault+https://v.internal/secret?token=hvs.TOPSECRET", "token"),
        (
            "vault+https://v.internal/secret?approle_role_id=r&approle_secret_id=TOPSECRET",
            "approle_secret_id",
        ),
        ("vault+https://root:TOPSECRET@v.internal/secret", "password"),
    ] {
        let err = StoreUri::parse(text).unwrap_err();
        assert_eq!(field(&err), format!("uri.{name}"), "{err}");
        let shown = err.to_string();
        assert!(shown.contains(&format!("{name}_env")) && !shown.contains("TOPSECRET"), "{shown}");
    }
}

#[test]
fn parts_map_onto_the_settings_and_cleartext_stays_loopback_only() {
    let (id, s) = VaultScheme::settings(
        StoreUri::parse("vault+https://[::1]:8200/kv/team?approle_role_id=r&approle_secret_id_file=/run/sid")
            .unwrap(),
    )
    .unwrap();
    assert_eq!((id.as_str(), s.address()), ("vault", "https://[::1]:8200"));
    assert!(matches!(s.login(), credstore_vault::LoginSettings::AppRole { mount, .. } if mount == "approle"));
    let err = VaultScheme::settings(StoreUri::parse("vault+http://vault.internal/secret?id=v").unwrap())
        .unwrap_err();
    assert!(matches!(&err, Error::Config { .. }) && err.to_string().contains("plain http://"), "{err}");
    let (_, s) = VaultScheme::settings(
        StoreUri::parse("vault+http://vault.internal/secret?allow_insecure_http").unwrap(),
    )
    .unwrap();
    assert!(s.insecure_http_allowed());
    for text in ["vault+https:secret", "vault+https://me@v.internal/secret"] {
        let err = VaultScheme::settings(StoreUri::parse(text).unwrap()).unwrap_err();
        assert_eq!(field(&err), "uri", "{text}: {err}");
    }
}
