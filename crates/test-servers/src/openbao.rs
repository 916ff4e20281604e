//! The OpenBao dev-server fixture: `bao server -dev` on a free loopback port
//! with a random root token, for the Vault backend's tests.
//!
//! - [`OpenBao::shared`] is one server per test binary, kept in a `static`
//!   (it dies with the process, see [`ServerProcess`]). Tests that share it
//!   must keep to their own paths, such as a random KV prefix.
//! - [`OpenBao::start`] is a server of your own, for tests that stop, restart
//!   or seal it; it is killed when dropped. [`OpenBao::start_tls`] serves
//!   HTTPS with a CA of its own (`-dev-tls`).
//! - [`OpenBao::cli`] runs the `bao` CLI against the server with the root
//!   token; helpers enable a KV v1 mount, a KV v2 mount, an AppRole, or the
//!   JWT auth method with a role (sign its tokens with [`crate::jwt::JwtSigner`]).
//!
//! The server runs in dev mode: in memory, unsealed, KV v2 mounted at
//! `secret/`. The root token is passed through the environment, never on a
//! command line, and is not written to the token helper file.
//!
//! Every method is blocking (it runs the CLI or polls the health endpoint);
//! from async tests call them on a multi-threaded runtime or through
//! `tokio::task::spawn_blocking`.
//!
//! ```no_run
//! use credstore_test_servers::openbao::OpenBao;
//! let Some(bao) = OpenBao::shared() else { return }; // `bao` not installed: skipped loudly
//! println!("{} {}", bao.address(), bao.root_token().len());
//! ```

use std::fmt;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use super::{free_port, require_tool, wait_for_http, ProcessSlot, ServerProcess};

/// How long a dev server may take to answer `/v1/sys/health`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Fresh starts retry this many times on another port when the port was
/// taken between [`free_port`] and the server binding it.
const START_ATTEMPTS: usize = 3;

/// A running `bao server -dev`. See the module docs.
pub struct OpenBao {
    bin: PathBuf,
    port: u16,
    root_token: String,
    tls_dir: Option<PathBuf>,
    process: ProcessSlot,
}

/// Credentials of an AppRole made by [`OpenBao::enable_approle`].
#[derive(Clone)]
pub struct AppRole {
    /// The auth mount path, such as `approle-1`.
    pub mount: String,
    /// The role's name.
    pub role: String,
    /// The role id.
    pub role_id: String,
    /// A secret id of the role. Secret: keep it out of messages.
    pub secret_id: String,
}

impl fmt::Debug for AppRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppRole")
            .field("mount", &self.mount)
            .field("role", &self.role)
            .field("role_id", &self.role_id)
            .finish_non_exhaustive()
    }
}

/// A JWT auth role made by [`OpenBao::enable_jwt`]: log in at
/// `auth/{mount}/login` as `role` with a JWT whose `aud` is `audience`.
#[derive(Debug, Clone)]
pub struct JwtRole {
    /// The auth mount path, such as `jwt-1`.
    pub mount: String,
    /// The role's name.
    pub role: String,
    /// The audience the role requires (`bound_audiences`).
    pub audience: String,
}

impl fmt::Debug for OpenBao {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenBao").field("address", &self.address()).finish_non_exhaustive()
    }
}

impl OpenBao {
    /// The server shared by every test of this binary, started on first use.
    ///
    /// Returns `None` when `bao` is not on `PATH` (after saying so loudly; under
    /// `CI=true` that panics instead).
    ///
    /// # Panics
    /// When the server cannot be started.
    pub fn shared() -> Option<&'static OpenBao> {
        static SHARED: OnceLock<Option<OpenBao>> = OnceLock::new();
        SHARED.get_or_init(Self::start).as_ref()
    }

    /// A server of its own, stopped when dropped.
    ///
    /// Returns `None` when `bao` is not on `PATH` (see [`OpenBao::shared`]).
    ///
    /// # Panics
    /// When the server cannot be started.
    pub fn start() -> Option<OpenBao> {
        Self::start_with(None)
    }

    /// A server of its own that serves HTTPS (`bao server -dev -dev-tls`),
    /// writing its CA certificate, certificate and key into `cert_dir`; see
    /// [`OpenBao::ca_cert`]. Returns `None` as [`OpenBao::start`] does.
    ///
    /// # Panics
    /// When the server cannot be started.
    pub fn start_tls(cert_dir: &std::path::Path) -> Option<OpenBao> {
        Self::start_with(Some(cert_dir.to_path_buf()))
    }

    fn start_with(tls_dir: Option<PathBuf>) -> Option<OpenBao> {
        let bin = require_tool("bao", "scripts/test")?;
        let root_token = format!("credstore-root-{}", random_hex(16));
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let bao = OpenBao {
                bin: bin.clone(),
                port: free_port(),
                root_token: root_token.clone(),
                tls_dir: tls_dir.clone(),
                process: ProcessSlot::new(),
            };
            match bao.launch() {
                Ok(()) => return Some(bao),
                Err(e) => last = e,
            }
        }
        panic!("could not start `bao server -dev`: {last}");
    }

    fn socket_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts the server process on this fixture's port and waits until it is ready.
    fn launch(&self) -> Result<(), String> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("server")
            .arg("-dev")
            .arg("-dev-no-store-token")
            .arg(format!("-dev-listen-address=127.0.0.1:{}", self.port))
            .env("BAO_DEV_ROOT_TOKEN_ID", &self.root_token)
            .env_remove("BAO_ADDR")
            .env_remove("VAULT_ADDR")
            .env_remove("BAO_TOKEN")
            .env_remove("VAULT_TOKEN")
            .stdin(Stdio::null());
        if let Some(dir) = &self.tls_dir {
            cmd.arg("-dev-tls").arg(format!("-dev-tls-cert-dir={}", dir.display()));
        }
        if std::env::var_os("CREDSTORE_TEST_SERVER_LOGS").is_none() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let process = ServerProcess::spawn(cmd).map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
        let ready = match self.tls_dir {
            None => wait_for_http(self.socket_addr(), "/v1/sys/health", &[200], READY_TIMEOUT),
            // A TLS listener answers plain HTTP with 400: it is up. Then the
            // CLI, over TLS, waits for it to be unsealed and active.
            Some(_) => wait_for_http(self.socket_addr(), "/v1/sys/health", &[400], READY_TIMEOUT)
                .and_then(|_| self.wait_for_cli_status()),
        };
        match ready {
            Ok(_) => {
                self.process.fill(process);
                Ok(())
            }
            Err(e) => {
                let exited = process.has_exited();
                process.stop();
                Err(format!("{e} (process exited: {exited})"))
            }
        }
    }

    fn wait_for_cli_status(&self) -> Result<u16, String> {
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        let mut backoff = Duration::from_millis(20);
        loop {
            match self.cli(["status"]) {
                Ok(_) => return Ok(200),
                Err(e) if std::time::Instant::now() > deadline => return Err(e),
                Err(_) => {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
            }
        }
    }

    /// The server's address, `http://127.0.0.1:PORT` (`https://` for
    /// [`OpenBao::start_tls`]).
    pub fn address(&self) -> String {
        let scheme = if self.tls_dir.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA certificate that signed a TLS server's certificate.
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.tls_dir.as_ref().map(|d| d.join("vault-ca.pem"))
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The random root token. Secret: keep it out of messages.
    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// Kills the server. Idempotent. Clients then see a closed port.
    pub fn stop(&self) {
        self.process.stop();
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// Stops the server if it runs and starts a fresh one on the same port
    /// with the same root token, waiting until it is ready. Dev mode keeps
    /// nothing across the restart: the new server is empty, with KV v2 at
    /// `secret/` again.
    ///
    /// # Panics
    /// When the new server does not come up.
    pub fn restart(&self) {
        self.process.restart("bao server -dev", self.port, START_ATTEMPTS, || self.launch());
    }

    /// Runs `bao ARGS` against this server with the root token; returns the
    /// trimmed standard output.
    ///
    /// # Errors
    /// The exit status and standard error when the command fails.
    pub fn cli<I, S>(&self, args: I) -> Result<String, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cli_with_stdin(args, None)
    }

    /// As [`OpenBao::cli`], with `stdin` fed to the command (for `-` arguments).
    ///
    /// # Errors
    /// The exit status and standard error when the command fails.
    pub fn cli_with_stdin<I, S>(&self, args: I, stdin: Option<&str>) -> Result<String, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("BAO_ADDR", self.address())
            .env("BAO_TOKEN", &self.root_token)
            .env("VAULT_ADDR", self.address())
            .env("VAULT_TOKEN", &self.root_token)
            .env_remove("BAO_NAMESPACE")
            .env_remove("VAULT_NAMESPACE")
            .env("BAO_CLIENT_TIMEOUT", "20s")
            .env_remove("BAO_CACERT")
            .env_remove("VAULT_CACERT")
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(ca) = self.ca_cert() {
            cmd.env("BAO_CACERT", &ca).env("VAULT_CACERT", &ca);
        }
        let shown = format!("{:?}", cmd.get_args().collect::<Vec<_>>());
        let mut child = cmd.spawn().map_err(|e| format!("bao {shown}: {e}"))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes()).map_err(|e| format!("bao {shown}: writing stdin: {e}"))?;
        }
        let out = child.wait_with_output().map_err(|e| format!("bao {shown}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "bao {shown} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    fn must(&self, args: &[&str]) -> String {
        self.cli(args).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Seals the server (`bao operator seal`): it keeps answering, with 503.
    ///
    /// # Panics
    /// When the command fails.
    pub fn seal(&self) {
        self.must(&["operator", "seal"]);
    }

    /// Mounts a KV version 1 engine at `path`.
    ///
    /// # Panics
    /// When the command fails (for example, `path` is taken).
    pub fn enable_kv_v1(&self, path: &str) {
        self.must(&["secrets", "enable", &format!("-path={path}"), "-version=1", "kv"]);
    }

    /// Mounts a KV version 2 engine at `path`.
    ///
    /// # Panics
    /// When the command fails (for example, `path` is taken).
    pub fn enable_kv_v2(&self, path: &str) {
        self.must(&["secrets", "enable", &format!("-path={path}"), "-version=2", "kv"]);
    }

    /// Writes the ACL policy `name` with the HCL `rules`.
    ///
    /// # Panics
    /// When the command fails.
    pub fn write_policy(&self, name: &str, rules: &str) {
        self.cli_with_stdin(["policy", "write", name, "-"], Some(rules)).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Enables the AppRole auth method at `mount` and creates the role `role`
    /// with `policies` (comma-separated) and the given token TTLs (`"3s"`,
    /// `"1m"`...), returning its role id and a fresh secret id.
    ///
    /// # Panics
    /// When a command fails (for example, `mount` is taken).
    pub fn enable_approle(
        &self,
        mount: &str,
        role: &str,
        policies: &str,
        token_ttl: &str,
        token_max_ttl: &str,
    ) -> AppRole {
        self.must(&["auth", "enable", &format!("-path={mount}"), "approle"]);
        let role_path = format!("auth/{mount}/role/{role}");
        self.must(&[
            "write",
            &role_path,
            &format!("token_policies={policies}"),
            &format!("token_ttl={token_ttl}"),
            &format!("token_max_ttl={token_max_ttl}"),
            "secret_id_ttl=0",
            "secret_id_num_uses=0",
        ]);
        let role_id = self.must(&["read", "-field=role_id", &format!("{role_path}/role-id")]);
        let secret_id = self.must(&["write", "-f", "-field=secret_id", &format!("{role_path}/secret-id")]);
        AppRole { mount: mount.to_owned(), role: role.to_owned(), role_id, secret_id }
    }

    /// Enables the JWT auth method at `mount`, trusting JWTs signed by the
    /// key of `public_key_pem` (a PEM `PUBLIC KEY`, as
    /// [`JwtSigner::public_key_pem`](crate::jwt::JwtSigner::public_key_pem)
    /// gives; ES256 and RS256 are accepted), and creates the role `role`
    /// with `policies` (comma-separated) and the given token TTLs. The role
    /// takes JWTs whose `aud` is the returned audience, names the user by
    /// `sub`, and allows no clock leeway, so an expired JWT is refused at once.
    ///
    /// # Panics
    /// When a command fails (for example, `mount` is taken).
    pub fn enable_jwt(
        &self,
        mount: &str,
        role: &str,
        policies: &str,
        public_key_pem: &str,
        token_ttl: &str,
        token_max_ttl: &str,
    ) -> JwtRole {
        self.must(&["auth", "enable", &format!("-path={mount}"), "jwt"]);
        let config = serde_json::json!({
            "jwt_validation_pubkeys": [public_key_pem],
            "jwt_supported_algs": ["ES256", "RS256"],
        });
        self.cli_with_stdin(["write", &format!("auth/{mount}/config"), "-"], Some(&config.to_string()))
            .unwrap_or_else(|e| panic!("{e}"));
        let audience = format!("credstore-tests-{}", random_hex(4));
        let role_config = serde_json::json!({
            "role_type": "jwt",
            "bound_audiences": [audience],
            "user_claim": "sub",
            "token_policies": policies.split(',').map(str::trim).collect::<Vec<_>>(),
            "token_ttl": token_ttl,
            "token_max_ttl": token_max_ttl,
            "clock_skew_leeway": -1,
            "expiration_leeway": -1,
            "not_before_leeway": -1,
        });
        self.cli_with_stdin(
            ["write", &format!("auth/{mount}/role/{role}"), "-"],
            Some(&role_config.to_string()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        JwtRole { mount: mount.to_owned(), role: role.to_owned(), audience }
    }
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `n` random bytes from the OS, as hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
