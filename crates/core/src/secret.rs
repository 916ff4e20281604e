//! [`SecretValue`]: a credential's value, redacted and zeroized.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

/// The value of a credential: an API key, token or password.
///
/// - Its memory is zeroized when the last clone is dropped. Clones share
///   one immutable buffer, so cloning never copies the secret: a store can
///   hand out its value without leaving more copies in memory.
/// - `Debug` prints `SecretValue([REDACTED; N bytes])`; there is no `Display`.
/// - It deserializes from a string but does not implement `Serialize`: to
///   write one out, call [`SecretValue::expose_secret`] on purpose, or use
///   [`expose`] with `#[serde(serialize_with = "...")]`.
/// - Equality is compared in constant time.
///
/// ```
/// use credstore_core::SecretValue;
/// let v = SecretValue::from("hunter2");
/// assert_eq!(v.expose_secret(), "hunter2");
/// assert!(!format!("{v:?}").contains("hunter2"));
/// ```
#[derive(Clone, Default)]
pub struct SecretValue(Arc<Zeroizing<String>>);

impl SecretValue {
    /// Wraps `value`. Its buffer is zeroized when the `SecretValue` drops.
    pub fn new(value: String) -> Self {
        Self(Arc::new(Zeroizing::new(value)))
    }

    /// Builds a value from bytes that must be UTF-8; the input buffer is
    /// zeroized in every case, including when it is not UTF-8.
    ///
    /// # Errors
    /// [`crate::Error::InvalidInput`] when the bytes are not UTF-8. The error
    /// does not contain the bytes.
    pub fn from_utf8(bytes: Vec<u8>) -> Result<Self, crate::Error> {
        match String::from_utf8(bytes) {
            Ok(s) => Ok(Self::new(s)),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                e.into_bytes().zeroize();
                Err(crate::Error::InvalidInput {
                    field: "value".into(),
                    reason: format!("is not valid UTF-8 (byte {at})"),
                })
            }
        }
    }

    /// The secret itself. Call this only where the value must leave the
    /// process: to send it to a backend or to hand it to its user.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// The length of the value in bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretValue {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for SecretValue {
    fn from(value: &str) -> Self {
        Self::new(value.to_owned())
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue([REDACTED; {} bytes])", self.0.len())
    }
}

impl PartialEq for SecretValue {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for SecretValue {}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// Serializes a [`SecretValue`] as its plain string. An explicit opt-in for
/// fields that must carry the secret, such as a backend's wire format:
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
/// ```
pub fn expose<S: serde::Serializer>(value: &SecretValue, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value.expose_secret())
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
        let err = SecretValue::from_utf8(vec![b's', b'3', 0xff]).unwrap_err().to_string();
        assert!(err.contains("byte 2") && !err.contains("s3"), "{err}");
    }
}
