//! The console's pages over HTTP: status, the security headers of every
//! page, escaping, and each form doing what the API's route does.

use credstore_server::auth::Action;
use serde_json::{json, Value};

use crate::sessions::{browserless, sign_in, Signed};
use crate::util::harness::*;

const T: &str = "tenant_1";
const P: &str = "project_1";
const REVEALER: &str = "revealer-token-0123456789";
const VIEWER: &str = "viewer-token-0123456789";
const STORE: &str = "memory-default";

fn project_page() -> String {
    format!("/console/tenants/{T}/projects/{P}")
}

fn store_page(store: &str) -> String {
    format!("{}/stores/{store}", project_page())
}

fn credential_page(store: &str, key: &str) -> String {
    format!("{}/credentials/{key}", store_page(store))
}

async fn server() -> TestServer {
    TestServer::start_with(|o| {
        o.tokens.push(token(
            "revealer",
            REVEALER,
            &["*"],
            &["*"],
            &[Action::View, Action::Edit, Action::Reveal],
        ));
        o.tokens.push(token("viewer", VIEWER, &[T], &[P], &[Action::View]));
    })
    .await
}

async fn page(server: &TestServer, s: &Signed, path: &str) -> Reply {
    Reply::from(browserless().get(server.url(path)).header("cookie", s.header()).send().await.unwrap()).await
}

async fn post_form(server: &TestServer, s: &Signed, path: &str, fields: &[(&str, &str)]) -> Reply {
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    form.push(("csrf", &s.csrf));
    Reply::from(
        browserless().post(server.url(path)).header("cookie", s.header()).form(&form).send().await.unwrap(),
    )
    .await
}

/// Every console page: HTML, the strict CSP, never stored by a cache.
fn assert_console_headers(r: &Reply) {
    assert!(r.content_type().starts_with("text/html"), "{}", r.content_type());
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("script-src 'none'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("form-action 'self'"), "{csp}");
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    assert!(!r.text.contains("<script"), "a page holds a script");
    assert!(!r.text.contains("http://") && !r.text.contains("https://"), "an external reference");
}

fn audit_lines(server: &TestServer) -> Vec<Value> {
    let log = std::fs::read_to_string(server.dir.path().join("data").join("audit.log")).unwrap();
    log.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test]
async fn every_page_is_html_with_a_strict_csp_and_no_store() {
    let server = server().await;
    let s = sign_in(&server, ADMIN).await;
    create(&browserless(), &server, ADMIN, &creds_path(T, P, STORE), json!({"key": "db", "value": "v"}))
        .await;
    let sign_in_page =
        Reply::from(browserless().get(server.url("/console/sign-in")).send().await.unwrap()).await;
    assert_eq!(sign_in_page.status, 200);
    assert_console_headers(&sign_in_page);
    let pages = [
        "/console/".to_owned(),
        project_page(),
        store_page(STORE),
        credential_page(STORE, "db"),
        format!("{}/delete", credential_page(STORE, "db")),
    ];
    for path in &pages {
        let r = page(&server, &s, path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert_console_headers(&r);
        assert!(r.text.contains("<html lang=\"en\">") && r.text.contains("name=\"viewport\""), "{path}");
    }
    // Error pages too, with their status.
    let missing = page(&server, &s, &credential_page(STORE, "nope")).await;
    assert_eq!(missing.status, 404);
    assert_console_headers(&missing);
    assert!(missing.text.contains("no credential 'nope'"), "{}", missing.text);
    let css =
        Reply::from(browserless().get(server.url("/console/assets/console.css")).send().await.unwrap()).await;
    assert_eq!(css.status, 200);
    assert!(css.content_type().starts_with("text/css"));
    assert!(css.text.contains("@media (max-width: 40rem)"));
}

#[tokio::test]
async fn without_a_session_every_page_goes_to_the_sign_in_page() {
    let server = server().await;
    for path in ["/console/".to_owned(), project_page(), store_page(STORE)] {
        let r = Reply::from(browserless().get(server.url(&path)).send().await.unwrap()).await;
        assert_eq!(r.status, 303, "{path}");
        assert!(r.headers["location"].to_str().unwrap().starts_with("/console/sign-in"), "{path}");
    }
}

#[tokio::test]
async fn keys_and_metadata_are_escaped() {
    let server = server().await;
    let s = sign_in(&server, ADMIN).await;
    let body = json!({"key": "k1", "value": "v", "metadata": {"note": "<script>alert(1)</script>"}});
    assert_eq!(create(&browserless(), &server, ADMIN, &creds_path(T, P, STORE), body).await.status, 201);
    for path in [store_page(STORE), credential_page(STORE, "k1")] {
        let r = page(&server, &s, &path).await;
        assert_eq!(r.status, 200);
        assert!(!r.text.contains("<script>alert(1)"), "{path}: {}", r.text);
        assert!(r.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{path}: {}", r.text);
    }
    // A key that breaks the rules is refused, its text escaped.
    let r =
        post_form(&server, &s, &store_page(STORE), &[("key", "<script>x</script>"), ("value", "v")]).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_console_headers(&r);
    assert!(!r.text.contains("<script>x"), "{}", r.text);
    // A query string is escaped where the page repeats it.
    let r = page(&server, &s, &format!("{}?deleted=%3Cscript%3E", store_page(STORE))).await;
    assert!(!r.text.contains("<script>") && r.text.contains("&lt;script&gt;"), "{}", r.text);
}

#[tokio::test]
async fn the_project_page_lists_the_stores_with_availability_and_last_check() {
    let server = server().await;
    let s = sign_in(&server, ADMIN).await;
    let r = page(&server, &s, &project_page()).await;
    assert_eq!(r.status, 200);
    for id in ["memory-default", "sqlite-default"] {
        assert!(r.text.contains(&format!("href=\"{}\"", store_page(id))), "{}", r.text);
    }
    assert!(r.text.contains("available") && r.text.contains("<time datetime=\""));
    let other = sign_in(&server, VIEWER).await;
    let refused = page(&server, &other, &format!("/console/tenants/{T}/projects/other")).await;
    assert_eq!(refused.status, 403);
    assert!(refused.text.contains("project 'other'"), "{}", refused.text);
    // The project form goes to the project's page, and refuses bad ids.
    let r = page(&server, &s, &format!("/console/project?tenant={T}&project={P}")).await;
    assert_eq!((r.status, r.headers["location"].to_str().unwrap()), (303, project_page().as_str()));
    let r = page(&server, &s, "/console/project?tenant=a%2Fb&project=p").await;
    assert_eq!(r.status, 422);
}

#[tokio::test]
async fn a_project_whose_stores_the_token_may_not_see_says_so() {
    let server = TestServer::start_with(|o| {
        let mut only = token("narrow", "narrow-token-0123456789", &[T], &[P], &[Action::View]);
        only.grants[0].stores = credstore_server::auth::Scope::Only(["not-served".to_owned()].into());
        o.tokens.push(only);
    })
    .await;
    let s = sign_in(&server, "narrow-token-0123456789").await;
    let r = page(&server, &s, &project_page()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("No store is open to this token in this project."), "{}", r.text);
    assert!(!r.text.contains("memory-default"));
}

#[tokio::test]
async fn the_store_page_pages_filters_and_has_an_empty_state() {
    let server = server().await;
    let s = sign_in(&server, ADMIN).await;
    let r = page(&server, &s, &store_page(STORE)).await;
    assert!(r.text.contains("holds no credentials for this project yet"), "{}", r.text);
    let c = browserless();
    for i in 0..30 {
        let body = json!({"key": format!("app-{i:02}"), "value": "v", "metadata": {"n": i.to_string()}});
        create(&c, &server, ADMIN, &creds_path(T, P, STORE), body).await;
    }
    create(&c, &server, ADMIN, &creds_path(T, P, STORE), json!({"key": "db", "value": "v"})).await;
    let first = page(&server, &s, &format!("{}?prefix=app-", store_page(STORE))).await;
    assert!(first.text.contains(">app-00<") && first.text.contains(">app-24<"), "{}", first.text);
    assert!(!first.text.contains(">app-25<") && !first.text.contains(">db<"));
    // Metadata and versions are shown with each key.
    assert!(first.text.contains("<code>n</code> = <code>7</code>"), "{}", first.text);
    let next = first.text.split("href=\"").find(|h| h.contains("cursor=")).unwrap();
    let next = next[..next.find('"').unwrap()].replace("&amp;", "&");
    let second = page(&server, &s, &next).await;
    assert!(second.text.contains(">app-29<") && !second.text.contains(">app-00<"), "{}", second.text);
    assert!(!second.text.contains(">db<"), "the prefix is kept across pages");
    let none = page(&server, &s, &format!("{}?prefix=zzz", store_page(STORE))).await;
    assert!(none.text.contains("No credential key starts with 'zzz'."), "{}", none.text);
}

#[tokio::test]
async fn create_replace_at_the_version_on_screen_and_a_conflict() {
    let server = server().await;
    let s = sign_in(&server, ADMIN).await;
    let c = browserless();
    let r = post_form(
        &server,
        &s,
        &store_page(STORE),
        &[("key", "api"), ("value", "first"), ("metadata", "owner=web\n")],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(
        r.headers["location"].to_str().unwrap(),
        format!("{}?notice=created", credential_page(STORE, "api"))
    );
    let meta = get(&c, &server, ADMIN, &cred_path(T, P, STORE, "api")).await.json();
    assert_eq!(meta["data"]["metadata"]["owner"], "web");
    let v1 = meta["data"]["version"].as_str().unwrap().to_owned();
    let shown = page(&server, &s, &format!("{}?notice=created", credential_page(STORE, "api"))).await;
    assert!(shown.text.contains("Created.") && shown.text.contains(&v1));
    assert!(!shown.text.contains("first"), "the value is shown back");
    // Creating it again is refused, nothing changed.
    let again = post_form(&server, &s, &store_page(STORE), &[("key", "api"), ("value", "other")]).await;
    assert_eq!(again.status, 412);
    assert!(again.text.contains("already exists"), "{}", again.text);
    // Replace at the version on screen.
    let path = format!("{}/replace", credential_page(STORE, "api"));
    let r =
        post_form(&server, &s, &path, &[("version", &v1), ("value", "second"), ("metadata", "owner=api")])
            .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let v2 = get(&c, &server, ADMIN, &cred_path(T, P, STORE, "api")).await.json()["data"]["version"].clone();
    assert_ne!(v2, json!(v1));
    // A replace at a stale version: 412, a clear message, nothing written.
    let stale = post_form(&server, &s, &path, &[("version", &v1), ("value", "third")]).await;
    assert_eq!(stale.status, 412, "{}", stale.text);
    assert_console_headers(&stale);
    assert!(stale.text.contains(&format!("changed since the page showed version {v1}")), "{}", stale.text);
    assert!(stale.text.contains(v2.as_str().unwrap()), "the page shows what it holds now");
    let now = get(&c, &server, ADMIN, &cred_path(T, P, STORE, "api")).await.json();
    assert_eq!(now["data"]["version"], v2);
    assert_eq!(now["data"]["metadata"]["owner"], "api");
}

#[tokio::test]
async fn a_form_without_the_csrf_token_changes_nothing() {
    let server = server().await;
    let s = sign_in(&server, ADMIN).await;
    let r = browserless()
        .post(server.url(&store_page(STORE)))
        .header("cookie", s.header())
        .form(&[("key", "forged"), ("value", "v")])
        .send()
        .await
        .unwrap();
    let r = Reply::from(r).await;
    assert_eq!(r.status, 403);
    assert_console_headers(&r);
    assert!(r.text.contains("CSRF"), "{}", r.text);
    assert_eq!(get(&browserless(), &server, ADMIN, &cred_path(T, P, STORE, "forged")).await.status, 404);
}

#[tokio::test]
async fn delete_asks_first_then_deletes() {
    let server = server().await;
    let s = sign_in(&server, ADMIN).await;
    let c = browserless();
    create(&c, &server, ADMIN, &creds_path(T, P, STORE), json!({"key": "gone", "value": "v"})).await;
    let confirm = page(&server, &s, &format!("{}/delete", credential_page(STORE, "gone"))).await;
    assert_eq!(confirm.status, 200);
    assert!(confirm.text.contains("Delete the credential"), "{}", confirm.text);
    assert_eq!(
        get(&c, &server, ADMIN, &cred_path(T, P, STORE, "gone")).await.status,
        200,
        "asking deleted it"
    );
    let r = post_form(&server, &s, &format!("{}/delete", credential_page(STORE, "gone")), &[]).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.headers["location"].to_str().unwrap(), format!("{}?deleted=gone", store_page(STORE)));
    assert_eq!(get(&c, &server, ADMIN, &cred_path(T, P, STORE, "gone")).await.status, 404);
    let after = page(&server, &s, &format!("{}?deleted=gone", store_page(STORE))).await;
    assert!(after.text.contains("Credential 'gone' was deleted."));
    // A viewer is refused the confirmation and the delete.
    let viewer = sign_in(&server, VIEWER).await;
    assert_eq!(page(&server, &viewer, &format!("{}/delete", credential_page(STORE, "x"))).await.status, 403);
}

#[tokio::test]
async fn reveal_needs_the_grant_is_recorded_and_is_hidden_again() {
    let server = server().await;
    let c = browserless();
    create(&c, &server, ADMIN, &creds_path(T, P, STORE), json!({"key": "pw", "value": "s3cr3t-<b>"})).await;
    // The admin token has no reveal: no button, and the post is refused.
    let admin = sign_in(&server, ADMIN).await;
    let shown = page(&server, &admin, &credential_page(STORE, "pw")).await;
    assert!(!shown.text.contains("Reveal value"), "{}", shown.text);
    let refused = post_form(&server, &admin, &format!("{}/reveal", credential_page(STORE, "pw")), &[]).await;
    assert_eq!(refused.status, 403);
    assert!(!refused.text.contains("s3cr3t"));
    let s = sign_in(&server, REVEALER).await;
    let shown = page(&server, &s, &credential_page(STORE, "pw")).await;
    assert!(shown.text.contains("Reveal value") && !shown.text.contains("s3cr3t"));
    let r = post_form(&server, &s, &format!("{}/reveal", credential_page(STORE, "pw")), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_console_headers(&r);
    assert!(r.text.contains("s3cr3t-&lt;b&gt;"), "{}", r.text);
    let refresh = r.headers["refresh"].to_str().unwrap();
    assert_eq!(refresh, format!("10; url={}", credential_page(STORE, "pw")));
    let lines = audit_lines(&server);
    let reveals: Vec<&Value> = lines.iter().filter(|l| l["action"] == "reveal").collect();
    assert_eq!(reveals.len(), 2, "{lines:?}");
    assert_eq!(
        (reveals[0]["token"].as_str(), reveals[0]["outcome"].as_str()),
        (Some("admin"), Some("denied"))
    );
    assert_eq!(
        (reveals[1]["token"].as_str(), reveals[1]["outcome"].as_str()),
        (Some("revealer"), Some("succeeded"))
    );
    assert!(!lines.iter().any(|l| l.to_string().contains("s3cr3t")));
}

#[tokio::test]
async fn versions_are_listed_and_one_is_restored_at_the_version_on_screen() {
    let server = server().await;
    let s = sign_in(&server, ADMIN).await;
    let c = browserless();
    let store = "sqlite-default";
    create(&c, &server, ADMIN, &creds_path(T, P, store), json!({"key": "rot", "value": "old"})).await;
    let v1 = get(&c, &server, ADMIN, &cred_path(T, P, store, "rot")).await.json()["data"]["version"].clone();
    create(&c, &server, ADMIN, &creds_path(T, P, store), json!({"key": "rot", "value": "new"})).await;
    let v2 = get(&c, &server, ADMIN, &cred_path(T, P, store, "rot")).await.json()["data"]["version"].clone();
    let (v1, v2) = (v1.as_str().unwrap().to_owned(), v2.as_str().unwrap().to_owned());
    let shown = page(&server, &s, &credential_page(store, "rot")).await;
    assert!(shown.text.contains("Versions") && shown.text.contains(">previous<"), "{}", shown.text);
    let restore = format!("{}/versions/{v1}/restore", credential_page(store, "rot"));
    assert!(shown.text.contains(&format!("action=\"{restore}\"")));
    let r = post_form(&server, &s, &restore, &[("current", &v2)]).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let value = get(&c, &server, REVEALER, &format!("{}/value", cred_path(T, P, store, "rot"))).await;
    assert_eq!(value.json()["data"]["value"], "old");
    // Restoring again over the version that was on screen is a conflict.
    let r = post_form(&server, &s, &restore, &[("current", &v2)]).await;
    assert_eq!(r.status, 412, "{}", r.text);
    assert!(r.text.contains("changed since the page showed version"));
}
