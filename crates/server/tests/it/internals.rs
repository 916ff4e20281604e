//! No internals in answers: a misconfigured `credstore` process (a store
//! whose key file is garbage, a Vault store whose server is gone, one whose
//! token file is missing) answers every route with the store and a failure
//! category, never a file path, an address or a backend's message; the
//! cause is in its log under the answer's request id.

use crate::util::process as proc_util;

use proc_util::Proc;
use serde_json::{json, Value};

const TOKEN: &str = "an-admin-token-for-the-internals-test";
const BASE: &str = "/manage/tenants/tenant_1/projects/project_1/credential-stores";

#[test]
fn a_misconfigured_server_answers_no_path_address_or_backend_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("team.key"), "this is not a base64 key").unwrap();
    // A port nothing listens on: the Vault server is gone.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let vault = format!("127.0.0.1:{port}");
    std::fs::write(
        dir.path().join("credstore.toml"),
        format!(
            "data_dir = \"data\"\nadmin_reveal = true\n\
             [[stores]]\nid = \"team\"\ntype = \"encrypted-sqlite\"\npath = \"data/team.db\"\nmaster_key_file = \"data/team.key\"\n\
             [[stores]]\nid = \"vault-gone\"\ntype = \"vault\"\naddress = \"http://{vault}\"\ntoken_env = \"VAULT_TOKEN\"\n\
             [[stores]]\nid = \"vault-no-token\"\ntype = \"vault\"\naddress = \"http://{vault}\"\ntoken_file = \"data/vault.token\"\n"
        ),
    )
    .unwrap();
    let env = [
        ("CREDSTORE_ADMIN_TOKEN", TOKEN),
        ("CREDSTORE_CONFIG", "credstore.toml"),
        ("VAULT_TOKEN", "s.vault"),
    ];
    let (mut p, addr) = Proc::serve(dir.path(), &env, &[]);
    let data_dir = std::fs::canonicalize(&data).unwrap().to_string_lossy().into_owned();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let answers: Vec<(String, u16, String, Value)> = rt.block_on(async {
        let c = reqwest::Client::builder().timeout(std::time::Duration::from_secs(20)).build().unwrap();
        let mut answers = Vec::new();
        let call = |method: &'static str, path: String, body: Option<Value>, token: &'static str| {
            let c = c.clone();
            async move {
                let mut req =
                    c.request(method.parse().unwrap(), format!("http://{addr}{path}")).bearer_auth(token);
                if let Some(b) = body {
                    req = req.json(&b);
                }
                let r = req.send().await.unwrap();
                let status = r.status().as_u16();
                let id = r
                    .headers()
                    .get("x-request-id")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                let text = r.text().await.unwrap();
                (format!("{method} {path}"), status, id, text)
            }
        };
        let mut all = Vec::new();
        all.push(call("GET", BASE.to_owned(), None, TOKEN).await);
        for store in ["team", "vault-gone", "vault-no-token", "sqlite-default", "memory-default", "nosuch"] {
            let creds = format!("{BASE}/{store}/credentials");
            all.push(call("POST", creds.clone(), Some(json!({"key": "k", "value": "v"})), TOKEN).await);
            all.push(call("POST", creds.clone(), Some(json!({"key": "bad key", "value": "v"})), TOKEN).await);
            all.push(call("GET", creds.clone(), None, TOKEN).await);
            all.push(call("GET", format!("{creds}/k"), None, TOKEN).await);
            all.push(call("GET", format!("{creds}/k/value"), None, TOKEN).await);
            all.push(call("DELETE", format!("{creds}/k"), None, TOKEN).await);
            all.push(call("GET", creds.clone(), None, "not-the-token-at-all").await);
        }
        for (what, status, id, text) in all {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            answers.push((format!("{what} -> {status} ({id})"), status, text, v));
        }
        answers
    });
    p.terminate();
    let log = p.stderr_text();

    for (what, _, text, _) in &answers {
        for needle in [
            data_dir.as_str(),
            "data/team",
            "vault.token",
            vault.as_str(),
            "base64",
            "refused at",
            "os error",
        ] {
            assert!(!text.contains(needle), "{what} shows {needle:?}: {text}");
        }
    }
    // The store list says what kind of failure, and nothing more.
    let list = &answers[0].3;
    let reason =
        |id: &str| list["data"].as_array().unwrap().iter().find(|e| e["id"] == id).unwrap()["reason"].clone();
    assert_eq!(reason("team"), "misconfigured", "{list}");
    assert_eq!(reason("vault-no-token"), "misconfigured", "{list}");
    assert_eq!(reason("vault-gone"), "unreachable", "{list}");
    assert_eq!(reason("memory-default"), "");
    // Each failing store's calls are 503s naming it and the category.
    for (store, category) in
        [("team", "misconfigured"), ("vault-no-token", "misconfigured"), ("vault-gone", "unreachable")]
    {
        let (what, _, _, v) = answers
            .iter()
            .find(|(what, status, _, _)| {
                what.starts_with(&format!("POST {BASE}/{store}/credentials")) && *status == 503
            })
            .unwrap_or_else(|| panic!("no 503 for {store}: {answers:#?}"));
        let detail = v["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(&format!("store '{store}' is unavailable ({category})")),
            "{what}: {detail}"
        );
        // The cause is in the log, on a line with the answer's request id.
        let id = v["requestId"].as_str().unwrap();
        let line = log
            .lines()
            .find(|l| l.contains(id) && l.contains("store unavailable"))
            .unwrap_or_else(|| panic!("no log line for {id}: {log}"));
        let cause = if store == "vault-gone" {
            vault.as_str()
        } else if store == "team" {
            "team.key"
        } else {
            "vault.token"
        };
        assert!(line.contains(cause), "{line}");
    }
}
