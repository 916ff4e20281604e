//! TLS on the listeners: the `credstore` binary serves the Credential
//! Stores API over TLS to clients that verify the chain against a test CA
//! (HTTP/1.1 and HTTP/2 by ALPN), picks up a new certificate on SIGHUP
//! without dropping open connections, requires client certificates with
//! `client_ca_file`, and refuses to start on plaintext beyond loopback or
//! on unusable TLS files.

use crate::util::certs;
use crate::util::harness;
use crate::util::process as proc_util;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use certs::{Leaf, Pki};
use proc_util::Proc;
use reqwest::Version;

const TOKEN: &str = "an-admin-token-for-the-tls-tests";
/// The name the server certificates are issued for; clients resolve it to
/// the server's loopback address.
const NAME: &str = "credstore.test";
const STORES: &str = "/manage/tenants/tenant_1/projects/project_1/credential-stores";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// A client that trusts only `root_pem`, speaks only `version` (HTTP/1.1,
/// or HTTP/2 by ALPN), and presents `identity` when given.
fn client(addr: SocketAddr, root_pem: &str, version: Version, identity: Option<&Leaf>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(root_pem.as_bytes()).unwrap())
        .resolve(NAME, addr)
        .timeout(Duration::from_secs(10));
    b = if version == Version::HTTP_11 { b.http1_only() } else { b };
    if let Some(leaf) = identity {
        b = b.identity(reqwest::Identity::from_pem(leaf.identity_pem().as_bytes()).unwrap());
    }
    b.build().unwrap()
}

/// GETs the store list over `c`: the status and the HTTP version used.
async fn list(c: &reqwest::Client, port: u16) -> reqwest::Result<(u16, Version)> {
    let r = c.get(format!("https://{NAME}:{port}{STORES}")).bearer_auth(TOKEN).send().await?;
    let version = r.version();
    let status = r.status().as_u16();
    r.bytes().await?;
    Ok((status, version))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

/// Waits until the process has logged `needle`.
fn wait_for_log(p: &Proc, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p.stderr_text().contains(needle) {
        assert!(Instant::now() < deadline, "no {needle:?} in the log: {}", p.stderr_text());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sighup(p: &Proc) {
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(p.child.id() as i32, libc::SIGHUP) };
}

#[test]
fn tls_serves_http1_and_http2_to_a_verifying_client_and_sighup_swaps_the_certificate_without_dropping_connections(
) {
    let dir = tempfile::tempdir().unwrap();
    let first = Pki::new("first");
    let leaf = first.server(&[NAME]);
    write(dir.path(), "tls/fullchain.pem", &leaf.chain_pem);
    write(dir.path(), "tls/key.pem", &leaf.key_pem);
    // Relative to the config file.
    write(
        dir.path(),
        "conf/credstore.toml",
        "tls = { cert_file = \"../tls/fullchain.pem\", key_file = \"../tls/key.pem\" }\n",
    );
    let env = [("CREDSTORE_ADMIN_TOKEN", TOKEN), ("CREDSTORE_CONFIG", "conf/credstore.toml")];
    let (mut p, addr) = Proc::serve(dir.path(), &env, &[]);
    assert!(p.stderr_text().contains("tls=true"), "{}", p.stderr_text());
    let port = addr.port();
    let stranger = Pki::new("stranger");
    let rt = rt();
    let (old_h1, old_h2) = rt.block_on(async {
        let h1 = client(addr, &first.root_pem(), Version::HTTP_11, None);
        let h2 = client(addr, &first.root_pem(), Version::HTTP_2, None);
        assert_eq!(list(&h1, port).await.unwrap(), (200, Version::HTTP_11));
        assert_eq!(list(&h2, port).await.unwrap(), (200, Version::HTTP_2));
        // A client that trusts another CA refuses the server: the chain is really verified.
        let err = list(&client(addr, &stranger.root_pem(), Version::HTTP_2, None), port).await.unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        // No plaintext on the TLS port.
        let plain = reqwest::Client::new().get(format!("http://{addr}/healthz")).send().await;
        assert!(plain.is_err(), "plaintext answered: {plain:?}");
        (h1, h2)
    });

    // A new certificate from another CA, then SIGHUP.
    let second = Pki::new("second");
    let leaf = second.server(&[NAME]);
    write(dir.path(), "tls/fullchain.pem", &leaf.chain_pem);
    write(dir.path(), "tls/key.pem", &leaf.key_pem);
    sighup(&p);
    wait_for_log(&p, "TLS certificate reloaded");
    rt.block_on(async {
        // The open connections keep working: a new connection from these
        // clients would fail, as they trust only the first CA.
        assert_eq!(list(&old_h1, port).await.unwrap(), (200, Version::HTTP_11));
        assert_eq!(list(&old_h2, port).await.unwrap(), (200, Version::HTTP_2));
        // New connections get the new certificate.
        let err = list(&client(addr, &first.root_pem(), Version::HTTP_2, None), port).await.unwrap_err();
        assert!(err.is_connect(), "{err:?}");
        for v in [Version::HTTP_11, Version::HTTP_2] {
            assert_eq!(list(&client(addr, &second.root_pem(), v, None), port).await.unwrap(), (200, v));
        }
    });

    // A broken pair on SIGHUP is refused; the current certificate stays.
    write(dir.path(), "tls/key.pem", &second.server(&[NAME]).key_pem);
    sighup(&p);
    wait_for_log(&p, "TLS certificate not reloaded");
    assert!(p.stderr_text().contains("does not match"), "{}", p.stderr_text());
    rt.block_on(async {
        let fresh = client(addr, &second.root_pem(), Version::HTTP_2, None);
        assert_eq!(list(&fresh, port).await.unwrap(), (200, Version::HTTP_2));
    });
    assert!(p.terminate().success(), "{}", p.stderr_text());
}

#[test]
fn client_ca_file_admits_only_clients_with_a_certificate_from_that_ca() {
    let dir = tempfile::tempdir().unwrap();
    let servers = Pki::new("servers");
    let clients = Pki::new("clients");
    let leaf = servers.server(&[NAME]);
    let cert = write(dir.path(), "cert.pem", &leaf.chain_pem);
    let key = write(dir.path(), "key.pem", &leaf.key_pem);
    let ca = write(dir.path(), "clients.pem", &clients.root_pem());
    let env = [
        ("CREDSTORE_ADMIN_TOKEN", TOKEN),
        ("CREDSTORE_TLS_CERT_FILE", cert.to_str().unwrap()),
        ("CREDSTORE_TLS_KEY_FILE", key.to_str().unwrap()),
        ("CREDSTORE_TLS_CLIENT_CA_FILE", ca.to_str().unwrap()),
    ];
    let (mut p, addr) = Proc::serve(dir.path(), &env, &[]);
    let port = addr.port();
    let root = servers.root_pem();
    rt().block_on(async {
        let anonymous = client(addr, &root, Version::HTTP_2, None);
        assert!(list(&anonymous, port).await.is_err(), "a client without a certificate was admitted");
        let forged = servers.client("mallory");
        let foreign = client(addr, &root, Version::HTTP_2, Some(&forged));
        assert!(list(&foreign, port).await.is_err(), "a certificate of another CA was admitted");
        let alice = clients.client("alice");
        for v in [Version::HTTP_11, Version::HTTP_2] {
            assert_eq!(list(&client(addr, &root, v, Some(&alice)), port).await.unwrap(), (200, v));
        }
    });
    assert!(p.terminate().success(), "{}", p.stderr_text());
}

/// Runs `credstore serve` expecting it to refuse to start: its exit status
/// and log.
fn refused(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> (ExitStatus, String) {
    let mut env = env.to_vec();
    env.push(("CREDSTORE_ADMIN_TOKEN", TOKEN));
    let mut p = Proc::spawn(dir, &env, args);
    let status = p.wait();
    (status, p.stderr_text())
}

#[test]
fn plaintext_beyond_loopback_is_refused_unless_allow_plaintext_and_so_are_unusable_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (status, log) = refused(d, &[], &["serve", "--listen", "0.0.0.0:0"]);
    assert!(!status.success());
    assert!(
        log.contains("listen = \"0.0.0.0:0\" is not a loopback address")
            && log.contains("allow_plaintext = true"),
        "{log}"
    );
    let (status, log) =
        refused(d, &[("CREDSTORE_LISTEN", "127.0.0.1:0"), ("CREDSTORE_METRICS_LISTEN", "0.0.0.0:0")], &[]);
    assert!(!status.success());
    assert!(log.contains("metrics_listen = \"0.0.0.0:0\" is not a loopback address"), "{log}");

    // allow_plaintext (a TLS-terminating proxy in front) starts.
    let (mut p, addr) = Proc::serve(
        d,
        &[("CREDSTORE_ADMIN_TOKEN", TOKEN), ("CREDSTORE_ALLOW_PLAINTEXT", "true")],
        &["serve", "--listen", "0.0.0.0:0"],
    );
    assert!(addr.ip().is_unspecified());
    let loopback = SocketAddr::from(([127, 0, 0, 1], addr.port()));
    let status = rt().block_on(async {
        reqwest::Client::new().get(format!("http://{loopback}/healthz")).send().await.unwrap().status()
    });
    assert_eq!(status, 200);
    assert!(p.terminate().success(), "{}", p.stderr_text());

    // Unusable TLS files stop the start, naming the file.
    let pki = Pki::new("start");
    let leaf = pki.server(&[NAME]);
    let other = pki.server(&[NAME]);
    let cert = write(d, "cert.pem", &leaf.chain_pem);
    let key = write(d, "key.pem", &leaf.key_pem);
    let wrong_key = write(d, "wrong-key.pem", &other.key_pem);
    let expired = {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec![NAME.to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2019, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        (write(d, "expired.pem", &cert.pem()), write(d, "expired-key.pem", &key.serialize_pem()))
    };
    let missing = d.join("missing.pem");
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    for (cert, key, expect) in [
        (path(&cert), path(&wrong_key), format!("{} does not match the certificate in", path(&wrong_key))),
        (
            path(&expired.0),
            path(&expired.1),
            format!("{}: certificate 1 of the chain expired at 2020-01-01", path(&expired.0)),
        ),
        (path(&missing), path(&key), format!("cannot read the TLS certificate file {}", path(&missing))),
        (path(&cert), path(&missing), format!("cannot read the TLS key file {}", path(&missing))),
    ] {
        let env = [
            ("CREDSTORE_LISTEN", "127.0.0.1:0"),
            ("CREDSTORE_TLS_CERT_FILE", cert.as_str()),
            ("CREDSTORE_TLS_KEY_FILE", key.as_str()),
        ];
        let (status, log) = refused(d, &env, &[]);
        assert!(!status.success(), "started with {cert} and {key}");
        assert!(log.contains(&expect), "{expect}: {log}");
        assert!(!log.contains("credstore listening"), "{log}");
    }
}

#[tokio::test]
async fn the_metrics_listener_serves_the_same_tls() {
    let pki = Pki::new("metrics");
    let leaf = pki.server(&[NAME]);
    let files = tempfile::tempdir().unwrap();
    let cert = write(files.path(), "cert.pem", &leaf.chain_pem);
    let key = write(files.path(), "key.pem", &leaf.key_pem);
    let server = harness::TestServer::start_with(|o| {
        o.settings.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        o.settings.tls = Some(credstore_server::config::TlsSettings {
            cert_file: cert,
            key_file: key,
            client_ca_file: None,
        });
    })
    .await;
    let metrics = server.metrics_addr.unwrap();
    let c = client(metrics, &pki.root_pem(), Version::HTTP_2, None);
    let r = c.get(format!("https://{NAME}:{}/metrics", metrics.port())).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.version()), (200, Version::HTTP_2));
    assert!(r.text().await.unwrap().contains("credstore_"));
    let plain = reqwest::Client::new().get(format!("http://{metrics}/metrics")).send().await;
    assert!(plain.is_err(), "plaintext answered on the metrics listener: {plain:?}");
}
