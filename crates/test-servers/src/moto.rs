//! The moto_server fixture: moto's AWS API server on a free loopback port,
//! for the AWS Secrets Manager backend's tests.
//!
//! - [`Moto::shared`] is one server per test binary, kept in a `static` (it
//!   dies with the process, see [`ServerProcess`]). Tests that share it must
//!   keep to their own secret names, such as a random name prefix.
//! - [`Moto::start`] is a server of your own, for tests that stop and restart
//!   it ([`Moto::stop`], [`Moto::restart`], same port); it is killed when
//!   dropped.
//! - [`Moto::start_with_iam_auth`] is a server of your own that checks
//!   signatures and IAM permissions like AWS does, with
//!   [`Moto::create_access_key`] to make a user without permissions.
//!
//! Clients use region [`REGION`], any access key (the
//! [`ACCESS_KEY_ID`]/[`SECRET_ACCESS_KEY`] pair by convention) and
//! [`Moto::endpoint`]; nothing leaves the loopback interface. moto keeps
//! everything in memory: a restarted server is empty.
//!
//! Every method is blocking (it polls the server or talks to it over a plain
//! socket); from async tests call them on a multi-threaded runtime or through
//! `tokio::task::spawn_blocking`.
//!
//! ```no_run
//! use credstore_test_servers::moto::{Moto, REGION};
//! let Some(moto) = Moto::shared() else { return }; // `moto_server` not installed: skipped loudly
//! println!("{} in {REGION}", moto.endpoint());
//! ```

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{free_port, require_tool, wait_for_http, ProcessSlot, ServerProcess};

/// The region tests use.
pub const REGION: &str = "us-east-1";
/// The access key id tests use against a server without IAM checks.
pub const ACCESS_KEY_ID: &str = "testing";
/// The secret access key tests use against a server without IAM checks.
pub const SECRET_ACCESS_KEY: &str = "testing";

/// How long moto may take to answer its readiness probe (Python start-up).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Fresh starts retry this many times on another port when the port was
/// taken between [`free_port`] and the server binding it.
const START_ATTEMPTS: usize = 3;
/// The readiness probe: moto's own API answers 200 once the server listens.
const READY_PATH: &str = "/moto-api/";

/// A running `moto_server`. See the module docs.
pub struct Moto {
    bin: PathBuf,
    port: u16,
    env: Vec<(String, String)>,
    process: ProcessSlot,
}

impl fmt::Debug for Moto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Moto")
            .field("endpoint", &self.endpoint())
            .field("env", &self.env)
            .finish_non_exhaustive()
    }
}

impl Moto {
    /// The server shared by every test of this binary, started on first use.
    ///
    /// Returns `None` when `moto_server` is not on `PATH` (after saying so
    /// loudly; under `CI=true` that panics instead).
    ///
    /// # Panics
    /// When the server cannot be started.
    pub fn shared() -> Option<&'static Moto> {
        static SHARED: OnceLock<Option<Moto>> = OnceLock::new();
        SHARED.get_or_init(Self::start).as_ref()
    }

    /// A server of its own, stopped when dropped.
    ///
    /// Returns `None` when `moto_server` is not on `PATH` (see [`Moto::shared`]).
    ///
    /// # Panics
    /// When the server cannot be started.
    pub fn start() -> Option<Moto> {
        Self::start_with_env(Vec::new())
    }

    /// A server of its own that authenticates every request after the first
    /// `unchecked_requests` ones, as AWS does: unknown access keys get
    /// `InvalidClientTokenId`, wrong secret keys `SignatureDoesNotMatch`, and
    /// users without a policy `AccessDenied`. Spend the unchecked requests on
    /// [`Moto::create_access_key`] (two each).
    ///
    /// Returns `None` when `moto_server` is not on `PATH`.
    ///
    /// # Panics
    /// When the server cannot be started.
    pub fn start_with_iam_auth(unchecked_requests: u32) -> Option<Moto> {
        Self::start_with_env(vec![("INITIAL_NO_AUTH_ACTION_COUNT".into(), unchecked_requests.to_string())])
    }

    fn start_with_env(env: Vec<(String, String)>) -> Option<Moto> {
        let bin = require_tool("moto_server", "scripts/test")?;
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let moto =
                Moto { bin: bin.clone(), port: free_port(), env: env.clone(), process: ProcessSlot::new() };
            match moto.launch() {
                Ok(()) => return Some(moto),
                Err(e) => last = e,
            }
        }
        panic!("could not start `moto_server`: {last}");
    }

    /// Starts the server process on this fixture's port and waits until it is ready.
    fn launch(&self) -> Result<(), String> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-H")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .env("PYTHONUNBUFFERED", "1")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null());
        if std::env::var_os("CREDSTORE_TEST_SERVER_LOGS").is_none() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let process = ServerProcess::spawn(cmd).map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
        // Probe in short slices so that a server that died (port taken) is
        // noticed at once instead of after the whole timeout.
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("no probe yet");
        while Instant::now() < deadline {
            match wait_for_http(self.socket_addr(), READY_PATH, &[200], Duration::from_millis(500)) {
                Ok(_) => {
                    self.process.fill(process);
                    return Ok(());
                }
                Err(e) => last = e,
            }
            if process.has_exited() {
                return Err(format!("moto_server on port {} exited before it was ready: {last}", self.port));
            }
        }
        process.stop();
        Err(last)
    }

    /// The server's socket address on 127.0.0.1.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The endpoint URL for SDK clients, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server. Idempotent. Clients then see a closed port.
    pub fn stop(&self) {
        self.process.stop();
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// Stops the server if it runs and starts a fresh one on the same port,
    /// waiting until it is ready. moto keeps nothing across the restart.
    ///
    /// # Panics
    /// When the new server does not come up.
    pub fn restart(&self) {
        self.process.restart("moto_server", self.port, START_ATTEMPTS, || self.launch());
    }

    /// Creates the IAM user `user` (no policies) and an access key for it;
    /// returns `(access_key_id, secret_access_key)`. Two requests, which
    /// must be among the unchecked ones of [`Moto::start_with_iam_auth`].
    ///
    /// # Errors
    /// What went wrong, when the server refuses or answers unexpectedly.
    pub fn create_access_key(&self, user: &str) -> Result<(String, String), String> {
        self.iam(&format!("Action=CreateUser&UserName={user}&Version=2010-05-08"))?;
        let body = self.iam(&format!("Action=CreateAccessKey&UserName={user}&Version=2010-05-08"))?;
        let id = xml_field(&body, "AccessKeyId").ok_or("no AccessKeyId in the CreateAccessKey answer")?;
        let secret =
            xml_field(&body, "SecretAccessKey").ok_or("no SecretAccessKey in the CreateAccessKey answer")?;
        Ok((id, secret))
    }

    /// One IAM query-API request. moto routes it by the credential scope of
    /// the `Authorization` header; the signature is not checked for the
    /// unchecked requests.
    fn iam(&self, form: &str) -> Result<String, String> {
        let addr = self.socket_addr();
        let mut stream =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
        let auth = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20250101/us-east-1/iam/aws4_request, \
                    SignedHeaders=host, Signature=0";
        write!(
            stream,
            "POST / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: {auth}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        )
        .map_err(|e| e.to_string())?;
        let mut response = String::new();
        stream.read_to_string(&mut response).map_err(|e| e.to_string())?;
        let status = response.get(9..12).unwrap_or("");
        if status != "200" {
            let action = form.split('&').next().unwrap_or(form);
            let head: String = response.chars().take(600).collect();
            return Err(format!("IAM {action}: HTTP {status}: {head}"));
        }
        Ok(response)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

fn xml_field(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let len = body[start..].find(&format!("</{tag}>"))?;
    Some(body[start..start + len].trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_fields() {
        let body = "<X><AccessKeyId>AKIA1</AccessKeyId><SecretAccessKey> s/k+1 </SecretAccessKey></X>";
        assert_eq!(xml_field(body, "AccessKeyId").as_deref(), Some("AKIA1"));
        assert_eq!(xml_field(body, "SecretAccessKey").as_deref(), Some("s/k+1"));
        assert_eq!(xml_field(body, "Missing"), None);
    }
}
