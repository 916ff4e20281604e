//! Connection bounds, over real sockets against servers bound to
//! 127.0.0.1:0: half-sent requests and handshakes are closed within the
//! header-read timeout while `/healthz` keeps answering, idle HTTP/2
//! connections are closed after the idle timeout, and connections over the
//! cap wait in the listen queue until one closes.

use crate::util::certs;
use crate::util::harness;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use harness::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The header-read timeout of these tests' servers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// How late past its timeout a connection may be closed (a loaded machine).
const SLACK: Duration = Duration::from_secs(4);

/// Half a request head: no blank line ends it.
const HALF_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: credstore.test\r\nX-Wait: ";

/// Reads until the server closes `stream`: how long that took from
/// `since`, or `None` when it is still open at `since + bound`. Anything
/// the server sent first (an HTTP 408, a TLS alert) is read and dropped.
async fn closed_within(stream: &mut TcpStream, since: Instant, bound: Duration) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at((since + bound).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(since.elapsed()),
            Ok(Ok(_)) => continue,
        }
    }
}

async fn connect(addr: SocketAddr, first_bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    if !first_bytes.is_empty() {
        s.write_all(first_bytes).await.unwrap();
    }
    s
}

/// One `GET /healthz` on a fresh connection: the status line and how long
/// it took.
async fn healthz(addr: SocketAddr) -> (String, Duration) {
    let started = Instant::now();
    let mut s =
        connect(addr, b"GET /healthz HTTP/1.1\r\nHost: credstore.test\r\nConnection: close\r\n\r\n").await;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&answer);
    (text.lines().next().unwrap_or_default().to_owned(), started.elapsed())
}

async fn server(configure: impl FnOnce(&mut harness::Options)) -> TestServer {
    TestServer::start_with(|o| {
        o.default_stores = false;
        o.extra.push(harness::memory("memory-default"));
        o.settings.header_read_timeout = HEADER_TIMEOUT;
        configure(o);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_request_heads_are_closed_within_the_header_timeout_while_healthz_answers() {
    let server = server(|_| {}).await;
    let opened = Instant::now();
    let mut held = Vec::new();
    for i in 0..200 {
        // Some send half a head, some nothing at all.
        held.push(connect(server.addr, if i % 4 == 0 { b"" } else { HALF_HEAD }).await);
    }
    // While they are held, /healthz answers at once.
    let (status, took) = healthz(server.addr).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(took < Duration::from_millis(900), "/healthz took {took:?} with 200 half-sent connections held");
    for (i, s) in held.iter_mut().enumerate() {
        let closed = closed_within(s, opened, HEADER_TIMEOUT + SLACK).await;
        let closed = closed.unwrap_or_else(|| {
            panic!("connection {i} still open {:?} after it was opened", HEADER_TIMEOUT + SLACK)
        });
        assert!(
            closed >= HEADER_TIMEOUT - Duration::from_millis(100),
            "connection {i} closed early: {closed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_waiting_for_its_next_head_is_closed_within_the_header_timeout() {
    let server = server(|_| {}).await;
    let mut s = connect(server.addr, b"GET /healthz HTTP/1.1\r\nHost: credstore.test\r\n\r\n").await;
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 OK"), "{}", String::from_utf8_lossy(&buf[..n]));
    let answered = Instant::now();
    s.write_all(HALF_HEAD).await.unwrap();
    assert!(closed_within(&mut s, answered, HEADER_TIMEOUT + SLACK).await.is_some(), "still open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_http2_prefaces_and_tls_handshakes_are_closed_within_the_header_timeout() {
    let pki = certs::Pki::new("bounds");
    let leaf = pki.server(&["credstore.test"]);
    let files = tempfile::tempdir().unwrap();
    let cert = files.path().join("cert.pem");
    let key = files.path().join("key.pem");
    std::fs::write(&cert, &leaf.chain_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    let plain = server(|_| {}).await;
    let tls = server(|o| {
        o.settings.tls = Some(credstore_server::config::TlsSettings {
            cert_file: cert,
            key_file: key,
            client_ca_file: None,
        });
    })
    .await;
    let opened = Instant::now();
    // Half the HTTP/2 connection preface, then nothing.
    let mut h2 = connect(plain.addr, b"PRI * HTTP/2.0\r\n").await;
    // A TLS client that connects and says nothing, and one that sends half
    // a ClientHello record header.
    let mut silent = connect(tls.addr, b"").await;
    let mut half_hello = connect(tls.addr, &[0x16, 0x03, 0x01, 0x02]).await;
    for (name, s) in
        [("h2 preface", &mut h2), ("silent TLS", &mut silent), ("half ClientHello", &mut half_hello)]
    {
        assert!(closed_within(s, opened, HEADER_TIMEOUT + SLACK).await.is_some(), "{name}: still open");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let server = server(|o| o.settings.idle_timeout = Duration::from_secs(1)).await;
    let io = hyper_util::rt::TokioIo::new(TcpStream::connect(server.addr).await.unwrap());
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.unwrap();
    let conn = tokio::spawn(conn);
    let request = hyper::Request::get(format!("http://{}/healthz", server.addr))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let answer = send.send_request(request).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.version(), hyper::Version::HTTP_2);
    drop(answer);
    let answered = Instant::now();
    // The server ends the connection (GOAWAY, then close).
    tokio::time::timeout(Duration::from_secs(1) + SLACK, conn)
        .await
        .expect("the idle HTTP/2 connection is still open")
        .unwrap()
        .unwrap();
    assert!(answered.elapsed() >= Duration::from_millis(900), "closed early: {:?}", answered.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_over_the_cap_waits_until_an_open_one_closes() {
    let server = server(|o| o.settings.max_connections = 2).await;
    let opened = Instant::now();
    let mut first = connect(server.addr, HALF_HEAD).await;
    let mut second = connect(server.addr, HALF_HEAD).await;
    // The third connects (the kernel queues it) but is not served while
    // the two hold the cap.
    let mut third = tokio::spawn(healthz(server.addr));
    let early = tokio::time::timeout(HEADER_TIMEOUT / 2, &mut third).await;
    assert!(early.is_err(), "a connection over the cap was served at once: {early:?}");
    let (status, _) =
        tokio::time::timeout(HEADER_TIMEOUT + SLACK, third).await.expect("never served").unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    // It was served once the header timeout had closed the first two.
    assert!(opened.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(100));
    for s in [&mut first, &mut second] {
        assert!(closed_within(s, Instant::now(), Duration::from_secs(1)).await.is_some(), "still open");
    }
}
