//! The keys of one opened database: the data key in force and its cipher,
//! the one a rotation moves to, and the key-encryption key that wraps it.

use std::sync::Arc;

use credstore_seal::{DataKey, KeyProvider, KeyRecord, RowCipher};

/// The data key versions in use: the current one, and during a rotation the
/// next one, which rows committed by the rotation already carry.
pub(crate) struct Keys {
    pub current: Arc<RowCipher>,
    pub pending: Option<Arc<RowCipher>>,
    /// The current data key, for a rewrap; `None` while the database is in
    /// the format of 0.2 (rows sealed directly under the master key).
    pub dek: Option<DataKey>,
    /// The key-encryption key that wraps the current data key.
    pub provider: Arc<dyn KeyProvider>,
    /// For a database of 0.2: the data key its first write moves it to.
    pub upgrade: Option<Arc<Prepared>>,
}

/// A data key ready to take over: its cipher, the key and its record,
/// wrapped before the writer thread is asked (a provider call may wait on
/// the network; the writer never does).
pub(crate) struct Prepared {
    pub cipher: Arc<RowCipher>,
    pub dek: DataKey,
    pub record: KeyRecord,
    pub provider: Arc<dyn KeyProvider>,
}
