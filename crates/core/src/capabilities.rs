//! [`Capabilities`]: what a store supports, declared as flat flags.

/// What a store supports. The conformance suite runs the cases a store
/// declares and checks that each declaration is honest: a store that says
/// `list: false` must answer `list` with [`crate::Error::Unsupported`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// Credentials survive dropping the store and opening it again.
    pub persistent: bool,
    /// `list` is supported.
    pub list: bool,
    /// `set` keeps metadata and `get` returns it.
    pub metadata: bool,
    /// The store depends on something that can fail (a file, a server), so
    /// `check_availability` may answer `available: false`. A store that
    /// declares `false` is always available.
    pub can_be_unavailable: bool,
}

impl Capabilities {
    /// Everything supported: the usual declaration of a durable backend.
    pub const fn full() -> Self {
        Self { persistent: true, list: true, metadata: true, can_be_unavailable: true }
    }

    /// Returns a copy with `persistent` set to `value`.
    pub const fn with_persistent(mut self, value: bool) -> Self {
        self.persistent = value;
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

    /// Returns a copy with `can_be_unavailable` set to `value`.
    pub const fn with_can_be_unavailable(mut self, value: bool) -> Self {
        self.can_be_unavailable = value;
        self
    }
}
