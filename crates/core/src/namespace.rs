//! [`Namespace`]: a key space inside a store, such as `tenant_123/project_456`.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{validate_id, Error, IdError, Result};

/// The longest namespace, in bytes, every backend accepts unless it states a
/// smaller cap of its own (see [`Namespace::check_len`]).
pub const MAX_NAMESPACE_LEN: usize = 512;

/// Why a string is not a valid namespace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NamespaceError {
    /// A segment breaks the id rules (an empty segment comes from `//` or a
    /// leading or trailing `/`).
    #[error("segment {index} breaks the id rules: {reason}")]
    Segment {
        /// The segment's position, from 0.
        index: usize,
        /// The rule that failed.
        reason: IdError,
    },
    /// A segment is `.` or `..`, which could climb out of a parent where a
    /// backend maps namespaces to paths.
    #[error("segment {index} is {segment:?}, which is not allowed in a namespace")]
    DotSegment {
        /// The segment's position, from 0.
        index: usize,
        /// `.` or `..`.
        segment: &'static str,
    },
    /// The whole namespace is longer than `max` bytes: [`MAX_NAMESPACE_LEN`],
    /// or the smaller cap of the store that was asked for it.
    #[error("is {len} bytes long; the limit is {max}")]
    TooLong {
        /// The rejected namespace's length, in bytes.
        len: usize,
        /// The cap that applies.
        max: usize,
    },
}

/// A key space inside a store: id-valid segments joined by `/`, such as
/// `tenant_123/project_456`, at most [`MAX_NAMESPACE_LEN`] bytes; `.` and
/// `..` are refused as segments. The empty namespace is the root.
///
/// Handles on a namespace come from
/// [`CredentialStore::with_namespace`](crate::CredentialStore::with_namespace);
/// handles on different namespaces never see each other's keys, and a handle
/// on `a` asked for `b` is the handle on `a/b`.
///
/// ```
/// use credstore_core::Namespace;
/// let ns = Namespace::new("tenant_123/project_456")?;
/// assert_eq!(ns.segments().collect::<Vec<_>>(), ["tenant_123", "project_456"]);
/// assert_eq!(Namespace::root().join(&ns)?, ns);
/// assert!(Namespace::new("a//b").is_err());
/// assert!(Namespace::new("tenant/../other").is_err());
/// # Ok::<(), credstore_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Namespace(Option<Arc<str>>);

impl Namespace {
    /// The root namespace: the store itself.
    pub const fn root() -> Self {
        Self(None)
    }

    /// Validates `ns` and wraps it. An empty string is the root.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`] naming the segment and rule that failed.
    pub fn new(ns: impl Into<String>) -> Result<Self> {
        let ns = ns.into();
        if ns.is_empty() {
            return Ok(Self::root());
        }
        check(&ns).map_err(|reason| invalid(&ns, reason))?;
        Ok(Self(Some(Arc::from(ns))))
    }

    /// The namespace `child` inside this one.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`] when the joined namespace is longer than
    /// [`MAX_NAMESPACE_LEN`].
    pub fn join(&self, child: &Namespace) -> Result<Self> {
        match (&self.0, &child.0) {
            (_, None) => Ok(self.clone()),
            (None, Some(_)) => Ok(child.clone()),
            (Some(a), Some(b)) => {
                let joined = format!("{a}/{b}");
                if joined.len() > MAX_NAMESPACE_LEN {
                    let reason = NamespaceError::TooLong { len: joined.len(), max: MAX_NAMESPACE_LEN };
                    return Err(invalid(&joined, reason));
                }
                Ok(Self(Some(Arc::from(joined))))
            }
        }
    }

    /// Checks this namespace against a backend's own, smaller length cap.
    /// Backends whose storage limits name length (AWS secret names) call this
    /// in `with_namespace`, before any I/O.
    ///
    /// # Errors
    /// [`Error::InvalidNamespace`] with [`NamespaceError::TooLong`] naming `max`.
    pub fn check_len(&self, max: usize) -> Result<()> {
        let len = self.as_str().len();
        if len > max {
            return Err(invalid(self.as_str(), NamespaceError::TooLong { len, max }));
        }
        Ok(())
    }

    /// Whether this is the root namespace.
    pub fn is_root(&self) -> bool {
        self.0.is_none()
    }

    /// The namespace as text; empty for the root.
    pub fn as_str(&self) -> &str {
        self.0.as_deref().unwrap_or("")
    }

    /// The segments, outermost first; none for the root.
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.as_deref().into_iter().flat_map(|s| s.split('/'))
    }
}

fn check(ns: &str) -> std::result::Result<(), NamespaceError> {
    for (index, segment) in ns.split('/').enumerate() {
        validate_id(segment).map_err(|reason| NamespaceError::Segment { index, reason })?;
        match segment {
            "." => return Err(NamespaceError::DotSegment { index, segment: "." }),
            ".." => return Err(NamespaceError::DotSegment { index, segment: ".." }),
            _ => {}
        }
    }
    if ns.len() > MAX_NAMESPACE_LEN {
        return Err(NamespaceError::TooLong { len: ns.len(), max: MAX_NAMESPACE_LEN });
    }
    Ok(())
}

fn invalid(ns: &str, reason: NamespaceError) -> Error {
    Error::InvalidNamespace { shown: crate::error::shown(ns), reason }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Namespace({:?})", self.as_str())
    }
}

/// The namespace's text; empty for the root.
impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Namespace {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl TryFrom<&str> for Namespace {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl Serialize for Namespace {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Namespace {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Self::new(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(ns: &str) -> NamespaceError {
        match Namespace::new(ns).unwrap_err() {
            Error::InvalidNamespace { reason, .. } => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rules_name_what_failed() {
        assert!(Namespace::new("").unwrap().is_root());
        assert_eq!(Namespace::new("a/b.c/_-").unwrap().as_str(), "a/b.c/_-");
        assert_eq!(reason("a//b"), NamespaceError::Segment { index: 1, reason: IdError::Empty });
        assert_eq!(reason("/a"), NamespaceError::Segment { index: 0, reason: IdError::Empty });
        assert_eq!(reason("a/"), NamespaceError::Segment { index: 1, reason: IdError::Empty });
        assert_eq!(
            reason("a/b c"),
            NamespaceError::Segment { index: 1, reason: IdError::InvalidChar { ch: ' ', index: 1 } }
        );
        assert_eq!(reason("a/./b"), NamespaceError::DotSegment { index: 1, segment: "." });
        assert_eq!(reason(".."), NamespaceError::DotSegment { index: 0, segment: ".." });
        assert!(Namespace::new("...").is_ok(), "three dots are an ordinary name");
        let long = ["a".repeat(255), "b".repeat(255), "c".repeat(255)].join("/");
        assert_eq!(reason(&long), NamespaceError::TooLong { len: 767, max: MAX_NAMESPACE_LEN });
        let fits = ["a".repeat(255), "b".repeat(254), "c".into()].join("/");
        assert_eq!(fits.len(), MAX_NAMESPACE_LEN);
        assert!(Namespace::new(fits).is_ok());
        let over = ["a".repeat(255), "b".repeat(255), "c".into()].join("/");
        assert_eq!(reason(&over), NamespaceError::TooLong { len: 513, max: MAX_NAMESPACE_LEN });
    }

    #[test]
    fn join_nests_and_caps_the_whole() {
        let a = Namespace::new("t1").unwrap();
        let b = Namespace::new("p1/env").unwrap();
        let ab = a.join(&b).unwrap();
        assert_eq!(ab.as_str(), "t1/p1/env");
        assert_eq!(ab.segments().count(), 3);
        assert_eq!(Namespace::root().join(&a).unwrap(), a);
        assert_eq!(a.join(&Namespace::root()).unwrap(), a);
        let big = Namespace::new("x".repeat(255)).unwrap();
        let twice = big.join(&big).unwrap();
        assert_eq!(twice.as_str().len(), 511);
        // 511 + "/" + 2 = 514 bytes: over the cap, refused as a whole.
        let err = twice.join(&a).unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidNamespace { reason: NamespaceError::TooLong { len: 514, .. }, .. }
        ));
        let fits = big.join(&Namespace::new("y".repeat(254)).unwrap()).unwrap();
        assert_eq!(fits.join(&Namespace::new("z").unwrap()).unwrap().as_str().len(), MAX_NAMESPACE_LEN);
        assert!(ab.check_len(9).is_ok());
        let err = ab.check_len(8).unwrap_err().to_string();
        assert!(err.contains("limit is 8"), "{err}");
    }

    #[test]
    fn serde_validates() {
        let ns: Namespace = serde_json::from_str("\"a/b\"").unwrap();
        assert_eq!(serde_json::to_string(&ns).unwrap(), "\"a/b\"");
        assert!(serde_json::from_str::<Namespace>("\"a/../b\"").is_err());
    }
}
