//! The [`CredentialStore`] trait and the types its methods take and return.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::{
    Availability, ChangeFeed, CredentialKey, ListOptions, ListPage, Metadata, Namespace, PurgeTarget, Result,
    SecretValue, SetOutcome, StoreInfo, Version, VersionListOptions, VersionPage, WriteRequest,
};

/// A stored credential, as returned by [`CredentialStore::get`].
///
/// `Debug` shows the key, metadata, version and times; the value is redacted
/// ([`SecretValue`]'s own `Debug`).
#[derive(Clone, Debug)]
pub struct Credential {
    /// The credential's key.
    pub key: CredentialKey,
    /// The secret value, text or bytes.
    pub value: SecretValue,
    /// The metadata given with the last write.
    pub metadata: Metadata,
    /// The version of the last write; changes on every write.
    pub version: Version,
    /// When the key was first set (kept when it is overwritten; reset when it
    /// is deleted and set again).
    pub created_at: SystemTime,
    /// When the key was last set: when this version was written.
    pub updated_at: SystemTime,
    /// When this version expires, if its write set a time
    /// ([`SetOptions::expires_at`](crate::SetOptions::expires_at)). `get`
    /// never returns a credential past it.
    pub expires_at: Option<SystemTime>,
}

/// The most keys one [`CredentialStore::get_many`] call reads.
pub const MAX_BATCH_KEYS: usize = 1000;

/// How many reads [`get_many_concurrently`] (the provided
/// [`CredentialStore::get_many`]) keeps in flight at once.
pub const BATCH_CONCURRENCY: usize = 16;

/// Refuses a batch larger than [`MAX_BATCH_KEYS`], before any I/O: the check
/// every [`CredentialStore::get_many`] makes first.
///
/// # Errors
/// [`Error::InvalidInput`](crate::Error::InvalidInput) on the field `keys`.
pub fn check_batch(keys: &[CredentialKey]) -> Result<()> {
    if keys.len() > MAX_BATCH_KEYS {
        return Err(crate::Error::InvalidInput {
            field: "keys".into(),
            reason: format!("{} keys in one batch; at most {MAX_BATCH_KEYS}", keys.len()),
        });
    }
    Ok(())
}

/// The provided [`CredentialStore::get_many`]: [`check_batch`], then
/// [`get`](CredentialStore::get) of each key, at most [`BATCH_CONCURRENCY`]
/// at a time, answers in the order of `keys`. Wrappers whose batch is a
/// loop of their own `get` call it with themselves.
///
/// # Errors
/// As for [`CredentialStore::get_many`]: the first failed read's error;
/// reads still in flight are dropped.
pub async fn get_many_concurrently<S>(store: &S, keys: &[CredentialKey]) -> Result<Vec<Option<Credential>>>
where
    S: CredentialStore + ?Sized,
{
    use futures::{StreamExt, TryStreamExt};
    check_batch(keys)?;
    // The reads are made (not started) first: a stream over a closure that
    // borrows each key is not `Send` enough for `async_trait`'s boxes.
    let reads: Vec<_> = keys.iter().map(|key| store.get(key)).collect();
    futures::stream::iter(reads).buffered(BATCH_CONCURRENCY).try_collect().await
}

/// A place that keeps credentials: the one trait every backend implements.
///
/// The trait is small and object safe: stores are passed around as
/// `Arc<dyn CredentialStore>`. Callers reach it through
/// [`CredentialStoreExt`](crate::CredentialStoreExt), implemented for every
/// store, which adds the write shorthands (`set`, `create`, `replace`,
/// `set_opts`) and the parts of [`info`](CredentialStore::info) (`id`,
/// `kind`, `capabilities`, `namespace`).
///
/// # Reading the signatures
/// Every method but `info` and `with_namespace` is an `async fn`, written
/// with [`async_trait`](crate::async_trait) so that the trait stays object
/// safe. Rustdoc shows what that macro expands to: a method listed as
/// `fn get<'life0, 'life1, 'async_trait>(&'life0 self, key: &'life1 CredentialKey)
/// -> Pin<Box<dyn Future<Output = Result<Option<Credential>>> + Send + 'async_trait>>`
/// is, in the source and in your code, `async fn get(&self, key: &CredentialKey)
/// -> Result<Option<Credential>>`. Call it with `.await`; implement it as that
/// `async fn`.
///
/// # Implementing a backend
/// - Write the impl under `#[async_trait]`, re-exported as
///   [`credstore_core::async_trait`](crate::async_trait), and write each
///   method as the `async fn` above.
/// - Inputs arrive validated: [`CredentialKey`], [`Namespace`],
///   [`Metadata`], [`ListOptions`] and [`Version`] can only hold valid
///   data, and [`WriteRequest`] has already been checked against the store's
///   [`Capabilities`](crate::Capabilities). A backend checks only its own
///   limits (an AWS name's length) before any I/O.
/// - Versions: every write of a key returns a version that key has never
///   had, even after a delete and a re-create (use a counter that survives
///   deletes, a timestamp with a tie-breaker, or the service's own version
///   id); otherwise a replace-if-version made before the delete could succeed
///   after it.
/// - Separation: what keeps two stores over one storage apart is the
///   backend's location settings (a file, a mount and prefix, a name
///   prefix), not the store id: two stores opened at the same location share
///   their keys. Each backend's crate docs say what its location is.
/// - Declare in [`Capabilities`](crate::Capabilities) only what the store
///   does; `credstore-conformance` checks every declaration both ways.
/// - A wrapper (a layer) forwards `info` and every method it does not
///   change, and is written under `#[deny(clippy::missing_trait_methods)]` so
///   that a provided method is never left to its default by mistake.
///
/// # History
/// A store that declares [`Capabilities::versions`](crate::Capabilities::versions)
/// keeps each key's earlier versions within its
/// [`Retention`](crate::Retention). What people need from that, and how:
/// - **Undo a bad rotation:** [`list_versions`](CredentialStore::list_versions)
///   shows the versions newest first; [`CredentialStoreExt::restore`](crate::CredentialStoreExt::restore)
///   writes an earlier one back as a new write, conditional on the version
///   current now, so a rotation racing the rollback makes it fail with
///   `PreconditionFailed` instead of being lost.
/// - **See which version was read:** every [`Credential`] carries its
///   [`version`](Credential::version); [`get_version`](CredentialStore::get_version)
///   reads any kept version by it.
/// - **Recover a deleted key:** where
///   [`Capabilities::recover_deleted`](crate::Capabilities::recover_deleted)
///   is declared, `delete` keeps the history and marks the last version
///   [`Deleted`](crate::VersionState::Deleted); restoring it with a
///   create-only condition brings the key back, within the retention.
/// - **Destroy a leaked value for real:** [`purge`](CredentialStore::purge)
///   destroys one version (rotate first, then purge the leaked one) or the
///   key with its whole history, leaving no readable copy in the store.
///   `delete` alone is not enough where deleted keys are recoverable.
///
/// # Expiry
/// Where [`Capabilities::expiry`](crate::Capabilities::expiry) is declared, a
/// write may set [`SetOptions::expires_at`](crate::SetOptions::expires_at).
/// From that instant on, by the store's [`clock`](crate::StoreInfo::clock),
/// the key reads as absent: `get` and `version` answer `None`, `has`
/// `false`, `list` skips it, and a create-only write succeeds over it. Its
/// version stays in the history as [`Expired`](crate::VersionState::Expired).
///
/// # Errors
/// Every fallible method may return [`Error::Unavailable`](crate::Error::Unavailable)
/// (retriable) when the backend cannot be reached in time,
/// [`Error::PermissionDenied`](crate::Error::PermissionDenied) when it
/// refuses the caller, and [`Error::Backend`](crate::Error::Backend) for
/// anything else. Method docs list the errors specific to them. A failed
/// call changes nothing already stored.
///
/// ```
/// use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Error, SecretValue};
///
/// async fn rotate(store: &dyn CredentialStore, new_token: String) -> credstore_core::Result<()> {
///     let key = CredentialKey::new("github-token")?;
///     let current = store.get(&key).await?.expect("provisioned");
///     // Replace only the version we read: a concurrent rotation wins or we do, never both.
///     match store.replace(&key, &SecretValue::from(new_token), &current.metadata, &current.version).await {
///         Ok(_) => Ok(()),
///         Err(Error::PreconditionFailed { .. }) => Ok(()), // someone else rotated first
///         Err(e) => Err(e),
///     }
/// }
/// ```
#[async_trait]
pub trait CredentialStore: Send + Sync + fmt::Debug {
    /// What this handle is: the store's id, kind and capabilities, and the
    /// handle's namespace. Makes no I/O.
    fn info(&self) -> &StoreInfo;

    /// A handle on the namespace `namespace` inside this handle's own: the
    /// handle on `a` asked for `b` is the handle on `a/b`. Same id, kind and
    /// capabilities; separate keys.
    ///
    /// # Behavior
    /// - Two handles on different namespaces never see each other's keys,
    ///   in `get`, `has`, `list` or `delete`; two handles on the same
    ///   namespace share them.
    /// - Makes no I/O; an empty namespace (the root) returns a handle on
    ///   this handle's own namespace.
    /// - A layer returns itself over the inner store's handle, so that
    ///   per-namespace state (a cache) never crosses namespaces.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`](crate::Error::InvalidNamespace) when the
    /// joined namespace is longer than
    /// [`MAX_NAMESPACE_LEN`](crate::MAX_NAMESPACE_LEN) or than the backend's
    /// own documented cap.
    fn with_namespace(&self, namespace: &Namespace) -> Result<Arc<dyn CredentialStore>>;

    /// Reads a credential.
    ///
    /// # Behavior
    /// - A missing key returns `Ok(None)`, not an error; so does an expired
    ///   one.
    /// - The value, metadata, version, both timestamps and the expiry time
    ///   come back exactly as the last write left them.
    ///
    /// # Errors
    /// [`Error::Integrity`](crate::Error::Integrity) when the stored data
    /// fails authentication; no value is returned then.
    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>>;

    /// Reads many credentials in one call: one answer per key, in the order
    /// of `keys`.
    ///
    /// # Behavior
    /// - Each answer is what [`get`](CredentialStore::get) of its key would
    ///   return: `None` for a missing or expired key. A key given twice is
    ///   answered twice.
    /// - At most [`MAX_BATCH_KEYS`] keys; an empty batch answers an empty
    ///   list with no I/O.
    /// - Not a snapshot unless the backend says so: a write that races with
    ///   the batch may show in some answers and not others.
    /// - The provided method ([`get_many_concurrently`]) runs up to
    ///   [`BATCH_CONCURRENCY`] `get`s at once; backends with a batch read of
    ///   their own (one query, one request) override it.
    ///
    /// # Errors
    /// - [`Error::InvalidInput`](crate::Error::InvalidInput) for more than
    ///   [`MAX_BATCH_KEYS`] keys, before any I/O ([`check_batch`]).
    /// - Otherwise the errors of `get`: the batch fails as a whole with the
    ///   first error met, and answers nothing.
    async fn get_many(&self, keys: &[CredentialKey]) -> Result<Vec<Option<Credential>>> {
        get_many_concurrently(self, keys).await
    }

    /// Writes a credential under the request's condition: the one write
    /// method a backend implements. Callers use
    /// [`CredentialStoreExt::set_opts`](crate::CredentialStoreExt::set_opts)
    /// or its shorthands, which check the request first.
    ///
    /// # Behavior
    /// - [`SetMode::Upsert`](crate::SetMode::Upsert) creates the key or
    ///   overwrites it; [`SetMode::Create`](crate::SetMode::Create) only
    ///   creates; [`SetMode::Replace`](crate::SetMode::Replace) only
    ///   overwrites the given version. Conditional modes are atomic: of any
    ///   number of racing conditional writes, exactly the ones whose
    ///   condition held when they ran succeed.
    /// - Overwriting replaces the value, the whole metadata and the expiry
    ///   time and keeps `created_at`; `updated_at` becomes the time of this
    ///   write; the version changes to one the key never had. Where the
    ///   store keeps [`versions`](crate::Capabilities::versions), the version
    ///   overwritten becomes [`Previous`](crate::VersionState::Previous)
    ///   and versions past the retention go.
    /// - A key past its `expires_at` counts as missing for the condition.
    /// - Once this returns `Ok`, the write is as durable as
    ///   [`Capabilities::persistence`](crate::Capabilities::persistence) says.
    /// - Concurrent writers to one key leave one of the written values with
    ///   its own metadata, never a mix.
    /// - `SetMode` is `#[non_exhaustive]`: a backend matches the modes it
    ///   knows and answers any other with
    ///   [`Error::Unsupported`](crate::Error::Unsupported). The request's
    ///   check already refuses a mode the store does not declare, so that
    ///   arm is never reached in practice.
    ///
    /// # Errors
    /// - [`Error::PreconditionFailed`](crate::Error::PreconditionFailed) when
    ///   the condition does not hold: the key exists (`Create`), or is
    ///   missing or at another version (`Replace`). Not retriable.
    /// - The request's own errors ([`WriteRequest::new`]) come before the
    ///   call, with no I/O.
    /// - On any error the previous value, metadata and version are unchanged.
    async fn write(&self, request: &WriteRequest<'_>) -> Result<SetOutcome>;

    /// Whether the key exists.
    ///
    /// # Behavior
    /// The provided method reads the credential; backends override it where
    /// they can answer without reading the value.
    ///
    /// # Errors
    /// The common errors only.
    async fn has(&self, key: &CredentialKey) -> Result<bool> {
        Ok(self.get(key).await?.is_some())
    }

    /// The current version of a credential, `None` when it is missing (or
    /// expired): what
    /// a cache asks to revalidate what it holds.
    ///
    /// # Behavior
    /// The provided method reads the credential; backends override it where
    /// they can answer without reading the value.
    ///
    /// # Errors
    /// As for [`get`](CredentialStore::get).
    async fn version(&self, key: &CredentialKey) -> Result<Option<Version>> {
        Ok(self.get(key).await?.map(|c| c.version))
    }

    /// Deletes a credential, value and metadata.
    ///
    /// # Behavior
    /// - Returns `true` when the key existed, `false` when it did not:
    ///   deleting a missing (or expired) key is not an error.
    /// - A deleted key is gone from `get`, `has` and `list`, and can be set
    ///   again at once, with a new `created_at` (a create-only write then
    ///   succeeds) and a version it never had before.
    /// - Where the store declares
    ///   [`recover_deleted`](crate::Capabilities::recover_deleted), the
    ///   history stays, the last version marked
    ///   [`Deleted`](crate::VersionState::Deleted), so that the key can be
    ///   recovered within the retention: a delete is undoable, not a
    ///   destruction. [`purge`](CredentialStore::purge) destroys. Elsewhere
    ///   the history goes with the key.
    ///
    /// # Errors
    /// The common errors only.
    async fn delete(&self, key: &CredentialKey) -> Result<bool>;

    /// Reads a key as it was at `version`: any version the store still
    /// keeps, current, previous, deleted or expired.
    ///
    /// # Behavior
    /// - Returns the value and metadata written at that version, its
    ///   `updated_at` (when it was written) and `expires_at`; `created_at`
    ///   is when the key was first set as of that version.
    /// - `Ok(None)` for a version the key never had, one past the retention
    ///   and one purged.
    /// - The provided method has no history: stores that keep one override
    ///   it and declare [`Capabilities::versions`](crate::Capabilities::versions).
    ///
    /// # Errors
    /// [`Error::Unsupported`](crate::Error::Unsupported) when `versions` is
    /// false, before any I/O; [`Error::Integrity`](crate::Error::Integrity)
    /// when the kept data fails authentication, or is a different
    /// version's than the one asked for.
    async fn get_version(&self, key: &CredentialKey, version: &Version) -> Result<Option<Credential>> {
        let _ = (key, version);
        Err(crate::Error::Unsupported { store: self.info().id().clone(), operation: "version history" })
    }

    /// Lists a key's kept versions, newest first, one page at a time: each
    /// with its state, times and metadata, never its value.
    ///
    /// # Behavior
    /// - Newest first: the order the versions were written in.
    /// - Exactly one version is [`Current`](crate::VersionState::Current)
    ///   while the key reads as present; none while it is deleted or
    ///   expired.
    /// - Only versions within the store's retention; a key with none (never
    ///   written, purged) gives an empty page, not an error.
    /// - Following `next_cursor` until it is `None` yields each version
    ///   kept throughout the listing exactly once.
    /// - The provided method has no history, as for
    ///   [`get_version`](CredentialStore::get_version).
    ///
    /// # Errors
    /// [`Error::Unsupported`](crate::Error::Unsupported) when `versions` is
    /// false, before any I/O.
    async fn list_versions(&self, key: &CredentialKey, options: &VersionListOptions) -> Result<VersionPage> {
        let _ = (key, options);
        Err(crate::Error::Unsupported { store: self.info().id().clone(), operation: "version history" })
    }

    /// Destroys a key with its whole history, or one version of it, so that
    /// no readable copy stays in the store: the way to be rid of a leaked
    /// value.
    ///
    /// # Behavior
    /// - [`PurgeTarget::Key`]: the key and every version are gone from
    ///   every read, history included, and the key can be set again as new.
    ///   Returns whether anything of the key (a live value or history) was
    ///   there.
    /// - [`PurgeTarget::Version`]: that version is gone from
    ///   [`get_version`](CredentialStore::get_version) and
    ///   [`list_versions`](CredentialStore::list_versions); the others stay.
    ///   Returns whether it was kept. Purging the current version is refused
    ///   (rotate first, then purge).
    /// - Where a store's storage keeps freed space, the backend overwrites
    ///   or discards it as far as it can (each backend's docs say how).
    /// - The provided method fits a store without history: `Key` is
    ///   [`delete`](CredentialStore::delete), `Version` is unsupported.
    ///   Stores that declare `versions` override it.
    ///
    /// # Errors
    /// - [`Error::Unsupported`](crate::Error::Unsupported) for `Version`
    ///   when `versions` is false, before any I/O.
    /// - [`Error::PreconditionFailed`](crate::Error::PreconditionFailed) for
    ///   the current version; nothing is changed.
    async fn purge(&self, key: &CredentialKey, target: &PurgeTarget) -> Result<bool> {
        match target {
            PurgeTarget::Key => self.delete(key).await,
            _ => Err(crate::Error::Unsupported {
                store: self.info().id().clone(),
                operation: "version history",
            }),
        }
    }

    /// Lists keys (never values) in ascending order, one page at a time.
    ///
    /// # Behavior
    /// - Only keys of this handle's namespace starting with
    ///   `options.prefix()`; never keys of a nested namespace.
    /// - Following `next_cursor` until it is `None` yields every key present
    ///   throughout the listing exactly once.
    ///
    /// # Errors
    /// [`Error::Unsupported`](crate::Error::Unsupported) when
    /// [`Capabilities::list`](crate::Capabilities::list) is false.
    async fn list(&self, options: &ListOptions) -> Result<ListPage>;

    /// Subscribes to the store's change feed: the keys written and deleted
    /// from now on, with their versions, never their values.
    ///
    /// # Behavior
    /// - Every change committed after this returns under this handle's
    ///   namespace, nested namespaces included, is reported once as
    ///   [`FeedEvent::Changed`](crate::FeedEvent::Changed), whoever made it:
    ///   this handle, another handle, or (for a shared backend) another
    ///   process. Each backend's docs say what it sees.
    /// - When changes may have been missed (a lost connection, a subscriber
    ///   that fell behind) the feed says so with
    ///   [`FeedEvent::Lost`](crate::FeedEvent::Lost) and goes on; it ends
    ///   (`None`) only when the store is gone.
    /// - The provided method has no feed: stores that have one override it
    ///   and declare [`Capabilities::change_feed`](crate::Capabilities::change_feed).
    ///
    /// # Errors
    /// [`Error::Unsupported`](crate::Error::Unsupported) when
    /// `change_feed` is false, before any I/O; the common errors when the
    /// feed cannot be set up.
    async fn subscribe(&self) -> Result<ChangeFeed> {
        Err(crate::Error::Unsupported { store: self.info().id().clone(), operation: "change feeds" })
    }

    /// Probes whether the store can serve requests.
    ///
    /// # Behavior
    /// Never fails and never hangs: a probe that cannot finish within the
    /// backend's own timeout answers `available: false` with a reason. A
    /// [`crate::StoreRegistry`] adds an outer timeout of its own.
    async fn check_availability(&self) -> Availability;
}
