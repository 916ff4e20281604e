//! Running the `credstore` binary as a child process.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_credstore");

/// A `credstore` process whose output is collected line by line.
pub struct Proc {
    pub child: Child,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(reader: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

pub fn command(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).args(args).env_clear().env("CREDSTORE_LOG", "info");
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The binary started with `stdin`, its stdout and stderr piped.
fn spawn_piped(dir: &Path, env: &[(&str, &str)], args: &[&str], stdin: Stdio) -> std::process::Child {
    command(dir, env, args).stdin(stdin).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

impl Proc {
    pub fn spawn(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Self {
        let mut child = spawn_piped(dir, env, args, Stdio::null());
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Self { child, stdout, stderr }
    }

    /// Starts `credstore serve` on a free port and waits until it listens.
    pub fn serve(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> (Self, SocketAddr) {
        let mut env = env.to_vec();
        env.push(("CREDSTORE_LISTEN", "127.0.0.1:0"));
        let mut p = Self::spawn(dir, &env, args);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let found = p.stderr.lock().unwrap().iter().find_map(|l| {
                if !l.contains("credstore listening") {
                    return None;
                }
                // Text (`address=…`) or JSON (`"address":"…"`) logs.
                let text = l.split("address=").nth(1).and_then(|r| r.split_whitespace().next());
                let json = serde_json::from_str::<Value>(l)
                    .ok()
                    .and_then(|v| v["address"].as_str().map(str::to_owned));
                json.or(text.map(str::to_owned))?.parse::<SocketAddr>().ok()
            });
            if let Some(addr) = found {
                return (p, addr);
            }
            if let Some(status) = p.child.try_wait().unwrap() {
                panic!("credstore exited with {status}: {}", p.stderr_text());
            }
            assert!(Instant::now() < deadline, "credstore did not start: {}", p.stderr_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn terminate(&mut self) -> ExitStatus {
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.wait()
    }

    pub fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads drain.
                std::thread::sleep(Duration::from_millis(50));
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("credstore did not exit: {}", self.stderr_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stdout_text(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a CLI command to completion with `stdin`.
pub fn run(dir: &Path, env: &[(&str, &str)], args: &[&str], stdin: &str) -> (i32, String, String) {
    let mut child = spawn_piped(dir, env, args, Stdio::piped());
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Sends `method path` (with `body` as JSON) to the server at `addr` with
/// `token`; the status and the JSON answer (`Null` when there is none).
/// Every error answer must be problem+json.
/// [`call`] with the admin token of the in-process tests
/// ([`ADMIN`](crate::util::harness::ADMIN)).
pub async fn call_admin(
    c: &reqwest::Client,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    call(c, addr, crate::util::harness::ADMIN, method, path, body).await
}

pub async fn call(
    c: &reqwest::Client,
    addr: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = c.request(method.parse().unwrap(), format!("http://{addr}{path}")).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    if status >= 400 {
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/problem+json"));
    }
    (status, r.json().await.unwrap_or(Value::Null))
}
