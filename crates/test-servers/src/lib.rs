//! Helpers for fixtures that run a real server (OpenBao, moto, PostgreSQL)
//! on loopback for the length of a test binary.
//!
//! - [`require_tool`] finds a program, and when it is missing either fails
//!   (under `CI=true`) or says loudly that the tests are skipped.
//! - [`ServerProcess`] starts a program so that it dies with the test process,
//!   even when it is kept in a `static` that is never dropped, and kills it
//!   when dropped.
//! - [`free_port`] and [`wait_for_http`] pick a loopback port and wait for
//!   readiness by probing it, never by sleeping a fixed time.
//! - [`proxy::CountingProxy`] sits between a client and a server and counts
//!   (and names) the HTTP requests each operation makes.
//! - [`canned::CannedServer`] answers each request with a canned response
//!   and records everything it receives (a redirect to another origin, a
//!   malformed login answer).
//! - [`jwt::JwtSigner`] signs JWTs with a key the test generates, for the
//!   JWT auth method ([`openbao::OpenBao::enable_jwt`]).
//! - `keyctl` (Linux) makes the keyutils calls a test needs to give itself
//!   keyrings of its own and to look into them.
//! - [`postgres::Postgres`] runs a throwaway PostgreSQL cluster (optionally
//!   with TLS) on a loopback port.
//! - [`browser::Browser`] runs headless Chromium under `chromedriver` and
//!   drives it over WebDriver, for the server's console tests.
//! - `stores::ServerStoreFactory` (features `aws`, `vault`) makes the
//!   conformance suite's stores on the shared moto or OpenBao server.
#![warn(missing_docs)]

pub mod browser;
pub mod canned;
pub mod jwt;
#[cfg(target_os = "linux")]
pub mod keyctl;
pub mod moto;
pub mod openbao;
pub mod postgres;
pub mod proxy;
#[cfg(any(feature = "aws", feature = "vault"))]
pub mod stores;

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Whether this run is CI (`CI=true`), where a missing test server fails.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Finds `name` on `PATH` (which `scripts/test` extends with its tool folder).
///
/// When it is missing: under CI this panics, so the run fails; elsewhere it
/// prints a loud notice to stderr and returns `None`, and the caller skips.
pub fn require_tool(name: &str, installed_by: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| p.is_file()));
    if found.is_none() {
        let msg = format!(
            "`{name}` is not on PATH; {installed_by} installs it (run the tests through scripts/test)"
        );
        if in_ci() {
            panic!("CI=true and {msg}");
        }
        // Straight to the stderr handle: libtest captures `eprintln!` of
        // passing tests, and this notice must be seen.
        let _ = writeln!(std::io::stderr(), "\n!!!! SKIPPED: {msg} !!!!\n");
    }
    found
}

/// A free TCP port on 127.0.0.1, as the OS hands it out.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("bind 127.0.0.1:0")
}

/// Polls `GET path` on `addr` until it answers with a status in
/// `ok_statuses`, or `timeout` passes. Returns the last status seen.
///
/// # Errors
/// A description of what was last seen when the deadline passes.
pub fn wait_for_http(
    addr: SocketAddr,
    path: &str,
    ok_statuses: &[u16],
    timeout: Duration,
) -> Result<u16, String> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no attempt");
    let mut backoff = Duration::from_millis(10);
    while Instant::now() < deadline {
        match http_status(addr, path) {
            Ok(status) if ok_statuses.contains(&status) => return Ok(status),
            Ok(status) => last = format!("HTTP {status}"),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
    Err(format!("{addr}{path} not ready after {timeout:?}: {last}"))
}

/// A loopback listener that accepts connections and never answers (nor
/// closes them): a service that hangs, for the tests of timeouts. Its
/// thread holds the connections for the rest of the test process.
pub fn silent_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("the listener's address");
    std::thread::Builder::new()
        .name("silent-server".into())
        .spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
            }
        })
        .expect("spawn the silent server");
    addr
}

/// One `GET` with `Connection: close`; returns the status code.
pub fn http_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))
}

/// A server process that cannot outlive the test process.
///
/// It is spawned from one long-lived helper thread with
/// `PR_SET_PDEATHSIG(SIGKILL)`, so it is killed when the test process exits,
/// even when kept in a `static`. Dropping it kills it at once.
#[derive(Debug)]
pub struct ServerProcess {
    child: Mutex<Option<Child>>,
    name: String,
}

type SpawnJob = (Command, mpsc::Sender<std::io::Result<Child>>);

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnJob>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("credstore-fixture-spawner".into())
            .spawn(move || {
                // This thread lives as long as the process, so the death
                // signal below fires only when the process itself ends.
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawn fixture thread");
        Mutex::new(tx)
    })
}

impl ServerProcess {
    /// Starts `program` with `args`, its output discarded unless
    /// `CREDSTORE_TEST_SERVER_LOGS` is set.
    ///
    /// # Errors
    /// The spawn error.
    pub fn start<I, S>(program: impl AsRef<OsStr>, args: I) -> std::io::Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&program);
        cmd.args(args).stdin(Stdio::null());
        if std::env::var_os("CREDSTORE_TEST_SERVER_LOGS").is_none() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        Self::spawn(cmd)
    }

    /// Starts a prepared command (environment, working directory...).
    ///
    /// # Errors
    /// The spawn error.
    pub fn spawn(mut cmd: Command) -> std::io::Result<Self> {
        use std::os::unix::process::CommandExt;
        let name = cmd.get_program().to_string_lossy().into_owned();
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let (tx, rx) = mpsc::channel();
        spawner().lock().unwrap_or_else(|e| e.into_inner()).send((cmd, tx)).expect("fixture thread alive");
        let child = rx.recv().expect("fixture thread answers")?;
        Ok(Self { child: Mutex::new(Some(child)), name })
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(Child::id)
    }

    /// Kills the process and waits for it to exit. Idempotent.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process has exited (or was stopped).
    pub fn has_exited(&self) -> bool {
        match self.child.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            Some(child) => !matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// The program name, for messages.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The process of a fixture server that tests stop and start again on the
/// same port.
#[derive(Debug, Default)]
pub struct ProcessSlot(Mutex<Option<ServerProcess>>);

impl ProcessSlot {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps `process` as the running server.
    pub fn fill(&self, process: ServerProcess) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(process);
    }

    /// Kills the server. Idempotent. Clients then see a closed port.
    pub fn stop(&self) {
        if let Some(p) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            p.stop();
        }
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_some_and(|p| !p.has_exited())
    }

    /// Stops the server and calls `launch` (which fills the slot once the
    /// new server is ready) up to `attempts` times: the old listener may
    /// linger for a moment after the kill, and retrying covers it without a
    /// fixed sleep.
    ///
    /// # Panics
    /// When no attempt brings the server up.
    pub fn restart(
        &self,
        what: &str,
        port: u16,
        attempts: usize,
        mut launch: impl FnMut() -> Result<(), String>,
    ) {
        self.stop();
        let mut last = String::new();
        for _ in 0..attempts {
            match launch() {
                Ok(()) => return,
                Err(e) => last = e,
            }
        }
        panic!("could not restart `{what}` on port {port}: {last}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_is_killed_on_drop_and_probe_sees_a_closed_port() {
        let p = ServerProcess::start("sleep", ["30"]).unwrap();
        assert!(!p.has_exited());
        p.stop();
        assert!(p.has_exited());
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let err = wait_for_http(addr, "/", &[200], Duration::from_millis(100)).unwrap_err();
        assert!(err.contains("not ready"), "{err}");
    }
}
