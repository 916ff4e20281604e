//! The console in a real browser: headless Chromium under chromedriver
//! ([`credstore_test_servers::browser`]), at a desktop width and at 375 px.
//!
//! Every page visited is saved as a PNG under the target folder's
//! `console-screenshots/` (`<page>-<width>px.png`); a failing step saves
//! `FAILED-<test>-<width>px.png` of the page it failed on. Without Chromium
//! these tests say so loudly and skip, and fail under `CI=true`.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::time::Duration;

use credstore_server::auth::Action;
use credstore_test_servers::browser::{screenshot_dir, Browser};
use credstore_test_servers::canned::{CannedServer, Response};
use serde_json::json;

use crate::util::harness::*;

const T: &str = "tenant_1";
const P: &str = "project_1";
const STORE: &str = "sqlite-default";
const REVEALER: &str = "revealer-token-0123456789";

const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (375, 812);

const WAIT: Duration = Duration::from_secs(10);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn start(rt: &tokio::runtime::Runtime) -> TestServer {
    rt.block_on(TestServer::start_with(|o| {
        o.tokens.push(token(
            "revealer",
            REVEALER,
            &["*"],
            &["*"],
            &[Action::View, Action::Edit, Action::Reveal],
        ));
    }))
}

/// Runs `steps` in a fresh browser at `size`; on a failure, saves the page
/// it failed on, then fails. Returns without running them when the browser
/// is missing (outside CI; said loudly).
fn in_browser(test: &str, size: (u32, u32), steps: impl FnOnce(&Browser)) {
    let Some(browser) = Browser::start(size.0, size.1) else { return };
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| steps(&browser))) {
        browser.screenshot(&screenshot_dir().join(format!("FAILED-{test}-{}px.png", size.0)));
        resume_unwind(panic);
    }
}

/// Saves the whole page as `<page>-<width>px.png`.
fn shot(b: &Browser, page: &str, size: (u32, u32)) {
    b.full_screenshot(&screenshot_dir().join(format!("{page}-{}px.png", size.0)), size.0, size.1);
}

/// The viewport is `size` wide and nothing on the page is wider (no
/// sideways scrolling on a phone).
fn assert_fits(b: &Browser, size: (u32, u32), page: &str) {
    let widths = b.execute("return [window.innerWidth, document.documentElement.scrollWidth]", json!([]));
    assert_eq!(widths[0], json!(size.0), "{page}: the viewport");
    assert!(
        widths[1].as_u64().unwrap() <= u64::from(size.0),
        "{page} scrolls sideways at {}px: {widths}",
        size.0
    );
}

fn sign_in(b: &Browser, server: &TestServer, token: &str) {
    b.goto(&server.url("/console/"));
    assert!(b.url().ends_with("/console/sign-in"), "{}", b.url());
    // The token field has the focus: typing and Enter sign in.
    b.keys(&format!("{token}\u{e007}"));
    b.wait_for("form[action='/console/sign-out']", WAIT).unwrap();
}

fn store_url(server: &TestServer) -> String {
    server.url(&format!("/console/tenants/{T}/projects/{P}/stores/{STORE}"))
}

#[test]
fn in_a_browser_sign_in_list_create_replace_at_a_stale_version_delete_and_sign_out() {
    for size in [DESKTOP, PHONE] {
        let rt = runtime();
        let server = start(&rt);
        let c = client();
        in_browser("flow", size, |b| {
            b.goto(&server.url("/console/"));
            assert!(b.url().ends_with("/console/sign-in"), "{}", b.url());
            shot(b, "sign-in", size);
            assert_fits(b, size, "sign-in");
            b.keys(&format!("{REVEALER}\u{e007}"));
            b.wait_for("form[action='/console/sign-out']", WAIT).unwrap();
            assert!(b.body_text().contains("Signed in as revealer"), "{}", b.body_text());
            shot(b, "home", size);
            assert_fits(b, size, "home");
            // The project form.
            b.type_into("#tenant", T);
            b.type_into("#project", P);
            b.click("form[action='/console/project'] button");
            b.wait_for("table", WAIT).unwrap();
            let stores = b.body_text();
            assert!(stores.contains("memory-default") && stores.contains("sqlite-default"), "{stores}");
            assert!(stores.contains("available"), "{stores}");
            shot(b, "stores", size);
            assert_fits(b, size, "stores");
            b.click(&format!("a[href$='/stores/{STORE}']"));
            b.wait_for("#prefix", WAIT).unwrap();
            assert!(b.body_text().contains("holds no credentials for this project yet"), "{}", b.body_text());
            shot(b, "credentials-empty", size);
            // Create.
            b.type_into("#key", "api-key");
            b.type_into("#value", "first-secret-value");
            b.type_into("#metadata", "owner=web");
            b.click("form[method='post'][action$='/stores/sqlite-default'] button");
            b.wait_for("#version", WAIT).unwrap();
            assert!(b.body_text().contains("Created."), "{}", b.body_text());
            assert!(!b.source().contains("first-secret-value"), "the value is shown back");
            shot(b, "credential", size);
            assert_fits(b, size, "credential");
            // The listing shows it, with its metadata.
            b.goto(&store_url(&server));
            let listed = b.body_text();
            assert!(listed.contains("api-key") && listed.contains("owner"), "{listed}");
            shot(b, "credentials", size);
            assert_fits(b, size, "credentials");
            // A replace at the version on screen after someone else wrote: the conflict is shown.
            b.click("a[href$='/credentials/api-key']");
            let on_screen = b.text("#version");
            let body = json!({"key": "api-key", "value": "written-elsewhere"});
            let r = rt.block_on(create(&c, &server, ADMIN, &creds_path(T, P, STORE), body));
            assert_eq!(r.status, 200, "{}", r.text);
            b.type_into("#value", "my-stale-replacement");
            b.click("form[action$='/replace'] button");
            b.wait_for(".notice.error", WAIT).unwrap();
            let conflict = b.text(".notice.error");
            assert!(
                conflict.contains(&format!("changed since the page showed version {on_screen}")),
                "{conflict}"
            );
            assert_ne!(b.text("#version"), on_screen, "the page shows the version it holds now");
            shot(b, "replace-conflict", size);
            assert_fits(b, size, "replace-conflict");
            // At the version now on screen it goes through.
            b.type_into("#value", "second-secret-value");
            b.click("form[action$='/replace'] button");
            b.wait_for(".notice.ok", WAIT).unwrap();
            assert!(b.text(".notice.ok").contains("replaced"));
            // Delete, after the confirmation step.
            b.click("a[href$='/api-key/delete']");
            b.wait_for("button.danger", WAIT).unwrap();
            shot(b, "delete-confirm", size);
            assert_fits(b, size, "delete-confirm");
            b.click("button.danger");
            b.wait_for(".notice.ok", WAIT).unwrap();
            assert!(b.text(".notice.ok").contains("'api-key' was deleted"));
            let gone = rt.block_on(get(&c, &server, ADMIN, &cred_path(T, P, STORE, "api-key")));
            assert_eq!(gone.status, 404);
            // Sign out: the session is over, the pages go to the sign-in.
            b.click("form[action='/console/sign-out'] button");
            b.wait_for("#token", WAIT).unwrap();
            b.goto(&store_url(&server));
            assert!(b.url().contains("/console/sign-in"), "{}", b.url());
        });
    }
}

#[test]
fn in_a_browser_reveal_shows_the_value_to_a_grant_with_reveal_only_and_hides_it_again() {
    let rt = runtime();
    let server = start(&rt);
    let c = client();
    let body = json!({"key": "db-password", "value": "the-revealed-value"});
    assert_eq!(rt.block_on(create(&c, &server, ADMIN, &creds_path(T, P, STORE), body)).status, 201);
    let page =
        server.url(&format!("/console/tenants/{T}/projects/{P}/stores/{STORE}/credentials/db-password"));
    for size in [DESKTOP, PHONE] {
        // The admin token has no reveal: no button.
        in_browser("no-reveal", size, |b| {
            sign_in(b, &server, ADMIN);
            b.goto(&page);
            b.wait_for("#version", WAIT).unwrap();
            assert!(b.find("form[action$='/reveal']").is_none(), "a reveal button without the grant");
            assert!(!b.source().contains("the-revealed-value"));
            shot(b, "credential-no-reveal", size);
        });
        in_browser("reveal", size, |b| {
            sign_in(b, &server, REVEALER);
            b.goto(&page);
            b.click("form[action$='/reveal'] button");
            b.wait_for("#revealed", WAIT).unwrap();
            assert_eq!(b.text("#revealed"), "the-revealed-value");
            shot(b, "revealed", size);
            assert_fits(b, size, "revealed");
            if size == DESKTOP {
                // Hidden again after its seconds, without a click.
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                while b.find("#revealed").is_some() {
                    assert!(std::time::Instant::now() < deadline, "the value is still shown");
                    std::thread::sleep(Duration::from_millis(250));
                }
                assert!(!b.source().contains("the-revealed-value"));
                assert!(b.find("form[action$='/reveal']").is_some());
            }
        });
    }
    let log = std::fs::read_to_string(server.dir.path().join("data").join("audit.log")).unwrap();
    let reveals = log.lines().filter(|l| l.contains("\"reveal\"") && l.contains("\"revealer\"")).count();
    assert_eq!(reveals, 2, "{log}");
}

#[test]
fn in_a_browser_an_expired_session_goes_back_to_the_sign_in_page() {
    for size in [DESKTOP, PHONE] {
        let rt = runtime();
        let server = start(&rt);
        let now = std::sync::Arc::new(std::sync::Mutex::new(std::time::Instant::now()));
        let clock = now.clone();
        server.sessions.set_clock(move || *clock.lock().unwrap());
        in_browser("expiry", size, |b| {
            sign_in(b, &server, ADMIN);
            b.goto(&store_url(&server));
            b.wait_for("#prefix", WAIT).unwrap();
            *now.lock().unwrap() += server.sessions.settings().idle_timeout;
            b.goto(&store_url(&server));
            b.wait_for("#token", WAIT).unwrap();
            assert!(b.body_text().contains("Your session has ended."), "{}", b.body_text());
            shot(b, "session-ended", size);
            assert_fits(b, size, "session-ended");
        });
    }
}

#[test]
fn in_a_browser_a_form_posted_to_the_console_from_another_origin_is_refused() {
    let rt = runtime();
    let server = start(&rt);
    let target = store_url(&server);
    let sign_in_target = server.url("/console/sign-in");
    let attacker = CannedServer::start(move |_| {
        Response::html(
            200,
            &format!(
                "<!DOCTYPE html><title>elsewhere</title>\
                 <form id=a method=post action=\"{target}\">\
                 <input name=key value=forged><input name=value value=x>\
                 <button id=go>Win a prize</button></form>\
                 <form id=b method=post action=\"{sign_in_target}\">\
                 <input name=token value={ADMIN}><button id=login>Sign in</button></form>"
            ),
        )
    })
    .unwrap();
    let c = client();
    in_browser("csrf", DESKTOP, |b| {
        sign_in(b, &server, ADMIN);
        // The browser holds the session; a page of another origin posts a
        // form to the console with it.
        b.goto(&attacker.url());
        b.click("#go");
        b.wait_for(".notice.error", WAIT).unwrap();
        let refused = b.body_text();
        assert!(refused.contains("CSRF") && refused.contains("Forbidden"), "{refused}");
        shot(b, "csrf-refused", DESKTOP);
        let forged = rt.block_on(get(&c, &server, ADMIN, &cred_path(T, P, STORE, "forged")));
        assert_eq!(forged.status, 404, "the forged form created the credential");
        // Nor may another origin sign the browser in.
        b.goto(&attacker.url());
        b.click("#login");
        b.wait_for(".notice.error", WAIT).unwrap();
        assert!(b.body_text().contains("another site"), "{}", b.body_text());
    });
}
