//! The data commands of the `credstore` binary as processes: `get`, `set`,
//! `ls`, `rm` on the embedded store and through a running server, `run`
//! with real children, `gen-key`, `completions` and the exit codes.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::util::process::{command, run, Proc};

const ADMIN: &str = "cli-data-admin-token-0000";
const T: &str = "tenant_123";
const P: &str = "project_456";

/// Runs the binary to completion with `stdin`; the exit code, stdout as
/// bytes and stderr as text.
fn run_bytes(dir: &Path, env: &[(&str, &str)], args: &[&str], stdin: &[u8]) -> (i32, Vec<u8>, String) {
    let mut child = command(dir, env, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `args` then `tail`.
fn remote<'a>(args: &[&'a str], tail: &[&'a str]) -> Vec<&'a str> {
    [args, tail].concat()
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn cli_set_from_stdin_then_get_to_a_pipe_json_ls_and_rm_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, _, err) =
        run(d, &[], &["set", "app.token", "--meta", "owner=payments", "--meta", "note=a=b"], "hunter2");
    assert_eq!(code, 0, "{err}");
    // Raw bytes to a pipe, no newline added.
    let (code, out, err) = run_bytes(d, &[], &["get", "app.token"], b"");
    assert_eq!((code, out.as_slice()), (0, &b"hunter2"[..]), "{err}");
    let (code, out, _) = run(d, &[], &["get", "app.token", "--json"], "");
    assert_eq!(code, 0);
    let v = json_of(&out);
    assert_eq!(v["key"], "app.token");
    assert_eq!(v["storeId"], "sqlite-default");
    assert_eq!(v["value"], "hunter2", "stdout is a pipe: the value is in the JSON");
    assert_eq!(v["valueKind"], "text");
    assert_eq!(v["metadata"], json!({"owner": "payments", "note": "a=b"}));
    assert_eq!(v["expiresAt"], Value::Null);
    let version = v["version"].as_str().unwrap().to_owned();
    assert!(v["createdAt"].as_str().unwrap().ends_with('Z'), "{v}");

    // Binary values, from a file, come back byte for byte.
    let every_byte: Vec<u8> = (0..=255u8).rev().collect();
    std::fs::write(d.join("blob"), &every_byte).unwrap();
    let (code, _, err) = run(d, &[], &["set", "app.blob", "--from-file", "blob"], "");
    assert_eq!(code, 0, "{err}");
    let (code, out, _) = run_bytes(d, &[], &["get", "app.blob"], b"");
    assert_eq!((code, out), (0, every_byte.clone()));
    let (_, out, _) = run(d, &[], &["get", "app.blob", "--json"], "");
    let v = json_of(&out);
    assert_eq!(v["valueKind"], "binary");
    assert_eq!(
        base64::engine::general_purpose::STANDARD.decode(v["valueBase64"].as_str().unwrap()).unwrap(),
        every_byte
    );

    // --trim-newline drops the newline echo adds; without it the bytes are kept.
    assert_eq!(run(d, &[], &["set", "other", "--trim-newline"], "line\n").0, 0);
    assert_eq!(run_bytes(d, &[], &["get", "other"], b"").1, b"line");
    assert_eq!(run(d, &[], &["set", "other"], "line\n").0, 0);
    assert_eq!(run_bytes(d, &[], &["get", "other"], b"").1, b"line\n");

    // Conditional writes: exit 4 when the condition fails, nothing changed.
    let (code, _, err) = run(d, &[], &["set", "app.token", "--create-only"], "changed");
    assert_eq!(code, 4, "{err}");
    let (code, _, err) = run(d, &[], &["set", "app.token", "--if-version", "no-such-version"], "changed");
    assert_eq!(code, 4, "{err}");
    assert_eq!(run_bytes(d, &[], &["get", "app.token"], b"").1, b"hunter2");
    let (code, out, err) = run(d, &[], &["set", "app.token", "--if-version", &version, "--json"], "second");
    assert_eq!(code, 0, "{err}");
    let written = json_of(&out);
    assert_eq!(written["created"], false);
    assert_ne!(written["version"], json!(version));
    assert_eq!(run_bytes(d, &[], &["get", "app.token"], b"").1, b"second");
    assert_eq!(run(d, &[], &["set", "app.new", "--create-only"], "x").0, 0);

    // ls: every key, under a prefix, limited, as JSON.
    let (code, out, _) = run(d, &[], &["ls"], "");
    assert_eq!(code, 0);
    assert_eq!(out, "app.blob\napp.new\napp.token\nother\n");
    assert_eq!(run(d, &[], &["ls", "app.t"], "").1, "app.token\n");
    assert_eq!(run(d, &[], &["ls", "app.", "--limit", "2"], "").1, "app.blob\napp.new\n");
    let listed = json_of(&run(d, &[], &["ls", "app.", "--json"], "").1);
    assert_eq!(listed, json!({"data": [{"key": "app.blob"}, {"key": "app.new"}, {"key": "app.token"}]}));

    // rm: 0 when it existed, 3 when not; get of a missing key is 3.
    assert_eq!(run(d, &[], &["rm", "app.new"], "").0, 0);
    let (code, _, err) = run(d, &[], &["rm", "app.new"], "");
    assert_eq!(code, 3);
    assert!(err.contains("no credential 'app.new' in store 'sqlite-default'"), "{err}");
    let (code, out, err) = run(d, &[], &["get", "app.new"], "");
    assert_eq!((code, out.as_str()), (3, ""), "{err}");

    // Bad input is 2, before any store call; an unknown store is 3.
    assert_eq!(run(d, &[], &["get", "bad key"], "").0, 2);
    assert_eq!(run(d, &[], &["set", "k", "--meta", "novalue"], "v").0, 2);
    assert_eq!(run(d, &[], &["set", "k", "--create-only", "--if-version", "1"], "v").0, 2);
    let (code, _, err) = run(d, &[], &["get", "k", "--store", "nosuch"], "");
    assert_eq!(code, 3);
    assert!(err.contains("no store with id 'nosuch'"), "{err}");

    // No value shows up in the logs.
    let (_, _, err) = run(d, &[("CREDSTORE_LOG", "trace")], &["get", "app.token"], "");
    assert!(!err.contains("second"), "{err}");
}

#[test]
fn cli_and_api_read_and_write_the_same_project_namespace_and_server_mode_works() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let viewer = "cli-data-viewer-token-000";
    let revealer = "cli-data-reveal-only-0000";
    let mut config = "admin_reveal = true\n".to_owned();
    for (name, secret, action) in [("viewer", viewer, "view"), ("revealer", revealer, "reveal")] {
        let (code, hash, _) = run(d, &[], &["hash-token"], secret);
        assert_eq!(code, 0);
        config.push_str(&format!(
            "[[tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\ntenants = [\"*\"]\nprojects = [\"*\"]\nactions = \
             [\"{action}\"]\n",
            hash.trim()
        ));
    }
    std::fs::write(d.join("credstore.toml"), config).unwrap();
    let env = [("CREDSTORE_ADMIN_TOKEN", ADMIN), ("CREDSTORE_CONFIG", "credstore.toml")];
    let scope = ["--tenant", T, "--project", P];

    // Written by the CLI into the project's namespace while no server runs.
    let set = [&["set", "db.password"][..], &scope].concat();
    assert_eq!(run(d, &env, &set, "from-the-cli").0, 0);
    // The root namespace is another one.
    assert_eq!(run(d, &env, &["get", "db.password"], "").0, 3);

    let (mut server, addr) = Proc::serve(d, &env, &[]);
    let url = format!("http://{addr}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let value_path = format!(
        "/manage/tenants/{T}/projects/{P}/credential-stores/sqlite-default/credentials/db.password/value"
    );
    rt.block_on(async {
        let c = reqwest::Client::new();
        let r = c.get(format!("{url}{value_path}")).bearer_auth(ADMIN).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["data"]["value"], "from-the-cli", "the API reads what the CLI wrote");
    });

    // --server: the same commands through the Credential Stores API.
    let remote_env = [("CREDSTORE_TOKEN", ADMIN)];
    let tail = [&["--server", url.as_str()][..], &scope].concat();
    let (code, out, err) = run_bytes(d, &remote_env, &remote(&["get", "db.password"], &tail), b"");
    assert_eq!((code, out.as_slice()), (0, &b"from-the-cli"[..]), "{err}");
    let (code, _, err) =
        run(d, &remote_env, &remote(&["set", "api.key", "--meta", "team=core"], &tail), "from-server");
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(d, &remote_env, &remote(&["get", "api.key", "--json"], &tail), "");
    assert_eq!(code, 0, "{err}");
    let v = json_of(&out);
    assert_eq!((v["value"].clone(), v["metadata"].clone()), (json!("from-server"), json!({"team": "core"})));
    assert_eq!(v["storeId"], "sqlite-default");
    let (code, _, _) = run(d, &remote_env, &remote(&["set", "api.key", "--create-only"], &tail), "again");
    assert_eq!(code, 4, "a failed condition is 4 through the server too");
    let (code, out, _) = run(d, &remote_env, &remote(&["ls"], &tail), "");
    assert_eq!((code, out.as_str()), (0, "api.key\ndb.password\n"));
    assert_eq!(
        run(d, &remote_env, &remote(&["ls", "api", "--json"], &tail), "").1.trim(),
        r#"{"data":[{"key":"api.key"}]}"#
    );
    let (code, out, err) = run(
        d,
        &remote_env,
        &[
            &remote(&["run", "--env", "A=api.key", "--env", "B=db.password"], &tail)[..],
            &["--", "sh", "-c", "printf %s \"$A $B\""],
        ]
        .concat(),
        "",
    );
    assert_eq!((code, out.as_str()), (0, "from-server from-the-cli"), "{err}");
    // A token without `reveal` is refused: 5; an unknown key is 3.
    let (code, _, err) = run(d, &[("CREDSTORE_TOKEN", viewer)], &remote(&["get", "api.key"], &tail), "");
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("403"), "{err}");
    // A token with `reveal` alone reads a value (one value read, no metadata).
    let (code, out, err) = run(d, &[("CREDSTORE_TOKEN", revealer)], &remote(&["get", "api.key"], &tail), "");
    assert_eq!((code, out.as_str()), (0, "from-server"), "{err}");
    assert_eq!(run(d, &remote_env, &remote(&["get", "nosuch"], &tail), "").0, 3);
    assert_eq!(run(d, &remote_env, &remote(&["get", "k", "--store", "nosuch"], &tail), "").0, 3);
    // Without a token, or without the project, it is a usage error.
    assert_eq!(run(d, &[], &remote(&["get", "api.key"], &tail), "").0, 2);
    assert_eq!(run(d, &remote_env, &["get", "api.key", "--server", &url], "").0, 2);
    assert_eq!(run(d, &remote_env, &remote(&["rm", "api.key"], &tail), "").0, 0);
    assert_eq!(run(d, &remote_env, &remote(&["rm", "api.key"], &tail), "").0, 3);
    assert!(server.terminate().success(), "{}", server.stderr_text());

    // A server that does not answer is exit 1, within the timeout.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent = format!("http://{}", listener.local_addr().unwrap());
    let started = Instant::now();
    let args = ["get", "k", "--server", &silent, "--tenant", T, "--project", P, "--timeout", "300ms"];
    let (code, _, err) = run(d, &remote_env, &args, "");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("did not answer in time"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn run_gives_the_child_the_values_in_its_environment_and_its_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (k, v) in [("db.password", "pw-1"), ("app.api-key", "ak-2"), ("app.db.user", "u-3")] {
        assert_eq!(run(d, &[], &["set", k], v).0, 0);
    }
    let (code, out, err) =
        run(d, &[], &["run", "--env", "TOKEN=db.password", "--", "sh", "-c", "printf %s \"$TOKEN\""], "");
    assert_eq!((code, out.as_str()), (0, "pw-1"), "{err}");
    let (code, out, err) = run(
        d,
        &[],
        &["run", "--prefix", "app.", "--", "sh", "-c", "printf '%s %s %s' \"$API_KEY\" \"$DB_USER\" \"$#\""],
        "",
    );
    assert_eq!((code, out.as_str()), (0, "ak-2 u-3 0"), "{err}");
    // The child's exit code, and 128 + the signal that ended it.
    assert_eq!(run(d, &[], &["run", "--env", "T=db.password", "--", "sh", "-c", "exit 7"], "").0, 7);
    assert_eq!(run(d, &[], &["run", "--", "sh", "-c", "kill -KILL $$"], "").0, 128 + 9);
    // stdin is the child's.
    assert_eq!(run(d, &[], &["run", "--", "cat"], "piped in").1, "piped in");
    // The token credstore reads is not passed on; other variables are.
    let (_, out, _) = run(
        d,
        &[("CREDSTORE_TOKEN", "not-for-the-child-000000"), ("OTHER", "kept")],
        &["run", "--", "sh", "-c", "printf %s \"${CREDSTORE_TOKEN-unset} $OTHER\""],
        "",
    );
    assert_eq!(out, "unset kept");

    // A missing key fails before the child runs, naming the key.
    let (code, _, err) = run(
        d,
        &[],
        &["run", "--env", "A=db.password", "--env", "B=nosuch", "--", "sh", "-c", "touch ran"],
        "",
    );
    assert_eq!(code, 3);
    assert!(err.contains("'nosuch'") && err.contains("for B"), "{err}");
    assert!(!d.join("ran").exists(), "the child must not have run");
    // A binary value cannot be an environment variable: named, child not run.
    std::fs::write(d.join("bin"), [0xff, 0x00, 0xfe]).unwrap();
    assert_eq!(run(d, &[], &["set", "blob", "--from-file", "bin"], "").0, 0);
    let (code, _, err) = run(d, &[], &["run", "--env", "B=blob", "--", "sh", "-c", "touch ran"], "");
    assert_eq!(code, 1);
    assert!(err.contains("'blob'"), "{err}");
    assert!(!d.join("ran").exists());
    // Collisions and bad names are usage errors; a missing command is 127.
    assert_eq!(run(d, &[], &["set", "app.api.key"], "x").0, 0);
    let (code, _, err) = run(d, &[], &["run", "--prefix", "app.", "--", "true"], "");
    assert_eq!(code, 2);
    assert!(err.contains("'app.api-key'") && err.contains("'app.api.key'"), "{err}");
    assert_eq!(run(d, &[], &["run", "--env", "1X=db.password", "--", "true"], "").0, 2);
    assert_eq!(run(d, &[], &["run", "--", "no-such-command-credstore-test"], "").0, 127);
    assert_eq!(run(d, &[], &["run", "--env", "A=db.password"], "").0, 2, "no command");
}

#[test]
fn run_forwards_int_term_hup_and_quit_to_the_child_and_exits_with_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(run(d, &[], &["set", "k"], "v").0, 0);
    for (name, number, code) in [
        ("INT", libc::SIGINT, 3),
        ("TERM", libc::SIGTERM, 4),
        ("HUP", libc::SIGHUP, 5),
        ("QUIT", libc::SIGQUIT, 6),
    ] {
        let marker = format!("got-{name}");
        let script = format!(
            "trap 'echo {name} > {marker}; exit {code}' {name}; echo ready; while :; do sleep 0.05; done"
        );
        let mut child = command(d, &[], &["run", "--env", "K=k", "--", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), "ready", "the child runs");
        // SAFETY: a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, number) };
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{name}: credstore exits with the child's code: {status}");
        assert_eq!(
            std::fs::read_to_string(d.join(&marker)).unwrap(),
            format!("{name}\n"),
            "the child's trap ran"
        );
    }
}

#[test]
fn gen_key_prints_a_new_32_byte_key_that_keys_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, a, _) = run(d, &[], &["gen-key"], "");
    assert_eq!(code, 0);
    let (_, b, _) = run(d, &[], &["gen-key"], "");
    let decode = |s: &str| base64::engine::general_purpose::STANDARD.decode(s.trim()).unwrap();
    assert_eq!(decode(&a).len(), 32);
    assert_eq!(decode(&b).len(), 32);
    assert_ne!(a, b, "every key is new");
    // The format the key settings read.
    let env = [("CREDSTORE_MASTER_KEY", a.trim())];
    assert_eq!(run(d, &env, &["set", "k"], "v").0, 0);
    assert_eq!(run(d, &env, &["get", "k"], "").1, "v");
    assert!(!d.join("credstore-data/master.key").exists(), "keyed by the variable, no key file made");
    // --out: a new owner-only file, never an existing one.
    let (code, out, err) = run(d, &[], &["gen-key", "--out", "team.key"], "");
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert_eq!(decode(&std::fs::read_to_string(d.join("team.key")).unwrap()).len(), 32);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(d.join("team.key")).unwrap().permissions().mode() & 0o777, 0o600);
    let before = std::fs::read(d.join("team.key")).unwrap();
    assert_eq!(run(d, &[], &["gen-key", "--out", "team.key"], "").0, 1);
    assert_eq!(std::fs::read(d.join("team.key")).unwrap(), before);
}

#[test]
fn completions_print_scripts_a_shell_sources_and_help_lists_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, bash, _) = run(d, &[], &["completions", "bash"], "");
    assert_eq!(code, 0);
    assert!(bash.contains("complete -F") && bash.contains("credstore"), "{bash}");
    std::fs::write(d.join("completion.bash"), &bash).unwrap();
    let sourced = std::process::Command::new("bash")
        .current_dir(d)
        .args(["-c", "source ./completion.bash && complete -p credstore"])
        .output();
    match sourced {
        Ok(out) => {
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert!(String::from_utf8_lossy(&out.stdout).contains("credstore"));
        }
        Err(e) => eprintln!("skipped sourcing the bash script: no bash ({e})"),
    }
    assert!(run(d, &[], &["completions", "zsh"], "").1.starts_with("#compdef credstore"));
    assert!(run(d, &[], &["completions", "fish"], "").1.contains("complete -c credstore"));
    assert_eq!(run(d, &[], &["completions", "nosuchshell"], "").0, 2);
    let (code, help, _) = run(d, &[], &["--help"], "");
    assert_eq!(code, 0);
    assert!(help.contains("Exit codes") && help.contains("6    not shown"), "{help}");
    assert!(run(d, &[], &["run", "--help"], "").1.contains("128 + the signal"));
}

#[test]
fn migrate_prints_no_progress_when_stdout_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("credstore.toml"), "[[stores]]\nid = \"copy\"\ntype = \"encrypted-sqlite\"\npath = \"copy.db\"\nmaster_key_file = \"copy.key\"\n").unwrap();
    let env = [("CREDSTORE_CONFIG", "credstore.toml")];
    for k in ["a", "b"] {
        assert_eq!(run(d, &env, &["set", k], "v").0, 0);
    }
    let (code, out, err) = run(d, &env, &["migrate", "--from", "sqlite-default", "--to", "copy"], "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "migrate sqlite-default -> copy: listed 2, copied 2, already identical 0, verified 2, vanished 0, failed 0\n");
    let (code, out, err) = run(d, &env, &["rotate-key", "--store", "copy"], "");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "one result line, no progress drawn: {out:?}");
    assert!(!out.contains('\r') && !out.contains('\u{1b}'), "{out:?}");
    assert_eq!(run(d, &env, &["get", "b", "--store", "copy"], "").1, "v");
}

#[test]
fn server_mode_over_tls_trusts_only_the_given_ca() {
    use crate::util::certs::Pki;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::new("cli");
    let leaf = pki.server(&["localhost"]);
    std::fs::write(d.join("fullchain.pem"), &leaf.chain_pem).unwrap();
    std::fs::write(d.join("key.pem"), &leaf.key_pem).unwrap();
    std::fs::write(d.join("ca.pem"), pki.root_pem()).unwrap();
    std::fs::write(d.join("stranger.pem"), Pki::new("stranger").root_pem()).unwrap();
    std::fs::write(
        d.join("credstore.toml"),
        "admin_reveal = true\ntls = { cert_file = \"fullchain.pem\", key_file = \"key.pem\" }\n",
    )
    .unwrap();
    let env = [("CREDSTORE_ADMIN_TOKEN", ADMIN), ("CREDSTORE_CONFIG", "credstore.toml")];
    let (mut server, addr) = Proc::serve(d, &env, &[]);
    let url = format!("https://localhost:{}", addr.port());
    let remote_env = [("CREDSTORE_TOKEN", ADMIN)];
    let tail = ["--server", url.as_str(), "--tenant", T, "--project", P];
    let with_ca = |ca: &'static str| [&tail[..], &["--ca-cert", ca]].concat();
    let (code, _, err) = run(d, &remote_env, &remote(&["set", "k"], &with_ca("ca.pem")), "over-tls");
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(d, &remote_env, &remote(&["get", "k"], &with_ca("ca.pem")), "");
    assert_eq!((code, out.as_str()), (0, "over-tls"), "{err}");
    // Another CA, or the system's roots: the connection is refused, nothing sent.
    let (code, _, err) = run(d, &remote_env, &remote(&["get", "k"], &with_ca("stranger.pem")), "");
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot be reached"), "{err}");
    assert_eq!(run(d, &remote_env, &remote(&["get", "k"], &tail), "").0, 1);
    assert_eq!(run(d, &remote_env, &remote(&["get", "k"], &with_ca("missing.pem")), "").0, 1);
    assert!(server.terminate().success(), "{}", server.stderr_text());
}

#[test]
fn uri_opens_a_store_from_one_string_and_run_does_not_pass_its_key_variable_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, key, _) = run(d, &[], &["gen-key"], "");
    assert_eq!(code, 0);
    let env = [("APP_KEY", key.trim())];
    let uri = "sqlite:data/app.db?master_key_env=APP_KEY";
    let (code, _, err) = run(d, &env, &["set", "db.password", "--uri", uri], "from-a-uri");
    assert_eq!(code, 0, "{err}");
    assert!(d.join("data/app.db").exists(), "relative to the current directory");
    assert!(!d.join("credstore-data").exists(), "the embedded store is not touched");
    let (code, out, err) = run(d, &env, &["get", "db.password", "--uri", uri], "");
    assert_eq!((code, out.as_str()), (0, "from-a-uri"), "{err}");
    // CREDSTORE_URI names it too; the key variable is not the child's.
    let env_uri = [("APP_KEY", key.trim()), ("CREDSTORE_URI", uri)];
    let (code, out, err) = run(
        d,
        &env_uri,
        &["run", "--env", "P=db.password", "--", "sh", "-c", "printf %s \"$P ${APP_KEY-unset}\""],
        "",
    );
    assert_eq!((code, out.as_str()), (0, "from-a-uri unset"), "{err}");
    // The project namespace, as with --store.
    let scoped = ["get", "db.password", "--uri", uri, "--tenant", T, "--project", P];
    assert_eq!(run(d, &env, &scoped, "").0, 3);
    // A secret written into the URI is refused naming the *_env way, never shown.
    let (code, _, err) = run(d, &env, &["get", "k", "--uri", "sqlite:x.db?master_key=c2VjcmV0LWtleQ"], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("master_key_env") && !err.contains("c2VjcmV0LWtleQ"), "{err}");
    assert!(!d.join("x.db").exists());
    assert_eq!(run(d, &env, &["get", "k", "--uri", "nosuch:x"], "").0, 2);
    assert_eq!(run(d, &env, &["get", "k", "--uri", uri, "--server", "http://127.0.0.1:1"], "").0, 2);
}

#[test]
fn the_key_variable_of_a_uri_store_in_the_config_file_is_wiped_from_the_servers_environment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, key, _) = run(d, &[], &["gen-key"], "");
    let key = key.trim().to_owned();
    std::fs::write(
        d.join("credstore.toml"),
        "[[stores]]\nid = \"team\"\nuri = \"sqlite:team.db?master_key_env=TEAM_KEY\"\n",
    )
    .unwrap();
    let env = [("CREDSTORE_ADMIN_TOKEN", ADMIN), ("CREDSTORE_CONFIG", "credstore.toml"), ("TEAM_KEY", &key)];
    let (mut server, addr) = Proc::serve(d, &env, &[]);
    let environ = std::fs::read(format!("/proc/{}/environ", server.child.id())).unwrap();
    assert!(
        !environ.windows(key.len()).any(|w| w == key.as_bytes()),
        "the key is still in /proc/<pid>/environ"
    );
    // It was read before: the store opened with it.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let url = format!("http://{addr}/manage/tenants/{T}/projects/{P}/credential-stores");
        let list: Value =
            reqwest::Client::new().get(url).bearer_auth(ADMIN).send().await.unwrap().json().await.unwrap();
        let team = list["data"].as_array().unwrap().iter().find(|s| s["id"] == "team").cloned().unwrap();
        assert_eq!(team["available"], true, "{list}");
    });
    assert!(server.terminate().success(), "{}", server.stderr_text());
}
