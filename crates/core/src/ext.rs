//! [`CredentialStoreExt`]: what every store offers callers beyond the
//! trait's required methods.

use std::future::Future;

use crate::{
    Capabilities, CredentialKey, CredentialStore, Error, Metadata, Namespace, Result, SecretValue,
    SetOptions, SetOutcome, StoreId, StoreKind, Version, WriteRequest,
};

/// Conveniences for every [`CredentialStore`], `dyn` or not: the parts of
/// its [`info`](CredentialStore::info) and the write shorthands.
///
/// Implemented for every store by a blanket impl; nobody implements it by
/// hand, and a backend or layer never has to forward it. Bring it into
/// scope with `use credstore_core::CredentialStoreExt`.
///
/// ```
/// use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Error, Metadata, SecretValue};
///
/// /// Copies a credential, refusing to overwrite one that exists.
/// async fn copy(from: &dyn CredentialStore, to: &dyn CredentialStore, key: &CredentialKey) -> credstore_core::Result<bool> {
///     let Some(cred) = from.get(key).await? else { return Ok(false) };
///     match to.create(key, &cred.value, &cred.metadata).await {
///         Ok(_) => Ok(true),
///         Err(Error::PreconditionFailed { .. }) => Ok(false),
///         Err(e) => Err(e),
///     }
/// }
/// ```
pub trait CredentialStoreExt: CredentialStore {
    /// The store's id; shared by every namespace handle.
    fn id(&self) -> &StoreId {
        self.info().id()
    }

    /// Which backend the store is.
    fn kind(&self) -> &StoreKind {
        self.info().kind()
    }

    /// What the store supports; the same for every namespace handle.
    fn capabilities(&self) -> Capabilities {
        self.info().capabilities()
    }

    /// The namespace this handle reads and writes.
    fn namespace(&self) -> &Namespace {
        self.info().namespace()
    }

    /// Writes a credential under the condition in `options`: checks the
    /// write ([`WriteRequest::new`]), then calls
    /// [`CredentialStore::write`].
    ///
    /// # Errors
    /// - Before any I/O: [`Error::InvalidInput`](crate::Error::InvalidInput)
    ///   when the value is over [`MAX_VALUE_BYTES`](crate::MAX_VALUE_BYTES);
    ///   [`Error::Unsupported`](crate::Error::Unsupported) for a binary value,
    ///   non-empty metadata or a conditional mode the store declares off.
    /// - Then as for [`CredentialStore::write`].
    fn set_opts<'a>(
        &'a self,
        key: &'a CredentialKey,
        value: &'a SecretValue,
        metadata: &'a Metadata,
        options: &'a SetOptions,
    ) -> impl Future<Output = Result<SetOutcome>> + Send + 'a {
        async move {
            let request = WriteRequest::new(self.info(), key, value, metadata, options)?;
            self.write(&request).await
        }
    }

    /// Creates or overwrites a credential: [`set_opts`](Self::set_opts)
    /// with [`SetMode::Upsert`](crate::SetMode::Upsert).
    ///
    /// # Errors
    /// As for `set_opts`, less the precondition.
    fn set<'a>(
        &'a self,
        key: &'a CredentialKey,
        value: &'a SecretValue,
        metadata: &'a Metadata,
    ) -> impl Future<Output = Result<SetOutcome>> + Send + 'a {
        async move { self.set_opts(key, value, metadata, &SetOptions::new()).await }
    }

    /// Creates a credential only if the key is absent:
    /// [`set_opts`](Self::set_opts) with [`SetMode::Create`](crate::SetMode::Create).
    ///
    /// # Errors
    /// As for `set_opts`; [`Error::PreconditionFailed`](crate::Error::PreconditionFailed)
    /// when the key exists.
    fn create<'a>(
        &'a self,
        key: &'a CredentialKey,
        value: &'a SecretValue,
        metadata: &'a Metadata,
    ) -> impl Future<Output = Result<SetOutcome>> + Send + 'a {
        async move { self.set_opts(key, value, metadata, &SetOptions::create_only()).await }
    }

    /// Overwrites a credential only at `version`:
    /// [`set_opts`](Self::set_opts) with [`SetMode::Replace`](crate::SetMode::Replace).
    ///
    /// # Errors
    /// As for `set_opts`; [`Error::PreconditionFailed`](crate::Error::PreconditionFailed)
    /// when the key is missing or at another version.
    fn replace<'a>(
        &'a self,
        key: &'a CredentialKey,
        value: &'a SecretValue,
        metadata: &'a Metadata,
        version: &'a Version,
    ) -> impl Future<Output = Result<SetOutcome>> + Send + 'a {
        async move { self.set_opts(key, value, metadata, &SetOptions::replace(version.clone())).await }
    }

    /// Writes an earlier version back as a new write: its value and
    /// metadata, under the condition in `options`
    /// ([`SetOptions::replace`] with the version current now to undo a
    /// rotation; [`SetOptions::create_only`] to recover a deleted key).
    /// The key gets a new version; the one restored stays in the history.
    ///
    /// The expiry of the restored write is `options.expires_at`, not the old
    /// version's: an expired value comes back only if the caller gives it a
    /// new time, or none.
    ///
    /// ```
    /// use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, SetOptions, Version};
    ///
    /// /// Puts back the version before the current one, unless someone wrote in between.
    /// async fn undo(store: &dyn CredentialStore, key: &CredentialKey, bad: &Version, good: &Version) -> credstore_core::Result<Version> {
    ///     Ok(store.restore(key, good, &SetOptions::replace(bad.clone())).await?.version)
    /// }
    /// ```
    ///
    /// # Errors
    /// - [`Error::Unsupported`] when the store declares no
    ///   [`versions`](Capabilities::versions), before any I/O.
    /// - [`Error::VersionNotFound`] when the version is not kept.
    /// - [`Error::PreconditionFailed`] when the condition does not hold (a
    ///   racing write got in first); nothing is changed.
    /// - Then as for [`set_opts`](Self::set_opts).
    fn restore<'a>(
        &'a self,
        key: &'a CredentialKey,
        version: &'a Version,
        options: &'a SetOptions,
    ) -> impl Future<Output = Result<SetOutcome>> + Send + 'a {
        async move {
            if !self.capabilities().versions {
                return Err(Error::unsupported(self.id(), "version history"));
            }
            let Some(old) = self.get_version(key, version).await? else {
                return Err(Error::VersionNotFound {
                    store: self.id().clone(),
                    key: key.clone(),
                    version: version.clone(),
                });
            };
            self.set_opts(key, &old.value, &old.metadata, options).await
        }
    }
}

impl<S: CredentialStore + ?Sized> CredentialStoreExt for S {}
