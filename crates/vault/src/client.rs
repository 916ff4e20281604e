//! The connection to one Vault server: the HTTP client and its TLS, the
//! token (fixed, or from an AppRole or JWT login that is renewed and
//! replaced), the bounded retries, what was last seen of each key, and the
//! few raw requests vaultrs has no typed call for.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use vaultrs::api::EndpointMiddleware;
use vaultrs::client::{VaultClient, VaultClientSettings};
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

use crate::config::{Auth, VaultConfig};
use crate::errors::{Ctx, Failure, RedirectRefused, RequestError};
use crate::last_seen::LastSeen;

/// Attempts of one request when it fails with a retriable error.
const MAX_ATTEMPTS: u32 = 3;
/// The first pause between attempts; it triples each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// A renewal is attempted only while the token has at least this left.
const RENEW_MARGIN: Duration = Duration::from_millis(250);

/// Which failed requests [`Connection::call_with`] sends again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Any retriable failure: for reads and unconditional writes.
    Always,
    /// Only failures that prove the request was not carried out (no
    /// connection, sealed, standby): for check-and-set writes, whose retry
    /// would otherwise meet the first attempt's own write and report a
    /// mismatch for a write that succeeded.
    IfNotApplied,
}

/// One token and the vaultrs client that sends it.
pub(crate) struct Session {
    pub client: VaultClient,
    token: Zeroizing<String>,
    generation: u64,
    /// AppRole or JWT: renew (or log in again) from this point on.
    refresh_at: Option<Instant>,
    expires_at: Option<Instant>,
    renewable: bool,
    /// The lease the login gave. A renewal that yields less than half of it
    /// means the token nears its maximum TTL: time for a new login.
    login_lease: Duration,
}

impl Session {
    fn needs_refresh(&self, now: Instant) -> bool {
        self.refresh_at.is_some_and(|t| now >= t)
    }

    /// Overwrites the plain `String` copies of the token that vaultrs keeps
    /// (its settings and its request middleware; both fields are public).
    fn wipe(&mut self) {
        use zeroize::Zeroize as _;
        self.client.settings.token.zeroize();
        self.client.middle.token.zeroize();
    }
}

/// The token's own copy is a `Zeroizing`; vaultrs's copies are wiped here.
impl Drop for Session {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl zeroize::ZeroizeOnDrop for Session {}

/// How often the store logged in and renewed, for monitoring and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthStats {
    /// Successful AppRole or JWT logins, the first one included.
    pub logins: u64,
    /// Successful token renewals.
    pub renewals: u64,
}

/// Everything the handles of one store share.
pub(crate) struct Connection {
    http: reqwest::Client,
    pub address: String,
    url: url::Url,
    pub mount: String,
    namespace: Option<String>,
    pub timeout: Duration,
    skip_verify: bool,
    auth: Auth,
    jwt_mount: String,
    session: RwLock<Option<Arc<Session>>>,
    refresh: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    mount_checked: AtomicBool,
    logins: AtomicU64,
    renewals: AtomicU64,
    /// What was last seen of each key, for writes.
    pub seen: LastSeen,
}

/// Checks the settings and builds the connection, without any I/O.
pub(crate) fn connect(config: &VaultConfig, mount: String) -> Result<Connection, String> {
    let address = config.address.trim().trim_end_matches('/').to_owned();
    let url = url::Url::parse(&address).map_err(|e| format!("address {address:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("address {address:?} must be an http:// or https:// URL with a host"));
    }
    crate::config::check_cleartext(&url, config.allow_insecure_http).map_err(|why| {
        match config.address_var {
            Some(var) => format!("address {address:?} (from {var}) {why}"),
            None => format!("address {address:?} {why}"),
        }
    })?;
    if config.timeout.is_zero() {
        return Err("timeout must be more than zero".into());
    }
    if let Auth::Token(t) = &config.auth {
        check_header("token", t.expose_str().map_err(|_| "the token is not UTF-8 text".to_owned())?)?;
    }
    if let Auth::AppRole { mount, role_id, secret_id } = &config.auth {
        crate::layout::validate_path(mount)
            .ok()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| format!("AppRole mount {mount:?} is not a valid path"))?;
        if role_id.is_empty() {
            return Err("AppRole role_id is empty".into());
        }
        if !secret_id.is_text() {
            return Err("the AppRole secret id is not UTF-8 text".into());
        }
    }
    if let Auth::Jwt { role, file } = &config.auth {
        crate::layout::validate_path(&config.jwt_mount)
            .ok()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| format!("JWT auth mount {:?} is not a valid path", config.jwt_mount))?;
        if role.is_empty() {
            return Err("the JWT role is empty".into());
        }
        if file.as_os_str().is_empty() {
            return Err("the JWT file path is empty".into());
        }
    }
    if let Some(ns) = &config.namespace {
        check_header("namespace", ns)?;
    }
    let http = http_client(config, url.scheme() == "https")?;
    let conn = Connection {
        http,
        address,
        url,
        mount,
        namespace: config.namespace.clone().filter(|n| !n.is_empty()),
        timeout: config.timeout,
        skip_verify: config.skip_verify,
        auth: config.auth.clone(),
        jwt_mount: crate::layout::validate_path(&config.jwt_mount).unwrap_or_default(),
        session: RwLock::new(None),
        refresh: tokio::sync::Mutex::new(()),
        generation: AtomicU64::new(0),
        mount_checked: AtomicBool::new(false),
        logins: AtomicU64::new(0),
        renewals: AtomicU64::new(0),
        seen: LastSeen::default(),
    };
    let fixed = match &conn.auth {
        // Checked to be text above.
        Auth::Token(t) => Some(Zeroizing::new(t.expose_str().unwrap_or_default().to_owned())),
        Auth::None => Some(Zeroizing::new(String::new())),
        Auth::AppRole { .. } | Auth::Jwt { .. } => None,
    };
    if let Some(token) = fixed {
        let session = conn.session_for(token, None, false);
        *conn.session.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(session));
    }
    Ok(conn)
}

/// A token or namespace goes into an HTTP header: visible ASCII only. The
/// message names the setting, never its value.
fn check_header(what: &str, value: &str) -> Result<(), String> {
    if value.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(format!("the {what} holds characters an HTTP header cannot carry"))
    }
}

/// The HTTP client: rustls on `ring`, the configured roots, one timeout.
fn http_client(config: &VaultConfig, https: bool) -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    // A CA file is read even for plain HTTP, so a wrong path shows at once.
    let roots = config.ca_cert.as_deref().map(load_roots).transpose()?;
    let tls = if !https {
        // Plain HTTP never uses TLS; reqwest still wants a configuration.
        builder.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth()
    } else if config.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
            .with_no_client_auth()
    } else if let Some(roots) = roots {
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        let verifier = rustls_platform_verifier::Verifier::new(provider)
            .map_err(|e| format!("cannot load the system's TLS roots: {e}"))?;
        builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let refused = RedirectRefused::new(attempt.status().as_u16(), attempt.url());
            attempt.error(refused)
        }))
        .timeout(config.timeout)
        .connect_timeout(config.timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// The CA certificates of a PEM file.
fn load_roots(path: &std::path::Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read CA certificate {}: {e}", path.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("cannot read CA certificate {}: {e}", path.display()))?;
        roots.add(cert).map_err(|e| format!("bad CA certificate in {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("no certificate found in CA file {}", path.display()));
    }
    Ok(roots)
}

/// For `skip_verify`: any certificate, signatures still checked.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl Connection {
    fn session_for(&self, token: Zeroizing<String>, lease: Option<Duration>, renewable: bool) -> Session {
        let settings = VaultClientSettings {
            address: self.url.clone(),
            ca_certs: Vec::new(),
            identity: None,
            timeout: Some(self.timeout),
            token: token.to_string(),
            verify: !self.skip_verify,
            version: 1,
            wrapping: false,
            namespace: self.namespace.clone(),
            proxy: None,
        };
        let middle = EndpointMiddleware {
            token: token.to_string(),
            version: "v1".into(),
            wrap: None,
            namespace: self.namespace.clone(),
        };
        let client = VaultClient {
            http: rustify::clients::reqwest::Client::new(&self.address, self.http.clone()),
            middle,
            settings,
        };
        let now = Instant::now();
        let lease = lease.filter(|l| !l.is_zero());
        Session {
            client,
            token,
            generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
            refresh_at: lease.map(|l| now + l * 2 / 3),
            expires_at: lease.map(|l| now + l),
            renewable,
            login_lease: lease.unwrap_or_default(),
        }
    }

    fn current(&self) -> Option<Arc<Session>> {
        self.session.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn install(&self, session: Session) -> Arc<Session> {
        let session = Arc::new(session);
        *self.session.write().unwrap_or_else(|e| e.into_inner()) = Some(session.clone());
        session
    }

    /// Forgets the session `generation` so that the next call logs in
    /// again (AppRole and JWT only; a fixed token cannot be replaced).
    fn invalidate(&self, generation: u64) {
        if !self.logs_in() {
            return;
        }
        let mut slot = self.session.write().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|s| s.generation == generation) {
            *slot = None;
        }
    }

    pub(crate) fn stats(&self) -> AuthStats {
        AuthStats {
            logins: self.logins.load(Ordering::Relaxed),
            renewals: self.renewals.load(Ordering::Relaxed),
        }
    }

    /// Whether the token comes from a login (AppRole or JWT) that can be
    /// repeated, rather than being fixed.
    pub(crate) fn logs_in(&self) -> bool {
        matches!(self.auth, Auth::AppRole { .. } | Auth::Jwt { .. })
    }

    /// `"none"`, `"token"`, `"approle"` or `"jwt"`.
    pub(crate) fn auth_method(&self) -> &'static str {
        self.auth.method()
    }

    /// A session with a usable token: logs in or renews first when due.
    pub(crate) async fn session(&self, ctx: &Ctx<'_>) -> Result<Arc<Session>, Failure> {
        if let Some(s) = self.current() {
            if !s.needs_refresh(Instant::now()) {
                return Ok(s);
            }
        }
        let _one_at_a_time = self.refresh.lock().await;
        let now = Instant::now();
        let current = self.current();
        if let Some(s) = &current {
            if !s.needs_refresh(now) {
                return Ok(s.clone());
            }
            if s.renewable && s.expires_at.is_some_and(|e| now + RENEW_MARGIN < e) {
                let renewed = vaultrs::token::renew_self(&s.client, None).await.map(|mut auth| {
                    // The same token again, in a plain `String`: not kept.
                    zeroize::Zeroize::zeroize(&mut auth.client_token);
                    auth
                });
                match renewed {
                    Ok(auth) if Duration::from_secs(auth.lease_duration) * 2 >= s.login_lease => {
                        self.renewals.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(store.address = %self.address, lease_secs = auth.lease_duration, "vault token renewed");
                        let lease = Duration::from_secs(auth.lease_duration);
                        let mut renewed = self.session_for(s.token.clone(), Some(lease), auth.renewable);
                        renewed.login_lease = s.login_lease;
                        return Ok(self.install(renewed));
                    }
                    Ok(_) => {
                        tracing::debug!(store.address = %self.address, "vault token near its max TTL; logging in again")
                    }
                    Err(e) => {
                        // Any failed renewal falls back to a fresh login: a
                        // token past its max TTL answers HTTP 500 ("cannot
                        // renew"), a revoked one 403. When the server itself is
                        // down, the login fails fast with the same retriable error.
                        let failure = ctx.classify(&e);
                        tracing::info!(store.address = %self.address, ?failure, "vault token renewal failed; logging in again");
                    }
                }
            }
        }
        self.login(ctx).await
    }

    async fn login(&self, ctx: &Ctx<'_>) -> Result<Arc<Session>, Failure> {
        let bare = self.session_for(Zeroizing::new(String::new()), None, false);
        let (method, mount, result, expired) = match &self.auth {
            Auth::AppRole { mount, role_id, secret_id } => {
                // Checked to be text when the connection was built.
                let secret_id = secret_id.expose_str().unwrap_or_default();
                let result = vaultrs::auth::approle::login(&bare.client, mount, role_id, secret_id).await;
                ("AppRole", mount.as_str(), result, None)
            }
            Auth::Jwt { role, file } => {
                // Read at every login: a projected token rotates.
                let jwt = read_jwt(file)?;
                let mount = self.jwt_mount.as_str();
                let result = vaultrs::auth::oidc::login(&bare.client, mount, &jwt, Some(role.clone())).await;
                let expired = result.is_err().then(|| jwt_expiry_note(&jwt, file)).flatten();
                ("JWT", mount, result, expired)
            }
            // A fixed token is installed at construction and never removed.
            Auth::None | Auth::Token(_) => return self.current().ok_or_else(|| Failure::other("no token")),
        };
        match result {
            Ok(auth) => {
                let token = Zeroizing::new(auth.client_token);
                // Checked as a configured token is: vaultrs puts it in a
                // header with `HeaderValue::from_str(..).unwrap()`, so a bad
                // one would panic at every request. Nothing is installed.
                if token.is_empty() {
                    return Err(Failure::other(format!(
                        "the {method} login at auth/{mount} answered an empty token"
                    )));
                }
                check_header("token", &token).map_err(|_| {
                    Failure::other(format!(
                        "the {method} login at auth/{mount} answered a token that an HTTP header cannot \
                         carry (characters other than visible ASCII); it was not used"
                    ))
                })?;
                self.logins.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(store.address = %self.address, auth.method = method, auth.mount = %mount, lease_secs = auth.lease_duration, "vault {method} login");
                let lease = Some(Duration::from_secs(auth.lease_duration));
                Ok(self.install(self.session_for(token, lease, auth.renewable)))
            }
            Err(e) => Err(match ctx.classify(&e) {
                Failure::Denied(why, cause) | Failure::Other(why, cause)
                    if matches!(e, ClientError::APIError { code: 400..=403, .. }) =>
                {
                    let expired = expired.unwrap_or_default();
                    Failure::Denied(format!("{method} login at auth/{mount} rejected: {why}{expired}"), cause)
                }
                Failure::NotFound | Failure::MountMissing => {
                    Failure::config(format!("no {method} auth method at auth/{mount} on {}", self.address))
                }
                other => other,
            }),
        }
    }

    /// Runs `call` with a valid token: retries retriable failures a bounded
    /// number of times with backoff, and logs in again once when an AppRole
    /// token is refused. For requests that may safely run twice.
    pub(crate) async fn call<T, E, F, Fut>(&self, ctx: &Ctx<'_>, call: F) -> Result<T, Failure>
    where
        E: RequestError,
        F: Fn(Arc<Session>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.call_with(ctx, Retry::Always, call).await
    }

    /// As [`Connection::call`], retrying as `retry` says.
    pub(crate) async fn call_with<T, E, F, Fut>(
        &self,
        ctx: &Ctx<'_>,
        retry: Retry,
        call: F,
    ) -> Result<T, Failure>
    where
        E: RequestError,
        F: Fn(Arc<Session>) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt = 1;
        let mut logged_in_again = false;
        loop {
            let session = match self.session(ctx).await {
                Ok(s) => s,
                Err(f) if f.is_retriable() && attempt < MAX_ATTEMPTS => {
                    backoff(attempt).await;
                    attempt += 1;
                    continue;
                }
                Err(f) => return Err(f),
            };
            let generation = session.generation;
            match call(session).await {
                Ok(v) => return Ok(v),
                Err(e) => match e.failure(ctx) {
                    // A refused token: the request was not carried out.
                    Failure::Denied(..) if self.logs_in() && !logged_in_again => {
                        logged_in_again = true;
                        self.invalidate(generation);
                    }
                    f if f.is_retriable()
                        && attempt < MAX_ATTEMPTS
                        && (retry == Retry::Always || e.not_applied()) =>
                    {
                        tracing::debug!(store.address = %self.address, attempt, failure = ?f, "retrying vault request");
                        backoff(attempt).await;
                        attempt += 1;
                    }
                    f => return Err(f),
                },
            }
        }
    }

    /// One raw GET: the status and the JSON body (`Null` when the body is
    /// not JSON). Sent with the session's token when `session` is given.
    async fn raw_get(
        &self,
        ctx: &Ctx<'_>,
        path: &str,
        session: Option<&Session>,
    ) -> Result<(u16, Value), Failure> {
        self.raw(ctx, reqwest::Method::GET, path, None, session).await
    }

    /// One raw POST of the JSON `body` with the session's token: the status
    /// and the JSON body (`Null` when it is not JSON), its raw bytes wiped.
    /// Give a body that holds a secret as [`bytes::Bytes::from_owner`] of a
    /// zeroizing buffer, so that it is wiped once sent.
    pub(crate) async fn raw_post(
        &self,
        ctx: &Ctx<'_>,
        path: &str,
        body: bytes::Bytes,
        session: &Session,
    ) -> Result<(u16, Value), Failure> {
        self.raw(ctx, reqwest::Method::POST, path, Some(body), Some(session)).await
    }

    async fn raw(
        &self,
        ctx: &Ctx<'_>,
        method: reqwest::Method,
        path: &str,
        body: Option<bytes::Bytes>,
        session: Option<&Session>,
    ) -> Result<(u16, Value), Failure> {
        let mut req = self
            .http
            .request(method, format!("{}/v1/{path}", self.address))
            .header("X-Vault-Request", "true");
        if let Some(body) = body {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        }
        if let Some(s) = session {
            if !s.token.is_empty() {
                let mut token = reqwest::header::HeaderValue::from_str(&s.token)
                    .map_err(|_| Failure::config("the token holds characters an HTTP header cannot carry"))?;
                token.set_sensitive(true);
                req = req.header("X-Vault-Token", token);
            }
            if let Some(ns) = &self.namespace {
                req = req.header("X-Vault-Namespace", ns);
            }
        }
        let resp = req.send().await.map_err(|e| ctx.network_failure(&e))?;
        let status = resp.status().as_u16();
        // `auth/token/lookup-self` answers the token itself, a Transit
        // decrypt the data key: the raw body is wiped here, the parsed one by
        // the caller ([`crate::layout::scrub`]).
        let body = Zeroizing::new(Vec::from(resp.bytes().await.map_err(|e| ctx.network_failure(&e))?));
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// Checks once per connection that the mount is KV version 2, through
    /// the same preflight endpoint the Vault CLI uses. Only a definite "not
    /// KV v2" fails the operation; inconclusive answers (the token may not
    /// read the mount table) let it go ahead and meet its own errors, and an
    /// unreachable server leaves the check for the next operation.
    pub(crate) async fn ensure_kv2(&self, ctx: &Ctx<'_>) -> Result<(), Failure> {
        if self.mount_checked.load(Ordering::Relaxed) {
            return Ok(());
        }
        match self.mount_kind(ctx).await {
            Ok(MountKind::KvV2) => {
                self.mount_checked.store(true, Ordering::Relaxed);
                Ok(())
            }
            Ok(MountKind::Other(what)) => Err(Failure::config(self.not_kv2(&what))),
            // The token may not see the mount table; asking again would not
            // change that, and the operations meet their own errors.
            Ok(MountKind::Missing | MountKind::Unknown(_)) => {
                self.mount_checked.store(true, Ordering::Relaxed);
                Ok(())
            }
            // A login refused stays refused; the operation would only repeat it.
            Err(f) if !f.is_retriable() => Err(f),
            // Unreachable: the operation's own retries decide; ask again next time.
            Err(_) => Ok(()),
        }
    }

    fn not_kv2(&self, what: &str) -> String {
        format!("mount '{}' is not a KV v2 mount (it is {what})", self.mount)
    }

    async fn mount_kind(&self, ctx: &Ctx<'_>) -> Result<MountKind, Failure> {
        let session = self.session(ctx).await?;
        let (status, body) =
            self.raw_get(ctx, &format!("sys/internal/ui/mounts/{}", self.mount), Some(&session)).await?;
        Ok(match status {
            200 => {
                let data = &body["data"];
                let kind = data["type"].as_str().unwrap_or("unknown");
                let version = data["options"]["version"].as_str().unwrap_or("1");
                match (kind, version) {
                    ("kv", "2") => MountKind::KvV2,
                    ("kv", v) => MountKind::Other(format!("KV version {v}")),
                    (t, _) => MountKind::Other(format!("a '{t}' engine")),
                }
            }
            403 | 404 => MountKind::Missing,
            other => match ctx.status(other, errors_of(&body).as_deref()) {
                f if f.is_retriable() => return Err(f),
                f => MountKind::Unknown(format!("{f:?}")),
            },
        })
    }

    /// The availability probe: reachable, initialized, unsealed, token
    /// accepted, mount KV v2. `Err` holds the reason it is not available.
    pub(crate) async fn probe(&self, ctx: &Ctx<'_>) -> Result<(), String> {
        let (status, health) = self
            .raw_get(ctx, "sys/health?standbyok=true&perfstandbyok=true", None)
            .await
            .map_err(|f| reason(&f))?;
        if health["initialized"] == Value::Bool(false) {
            return Err("vault is not initialized".into());
        }
        if health["sealed"] == Value::Bool(true) {
            return Err("vault is sealed".into());
        }
        if status != 200 {
            return Err(format!("vault health check at {} answered HTTP {status}", self.address));
        }
        let session = self.session(ctx).await.map_err(|f| reason(&f))?;
        let (status, body) =
            self.raw_get(ctx, "auth/token/lookup-self", Some(&session)).await.map_err(|f| reason(&f))?;
        let errors = errors_of(&body);
        // It holds the token (`data.id`).
        crate::layout::scrub(body);
        match status {
            200 => {}
            400 | 401 | 403 => {
                self.invalidate(session.generation);
                return Err(if session.token.is_empty() {
                    "no token configured; token rejected"
                } else {
                    "token rejected"
                }
                .into());
            }
            other => return Err(reason(&ctx.status(other, errors.as_deref()))),
        }
        match self.mount_kind(ctx).await.map_err(|f| reason(&f))? {
            MountKind::KvV2 => {
                self.mount_checked.store(true, Ordering::Relaxed);
                Ok(())
            }
            MountKind::Other(what) => Err(self.not_kv2(&what)),
            MountKind::Missing => {
                Err(format!("mount '{}' does not exist or the token cannot use it", self.mount))
            }
            MountKind::Unknown(why) => Err(format!("cannot check mount '{}': {why}", self.mount)),
        }
    }
}

/// Reads the JWT of a login from its file, whitespace trimmed. The text is
/// zeroized when dropped; errors name the file, never its content.
fn read_jwt(file: &std::path::Path) -> Result<Zeroizing<String>, Failure> {
    let raw = std::fs::read(file)
        .map_err(|e| Failure::config(format!("cannot read the JWT file {}: {e}", file.display())))?;
    let raw = Zeroizing::new(raw);
    let text = std::str::from_utf8(&raw)
        .map_err(|_| Failure::config(format!("the JWT file {} is not text", file.display())))?;
    let jwt = Zeroizing::new(text.trim().to_owned());
    if jwt.is_empty() {
        return Err(Failure::config(format!("the JWT file {} is empty", file.display())));
    }
    Ok(jwt)
}

/// When a JWT whose login was refused has an `exp` claim in the past: a
/// note saying so, for the error's reason (the signature is not checked;
/// this only explains a refusal the server made).
fn jwt_expiry_note(jwt: &str, file: &std::path::Path) -> Option<String> {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1)?;
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?,
    );
    let exp = serde_json::from_slice::<Value>(&bytes).ok()?.get("exp")?.as_f64()?;
    let expired_at = std::time::UNIX_EPOCH + Duration::from_secs_f64(exp.max(0.0));
    let ago = std::time::SystemTime::now().duration_since(expired_at).ok()?;
    Some(format!(
        " (the JWT in {} expired {}s ago, at {})",
        file.display(),
        ago.as_secs(),
        crate::layout::format_time(expired_at)
    ))
}

enum MountKind {
    KvV2,
    Other(String),
    Missing,
    Unknown(String),
}

pub(crate) fn errors_of(body: &Value) -> Option<Vec<String>> {
    body["errors"].as_array().map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_owned)).collect())
}

/// The plain-words reason of a failure, for an availability answer.
pub(crate) fn reason(f: &Failure) -> String {
    match f {
        Failure::NotFound => "vault answered 404 not found".into(),
        Failure::MountMissing => "the mount does not exist".into(),
        Failure::CasMismatch => "a check-and-set write found another version".into(),
        Failure::CasRequired => "the mount requires check-and-set".into(),
        Failure::Precondition(r)
        | Failure::Denied(r, _)
        | Failure::Unavailable(r, _)
        | Failure::Config(r, _)
        | Failure::Other(r, _) => r.clone(),
    }
}

async fn backoff(attempt: u32) {
    // 50 ms, 150 ms, ... with up to 50% jitter so that writers part ways.
    let base = FIRST_BACKOFF * 3u32.pow(attempt - 1);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let jitter = base.mul_f64(f64::from(nanos % 500) / 1000.0);
    tokio::time::sleep(base + jitter).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_wipes_the_token_copies_vaultrs_keeps() {
        fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let config = VaultConfig::new("http://127.0.0.1:8200");
        let conn = connect(&config, "secret".into()).unwrap();
        let mut session = conn.session_for(Zeroizing::new("hvs.session-SECRET".into()), None, false);
        zeroized_on_drop(&session);
        zeroized_on_drop(&session.token);
        assert_eq!(session.client.settings.token, "hvs.session-SECRET");
        assert_eq!(session.client.middle.token, "hvs.session-SECRET");
        session.wipe();
        assert!(session.client.settings.token.is_empty() && session.client.middle.token.is_empty());
    }
}
