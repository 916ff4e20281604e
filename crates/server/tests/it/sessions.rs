//! Console sessions (the Credential Stores API's `cookieAuth`): sign-in,
//! the cookie's attributes, the API read and written with the cookie as
//! with the token, CSRF, expiry, sign-out and the cap on live sessions.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::certs::Pki;
use crate::util::harness::*;
use credstore_server::auth::sessions::SessionSettings;
use credstore_server::auth::Action;
use serde_json::{json, Value};

const T: &str = "tenant_1";
const P: &str = "project_1";
const VIEWER: &str = "viewer-token-0123456789";

/// A client that never follows redirects and keeps no cookies: each test
/// sends the cookie it means to.
pub fn browserless() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A signed-in session: the cookie's value and the session's CSRF token.
pub struct Signed {
    pub cookie: String,
    pub csrf: String,
}

impl Signed {
    pub fn header(&self) -> String {
        format!("better-auth.session_token={}", self.cookie)
    }
}

/// The value of `name="csrf"` in a page.
pub fn csrf_of(html: &str) -> String {
    let at = html.find(r#"name="csrf" value=""#).unwrap_or_else(|| panic!("no csrf field in {html}"));
    let rest = &html[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// The `Set-Cookie` header of a reply.
pub fn set_cookie(r: &Reply) -> String {
    r.headers.get("set-cookie").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

pub async fn sign_in_raw(server: &TestServer, token: &str) -> Reply {
    let form = [("token", token)];
    Reply::from(browserless().post(server.url("/console/sign-in")).form(&form).send().await.unwrap()).await
}

pub async fn sign_in(server: &TestServer, token: &str) -> Signed {
    let r = sign_in_raw(server, token).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let cookie = set_cookie(&r);
    let value = cookie
        .strip_prefix("better-auth.session_token=")
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no session cookie: {cookie}"))
        .to_owned();
    let home = browserless()
        .get(server.url("/console/"))
        .header("cookie", format!("better-auth.session_token={value}"))
        .send()
        .await
        .unwrap();
    let home = Reply::from(home).await;
    assert_eq!(home.status, 200, "{}", home.text);
    Signed { csrf: csrf_of(&home.text), cookie: value }
}

async fn get_with(server: &TestServer, s: &Signed, path: &str) -> Reply {
    Reply::from(browserless().get(server.url(path)).header("cookie", s.header()).send().await.unwrap()).await
}

fn create_body(key: &str) -> Value {
    json!({"key": key, "value": "a-secret-value"})
}

/// A clock the test moves by hand.
fn manual_clock(server: &TestServer) -> Arc<Mutex<Instant>> {
    let now = Arc::new(Mutex::new(Instant::now()));
    let clock = now.clone();
    server.sessions.set_clock(move || *clock.lock().unwrap());
    now
}

#[tokio::test]
async fn sign_in_with_a_known_token_sets_an_http_only_same_site_strict_cookie() {
    let server = TestServer::start().await;
    let page = Reply::from(browserless().get(server.url("/console/sign-in")).send().await.unwrap()).await;
    assert_eq!(page.status, 200);
    assert!(page.content_type().starts_with("text/html"), "{}", page.content_type());
    assert!(page.text.contains(r#"name="token""#) && page.text.contains(r#"type="password""#));
    let r = sign_in_raw(&server, ADMIN).await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(r.headers["location"], "/console/");
    let cookie = set_cookie(&r);
    let parts: Vec<&str> = cookie.split("; ").collect();
    let value = parts[0].strip_prefix("better-auth.session_token=").unwrap();
    assert_eq!(value.len(), 64, "{cookie}");
    assert!(value.bytes().all(|b| b.is_ascii_hexdigit()), "{cookie}");
    assert!(!value.contains(ADMIN));
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(parts.contains(&attribute), "{attribute} missing: {cookie}");
    }
    assert!(!parts.contains(&"Secure"), "Secure over plaintext: {cookie}");
    // A second sign-in gets another session.
    let again = set_cookie(&sign_in_raw(&server, ADMIN).await);
    assert_ne!(again.split(';').next(), cookie.split(';').next());
}

#[tokio::test]
async fn sign_in_with_an_unknown_token_is_401_sets_no_cookie_and_is_throttled_like_bearer_tokens() {
    let server = TestServer::start_with(|o| {
        o.settings.auth_failure_limit.burst = 2;
        o.settings.auth_failure_limit.per_minute = 1;
    })
    .await;
    for attempt in 0..2 {
        let r = sign_in_raw(&server, "not-a-known-token-000").await;
        assert_eq!(r.status, 401, "attempt {attempt}: {}", r.text);
        assert!(r.content_type().starts_with("text/html"));
        assert!(r.text.contains("That token is not valid."), "{}", r.text);
        assert!(set_cookie(&r).is_empty());
    }
    let r = sign_in_raw(&server, "not-a-known-token-000").await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.headers.contains_key("retry-after"));
    // The same bucket as bearer tokens: the API is throttled too.
    let api = get(&browserless(), &server, "wrong-token-00000000", &stores_path(T, P)).await;
    assert_eq!(api.status, 429);
    // An empty token is refused without a session either.
    assert!(set_cookie(&sign_in_raw(&server, "").await).is_empty());
}

#[tokio::test]
async fn the_session_cookie_reads_and_writes_the_api_as_its_token_does() {
    let server = TestServer::start().await;
    let s = sign_in(&server, ADMIN).await;
    let c = browserless();
    let with_cookie = get_with(&server, &s, &stores_path(T, P)).await;
    let with_bearer = get(&c, &server, ADMIN, &stores_path(T, P)).await;
    assert_eq!(with_cookie.status, 200, "{}", with_cookie.text);
    let ids =
        |r: &Reply| r.json()["data"].as_array().unwrap().iter().map(|s| s["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&with_cookie), ids(&with_bearer));
    let creds = creds_path(T, P, "memory-default");
    let created = c
        .post(server.url(&creds))
        .header("cookie", s.header())
        .header("x-csrf-token", &s.csrf)
        .json(&create_body("by-cookie"))
        .send()
        .await
        .unwrap();
    let created = Reply::from(created).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(get(&c, &server, ADMIN, &format!("{creds}/by-cookie")).await.status, 200);
    let deleted = c
        .delete(server.url(&format!("{creds}/by-cookie")))
        .header("cookie", s.header())
        .header("x-csrf-token", &s.csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
}

#[tokio::test]
async fn a_session_has_exactly_the_grants_of_its_token() {
    let server =
        TestServer::start_with(|o| o.tokens.push(token("viewer", VIEWER, &[T], &["*"], &[Action::View])))
            .await;
    let s = sign_in(&server, VIEWER).await;
    assert_eq!(get_with(&server, &s, &stores_path(T, P)).await.status, 200);
    let other = get_with(&server, &s, &stores_path("other", P)).await;
    assert!(other.problem(403, &stores_path("other", P)).contains("tenant 'other'"));
    let creds = creds_path(T, P, "memory-default");
    let r = browserless()
        .post(server.url(&creds))
        .header("cookie", s.header())
        .header("x-csrf-token", &s.csrf)
        .json(&create_body("k"))
        .send()
        .await
        .unwrap();
    let r = Reply::from(r).await;
    assert!(r.problem(403, &creds).contains("may not edit"), "{}", r.text);
    let reveal = format!("{creds}/k/value");
    assert_eq!(get_with(&server, &s, &reveal).await.status, 403);
}

#[tokio::test]
async fn the_audit_line_of_a_session_request_names_its_token() {
    let server = TestServer::start().await;
    let s = sign_in(&server, ADMIN).await;
    let creds = creds_path(T, P, "memory-default");
    let r = browserless()
        .post(server.url(&creds))
        .header("cookie", s.header())
        .header("x-csrf-token", &s.csrf)
        .header("x-request-id", "req-by-cookie")
        .json(&create_body("audited"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let log = std::fs::read_to_string(server.dir.path().join("data").join("audit.log")).unwrap();
    let lines: Vec<Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mine: Vec<&Value> = lines.iter().filter(|l| l["requestId"] == "req-by-cookie").collect();
    assert_eq!(mine.len(), 2, "{log}");
    for line in mine {
        assert_eq!(line["token"], "admin", "{line}");
        assert_eq!(line["action"], "create");
        assert_eq!(line["key"], "audited");
    }
    let sign_in = lines.iter().find(|l| l["action"] == "sign-in").expect("the sign-in is recorded");
    assert_eq!(sign_in["token"], "admin");
    assert!(!log.contains(&s.cookie) && !log.contains(&s.csrf));
}

#[tokio::test]
async fn a_cookie_request_that_changes_something_without_its_csrf_token_is_403_and_changes_nothing() {
    let server = TestServer::start().await;
    let s = sign_in(&server, ADMIN).await;
    let c = browserless();
    let creds = creds_path(T, P, "memory-default");
    create(&c, &server, ADMIN, &creds, json!({"key": "kept", "value": "v1"})).await;
    let wrong = "0".repeat(64);
    for csrf in [None, Some(wrong.as_str()), Some(""), Some(&s.csrf[..10])] {
        let mut post = c.post(server.url(&creds)).header("cookie", s.header()).json(&create_body("fresh"));
        let mut delete = c.delete(server.url(&format!("{creds}/kept"))).header("cookie", s.header());
        if let Some(token) = csrf {
            post = post.header("x-csrf-token", token);
            delete = delete.header("x-csrf-token", token);
        }
        let r = Reply::from(post.send().await.unwrap()).await;
        let detail = r.problem(403, &creds);
        assert!(detail.contains("CSRF"), "{csrf:?}: {detail}");
        let r = Reply::from(delete.send().await.unwrap()).await;
        assert!(r.problem(403, &format!("{creds}/kept")).contains("CSRF"));
    }
    assert_eq!(get(&c, &server, ADMIN, &format!("{creds}/fresh")).await.status, 404, "created anyway");
    assert_eq!(get(&c, &server, ADMIN, &format!("{creds}/kept")).await.status, 200, "deleted anyway");
    // Another session's token is not this one's.
    let other = sign_in(&server, ADMIN).await;
    let r = c
        .post(server.url(&creds))
        .header("cookie", s.header())
        .header("x-csrf-token", &other.csrf)
        .json(&create_body("fresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    // A bearer request needs none, cookie or not.
    let r = c
        .post(server.url(&creds))
        .bearer_auth(ADMIN)
        .header("cookie", s.header())
        .json(&create_body("fresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
}

#[tokio::test]
async fn an_unknown_session_cookie_is_401_saying_to_sign_in_again() {
    let server = TestServer::start().await;
    let r = Reply::from(
        browserless()
            .get(server.url(&stores_path(T, P)))
            .header("cookie", format!("better-auth.session_token={}", "ab".repeat(32)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let detail = r.problem(401, &stores_path(T, P));
    assert!(
        detail.contains("session cookie is not valid") && detail.contains("/console/sign-in"),
        "{detail}"
    );
    let other_cookie = Reply::from(
        browserless()
            .get(server.url(&stores_path(T, P)))
            .header("cookie", "theme=dark")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(other_cookie.problem(401, &stores_path(T, P)).contains("no valid session cookie"));
}

#[tokio::test]
async fn a_session_ends_after_its_idle_timeout_and_at_the_end_of_its_lifetime() {
    let server = TestServer::start_with(|o| {
        o.settings.sessions = SessionSettings {
            idle_timeout: Duration::from_secs(60),
            lifetime: Duration::from_secs(150),
            ..o.settings.sessions
        };
    })
    .await;
    let now = manual_clock(&server);
    let advance = |secs| *now.lock().unwrap() += Duration::from_secs(secs);
    let s = sign_in(&server, ADMIN).await;
    advance(59);
    assert_eq!(get_with(&server, &s, &stores_path(T, P)).await.status, 200, "within the idle timeout");
    advance(59);
    assert_eq!(get_with(&server, &s, &stores_path(T, P)).await.status, 200, "used: idle again from then");
    advance(40);
    assert_eq!(get_with(&server, &s, &stores_path(T, P)).await.status, 401, "past the lifetime");
    let idle = sign_in(&server, ADMIN).await;
    advance(60);
    assert_eq!(get_with(&server, &idle, &stores_path(T, P)).await.status, 401, "idle for the timeout");
    // The console sends an ended session to the sign-in page.
    let page = get_with(&server, &idle, "/console/").await;
    assert_eq!(page.status, 303);
    assert!(page.headers["location"].to_str().unwrap().starts_with("/console/sign-in"));
}

#[tokio::test]
async fn sign_out_deletes_the_session_on_the_server() {
    let server = TestServer::start().await;
    let s = sign_in(&server, ADMIN).await;
    let c = browserless();
    // Without its CSRF token, sign-out is refused and the session lives on.
    let r = c
        .post(server.url("/console/sign-out"))
        .header("cookie", s.header())
        .form(&[("csrf", "x")])
        .send()
        .await;
    assert_eq!(r.unwrap().status().as_u16(), 403);
    assert_eq!(get_with(&server, &s, &stores_path(T, P)).await.status, 200);
    let r = c
        .post(server.url("/console/sign-out"))
        .header("cookie", s.header())
        .form(&[("csrf", s.csrf.as_str())])
        .send()
        .await
        .unwrap();
    let r = Reply::from(r).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.headers["location"], "/console/sign-in");
    assert!(set_cookie(&r).contains("Max-Age=0"), "{}", set_cookie(&r));
    // The old cookie, replayed, is worth nothing.
    assert_eq!(get_with(&server, &s, &stores_path(T, P)).await.status, 401);
    assert!(server.sessions.is_empty());
    let log = std::fs::read_to_string(server.dir.path().join("data").join("audit.log")).unwrap();
    assert!(log.lines().any(|l| l.contains("\"sign-out\"") && l.contains("\"admin\"")), "{log}");
}

#[tokio::test]
async fn a_sign_in_ends_the_session_the_browser_came_with() {
    let server = TestServer::start().await;
    let old = sign_in(&server, ADMIN).await;
    let r = browserless()
        .post(server.url("/console/sign-in"))
        .header("cookie", old.header())
        .form(&[("token", ADMIN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(get_with(&server, &old, &stores_path(T, P)).await.status, 401, "the old session lives on");
    assert_eq!(server.sessions.len(), 1);
}

#[tokio::test]
async fn past_the_cap_a_sign_in_evicts_the_oldest_session() {
    let server = TestServer::start_with(|o| o.settings.sessions.max_sessions = 2).await;
    let first = sign_in(&server, ADMIN).await;
    let second = sign_in(&server, ADMIN).await;
    let third = sign_in(&server, ADMIN).await;
    assert_eq!(server.sessions.len(), 2);
    assert_eq!(get_with(&server, &first, &stores_path(T, P)).await.status, 401);
    assert_eq!(get_with(&server, &second, &stores_path(T, P)).await.status, 200);
    assert_eq!(get_with(&server, &third, &stores_path(T, P)).await.status, 200);
}

#[tokio::test]
async fn a_sign_in_posted_from_another_origin_is_refused() {
    let server = TestServer::start().await;
    let r = browserless()
        .post(server.url("/console/sign-in"))
        .header("origin", "http://127.0.0.1:1")
        .form(&[("token", ADMIN)])
        .send()
        .await
        .unwrap();
    let r = Reply::from(r).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(set_cookie(&r).is_empty());
}

#[tokio::test]
async fn the_openapi_document_declares_cookie_auth_on_every_manage_operation() {
    let server = TestServer::start().await;
    let doc = Reply::from(browserless().get(server.url("/openapi.json")).send().await.unwrap()).await.json();
    let scheme = &doc["components"]["securitySchemes"]["cookieAuth"];
    assert_eq!(scheme["type"], "apiKey", "{scheme}");
    assert_eq!(scheme["in"], "cookie");
    assert_eq!(scheme["name"], "better-auth.session_token");
    let mut manage = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let schemes: Vec<&str> = op["security"]
                .as_array()
                .map(|s| s.iter().flat_map(|r| r.as_object().unwrap().keys().map(String::as_str)).collect())
                .unwrap_or_default();
            if path.starts_with("/manage/") {
                manage += 1;
                assert!(
                    schemes.contains(&"cookieAuth") && schemes.contains(&"bearerAuth"),
                    "{method} {path}"
                );
            } else {
                assert!(!schemes.contains(&"cookieAuth"), "{method} {path}");
            }
        }
    }
    assert!(manage >= 10);
}

#[tokio::test]
async fn under_tls_the_session_cookie_is_secure() {
    let pki = Pki::new("sessions");
    let leaf = pki.server(&["credstore.test"]);
    let files = tempfile::tempdir().unwrap();
    let cert = files.path().join("cert.pem");
    let key = files.path().join("key.pem");
    std::fs::write(&cert, &leaf.chain_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    let server = TestServer::start_with(|o| {
        o.settings.tls = Some(credstore_server::config::TlsSettings {
            cert_file: cert,
            key_file: key,
            client_ca_file: None,
        });
    })
    .await;
    let c = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.root_pem().as_bytes()).unwrap())
        .resolve("credstore.test", server.addr)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("https://credstore.test:{}/console/sign-in", server.addr.port());
    let r = Reply::from(c.post(url).form(&[("token", ADMIN)]).send().await.unwrap()).await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert!(set_cookie(&r).split("; ").any(|a| a == "Secure"), "{}", set_cookie(&r));
}

#[test]
fn session_lifetimes_come_from_the_config_file_and_zero_is_refused() {
    use credstore_server::backends::Backends;
    use credstore_server::config::FileConfig;
    use credstore_server::Settings;
    let parse = |text: &str| {
        let file: FileConfig = toml::from_str(text).unwrap();
        Settings::from_file(file, std::path::Path::new("."), |_| None, &Backends::builtin())
    };
    let defaults = parse("").unwrap().sessions;
    assert_eq!(defaults, SessionSettings::DEFAULT);
    assert_eq!(defaults.idle_timeout, Duration::from_secs(30 * 60));
    assert_eq!(defaults.lifetime, Duration::from_secs(12 * 60 * 60));
    assert_eq!(defaults.max_sessions, 10_000);
    let set = parse("session_idle_timeout_ms = 60000\nsession_lifetime_ms = 600000").unwrap().sessions;
    assert_eq!((set.idle_timeout, set.lifetime), (Duration::from_secs(60), Duration::from_secs(600)));
    for name in ["session_idle_timeout_ms", "session_lifetime_ms"] {
        let err = parse(&format!("{name} = 0")).unwrap_err().to_string();
        assert!(err.contains(name) && err.contains("above 0"), "{err}");
    }
}
