//! `gnome-keyring-daemon` on a private D-Bus bus, for the length of a test
//! binary: the bus and the daemon are started by the test, die with it
//! (`PR_SET_PDEATHSIG`), and keep their files in a temporary folder.
//!
//! The bus runs with a configuration of its own that activates no service,
//! so nothing else answers on it, and the daemon unlocks its login keyring
//! with a password read from stdin, as on a headless machine.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use credstore_core::{CredentialStore, StoreId};
use credstore_keychain::{KeychainConfig, KeychainStore, Platform, SecretServiceOptions};
use credstore_test_servers::{require_tool, ServerProcess};

const INSTALLED_BY: &str =
    "scripts/test-tools (the Debian packages gnome-keyring, dbus-daemon, dbus-bin and libsecret-tools)";
const PASSWORD: &str = "credstore-test-password";

/// A private bus, with or without gnome-keyring on it.
///
/// Dropping it stops the daemon, then the bus, then removes their files (the
/// fields drop in that order).
pub struct Bus {
    keyring: Option<ServerProcess>,
    _bus: ServerProcess,
    address: String,
    dir: tempfile::TempDir,
}

impl Bus {
    /// A new bus; with `keyring`, gnome-keyring-daemon on it, unlocked and ready.
    pub fn start(keyring: bool) -> Option<Bus> {
        if !cfg!(feature = "secret-service") {
            eprintln!("\n!!!! SKIPPED: built without the `secret-service` feature !!!!\n");
            return None;
        }
        let dbus = require_tool("dbus-daemon", INSTALLED_BY)?;
        let gkd = if keyring { Some(require_tool("gnome-keyring-daemon", INSTALLED_BY)?) } else { None };
        let dir = tempfile::Builder::new().prefix("credstore-keychain-").tempdir().expect("temp dir");
        for sub in ["run", "data", "home"] {
            std::fs::create_dir(dir.path().join(sub)).expect("fixture dirs");
        }
        set_private(&dir.path().join("run"));
        let socket = dir.path().join("run/bus");
        let config = dir.path().join("bus.conf");
        std::fs::write(&config, bus_config(&socket)).expect("bus config");
        let address = format!("unix:path={}", socket.display());
        let mut cmd = Command::new(dbus);
        cmd.arg(format!("--config-file={}", config.display())).args(["--nofork", "--nopidfile"]);
        quiet(&mut cmd);
        let bus = ServerProcess::spawn(cmd).expect("start dbus-daemon");
        wait_for(&socket, Duration::from_secs(10));
        let mut this = Bus { keyring: None, _bus: bus, address, dir };
        if let Some(gkd) = gkd {
            this.start_keyring(&gkd);
        }
        Some(this)
    }

    fn env(&self, cmd: &mut Command) {
        let d = self.dir.path();
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", d.join("home"))
            .env("XDG_DATA_HOME", d.join("data"))
            .env("XDG_RUNTIME_DIR", d.join("run"))
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address);
    }

    fn start_keyring(&mut self, gkd: &Path) {
        let password = self.dir.path().join("password");
        std::fs::write(&password, PASSWORD).expect("password file");
        let mut cmd = Command::new(gkd);
        cmd.args(["--foreground", "--unlock", "--components=secrets"]);
        self.env(&mut cmd);
        quiet(&mut cmd);
        cmd.stdin(std::fs::File::open(&password).expect("password file"));
        self.keyring = Some(ServerProcess::spawn(cmd).expect("start gnome-keyring-daemon"));
        // Readiness: the store's own probe answers available.
        let store = self.store("readiness-probe");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut backoff = Duration::from_millis(20);
        loop {
            let status = runtime.block_on(store.check_availability());
            if status.available {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "gnome-keyring-daemon not ready after 20 s: {:?}",
                status.reason
            );
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_millis(250));
        }
    }

    /// The bus's D-Bus address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A store with id `id` on this bus's default collection.
    pub fn store(&self, id: &str) -> KeychainStore {
        KeychainStore::new(StoreId::new(id).unwrap(), self.config()).expect("keychain store")
    }

    /// [`Bus::store`] deciding expiry by `clock`.
    #[allow(dead_code)] // The conformance runner's; the `it` binary has no use for it.
    pub fn store_on(&self, id: &str, clock: std::sync::Arc<dyn credstore_core::Clock>) -> KeychainStore {
        KeychainStore::new(StoreId::new(id).unwrap(), self.config().clock(clock)).expect("keychain store")
    }

    fn config(&self) -> KeychainConfig {
        let options = SecretServiceOptions::default().bus_address(self.address.clone());
        KeychainConfig::new().platform(Platform::SecretService(options)).timeout(Duration::from_secs(10))
    }

    /// Runs a client tool (`secret-tool`) against this bus and daemon; its
    /// stdout, or `None` (after a loud notice) when the tool is missing
    /// outside CI.
    pub fn tool(&self, program: &str, args: &[&str]) -> Option<Vec<u8>> {
        self.tool_with_input(program, args, None)
    }

    /// [`Bus::tool`] with `input` on the tool's stdin (`secret-tool store`
    /// reads the secret there).
    pub fn tool_with_input(&self, program: &str, args: &[&str], input: Option<&[u8]>) -> Option<Vec<u8>> {
        use std::io::Write as _;
        let path = require_tool(program, INSTALLED_BY)?;
        let mut cmd = Command::new(path);
        self.env(&mut cmd);
        cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn().expect("run the tool");
        if let Some(input) = input {
            child.stdin.take().expect("piped stdin").write_all(input).expect("write the tool's stdin");
        }
        let out = child.wait_with_output().expect("wait for the tool");
        assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Some(out.stdout)
    }

    /// Runs `dbus-send` on this bus, returning its output.
    fn dbus_send(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("dbus-send");
        self.env(&mut cmd);
        let out = cmd
            .arg(format!("--bus={}", self.address))
            .args(["--print-reply", "--dest=org.freedesktop.secrets"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run dbus-send");
        assert!(out.status.success(), "dbus-send {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Locks the login collection (the Secret Service's `Lock`, which needs no prompt).
    pub fn lock_collection(&self) {
        let reply = self.dbus_send(&[
            "/org/freedesktop/secrets",
            "org.freedesktop.Secret.Service.ReadAlias",
            "string:default",
        ]);
        let path = reply
            .split_whitespace()
            .map(|w| w.trim_matches('"'))
            .find(|w| w.starts_with("/org/freedesktop/secrets/collection/"))
            .expect("the default alias names a collection")
            .to_owned();
        self.dbus_send(&[
            "/org/freedesktop/secrets",
            "org.freedesktop.Secret.Service.Lock",
            &format!("array:objpath:{path}"),
        ]);
    }

    /// Unlocks the login collection again the way a new login does: the
    /// daemon restarts and unlocks its keyring file with the password on
    /// stdin (gnome-keyring unlocks without a prompt only at start).
    pub fn restart_keyring(&mut self) {
        self.stop_keyring();
        let gkd = require_tool("gnome-keyring-daemon", INSTALLED_BY).expect("gnome-keyring-daemon");
        self.start_keyring(&gkd);
    }

    /// Stops the daemon: the bus stays, with no provider on it.
    pub fn stop_keyring(&mut self) {
        if let Some(k) = self.keyring.take() {
            k.stop();
        }
    }
}

fn quiet(cmd: &mut Command) {
    cmd.stdin(Stdio::null());
    if std::env::var_os("CREDSTORE_TEST_SERVER_LOGS").is_none() {
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    }
}

fn set_private(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
}

/// Polls until the bus accepts connections on its socket.
fn wait_for(socket: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(5);
    while let Err(e) = std::os::unix::net::UnixStream::connect(socket) {
        assert!(
            Instant::now() < deadline,
            "dbus-daemon not accepting on {} within {timeout:?}: {e}",
            socket.display()
        );
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_millis(100));
    }
}

/// A session bus that activates nothing and lets its clients talk freely.
fn bus_config(socket: &Path) -> String {
    format!(
        r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
        socket.display()
    )
}
