//! [`Metadata`]: the validated string map stored beside a credential, and the
//! input limits every backend shares.
//!
//! The limits are chosen so that every backend can keep metadata losslessly:
//! an AWS secret's description (2,048 characters) holds the JSON of the
//! largest metadata even when every character needs escaping, and Vault's
//! `custom_metadata` limits (64 entries, 128-byte keys, 512-byte values) are
//! never reached.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::{Error, SecretValue};

/// The largest credential value, in bytes: 65,536, which is what AWS Secrets
/// Manager accepts for a `SecretString`. Every backend stores at least this.
pub const MAX_VALUE_BYTES: usize = 65_536;
/// The most metadata entries one credential carries.
pub const MAX_METADATA_ENTRIES: usize = 16;
/// The longest metadata key, in bytes. Keys follow the id pattern
/// `^[a-zA-Z0-9\-_.]+$`.
pub const MAX_METADATA_KEY_BYTES: usize = 64;
/// The longest metadata value, in bytes of UTF-8. Values are any UTF-8 text
/// without control characters.
pub const MAX_METADATA_VALUE_BYTES: usize = 256;
/// The most bytes all metadata keys and values of one credential add up to.
pub const MAX_METADATA_TOTAL_BYTES: usize = 900;

/// Checks a value against [`MAX_VALUE_BYTES`]. Backends call this first in
/// `set`, before any I/O.
///
/// # Errors
/// [`Error::InvalidInput`] on field `value`; the message gives the sizes, never
/// the value.
pub fn check_value(value: &SecretValue) -> Result<(), Error> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::InvalidInput {
            field: "value".into(),
            reason: format!("is {} bytes; the limit is {MAX_VALUE_BYTES}", value.len()),
        });
    }
    Ok(())
}

/// String-to-string metadata kept beside a credential, such as
/// `{"owner": "payments", "rotated-by": "ci"}`. Metadata is not secret: it
/// appears in listings of metadata and may be logged.
///
/// A `Metadata` can only hold entries within the limits of this module, so
/// every backend accepts exactly the same inputs. Entries are kept sorted by key.
///
/// ```
/// use credstore_core::Metadata;
/// let mut m = Metadata::new();
/// m.insert("owner", "payments")?;
/// assert_eq!(m.get("owner"), Some("payments"));
/// assert!(m.insert("bad key", "x").is_err());
/// # Ok::<(), credstore_core::Error>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces one entry.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the metadata key and the limit it breaks;
    /// on error `self` is unchanged.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Result<(), Error> {
        let (key, value) = (key.into(), value.into());
        check_entry(&key, &value)?;
        let old = self.0.insert(key.clone(), value);
        if let Err(e) = check_totals(&self.0) {
            match old {
                Some(old) => self.0.insert(key, old),
                None => self.0.remove(&key),
            };
            return Err(e);
        }
        Ok(())
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        self.0.remove(key)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The entries as a map.
    pub fn as_map(&self) -> &BTreeMap<String, String> {
        &self.0
    }

    /// The entries as a map, by value.
    pub fn into_map(self) -> BTreeMap<String, String> {
        self.0
    }
}

impl TryFrom<BTreeMap<String, String>> for Metadata {
    type Error = Error;

    /// # Errors
    /// [`Error::InvalidInput`] naming the first metadata key or limit that fails.
    fn try_from(map: BTreeMap<String, String>) -> Result<Self, Error> {
        for (k, v) in &map {
            check_entry(k, v)?;
        }
        check_totals(&map)?;
        Ok(Self(map))
    }
}

impl<const N: usize> TryFrom<[(&str, &str); N]> for Metadata {
    type Error = Error;

    /// # Errors
    /// As for `TryFrom<BTreeMap<String, String>>`.
    fn try_from(entries: [(&str, &str); N]) -> Result<Self, Error> {
        let map: BTreeMap<String, String> =
            entries.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Self::try_from(map)
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter()).finish()
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<String, String>::deserialize(deserializer)?;
        Self::try_from(map).map_err(serde::de::Error::custom)
    }
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidInput { field: field.into(), reason: reason.into() }
}

fn check_entry(key: &str, value: &str) -> Result<(), Error> {
    if let Err(e) = crate::validate_id(key) {
        return Err(invalid(format!("metadata key {}", crate::error::shown(key)), e.to_string()));
    }
    if key.len() > MAX_METADATA_KEY_BYTES {
        return Err(invalid(
            format!("metadata key {key:?}"),
            format!("is {} bytes; the limit is {MAX_METADATA_KEY_BYTES}", key.len()),
        ));
    }
    if value.len() > MAX_METADATA_VALUE_BYTES {
        return Err(invalid(
            format!("metadata.{key}"),
            format!("is {} bytes; the limit is {MAX_METADATA_VALUE_BYTES}", value.len()),
        ));
    }
    if let Some((index, ch)) = value.char_indices().find(|(_, c)| c.is_control()) {
        return Err(invalid(
            format!("metadata.{key}"),
            format!("has the control character {ch:?} at byte {index}"),
        ));
    }
    Ok(())
}

fn check_totals(map: &BTreeMap<String, String>) -> Result<(), Error> {
    if map.len() > MAX_METADATA_ENTRIES {
        return Err(invalid(
            "metadata",
            format!("has {} entries; the limit is {MAX_METADATA_ENTRIES}", map.len()),
        ));
    }
    let total: usize = map.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_METADATA_TOTAL_BYTES {
        return Err(invalid(
            "metadata",
            format!("keys and values add up to {total} bytes; the limit is {MAX_METADATA_TOTAL_BYTES}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_enforced_and_failed_insert_changes_nothing() {
        let mut m = Metadata::new();
        m.insert("a", "x".repeat(MAX_METADATA_VALUE_BYTES)).unwrap();
        assert!(m.insert("b", "x".repeat(MAX_METADATA_VALUE_BYTES + 1)).is_err());
        assert!(m.insert("k".repeat(MAX_METADATA_KEY_BYTES + 1), "v").is_err());
        assert!(m.insert("c", "line\nbreak").is_err());
        assert!(m.insert("", "v").is_err());
        assert_eq!(m.len(), 1);
        // Total budget: 3 × (1 + 256) = 771 fits, a fourth pushes past 900.
        m.insert("b", "y".repeat(256)).unwrap();
        m.insert("c", "z".repeat(256)).unwrap();
        let err = m.insert("d", "w".repeat(256)).unwrap_err();
        assert!(err.to_string().contains("900"), "{err}");
        assert_eq!(m.len(), 3);
        assert!(m.get("d").is_none());
    }

    #[test]
    fn entry_count_limit() {
        let mut m = Metadata::new();
        for i in 0..MAX_METADATA_ENTRIES {
            m.insert(format!("k{i}"), "v").unwrap();
        }
        assert!(m.insert("one-more", "v").is_err());
        assert_eq!(m.len(), MAX_METADATA_ENTRIES);
    }

    #[test]
    fn deserialize_validates() {
        assert!(serde_json::from_str::<Metadata>(r#"{"ok":"ünïcode ✓"}"#).is_ok());
        assert!(serde_json::from_str::<Metadata>(r#"{"bad key":"v"}"#).is_err());
    }

    #[test]
    fn largest_metadata_fits_an_escaped_aws_description() {
        // Every character needing an escape doubles it; JSON adds 6 per entry plus braces.
        let worst = 2 * MAX_METADATA_TOTAL_BYTES + 6 * MAX_METADATA_ENTRIES + 2;
        assert!(worst <= 2048, "{worst}");
    }

    #[test]
    fn value_limit() {
        assert!(check_value(&SecretValue::from("x".repeat(MAX_VALUE_BYTES))).is_ok());
        let err = check_value(&SecretValue::from("s".repeat(MAX_VALUE_BYTES + 1))).unwrap_err();
        assert!(!err.to_string().contains("sssss"));
    }
}
