//! A canned HTTP/1.1 server on loopback: it answers each request with what a
//! closure returns, and records everything it receives, every byte of every
//! connection included. For what no real server does on demand: a redirect
//! to another origin, a login that answers a malformed token.
//!
//! ```no_run
//! use credstore_test_servers::canned::{CannedServer, Response};
//!
//! let elsewhere = CannedServer::start(|_| Response::json(200, "{}")).unwrap();
//! let target = elsewhere.url();
//! let redirecting =
//!     CannedServer::start(move |req| Response::redirect(307, &format!("{target}{}", req.target))).unwrap();
//! // ... point the client at redirecting.url() and run one operation ...
//! assert_eq!(elsewhere.connections(), 0, "nothing followed the redirect");
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// The headers, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (a chunked body decoded).
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The answer to one request.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// `status` with a JSON body.
    pub fn json(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    /// `status` with an HTML page.
    pub fn html(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    /// A redirect (`301`, `302`, `303`, `307`, `308`) to `location`, with
    /// no body.
    pub fn redirect(status: u16, location: &str) -> Self {
        Self { status, headers: vec![("Location".into(), location.into())], body: Vec::new() }
    }

    /// A `307` to the path of `req` at `origin` (`http://host:port`): the
    /// answer of a server that redirects everything to another origin.
    pub fn redirect_to_origin(origin: &str, req: &Request) -> Self {
        Self::redirect(307, &format!("{origin}{}", req.target))
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Answer = dyn Fn(&Request) -> Response + Send + Sync + 'static;

/// A running canned server; it stops accepting when dropped.
pub struct CannedServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    raw: Arc<Mutex<Vec<u8>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for CannedServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CannedServer").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl CannedServer {
    /// Listens on a free loopback port and answers every request with
    /// `answer`'s response.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub fn start(answer: impl Fn(&Request) -> Response + Send + Sync + 'static) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let answer: Arc<Answer> = Arc::new(answer);
        let (requests2, raw2, connections2, stop2) =
            (requests.clone(), raw.clone(), connections.clone(), stop.clone());
        std::thread::Builder::new().name("canned-server".into()).spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                connections2.fetch_add(1, Ordering::Relaxed);
                let (requests, raw, answer) = (requests2.clone(), raw2.clone(), answer.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &requests, &raw, &*answer);
                });
            }
        })?;
        Ok(Self { addr, requests, raw, connections, stop })
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, its origin.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Starts a server that answers every request with a `307` to the same
    /// path at `target` ([`Response::redirect_to_origin`]).
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub fn redirecting_to(target: &CannedServer) -> std::io::Result<Self> {
        let origin = target.url();
        Self::start(move |req| Response::redirect_to_origin(&origin, req))
    }

    /// Asserts that this server, the target of a refused redirect, was never
    /// reached: none of `secrets` (each with its name for the message)
    /// arrived, and no connection was made.
    pub fn assert_not_reached(&self, secrets: &[(&str, &str)]) {
        for (what, secret) in secrets {
            assert!(!self.received(secret.as_bytes()), "{what} reached the redirect's target");
        }
        assert_eq!(self.connections(), 0, "{:?}", self.requests());
    }

    /// Asserts that `error` (an error's `Display` and `Debug`) reports a
    /// 307 redirect to this server as a backend must refuse it: naming
    /// `store` and this server's origin only (no path), and none of
    /// `secrets`.
    pub fn assert_refused_redirect(&self, error: &str, store: &str, secrets: &[&str]) {
        assert!(error.contains(store), "names the store: {error}");
        assert!(error.contains("HTTP 307"), "{error}");
        assert!(error.contains(&format!("redirect to {}", self.url())), "names the target's origin: {error}");
        assert!(!error.contains(&format!("{}/", self.url())), "the origin only, not the URL: {error}");
        assert!(secrets.iter().all(|s| !error.contains(s)), "a secret in the error: {error}");
    }

    /// The requests received so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every byte received so far, on every connection, as received.
    pub fn raw(&self) -> Vec<u8> {
        self.raw.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether `needle` appears anywhere in what was received.
    pub fn received(&self, needle: &[u8]) -> bool {
        !needle.is_empty() && self.raw().windows(needle.len()).any(|w| w == needle)
    }

    /// How many connections were accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

impl Drop for CannedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag (not counted: the
        // loop stops before counting).
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Copies every byte read into the shared record.
struct Tee {
    inner: TcpStream,
    raw: Arc<Mutex<Vec<u8>>>,
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.raw.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

fn serve(
    conn: TcpStream,
    requests: &Mutex<Vec<Request>>,
    raw: &Arc<Mutex<Vec<u8>>>,
    answer: &Answer,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut out = conn.try_clone()?;
    let mut reader = BufReader::new(Tee { inner: conn, raw: raw.clone() });
    loop {
        let Some(request) = read_request(&mut reader)? else { return Ok(()) };
        let response = answer(&request);
        requests.lock().unwrap_or_else(|e| e.into_inner()).push(request);
        let mut head = format!("HTTP/1.1 {} {}\r\n", response.status, reason(response.status));
        for (name, value) in &response.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", response.body.len()));
        out.write_all(head.as_bytes())?;
        out.write_all(&response.body)?;
        out.flush()?;
    }
}

fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    let request_line = loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        if !line.trim().is_empty() {
            break line.trim_end().to_owned();
        }
    };
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let text = line.trim_end();
        if text.is_empty() {
            break;
        }
        if let Some((name, value)) = text.split_once(':') {
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let value = |name: &str| {
        headers.iter().find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if value("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            if size == 0 {
                // Trailers, then the blank line.
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = value("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(length, 0);
        reader.read_exact(&mut body)?;
    }
    Ok(Some(Request { method, target, headers, body }))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Canned",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_records_every_request_of_a_keep_alive_connection() {
        let server = CannedServer::start(|req| match req.method.as_str() {
            "GET" => Response::json(200, "{\"ok\":true}"),
            _ => Response::redirect(307, "http://127.0.0.1:1/elsewhere"),
        })
        .unwrap();
        let mut conn = TcpStream::connect(server.addr()).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answers = BufReader::new(conn.try_clone().unwrap());
        let read_answer = |answers: &mut BufReader<TcpStream>| {
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                answers.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            answers.read_exact(&mut body).unwrap();
            (head, body)
        };
        conn.write_all(b"GET /v1/a HTTP/1.1\r\nHost: x\r\nX-Token: t-1\r\n\r\n").unwrap();
        let (head, body) = read_answer(&mut answers);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(body, b"{\"ok\":true}");
        conn.write_all(
            b"POST /v1/b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        )
        .unwrap();
        let (head, _) = read_answer(&mut answers);
        assert!(head.starts_with("HTTP/1.1 307") && head.contains("Location: http://127.0.0.1:1/elsewhere"));
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        assert_eq!((requests[0].method.as_str(), requests[0].target.as_str()), ("GET", "/v1/a"));
        assert_eq!(requests[0].header("x-token"), Some("t-1"));
        assert_eq!(requests[1].body, b"abc");
        assert!(server.received(b"X-Token: t-1") && !server.received(b"absent"));
        assert_eq!(server.connections(), 1);
    }
}
