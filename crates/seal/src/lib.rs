//! Envelope encryption for credstore's encrypting backends (the encrypted
//! SQLite store today, PostgreSQL next): rows sealed with AES-256-GCM under
//! a random **data key** (DEK) per store, the data key wrapped by a
//! **key-encryption key** (KEK) that a [`KeyProvider`] keeps, ideally off
//! the machine that holds the data.
//!
//! ```
//! use credstore_core::StoreId;
//! use credstore_seal::{DataKey, KeyRecord, MasterKey, RowCipher, RowPlace, StoreUid, ValueKind};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> credstore_core::Result<()> {
//! let store = StoreId::new("team")?;
//! let kek = MasterKey::generate(); // or a keychain, AWS KMS or Vault Transit provider
//! // A new store: a random uid and data key, the data key wrapped once.
//! let (uid, dek) = (StoreUid::generate(), DataKey::generate());
//! let record = KeyRecord::wrap(&store, uid, 1, &dek, &kek).await?;
//! // Store `record.to_bytes()` beside the rows. At the next open, one
//! // provider call gives the data key back:
//! let dek = record.unwrap(&store, &kek).await?;
//! let rows = RowCipher::new(&dek, record.key_version(), record.uid());
//! let place = RowPlace::new("", "api-key", 1, 1, 1, ValueKind::Text);
//! let (nonce, sealed) = rows.seal_row(&place, b"payload").expect("sealed");
//! assert_eq!(&rows.open_row(&place, &nonce, &sealed).expect("opens")[..], b"payload");
//! # Ok(()) }
//! ```
//!
//! # Keys
//! - **Data key**: 32 random bytes drawn when the store is created
//!   ([`DataKey::generate`]), never written unwrapped. A store unwraps it
//!   once when it opens; a read or a write makes no provider call.
//! - **Store uid**: 16 random bytes drawn with it ([`StoreUid`]), stored in
//!   the clear, bound into every row's associated data, the check value and
//!   the wrapping of the data key.
//! - **Key-encryption key**: whatever the [`KeyProvider`] holds. In this
//!   crate, [`MasterKey`]: a 32-byte key (a key file, an environment
//!   variable, bytes) or a passphrase stretched with Argon2id ([`KdfParams`]).
//!   The OS keychain, AWS KMS and Vault / OpenBao Transit providers live in
//!   the crates of those services.
//! - **Key record** ([`KeyRecord`]): the uid, the data key's version, the
//!   provider's kind and key name, and the wrapped data key.
//!
//! # Rotation, in two kinds
//! - **Key-encryption key rotation** rewraps the data key under a new KEK
//!   (or another provider): one provider call, one small record written, no
//!   row touched ([`KeyRecord::rewrap`]).
//! - **Data key rotation** draws a new data key and re-seals every row under
//!   it, bumping the key version; the uid stays.
//!
//! Rotate the KEK to move to another provider or on a schedule; rotate the
//! data key when a KEK, or a copy of the file together with a KEK, may have
//! leaked: with the old KEK and an old key record, the data key of every
//! later record is the same one until it is rotated.
//!
//! # Threat model
//! An attacker who can **read the file** (a backup, a stolen disk) learns
//! the namespaces, keys, timestamps, versions, kinds and value sizes, which
//! are stored in the clear, and nothing of any value or metadata without
//! the KEK: the data key is only stored wrapped. With a provider that keeps
//! the KEK off the machine (AWS KMS, Transit), reading the whole machine's
//! disk is not enough either; with a key file beside the database it is.
//!
//! An attacker who can **write the file** cannot make a store return a
//! value that was never written to that store under that key: each of these
//! edits fails authentication, and the store answers `Integrity` naming the
//! key (or refuses to open), never a wrong value:
//! - flipping any byte of a sealed value, its nonce, or the key record's
//!   wrapped data key;
//! - editing a row's timestamps, version, kind, key version or expiry
//!   (stripping it, adding one, moving it);
//! - moving a row of a key's **history** over its current row, or the
//!   current row into the history (each row binds its [`RowRole`]);
//! - moving a row to another key or namespace, or swapping two rows;
//! - copying a row from **another store**, even one whose data key is
//!   wrapped by the same KEK: the stores' uids and data keys differ;
//! - editing the uid in the key record (the check value binds it).
//! - editing the row set record (it is authenticated under the data key).
//!
//! Whether a row is **current** is a property of the whole store, not of
//! the row, so a store also keeps a **row set** ([`RowSet`]): an
//! authenticated digest of every row's place and version, with the number of
//! rows and the last version handed out, updated by every write in its
//! transaction. Checked at every opening and on demand (`verify`), it
//! catches:
//! - a row **put back** to an older sealed copy of itself (version 1 over
//!   version 2): the copy authenticates as a row, but the store's digest
//!   no longer matches;
//! - a row **removed**, or a deleted row put back;
//! - an older row set record put back together with its row, as soon as
//!   any later write remains (its version is newer than the record's).
//!
//! What such an attacker **can** still do, and no format can prevent without
//! state kept outside the file:
//! - between two checks, make an **open** store read a row put back (reads
//!   open the row only; checking the digest per read would cost a scan);
//!   the next check or opening refuses the store;
//! - **roll the whole file back** to an earlier copy (or every part the
//!   digest covers, together): it is a valid older store in every part;
//! - **delete the file**, or make it unreadable.
//!
//! Cost of the row set: per write, four AES-CMAC evaluations of the old and
//! the new row (a few AES blocks each); per transaction, one small record
//! read and written; per check, one pass over the clear columns of every
//! row.
//!
//! An attacker with **the KEK** and a copy of the file (or of the key
//! record) reads every value sealed under that data key; rotate the data key
//! after a KEK leaks. An attacker with the KEK alone (the provider's key,
//! without the file) holds nothing.
//!
//! # Errors
//! Every error is a [`credstore_core::Error`] naming the store; a wrong KEK
//! is an [`Error::Config`](credstore_core::Error::Config) whose message
//! starts with `wrong key-encryption key` ([`wrong_key`]), and changes
//! nothing.
#![warn(missing_docs)]

mod data_key;
mod key_source;
mod master_key;
mod provider;
mod record;
mod row;
mod row_set;

pub use data_key::{DataKey, StoreUid, KEY_LEN, UID_LEN};
pub use key_source::{KeyFields, KeySource};
pub use master_key::{KdfParams, KeyBytes, KeyFile, MasterKey, SALT_LEN};
pub use provider::{
    wrong_key, KeyLocation, KeyProvider, ProviderInfo, WrapContext, WrappedKey, MAX_WRAPPED_LEN,
};
pub use record::KeyRecord;
pub use row::{
    decode_metadata, decode_payload, decode_payload_owned, encode_payload, RowCipher, RowPlace, RowRole,
    ValueKind, FORMAT_V1, FORMAT_V2, FORMAT_V3, FORMAT_VERSION, NONCE_LEN,
};
pub use row_set::{Digest, RowSet, RowSetState, ROW_SET_RECORD_LEN};

/// Helpers for key and passphrase files, shared with the backends that read
/// them: owner-only checks and crash-safe writes.
pub mod files {
    pub use crate::master_key::{check_mode, parent_dir, sync_dir, weak_stored_params, write_key_file};
}
