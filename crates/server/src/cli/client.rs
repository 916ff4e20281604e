//! `--server URL`: the data commands through a running credstore server,
//! over the Credential Stores API.
//!
//! Every request carries `Authorization: Bearer <CREDSTORE_TOKEN>` (marked
//! sensitive, never logged) and is bounded by `--timeout`; redirects are
//! not followed (a token is never sent elsewhere). TLS is rustls on `ring`
//! with the system's roots (`rustls-platform-verifier`), or only the CA
//! certificates of `--ca-cert`, as the Vault client builds it.
//!
//! The routes, under `/manage/tenants/{tenantId}/projects/{projectId}/credential-stores/{id}/credentials`:
//! a value is read with `GET …/{key}/value` (the token needs the `reveal`
//! action), its metadata with `GET …/{key}`, a write is `POST` (with
//! `If-None-Match: *` or `If-Match: "<version>"` for `--create-only` /
//! `--if-version`), a list `GET ?prefix=&limit=&cursor=`, a delete
//! `DELETE …/{key}`, and `run`'s values one `POST …/credentials:batchRead`
//! per 1,000 keys. Bodies that hold a value (a write's request, a value
//! read's answer) live in zeroizing buffers.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use credstore_core::{CredentialKey, Metadata, SecretValue, SetMode, SetOptions};
use http_client::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH, IF_NONE_MATCH};
use http_client::{Method, StatusCode, Url};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::entry::{Entry, Written};
use super::exit::{Exit, Failure};

/// A credential store of a running server, seen through one tenant's project.
pub(crate) struct Remote {
    http: http_client::Client,
    /// `{server}/manage/tenants/{t}/projects/{p}/credential-stores/{id}/credentials`.
    base: Url,
    store: String,
    auth: HeaderValue,
}

/// Where the server is and how to reach it.
pub(crate) struct Endpoint<'a> {
    /// Its base URL.
    pub server: &'a str,
    /// The CA certificates to trust instead of the system's.
    pub ca_cert: Option<&'a Path>,
    /// The bound on each request, connecting included.
    pub timeout: Duration,
    /// Whether plain HTTP may go to an address that is not loopback.
    pub allow_plaintext: bool,
}

/// The answer of a value read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ValueData {
    value: Option<String>,
    value_base64: Option<String>,
    version: String,
    created_at: String,
    updated_at: String,
}

/// The answer of a metadata read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InfoData {
    metadata: BTreeMap<String, String>,
    created_at: String,
    updated_at: String,
    version: String,
    value_kind: String,
    expires_at: Option<String>,
}

#[derive(Deserialize)]
struct Data<T> {
    data: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    data: Vec<KeyEntry>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct KeyEntry {
    key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Created {
    created_at: String,
}

/// The body of a write; the value is borrowed, serialized into a zeroizing
/// buffer.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody<'a> {
    key: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_base64: Option<&'a str>,
    metadata: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

impl Remote {
    /// A client of the store `store` of the server at `server`, in the
    /// project `tenant`/`project`, with `token`.
    ///
    /// # Errors
    /// [`Exit::Usage`]: a URL that is not `http(s)://host[:port][/path]`
    /// (or holds a user, a query or a fragment), plain `http` to an address
    /// that is not loopback without `allow_plaintext`, a token an HTTP
    /// header cannot carry; [`Exit::Failure`]: an unreadable `--ca-cert`, or no
    /// TLS roots.
    pub(crate) fn new(
        endpoint: &Endpoint<'_>,
        tenant: &str,
        project: &str,
        store: &str,
        token: &str,
    ) -> Result<Self, Failure> {
        let server = endpoint.server;
        let mut base = Url::parse(server)
            .map_err(|e| Failure::usage(format!("--server {server:?} is not a URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host().is_none() {
            return Err(Failure::usage(format!("--server {server:?}: give http(s)://host[:port]")));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(Failure::usage(
                "--server holds a user or password; the token comes from CREDSTORE_TOKEN only",
            ));
        }
        if base.scheme() == "http" && !endpoint.allow_plaintext && !is_loopback(&base) {
            return Err(Failure::usage(format!(
                "--server {server:?} would send the token unencrypted over the network: use https, or \
                 --allow-plaintext for a network you trust (plain http is always allowed to a loopback address)"
            )));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(Failure::usage(format!("--server {server:?}: no query or fragment, please")));
        }
        {
            let mut segments = base
                .path_segments_mut()
                .map_err(|_| Failure::usage(format!("--server {server:?} cannot hold a path")))?;
            segments.pop_if_empty();
            segments.extend([
                "manage",
                "tenants",
                tenant,
                "projects",
                project,
                "credential-stores",
                store,
                "credentials",
            ]);
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) || token.is_empty() {
            return Err(Failure::usage("CREDSTORE_TOKEN holds characters an HTTP header cannot carry"));
        }
        let bearer = Zeroizing::new(format!("Bearer {token}"));
        let mut auth = HeaderValue::from_str(&bearer)
            .map_err(|_| Failure::usage("CREDSTORE_TOKEN holds characters an HTTP header cannot carry"))?;
        auth.set_sensitive(true);
        let http = client(base.scheme() == "https", endpoint.ca_cert, endpoint.timeout)?;
        Ok(Self { http, base, store: store.to_owned(), auth })
    }

    /// The store's id on the server.
    pub(crate) fn store(&self) -> &str {
        &self.store
    }

    fn url(&self, key: Option<&CredentialKey>, tail: Option<&str>) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.extend(key.map(CredentialKey::as_str));
            segments.extend(tail);
        }
        url
    }

    /// Sends one request; the status, the ETag and the body in a wiped
    /// buffer. A connection failure or timeout is [`Exit::Failure`].
    async fn send(
        &self,
        method: Method,
        url: Url,
        headers: &[(http_client::header::HeaderName, HeaderValue)],
        body: Option<bytes::Bytes>,
    ) -> Result<(StatusCode, Option<String>, Zeroizing<Vec<u8>>), Failure> {
        let mut req = self.http.request(method, url).header(AUTHORIZATION, self.auth.clone());
        for (name, value) in headers {
            req = req.header(name, value);
        }
        if let Some(body) = body {
            req = req.header(CONTENT_TYPE, "application/json").body(body);
        }
        let mut resp = req.send().await.map_err(|e| self.network(&e))?;
        let status = resp.status();
        let etag = resp.headers().get(ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = Zeroizing::new(Vec::new());
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.network(&e))? {
            body.reserve(chunk.len());
            body.extend_from_slice(&chunk);
        }
        Ok((status, etag, body))
    }

    fn network(&self, e: &http_client::Error) -> Failure {
        let what = if e.is_timeout() { "did not answer in time" } else { "cannot be reached" };
        let mut shown = self.base.clone();
        shown.set_path("");
        Failure::error(format!("the server {shown} {what}: {}", error_chain(e)))
    }

    /// The failure of an error answer: its exit code by status, the
    /// problem's `detail` as the message.
    fn refused(&self, status: StatusCode, body: &[u8]) -> Failure {
        #[derive(Deserialize)]
        struct Problem {
            detail: Option<String>,
        }
        let detail = serde_json::from_slice::<Problem>(body).ok().and_then(|p| p.detail);
        let exit = match status.as_u16() {
            400 | 413 | 422 => Exit::Usage,
            401 | 403 => Exit::Denied,
            404 => Exit::NotFound,
            412 => Exit::Precondition,
            _ => Exit::Failure,
        };
        let message = match detail {
            Some(d) => format!("the server answered {status}: {d}"),
            None => format!("the server answered {status}"),
        };
        Failure::new(exit, message)
    }

    fn parse<T: for<'de> Deserialize<'de>>(&self, body: &[u8]) -> Result<T, Failure> {
        serde_json::from_slice(body)
            .map_err(|e| Failure::error(format!("the server's answer is not the API's shape: {e}")))
    }

    /// The value of `key` and its version and times; `None` when missing.
    async fn value(&self, key: &CredentialKey) -> Result<Option<(SecretValue, ValueData)>, Failure> {
        let (status, _, body) = self.send(Method::GET, self.url(Some(key), Some("value")), &[], None).await?;
        match status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND if self.key_missing(&body) => return Ok(None),
            _ => return Err(self.refused(status, &body)),
        }
        let mut data: Data<ValueData> = self.parse(&body)?;
        let value = match (data.data.value.take(), data.data.value_base64.take()) {
            (Some(text), None) => SecretValue::from_text(text),
            (None, Some(b64)) => {
                let b64 = Zeroizing::new(b64);
                let bytes = STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|_| Failure::error("the server's valueBase64 is not base64"))?;
                SecretValue::from_bytes(bytes)
            }
            _ => {
                return Err(Failure::error(
                    "the server's answer has not exactly one of value and valueBase64",
                ))
            }
        };
        Ok(Some((value, data.data)))
    }

    /// Whether a 404 is about the key (not the store, not the route): the
    /// problem says there is no such credential.
    fn key_missing(&self, body: &[u8]) -> bool {
        #[derive(Deserialize)]
        struct Problem {
            detail: Option<String>,
        }
        let detail = serde_json::from_slice::<Problem>(body).ok().and_then(|p| p.detail).unwrap_or_default();
        detail.starts_with("no credential '")
    }

    /// A credential: its metadata, version and times, with its value when
    /// `value` is set (then the token needs `reveal`). `None` when missing.
    pub(crate) async fn read(&self, key: &CredentialKey, value: bool) -> Result<Option<Entry>, Failure> {
        // The value and the metadata are two reads: they must see the same
        // version (a write in between is read again).
        for _ in 0..3 {
            let (status, _, body) = self.send(Method::GET, self.url(Some(key), None), &[], None).await?;
            match status {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND if self.key_missing(&body) => return Ok(None),
                _ => return Err(self.refused(status, &body)),
            }
            let info: Data<InfoData> = self.parse(&body)?;
            let info = info.data;
            let mut entry = Entry {
                key: key.as_str().to_owned(),
                store_id: self.store.clone(),
                value: None,
                text: info.value_kind == "text",
                version: info.version,
                created_at: info.created_at,
                updated_at: info.updated_at,
                expires_at: info.expires_at,
                metadata: info.metadata,
            };
            if !value {
                return Ok(Some(entry));
            }
            let Some((secret, data)) = self.value(key).await? else { return Ok(None) };
            if data.version == entry.version {
                entry.text = secret.is_text();
                entry.value = Some(secret);
                entry.updated_at = data.updated_at;
                entry.created_at = data.created_at;
                return Ok(Some(entry));
            }
        }
        Err(Failure::error(format!("'{}' kept changing while it was read; try again", key.as_str())))
    }

    /// The values of `keys`, in their order (`None` for a missing one):
    /// one *Read Credential Values* request (`POST …/credentials:batchRead`)
    /// per [`MAX_BATCH_KEYS`](credstore_core::MAX_BATCH_KEYS) keys.
    pub(crate) async fn values(&self, keys: &[CredentialKey]) -> Result<Vec<Option<SecretValue>>, Failure> {
        /// One key of the answer (no `Debug`: it holds the value).
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Found {
            found: bool,
            value: Option<String>,
            value_base64: Option<String>,
        }
        let mut values = Vec::with_capacity(keys.len());
        for batch in keys.chunks(credstore_core::MAX_BATCH_KEYS) {
            let names: Vec<&str> = batch.iter().map(CredentialKey::as_str).collect();
            let request = serde_json::to_vec(&serde_json::json!({ "keys": names }))
                .map_err(|e| Failure::error(format!("cannot encode the batch read: {e}")))?;
            let mut url = self.base.clone();
            url.set_path(&format!("{}:batchRead", self.base.path().trim_end_matches('/')));
            let (status, _, body) = self.send(Method::POST, url, &[], Some(request.into())).await?;
            if status != StatusCode::OK {
                return Err(self.refused(status, &body));
            }
            let answer: Data<Vec<Found>> = self.parse(&body)?;
            if answer.data.len() != batch.len() {
                return Err(Failure::error("the server's batch read answered another number of keys"));
            }
            for found in answer.data {
                values.push(match (found.found, found.value, found.value_base64) {
                    (false, _, _) => None,
                    (true, Some(text), None) => Some(SecretValue::from_text(text)),
                    (true, None, Some(b64)) => {
                        let b64 = Zeroizing::new(b64);
                        Some(SecretValue::from_bytes(
                            STANDARD
                                .decode(b64.as_bytes())
                                .map_err(|_| Failure::error("the server's valueBase64 is not base64"))?,
                        ))
                    }
                    _ => {
                        return Err(Failure::error(
                            "the server's answer has not exactly one of value and valueBase64",
                        ))
                    }
                });
            }
        }
        Ok(values)
    }

    /// Writes `key` as `options` say.
    pub(crate) async fn write(
        &self,
        key: &CredentialKey,
        value: &SecretValue,
        metadata: &Metadata,
        options: &SetOptions,
    ) -> Result<Written, Failure> {
        let encoded;
        let (text, b64) = match value.expose_str() {
            Ok(text) => (Some(text), None),
            Err(_) => {
                encoded = Zeroizing::new(STANDARD.encode(value.expose_secret()));
                (None, Some(encoded.as_str()))
            }
        };
        let body = CreateBody {
            key: key.as_str(),
            value: text,
            value_base64: b64,
            metadata: metadata.as_map(),
            expires_at: options.expires_at.map(|t| humantime::format_rfc3339_millis(t).to_string()),
        };
        // Sized once (JSON escapes at most 6 bytes per byte): no reallocation
        // leaves a copy behind.
        let mut buf = Zeroizing::new(Vec::with_capacity(value.len() * 8 + 4096));
        serde_json::to_writer(&mut *buf, &body)
            .map_err(|e| Failure::error(format!("cannot encode the request: {e}")))?;
        let mut headers = Vec::new();
        match &options.mode {
            SetMode::Create => headers.push((IF_NONE_MATCH, HeaderValue::from_static("*"))),
            SetMode::Replace(v) => {
                let tag = HeaderValue::from_str(&format!("\"{v}\""))
                    .map_err(|_| Failure::usage("--if-version cannot be sent in a header"))?;
                headers.push((IF_MATCH, tag));
            }
            _ => {}
        }
        let (status, etag, answer) = self
            .send(Method::POST, self.url(None, None), &headers, Some(bytes::Bytes::from_owner(buf)))
            .await?;
        let created = match status {
            StatusCode::CREATED => true,
            StatusCode::OK => false,
            _ => return Err(self.refused(status, &answer)),
        };
        let data: Data<Created> = self.parse(&answer)?;
        let version = etag
            .as_deref()
            .map(|t| t.trim_matches('"').to_owned())
            .ok_or_else(|| Failure::error("the server's answer has no ETag"))?;
        Ok(Written { created, version, created_at: data.data.created_at, updated_at: None })
    }

    /// One page of keys from `cursor`.
    pub(crate) async fn list(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, Option<String>), Failure> {
        let mut url = self.url(None, None);
        {
            let mut q = url.query_pairs_mut();
            if !prefix.is_empty() {
                q.append_pair("prefix", prefix);
            }
            q.append_pair("limit", &limit.to_string());
            if let Some(c) = cursor {
                q.append_pair("cursor", c);
            }
        }
        let (status, _, body) = self.send(Method::GET, url, &[], None).await?;
        if status != StatusCode::OK {
            return Err(self.refused(status, &body));
        }
        let page: Page = self.parse(&body)?;
        Ok((page.data.into_iter().map(|k| k.key).collect(), page.next_cursor))
    }

    /// Deletes `key`; whether it existed.
    pub(crate) async fn delete(&self, key: &CredentialKey) -> Result<bool, Failure> {
        let (status, _, body) = self.send(Method::DELETE, self.url(Some(key), None), &[], None).await?;
        match status {
            StatusCode::NO_CONTENT => Ok(true),
            StatusCode::NOT_FOUND if self.key_missing(&body) => Ok(false),
            _ => Err(self.refused(status, &body)),
        }
    }
}

/// Whether `url`'s host is a loopback address (or `localhost`), where plain
/// HTTP does not leave the machine.
fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The error and its causes, `: `-separated (reqwest's own message alone
/// hides why a connection failed).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The HTTP client: rustls on `ring` with the system's roots, or only those
/// of `ca_cert`; `timeout` on each request and on connecting; no redirects.
fn client(https: bool, ca_cert: Option<&Path>, timeout: Duration) -> Result<http_client::Client, Failure> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::error(format!("TLS setup failed: {e}")))?;
    let tls = match ca_cert {
        Some(path) => {
            let roots = crate::runtime::tls::load_roots(path).map_err(Failure::error)?;
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None if !https => {
            builder.with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth()
        }
        None => {
            let verifier = rustls_platform_verifier::Verifier::new(provider)
                .map_err(|e| Failure::error(format!("cannot load the system's TLS roots: {e}")))?;
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
        }
    };
    http_client::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(http_client::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| Failure::error(format!("cannot build the HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(server: &str, allow_plaintext: bool) -> Result<Remote, Failure> {
        let endpoint = Endpoint { server, ca_cert: None, timeout: Duration::from_secs(1), allow_plaintext };
        Remote::new(&endpoint, "t", "p", "s", "token-0123456789")
    }

    #[test]
    fn plain_http_is_refused_off_loopback_unless_allowed() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:8080/prefix/",
            "https://example.com",
        ] {
            assert!(remote(ok, false).is_ok(), "{ok}");
        }
        let e = remote("http://credstore.internal:8080", false).err().unwrap();
        assert_eq!(e.exit, Exit::Usage);
        assert!(e.message.contains("unencrypted"), "{e}");
        assert!(remote("http://credstore.internal:8080", true).is_ok());
    }

    #[test]
    fn urls_with_a_user_query_or_another_scheme_are_usage_errors() {
        for bad in ["ftp://h", "not a url", "https://user:pw@h", "https://h/?q=1", "https://h/#f"] {
            assert_eq!(remote(bad, false).err().unwrap().exit, Exit::Usage, "{bad}");
        }
    }

    #[test]
    fn paths_are_built_under_the_servers_prefix() {
        let r = remote("http://127.0.0.1:1/base/", false).unwrap();
        let key = CredentialKey::new("a.b").unwrap();
        assert_eq!(
            r.url(Some(&key), Some("value")).as_str(),
            "http://127.0.0.1:1/base/manage/tenants/t/projects/p/credential-stores/s/credentials/a.b/value"
        );
    }
}
