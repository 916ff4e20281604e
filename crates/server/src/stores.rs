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
use credstore_core::{CredentialStore, StoreExt};
use credstore_sqlite::{KeySource, MasterKey, SqliteSettings};

use crate::config::{Settings, StoreSpec};
use crate::state::{FailedStore, Stores};

/// Opens one store, on its root namespace.
///
/// # Errors
/// Why the store cannot be opened, in plain words (no secret).
pub async fn open_store(spec: &StoreSpec) -> Result<Arc<dyn CredentialStore>, String> {
    spec.open().await.map_err(|e| e.to_string())
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
            FailedStore::arc(spec.id().clone(), spec.kind(), reason)
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
    let spec = settings.store(id).ok_or_else(|| format!("no store with id '{id}'"))?;
    let Some(sqlite) = spec.settings::<SqliteSettings>() else {
        return Err(format!("store '{id}' is not an encrypted SQLite store"));
    };
    let store = sqlite.clone().open(spec.id().clone(), spec.context()).await.map_err(|e| e.to_string())?;
    let (key, staged) = match new_key {
        NewKey::File(p) => (MasterKey::from_file(&p).map_err(|e| e.to_string())?, None),
        NewKey::Text(text) => (
            MasterKey::from_base64(&text)
                .map_err(|_| "stdin does not hold the base64 of a 32-byte key".to_owned())?,
            None,
        ),
        NewKey::Generate => {
            let KeySource::File(key_file) = sqlite.master_key() else {
                return Err(format!(
                    "the master key of '{id}' comes from an environment variable; give the new key with \
                     --new-key-file or --new-key-stdin, and update the variable afterwards"
                ));
            };
            let key_file = spec.context().path(key_file);
            let staged = key_file.with_extension("key.new");
            let _ = std::fs::remove_file(&staged);
            let key = MasterKey::load_or_create_file(&staged).map_err(|e| e.to_string())?;
            (key, Some((staged, key_file)))
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
