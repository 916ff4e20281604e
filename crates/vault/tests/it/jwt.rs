//! JWT auth (the method Kubernetes service-account tokens use) against a
//! real OpenBao dev server whose JWT auth method trusts a key this test
//! generates: the JWT file is read at every login, so a rotated file is
//! used by the next login; the Vault token is renewed and replaced; an
//! expired JWT is a clear, typed refusal, and the store recovers once the
//! file holds a valid one again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use credstore_conformance::unique_name;
use credstore_core::{
    CredentialKey, CredentialStore, CredentialStoreExt, Error, Metadata, SecretValue, StoreId,
};
use credstore_test_servers::jwt::JwtSigner;
use credstore_test_servers::openbao::{JwtRole, OpenBao};
use credstore_vault::{VaultConfig, VaultStore};

use crate::util::{prefix_policy, reason_of};

/// A JWT login on the shared server: a signing key, a JWT role whose
/// policy covers `secret/` under `prefix` only, and a file for the JWT
/// under the test target's scratch folder.
struct JwtLogin {
    bao: &'static OpenBao,
    signer: JwtSigner,
    prefix: String,
    role: JwtRole,
    file: PathBuf,
}

impl JwtLogin {
    /// `None` without a server. Tokens live `ttl`, `max_ttl` at most.
    fn setup(name: &str, ttl: &str, max_ttl: &str) -> Option<Self> {
        let bao = OpenBao::shared()?;
        let signer = JwtSigner::generate();
        let prefix = unique_name(name);
        let role = tokio::task::block_in_place(|| {
            let policy = prefix_policy(bao, &prefix);
            bao.enable_jwt(&unique_name("jwt"), "credstore", &policy, &signer.public_key_pem(), ttl, max_ttl)
        });
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(unique_name("jwt"));
        std::fs::create_dir_all(&dir).unwrap();
        Some(Self { bao, signer, prefix, role, file: dir.join("token") })
    }

    /// A JWT for `subject`, for the role's audience, that expires at `expires`.
    fn token(&self, subject: &str, expires: SystemTime) -> String {
        self.signer.token(subject, &self.role.audience, expires)
    }

    /// Writes `jwt` as the kubelet does: a new file renamed over the old one.
    fn rotate(&self, jwt: &str) {
        let next = self.file.with_extension("next");
        std::fs::write(&next, format!("{jwt}\n")).unwrap();
        std::fs::rename(&next, &self.file).unwrap();
    }

    /// The configuration of a store that logs in with the role and the
    /// file, at `address`.
    fn config(&self, address: impl Into<String>) -> VaultConfig {
        VaultConfig::new(address)
            .jwt(&self.role.role, &self.file)
            .jwt_mount(&self.role.mount)
            .prefix(&self.prefix)
    }

    /// A store that logs in with the role and the file, on the server.
    fn store(&self) -> VaultStore {
        let config = self.config(self.bao.address()).timeout(Duration::from_secs(10));
        VaultStore::new(StoreId::new("vault-jwt").unwrap(), config).unwrap()
    }

    /// Removes the JWT file and its folder.
    fn remove_file(&self) {
        std::fs::remove_dir_all(self.file.parent().unwrap()).unwrap();
    }
}

fn in_ten_minutes() -> SystemTime {
    SystemTime::now() + Duration::from_secs(600)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jwt_file_is_read_at_every_login() {
    let Some(jwt) = JwtLogin::setup("jwt-rotate", "1h", "2h") else { return };
    jwt.rotate(&jwt.token("pod-a", in_ten_minutes()));
    let store = jwt.store();
    assert_eq!(store.auth_stats().logins, 0, "no login before the first call");
    let k = CredentialKey::new("k").unwrap();
    store.set(&k, &SecretValue::from("v1"), &Metadata::new()).await.unwrap();
    assert_eq!(store.auth_stats().logins, 1);

    // The file now holds no valid JWT, and the token is revoked: the login
    // the next call makes reads the file again, and is refused.
    jwt.rotate("not-a-jwt");
    tokio::task::block_in_place(|| {
        jwt.bao.cli(["token", "revoke", "-mode=path", &format!("auth/{}/login", jwt.role.mount)]).unwrap()
    });
    let reason = reason_of!(store.get(&k).await.unwrap_err(), PermissionDenied);
    assert!(reason.contains(&format!("JWT login at auth/{} rejected", jwt.role.mount)), "{reason}");
    assert!(!reason.contains("not-a-jwt"), "the JWT is never shown: {reason}");

    // Rotated to a valid JWT: the next call logs in with it, same store.
    jwt.rotate(&jwt.token("pod-a", in_ten_minutes()));
    assert_eq!(store.get(&k).await.unwrap().unwrap().value.expose_str().unwrap(), "v1");
    assert_eq!(store.auth_stats().logins, 2);
    assert!(store.check_availability().await.available);
    jwt.remove_file();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_tokens_are_renewed_and_replaced_with_a_rotating_file() {
    // Tokens that live 2 seconds, 4 at most: renewals and fresh logins
    // happen while the loop runs.
    let Some(jwt) = JwtLogin::setup("jwt-renew", "2s", "4s") else { return };
    jwt.rotate(&jwt.token("pod-b", SystemTime::now() + Duration::from_secs(3)));
    let store = jwt.store();
    let k = CredentialKey::new("heartbeat").unwrap();
    let started = Instant::now();
    let mut n = 0u32;
    while started.elapsed() < Duration::from_secs(7) {
        n += 1;
        // Each JWT lives 3 seconds: a login that used a JWT read earlier
        // than its file's last rotation would be refused.
        jwt.rotate(&jwt.token("pod-b", SystemTime::now() + Duration::from_secs(3)));
        let value = SecretValue::new(format!("beat-{n}"));
        store.set(&k, &value, &Metadata::new()).await.unwrap_or_else(|e| panic!("beat {n}: {e}"));
        let got = store.get(&k).await.unwrap_or_else(|e| panic!("beat {n}: {e}")).expect("present");
        assert!(got.value == value);
        // The point of this loop is time passing.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let stats = store.auth_stats();
    eprintln!("JWT over {:?}: {stats:?}", started.elapsed());
    assert!(stats.renewals >= 1, "the token was never renewed: {stats:?}");
    assert!(stats.logins >= 2, "no fresh login after the max TTL: {stats:?}");
    jwt.remove_file();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_jwt_is_a_clear_refusal_and_the_store_recovers() {
    let Some(jwt) = JwtLogin::setup("jwt-expired", "1h", "2h") else { return };
    let expired = jwt.token("pod-c", SystemTime::now() - Duration::from_secs(120));
    jwt.rotate(&expired);
    let store = jwt.store();
    let k = CredentialKey::new("k").unwrap();

    let err = store.set(&k, &SecretValue::from("v"), &Metadata::new()).await.unwrap_err();
    assert!(!err.is_retriable(), "{err:?}");
    let shown = format!("{err} {err:?} {err:#}");
    assert!(!shown.contains(&expired), "the JWT is never shown: {shown}");
    let reason = reason_of!(err, PermissionDenied);
    eprintln!("expired JWT: {reason}");
    assert!(reason.contains(&format!("JWT login at auth/{} rejected", jwt.role.mount)), "{reason}");
    assert!(reason.contains(&format!("the JWT in {} expired 1", jwt.file.display())), "{reason}");
    assert_eq!(store.auth_stats().logins, 0);
    let a = store.check_availability().await;
    assert!(!a.available);
    assert!(a.reason.as_deref().unwrap().contains("expired"), "{:?}", a.reason);

    // A file that is gone: a configuration error naming it.
    std::fs::remove_file(&jwt.file).unwrap();
    let err = store.get(&k).await.unwrap_err();
    assert!(
        matches!(&err, Error::Config { reason, .. } if reason.contains("cannot read the JWT file")
            && reason.contains(&jwt.file.display().to_string())),
        "{err:?}"
    );

    // A valid JWT in the file again: the same store works, no rebuild.
    jwt.rotate(&jwt.token("pod-c", in_ten_minutes()));
    store.set(&k, &SecretValue::from("v"), &Metadata::new()).await.unwrap();
    assert_eq!(store.auth_stats().logins, 1);
    jwt.remove_file();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_login_is_one_request_before_the_first_call() {
    let Some(jwt) = JwtLogin::setup("jwt-count", "1h", "2h") else { return };
    jwt.rotate(&jwt.token("pod-d", in_ten_minutes()));
    let proxy = credstore_test_servers::proxy::CountingProxy::start(std::net::SocketAddr::from((
        [127, 0, 0, 1],
        jwt.bao.port(),
    )))
    .unwrap();
    let store = VaultStore::new(StoreId::new("vault-jwt-count").unwrap(), jwt.config(proxy.url())).unwrap();
    assert_eq!(proxy.count(), 0, "building the store sends nothing");
    assert!(!store.has(&CredentialKey::new("k").unwrap()).await.unwrap());
    let requests = proxy.take();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert!(
        requests[0].starts_with("POST /v1/")
            && requests[0].ends_with(&format!("auth/{}/login", jwt.role.mount))
    );
    assert_eq!(requests[1], "GET /v1/sys/internal/ui/mounts/secret", "the one-time mount check");
    assert_eq!(requests[2], format!("GET /v1/secret/data/{}/k?", jwt.prefix));
    assert!(!store.has(&CredentialKey::new("k").unwrap()).await.unwrap());
    assert_eq!(proxy.take().len(), 1, "the token is kept: no second login");
    jwt.remove_file();
}
