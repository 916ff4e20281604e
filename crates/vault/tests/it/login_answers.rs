//! What a login answers is checked before it is used: a `client_token` that
//! no HTTP header can carry (a newline, a character outside ASCII) or an
//! empty one fails the call with a backend error naming the store and the
//! login, and is never installed as the session, so no later request can
//! trip over it. A canned loopback server plays Vault, since no real server
//! answers such a token.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use credstore_core::{CredentialKey, CredentialStore, Error, SecretValue, StoreId};
use credstore_test_servers::canned::{CannedServer, Response};
use credstore_vault::{VaultConfig, VaultStore};

use crate::util::KV2_MOUNT;

const SECRET_ID: &str = "secret-id-SECRET";

fn login_answer(token_json: &str) -> String {
    format!(
        r#"{{"request_id":"r-1","lease_id":"","lease_duration":0,"renewable":false,"data":null,"auth":{{"client_token":{token_json},"accessor":"acc","policies":["default"],"token_policies":["default"],"metadata":{{}},"lease_duration":3600,"renewable":true,"entity_id":"","token_type":"service","orphan":true}}}}"#
    )
}

/// Vault as far as the test needs it: the first login answers a good
/// token, which every read then refuses (so the store logs in again);
/// every later login answers `bad_token` (JSON text).
fn fake_vault(bad_token: &'static str) -> (CannedServer, Arc<AtomicUsize>) {
    let logins = Arc::new(AtomicUsize::new(0));
    let counted = logins.clone();
    let server = CannedServer::start(move |req| {
        if req.target.ends_with("/auth/approle/login") {
            match counted.fetch_add(1, Ordering::SeqCst) {
                0 => Response::json(200, &login_answer(r#""hvs.good-token""#)),
                _ => Response::json(200, &login_answer(bad_token)),
            }
        } else if req.target.contains("sys/internal/ui/mounts") {
            Response::json(200, KV2_MOUNT)
        } else {
            Response::json(403, r#"{"errors":["permission denied"]}"#)
        }
    })
    .unwrap();
    (server, logins)
}

#[tokio::test]
async fn a_login_token_no_header_can_carry_is_a_backend_error_not_a_panic() {
    for (what, bad_token) in [
        ("a newline", r#""hvs.bad\ntoken""#),
        ("a character outside ASCII", r#""hvs.t\u00f6ken""#),
        ("a space", r#""hvs.bad token""#),
        ("nothing", r#""""#),
    ] {
        let (vault, logins) = fake_vault(bad_token);
        let config = VaultConfig::new(vault.url())
            .approle("approle", "role-1", SecretValue::from(SECRET_ID))
            .timeout(Duration::from_secs(5));
        let store = VaultStore::new(StoreId::new("vault-login").unwrap(), config).unwrap();
        let key = CredentialKey::new("k").unwrap();

        // The good token is refused; the second login answers the bad one.
        for attempt in 0..2 {
            let err = store.get(&key).await.expect_err("the login's token is unusable");
            assert!(matches!(&err, Error::Backend { .. }), "{what}, call {attempt}: {err:?}");
            let text = format!("{err} | {err:#} | {err:?}");
            assert!(text.contains("vault-login"), "names the store: {text}");
            let reason =
                if bad_token == r#""""# { "answered an empty token" } else { "an HTTP header cannot carry" };
            assert!(
                text.contains("AppRole login at auth/approle") && text.contains(reason),
                "{what}: {text}"
            );
            assert!(
                !text.contains("bad") && !text.contains("t\u{f6}ken") && !text.contains(SECRET_ID),
                "{text}"
            );
        }
        assert_eq!(store.auth_stats().logins, 1, "{what}: only the good token was installed");
        assert_eq!(logins.load(Ordering::SeqCst), 3, "{what}: each call tried a new login");
        let status = store.check_availability().await;
        assert!(!status.available, "{what}");
        // No request after the first login carried anything but the good token.
        for req in vault.requests() {
            if let Some(token) = req.header("x-vault-token") {
                assert_eq!(token, "hvs.good-token", "{what}: {} {}", req.method, req.target);
            }
        }
    }
}
