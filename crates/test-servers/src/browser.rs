//! Headless Chromium, driven over the W3C WebDriver protocol by
//! `chromedriver`, both from Debian's packages (`chromium`,
//! `chromium-driver`; `scripts/test-tools` installs them).
//!
//! [`Browser::start`] finds both programs ([`crate::require_tool`]: under
//! `CI=true` a missing one fails the run, elsewhere the caller skips),
//! starts `chromedriver` on a free loopback port (waiting on its `/status`,
//! never a fixed time) and opens one browser session with a fresh profile
//! and the flags of [`CHROMIUM_FLAGS`]. The protocol is JSON over
//! HTTP/1.1, spoken here with one `Connection: close` request per command
//! over a plain socket, with timeouts. Dropping the browser ends the
//! session and stops the driver.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::{free_port, require_tool, wait_for_http, ServerProcess};

/// The flags every Chromium session gets (and a fresh `--user-data-dir`):
/// headless, no sandbox (tests may run as root), and none of the
/// background connections (updates, sync, field trials) that a machine
/// without a network would refuse.
pub const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
];

/// How long one WebDriver command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One headless Chromium session.
pub struct Browser {
    driver: ServerProcess,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("addr", &self.addr).field("session", &self.session).finish()
    }
}

impl Browser {
    /// Starts `chromedriver` and a Chromium session, its window `width` ×
    /// `height` CSS pixels; `None` (said loudly) when either program is
    /// missing outside CI.
    ///
    /// # Panics
    /// Under `CI=true` when a program is missing; when the driver does not
    /// start or refuses the session.
    pub fn start(width: u32, height: u32) -> Option<Self> {
        let driver = require_tool("chromedriver", "scripts/test-tools (the Debian package chromium-driver)")?;
        let chromium = require_tool("chromium", "scripts/test-tools (the Debian package chromium)")?;
        let port = free_port();
        let process = ServerProcess::start(&driver, [format!("--port={port}")]).expect("chromedriver starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for_http(addr, "/status", &[200], Duration::from_secs(30))
            .expect("chromedriver answers /status");
        let profile = tempfile::tempdir().expect("a profile folder");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={width},{height}"));
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {"binary": chromium, "args": args},
        }}});
        let answer =
            command(addr, "POST", "/session", Some(&capabilities)).expect("a Chromium session starts");
        let session = answer["sessionId"].as_str().expect("a session id").to_owned();
        let browser = Self { driver: process, addr, session, _profile: profile };
        browser.resize(width, height);
        Some(browser)
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        command(self.addr, method, &format!("/session/{}{path}", self.session), body)
    }

    fn must(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.call(method, path, body).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Sets the viewport to `width` × `height` CSS pixels (the window is
    /// grown by whatever the browser's frame takes).
    pub fn resize(&self, width: u32, height: u32) {
        self.must("POST", "/window/rect", Some(&json!({"width": width, "height": height})));
        let inner = self.execute("return [window.innerWidth, window.innerHeight]", json!([]));
        let (iw, ih) = (inner[0].as_u64().unwrap_or(0), inner[1].as_u64().unwrap_or(0));
        if (iw, ih) != (u64::from(width), u64::from(height)) && iw > 0 {
            let w = u64::from(width) * 2 - iw;
            let h = u64::from(height) * 2 - ih;
            self.must("POST", "/window/rect", Some(&json!({"width": w, "height": h})));
        }
    }

    /// Opens `url` and waits for it to load.
    pub fn goto(&self, url: &str) {
        self.must("POST", "/url", Some(&json!({ "url": url })));
    }

    /// The address of the page shown.
    pub fn url(&self) -> String {
        self.must("GET", "/url", None).as_str().unwrap_or_default().to_owned()
    }

    /// The page's title.
    pub fn title(&self) -> String {
        self.must("GET", "/title", None).as_str().unwrap_or_default().to_owned()
    }

    /// The page's HTML as the browser holds it now.
    pub fn source(&self) -> String {
        self.must("GET", "/source", None).as_str().unwrap_or_default().to_owned()
    }

    /// Runs `script` in the page (WebDriver's own channel, which the
    /// page's Content-Security-Policy does not govern) and returns its
    /// value.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.must("POST", "/execute/sync", Some(&json!({"script": script, "args": args})))
    }

    /// The element that `css` selects, if any.
    pub fn find(&self, css: &str) -> Option<String> {
        let found =
            self.call("POST", "/element", Some(&json!({"using": "css selector", "value": css}))).ok()?;
        found[ELEMENT].as_str().map(str::to_owned)
    }

    /// The element `css` selects, waiting up to `timeout` for it.
    ///
    /// # Errors
    /// When nothing matches by then, with the page's address.
    pub fn wait_for(&self, css: &str, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(20);
        loop {
            if let Some(element) = self.find(css) {
                return Ok(element);
            }
            if Instant::now() >= deadline {
                return Err(format!("nothing matches {css:?} on {} after {timeout:?}", self.url()));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    fn element(&self, css: &str) -> String {
        self.wait_for(css, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Clicks the element `css` selects, a link or a form's button, and
    /// waits until the page it was on is gone: what a test waits for next
    /// is then looked for on the page the click loaded, never found on the
    /// old one just before it goes.
    ///
    /// # Panics
    /// When the page is still there after 10 s (the click loaded nothing).
    pub fn click(&self, css: &str) {
        let el = self.element(css);
        let page = self.find("html");
        self.must("POST", &format!("/element/{el}/click"), Some(&json!({})));
        if let Some(page) = page {
            self.wait_gone(&page, css);
        }
    }

    /// Polls the element `el` until the browser says it is stale (its page
    /// was replaced), for at most 10 s.
    fn wait_gone(&self, el: &str, clicked: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut pause = Duration::from_millis(10);
        loop {
            match self.call("GET", &format!("/element/{el}/name"), None) {
                Err(e) if e.contains("stale element") => return,
                Err(e) => panic!("{e}"),
                Ok(_) if Instant::now() >= deadline => {
                    panic!("the click on {clicked:?} loaded no page within 10 s ({})", self.url())
                }
                Ok(_) => std::thread::sleep(pause),
            }
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// Empties the field `css` selects and types `text` into it.
    pub fn type_into(&self, css: &str, text: &str) {
        let el = self.element(css);
        self.must("POST", &format!("/element/{el}/clear"), Some(&json!({})));
        self.must("POST", &format!("/element/{el}/value"), Some(&json!({ "text": text })));
    }

    /// Sends keys to whatever has the focus (`\u{e004}` is Tab, `\u{e007}`
    /// Enter).
    pub fn keys(&self, text: &str) {
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions":
            text.chars().flat_map(|c| [json!({"type": "keyDown", "value": c.to_string()}), json!({"type": "keyUp", "value": c.to_string()})]).collect::<Vec<_>>()
        }]});
        self.must("POST", "/actions", Some(&actions));
    }

    /// The visible text of the element `css` selects. When the page is
    /// replaced between finding the element and reading it (a form posted
    /// by a key press), it is looked for again on the new page.
    pub fn text(&self, css: &str) -> String {
        for _ in 0..5 {
            let el = self.element(css);
            match self.call("GET", &format!("/element/{el}/text"), None) {
                Ok(text) => return text.as_str().unwrap_or_default().to_owned(),
                Err(e) if e.contains("stale element") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("{css:?} went stale five times in a row on {}", self.url())
    }

    /// The page's visible text.
    pub fn body_text(&self) -> String {
        self.text("body")
    }

    /// Saves a PNG of the viewport to `path` (its folder is created).
    pub fn screenshot(&self, path: &Path) {
        let shot = self.must("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().unwrap_or_default())
            .expect("a base64 screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the screenshot folder");
        }
        std::fs::write(path, png).expect("the screenshot is written");
    }

    /// Saves a PNG of the whole page (not just the viewport) to `path`, by
    /// growing the window to the page's height for the shot.
    pub fn full_screenshot(&self, path: &Path, width: u32, height: u32) {
        let full = self.execute("return document.documentElement.scrollHeight", json!([]));
        let full = full.as_u64().unwrap_or(u64::from(height)).clamp(u64::from(height), 4000) as u32;
        self.resize(width, full);
        self.screenshot(path);
        self.resize(width, height);
    }

    /// Deletes every cookie of the page's origin.
    pub fn delete_cookies(&self) {
        self.must("DELETE", "/cookie", None);
    }

    /// The process id of the driver.
    pub fn driver_pid(&self) -> Option<u32> {
        self.driver.pid()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = command(self.addr, "DELETE", &format!("/session/{}", self.session), None);
    }
}

/// Where the PNGs of the browser tests go: `console-screenshots` in the
/// target folder of the running test binary.
pub fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<binary>
    let target = exe.ancestors().nth(3).map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
    target.join("console-screenshots")
}

/// One WebDriver command: its `value`, or the error it answered.
fn command(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let what = format!("WebDriver {method} {path}");
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("{what}: {e}"))?;
    stream.set_read_timeout(Some(COMMAND_TIMEOUT)).map_err(|e| format!("{what}: {e}"))?;
    stream.set_write_timeout(Some(COMMAND_TIMEOUT)).map_err(|e| format!("{what}: {e}"))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()))
        .map_err(|e| format!("{what}: {e}"))?;
    // The driver may keep the connection open whatever the request says:
    // read the head, then the body its length announces.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let split = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = stream.read(&mut buf).map_err(|e| format!("{what}: {e}"))?;
        if n == 0 {
            return Err(format!("{what}: the connection closed before an answer"));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status: u16 =
        head.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| format!("{what}: {head}"))?;
    let mut payload = raw[split + 4..].to_vec();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let complete = match length {
            Some(n) => payload.len() >= n,
            None => chunked && payload.windows(5).any(|w| w == b"0\r\n\r\n"),
        };
        if complete {
            break;
        }
        let n = stream.read(&mut buf).map_err(|e| format!("{what}: {e}"))?;
        if n == 0 {
            break;
        }
        payload.extend_from_slice(&buf[..n]);
    }
    if chunked {
        payload = dechunk(&payload);
    }
    let answer: Value = serde_json::from_slice(&payload)
        .map_err(|e| format!("{what}: {status}, not JSON ({e}): {}", String::from_utf8_lossy(&payload)))?;
    if status >= 400 {
        return Err(format!("{what}: {status} {}", answer["value"]));
    }
    Ok(answer["value"].clone())
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&data[..line_end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let Some(size) = size.filter(|&n| n > 0) else { break };
        let start = line_end + 2;
        let end = (start + size).min(data.len());
        out.extend_from_slice(&data[start..end]);
        data = &data[(end + 2).min(data.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::dechunk;

    #[test]
    fn a_chunked_answer_is_put_back_together() {
        assert_eq!(dechunk(b"4\r\n{\"va\r\n6\r\nlue\":1\r\n1\r\n}\r\n0\r\n\r\n"), b"{\"value\":1}");
        assert_eq!(dechunk(b"0\r\n\r\n"), b"");
    }
}
