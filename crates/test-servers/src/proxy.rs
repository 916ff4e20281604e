//! A counting HTTP/1.1 proxy on loopback: put it between a client and a
//! fixture server to count, and name, the requests each operation makes.
//!
//! It forwards bytes both ways unchanged and reads only the client's side
//! far enough to find where each request starts and ends (its request line,
//! `Content-Length` or chunked body), so keep-alive connections are counted
//! request by request. It records each request as `"METHOD /path?query"`,
//! never a header or a body, so tokens and values stay out of test output.
//!
//! ```no_run
//! use credstore_test_servers::proxy::CountingProxy;
//! # let upstream: std::net::SocketAddr = "127.0.0.1:8200".parse().unwrap();
//! let proxy = CountingProxy::start(upstream).unwrap();
//! // ... point the client at proxy.url() and run one operation ...
//! assert_eq!(proxy.take(), ["GET /v1/secret/data/app/key"]);
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running proxy; it stops accepting when dropped (open connections end
/// when their client closes them).
#[derive(Debug)]
pub struct CountingProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl CountingProxy {
    /// Listens on a free loopback port and forwards every connection to
    /// `upstream`.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        std::thread::Builder::new().name("counting-proxy".into()).spawn(move || {
            for client in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(client) = client else { continue };
                let seen = seen2.clone();
                std::thread::spawn(move || {
                    let _ = serve(client, upstream, &seen);
                });
            }
        })?;
        Ok(Self { addr, seen, stop })
    }

    /// The proxy's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the address to give the client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests forwarded so far, oldest first, as `"METHOD /path"`.
    pub fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many requests were forwarded so far.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The requests forwarded since the last `take` (or the start), and
    /// forgets them.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Forwards one client connection, recording each request it carries.
fn serve(client: TcpStream, upstream: SocketAddr, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream)?;
    let (mut back_from, mut back_to) = (server.try_clone()?, client.try_clone()?);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut back_from, &mut back_to);
        let _ = back_to.shutdown(Shutdown::Write);
    });
    let mut reader = BufReader::new(client);
    loop {
        let mut head = Vec::new();
        let mut line = Vec::new();
        let mut request_line = None;
        let mut length: u64 = 0;
        let mut chunked = false;
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                let _ = server.shutdown(Shutdown::Write);
                return Ok(());
            }
            head.extend_from_slice(&line);
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end();
            if text.is_empty() {
                if request_line.is_none() {
                    // Blank lines between requests are allowed.
                    continue;
                }
                break;
            }
            match &request_line {
                None => {
                    let mut parts = text.split(' ');
                    let method = parts.next().unwrap_or_default();
                    let target = parts.next().unwrap_or_default();
                    request_line = Some(format!("{method} {target}"));
                }
                Some(_) => {
                    if let Some((name, value)) = text.split_once(':') {
                        let value = value.trim();
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.parse().unwrap_or(0);
                        } else if name.eq_ignore_ascii_case("transfer-encoding") {
                            chunked = value.to_ascii_lowercase().contains("chunked");
                        }
                    }
                }
            }
        }
        seen.lock().unwrap_or_else(|e| e.into_inner()).extend(request_line);
        server.write_all(&head)?;
        if chunked {
            forward_chunked(&mut reader, &mut server)?;
        } else {
            let copied = std::io::copy(&mut (&mut reader).take(length), &mut server)?;
            if copied < length {
                return Ok(());
            }
        }
    }
}

/// Forwards a chunked body as it is, up to and including its last chunk
/// and trailers.
fn forward_chunked(reader: &mut BufReader<TcpStream>, server: &mut TcpStream) -> std::io::Result<()> {
    let mut line = Vec::new();
    loop {
        line.clear();
        reader.read_until(b'\n', &mut line)?;
        server.write_all(&line)?;
        let size_text = String::from_utf8_lossy(&line);
        let size = u64::from_str_radix(size_text.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        if size == 0 {
            // Trailers, then the blank line.
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line)? == 0 {
                    return Ok(());
                }
                server.write_all(&line)?;
                if line == b"\r\n" || line == b"\n" {
                    return Ok(());
                }
            }
        }
        std::io::copy(&mut reader.take(size + 2), server)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny upstream that answers every request with an empty 200.
    fn upstream() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut conn = conn;
                    loop {
                        let mut length = 0usize;
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                                length = v.trim().parse().unwrap();
                            }
                        }
                        let mut body = vec![0; length];
                        reader.read_exact(&mut body).unwrap();
                        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").unwrap();
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn counts_each_request_of_a_keep_alive_connection() {
        let proxy = CountingProxy::start(upstream()).unwrap();
        let mut conn = TcpStream::connect(proxy.addr()).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answers = BufReader::new(conn.try_clone().unwrap());
        for (i, req) in [
            "GET /v1/a HTTP/1.1\r\nHost: x\r\n\r\n".to_owned(),
            "POST /v1/b?x=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".to_owned(),
            "PUT /v1/c HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".to_owned(),
        ]
        .iter()
        .enumerate()
        {
            conn.write_all(req.as_bytes()).unwrap();
            let mut status = String::new();
            answers.read_line(&mut status).unwrap();
            assert!(status.starts_with("HTTP/1.1 200"), "{i}: {status}");
            let mut rest = [0u8; 2 + 2 + 19];
            answers.read_exact(&mut rest).unwrap();
        }
        assert_eq!(proxy.count(), 3);
        assert_eq!(proxy.take(), ["GET /v1/a", "POST /v1/b?x=1", "PUT /v1/c"]);
        assert!(proxy.requests().is_empty());
    }
}
