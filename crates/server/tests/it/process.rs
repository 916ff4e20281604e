//! The `credstore` binary as a process: the zero-setup first run, SIGTERM
//! with writes in flight, nothing secret on disk or in the logs, and the CLI.

use crate::util::process as proc_util;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::harness::assert_all_available;
use proc_util::{run, Proc};
use serde_json::{json, Value};

fn every_file(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(every_file(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Asserts that no file under `dir` holds any of `needles`.
fn assert_not_on_disk(dir: &Path, needles: &[&str]) -> usize {
    let files = every_file(dir);
    for file in &files {
        let bytes = std::fs::read(file).unwrap_or_default();
        for needle in needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{} holds a secret in plaintext",
                file.display()
            );
        }
    }
    files.len()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

const CREDS: &str = "/manage/tenants/tenant_123/projects/project_456/credential-stores";

async fn post(
    c: &reqwest::Client,
    addr: SocketAddr,
    token: &str,
    store: &str,
    body: Value,
) -> reqwest::Result<u16> {
    let url = format!("http://{addr}{CREDS}/{store}/credentials");
    Ok(c.post(url).bearer_auth(token).json(&body).send().await?.status().as_u16())
}

async fn get_json(c: &reqwest::Client, addr: SocketAddr, token: &str, path: &str) -> (u16, Value) {
    let r = c.get(format!("http://{addr}{path}")).bearer_auth(token).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[test]
fn first_run_needs_nothing_prints_the_token_once_and_keeps_no_secret_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let canary = format!("PLAINTEXT-CANARY-{}-do-not-store", std::process::id());
    let (mut p, addr) = Proc::serve(dir.path(), &[], &[]);
    let out = p.stdout_text();
    let tokens: Vec<&str> = out.split_whitespace().filter(|w| w.starts_with("cst_")).collect();
    assert_eq!(tokens.len(), 1, "the token is printed once: {out}");
    let token = tokens[0].to_owned();
    let data = dir.path().join("credstore-data");

    let rt = rt();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let (status, list) = get_json(&c, addr, &token, CREDS).await;
        assert_eq!(status, 200);
        assert_all_available(list, &[("memory-default", "memory"), ("sqlite-default", "encrypted-sqlite")]);
        for store in ["sqlite-default", "memory-default"] {
            let body = json!({"key": "canary", "value": canary, "metadata": {"owner": "tests"}});
            assert_eq!(post(&c, addr, &token, store, body).await.unwrap(), 201);
        }
    });
    // While running (WAL and all) and after a clean stop, neither the value nor the token is on disk.
    assert!(assert_not_on_disk(&data, &[&canary, &token]) >= 3);
    assert!(p.terminate().success(), "{}", p.stderr_text());
    assert_not_on_disk(&data, &[&canary, &token]);
    let logs = p.stderr_text();
    assert!(!logs.contains(&canary) && !logs.contains(&token), "a secret reached the logs");
    assert!(logs.contains("SIGTERM received"));

    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("master.key")), 0o600);
    assert_eq!(mode(&data.join("admin-token.sha256")), 0o600);
    assert_eq!(mode(&data.join("sqlite-default.db")), 0o600);
    let hash = std::fs::read_to_string(data.join("admin-token.sha256")).unwrap();
    assert_eq!(hash.trim().len(), 64);

    // Second run: no new token; the first still works; sqlite kept the credential, memory did not.
    let (mut p, addr) = Proc::serve(dir.path(), &[("CREDSTORE_LOG_FORMAT", "json")], &[]);
    assert!(!p.stdout_text().contains("cst_"), "{}", p.stdout_text());
    rt.block_on(async {
        let c = reqwest::Client::new();
        let (status, got) =
            get_json(&c, addr, &token, &format!("{CREDS}/sqlite-default/credentials/canary")).await;
        assert_eq!(status, 200);
        assert_eq!(got["data"]["metadata"], json!({"owner": "tests"}));
        assert_eq!(
            get_json(&c, addr, &token, &format!("{CREDS}/memory-default/credentials/canary")).await.0,
            404
        );
        assert_eq!(get_json(&c, addr, "cst_wrong", CREDS).await.0, 401);
        let value = format!("{CREDS}/sqlite-default/credentials/canary/value");
        assert_eq!(
            get_json(&c, addr, &token, &value).await.0,
            403,
            "the admin token cannot read values by default"
        );
    });
    assert!(p.terminate().success());
    // JSON logs: one object per line.
    let logs = p.stderr_text();
    assert!(
        logs.lines().filter(|l| !l.is_empty()).all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "{logs}"
    );
    assert!(logs.contains("\"request_id\""));

    // Third run: `admin_reveal = true` grants the admin token value reads.
    std::fs::write(dir.path().join("credstore.toml"), "admin_reveal = true\n").unwrap();
    let (mut p, addr) = Proc::serve(dir.path(), &[("CREDSTORE_CONFIG", "credstore.toml")], &[]);
    rt.block_on(async {
        let c = reqwest::Client::new();
        let (status, got) =
            get_json(&c, addr, &token, &format!("{CREDS}/sqlite-default/credentials/canary/value")).await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["data"]["value"], json!(canary));
    });
    assert!(p.terminate().success());
}

#[test]
fn secret_variables_are_wiped_from_the_process_environment_once_read() {
    let dir = tempfile::tempdir().unwrap();
    let admin = "cst_admin-from-the-environment-5e1f";
    let master = "TWFzdGVyS2V5RnJvbVRoZUVudmlyb25tZW50MDAwMDA=";
    let extra = "RXh0cmFLZXlOYW1lZEJ5bWFzdGVyX2tleV9lbnYwMDA=";
    std::fs::write(
        dir.path().join("credstore.toml"),
        "[[stores]]\nid = \"extra\"\ntype = \"encrypted-sqlite\"\npath = \"extra.db\"\nmaster_key_env = \"EXTRA_KEY\"\n",
    )
    .unwrap();
    let env = [
        ("CREDSTORE_CONFIG", "credstore.toml"),
        ("CREDSTORE_ADMIN_TOKEN", admin),
        ("CREDSTORE_MASTER_KEY", master),
        ("EXTRA_KEY", extra),
    ];
    let (mut p, addr) = Proc::serve(dir.path(), &env, &[]);

    // What the process started with, as any process of the same user sees it.
    let environ = std::fs::read(format!("/proc/{}/environ", p.child.id())).unwrap();
    let seen = |needle: &str| environ.windows(needle.len()).any(|w| w == needle.as_bytes());
    for secret in [admin, master, extra] {
        assert!(!seen(secret), "a secret is still in /proc/<pid>/environ");
    }
    assert!(seen("CREDSTORE_CONFIG=credstore.toml"), "other variables are left as they are");

    // The server read them before wiping them: the token is accepted and
    // both keyed stores open.
    let rt = rt();
    rt.block_on(async {
        let c = reqwest::Client::new();
        let (status, list) = get_json(&c, addr, admin, CREDS).await;
        assert_eq!(status, 200, "{list}");
        let available: Vec<_> = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| (s["id"].clone(), s["available"].clone()))
            .collect();
        assert!(available.contains(&(json!("extra"), json!(true))), "{list}");
        assert!(available.contains(&(json!("sqlite-default"), json!(true))), "{list}");
        let body = json!({"key": "k", "value": "v"});
        assert_eq!(post(&c, addr, admin, "extra", body).await.unwrap(), 201);
    });
    assert!(p.terminate().success(), "{}", p.stderr_text());
}

#[test]
fn signals_sent_as_soon_as_the_server_says_it_listens_are_handled() {
    let dir = tempfile::tempdir().unwrap();
    for (signal, name) in [(libc::SIGTERM, "SIGTERM"), (libc::SIGHUP, "SIGHUP"), (libc::SIGINT, "SIGINT")] {
        let (mut p, _) = Proc::serve(dir.path(), &[], &[]);
        // SAFETY: a signal to our own child process.
        unsafe { libc::kill(p.child.id() as i32, signal) };
        if signal == libc::SIGHUP {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !p.stderr_text().contains("the audit log is reopened") {
                assert!(std::time::Instant::now() < deadline, "{}", p.stderr_text());
                assert!(p.child.try_wait().unwrap().is_none(), "SIGHUP ended the process");
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(p.terminate().success(), "{}", p.stderr_text());
        } else {
            let status = p.wait();
            assert!(status.success(), "{name} right after start: {status}: {}", p.stderr_text());
            assert!(p.stderr_text().contains(&format!("{name} received")), "{}", p.stderr_text());
        }
    }
}

#[test]
fn sighup_reopens_the_audit_log_after_an_external_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let admin = "cst_admin-for-the-sighup-test-77";
    let (mut p, addr) = Proc::serve(dir.path(), &[("CREDSTORE_ADMIN_TOKEN", admin)], &[]);
    let log = dir.path().join("credstore-data").join("audit.log");
    let rotated = dir.path().join("credstore-data").join("audit.log.old");
    let rt = rt();
    let create = |key: &str| {
        rt.block_on(async {
            let c = reqwest::Client::new();
            post(&c, addr, admin, "memory-default", json!({"key": key, "value": "v"})).await.unwrap()
        })
    };
    assert_eq!(create("before"), 201);
    std::fs::rename(&log, &rotated).unwrap();
    // SAFETY: a signal to our own child process.
    unsafe { libc::kill(p.child.id() as i32, libc::SIGHUP) };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !p.stderr_text().contains("the audit log is reopened") {
        assert!(std::time::Instant::now() < deadline, "{}", p.stderr_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(create("after"), 201);
    let keys = |path: &Path| -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["key"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(keys(&rotated), ["before", "before"], "started and succeeded, in the rotated file");
    assert_eq!(keys(&log), ["after", "after"], "a new file at the configured path");
    assert!(p.terminate().success(), "{}", p.stderr_text());
}

#[test]
fn sigterm_finishes_in_flight_requests_and_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let token = "an-admin-token-from-the-environment";
    let env = [("CREDSTORE_ADMIN_TOKEN", token)];
    let (mut p, addr) = Proc::serve(dir.path(), &env, &[]);
    assert!(!p.stdout_text().contains("cst_"), "no token is generated when one is given");
    let rt = rt();
    let acked: Vec<String> = rt.block_on(async {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let c = reqwest::Client::new();
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let (c, acked) = (c.clone(), acked.clone());
                tokio::spawn(async move {
                    for n in 0..500 {
                        let key = format!("w{w}-{n}");
                        match post(&c, addr, token, "sqlite-default", json!({"key": key, "value": "v"})).await
                        {
                            Ok(201) => acked.lock().unwrap().push(key),
                            Ok(s) => panic!("unexpected status {s}"),
                            Err(_) => break, // the server has stopped accepting
                        }
                    }
                })
            })
            .collect();
        while acked.lock().unwrap().len() < 80 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(p.child.id() as i32, libc::SIGTERM) };
        for w in workers {
            w.await.unwrap();
        }
        let keys = acked.lock().unwrap().clone();
        keys
    });
    assert!(p.wait().success(), "{}", p.stderr_text());
    assert!(acked.len() >= 80 && acked.len() < 4000, "the workers were cut off by the shutdown");

    let (mut p, addr) = Proc::serve(dir.path(), &env, &[]);
    let stored: std::collections::BTreeSet<String> = rt.block_on(async {
        let c = reqwest::Client::new();
        let mut keys = std::collections::BTreeSet::new();
        let mut cursor = String::new();
        loop {
            let path = format!("{CREDS}/sqlite-default/credentials?limit=1000{cursor}");
            let (status, page) = get_json(&c, addr, token, &path).await;
            assert_eq!(status, 200);
            keys.extend(
                page["data"].as_array().unwrap().iter().map(|e| e["key"].as_str().unwrap().to_owned()),
            );
            match page["nextCursor"].as_str() {
                Some(next) => cursor = format!("&cursor={next}"),
                None => break,
            }
        }
        keys
    });
    let lost: Vec<_> = acked.iter().filter(|k| !stored.contains(*k)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(p.terminate().success());
}

#[test]
fn cli_stores_migrate_rotate_hash_and_openapi() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let admin = "cli-test-admin-token-0000";
    let viewer = "cli-test-viewer-token-000";
    let (code, hash, _) = run(d, &[], &["hash-token"], &format!("{viewer}\n"));
    assert_eq!(code, 0);
    let hash = hash.trim().to_owned();
    assert_eq!(hash.len(), 64);
    assert_eq!(run(d, &[], &["hash-token"], "short").0, 1);
    std::fs::write(
        d.join("credstore.toml"),
        format!(
            r#"
[[stores]]
id = "team"
type = "encrypted-sqlite"
path = "team/team.db"
master_key_file = "team/team.key"

[[stores]]
id = "scratch"
type = "memory"

[[tokens]]
name = "viewer"
sha256 = "{hash}"
tenants = ["tenant_123"]
projects = ["*"]
actions = ["view"]
"#
        ),
    )
    .unwrap();
    let env = [("CREDSTORE_ADMIN_TOKEN", admin), ("CREDSTORE_CONFIG", "credstore.toml")];

    let (code, table, err) = run(d, &env, &["stores"], "");
    assert_eq!(code, 0, "{err}");
    for id in ["memory-default", "sqlite-default", "team", "scratch"] {
        assert!(table.lines().any(|l| l.starts_with(id) && l.contains(" yes ")), "{table}");
    }
    let (code, listing, _) = run(d, &env, &["stores", "--json"], "");
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 4);
    assert_eq!(
        v["data"][2],
        json!({"available": true, "id": "team", "reason": "", "type": "encrypted-sqlite"})
    );

    // Put three credentials into sqlite-default through the API.
    let (mut p, addr) = Proc::serve(d, &env, &[]);
    let rt = rt();
    rt.block_on(async {
        let c = reqwest::Client::new();
        for (i, k) in ["a", "b", "c"].iter().enumerate() {
            let body = json!({"key": k, "value": format!("value-{i}"), "metadata": {"n": i.to_string()}});
            assert_eq!(post(&c, addr, admin, "sqlite-default", body).await.unwrap(), 201);
        }
        assert_eq!(get_json(&c, addr, viewer, CREDS).await.0, 200);
        assert_eq!(
            post(&c, addr, viewer, "sqlite-default", json!({"key": "x", "value": "y"})).await.unwrap(),
            403
        );
    });
    assert!(p.terminate().success());

    let migrate = [
        "migrate",
        "--from",
        "sqlite-default",
        "--to",
        "team",
        "--tenant",
        "tenant_123",
        "--project",
        "project_456",
    ];
    let (code, out, err) = run(d, &env, &migrate, "");
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("listed 3, copied 3, already identical 0, verified 3, vanished 0, failed 0"),
        "{out}"
    );
    let (code, out, _) = run(d, &env, &migrate, "");
    assert_eq!(code, 0);
    assert!(
        out.contains("listed 3, copied 0, already identical 3, verified 3, vanished 0, failed 0"),
        "{out}"
    );
    assert_eq!(
        run(d, &env, &["migrate", "--from", "sqlite-default", "--to", "team", "--tenant", "t"], "").0,
        2
    );
    assert_eq!(run(d, &env, &["migrate", "--from", "nosuch", "--to", "team"], "").0, 1);

    // Rotation: a bad key changes nothing; a generated one replaces the key file.
    let key_file = d.join("team/team.key");
    let before = std::fs::read(&key_file).unwrap();
    let (code, _, err) = run(d, &env, &["rotate-key", "--store", "team", "--new-key-stdin"], "not-a-key");
    assert_eq!(code, 1);
    assert!(err.contains("base64"), "{err}");
    assert_eq!(std::fs::read(&key_file).unwrap(), before);
    let (code, out, err) = run(d, &env, &["rotate-key", "--store", "team"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("3 credentials re-sealed"), "{out}");
    assert_ne!(std::fs::read(&key_file).unwrap(), before);
    assert_eq!(mode(&key_file), 0o600);
    assert!(!d.join("team/team.key.new").exists());
    assert!(!d.join("team/team.key.old").exists(), "the old key goes once the new one opened the store");
    let (code, _, err) = run(d, &env, &["rotate-key", "--store", "scratch"], "");
    assert_eq!(code, 1);
    assert!(err.contains("not an encrypted SQLite store"), "{err}");
    // With the key in an environment variable, a new key must be given.
    let (code, _, err) = run(
        d,
        &[("CREDSTORE_MASTER_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")],
        &["rotate-key", "--store", "sqlite-default"],
        "",
    );
    assert_eq!(code, 1, "{err}");

    // The migrated, re-keyed credentials are served from the new store.
    let (mut p, addr) = Proc::serve(d, &env, &[]);
    rt.block_on(async {
        let c = reqwest::Client::new();
        let (status, got) = get_json(&c, addr, viewer, &format!("{CREDS}/team/credentials/b")).await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["data"]["metadata"], json!({"n": "1"}));
        let (_, keys) = get_json(&c, addr, admin, &format!("{CREDS}/team/credentials")).await;
        assert_eq!(keys["data"], json!([{"key": "a"}, {"key": "b"}, {"key": "c"}]));
    });
    assert!(p.terminate().success());

    let (code, doc, _) = run(d, &[], &["openapi"], "");
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&doc).unwrap()["openapi"], "3.1.0");
    let (code, _, err) = run(d, &[("CREDSTORE_ADMIN_TOKEN", "short")], &["serve"], "");
    assert_eq!(code, 1);
    assert!(err.contains("at least 16 bytes"), "{err}");
    let (code, _, err) = run(d, &[("CREDSTORE_CONFIG", "missing.toml")], &["stores"], "");
    assert_eq!(code, 1);
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn rotate_key_interrupted_after_its_commit_is_completed_by_the_next_opening() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("credstore.toml"),
        "[[stores]]\nid = \"team\"\ntype = \"encrypted-sqlite\"\npath = \"team.db\"\nmaster_key_file = \"team.key\"\n",
    )
    .unwrap();
    let env =
        [("CREDSTORE_ADMIN_TOKEN", "cli-test-admin-token-0000"), ("CREDSTORE_CONFIG", "credstore.toml")];
    let (code, table, err) = run(d, &env, &["stores"], "");
    assert_eq!(code, 0, "{err}");
    assert!(table.lines().any(|l| l.starts_with("team") && l.contains(" yes ")), "{table}");
    // What a rotate-key killed between the database's commit and the key
    // file's rename leaves: the database under the key in team.key.new,
    // team.key still holding the old key.
    let new_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let (code, out, err) = run(d, &env, &["rotate-key", "--store", "team", "--new-key-stdin"], new_key);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("store the new key where the old one was"), "{out}");
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(d.join("team.key.new"))
            .unwrap();
        std::io::Write::write_all(&mut f, format!("{new_key}\n").as_bytes()).unwrap();
    }
    let (code, table, err) = run(d, &env, &["stores"], "");
    assert_eq!(code, 0, "{err}");
    assert!(table.lines().any(|l| l.starts_with("team") && l.contains(" yes ")), "{table}\n{err}");
    assert_eq!(std::fs::read_to_string(d.join("team.key")).unwrap().trim(), new_key);
    assert!(!d.join("team.key.new").exists() && !d.join("team.key.old").exists());
    assert_eq!(mode(&d.join("team.key")), 0o600);
    // And a generated rotation from there leaves one key file that opens it.
    let (code, out, err) = run(d, &env, &["rotate-key", "--store", "team"], "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("the new key is in"), "{out}");
    assert_ne!(std::fs::read_to_string(d.join("team.key")).unwrap().trim(), new_key);
    assert!(!d.join("team.key.new").exists() && !d.join("team.key.old").exists());
    let (code, table, _) = run(d, &env, &["stores"], "");
    assert_eq!(code, 0);
    assert!(table.lines().any(|l| l.starts_with("team") && l.contains(" yes ")), "{table}");
}
