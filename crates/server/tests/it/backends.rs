//! The API over the remote backends: Vault (a real OpenBao dev server) and
//! AWS Secrets Manager (a real moto server), configured through the TOML
//! config file of the `credstore` binary; and both backends unreachable, and
//! an unreachable PostgreSQL.

use crate::util::process as proc_util;

use std::time::{Duration, Instant};

use crate::util::harness::{assert_all_available, ADMIN};
use credstore_conformance::unique_name;
use credstore_test_servers::moto::{Moto, ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY};
use credstore_test_servers::openbao::OpenBao;
use credstore_test_servers::proxy::CountingProxy;
use proc_util::{call_admin as call, Proc};
use serde_json::json;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// The environment of a `credstore` serving `credstore.toml` with the admin
/// token, a Vault token and AWS credentials.
fn server_env<'a>(
    vault_token: &'a str,
    access_key: &'a str,
    secret_key: &'a str,
) -> [(&'static str, &'a str); 5] {
    [
        ("CREDSTORE_CONFIG", "credstore.toml"),
        ("CREDSTORE_ADMIN_TOKEN", ADMIN),
        ("TEST_VAULT_TOKEN", vault_token),
        ("AWS_ACCESS_KEY_ID", access_key),
        ("AWS_SECRET_ACCESS_KEY", secret_key),
    ]
}

fn base(tenant: &str, project: &str) -> String {
    format!("/manage/tenants/{tenant}/projects/{project}/credential-stores")
}

#[test]
fn vault_and_aws_stores_serve_the_api_with_isolation() {
    let (Some(bao), Some(moto)) = (OpenBao::shared(), Moto::shared()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
default_stores = false

[[stores]]
id = "vault-kv"
type = "vault"
address = "{}"
prefix = "{}"
token_env = "TEST_VAULT_TOKEN"

[[stores]]
id = "aws-sm"
type = "aws-secrets-manager"
region = "{REGION}"
endpoint = "{}"
prefix = "{}"
"#,
        bao.address(),
        unique_name("server"),
        moto.endpoint(),
        unique_name("server"),
    );
    std::fs::write(dir.path().join("credstore.toml"), config).unwrap();
    let env = server_env(bao.root_token(), ACCESS_KEY_ID, SECRET_ACCESS_KEY);
    let (mut p, addr) = Proc::serve(dir.path(), &env, &[]);
    rt().block_on(async {
        let c = reqwest::Client::new();
        let (status, list) = call(&c, addr, "GET", &base("t1", "p1"), None).await;
        assert_eq!(status, 200);
        assert_all_available(list, &[("vault-kv", "vault"), ("aws-sm", "aws-secrets-manager")]);
        for store in ["vault-kv", "aws-sm"] {
            let creds = |t: &str, p: &str| format!("{}/{store}/credentials", base(t, p));
            for (t, p) in [("t1", "p1"), ("t1", "p2"), ("t2", "p1")] {
                let body = json!({"key": "api-key", "value": format!("secret-{t}-{p}"), "metadata": {"owner": format!("{t}.{p}")}});
                let (status, created) = call(&c, addr, "POST", &creds(t, p), Some(body)).await;
                assert_eq!(status, 201, "{store} {t}/{p}: {created}");
                assert_eq!(created["data"]["storeId"], store);
            }
            for (t, p) in [("t1", "p1"), ("t1", "p2"), ("t2", "p1")] {
                let (status, got) = call(&c, addr, "GET", &format!("{}/api-key", creds(t, p)), None).await;
                assert_eq!(status, 200, "{store}: {got}");
                assert_eq!(got["data"]["metadata"], json!({"owner": format!("{t}.{p}")}));
                assert!(!got.to_string().contains("secret-"));
                let (_, keys) = call(&c, addr, "GET", &creds(t, p), None).await;
                assert_eq!(keys["data"], json!([{"key": "api-key"}]), "{store} {t}/{p}");
            }
            let (status, _) = call(&c, addr, "DELETE", &format!("{}/api-key", creds("t1", "p2")), None).await;
            assert_eq!(status, 204);
            assert_eq!(call(&c, addr, "GET", &format!("{}/api-key", creds("t1", "p2")), None).await.0, 404);
            assert_eq!(call(&c, addr, "GET", &format!("{}/api-key", creds("t1", "p1")), None).await.0, 200);
            assert_eq!(call(&c, addr, "GET", &format!("{}/api-key", creds("t2", "p1")), None).await.0, 200);
            let (status, _) = call(&c, addr, "POST", &creds("t1", "p1"), Some(json!({"key": "k", "value": "v".repeat(65_537)}))).await;
            assert_eq!(status, 422);
        }
        // A 301-byte namespace: Vault holds it; AWS, whose prefix and
        // namespace share 256 bytes of a secret name, refuses it before any
        // call, naming both ids and its cap.
        let (t, p) = ("t".repeat(200), "p".repeat(100));
        let body = || Some(json!({"key": "k", "value": "v"}));
        let (status, created) = call(&c, addr, "POST", &format!("{}/vault-kv/credentials", base(&t, &p)), body()).await;
        assert_eq!(status, 201, "{created}");
        let (status, problem) = call(&c, addr, "POST", &format!("{}/aws-sm/credentials", base(&t, &p)), body()).await;
        assert_eq!(status, 422, "{problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.starts_with("invalid tenantId and projectId:"), "{detail}");
        assert!(detail.contains("301 bytes") && detail.contains("'aws-sm'"), "{detail}");
    });
    assert!(p.terminate().success());
}

/// Stores given as one URI (`uri = "…"`): an encrypted SQLite file and a
/// Vault on OpenBao, served as stores of their backends' types.
#[test]
fn stores_given_by_uri_serve_the_api_as_their_backends() {
    let Some(bao) = OpenBao::shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let prefix = unique_name("uri");
    let config = format!(
        r#"
default_stores = false

[[stores]]
id = "team-sqlite"
uri = "sqlite:data/team.db?master_key_env=TEAM_KEY&max_versions=3"

[[stores]]
id = "team-vault"
uri = "vault+http://127.0.0.1:{}/secret?token_env=TEST_VAULT_TOKEN&prefix={prefix}"
"#,
        bao.port()
    );
    std::fs::write(dir.path().join("credstore.toml"), config).unwrap();
    let key = credstore_sqlite::MasterKey::generate().to_base64().unwrap();
    let env = [
        ("CREDSTORE_CONFIG", "credstore.toml"),
        ("CREDSTORE_ADMIN_TOKEN", ADMIN),
        ("TEAM_KEY", key.as_str()),
        ("TEST_VAULT_TOKEN", bao.root_token()),
    ];
    let (mut p, addr) = Proc::serve(dir.path(), &env, &[]);
    rt().block_on(async {
        let c = reqwest::Client::new();
        let (status, list) = call(&c, addr, "GET", &base("t1", "p1"), None).await;
        assert_eq!(status, 200);
        assert_all_available(list, &[("team-sqlite", "encrypted-sqlite"), ("team-vault", "vault")]);
        for store in ["team-sqlite", "team-vault"] {
            let creds = format!("{}/{store}/credentials", base("t1", "p1"));
            let body = json!({"key": "api-key", "value": "by-uri", "metadata": {"owner": store}});
            let (status, created) = call(&c, addr, "POST", &creds, Some(body)).await;
            assert_eq!(status, 201, "{store}: {created}");
            let (status, got) = call(&c, addr, "GET", &format!("{creds}/api-key"), None).await;
            assert_eq!(status, 200, "{store}: {got}");
            assert_eq!(got["data"]["metadata"], json!({"owner": store}));
        }
    });
    assert!(p.terminate().success());
    assert!(dir.path().join("data/team.db").exists(), "relative to the config file");
}

#[test]
fn unreachable_vault_and_aws_are_unavailable_and_never_stall_the_list() {
    // Ports that were free a moment ago: nothing listens there.
    let closed = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
probe_timeout_ms = 1500
store_timeout_ms = 3000

[[stores]]
id = "vault-down"
type = "vault"
address = "http://127.0.0.1:{}"
token_env = "TEST_VAULT_TOKEN"
timeout_ms = 1000

[[stores]]
id = "aws-down"
type = "aws"
region = "us-east-1"
endpoint = "http://127.0.0.1:{}"
timeout_ms = 1000
max_attempts = 1
"#,
        closed(),
        closed()
    );
    std::fs::write(dir.path().join("credstore.toml"), config).unwrap();
    let env = server_env("not-a-real-token", "testing", "testing");
    let (mut p, addr) = Proc::serve(dir.path(), &env, &[]);
    rt().block_on(async {
        let c = reqwest::Client::new();
        let started = Instant::now();
        let (status, list) = call(&c, addr, "GET", &base("t", "p"), None).await;
        assert!(started.elapsed() < Duration::from_millis(2500), "took {:?}", started.elapsed());
        assert_eq!(status, 200);
        let entries = list["data"].as_array().unwrap();
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0]["available"], true);
        assert_eq!(entries[1]["available"], true);
        for (entry, kind) in entries[2..].iter().zip(["vault", "aws-secrets-manager"]) {
            assert_eq!(entry["available"], false, "{entry}");
            assert_eq!(entry["type"], kind);
            assert!(!entry["reason"].as_str().unwrap().is_empty(), "{entry}");
        }
        for store in ["vault-down", "aws-down"] {
            let path = format!("{}/{store}/credentials", base("t", "p"));
            let started = Instant::now();
            let (status, problem) =
                call(&c, addr, "POST", &path, Some(json!({"key": "k", "value": "v"}))).await;
            assert_eq!(status, 503, "{store}: {problem}");
            assert_eq!(problem["code"], "service_unavailable");
            assert!(started.elapsed() < Duration::from_millis(3500));
        }
        // The embedded stores keep working beside the dead ones.
        let path = format!("{}/sqlite-default/credentials", base("t", "p"));
        assert_eq!(call(&c, addr, "POST", &path, Some(json!({"key": "k", "value": "v"}))).await.0, 201);
    });
    assert!(p.terminate().success());
}

/// A symmetric KMS key made on `moto` through its JSON API: its id.
async fn kms_key(moto: &Moto) -> String {
    let answer: serde_json::Value = reqwest::Client::new()
        .post(moto.endpoint())
        .header("Content-Type", "application/x-amz-json-1.1")
        .header("X-Amz-Target", "TrentService.CreateKey")
        .header("X-Amz-Date", "20261207T000000Z")
        .header(
            "Authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/20261207/{REGION}/kms/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=00"
            ),
        )
        .body(r#"{"Description": "credstore server test"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["KeyMetadata"]["KeyId"].as_str().expect("a key id").to_owned()
}

#[test]
fn stores_keyed_by_aws_kms_and_vault_transit_call_their_provider_once_per_opening_and_never_per_request() {
    let (Some(bao), Some(moto)) = (OpenBao::shared(), Moto::shared()) else { return };
    let dir = tempfile::tempdir().unwrap();
    let mount = unique_name("transit");
    bao.cli(["secrets", "enable", &format!("-path={mount}"), "transit"]).unwrap();
    bao.cli(["write", "-f", &format!("{mount}/keys/team")]).unwrap();
    let key_id = rt().block_on(kms_key(moto));
    let bao_addr: std::net::SocketAddr = ([127, 0, 0, 1], bao.port()).into();
    let (kms, transit) =
        (CountingProxy::start(moto.socket_addr()).unwrap(), CountingProxy::start(bao_addr).unwrap());
    let config = format!(
        r#"
default_stores = false

[[stores]]
id = "kms-team"
type = "encrypted-sqlite"
path = "kms-team.db"
key = {{ provider = "aws-kms", key_id = "{key_id}", region = "{REGION}", endpoint = "{}" }}

[[stores]]
id = "transit-team"
type = "encrypted-sqlite"
path = "transit-team.db"
key = {{ provider = "vault-transit", address = "{}", token_env = "TEST_VAULT_TOKEN", mount = "{mount}", key = "team" }}
"#,
        kms.url(),
        transit.url(),
    );
    std::fs::write(dir.path().join("credstore.toml"), config).unwrap();
    let env = server_env(bao.root_token(), ACCESS_KEY_ID, SECRET_ACCESS_KEY);
    let encrypts = |p: &CountingProxy, what: &str| p.requests().iter().filter(|r| r.contains(what)).count();
    for round in 0..2 {
        let (mut p, addr) = Proc::serve(dir.path(), &env, &[]);
        rt().block_on(async {
            let c = reqwest::Client::new();
            let (status, list) = call(&c, addr, "GET", &base("t1", "p1"), None).await;
            assert_eq!(status, 200);
            assert_all_available(
                list,
                &[("kms-team", "encrypted-sqlite"), ("transit-team", "encrypted-sqlite")],
            );
            let (kms_calls, transit_calls) = (kms.count(), encrypts(&transit, "/transit"));
            for store in ["kms-team", "transit-team"] {
                let creds = format!("{}/{store}/credentials", base("t1", "p1"));
                for i in 0..5 {
                    let body = json!({"key": format!("k{round}-{i}"), "value": "secret"});
                    let (status, created) = call(&c, addr, "POST", &creds, Some(body)).await;
                    assert_eq!(status, 201, "{store}: {created}");
                    let (status, got) = call(&c, addr, "GET", &format!("{creds}/k{round}-{i}"), None).await;
                    assert_eq!(status, 200, "{store}: {got}");
                }
            }
            assert_eq!(kms.count(), kms_calls, "no KMS request per read or write: {:?}", kms.requests());
            assert_eq!(encrypts(&transit, "/transit"), transit_calls, "no Transit request per read or write");
        });
        p.terminate();
        // One wrap when the store was made (the first opening), then one
        // unwrap per later opening.
        assert_eq!(kms.count(), round + 1, "KMS requests after opening {}: {:?}", round + 1, kms.requests());
        let (wraps, unwraps) = (encrypts(&transit, "/encrypt/team"), encrypts(&transit, "/decrypt/team"));
        assert_eq!((wraps, unwraps), (1, round), "{:?}", transit.requests());
    }
}

#[test]
fn a_postgres_store_that_cannot_be_reached_is_served_unavailable_and_the_server_starts() {
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        r#"
probe_timeout_ms = 1500
store_timeout_ms = 3000

[[stores]]
id = "pg-down"
type = "postgres"
host = "127.0.0.1"
port = {closed}
user = "credstore"
password_env = "TEST_PG_PASSWORD"
connect_timeout_ms = 1000
key = {{ provider = "master-key", key_env = "TEST_PG_KEK" }}
"#
    );
    std::fs::write(dir.path().join("credstore.toml"), config).unwrap();
    let env = [
        ("CREDSTORE_CONFIG", "credstore.toml"),
        ("CREDSTORE_ADMIN_TOKEN", ADMIN),
        ("TEST_PG_PASSWORD", "pw-never-shown"),
        ("TEST_PG_KEK", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
    ];
    let (mut p, addr) = Proc::serve(dir.path(), &env, &[]);
    rt().block_on(async {
        let c = reqwest::Client::new();
        let (status, list) = call(&c, addr, "GET", &base("t", "p"), None).await;
        assert_eq!(status, 200);
        let entry = list["data"].as_array().unwrap().iter().find(|e| e["id"] == "pg-down").cloned().unwrap();
        assert_eq!(entry["available"], false, "{entry}");
        assert_eq!(entry["type"], "postgres");
        assert_eq!(entry["reason"], "unreachable", "{entry}");
        let path = format!("{}/pg-down/credentials", base("t", "p"));
        let (status, problem) = call(&c, addr, "POST", &path, Some(json!({"key": "k", "value": "v"}))).await;
        assert_eq!(status, 503, "{problem}");
        assert_eq!(problem["code"], "service_unavailable");
        // The embedded stores serve beside it.
        let path = format!("{}/sqlite-default/credentials", base("t", "p"));
        assert_eq!(call(&c, addr, "POST", &path, Some(json!({"key": "k", "value": "v"}))).await.0, 201);
    });
    assert!(p.terminate().success());
    let log = p.stderr_text();
    assert!(log.contains("pg-down") && !log.contains("pw-never-shown"), "{log}");
}
