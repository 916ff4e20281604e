//! The [`CredentialStore`] trait and the types its methods take and return.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::{
    Availability, ChangeFeed, CredentialKey, ListOptions, ListPage, Metadata, Namespace, Result, SecretValue,
    SetOutcome, StoreInfo, Version, WriteRequest,
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
    /// When the key was last set.
    pub updated_at: SystemTime,
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
    /// - A missing key returns `Ok(None)`, not an error.
    /// - The value, metadata, version and both timestamps come back exactly
    ///   as the last write left them.
    ///
    /// # Errors
    /// [`Error::Integrity`](crate::Error::Integrity) when the stored data
    /// fails authentication; no value is returned then.
    async fn get(&self, key: &CredentialKey) -> Result<Option<Credential>>;

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
    /// - Overwriting replaces the value and the whole metadata and keeps
    ///   `created_at`; `updated_at` becomes the time of this write; the
    ///   version changes to one the key never had.
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

    /// The current version of a credential, `None` when it is missing: what
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
    ///   deleting a missing key is not an error.
    /// - A deleted key is gone from `get`, `has` and `list`, and can be set
    ///   again at once, with a new `created_at` (a create-only write then
    ///   succeeds) and a version it never had before.
    ///
    /// # Errors
    /// The common errors only.
    async fn delete(&self, key: &CredentialKey) -> Result<bool>;

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
