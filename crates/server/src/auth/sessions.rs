//! Console sessions: the Credential Stores API's `cookieAuth`, a
//! `better-auth.session_token` cookie issued by `POST /console/sign-in` for
//! a known token.
//!
//! A session stands for the token it was signed in with: the same grants,
//! the same audit lines naming the token. Its cookie value is 32 random
//! bytes from the operating system (64 hex digits), sent once in
//! `Set-Cookie` (`HttpOnly; SameSite=Strict; Path=/`, and `Secure` when the
//! server serves TLS) and kept here only as its SHA-256, with the hash of
//! the token, a synchronizer CSRF token (32 random bytes, 64 hex digits)
//! and two times. A session ends:
//! - when it has not been used for the idle timeout
//!   ([`SessionSettings::idle_timeout`], TOML `session_idle_timeout_ms`,
//!   default 30 minutes);
//! - at the end of its lifetime, however much it is used
//!   ([`SessionSettings::lifetime`], TOML `session_lifetime_ms`, default
//!   12 hours);
//! - on sign-out (`POST /console/sign-out`), which deletes it here;
//! - at the next sign-in from the same browser (the request that carries
//!   it);
//! - when [`MAX_SESSIONS`] are live and another sign-in comes: the oldest
//!   one (by sign-in) is evicted, so sign-ins never grow memory without
//!   bound;
//! - when the server stops (sessions live in memory only).
//!
//! A request that changes something (any method but GET, HEAD and
//! OPTIONS) and is authenticated by the cookie must carry the session's
//! CSRF token, in the `X-CSRF-Token` header or, from the console's forms,
//! the form field `csrf`; otherwise it is refused with 403 before anything
//! is done. Requests with a bearer token are not affected.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{hex, TokenHash};

/// The name of the session cookie (the Credential Stores API's
/// `cookieAuth` scheme names cookies `better-auth.*`).
pub const SESSION_COOKIE: &str = "better-auth.session_token";

/// The header that carries a session's CSRF token on a state-changing
/// request authenticated by the cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The most sessions live at once; a sign-in past it evicts the oldest.
pub const MAX_SESSIONS: usize = 10_000;

/// The default idle timeout: 30 minutes.
pub const DEFAULT_SESSION_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The default lifetime: 12 hours.
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// How long sessions last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSettings {
    /// A session unused for this long ends (TOML `session_idle_timeout_ms`).
    pub idle_timeout: Duration,
    /// A session ends this long after its sign-in, however much it is used
    /// (TOML `session_lifetime_ms`).
    pub lifetime: Duration,
    /// The most sessions live at once ([`MAX_SESSIONS`]).
    pub max_sessions: usize,
}

impl SessionSettings {
    /// 30 minutes idle, 12 hours at most, [`MAX_SESSIONS`] live.
    pub const DEFAULT: SessionSettings = SessionSettings {
        idle_timeout: DEFAULT_SESSION_IDLE_TIMEOUT,
        lifetime: DEFAULT_SESSION_LIFETIME,
        max_sessions: MAX_SESSIONS,
    };
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The clock sessions are timed by; [`Instant::now`] unless
/// [`Sessions::set_clock`] gave another.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

/// A live session, as a request finds it.
#[derive(Clone)]
pub struct Session {
    /// The hash of the token it was signed in with.
    pub token: TokenHash,
    csrf: Zeroizing<String>,
}

impl Session {
    /// The session's CSRF token (64 hex digits), for the console's forms.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    /// Whether `presented` is the session's CSRF token (constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        presented.len() == self.csrf.len() && bool::from(presented.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session").field("token", &self.token).finish_non_exhaustive()
    }
}

/// A new session: the cookie value to send once, and the session.
pub struct Issued {
    /// The cookie's value (64 hex digits); only its hash is kept.
    pub cookie: Zeroizing<String>,
    /// The session.
    pub session: Session,
}

impl fmt::Debug for Issued {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issued").field("session", &self.session).finish_non_exhaustive()
    }
}

struct Entry {
    session: Session,
    signed_in: Instant,
    last_used: Instant,
}

struct Inner {
    live: HashMap<[u8; 32], Entry>,
    /// Cookie hashes in sign-in order; some may have ended already.
    order: VecDeque<[u8; 32]>,
    clock: Option<Clock>,
}

/// The live sessions, by the SHA-256 of their cookie.
pub struct Sessions {
    settings: SessionSettings,
    secure: bool,
    inner: Mutex<Inner>,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("settings", &self.settings)
            .field("secure", &self.secure)
            .field("live", &self.len())
            .finish()
    }
}

fn random_hex() -> std::io::Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut *bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(Zeroizing::new(hex(&*bytes)))
}

fn digest(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

impl Sessions {
    /// No sessions yet; cookies are marked `Secure` when `secure` (the
    /// server serves TLS).
    pub fn new(settings: SessionSettings, secure: bool) -> Self {
        Self {
            settings,
            secure,
            inner: Mutex::new(Inner { live: HashMap::new(), order: VecDeque::new(), clock: None }),
        }
    }

    /// Times sessions by `clock` from now on (an embedder's or a test's
    /// own time).
    pub fn set_clock(&self, clock: impl Fn() -> Instant + Send + Sync + 'static) {
        self.lock().clock = Some(Arc::new(clock));
    }

    /// The settings.
    pub fn settings(&self) -> SessionSettings {
        self.settings
    }

    /// How many sessions are live (some may have expired and not been
    /// found since).
    pub fn len(&self) -> usize {
        self.lock().live.len()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a session for the token whose hash is `token`, evicting the
    /// oldest when [`SessionSettings::max_sessions`] are live.
    ///
    /// # Errors
    /// When the operating system's random source fails.
    pub fn issue(&self, token: TokenHash) -> std::io::Result<Issued> {
        let cookie = random_hex()?;
        let session = Session { token, csrf: random_hex()? };
        let key = digest(&cookie);
        let mut inner = self.lock();
        let now = inner.now();
        let max = self.settings.max_sessions.max(1);
        while inner.live.len() >= max {
            let Some(oldest) = inner.order.pop_front() else { break };
            inner.live.remove(&oldest);
        }
        inner.live.insert(key, Entry { session: session.clone(), signed_in: now, last_used: now });
        inner.order.push_back(key);
        // Hashes of ended sessions are dropped from the order now and then,
        // so it stays within twice the cap.
        if inner.order.len() > 2 * max {
            let Inner { live, order, .. } = &mut *inner;
            order.retain(|k| live.contains_key(k));
        }
        Ok(Issued { cookie, session })
    }

    /// The live session of the cookie value `cookie`, whose idle time
    /// starts again; `None` when there is none, or it has ended (it is then
    /// removed).
    pub fn find(&self, cookie: &str) -> Option<Session> {
        let key = digest(cookie);
        let mut inner = self.lock();
        let now = inner.now();
        let entry = inner.live.get_mut(&key)?;
        let idle = now.saturating_duration_since(entry.last_used);
        let age = now.saturating_duration_since(entry.signed_in);
        if idle >= self.settings.idle_timeout || age >= self.settings.lifetime {
            inner.live.remove(&key);
            return None;
        }
        entry.last_used = now;
        Some(entry.session.clone())
    }

    /// Ends the session of the cookie value `cookie`; whether there was one.
    pub fn end(&self, cookie: &str) -> bool {
        self.lock().live.remove(&digest(cookie)).is_some()
    }

    /// The `Set-Cookie` value that sends `cookie` to the browser.
    pub fn set_cookie(&self, cookie: &str) -> Zeroizing<String> {
        let secure = if self.secure { "; Secure" } else { "" };
        Zeroizing::new(format!("{SESSION_COOKIE}={cookie}; HttpOnly; SameSite=Strict; Path=/{secure}"))
    }

    /// The `Set-Cookie` value that removes the cookie from the browser.
    pub fn clear_cookie(&self) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}")
    }
}

impl Inner {
    fn now(&self) -> Instant {
        self.clock.as_ref().map_or_else(Instant::now, |c| c())
    }
}

/// The value of the session cookie among a request's `Cookie` headers,
/// when it has one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().trim_matches('"'))
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn sessions(idle: u64, lifetime: u64, max: usize) -> (Sessions, Arc<Mutex<Instant>>) {
        let settings = SessionSettings {
            idle_timeout: Duration::from_secs(idle),
            lifetime: Duration::from_secs(lifetime),
            max_sessions: max,
        };
        let s = Sessions::new(settings, false);
        let now = Arc::new(Mutex::new(Instant::now()));
        let clock = now.clone();
        s.set_clock(move || *clock.lock().unwrap());
        (s, now)
    }

    fn advance(now: &Mutex<Instant>, secs: u64) {
        *now.lock().unwrap() += Duration::from_secs(secs);
    }

    #[test]
    fn a_session_is_found_by_its_cookie_and_only_its_hash_is_kept() {
        let (s, _) = sessions(60, 600, 10);
        let issued = s.issue(TokenHash::of("token-0000000001")).unwrap();
        assert_eq!(issued.cookie.len(), 64);
        assert!(issued.cookie.bytes().all(|b| b.is_ascii_hexdigit()));
        let found = s.find(&issued.cookie).unwrap();
        assert_eq!(found.token, TokenHash::of("token-0000000001"));
        assert!(found.csrf_matches(issued.session.csrf()));
        assert!(!found.csrf_matches("0".repeat(64).as_str()));
        assert!(!found.csrf_matches(""));
        assert!(s.find(&"0".repeat(64)).is_none());
        let inner = s.lock();
        assert!(inner.live.contains_key(&digest(&issued.cookie)));
        assert!(!format!("{:?}", found).contains(found.csrf()));
    }

    #[test]
    fn idle_and_absolute_expiry() {
        let (s, now) = sessions(60, 150, 10);
        let issued = s.issue(TokenHash::of("t")).unwrap();
        advance(&now, 59);
        assert!(s.find(&issued.cookie).is_some(), "used within the idle timeout");
        advance(&now, 59);
        assert!(s.find(&issued.cookie).is_some(), "the idle time started again");
        advance(&now, 40);
        assert!(s.find(&issued.cookie).is_none(), "past the lifetime though used");
        let idle = s.issue(TokenHash::of("t")).unwrap();
        advance(&now, 60);
        assert!(s.find(&idle.cookie).is_none(), "idle for the whole timeout");
        assert!(s.is_empty());
    }

    #[test]
    fn the_oldest_session_is_evicted_past_the_cap_and_the_order_stays_bounded() {
        let (s, _) = sessions(60, 600, 3);
        let cookies: Vec<_> = (0..5).map(|_| s.issue(TokenHash::of("t")).unwrap().cookie).collect();
        assert_eq!(s.len(), 3);
        assert!(s.find(&cookies[0]).is_none() && s.find(&cookies[1]).is_none());
        assert!(cookies[2..].iter().all(|c| s.find(c).is_some()));
        for _ in 0..100 {
            let c = s.issue(TokenHash::of("t")).unwrap().cookie;
            assert!(s.end(&c));
        }
        assert!(s.lock().order.len() <= 6);
    }

    #[test]
    fn cookies_are_http_only_same_site_strict_and_secure_under_tls() {
        let plain = Sessions::new(SessionSettings::DEFAULT, false).set_cookie("abc");
        assert_eq!(plain.as_str(), "better-auth.session_token=abc; HttpOnly; SameSite=Strict; Path=/");
        let tls = Sessions::new(SessionSettings::DEFAULT, true);
        assert!(tls.set_cookie("abc").ends_with("; Secure"));
        assert!(tls.clear_cookie().contains("Max-Age=0"));
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=b; better-auth.session_token=xyz; c=d"));
        assert_eq!(session_cookie(&h), Some("xyz"));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=b"));
        h.append(header::COOKIE, HeaderValue::from_static("better-auth.session_token=q"));
        assert_eq!(session_cookie(&h), Some("q"));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("better-auth.session_data=q"));
        assert_eq!(session_cookie(&h), None);
    }
}
