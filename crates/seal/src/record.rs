//! [`KeyRecord`]: what a store keeps of its data key, wrapped.

use credstore_core::{Error, Result, StoreId};

use crate::{DataKey, KeyProvider, StoreUid, WrapContext, WrappedKey, UID_LEN};

const MAGIC: &[u8; 4] = b"CSKR";
const RECORD_VERSION: u8 = 1;

/// A store's key record: its [`StoreUid`], its data key's version, the kind
/// and key of the provider that wrapped the data key, and the wrapped data
/// key. Stored in the clear beside the rows; it holds no key material.
///
/// # Layout
/// `CSKR`, the record version (u8, 1), the uid (16 bytes), the key version
/// (u32 BE), the provider's kind (u8 length and UTF-8 bytes), its key
/// (u16 BE length and UTF-8 bytes), the wrapped key (u16 BE length and
/// bytes). The uid and the key version are bound to the wrapping; the
/// provider's kind and key only make errors clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    uid: StoreUid,
    key_version: u32,
    kind: String,
    key_ref: String,
    wrapped: WrappedKey,
}

impl KeyRecord {
    /// Wraps version `key_version` of the data key `key` of the store
    /// `store` (uid `uid`) with `provider`: one provider call.
    ///
    /// # Errors
    /// Those of [`KeyProvider::wrap`].
    pub async fn wrap(
        store: &StoreId,
        uid: StoreUid,
        key_version: u32,
        key: &DataKey,
        provider: &dyn KeyProvider,
    ) -> Result<Self> {
        let wrapped = provider.wrap(key, &WrapContext::new(store, uid, key_version)).await?;
        let info = provider.info();
        Ok(Self {
            uid,
            key_version,
            kind: info.kind().to_owned(),
            key_ref: info.key_ref().to_owned(),
            wrapped,
        })
    }

    /// Unwraps the data key with `provider`: one provider call.
    ///
    /// # Errors
    /// [`Error::Config`] starting with `wrong key-encryption key` when
    /// `provider` is of another kind than the one that wrapped it (no call
    /// is made then) or does not unwrap it; the others of
    /// [`KeyProvider::unwrap`].
    pub async fn unwrap(&self, store: &StoreId, provider: &dyn KeyProvider) -> Result<DataKey> {
        let context = WrapContext::new(store, self.uid, self.key_version);
        let info = provider.info();
        if info.kind() != self.kind {
            let wrapped_by = if self.key_ref.is_empty() {
                self.kind.clone()
            } else {
                format!("{} {}", self.kind, self.key_ref)
            };
            return Err(crate::wrong_key(
                &context,
                info,
                format_args!("it is wrapped by {wrapped_by}: open the store with that provider"),
            ));
        }
        provider.unwrap(&self.wrapped, &context).await
    }

    /// The same data key wrapped by `provider` instead (a rotation of the
    /// key-encryption key): one provider call.
    ///
    /// # Errors
    /// Those of [`KeyProvider::wrap`].
    pub async fn rewrap(&self, store: &StoreId, key: &DataKey, provider: &dyn KeyProvider) -> Result<Self> {
        Self::wrap(store, self.uid, self.key_version, key, provider).await
    }

    /// The store's uid.
    pub fn uid(&self) -> StoreUid {
        self.uid
    }

    /// The data key's version.
    pub fn key_version(&self) -> u32 {
        self.key_version
    }

    /// The kind of the provider that wrapped the data key.
    pub fn provider_kind(&self) -> &str {
        &self.kind
    }

    /// The key of the provider that wrapped the data key, as it named it.
    pub fn key_ref(&self) -> &str {
        &self.key_ref
    }

    /// The wrapped data key.
    pub fn wrapped(&self) -> &WrappedKey {
        &self.wrapped
    }

    /// The record's bytes (see "Layout").
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(32 + self.kind.len() + self.key_ref.len() + self.wrapped.as_bytes().len());
        out.extend_from_slice(MAGIC);
        out.push(RECORD_VERSION);
        out.extend_from_slice(self.uid.as_bytes());
        out.extend_from_slice(&self.key_version.to_be_bytes());
        out.push(self.kind.len() as u8);
        out.extend_from_slice(self.kind.as_bytes());
        for part in [self.key_ref.as_bytes(), self.wrapped.as_bytes()] {
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    /// Reads a record written by [`KeyRecord::to_bytes`].
    ///
    /// # Errors
    /// [`Error::Config`] naming `store` when the bytes are not such a record
    /// (a damaged or edited store).
    pub fn from_bytes(store: &StoreId, bytes: &[u8]) -> Result<Self> {
        Self::parse(bytes)
            .ok_or_else(|| Error::config(store, "the store's key record is damaged: it cannot be read"))
    }

    fn parse(bytes: &[u8]) -> Option<Self> {
        let mut r = bytes;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, tail) = (r.get(..n)?, r.get(n..)?);
            r = tail;
            Some(head)
        };
        if take(4)? != MAGIC || take(1)? != [RECORD_VERSION] {
            return None;
        }
        let uid = StoreUid::from_bytes(take(UID_LEN)?.try_into().ok()?);
        let key_version = u32::from_be_bytes(take(4)?.try_into().ok()?);
        let kind_len = usize::from(take(1)?[0]);
        let kind = std::str::from_utf8(take(kind_len)?).ok()?.to_owned();
        let key_ref_len = usize::from(u16::from_be_bytes(take(2)?.try_into().ok()?));
        let key_ref = std::str::from_utf8(take(key_ref_len)?).ok()?.to_owned();
        let wrapped_len = usize::from(u16::from_be_bytes(take(2)?.try_into().ok()?));
        let wrapped = WrappedKey::new(take(wrapped_len)?.to_vec()).ok()?;
        if !r.is_empty() || key_version == 0 || kind.is_empty() {
            return None;
        }
        Some(Self { uid, key_version, kind, key_ref, wrapped })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MasterKey;

    #[tokio::test]
    async fn a_record_round_trips_and_unwraps_only_with_its_key_and_uid() {
        let store = StoreId::new("s").unwrap();
        let kek = MasterKey::generate();
        let dek = DataKey::generate();
        let uid = StoreUid::generate();
        let record = KeyRecord::wrap(&store, uid, 1, &dek, &kek).await.unwrap();
        let back = KeyRecord::from_bytes(&store, &record.to_bytes()).unwrap();
        assert_eq!(back, record);
        assert_eq!(back.unwrap(&store, &kek).await.unwrap().expose_secret(), dek.expose_secret());
        let err = back.unwrap(&store, &MasterKey::generate()).await.unwrap_err();
        assert!(err.to_string().contains("wrong key-encryption key"), "{err}");
        // The same wrapped key under another uid or version does not unwrap.
        let mut other = record.clone();
        other.uid = StoreUid::generate();
        assert!(other.unwrap(&store, &kek).await.is_err(), "another store's uid");
        other = record.clone();
        other.key_version = 2;
        assert!(other.unwrap(&store, &kek).await.is_err(), "another key version");
        for cut in 0..record.to_bytes().len() {
            assert!(KeyRecord::from_bytes(&store, &record.to_bytes()[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn a_provider_of_another_kind_is_refused_without_a_call() {
        let store = StoreId::new("s").unwrap();
        let record =
            KeyRecord::wrap(&store, StoreUid::generate(), 1, &DataKey::generate(), &MasterKey::generate())
                .await
                .unwrap();
        let pass = MasterKey::from_passphrase(&credstore_core::SecretValue::from("a passphrase"));
        let err = record.unwrap(&store, &pass).await.unwrap_err().to_string();
        assert!(err.contains("wrong key-encryption key") && err.contains("wrapped by master-key"), "{err}");
    }
}
