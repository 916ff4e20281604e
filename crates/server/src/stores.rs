//! Opening the configured stores.
//!
//! Stores open concurrently. A store that fails to open (a wrong master
//! key, an unreadable file) does not stop the server: it is served as
//! unavailable, with the failure as its `reason`, and the error is logged.
//!
//! A store configured with `cache = { .. }` is served through a
//! [`CacheLayer`](credstore_layers::CacheLayer) over its timeout layer (see
//! [`Stores::with_caches`]); the CLI's one-off commands
//! ([`open_one`]) read the stores directly, without a cache.

use std::path::Path;
use std::sync::Arc;

use credstore_core::layers::TimeoutLayer;
use credstore_core::{CredentialStore, StoreExt, StoreId, StoreKind};
use credstore_memory::MemoryStore;
use credstore_sqlite::{MasterKey, SqliteConfig, SqliteStore};

use crate::config::{MasterKeySource, Settings, StoreSpec};
use crate::state::{FailedStore, Stores};

/// The kind a spec will have once opened.
pub fn kind_of(spec: &StoreSpec) -> StoreKind {
    match spec {
        StoreSpec::Memory { .. } => StoreKind::Memory,
        StoreSpec::Sqlite { .. } => StoreKind::EncryptedSqlite,
        StoreSpec::Vault { .. } => StoreKind::Vault,
        StoreSpec::Aws { .. } => StoreKind::AwsSecretsManager,
        StoreSpec::Keychain { .. } => StoreKind::Keychain,
    }
}

/// Opens one store, on its root namespace.
///
/// # Errors
/// Why the store cannot be opened, in plain words (no secret).
pub async fn open_store(spec: &StoreSpec) -> Result<Arc<dyn CredentialStore>, String> {
    match spec {
        StoreSpec::Memory { id } => Ok(Arc::new(MemoryStore::new(id.clone()))),
        StoreSpec::Sqlite { id, path, master_key } => Ok(Arc::new(open_sqlite(id, path, master_key).await?)),
        #[cfg(feature = "vault")]
        StoreSpec::Vault { id, settings } => {
            let store = credstore_vault::VaultStore::new(id.clone(), vault_config(settings)?)
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(store))
        }
        #[cfg(not(feature = "vault"))]
        StoreSpec::Vault { .. } => Err("this credstore was built without the `vault` feature".into()),
        #[cfg(feature = "aws")]
        StoreSpec::Aws { id, settings } => {
            let store = credstore_aws::AwsStore::from_env(id.clone(), aws_config(settings))
                .await
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(store))
        }
        #[cfg(not(feature = "aws"))]
        StoreSpec::Aws { .. } => Err("this credstore was built without the `aws` feature".into()),
        #[cfg(feature = "keychain")]
        StoreSpec::Keychain { id, settings } => {
            let store = credstore_keychain::KeychainStore::new(id.clone(), settings.to_config()?)
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(store))
        }
        #[cfg(not(feature = "keychain"))]
        StoreSpec::Keychain { .. } => Err("this credstore was built without the `keychain` feature".into()),
    }
}

/// Reads a secret from a file (trimmed) or an environment variable.
#[cfg_attr(not(feature = "vault"), allow(dead_code))]
fn read_secret(
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Option<credstore_core::SecretValue>, String> {
    use credstore_core::SecretValue;
    if let Some(path) = file {
        let text = zeroize::Zeroizing::new(
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?,
        );
        return Ok(Some(SecretValue::from(text.trim())));
    }
    if let Some(var) = env {
        return match std::env::var(var) {
            Ok(v) => Ok(Some(SecretValue::from_text(v))),
            Err(_) => Err(format!("the environment variable {var} is not set")),
        };
    }
    Ok(None)
}

#[cfg(feature = "vault")]
fn vault_config(s: &crate::config::VaultSettings) -> Result<credstore_vault::VaultConfig, String> {
    let mut c = credstore_vault::VaultConfig::new(s.address.clone());
    if let Some(m) = &s.mount {
        c = c.mount(m);
    }
    if let Some(p) = &s.prefix {
        c = c.prefix(p);
    }
    if let Some(n) = &s.vault_namespace {
        c = c.namespace(n.clone());
    }
    if let Some(ca) = &s.ca_cert {
        c = c.ca_cert(ca.clone());
    }
    if let Some(ms) = s.timeout_ms {
        c = c.timeout(std::time::Duration::from_millis(ms));
    }
    if let Some(role) = &s.jwt_role {
        let file = s.jwt_file.clone().unwrap_or_else(|| credstore_vault::DEFAULT_JWT_FILE.into());
        c = c.jwt(role.clone(), file);
        if let Some(mount) = &s.jwt_mount {
            c = c.jwt_mount(mount);
        }
        return Ok(c);
    }
    if let Some(role_id) = &s.approle_role_id {
        let secret_id = read_secret(s.approle_secret_id_file.as_deref(), s.approle_secret_id_env.as_deref())?
            .ok_or("AppRole needs a secret id")?;
        let mount = s.approle_mount.clone().unwrap_or_else(|| "approle".to_owned());
        return Ok(c.approle(mount, role_id.clone(), secret_id));
    }
    match read_secret(s.token_file.as_deref(), s.token_env.as_deref())? {
        Some(token) => c = c.token(token),
        None => {
            if let Ok(token) = std::env::var("VAULT_TOKEN") {
                c = c.token(credstore_core::SecretValue::from_text(token));
            }
        }
    }
    Ok(c)
}

#[cfg(feature = "aws")]
fn aws_config(s: &crate::config::AwsSettings) -> credstore_aws::AwsConfig {
    let mut c = credstore_aws::AwsConfig::new();
    if let Some(r) = &s.region {
        c = c.region(r);
    }
    if let Some(e) = &s.endpoint {
        c = c.endpoint_url(e);
    }
    if let Some(p) = &s.prefix {
        c = c.prefix(p);
    }
    if let Some(k) = &s.kms_key_id {
        c = c.kms_key_id(k);
    }
    if let Some(ms) = s.timeout_ms {
        c = c.timeout(std::time::Duration::from_millis(ms));
    }
    if let Some(n) = s.max_attempts {
        c = c.max_attempts(n);
    }
    c
}

fn load_master_key(source: &MasterKeySource) -> Result<MasterKey, String> {
    match source {
        MasterKeySource::File(path) => MasterKey::load_or_create_file(path).map_err(|e| e.to_string()),
        MasterKeySource::Env { var, value } => value
            .expose_str()
            .ok()
            .and_then(|text| MasterKey::from_base64(text).ok())
            .ok_or_else(|| format!("{var} is not the base64 of a 32-byte key")),
    }
}

async fn open_sqlite(id: &StoreId, path: &Path, master_key: &MasterKeySource) -> Result<SqliteStore, String> {
    let key = load_master_key(master_key)?;
    let config = SqliteConfig::new(path).master_key(key);
    SqliteStore::open(id.clone(), config).await.map_err(|e| e.to_string())
}

/// Opens one store, or stands in a [`FailedStore`] that says why.
pub async fn open_or_failed(spec: &StoreSpec) -> Arc<dyn CredentialStore> {
    match open_store(spec).await {
        Ok(store) => {
            tracing::info!(store = %spec.id(), kind = %store.kind(), "store opened");
            store
        }
        Err(reason) => {
            tracing::error!(store = %spec.id(), %reason, "cannot open store; serving it as unavailable");
            FailedStore::arc(spec.id().clone(), kind_of(spec), reason)
        }
    }
}

/// Opens every store of `settings`, concurrently, each bounded by
/// `settings.store_timeout`, and cached where `settings.caches` says so (see
/// [`Stores::with_caches`]).
///
/// # Errors
/// Only a duplicate id, which [`Settings`] already rules out.
pub async fn open_all(settings: &Settings) -> credstore_core::Result<Stores> {
    let stores = futures::future::join_all(settings.stores.iter().map(open_or_failed)).await;
    let stores = stores
        .into_iter()
        .map(|store| {
            let cache = settings.cache(store.id().as_str());
            (store, cache)
        })
        .collect();
    Stores::with_caches(stores, settings.store_timeout)
}

/// Opens the store `id` of `settings` for a CLI command, on its root
/// namespace, every call bounded by `settings.store_timeout`. A configured
/// cache is not applied: a one-off command reads the store itself.
///
/// # Errors
/// No such store, or it cannot be opened.
pub async fn open_one(settings: &Settings, id: &str) -> Result<Arc<dyn CredentialStore>, String> {
    let spec = settings.store(id).ok_or_else(|| {
        let ids: Vec<String> = settings.stores.iter().map(|s| s.id().to_string()).collect();
        format!("no store with id '{id}'; the stores are: {}", ids.join(", "))
    })?;
    let store = open_store(spec).await?;
    Ok(store.with_layer(TimeoutLayer::new(settings.store_timeout)))
}

/// Creates the data directory (owner-only, `0700`) when it does not exist.
///
/// # Errors
/// It cannot be created.
pub fn prepare_data_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Where `rotate-key` gets the new master key.
pub enum NewKey {
    /// A file holding its base64.
    File(std::path::PathBuf),
    /// Its base64, read from stdin.
    Text(zeroize::Zeroizing<String>),
    /// Generate one; the store's key must live in a key file, which is replaced.
    Generate,
}

/// Rotates the master key of the encrypted SQLite store `id`, and returns
/// a line saying what was done.
///
/// # Behavior
/// With [`NewKey::Generate`], the store's key must live in a key file: the
/// new key is first written beside it (`<file>.new`, owner-only), the
/// database is re-sealed, then the new file replaces the old one. A crash
/// between the last two steps leaves the new key in `<file>.new`.
///
/// Servers that have the database open must be restarted afterwards: they
/// still hold the old key and answer 503 until then.
///
/// # Errors
/// No such store, not encrypted SQLite, a bad new key, or a failed rotation.
pub async fn rotate_key(settings: &Settings, id: &str, new_key: NewKey) -> Result<String, String> {
    let Some(StoreSpec::Sqlite { id: store_id, path, master_key }) = settings.store(id) else {
        return Err(match settings.store(id) {
            Some(_) => format!("store '{id}' is not an encrypted SQLite store"),
            None => format!("no store with id '{id}'"),
        });
    };
    let store = open_sqlite(store_id, path, master_key).await?;
    let (key, staged) = match new_key {
        NewKey::File(p) => (MasterKey::from_file(&p).map_err(|e| e.to_string())?, None),
        NewKey::Text(text) => (
            MasterKey::from_base64(&text)
                .map_err(|_| "stdin does not hold the base64 of a 32-byte key".to_owned())?,
            None,
        ),
        NewKey::Generate => {
            let MasterKeySource::File(key_file) = master_key else {
                return Err(format!(
                    "the master key of '{id}' comes from an environment variable; give the new key with \
                     --new-key-file or --new-key-stdin, and update the variable afterwards"
                ));
            };
            let staged = key_file.with_extension("key.new");
            let _ = std::fs::remove_file(&staged);
            let key = MasterKey::load_or_create_file(&staged).map_err(|e| e.to_string())?;
            (key, Some((staged, key_file.clone())))
        }
    };
    let report = match store.rotate_key(key).await {
        Ok(r) => r,
        Err(e) => {
            if let Some((staged, _)) = &staged {
                let _ = std::fs::remove_file(staged);
            }
            return Err(format!("rotation failed, nothing changed: {e}"));
        }
    };
    let mut line = format!(
        "rotated the master key of '{id}': {} credentials re-sealed in {} ms, key version {}",
        report.rows,
        report.elapsed.as_millis(),
        report.key_version
    );
    if let Some((staged, key_file)) = staged {
        std::fs::rename(&staged, &key_file).map_err(|e| {
            format!(
                "the database now uses the key in {}, but it could not replace {}: {e}; move it there by hand",
                staged.display(),
                key_file.display()
            )
        })?;
        line.push_str(&format!("; the new key is in {}", key_file.display()));
    } else {
        line.push_str("; store the new key where the old one was");
    }
    line.push_str(". Restart servers that have this store open.");
    Ok(line)
}
