//! Validated identifiers: [`CredentialKey`] and [`StoreId`].
//!
//! Both follow the rule of the Credential Stores API: the pattern
//! `^[a-zA-Z0-9\-_.]+$` and a length of 1 to 255 bytes. A value of either type
//! can only be built through validation, so a backend never sees a bad id.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest valid id, in bytes.
pub const MAX_ID_LEN: usize = 255;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The string is empty; an id has at least one character.
    #[error("must not be empty")]
    Empty,
    /// The string is longer than [`MAX_ID_LEN`] bytes.
    #[error("is {len} bytes long; the limit is {MAX_ID_LEN}")]
    TooLong {
        /// The length of the rejected string, in bytes.
        len: usize,
    },
    /// The string holds a character outside `[a-zA-Z0-9-_.]`.
    #[error("has the character {ch:?} at byte {index}; only a-z, A-Z, 0-9, '-', '_' and '.' are allowed")]
    InvalidChar {
        /// The first character that is not allowed.
        ch: char,
        /// Its byte offset in the string.
        index: usize,
    },
}

/// Whether `b` may appear in an id: `[a-zA-Z0-9-_.]`.
pub const fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// Checks `s` against the id rules, reporting the first rule it breaks.
///
/// ```
/// use credstore_core::{validate_id, IdError};
/// assert!(validate_id("api-key.v2").is_ok());
/// assert_eq!(validate_id(""), Err(IdError::Empty));
/// assert_eq!(validate_id("a/b"), Err(IdError::InvalidChar { ch: '/', index: 1 }));
/// ```
pub fn validate_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    // Characters are checked before the length so that a long string of bad
    // characters names the character, which is the more useful message.
    if let Some((index, ch)) = s.char_indices().find(|&(_, c)| !c.is_ascii() || !is_id_byte(c as u8)) {
        return Err(IdError::InvalidChar { ch, index });
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { len: s.len() });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            /// Validates `s` and wraps it.
            ///
            /// # Errors
            /// [`crate::Error::InvalidKey`] naming the rule that failed.
            pub fn new(s: impl Into<String>) -> Result<Self, crate::Error> {
                let s = s.into();
                match validate_id(&s) {
                    Ok(()) => Ok(Self(std::sync::Arc::from(s))),
                    Err(reason) => Err(crate::Error::InvalidKey {
                        kind: $kind,
                        shown: crate::error::shown(&s),
                        reason,
                    }),
                }
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = crate::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = crate::Error;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = crate::Error;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.as_ref().to_owned()
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = String::deserialize(deserializer)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// The name of one credential inside a store, such as `github-token` or
    /// `db.primary.password`. Cloning is cheap: the text is reference-counted.
    ///
    /// ```
    /// use credstore_core::CredentialKey;
    /// let key: CredentialKey = "db.primary.password".parse()?;
    /// assert_eq!(key.as_str(), "db.primary.password");
    /// assert!(CredentialKey::new("no spaces").is_err());
    /// # Ok::<(), credstore_core::Error>(())
    /// ```
    CredentialKey,
    crate::IdKind::CredentialKey
);

id_type!(
    /// The id of a credential store, such as `sqlite-default`.
    ///
    /// ```
    /// use credstore_core::StoreId;
    /// let id = StoreId::new("sqlite-default")?;
    /// assert_eq!(id.to_string(), "sqlite-default");
    /// # Ok::<(), credstore_core::Error>(())
    /// ```
    StoreId,
    crate::IdKind::StoreId
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(s: &str) -> bool {
        static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
        let re = RE.get_or_init(|| regex::Regex::new(r"^[a-zA-Z0-9\-_.]+$").unwrap());
        re.is_match(s) && (1..=255).contains(&s.len())
    }

    #[test]
    fn names_the_rule_that_failed() {
        assert_eq!(validate_id(""), Err(IdError::Empty));
        assert_eq!(validate_id(&"a".repeat(256)), Err(IdError::TooLong { len: 256 }));
        assert_eq!(validate_id("ok_é"), Err(IdError::InvalidChar { ch: 'é', index: 3 }));
        assert_eq!(validate_id("a\0"), Err(IdError::InvalidChar { ch: '\0', index: 1 }));
        assert!(validate_id(&"a".repeat(255)).is_ok());
        for ok in [".", "..", "-", "_", "a", "A-z_0.9"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn error_message_names_character_and_position() {
        let err = CredentialKey::new("bad key").unwrap_err().to_string();
        assert!(err.contains("' '") && err.contains("byte 3"), "{err}");
        let err = StoreId::new("").unwrap_err().to_string();
        assert!(err.contains("store id") && err.contains("empty"), "{err}");
    }

    #[test]
    fn serde_validates_on_deserialize() {
        let key: CredentialKey = serde_json::from_str("\"abc\"").unwrap();
        assert_eq!(serde_json::to_string(&key).unwrap(), "\"abc\"");
        assert!(serde_json::from_str::<CredentialKey>("\"a b\"").is_err());
        assert!(serde_json::from_str::<StoreId>("\"\"").is_err());
    }

    fn id_like() -> impl Strategy<Value = String> {
        prop_oneof![
            // Anything at all, unicode and control characters included.
            any::<String>(),
            // Mostly valid characters with the odd stranger, around the boundary lengths.
            prop_oneof![0usize..4, 250usize..260]
                .prop_flat_map(|len| proptest::collection::vec(
                    prop_oneof![
                        20 => proptest::char::ranges(vec!['a'..='z', 'A'..='Z', '0'..='9'].into()),
                        3 => Just('-'), 3 => Just('_'), 3 => Just('.'),
                        1 => any::<char>(),
                    ],
                    len,
                ))
                .prop_map(|v| v.into_iter().collect()),
            "[a-zA-Z0-9._-]{0,300}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12_000))]
        #[test]
        fn agrees_with_reference_regex(s in id_like()) {
            prop_assert_eq!(validate_id(&s).is_ok(), reference(&s));
            prop_assert_eq!(CredentialKey::new(s.clone()).is_ok(), reference(&s));
            prop_assert_eq!(StoreId::try_from(s.as_str()).is_ok(), reference(&s));
        }
    }
}
