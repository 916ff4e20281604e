//! [`Capabilities`]: what a store supports, declared as flat flags.

use serde::Serialize;

use crate::Retention;

/// How long a store keeps what it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Persistence {
    /// Credentials live as long as the store's process (the memory store).
    Process,
    /// Credentials outlive the process but not a reboot of the machine (a
    /// kernel keyring).
    UntilReboot,
    /// Credentials are on durable storage: a file synced to disk, a remote
    /// service.
    Durable,
}

impl Persistence {
    /// Whether a new store instance over the same storage, as after a
    /// process restart, sees what an earlier one wrote.
    pub const fn survives_restart(self) -> bool {
        !matches!(self, Persistence::Process)
    }
}

/// What a store supports. The conformance suite runs the cases a store
/// declares and checks that each declaration is honest in both directions: a
/// store that says `list: false` must answer `list` with
/// [`crate::Error::Unsupported`], and one that says `true` must list
/// correctly.
///
/// ```
/// use credstore_core::{Capabilities, Persistence};
/// let caps = Capabilities::full().with_persistence(Persistence::Process).with_can_be_unavailable(false);
/// assert!(caps.create_only && !caps.persistence.survives_restart());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// How long credentials are kept.
    pub persistence: Persistence,
    /// `list` is supported.
    pub list: bool,
    /// `set` keeps metadata and `get` returns it.
    pub metadata: bool,
    /// Values that are not UTF-8 are stored and read back exactly. A store
    /// that declares `false` refuses them with [`crate::Error::Unsupported`].
    pub binary: bool,
    /// [`SetMode::Create`](crate::SetMode::Create) is supported and atomic:
    /// of any number of racing create-only writes, exactly one succeeds.
    pub create_only: bool,
    /// [`SetMode::Replace`](crate::SetMode::Replace) is supported and atomic:
    /// of any number of racing writes from one version, exactly one succeeds.
    pub replace_if_version: bool,
    /// The store depends on something that can fail (a file, a server), so
    /// `check_availability` may answer `available: false`. A store that
    /// declares `false` is always available.
    pub can_be_unavailable: bool,
    /// [`CredentialStore::subscribe`](crate::CredentialStore::subscribe)
    /// reports the store's changes ([`crate::ChangeFeed`]). Optional: a
    /// store that declares `false` answers it with
    /// [`crate::Error::Unsupported`].
    pub change_feed: bool,
    /// The store keeps a history of each key:
    /// [`get_version`](crate::CredentialStore::get_version),
    /// [`list_versions`](crate::CredentialStore::list_versions),
    /// [`restore`](crate::CredentialStoreExt::restore) and purging one
    /// version ([`PurgeTarget::Version`](crate::PurgeTarget::Version)) work,
    /// within [`retention`](Self::retention). Optional: a store that
    /// declares `false` answers them with [`crate::Error::Unsupported`].
    pub versions: bool,
    /// [`delete`](crate::CredentialStore::delete) keeps the key's versions
    /// (the last one [`Deleted`](crate::VersionState::Deleted)) within the
    /// retention, so that a deleted key can be recovered by restoring it.
    /// Needs [`versions`](Self::versions). A store that declares `false`
    /// destroys a key's history with the key.
    pub recover_deleted: bool,
    /// A write may carry [`SetOptions::expires_at`](crate::SetOptions::expires_at),
    /// after which the credential reads as absent. A store that declares
    /// `false` refuses such a write with [`crate::Error::Unsupported`].
    pub expiry: bool,
    /// How much history the store keeps: [`Retention::NONE`] unless
    /// [`versions`](Self::versions) is declared.
    pub retention: Retention,
}

impl Capabilities {
    /// Everything required supported, durable: the usual declaration of a
    /// backend over a file or a server. The optional parts are off: the
    /// change feed, versions, recovery after a delete and expiry; a store
    /// that has them adds [`with_change_feed`](Self::with_change_feed),
    /// [`with_versions`](Self::with_versions) and so on.
    pub const fn full() -> Self {
        Self {
            persistence: Persistence::Durable,
            list: true,
            metadata: true,
            binary: true,
            create_only: true,
            replace_if_version: true,
            can_be_unavailable: true,
            change_feed: false,
            versions: false,
            recover_deleted: false,
            expiry: false,
            retention: Retention::NONE,
        }
    }

    /// Returns a copy with `persistence` set to `value`.
    pub const fn with_persistence(mut self, value: Persistence) -> Self {
        self.persistence = value;
        self
    }

    /// Returns a copy with `list` set to `value`.
    pub const fn with_list(mut self, value: bool) -> Self {
        self.list = value;
        self
    }

    /// Returns a copy with `metadata` set to `value`.
    pub const fn with_metadata(mut self, value: bool) -> Self {
        self.metadata = value;
        self
    }

    /// Returns a copy with `binary` set to `value`.
    pub const fn with_binary(mut self, value: bool) -> Self {
        self.binary = value;
        self
    }

    /// Returns a copy with `create_only` set to `value`.
    pub const fn with_create_only(mut self, value: bool) -> Self {
        self.create_only = value;
        self
    }

    /// Returns a copy with `replace_if_version` set to `value`.
    pub const fn with_replace_if_version(mut self, value: bool) -> Self {
        self.replace_if_version = value;
        self
    }

    /// Returns a copy with `can_be_unavailable` set to `value`.
    pub const fn with_can_be_unavailable(mut self, value: bool) -> Self {
        self.can_be_unavailable = value;
        self
    }

    /// Returns a copy with `change_feed` set to `value`.
    pub const fn with_change_feed(mut self, value: bool) -> Self {
        self.change_feed = value;
        self
    }

    /// Returns a copy with `versions` set to `value`.
    pub const fn with_versions(mut self, value: bool) -> Self {
        self.versions = value;
        self
    }

    /// Returns a copy with `recover_deleted` set to `value`.
    pub const fn with_recover_deleted(mut self, value: bool) -> Self {
        self.recover_deleted = value;
        self
    }

    /// Returns a copy with `expiry` set to `value`.
    pub const fn with_expiry(mut self, value: bool) -> Self {
        self.expiry = value;
        self
    }

    /// Returns a copy with `retention` set to `value`.
    pub const fn with_retention(mut self, value: Retention) -> Self {
        self.retention = value;
        self
    }
}
