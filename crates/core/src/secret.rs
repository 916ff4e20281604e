//! [`SecretValue`]: a credential's value, redacted and zeroized.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The buffer behind a [`SecretValue`]: the bytes and whether they are UTF-8,
/// decided once when the value is made.
struct Inner {
    bytes: Zeroizing<Vec<u8>>,
    utf8: bool,
}

/// The value of a credential: an API key, token, password or binary key.
///
/// - A value is bytes. UTF-8 text is the common case: build it from a
///   `String` or `&str`, read it with [`SecretValue::expose_str`], which is a
///   typed error ([`crate::Error::NotText`]) for a binary value, never a lossy
///   conversion. Read any value with [`SecretValue::expose_secret`].
/// - Its memory is zeroized when the last clone is dropped. Clones share
///   one immutable buffer, so cloning never copies the secret: a store can
///   hand out its value without leaving more copies in memory.
/// - `Debug` prints `SecretValue([REDACTED; N bytes])`; there is no `Display`.
/// - It deserializes from a string but does not implement `Serialize`: to
///   write one out, call an `expose_*` method on purpose, or use [`expose`]
///   with `#[serde(serialize_with = "...")]`.
/// - Equality is compared in constant time.
///
/// ```
/// use credstore_core::SecretValue;
/// let text = SecretValue::from("hunter2");
/// assert_eq!(text.expose_str()?, "hunter2");
/// assert!(!format!("{text:?}").contains("hunter2"));
///
/// let key = SecretValue::from_bytes(vec![0xde, 0xad, 0xbe, 0xef]);
/// assert_eq!(key.expose_secret(), &[0xde, 0xad, 0xbe, 0xef]);
/// assert!(!key.is_text());
/// assert!(key.expose_str().is_err());
/// # Ok::<(), credstore_core::Error>(())
/// ```
#[derive(Clone)]
pub struct SecretValue(Arc<Inner>);

impl SecretValue {
    /// Wraps `value`, text or bytes. Its buffer is zeroized when the last
    /// clone drops. Whether it is text is decided here, once.
    pub fn new(value: impl Into<Vec<u8>>) -> Self {
        Self::from_bytes(value.into())
    }

    /// Wraps UTF-8 text without checking it again.
    pub fn from_text(text: String) -> Self {
        Self(Arc::new(Inner { bytes: Zeroizing::new(text.into_bytes()), utf8: true }))
    }

    /// Wraps bytes, which may or may not be UTF-8.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        let utf8 = std::str::from_utf8(&bytes).is_ok();
        Self(Arc::new(Inner { bytes: Zeroizing::new(bytes), utf8 }))
    }

    /// Builds a value from bytes that must be UTF-8 text; the input buffer
    /// is zeroized in every case, including when it is not UTF-8.
    ///
    /// # Errors
    /// [`crate::Error::NotText`] when the bytes are not UTF-8. The error does
    /// not contain the bytes.
    pub fn from_utf8(bytes: Vec<u8>) -> Result<Self, crate::Error> {
        let value = Self::from_bytes(bytes);
        value.expose_str()?;
        Ok(value)
    }

    /// The secret's bytes. Call this only where the value must leave the
    /// process: to send it to a backend or to hand it to its user.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0.bytes
    }

    /// The secret as text, for values that are UTF-8 (the common case).
    ///
    /// # Errors
    /// [`crate::Error::NotText`] for a binary value; nothing is lost, read
    /// it with [`SecretValue::expose_secret`].
    pub fn expose_str(&self) -> Result<&str, crate::Error> {
        if self.0.utf8 {
            // Checked once at construction, so this conversion cannot fail.
            return Ok(std::str::from_utf8(&self.0.bytes).unwrap_or_default());
        }
        let valid_up_to = match std::str::from_utf8(&self.0.bytes) {
            Ok(_) => self.0.bytes.len(),
            Err(e) => e.valid_up_to(),
        };
        Err(crate::Error::NotText { valid_up_to })
    }

    /// Whether the value is UTF-8 text.
    pub fn is_text(&self) -> bool {
        self.0.utf8
    }

    /// The length of the value in bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.bytes.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.bytes.is_empty()
    }
}

impl Default for SecretValue {
    fn default() -> Self {
        Self::from_text(String::new())
    }
}

impl From<String> for SecretValue {
    fn from(value: String) -> Self {
        Self::from_text(value)
    }
}

impl From<&str> for SecretValue {
    fn from(value: &str) -> Self {
        Self::from_text(value.to_owned())
    }
}

impl From<Vec<u8>> for SecretValue {
    fn from(value: Vec<u8>) -> Self {
        Self::from_bytes(value)
    }
}

impl From<&[u8]> for SecretValue {
    fn from(value: &[u8]) -> Self {
        Self::from_bytes(value.to_vec())
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue([REDACTED; {} bytes])", self.0.bytes.len())
    }
}

impl PartialEq for SecretValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.bytes.as_slice().ct_eq(other.0.bytes.as_slice()).into()
    }
}

impl Eq for SecretValue {}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from_text)
    }
}

/// Serializes a text [`SecretValue`] as its plain string. An explicit opt-in
/// for fields that must carry the secret, such as a backend's wire format. A
/// binary value is a serialization error (encode it yourself, for example as
/// base64).
///
/// ```
/// use credstore_core::SecretValue;
/// #[derive(serde::Serialize)]
/// struct Wire<'a> {
///     #[serde(serialize_with = "credstore_core::secret::expose")]
///     value: &'a SecretValue,
/// }
/// let v = SecretValue::from("s3cr3t");
/// let json = serde_json::to_string(&Wire { value: &v }).unwrap();
/// assert_eq!(json, r#"{"value":"s3cr3t"}"#);
/// assert!(serde_json::to_string(&Wire { value: &SecretValue::from(vec![0xff]) }).is_err());
/// ```
pub fn expose<S: serde::Serializer>(value: &SecretValue, serializer: S) -> Result<S::Ok, S::Error> {
    let text = value.expose_str().map_err(serde::ser::Error::custom)?;
    serializer.serialize_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_buffer_and_stay_redacted() {
        let a = SecretValue::from("shared-secret");
        let b = a.clone();
        assert_eq!(a.expose_secret().as_ptr(), b.expose_secret().as_ptr(), "a clone copied the secret");
        assert!(a == b);
        assert!(a != SecretValue::from("other"));
        assert_eq!(format!("{b:?}"), "SecretValue([REDACTED; 13 bytes])");
    }

    #[test]
    fn non_utf8_input_is_refused_without_echoing_it() {
        let err = SecretValue::from_utf8(vec![b's', b'3', 0xff]).unwrap_err();
        assert!(matches!(err, crate::Error::NotText { valid_up_to: 2 }), "{err:?}");
        assert!(!err.to_string().contains("s3"), "{err}");
    }

    #[test]
    fn binary_and_text_are_told_apart_once() {
        let every_byte: Vec<u8> = (0..=255).collect();
        let v = SecretValue::new(every_byte.clone());
        assert!(!v.is_text());
        assert_eq!(v.expose_secret(), every_byte.as_slice());
        assert!(matches!(v.expose_str(), Err(crate::Error::NotText { valid_up_to: 128 })));
        // UTF-8 bytes are text, whichever constructor made them.
        let t = SecretValue::new(b"plain".to_vec());
        assert!(t.is_text());
        assert_eq!(t.expose_str().unwrap(), "plain");
        assert!(SecretValue::new(String::from("é")).is_text());
        assert!(SecretValue::default().is_text() && SecretValue::default().is_empty());
        // Equal bytes are equal values.
        assert!(SecretValue::from(&b"abc"[..]) == SecretValue::from("abc"));
    }
}
