//! Bearer tokens: hashing, scopes, and the admin token's first-run bootstrap.
//!
//! Only SHA-256 hashes of tokens are kept, in memory and on disk. A presented
//! token is hashed and compared in constant time ([`subtle`]) with every
//! known hash. A token holds [`Grant`]s, each naming tenants, projects,
//! stores and actions: `view` (list stores, list keys, read metadata and
//! versions), `edit` (create, delete and restore credentials), `purge`
//! (destroy a version or a key with its history for good), `metrics` (read
//! `/metrics`; the admin token has these four) and `reveal` (read
//! credential values, current or earlier),
//! which no token has unless the configuration names it: a `[[tokens]]`
//! entry's `actions`, or, for the admin token,
//! [`TokenEntry::admin_with_reveal`]. A request is allowed when one grant
//! matches its tenant, its project, its store and its action, all four.
//!
//! Session cookies (the Credential Stores API's `cookieAuth`): [`sessions`]. A
//! session is signed in with a known token and stands for it, grants and
//! audit name included.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use axum::http::{header, HeaderMap};
use credstore_core::SecretValue;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub mod failures;
pub mod sessions;

/// The file, inside the data directory, that keeps the generated admin
/// token's SHA-256 (hex).
pub const ADMIN_TOKEN_HASH_FILE: &str = "admin-token.sha256";

/// The shortest token accepted from `CREDSTORE_ADMIN_TOKEN`, in bytes.
pub const MIN_TOKEN_LEN: usize = 16;

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The SHA-256 of a token. `Debug` shows only the first 8 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Hashes `token`.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Parses 64 hex digits.
    ///
    /// # Errors
    /// A message when `s` is not 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("a token hash is 64 hex digits (the SHA-256 of the token)".into());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(Self(out))
    }

    /// The hash as 64 lower-case hex digits.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({}…)", &self.to_hex()[..8])
    }
}

/// What a request does: `view` reads (list stores, list keys, read
/// metadata and versions), `edit` writes (create, delete, restore), `purge`
/// destroys history for good, `metrics` reads `/metrics` (no credential
/// access at all: the action for a Prometheus scraper), `reveal` reads
/// credential values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// List stores, list keys, read metadata, list a key's versions and
    /// read a version's metadata.
    View,
    /// Create, delete and restore credentials. A delete of a store that
    /// keeps deleted keys recoverable can be undone; nothing `edit` does
    /// destroys a kept version.
    Edit,
    /// Destroy one kept version, or a key with its whole history, so that
    /// no copy stays readable (`DELETE …/versions/{version}`, `DELETE
    /// …/versions`): what cannot be undone, kept apart from `edit` so that
    /// a token that rotates credentials cannot also erase the history that
    /// undoes its mistakes.
    Purge,
    /// Read `/metrics` (needs no tenant or project scope).
    Metrics,
    /// Read credential values (`GET …/credentials/{key}/value`). No token
    /// has it unless the configuration grants it, the admin token included.
    Reveal,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::View => "view",
            Action::Edit => "edit",
            Action::Purge => "purge",
            Action::Metrics => "metrics",
            Action::Reveal => "reveal",
        })
    }
}

/// A set of tenant, project or store ids a grant names; `["*"]` in TOML is all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every id.
    All,
    /// Only these ids.
    Only(BTreeSet<String>),
}

impl Scope {
    /// Builds a scope from a TOML list: `"*"` anywhere means all.
    pub fn from_list(items: &[String]) -> Self {
        if items.iter().any(|s| s == "*") {
            Scope::All
        } else {
            Scope::Only(items.iter().cloned().collect())
        }
    }

    /// Whether `id` is in scope.
    pub fn allows(&self, id: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(set) => set.contains(id),
        }
    }
}

/// What one grant of a token allows: its actions, on its stores, in its
/// projects of its tenants. The four are a cross product *within* the
/// grant; a token that should reach `a/web` and `b/api` but not `a/api`
/// holds two grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The tenants.
    pub tenants: Scope,
    /// The projects, in each of the tenants.
    pub projects: Scope,
    /// The stores, in each of the projects.
    pub stores: Scope,
    /// The actions.
    pub actions: BTreeSet<Action>,
}

impl Grant {
    /// A grant of `actions` on every tenant, project and store.
    pub fn everything(actions: impl IntoIterator<Item = Action>) -> Self {
        Self {
            tenants: Scope::All,
            projects: Scope::All,
            stores: Scope::All,
            actions: actions.into_iter().collect(),
        }
    }

    /// Whether it allows `action` in `tenant`/`project`, on some store.
    fn covers(&self, tenant: &str, project: &str, action: Action) -> bool {
        self.actions.contains(&action) && self.tenants.allows(tenant) && self.projects.allows(project)
    }
}

/// One known token: a name for logs, its hash, and its grants.
#[derive(Debug, Clone)]
pub struct TokenEntry {
    /// A name for logs (never the token).
    pub name: String,
    /// The token's SHA-256.
    pub hash: TokenHash,
    /// What it may do: a request is allowed by one grant that matches its
    /// tenant, project, store and action.
    pub grants: Vec<Grant>,
}

impl TokenEntry {
    /// The admin token: every tenant and project, the actions `view`,
    /// `edit`, `purge` and `metrics`, and not `reveal` (see
    /// [`TokenEntry::admin_with_reveal`]).
    pub fn admin(hash: TokenHash) -> Self {
        Self::admin_with_reveal(hash, false)
    }

    /// The admin token, also allowed `reveal` (to read credential values)
    /// when `reveal` is true: the configuration's explicit grant, never a
    /// default.
    pub fn admin_with_reveal(hash: TokenHash, reveal: bool) -> Self {
        let mut actions: BTreeSet<Action> =
            [Action::View, Action::Edit, Action::Purge, Action::Metrics].into();
        if reveal {
            actions.insert(Action::Reveal);
        }
        Self { name: "admin".into(), hash, grants: vec![Grant::everything(actions)] }
    }

    /// Checks that this token may read `/metrics` (the `metrics` action;
    /// tenants and projects do not matter).
    ///
    /// # Errors
    /// 403 when it may not.
    pub fn check_metrics(&self) -> Result<(), Refusal> {
        if self.grants.iter().any(|g| g.actions.contains(&Action::Metrics)) {
            Ok(())
        } else {
            Err(Refusal::Forbidden("this token may not read metrics; it needs the action 'metrics'".into()))
        }
    }

    /// Whether this token may take `action` in `tenant`/`project`, on the
    /// store `store` when one is named (on some store otherwise).
    pub fn allows(&self, tenant: &str, project: &str, store: Option<&str>, action: Action) -> bool {
        match self.check(tenant, project, action) {
            Ok(stores) => store.is_none_or(|id| stores.allows(id)),
            Err(_) => false,
        }
    }

    /// Checks that this token may take `action` in `tenant`/`project`, and
    /// returns the stores it may take it on there: the union of the stores
    /// of every grant that matches (checking one store is then a set
    /// lookup, and [`Scope::All`] needs none).
    ///
    /// # Errors
    /// 403 naming what no grant allows: the tenant, else the project in
    /// that tenant, else the action there.
    pub fn check(&self, tenant: &str, project: &str, action: Action) -> Result<Scope, Refusal> {
        let mut stores: Option<Scope> = None;
        for grant in self.grants.iter().filter(|g| g.covers(tenant, project, action)) {
            match (&grant.stores, &mut stores) {
                (Scope::All, _) => {
                    stores = Some(Scope::All);
                    break;
                }
                (Scope::Only(ids), Some(Scope::Only(all))) => all.extend(ids.iter().cloned()),
                (Scope::Only(ids), slot) => *slot = Some(Scope::Only(ids.clone())),
            }
        }
        if let Some(stores) = stores {
            tracing::debug!(token = %self.name, %action, "authorized");
            return Ok(stores);
        }
        if !self.grants.iter().any(|g| g.tenants.allows(tenant)) {
            return Err(Refusal::Forbidden(format!("this token may not access tenant '{tenant}'")));
        }
        if !self.grants.iter().any(|g| g.tenants.allows(tenant) && g.projects.allows(project)) {
            return Err(Refusal::Forbidden(format!(
                "this token may not access project '{project}' of tenant '{tenant}'"
            )));
        }
        Err(match action {
            Action::Metrics => Refusal::Forbidden("this token may not read metrics".into()),
            Action::Reveal => Refusal::Forbidden(
                "this token may not read credential values: that needs the action 'reveal', which no token \
                 has unless the configuration grants it (the admin token included)"
                    .into(),
            ),
            Action::Purge => Refusal::Forbidden(
                "this token may not purge credentials in this project: destroying a version or a key's \
                 history needs the action 'purge' ('edit' is not enough)"
                    .into(),
            ),
            _ => Refusal::Forbidden(format!("this token may not {action} credentials in this project")),
        })
    }

    /// The 403 of a store `id` that none of the token's grants for the
    /// request's tenant, project and action names.
    pub fn store_forbidden(id: &str, action: Action) -> Refusal {
        Refusal::Forbidden(format!("this token may not {action} in the store '{id}'"))
    }
}

/// Why a request's token is refused; the server answers it as 401 or 403.
/// Its text never holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No known bearer token (401, with a `WWW-Authenticate: Bearer`
    /// challenge).
    #[error("{detail}")]
    Unauthenticated {
        /// What was wrong with the `Authorization` header.
        detail: &'static str,
        /// A token was sent but is not known (the challenge then says
        /// `error="invalid_token"`).
        invalid_token: bool,
    },
    /// The token is known but may not do this here (403).
    #[error("{0}")]
    Forbidden(String),
}

/// Checks bearer tokens against the known hashes.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    tokens: Vec<TokenEntry>,
}

impl Authenticator {
    /// An authenticator that knows `tokens`.
    pub fn new(tokens: Vec<TokenEntry>) -> Self {
        Self { tokens }
    }

    /// The known tokens.
    pub fn tokens(&self) -> &[TokenEntry] {
        &self.tokens
    }

    /// Finds the token of a request's `Authorization: Bearer` header.
    ///
    /// # Errors
    /// 401 with a `WWW-Authenticate` challenge when the header is missing, is
    /// not a bearer token, or the token is unknown.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<&TokenEntry, Refusal> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            let detail = if headers.contains_key(header::COOKIE) {
                "no valid session cookie; sign in again at /console/sign-in, or send the header \
                 Authorization: Bearer <token>"
            } else {
                "missing bearer token; send the header Authorization: Bearer <token>"
            };
            return Err(Refusal::Unauthenticated { detail, invalid_token: false });
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|t| !t.is_empty())
            .ok_or(Refusal::Unauthenticated {
                detail: "the Authorization header is not of the form 'Bearer <token>'",
                invalid_token: false,
            })?;
        self.find(token)
            .ok_or(Refusal::Unauthenticated { detail: "the bearer token is not valid", invalid_token: true })
    }

    /// The known token `token`, compared in constant time with every hash
    /// (the time taken does not depend on which matched).
    pub fn find(&self, token: &str) -> Option<&TokenEntry> {
        self.by_hash(&TokenHash::of(token))
    }

    /// The known token whose hash is `hash` (constant time, as
    /// [`Authenticator::find`]).
    pub fn by_hash(&self, hash: &TokenHash) -> Option<&TokenEntry> {
        let mut found = None;
        for entry in &self.tokens {
            if entry.hash.ct_eq(hash) && found.is_none() {
                found = Some(entry);
            }
        }
        found
    }

    /// Authenticates the request and checks that its token may take
    /// `action` in `tenant`/`project` (on some store).
    ///
    /// # Errors
    /// 401 as for [`Authenticator::authenticate`]; 403 as for [`TokenEntry::check`].
    pub fn authorize(
        &self,
        headers: &HeaderMap,
        tenant: &str,
        project: &str,
        action: Action,
    ) -> Result<&TokenEntry, Refusal> {
        let token = self.authenticate(headers)?;
        token.check(tenant, project, action)?;
        Ok(token)
    }
}

/// Generates a new random token: `cst_` and 64 hex digits (256 bits).
///
/// # Errors
/// When the operating system's random source fails.
pub fn generate_token() -> std::io::Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut *bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(Zeroizing::new(format!("cst_{}", hex(&*bytes))))
}

/// Where the admin token came from, as decided by [`bootstrap_admin_token`].
///
/// `Debug` never shows a generated token.
pub enum AdminToken {
    /// From `CREDSTORE_ADMIN_TOKEN`; nothing is written to disk.
    FromEnv(TokenHash),
    /// Its hash was found in the data directory (an earlier run generated it).
    Stored(TokenHash, PathBuf),
    /// Generated now: the token is to be printed once; its hash was written to the path.
    Generated(TokenHash, Zeroizing<String>, PathBuf),
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminToken::FromEnv(h) => f.debug_tuple("FromEnv").field(h).finish(),
            AdminToken::Stored(h, path) => f.debug_tuple("Stored").field(h).field(path).finish(),
            AdminToken::Generated(h, _, path) => {
                f.debug_tuple("Generated").field(h).field(&"[REDACTED]").field(path).finish()
            }
        }
    }
}

impl AdminToken {
    /// The token's hash.
    pub fn hash(&self) -> TokenHash {
        match self {
            AdminToken::FromEnv(h) | AdminToken::Stored(h, _) | AdminToken::Generated(h, _, _) => *h,
        }
    }
}

/// Decides the admin token: `from_env` when set; otherwise the hash kept in
/// `data_dir/admin-token.sha256`; otherwise a new token whose hash is
/// written there (owner-only), returned for printing once.
///
/// # Errors
/// A token from the environment shorter than [`MIN_TOKEN_LEN`]; an
/// unreadable or malformed hash file; a failed write.
pub fn bootstrap_admin_token(from_env: Option<&SecretValue>, data_dir: &Path) -> Result<AdminToken, String> {
    if let Some(token) = from_env {
        // Environment variables reach the server as text.
        let token = token.expose_str().map_err(|_| "CREDSTORE_ADMIN_TOKEN must be text".to_owned())?.trim();
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!("CREDSTORE_ADMIN_TOKEN must be at least {MIN_TOKEN_LEN} bytes long"));
        }
        return Ok(AdminToken::FromEnv(TokenHash::of(token)));
    }
    let path = data_dir.join(ADMIN_TOKEN_HASH_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let hash = TokenHash::from_hex(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            return Ok(AdminToken::Stored(hash, path));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let token = generate_token().map_err(|e| format!("cannot generate a token: {e}"))?;
    let hash = TokenHash::of(&token);
    write_owner_only(&path, format!("{}\n", hash.to_hex()).as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(AdminToken::Generated(hash, token, path))
}

/// Creates `path` (which must not exist) readable and writable by its owner
/// only, writes `bytes` and syncs.
///
/// # Errors
/// The file exists or cannot be written.
pub fn write_owner_only(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut file = opts.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn hashes_round_trip_and_hide_in_debug() {
        let h = TokenHash::of("secret-token-123");
        assert_eq!(TokenHash::from_hex(&h.to_hex()).unwrap(), h);
        assert!(TokenHash::from_hex("abc").is_err());
        assert!(TokenHash::from_hex(&"g".repeat(64)).is_err());
        assert!(!format!("{h:?}").contains(&h.to_hex()));
        // Known vector: sha256("abc").
        assert_eq!(
            TokenHash::of("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn scopes_and_actions() {
        let viewer = TokenEntry {
            name: "viewer".into(),
            hash: TokenHash::of("viewer-token-0001"),
            grants: vec![Grant {
                tenants: Scope::from_list(&["t1".into()]),
                projects: Scope::from_list(&["*".into()]),
                stores: Scope::All,
                actions: [Action::View].into(),
            }],
        };
        let auth = Authenticator::new(vec![viewer, TokenEntry::admin(TokenHash::of("admin-token-00001"))]);
        let h = headers(Some("Bearer viewer-token-0001"));
        assert!(auth.authorize(&h, "t1", "any", Action::View).is_ok());
        assert!(matches!(auth.authorize(&h, "t2", "any", Action::View), Err(Refusal::Forbidden(_))));
        assert!(matches!(auth.authorize(&h, "t1", "any", Action::Edit), Err(Refusal::Forbidden(_))));
        let h = headers(Some("bearer admin-token-00001"));
        assert!(auth.authorize(&h, "x", "y", Action::Edit).is_ok());
        for bad in [None, Some("Bearer wrong"), Some("Basic abc"), Some("Bearer "), Some("admin-token-00001")]
        {
            let e = auth.authorize(&headers(bad), "t1", "p", Action::View).unwrap_err();
            let invalid = bad == Some("Bearer wrong");
            assert!(
                matches!(e, Refusal::Unauthenticated { invalid_token, .. } if invalid_token == invalid),
                "{bad:?}: {e:?}"
            );
        }
        let mut cookie = HeaderMap::new();
        cookie.insert(header::COOKIE, HeaderValue::from_static("better-auth.session=abc"));
        assert!(auth.authenticate(&cookie).unwrap_err().to_string().contains("no valid session cookie"));
    }

    fn only(ids: &[&str]) -> Scope {
        Scope::Only(ids.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn a_request_needs_one_grant_that_matches_all_four() {
        let token = TokenEntry {
            name: "deploy".into(),
            hash: TokenHash::of("deploy-token-0001"),
            grants: vec![
                Grant {
                    tenants: only(&["a"]),
                    projects: only(&["web"]),
                    stores: Scope::All,
                    actions: [Action::View, Action::Edit].into(),
                },
                Grant {
                    tenants: only(&["b"]),
                    projects: only(&["api"]),
                    stores: only(&["vault"]),
                    actions: [Action::View].into(),
                },
                Grant {
                    tenants: only(&["b"]),
                    projects: only(&["api"]),
                    stores: only(&["sqlite"]),
                    actions: [Action::View, Action::Reveal].into(),
                },
            ],
        };
        assert!(token.allows("a", "web", Some("any-store"), Action::Edit));
        assert!(token.allows("b", "api", Some("vault"), Action::View));
        // Not the cross product of the grants.
        let e = token.check("a", "api", Action::View).unwrap_err();
        assert_eq!(e, Refusal::Forbidden("this token may not access project 'api' of tenant 'a'".into()));
        assert!(!token.allows("b", "web", None, Action::View));
        assert!(token.check("c", "web", Action::View).unwrap_err().to_string().contains("tenant 'c'"));
        // Stores: the union of the grants that allow the action.
        assert_eq!(token.check("b", "api", Action::View).unwrap(), only(&["sqlite", "vault"]));
        assert_eq!(token.check("b", "api", Action::Reveal).unwrap(), only(&["sqlite"]));
        assert!(!token.allows("b", "api", Some("vault"), Action::Reveal));
        assert!(!token.allows("b", "api", Some("memory"), Action::View));
        assert!(token.check("b", "api", Action::Edit).unwrap_err().to_string().contains("may not edit"));
        assert_eq!(token.check("a", "web", Action::View).unwrap(), Scope::All);
        assert!(token.check_metrics().is_err());
    }

    #[test]
    fn reveal_is_granted_only_explicitly() {
        let hash = TokenHash::of("admin-token-00001");
        let h = headers(Some("Bearer admin-token-00001"));
        let auth = Authenticator::new(vec![TokenEntry::admin(hash)]);
        let e = auth.authorize(&h, "t", "p", Action::Reveal).unwrap_err();
        assert!(matches!(&e, Refusal::Forbidden(detail) if detail.contains("'reveal'")), "{e:?}");
        assert_eq!(TokenEntry::admin(hash).grants, TokenEntry::admin_with_reveal(hash, false).grants);
        let auth = Authenticator::new(vec![TokenEntry::admin_with_reveal(hash, true)]);
        assert!(auth.authorize(&h, "t", "p", Action::Reveal).is_ok());
        let parsed: Vec<Action> = serde_json::from_str(r#"["view","reveal","purge"]"#).unwrap();
        assert_eq!(parsed, [Action::View, Action::Reveal, Action::Purge]);
        assert_eq!(Action::Reveal.to_string(), "reveal");
    }

    #[test]
    fn purge_is_its_own_action_which_edit_does_not_include_and_the_admin_token_has() {
        let hash = TokenHash::of("admin-token-00001");
        assert!(TokenEntry::admin(hash).allows("t", "p", Some("s"), Action::Purge));
        let editor = TokenEntry {
            name: "editor".into(),
            hash: TokenHash::of("editor-token-0001"),
            grants: vec![Grant::everything([Action::View, Action::Edit])],
        };
        let e = editor.check("t", "p", Action::Purge).unwrap_err();
        assert!(
            matches!(&e, Refusal::Forbidden(d) if d.contains("'purge'") && d.contains("'edit' is not enough")),
            "{e:?}"
        );
        assert_eq!(Action::Purge.to_string(), "purge");
    }

    #[test]
    fn bootstrap_generates_once_then_reads_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let first = bootstrap_admin_token(None, dir.path()).unwrap();
        let AdminToken::Generated(hash, token, path) = &first else { panic!("expected a generated token") };
        assert!(token.starts_with("cst_") && token.len() == 68);
        assert_eq!(TokenHash::of(token), *hash);
        assert!(!format!("{first:?}").contains(token.as_str()), "Debug shows the generated token");
        let on_disk = std::fs::read_to_string(path).unwrap();
        assert!(!on_disk.contains(token.as_str()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let second = bootstrap_admin_token(None, dir.path()).unwrap();
        assert!(matches!(second, AdminToken::Stored(h, _) if h == *hash));
        let env = SecretValue::from("from-the-environment");
        let third = bootstrap_admin_token(Some(&env), dir.path()).unwrap();
        assert!(matches!(third, AdminToken::FromEnv(h) if h == TokenHash::of("from-the-environment")));
        assert!(bootstrap_admin_token(Some(&SecretValue::from("short")), dir.path()).is_err());
    }
}
