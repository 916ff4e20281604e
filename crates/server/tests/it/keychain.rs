//! A keychain store (Linux kernel keyutils) configured with
//! `type = "keychain"` and served by the `credstore` binary over real HTTP.
//!
//! The test joins a new, anonymous session keyring of its own before it
//! starts the server, which inherits it; the store lives in that keyring
//! (`keyring = "session"`), so nothing touches the machine's other keys. At
//! the end the keyring holds nothing but the store's layout, is cleared, and
//! is checked empty: nothing is left behind.
#![cfg(all(target_os = "linux", feature = "keychain"))]

use credstore_test_servers::keyctl;

use crate::util::harness::{strip_checked_at, ADMIN};
use crate::util::process as proc_util;
use proc_util::{call_admin as call, Proc};
use serde_json::json;

#[test]
fn a_keyutils_store_serves_the_api_and_leaves_nothing_behind() {
    let session = match keyctl::own_session() {
        Ok(ring) => ring,
        Err(e) => {
            let why = format!("the kernel refuses keyctl here: {e}");
            assert!(!credstore_test_servers::in_ci(), "CI=true and {why}");
            eprintln!("\n!!!! SKIPPED: {why} !!!!\n");
            return;
        }
    };
    assert_eq!(keyctl::tree(session), Vec::<String>::new(), "a new session keyring is empty");

    let dir = tempfile::tempdir().unwrap();
    let config = r#"
default_stores = false

[[stores]]
id = "laptop"
type = "keychain"
platform = "keyutils"
keyring = "session"
timeout_ms = 5000
cache = { ttl_ms = 60000 }
"#;
    std::fs::write(dir.path().join("credstore.toml"), config).unwrap();
    let env = [("CREDSTORE_CONFIG", "credstore.toml"), ("CREDSTORE_ADMIN_TOKEN", ADMIN)];
    let (mut p, addr) = Proc::serve(dir.path(), &env, &[]);

    let (t, pr) = ("tenant_123", "project_456");
    let stores = format!("/manage/tenants/{t}/projects/{pr}/credential-stores");
    let creds = format!("{stores}/laptop/credentials");
    let service = format!("credstore:laptop:{t}/{pr}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let (status, mut list) = call(&c, addr, "GET", &stores, None).await;
        assert_eq!(status, 200, "{list}");
        strip_checked_at(&mut list);
        assert_eq!(
            list,
            json!({"data": [{"available": true, "id": "laptop", "reason": "", "type": "keychain"}]}),
            "{}",
            p.stderr_text()
        );

        let body = json!({"key": "api-key", "value": "kc-secret-value", "metadata": {"owner": "ci"}});
        let (status, created) = call(&c, addr, "POST", &creds, Some(body)).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["data"]["storeId"], "laptop");

        // The create landed in the kernel, in the documented layout: one
        // keyring per namespace, one per credential, the entry in chunk 0.
        let ns_ring = keyctl::find(session, "keyring", &service).expect("the project's keyring");
        let cred_ring = keyctl::find(ns_ring, "keyring", "api-key").expect("the credential's keyring");
        let chunk = keyctl::find(cred_ring, "user", "0").expect("the entry's first chunk");
        let entry = keyctl::read(chunk).unwrap();
        assert!(entry.starts_with(b"credstore/1 {"), "{:?}", String::from_utf8_lossy(&entry[..12]));
        assert!(entry.ends_with(b"\nkc-secret-value"));

        let (status, got) = call(&c, addr, "GET", &format!("{creds}/api-key"), None).await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["data"]["metadata"], json!({"owner": "ci"}));
        assert!(!got.to_string().contains("kc-secret-value"));
        let (status, keys) = call(&c, addr, "GET", &creds, None).await;
        assert_eq!((status, &keys["data"]), (200, &json!([{"key": "api-key"}])), "{keys}");

        let (status, _) = call(&c, addr, "DELETE", &format!("{creds}/api-key"), None).await;
        assert_eq!(status, 204);
        assert_eq!(keyctl::find(ns_ring, "keyring", "api-key"), None, "the delete reached the kernel");
        assert_eq!(call(&c, addr, "GET", &format!("{creds}/api-key"), None).await.0, 404);
    });
    assert!(p.terminate().success(), "{}", p.stderr_text());

    let left = keyctl::tree(session);
    assert!(
        left.iter().all(|k| k.contains("/credstore:laptop")),
        "keys outside the store's layout in the test's session keyring: {left:?}"
    );
    keyctl::clear(session).expect("clear the test's session keyring");
    assert_eq!(keyctl::tree(session), Vec::<String>::new(), "nothing is left behind");
}
