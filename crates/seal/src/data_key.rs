//! [`DataKey`]: the random key that seals a store's rows, and [`StoreUid`]:
//! the random id that binds them to their store.

use std::fmt;

use zeroize::Zeroizing;

/// The length of every key this crate handles (data keys and local
/// key-encryption keys), in bytes: AES-256.
pub const KEY_LEN: usize = 32;

/// A store's data key (DEK): 32 random bytes for AES-256-GCM that seal every
/// row of one store, never stored in the clear. A [`KeyProvider`] wraps it
/// for the store's key record and unwraps it once when the store opens.
///
/// The bytes live in a buffer wiped on drop; `Debug` prints
/// `DataKey([REDACTED])`.
///
/// [`KeyProvider`]: crate::KeyProvider
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl DataKey {
    /// A fresh random data key from the operating system's generator.
    ///
    /// # Panics
    /// When the operating system has no random generator to offer, which no
    /// supported platform lacks.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(&mut key[..]).expect("the operating system's random generator failed");
        Self(key)
    }

    /// A data key from its 32 bytes, as a provider's unwrapping gives them.
    /// Take the bytes from a zeroizing buffer: this copy is wiped on drop,
    /// the caller's is the caller's to wipe.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        Self(Zeroizing::new(*bytes))
    }

    /// A data key from a slice that must be exactly 32 bytes long; `None`
    /// otherwise (a provider that answered with something else).
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; KEY_LEN] = bytes.try_into().ok()?;
        Some(Self::from_bytes(bytes))
    }

    /// The key's bytes, for a provider to wrap. Handle them as the secret
    /// they are: copy them only into zeroizing buffers.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([REDACTED])")
    }
}

/// The length of a [`StoreUid`], in bytes.
pub const UID_LEN: usize = 16;

/// A random 128-bit id drawn when a store is created and bound into the
/// associated data of every row and into the wrapping of its data key, so a
/// row or a key record moved to another store fails authentication.
///
/// Not a secret: it is stored in the clear and shown in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoreUid([u8; UID_LEN]);

impl StoreUid {
    /// A fresh random id.
    ///
    /// # Panics
    /// When the operating system has no random generator to offer.
    pub fn generate() -> Self {
        let mut uid = [0u8; UID_LEN];
        getrandom::fill(&mut uid).expect("the operating system's random generator failed");
        Self(uid)
    }

    /// The id of these bytes, as read back from a key record.
    pub const fn from_bytes(bytes: [u8; UID_LEN]) -> Self {
        Self(bytes)
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8; UID_LEN] {
        &self.0
    }

    /// The id as 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Display for StoreUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for StoreUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUid({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_keys_debug_never_shows_its_bytes() {
        let key = DataKey::from_bytes(&[0xAB; KEY_LEN]);
        assert_eq!(format!("{key:?}"), "DataKey([REDACTED])");
        assert!(DataKey::from_slice(&[1; 31]).is_none());
        assert_eq!(DataKey::from_slice(&[1; 32]).unwrap().expose_secret(), &[1; 32]);
        assert_ne!(DataKey::generate().expose_secret(), DataKey::generate().expose_secret());
    }

    #[test]
    fn a_store_uid_shows_as_hex() {
        let uid = StoreUid::from_bytes([0x0f; UID_LEN]);
        assert_eq!(uid.to_string(), "0f".repeat(16));
        assert_eq!(format!("{uid:?}"), format!("StoreUid({})", "0f".repeat(16)));
        assert_ne!(StoreUid::generate(), StoreUid::generate());
    }
}
