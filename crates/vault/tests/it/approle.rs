//! AppRole against a real OpenBao dev server: every conformance case that
//! applies, run with an AppRole-authenticated store whose token lives 3
//! seconds (7 at most), so renewals and fresh logins happen while the cases
//! run; a refused secret id; and a revoked token replaced by a new login.

use std::sync::Arc;
use std::time::{Duration, Instant};

use credstore_conformance::{unique_name, Needs, StoreFactory, CASES};
use credstore_core::{
    Clock, CredentialKey, CredentialStore, CredentialStoreExt, Error, Metadata, Namespace, SecretValue,
    StoreId,
};
use credstore_test_servers::free_port;
use credstore_test_servers::openbao::{AppRole, OpenBao};
use credstore_vault::{VaultConfig, VaultStore};

use crate::util::prefix_policy;

const TOKEN_TTL: &str = "3s";
const TOKEN_MAX_TTL: &str = "7s";

/// An AppRole whose policy covers `secret/` under `prefix` only.
fn approle(bao: &OpenBao, prefix: &str, ttl: &str, max_ttl: &str) -> AppRole {
    let policy = prefix_policy(bao, prefix);
    bao.enable_approle(&unique_name("approle"), "credstore", &policy, ttl, max_ttl)
}

fn config(bao: &OpenBao, role: &AppRole, prefix: &str) -> VaultConfig {
    VaultConfig::new(bao.address())
        .approle(&role.mount, &role.role_id, SecretValue::from(role.secret_id.as_str()))
        .prefix(prefix)
        .timeout(Duration::from_secs(10))
}

/// Each case's store is a namespace handle of one AppRole store, so they all
/// share its token, and the token's renewals happen across cases.
struct AppRoleFactory {
    root: VaultStore,
    role: AppRole,
    bao: &'static OpenBao,
    prefix: String,
}

#[credstore_core::async_trait]
impl StoreFactory for AppRoleFactory {
    async fn create(&self) -> Arc<dyn CredentialStore> {
        self.root.with_namespace(&Namespace::new(unique_name("case")).unwrap()).unwrap()
    }

    async fn reopen(&self, store: Arc<dyn CredentialStore>) -> Option<Arc<dyn CredentialStore>> {
        let ns = store.namespace().clone();
        drop(store);
        Some(self.root.with_namespace(&ns).unwrap())
    }

    async fn unreachable(&self) -> Option<Arc<dyn CredentialStore>> {
        let config = VaultConfig::new(format!("http://127.0.0.1:{}", free_port()))
            .approle(&self.role.mount, &self.role.role_id, SecretValue::from(self.role.secret_id.as_str()))
            .timeout(Duration::from_secs(2));
        Some(Arc::new(VaultStore::new(StoreId::new("vault-approle-down").unwrap(), config).unwrap()))
    }

    /// A store of its own (the clock is the store's, shared by its
    /// namespace handles), logging in with the same role, in a namespace
    /// of its own under the role's prefix.
    async fn create_on_clock(&self, clock: Arc<dyn Clock>) -> Option<Arc<dyn CredentialStore>> {
        let config = config(self.bao, &self.role, &self.prefix).clock(clock);
        let store = VaultStore::new(StoreId::new("vault-approle-clock").unwrap(), config).unwrap();
        Some(store.with_namespace(&Namespace::new(unique_name("clock")).unwrap()).unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_case_passes_with_an_approle_token_that_is_renewed_and_replaced() {
    let Some(bao) = OpenBao::shared() else { return };
    let prefix = unique_name("approle-cases");
    let role = tokio::task::block_in_place(|| approle(bao, &prefix, TOKEN_TTL, TOKEN_MAX_TTL));
    let root = VaultStore::new(StoreId::new("vault-approle").unwrap(), config(bao, &role, &prefix)).unwrap();
    let f = AppRoleFactory { root: root.clone(), role, bao, prefix: prefix.clone() };
    let started = Instant::now();

    let caps = root.capabilities();
    let mut ran = 0;
    for case in CASES.iter().filter(|c| c.needs.is_met(&caps)) {
        eprintln!("case {}", case.name);
        (case.run)(&f).await;
        ran += 1;
    }
    // Vault declares no change feed, no age limit on versions, and keeps
    // the history of a deleted key (recover_deleted).
    let not_vault = |needs: Needs| {
        matches!(
            needs,
            Needs::ChangeFeed
                | Needs::VersionsAndChangeFeed
                | Needs::AgeRetention
                | Needs::VersionsWithoutRecovery
        )
    };
    let applicable = CASES.iter().filter(|c| !not_vault(c.needs)).count();
    assert_eq!(ran, applicable, "every case but those of a feed, an age limit and a delete without recovery");

    // Keep working past the token's maximum TTL: every call must succeed.
    let store = root.with_namespace(&Namespace::new("long-run").unwrap()).unwrap();
    let k = CredentialKey::new("heartbeat").unwrap();
    let mut n = 0u32;
    while started.elapsed() < Duration::from_secs(10) {
        n += 1;
        let v = SecretValue::new(format!("beat-{n}"));
        store.set(&k, &v, &Metadata::new()).await.unwrap_or_else(|e| panic!("beat {n}: {e}"));
        let got = store.get(&k).await.unwrap_or_else(|e| panic!("beat {n}: {e}")).expect("present");
        assert!(got.value == v);
        assert_eq!(store.version(&k).await.unwrap(), Some(got.version));
        // The point of this loop is time passing.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(store.check_availability().await.available);
    let stats = root.auth_stats();
    eprintln!("AppRole over {:?}: {stats:?}", started.elapsed());
    assert!(stats.renewals >= 1, "the token was never renewed: {stats:?}");
    assert!(stats.logins >= 2, "no fresh login after the max TTL: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_secret_id_is_permission_denied_without_leaking_it() {
    let Some(bao) = OpenBao::shared() else { return };
    let prefix = unique_name("approle-bad");
    let role = tokio::task::block_in_place(|| approle(bao, &prefix, "1m", "10m"));
    let bad_secret = "00000000-dead-beef-0000-SECRETSECRET";
    let config = VaultConfig::new(bao.address())
        .approle(&role.mount, &role.role_id, SecretValue::from(bad_secret))
        .prefix(&prefix);
    let store = VaultStore::new(StoreId::new("vault-approle-bad").unwrap(), config).unwrap();
    let a = store.check_availability().await;
    assert!(!a.available);
    let reason = a.reason.unwrap();
    assert!(reason.contains("AppRole login") && reason.contains("rejected"), "{reason}");
    assert!(!reason.contains(bad_secret));
    let err = store.get(&CredentialKey::new("k").unwrap()).await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(!format!("{err} {err:?} {store:?}").contains(bad_secret));
    assert_eq!(store.auth_stats().logins, 0);

    // A role id that does not exist either.
    let config = VaultConfig::new(bao.address())
        .approle(&role.mount, "no-such-role-id", SecretValue::from(role.secret_id.as_str()))
        .prefix(&prefix);
    let store = VaultStore::new(StoreId::new("vault-approle-bad2").unwrap(), config).unwrap();
    let err = store.has(&CredentialKey::new("k").unwrap()).await.unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(&role.secret_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_is_replaced_by_a_new_login() {
    let Some(bao) = OpenBao::shared() else { return };
    let prefix = unique_name("approle-revoke");
    let role = tokio::task::block_in_place(|| approle(bao, &prefix, "1h", "2h"));
    let store =
        VaultStore::new(StoreId::new("vault-approle-revoke").unwrap(), config(bao, &role, &prefix)).unwrap();
    let k = CredentialKey::new("k").unwrap();
    store.set(&k, &SecretValue::from("v1"), &Metadata::new()).await.unwrap();
    assert_eq!(store.auth_stats().logins, 1);
    // Revoke every token the role's login path issued.
    tokio::task::block_in_place(|| {
        bao.cli(["token", "revoke", "-mode=path", &format!("auth/{}/login", role.mount)]).unwrap()
    });
    assert_eq!(store.get(&k).await.unwrap().unwrap().value.expose_str().unwrap(), "v1");
    assert_eq!(store.auth_stats().logins, 2, "{:?}", store.auth_stats());
}
