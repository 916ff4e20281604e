//! [`Version`]: the opaque version of a stored credential.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Error, Result};

/// The longest version text, in bytes.
pub const MAX_VERSION_LEN: usize = 128;

/// The version of a stored credential: opaque text that changes on every
/// write of the key. Each backend picks its own form (Vault's version number,
/// AWS's `VersionId`, a counter in SQLite and memory); callers only compare
/// versions for equality and hand them back in [`SetMode::Replace`](crate::SetMode::Replace).
///
/// The text is 1 to [`MAX_VERSION_LEN`] visible ASCII characters other than
/// `"` and `,`, so it can travel as an HTTP entity tag.
///
/// ```
/// use credstore_core::Version;
/// let v = Version::new("42")?;
/// assert_eq!(v.as_str(), "42");
/// assert!(Version::new("has space").is_err());
/// assert!(Version::new("").is_err());
/// # Ok::<(), credstore_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(Arc<str>);

impl Version {
    /// Validates `text` and wraps it.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] on field `version` when the text is empty,
    /// longer than [`MAX_VERSION_LEN`] or holds a character outside the set above.
    pub fn new(text: impl Into<String>) -> Result<Self> {
        let text = text.into();
        let invalid = |reason: String| Error::InvalidInput { field: "version".into(), reason };
        if text.is_empty() {
            return Err(invalid("must not be empty".into()));
        }
        if text.len() > MAX_VERSION_LEN {
            return Err(invalid(format!("is {} bytes; the limit is {MAX_VERSION_LEN}", text.len())));
        }
        if let Some((i, ch)) = text.char_indices().find(|&(_, c)| !is_version_char(c)) {
            return Err(invalid(format!(
                "has the character {ch:?} at byte {i}; only visible ASCII other than '\"' and ',' is allowed"
            )));
        }
        Ok(Self(Arc::from(text)))
    }

    /// A version from a counter, as the memory and SQLite stores keep one.
    pub fn from_counter(n: u64) -> Self {
        // Digits formatted on the stack: one allocation, the Arc's own.
        let mut digits = [0u8; 20];
        let (mut rest, mut start) = (n, digits.len());
        loop {
            start -= 1;
            digits[start] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        let text = std::str::from_utf8(&digits[start..]).unwrap_or("0");
        Self(Arc::from(text))
    }

    /// The version's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_version_char(c: char) -> bool {
    c.is_ascii_graphic() && c != '"' && c != ','
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({})", self.0)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Version {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        Self::new(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_tag_safe_text_only() {
        for ok in ["1", "a1b2-c3d4", "EXAMPLE1-90ab-cdef-fedc-ba987EXAMPLE", "v~!#$%&'()*+-./:;<=>?@[]^_`{|}"]
        {
            assert!(Version::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a b", "a\"b", "a,b", "é", "a\n"] {
            assert!(Version::new(bad).is_err(), "{bad:?}");
        }
        assert!(Version::new("x".repeat(MAX_VERSION_LEN)).is_ok());
        assert!(Version::new("x".repeat(MAX_VERSION_LEN + 1)).is_err());
        assert_eq!(Version::from_counter(7).as_str(), "7");
        for n in [0, 9, 10, 1_000_000_007, u64::MAX] {
            assert_eq!(Version::from_counter(n).as_str(), n.to_string());
        }
    }
}
