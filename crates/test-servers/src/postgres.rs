//! The PostgreSQL fixture: a throwaway cluster (`initdb` in a temporary
//! directory) served by `postgres` on a free loopback port, for the
//! PostgreSQL backend's tests.
//!
//! - [`Postgres::shared`] is one server per test binary, kept in a `static`
//!   (it dies with the process, see [`ServerProcess`]). Tests that share it
//!   keep to their own schema ([`Postgres::fresh_schema`]) or database
//!   ([`Postgres::create_database`]).
//! - [`Postgres::start`] is a server of your own, for tests that stop and
//!   restart it ([`Postgres::stop`], [`Postgres::restart`]: same port, same
//!   data directory, so what was committed is still there); it is killed
//!   when dropped. [`Postgres::start_tls`] also serves TLS with a server
//!   certificate signed by a CA of its own ([`Postgres::ca_cert`]).
//!
//! The binaries come from the Debian `postgresql-15` package
//! (`scripts/test-tools` installs it): they live in
//! `/usr/lib/postgresql/<major>/bin`, which is not on `PATH`, and are found
//! through `pg_config --bindir`, a glob of that folder, or `PATH`. When none
//! has them, the fixture fails under `CI=true` and says loudly that the tests
//! are skipped elsewhere (see [`require_tool`]).
//!
//! The cluster has one superuser, [`Postgres::user`], whose random password
//! ([`Postgres::password`]) is checked with `scram-sha-256`, also on
//! loopback. PostgreSQL refuses to run as root: under root the fixture runs
//! `initdb` and `postgres` as `nobody`. The server keeps `fsync` on (the
//! benchmarks compare the store with bare statements on the same server) and
//! allows 300 connections.
//!
//! A cluster's folder is removed when its fixture is dropped. The shared
//! server's fixture is never dropped (it lives in a `static`), so every
//! folder names the test process that made it (`owner.pid`), and each new
//! fixture first removes the folders whose process is gone
//! (`sweep_abandoned`): a run leaves at most its own clusters behind.
//!
//! Every method is blocking (it runs a program or polls the server); from
//! async tests call them on a multi-threaded runtime or through
//! `tokio::task::spawn_blocking`.
//!
//! ```no_run
//! use credstore_test_servers::postgres::Postgres;
//! let Some(pg) = Postgres::shared() else { return }; // PostgreSQL not installed: skipped loudly
//! println!("{}:{} as {}, schema {}", pg.host(), pg.port(), pg.user(), Postgres::fresh_schema("t"));
//! ```

use std::fmt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::openbao::random_hex;
use super::{free_port, in_ci, require_tool, ProcessSlot, ServerProcess};

/// How long the server may take to accept connections (after a crash it
/// replays its WAL first).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a fast shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Fresh starts retry this many times on another port when the port was
/// taken between [`free_port`] and the server binding it; restarts retry on
/// the same port.
const START_ATTEMPTS: usize = 3;
/// The superuser the cluster is made with.
const USER: &str = "credstore";
/// The uid and gid of `nobody`, which runs the server when the tests run as root.
const NOBODY: u32 = 65534;
/// The prefix of a cluster's folder in the temporary directory.
const DIR_PREFIX: &str = "credstore-pg-";
/// The file in a cluster's folder that holds the pid of the test process
/// that made it.
const OWNER_FILE: &str = "owner.pid";

/// A running PostgreSQL server. See the module docs.
pub struct Postgres {
    bin_dir: PathBuf,
    port: u16,
    password: String,
    /// The cluster's folder: `data/` (the cluster), the Unix socket, the
    /// server's TLS key. Removed when the fixture is dropped.
    dir: tempfile::TempDir,
    tls: Option<TlsFiles>,
    process: ProcessSlot,
    /// The running server's pid (0 before the first start), for the SIGINT
    /// of a fast shutdown.
    pid: AtomicU32,
}

#[derive(Debug, Clone)]
struct TlsFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Postgres")
            .field("port", &self.port)
            .field("user", &USER)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// The server shared by every test of this binary, started on first use.
    ///
    /// Returns `None` when PostgreSQL is not installed (after saying so
    /// loudly; under `CI=true` that panics instead).
    ///
    /// # Panics
    /// When the server cannot be started.
    pub fn shared() -> Option<&'static Postgres> {
        static SHARED: OnceLock<Option<Postgres>> = OnceLock::new();
        SHARED.get_or_init(Self::start).as_ref()
    }

    /// A server of its own, stopped (and its data removed) when dropped.
    ///
    /// Returns `None` when PostgreSQL is not installed (see [`Postgres::shared`]).
    ///
    /// # Panics
    /// When the server cannot be started.
    pub fn start() -> Option<Postgres> {
        Self::start_with(None)
    }

    /// A server of its own that also serves TLS (`ssl = on`) with a server
    /// certificate for `localhost` and `127.0.0.1` signed by a fresh test
    /// CA. The CA ([`Postgres::ca_cert`]), the certificate and its key are
    /// written into `cert_dir` with the `openssl` CLI. Returns `None` as
    /// [`Postgres::start`] does (also when `openssl` is missing).
    ///
    /// # Panics
    /// When the certificates cannot be made or the server cannot be started.
    pub fn start_tls(cert_dir: &Path) -> Option<Postgres> {
        let openssl = require_tool("openssl", "scripts/test-tools (Debian package openssl)")?;
        let tls = make_certificates(&openssl, cert_dir).unwrap_or_else(|e| panic!("{e}"));
        Self::start_with(Some(tls))
    }

    fn start_with(tls: Option<TlsFiles>) -> Option<Postgres> {
        let bin_dir = find_bin_dir()?;
        sweep_abandoned(&std::env::temp_dir());
        let dir = tempfile::Builder::new().prefix(DIR_PREFIX).tempdir().expect("make a temporary directory");
        std::fs::write(dir.path().join(OWNER_FILE), std::process::id().to_string())
            .expect("write the cluster's owner file");
        let password = format!("pw-{}", random_hex(16));
        let mut pg = Postgres {
            bin_dir,
            port: 0,
            password,
            dir,
            tls,
            process: ProcessSlot::new(),
            pid: AtomicU32::new(0),
        };
        pg.init().unwrap_or_else(|e| panic!("{e}"));
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            pg.port = free_port();
            match pg.launch() {
                Ok(()) => return Some(pg),
                Err(e) => last = e,
            }
        }
        panic!("could not start `postgres`: {last}");
    }

    fn as_root() -> bool {
        // SAFETY: getuid has no preconditions.
        unsafe { libc::getuid() == 0 }
    }

    /// A command for a PostgreSQL binary, run as `nobody` under root.
    fn server_command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin_dir.join(program));
        if Self::as_root() {
            cmd.uid(NOBODY).gid(NOBODY);
        }
        cmd.stdin(Stdio::null()).env_remove("PGDATA").env("LC_ALL", "C");
        cmd
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `initdb` with the superuser's password checked by scram-sha-256.
    fn init(&self) -> Result<(), String> {
        let pwfile = self.dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{}\n", self.password)).map_err(|e| format!("write pwfile: {e}"))?;
        if let Some(tls) = &self.tls {
            // The server wants its key private to the user it runs as.
            let key = self.dir.path().join("server.key");
            std::fs::copy(&tls.key, &key).map_err(|e| format!("copy the server key: {e}"))?;
            set_mode(&key, 0o600)?;
        }
        if Self::as_root() {
            for entry in std::fs::read_dir(self.dir.path()).map_err(|e| e.to_string())? {
                chown_nobody(&entry.map_err(|e| e.to_string())?.path())?;
            }
            chown_nobody(self.dir.path())?;
        }
        let out = self
            .server_command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-U")
            .arg(USER)
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--auth=scram-sha-256", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"])
            .output()
            .map_err(|e| format!("run initdb: {e}"))?;
        let _ = std::fs::remove_file(&pwfile);
        if !out.status.success() {
            return Err(format!(
                "initdb failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// Starts `postgres` on this fixture's port and waits until it accepts
    /// connections.
    fn launch(&self) -> Result<(), String> {
        let mut cmd = self.server_command("postgres");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"]);
        if let Some(tls) = &self.tls {
            cmd.args(["-c", "ssl=on"])
                .arg("-c")
                .arg(format!("ssl_cert_file={}", tls.cert.display()))
                .arg("-c")
                .arg(format!("ssl_key_file={}", self.dir.path().join("server.key").display()));
        }
        if std::env::var_os("CREDSTORE_TEST_SERVER_LOGS").is_none() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        let process = ServerProcess::spawn(cmd).map_err(|e| format!("spawn postgres: {e}"))?;
        match self.wait_ready(&process) {
            Ok(()) => {
                self.pid.store(process.pid().unwrap_or(0), Ordering::SeqCst);
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

    /// Polls `pg_isready` until the server accepts connections, with a
    /// growing pause between probes; bounded by [`READY_TIMEOUT`].
    fn wait_ready(&self, process: &ServerProcess) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut backoff = Duration::from_millis(10);
        let mut last = String::from("no attempt");
        while Instant::now() < deadline {
            if process.has_exited() {
                return Err(format!("postgres on port {} exited before accepting connections", self.port));
            }
            let out = Command::new(self.bin_dir.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-t", "2", "-p", &self.port.to_string(), "-U", USER])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("run pg_isready: {e}"))?;
            match out.status.code() {
                Some(0) => return Ok(()),
                code => last = format!("pg_isready exited with {code:?}"),
            }
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
        Err(format!("postgres on port {} not ready after {READY_TIMEOUT:?}: {last}", self.port))
    }

    /// The host to connect to: `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's name.
    pub fn user(&self) -> &'static str {
        USER
    }

    /// The superuser's random password. Secret: keep it out of messages.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The folder of the server's Unix socket (`host=<this folder>` for a
    /// Unix-socket connection).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// `postgres://USER@127.0.0.1:PORT/DATABASE`, without the password.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// [`Postgres::url`] with the password in it. Secret: keep it out of
    /// messages.
    pub fn url_with_password(&self, database: &str) -> String {
        format!("postgres://{USER}:{}@127.0.0.1:{}/{database}", self.password, self.port)
    }

    /// The CA certificate (PEM) that signed the server's certificate, for a
    /// server of [`Postgres::start_tls`].
    pub fn ca_cert(&self) -> Option<&Path> {
        self.tls.as_ref().map(|t| t.ca.as_path())
    }

    /// A schema name no other test of this process uses: `prefix`, a counter
    /// and random characters, lowercase, at most 40 bytes. Nothing is created:
    /// the store creates its schema on first open.
    pub fn fresh_schema(prefix: &str) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let prefix: String = prefix
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .take(20)
            .collect();
        format!("{prefix}_{n}_{}", random_hex(4))
    }

    /// Creates a database named by [`Postgres::fresh_schema`]`(prefix)` and
    /// returns its name.
    ///
    /// # Panics
    /// When `psql` fails.
    pub fn create_database(&self, prefix: &str) -> String {
        let name = Self::fresh_schema(prefix);
        self.psql("postgres", &format!("CREATE DATABASE \"{name}\"")).unwrap_or_else(|e| panic!("{e}"));
        name
    }

    /// Runs `sql` with `psql` as the superuser on `database`, stopping at
    /// the first error; returns the unaligned, tuples-only output, trimmed.
    ///
    /// # Errors
    /// The exit status and standard error when `psql` fails.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin_dir.join("psql"))
            .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", USER, "-d", database, "-c", sql])
            .env("PGPASSWORD", &self.password)
            .env("PGCONNECT_TIMEOUT", "10")
            .env_remove("PGSERVICE")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run psql: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "psql failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Stops the server with a fast shutdown (SIGINT: open sessions are
    /// ended with `57P01 admin_shutdown`, what was committed stays), killing
    /// it if that takes longer than 20 s. Idempotent. Clients then see a
    /// closed port.
    pub fn stop(&self) {
        let pid = self.pid.load(Ordering::SeqCst);
        if pid != 0 && self.process.is_running() {
            // SAFETY: kill has no memory-safety preconditions; the pid is our
            // own child's, which `is_running` has just seen unreaped.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGINT) };
            let deadline = Instant::now() + STOP_TIMEOUT;
            let mut backoff = Duration::from_millis(5);
            while self.process.is_running() && Instant::now() < deadline {
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(100));
            }
        }
        self.process.stop();
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    /// Stops the server if it runs ([`Postgres::stop`]) and starts it again
    /// on the same port and data directory, waiting until it accepts
    /// connections. What was committed before is still there.
    ///
    /// # Panics
    /// When the server does not come back.
    pub fn restart(&self) {
        self.stop();
        self.process.restart("postgres", self.port, START_ATTEMPTS, || self.launch());
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Removes the cluster folders in `tmp` whose owning test process has
/// exited: those of shared servers, whose fixture is never dropped, and of
/// runs that were killed. A folder without an owner file (being made right
/// now, or by an older fixture) is left alone; so is one whose owner runs.
fn sweep_abandoned(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else { return };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let owner = std::fs::read_to_string(entry.path().join(OWNER_FILE)).ok();
        if let Some(pid) = owner.and_then(|s| s.trim().parse::<libc::pid_t>().ok()) {
            if !process_alive(pid) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Whether a process with this pid exists (signal 0 probes without sending).
fn process_alive(pid: libc::pid_t) -> bool {
    // SAFETY: kill with signal 0 sends nothing; it only checks the pid.
    let sent = unsafe { libc::kill(pid, 0) };
    sent == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// The folder of the PostgreSQL server binaries: `pg_config --bindir`, the
/// newest `/usr/lib/postgresql/<major>/bin`, or the folder of `postgres` on
/// `PATH` ([`require_tool`]'s CI failure or loud skip when none has it).
fn find_bin_dir() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("postgres").is_file() && dir.join("initdb").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").stderr(Stdio::null()).output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Some(dir);
        }
    }
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, dir)| has_server(dir))
        .collect();
    majors.sort();
    if let Some((_, dir)) = majors.pop() {
        return Some(dir);
    }
    let on_path = require_tool("postgres", "scripts/test-tools (Debian package postgresql-15)")?;
    let dir = on_path.parent().map(Path::to_path_buf)?;
    if has_server(&dir) {
        Some(dir)
    } else {
        let msg = format!("`initdb` is not next to {}", on_path.display());
        assert!(!in_ci(), "CI=true and {msg}");
        None
    }
}

fn chown_nobody(path: &Path) -> Result<(), String> {
    std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY))
        .map_err(|e| format!("chown {}: {e}", path.display()))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

/// A test CA (`ca.pem`) and a server certificate for `localhost` and
/// `127.0.0.1` it signed (`server.pem`, key `server.key`), in `dir`.
fn make_certificates(openssl: &Path, dir: &Path) -> Result<TlsFiles, String> {
    let run = |args: &[&str]| -> Result<(), String> {
        let out = Command::new(openssl)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run openssl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "openssl {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    run(&[&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"]]
        .concat()
        .into_iter()
        .chain([
            "-subj",
            "/CN=credstore test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ])
        .collect::<Vec<_>>())?;
    run(&[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]]
        .concat())?;
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .map_err(|e| format!("write server.ext: {e}"))?;
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ])?;
    let cert = dir.join("server.pem");
    if Postgres::as_root() {
        // The server, running as nobody, reads its certificate from here.
        set_mode(&cert, 0o644)?;
        set_mode(dir, 0o755)?;
    }
    Ok(TlsFiles { ca: dir.join("ca.pem"), cert, key: dir.join("server.key") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarted_server_keeps_committed_rows_and_answers_on_the_same_port() {
        let Some(pg) = Postgres::start() else { return };
        let port = pg.port();
        pg.psql("postgres", "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)").unwrap();
        pg.stop();
        assert!(!pg.is_running());
        assert!(pg.psql("postgres", "SELECT 1").is_err(), "a stopped server answered");
        pg.restart();
        assert_eq!(pg.port(), port);
        assert_eq!(pg.psql("postgres", "SELECT n FROM kept").unwrap(), "42");
    }

    #[test]
    fn sweep_removes_folders_of_exited_processes_and_keeps_the_rest() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = |name: &str, owner: Option<String>| {
            let dir = tmp.path().join(name);
            std::fs::create_dir_all(dir.join("data")).unwrap();
            if let Some(owner) = owner {
                std::fs::write(dir.join(OWNER_FILE), owner).unwrap();
            }
            dir
        };
        // A child that has exited and been reaped: its pid names no process.
        let mut child = Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        let abandoned = folder("credstore-pg-gone", Some(child.id().to_string()));
        let running = folder("credstore-pg-mine", Some(std::process::id().to_string()));
        let unowned = folder("credstore-pg-new", None);
        let other = folder("someone-else", Some(child.id().to_string()));
        sweep_abandoned(tmp.path());
        assert!(!abandoned.exists(), "a folder whose process exited was kept");
        assert!(
            running.exists() && unowned.exists() && other.exists(),
            "a folder in use or not ours was removed"
        );
    }

    #[test]
    fn wrong_password_is_refused() {
        let Some(pg) = Postgres::shared() else { return };
        let out = Command::new(pg.bin_dir.join("psql"))
            .args([
                "-X",
                "-At",
                "-h",
                "127.0.0.1",
                "-p",
                &pg.port().to_string(),
                "-U",
                USER,
                "-d",
                "postgres",
            ])
            .args(["-c", "SELECT 1"])
            .env("PGPASSWORD", "not-the-password")
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("password authentication failed"));
    }

    #[test]
    fn tls_server_presents_a_certificate_its_ca_verifies() {
        let certs = tempfile::tempdir().unwrap();
        let Some(pg) = Postgres::start_tls(certs.path()) else { return };
        let ca = pg.ca_cert().unwrap();
        let out = Command::new(pg.bin_dir.join("psql"))
            .arg(format!(
                "host=localhost port={} user={USER} dbname=postgres sslmode=verify-full sslrootcert={}",
                pg.port(),
                ca.display()
            ))
            .args(["-X", "-At", "-c", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"])
            .env("PGPASSWORD", pg.password())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t");
    }
}
