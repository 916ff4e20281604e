//! Every call ends in time: a server that never answers, a pool with no free
//! connection, a statement blocked by a lock.

use std::time::{Duration, Instant};

use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Error, Metadata, SecretValue};
use credstore_postgres::{MasterKey, PostgresConfig, PostgresStore};
use credstore_test_servers::postgres::Postgres;

use crate::util::{config, id, pg};

fn key(s: &str) -> CredentialKey {
    CredentialKey::new(s).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_never_answers_is_unavailable_within_the_connect_timeout() {
    let addr = credstore_test_servers::silent_server();
    let config = PostgresConfig::new("127.0.0.1")
        .port(addr.port())
        .user("u")
        .master_key(MasterKey::generate())
        .connect_timeout(Duration::from_millis(300));
    let started = Instant::now();
    let err = PostgresStore::open("silent".parse().unwrap(), config).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(matches!(err, Error::Unavailable { .. }) && err.is_retriable(), "{err}");
    assert!(err.to_string().contains("silent"), "{err}");
}

/// A raw session that holds a lock on the store's table that blocks writes
/// (not reads) until dropped.
async fn lock_table(pg: &Postgres, schema: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user={} password={} dbname=postgres",
            pg.port(),
            pg.user(),
            pg.password()
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    client.batch_execute(&format!("BEGIN; LOCK TABLE \"{schema}\".credentials IN SHARE MODE")).await.unwrap();
    client
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_pool_and_a_blocked_statement_are_unavailable_in_time() {
    let Some(pg) = pg() else { return };
    let schema = Postgres::fresh_schema("timeouts_pool");
    let config = config(pg, &schema, &MasterKey::generate())
        .max_connections(1)
        .acquire_timeout(Duration::from_millis(300))
        .statement_timeout(Duration::from_millis(1500));
    let store = PostgresStore::open(id(&schema), config).await.unwrap();
    let locker = lock_table(pg, &schema).await;
    // The only connection waits on the lock...
    let blocked = {
        let store = store.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            (store.set(&key("k"), &SecretValue::from("v"), &Metadata::new()).await, started.elapsed())
        })
    };
    // ...so the next call finds no free connection.
    let mut waited = None;
    for _ in 0..50 {
        let started = Instant::now();
        match store.get(&key("other")).await {
            Err(e) => {
                waited = Some((e, started.elapsed()));
                break;
            }
            Ok(_) => tokio::task::yield_now().await, // the writer has not taken the connection yet
        }
    }
    let (err, took) = waited.expect("a call found the pool busy");
    assert!(
        matches!(err, Error::Unavailable { .. }) && err.to_string().contains("no PostgreSQL connection"),
        "{err}"
    );
    assert!(took < Duration::from_secs(1), "the acquire timeout took {took:?}");
    // A busy pool is not a server that is down: the probe has its own connection.
    let probe = store.check_availability().await;
    assert!(probe.available, "{probe:?}");
    assert!(!blocked.is_finished(), "the pool was still busy during the probe");
    // The server's statement timeout ends the blocked write: retriable, nothing written.
    let (result, took) = blocked.await.unwrap();
    let err = result.unwrap_err();
    assert!(err.is_retriable(), "{err}");
    assert!(took < Duration::from_secs(4), "the statement timeout took {took:?}");
    drop(locker);
    assert!(store.get(&key("k")).await.unwrap().is_none(), "the timed-out write left nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_probe_answers_down_quickly_for_a_stopped_server() {
    let Some(own) = tokio::task::spawn_blocking(Postgres::start).await.unwrap() else { return };
    let store = crate::util::open(&own, "probe", &MasterKey::generate()).await;
    assert!(store.check_availability().await.available);
    tokio::task::spawn_blocking(move || drop(own)).await.unwrap();
    let started = Instant::now();
    let availability = store.check_availability().await;
    assert!(!availability.available);
    assert!(started.elapsed() < credstore_postgres::PROBE_TIMEOUT + Duration::from_millis(500));
}

/// A TCP proxy to `upstream` that, once `frozen` is set, forwards nothing
/// more and keeps every connection open: a server that hangs mid-session.
fn freezing_proxy(upstream: std::net::SocketAddr) -> (u16, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let frozen = std::sync::Arc::new(AtomicBool::new(false));
    let flag = frozen.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let server = std::net::TcpStream::connect(upstream).unwrap();
            for (mut from, mut to) in
                [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
            {
                let flag = flag.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = from.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        while flag.load(Ordering::SeqCst) {
                            std::thread::park(); // hung: never forwards again
                        }
                        if to.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        }
    });
    (port, frozen)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_hangs_mid_session_ends_the_call_within_the_statement_timeout() {
    let Some(pg) = pg() else { return };
    let (port, frozen) = freezing_proxy(std::net::SocketAddr::from(([127, 0, 0, 1], pg.port())));
    let schema = Postgres::fresh_schema("timeouts_hang");
    // No change feed: its notification would hold the pool's other connection.
    let config = config(pg, &schema, &MasterKey::generate())
        .port(port)
        .change_feed(false)
        .connect_timeout(Duration::from_secs(1))
        .statement_timeout(Duration::from_millis(300));
    let store = PostgresStore::open(id(&schema), config).await.unwrap();
    store.set(&key("k"), &SecretValue::from("v"), &Metadata::new()).await.unwrap();
    frozen.store(true, std::sync::atomic::Ordering::SeqCst);
    let started = Instant::now();
    let err = store.get(&key("k")).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, Error::Unavailable { .. }) && err.to_string().contains("did not answer"), "{err}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    let started = Instant::now();
    assert!(!store.check_availability().await.available);
    assert!(started.elapsed() < credstore_postgres::PROBE_TIMEOUT + Duration::from_secs(1));
}
