//! [`StoreInfo`] and [`StoreKind`]: what a store is, in the one value every
//! layer forwards.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Serialize, Serializer};

use crate::{Capabilities, Clock, Error, Namespace, Result, StoreId, SystemClock};

/// Which backend a store is: the `type` of the Credential Stores API.
///
/// Each backend crate owns its kind as a constant (`credstore_memory::KIND`
/// is `memory`, `credstore_sqlite::KIND` is `encrypted-sqlite`, and so on); a
/// custom backend declares its own the same way. A kind is 1 to 64 bytes of
/// lowercase ASCII letters, digits and `-`, starting with a letter.
///
/// ```
/// use credstore_core::StoreKind;
/// /// The kind of a custom backend, checked when the crate compiles.
/// pub const KIND: StoreKind = StoreKind::from_static("greeter");
/// assert_eq!(KIND.as_str(), "greeter");
/// assert_eq!(StoreKind::new("greeter")?, KIND);
/// assert!(StoreKind::new("Not A Kind").is_err());
/// # Ok::<(), credstore_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StoreKind(Cow<'static, str>);

/// The longest [`StoreKind`], in bytes.
pub const MAX_KIND_LEN: usize = 64;

const fn kind_is_valid(name: &str) -> bool {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_KIND_LEN || !bytes[0].is_ascii_lowercase() {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return false;
        }
        i += 1;
    }
    true
}

impl StoreKind {
    /// A kind from a constant name, for a backend crate's `KIND`.
    ///
    /// # Panics
    /// When `name` breaks the rules above; in a `const` item that is a
    /// compile error, so a backend's kind is checked when it builds.
    pub const fn from_static(name: &'static str) -> Self {
        assert!(kind_is_valid(name), "a store kind is 1 to 64 of a-z, 0-9 and -, starting with a letter");
        Self(Cow::Borrowed(name))
    }

    /// A kind from a name known only at run time (a configuration file).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `type` when `name` breaks the rules
    /// above.
    pub fn new(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        if !kind_is_valid(&name) {
            return Err(Error::InvalidInput {
                field: "type".into(),
                reason: format!(
                    "{} is not a store kind: 1 to {MAX_KIND_LEN} of a-z, 0-9 and -, starting with a letter",
                    crate::error::shown(&name)
                ),
            });
        }
        Ok(Self(Cow::Owned(name)))
    }

    /// The kind's name as the API spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for StoreKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl PartialEq<str> for StoreKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for StoreKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What a store handle is: its id, kind, capabilities and namespace.
///
/// [`CredentialStore::info`](crate::CredentialStore::info) returns it, and a
/// layer forwards its inner store's, so one method carries all four. Every
/// field is cheap to clone (shared strings).
///
/// ```
/// use credstore_core::{Capabilities, Namespace, StoreId, StoreInfo, StoreKind};
/// let info = StoreInfo::new(StoreId::new("main")?, StoreKind::from_static("memory"), Capabilities::full());
/// assert!(info.namespace().is_root());
/// let tenant = info.join(&Namespace::new("tenant_1")?)?;
/// assert_eq!((tenant.id(), tenant.namespace().as_str()), (info.id(), "tenant_1"));
/// # Ok::<(), credstore_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct StoreInfo {
    id: StoreId,
    kind: StoreKind,
    capabilities: Capabilities,
    namespace: Namespace,
    clock: Arc<dyn Clock>,
}

/// Equal when the id, kind, capabilities and namespace are; the clock is
/// not compared.
impl PartialEq for StoreInfo {
    fn eq(&self, other: &Self) -> bool {
        (&self.id, &self.kind, &self.capabilities, &self.namespace)
            == (&other.id, &other.kind, &other.capabilities, &other.namespace)
    }
}

impl Eq for StoreInfo {}

impl StoreInfo {
    /// A store's info, on its root namespace.
    pub fn new(id: StoreId, kind: StoreKind, capabilities: Capabilities) -> Self {
        Self { id, kind, capabilities, namespace: Namespace::root(), clock: Arc::new(SystemClock) }
    }

    /// The same info on another clock: what a backend's builder does when a
    /// test gives it a [`ManualClock`](crate::ManualClock). Namespace handles
    /// and layers share it.
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self }
    }

    /// The same store's info on `namespace`, a full namespace path (the
    /// result of [`Namespace::join`]). Makes no check: a backend checks its
    /// own length cap before.
    pub fn in_namespace(&self, namespace: Namespace) -> Self {
        Self { namespace, ..self.clone() }
    }

    /// The info of the handle on `namespace` inside this handle's own (`a`
    /// then `b` is `a/b`): what a backend's
    /// [`with_namespace`](crate::CredentialStore::with_namespace) starts from.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`] when the joined namespace is longer than
    /// [`MAX_NAMESPACE_LEN`](crate::MAX_NAMESPACE_LEN).
    pub fn join(&self, namespace: &Namespace) -> Result<Self> {
        Ok(self.in_namespace(self.namespace.join(namespace)?))
    }

    /// The same info with other capabilities, for a layer that changes what
    /// the store supports (a read-only layer turns writes off).
    pub fn with_capabilities(&self, capabilities: Capabilities) -> Self {
        Self { capabilities, ..self.clone() }
    }

    /// The store's id, unique within a [`crate::StoreRegistry`]; shared by
    /// every namespace handle.
    pub fn id(&self) -> &StoreId {
        &self.id
    }

    /// Which backend the store is.
    pub fn kind(&self) -> &StoreKind {
        &self.kind
    }

    /// What the store supports; the same for every namespace handle.
    pub fn capabilities(&self) -> Capabilities {
        self.capabilities
    }

    /// The namespace this handle reads and writes; the root for a store as
    /// opened.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The clock the store decides expiry and age-based retention by
    /// ([`SystemClock`] unless its builder was given another).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The time on the store's [`clock`](Self::clock).
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }
}
