//! Sealing rows with AES-256-GCM: [`RowCipher`].
//!
//! A row's value and metadata are encoded into one plaintext (see
//! [`encode_payload`]) and sealed with a fresh random 96-bit nonce. The
//! associated data binds the row format, the data key's version, the
//! store's uid, the namespace, the credential key, both timestamps, the
//! row's version and whether the value is text or binary, so a ciphertext
//! moved to another row, another namespace, another key version or another
//! store fails to open, and so does a row whose timestamps, version or kind
//! were edited.
//!
//! Row format 4 is sealed under a store's data key, binds its uid, and also
//! the row's [`RowRole`] (the current row of a key, or a row of its history)
//! and its expiry (none, or an instant): a history row's ciphertext cannot be
//! passed off as the current row, and an expiry cannot be stripped or moved.
//! Format 3 (before histories and expiry) was the same without the role and
//! the expiry: such a row opens as a current row without expiry, and as
//! nothing else. Format 2 (credstore-sqlite 0.2) was sealed directly under
//! the master key and bound no uid; format 1 (0.1) bound neither the version
//! nor the kind. Rows of formats 1 to 3 are only opened, to be read or to be
//! re-sealed in format 4.

use std::collections::BTreeMap;

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{AesGcm, Nonce};
use credstore_core::{Metadata, SecretValue};
use zeroize::Zeroizing;

use crate::{DataKey, KeyBytes, RowSet, StoreUid};

/// The row format this crate seals: the associated data of rows under a
/// store's data key, with its uid, the row's role and its expiry.
pub const FORMAT_VERSION: u8 = 4;
/// The row format before histories and expiry: under a store's data key,
/// with its uid, no role and no expiry. Such a row opens as a current row
/// without expiry ([`RowCipher::open_row`]).
pub const FORMAT_V3: u8 = 3;
/// The row format of 0.2: sealed under the master key, no uid bound.
pub const FORMAT_V2: u8 = 2;
/// The row format of 0.1 (schema 1 of credstore-sqlite): no version or
/// kind bound, text values only.
pub const FORMAT_V1: u8 = 1;
/// The first byte of a payload of row formats 2 to 4 (its layout has not
/// changed since format 2).
const PAYLOAD_FORMAT: u8 = 2;
/// The format byte bound into the check value's associated data; it has not
/// changed since format 1, so a database keeps its check value across
/// migrations.
const CHECK_FORMAT: u8 = 1;
/// Nonce length in bytes.
pub const NONCE_LEN: usize = 12;

const ROW_DOMAIN: &[u8] = b"credstore-sqlite/row\0";
/// Associated data up to this length is built on the stack: enough for the
/// longest namespace (512 bytes) and key (255 bytes) a handle can name.
const AAD_STACK: usize = 1024;
const CHECK_DOMAIN: &[u8] = b"credstore-sqlite/check\0";
const CHECK_PLAINTEXT: &[u8] = b"credstore-sqlite master key check";

/// The block cipher under every seal. With aes's `zeroize` feature (turned
/// on in this crate's manifest) its expanded key schedule is wiped when it is
/// dropped.
type BlockCipher = aes::Aes256;

/// AES-256-GCM with a 96-bit nonce (`aes_gcm::Aes256Gcm`, spelled out so
/// that the block cipher's type is the one checked in the tests).
type Aes256Gcm = AesGcm<BlockCipher, U12>;

/// One version of a store's data key, ready to seal and open its rows.
///
/// The expanded AES key schedule is wiped when it is dropped.
pub struct RowCipher {
    version: u32,
    aead: Aes256Gcm,
    /// The store's uid; `None` for a cipher of row format 2.
    uid: Option<StoreUid>,
    /// The row set's function of this key version; `None` for format 2.
    row_set: Option<RowSet>,
}

/// Whether a value is UTF-8 text or binary; bound into a row's seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// UTF-8 text.
    Text,
    /// Any bytes.
    Binary,
}

impl ValueKind {
    /// The kind of `value`.
    pub fn of(value: &SecretValue) -> Self {
        if value.is_text() {
            ValueKind::Text
        } else {
            ValueKind::Binary
        }
    }

    /// Its name: `text` or `binary`.
    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::Text => "text",
            ValueKind::Binary => "binary",
        }
    }

    /// Parses a name of [`ValueKind::as_str`]; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(ValueKind::Text),
            "binary" => Some(ValueKind::Binary),
            _ => None,
        }
    }

    fn code(self) -> u8 {
        match self {
            ValueKind::Text => 0,
            ValueKind::Binary => 1,
        }
    }
}

/// Which row of a key a sealed row is, bound into its seal since row
/// format 4: a history row moved over the current row (or the other way)
/// fails authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowRole {
    /// The row a read of the key returns.
    Current,
    /// A kept version in the key's history (the current version's own copy
    /// included, where a store keeps one).
    History,
}

impl RowRole {
    fn code(self) -> u8 {
        match self {
            RowRole::Current => 0,
            RowRole::History => 1,
        }
    }
}

/// Where a row is, when it was written, its version and kind, its role and
/// its expiry: everything its seal binds besides the format, the key version
/// and the store's uid.
///
/// [`RowPlace::new`] makes the place of a current row without expiry; the
/// fields are public, so a struct literal names every one.
#[derive(Debug, Clone, Copy)]
pub struct RowPlace<'a> {
    /// The namespace, `""` for the root.
    pub ns: &'a str,
    /// The credential key.
    pub key: &'a str,
    /// When it was created, in nanoseconds since the Unix epoch.
    pub created_ns: i64,
    /// When it was last written, in nanoseconds since the Unix epoch.
    pub updated_ns: i64,
    /// The row's version.
    pub version: i64,
    /// Text or binary.
    pub kind: ValueKind,
    /// The current row, or a row of the key's history (format 4 on).
    pub role: RowRole,
    /// When the row's value expires, in nanoseconds since the Unix epoch;
    /// `None` when it does not (format 4 on).
    pub expires_ns: Option<i64>,
}

impl<'a> RowPlace<'a> {
    /// The place of the current row at `ns`/`key`, without expiry.
    pub fn new(
        ns: &'a str,
        key: &'a str,
        created_ns: i64,
        updated_ns: i64,
        version: i64,
        kind: ValueKind,
    ) -> Self {
        Self { ns, key, created_ns, updated_ns, version, kind, role: RowRole::Current, expires_ns: None }
    }

    /// Returns a copy with the role `role`.
    pub fn with_role(mut self, role: RowRole) -> Self {
        self.role = role;
        self
    }

    /// Returns a copy expiring at `expires_ns` (nanoseconds since the Unix
    /// epoch), or never for `None`.
    pub fn with_expiry(mut self, expires_ns: Option<i64>) -> Self {
        self.expires_ns = expires_ns;
        self
    }

    /// Whether a row of format 3, which binds no role and no expiry, may
    /// stand at this place: a current row that does not expire.
    fn fits_format_3(&self) -> bool {
        self.role == RowRole::Current && self.expires_ns.is_none()
    }
}

impl RowCipher {
    /// Version `version` of the data key `key` of the store `uid`: seals
    /// rows in format 4, opens rows of formats 3 and 4.
    pub fn new(key: &DataKey, version: u32, uid: StoreUid) -> Self {
        let aead = Aes256Gcm::new_from_slice(&key.expose_secret()[..]).expect("a 32-byte key fits AES-256");
        Self { version, aead, uid: Some(uid), row_set: Some(RowSet::new(key, uid, version)) }
    }

    /// Version `version` of a master key of 0.2, which sealed rows directly
    /// (format 2, no uid): to open a 0.2 database's rows before they are
    /// re-sealed under a data key.
    pub fn legacy(key: &KeyBytes, version: u32) -> Self {
        let aead = Aes256Gcm::new_from_slice(&key[..]).expect("a 32-byte key fits AES-256");
        Self { version, aead, uid: None, row_set: None }
    }

    /// The key version this cipher seals under.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The row format it seals: [`FORMAT_VERSION`], or [`FORMAT_V2`] for a
    /// [`RowCipher::legacy`] one.
    pub fn format(&self) -> u8 {
        if self.uid.is_some() {
            FORMAT_VERSION
        } else {
            FORMAT_V2
        }
    }

    /// The store's uid; `None` for a [`RowCipher::legacy`] cipher.
    pub fn uid(&self) -> Option<StoreUid> {
        self.uid
    }

    /// The [`RowSet`] function of this data key version; `None` for a
    /// [`RowCipher::legacy`] cipher.
    pub fn row_set(&self) -> Option<&RowSet> {
        self.row_set.as_ref()
    }

    /// The associated data of a row: the domain, the format version, the
    /// key version (u32 BE), since format 3 the store's uid (16 bytes), the
    /// namespace and the key (each u16 BE length and bytes), both timestamps
    /// (i64 BE nanoseconds), then, since format 2, the row version (i64 BE)
    /// and the kind (u8: 0 text, 1 binary), then, since format 4, the role
    /// (u8: 0 current, 1 history) and the expiry (u8 0 and i64 0 for none,
    /// u8 1 and the instant as i64 BE nanoseconds).
    /// Built on the stack when it fits (it does for every namespace and key
    /// a handle can name), and handed to `f`.
    fn with_row_aad<R>(&self, format: u8, place: &RowPlace<'_>, f: impl FnOnce(&[u8]) -> R) -> R {
        let len = ROW_DOMAIN.len() + 1 + 4 + 16 + 4 + place.ns.len() + place.key.len() + 25 + 10;
        let mut stack = [0u8; AAD_STACK];
        let mut heap = Vec::new();
        let buf: &mut [u8] = if len <= AAD_STACK {
            &mut stack[..]
        } else {
            heap.resize(len, 0);
            &mut heap[..]
        };
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            buf[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(ROW_DOMAIN);
        put(&[format]);
        put(&self.version.to_be_bytes());
        if format >= 3 {
            put(self.uid.as_ref().map(StoreUid::as_bytes).unwrap_or(&[0; 16]));
        }
        for part in [place.ns, place.key] {
            put(&(part.len() as u16).to_be_bytes());
            put(part.as_bytes());
        }
        put(&place.created_ns.to_be_bytes());
        put(&place.updated_ns.to_be_bytes());
        if format >= 2 {
            put(&place.version.to_be_bytes());
            put(&[place.kind.code()]);
        }
        if format >= 4 {
            put(&[place.role.code(), u8::from(place.expires_ns.is_some())]);
            put(&place.expires_ns.unwrap_or(0).to_be_bytes());
        }
        f(&buf[..at])
    }

    /// Seals `plaintext` for the row at `place` in [`RowCipher::format`]: a
    /// fresh nonce and the ciphertext with its tag.
    ///
    /// # Errors
    /// A message when the random generator or AES-GCM fails, or when a
    /// [`RowCipher::legacy`] cipher (format 2, which binds no role or
    /// expiry) is asked to seal a history row or a row with an expiry.
    pub fn seal_row(
        &self,
        place: &RowPlace<'_>,
        plaintext: &[u8],
    ) -> Result<([u8; NONCE_LEN], Vec<u8>), String> {
        if self.format() < 4 && !place.fits_format_3() {
            return Err(format!(
                "row format {} binds no role or expiry: it cannot seal a history row or an expiring one",
                self.format()
            ));
        }
        let nonce = fresh_nonce()?;
        let sealed = self
            .with_row_aad(self.format(), place, |aad| {
                self.aead.encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            })
            .map_err(|_| "AES-GCM refused to seal the row".to_owned())?;
        Ok((nonce, sealed))
    }

    /// Opens a row sealed by [`RowCipher::seal_row`] with this key version,
    /// or, for a data key's cipher and a `place` of a current row without
    /// expiry, a row of format 3 written before format 4 (for stores that
    /// keep no format per row). `None` when it fails authentication.
    ///
    /// A format 4 row never opens as format 3 (the format byte is bound),
    /// so a history row or an expiring row cannot be passed off as an older
    /// current row.
    pub fn open_row(&self, place: &RowPlace<'_>, nonce: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        self.open_row_format(self.format(), place, nonce, sealed).or_else(|| {
            (self.format() == FORMAT_VERSION && place.fits_format_3())
                .then(|| self.open_row_format(FORMAT_V3, place, nonce, sealed))
                .flatten()
        })
    }

    /// Opens a row sealed in row format `format` (a migration reads format
    /// 1, whose associated data has no version or kind, with a legacy
    /// cipher; a store that records each row's format opens format 3 rows
    /// this way). Rows of formats 1 to 3 bind no role or expiry: for a
    /// `place` of a history row or with an expiry they never open.
    pub fn open_row_format(
        &self,
        format: u8,
        place: &RowPlace<'_>,
        nonce: &[u8],
        sealed: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        if format < 4 && !place.fits_format_3() {
            return None;
        }
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        // Decrypted in place, in a zeroizing buffer from the start.
        let mut buf = Zeroizing::new(sealed.to_vec());
        self.with_row_aad(format, place, |aad| {
            self.aead.decrypt_in_place(Nonce::from_slice(&nonce), aad, &mut *buf)
        })
        .ok()?;
        Some(buf)
    }

    fn check_aad(&self) -> Vec<u8> {
        let mut aad = CHECK_DOMAIN.to_vec();
        aad.push(CHECK_FORMAT);
        aad.extend_from_slice(&self.version.to_be_bytes());
        if let Some(uid) = &self.uid {
            aad.extend_from_slice(uid.as_bytes());
        }
        aad
    }

    /// A sealed check value: the nonce followed by the sealed text
    /// `credstore-sqlite master key check` and its tag, with the associated
    /// data `credstore-sqlite/check\0`, the byte 1, the key version (u32 BE)
    /// and, in format 3, the uid. A store keeps one to tell a wrong key (or
    /// an edited uid) at once.
    ///
    /// # Errors
    /// A message when the random generator or AES-GCM fails.
    pub fn seal_check(&self) -> Result<Vec<u8>, String> {
        let nonce = fresh_nonce()?;
        let aad = self.check_aad();
        let sealed = self
            .aead
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: CHECK_PLAINTEXT, aad: &aad })
            .map_err(|_| "AES-GCM refused to seal the check value".to_owned())?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Whether `blob` is a check value sealed by this key, version and uid.
    pub fn verify_check(&self, blob: &[u8]) -> bool {
        if blob.len() < NONCE_LEN {
            return false;
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
        let aad = self.check_aad();
        match self.aead.decrypt(Nonce::from_slice(&nonce), Payload { msg: sealed, aad: &aad }) {
            Ok(plain) => plain == CHECK_PLAINTEXT,
            Err(_) => false,
        }
    }
}

fn fresh_nonce() -> Result<[u8; NONCE_LEN], String> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| format!("the random generator failed: {e}"))?;
    Ok(nonce)
}

/// Encodes a value and its metadata as one plaintext:
/// `[format u8][value len u32 LE][value bytes]([entries u16 LE]([len u16 LE][bytes]){2 per entry})`.
/// The value's bytes are its raw bytes, text or binary. The buffer is
/// allocated once at its final size and zeroized on drop. The format byte
/// is 2 for rows of formats 2 to 4.
pub fn encode_payload(value: &SecretValue, metadata: &Metadata) -> Zeroizing<Vec<u8>> {
    let v = value.expose_secret();
    let meta_len: usize = metadata.iter().map(|(k, v)| 4 + k.len() + v.len()).sum();
    let mut out = Zeroizing::new(Vec::with_capacity(1 + 4 + v.len() + 2 + meta_len));
    out.push(PAYLOAD_FORMAT);
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    out.extend_from_slice(v);
    out.extend_from_slice(&(metadata.len() as u16).to_le_bytes());
    for (k, val) in metadata.iter() {
        for part in [k, val] {
            out.extend_from_slice(&(part.len() as u16).to_le_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }
    out
}

/// Decodes what [`encode_payload`] produced in row format `format` for a
/// value of `kind`. `None` when the bytes are not such a payload, the
/// metadata breaks the limits, or the value's bytes disagree with `kind`
/// (a text value that is not UTF-8, a binary one that is). Format 1 payloads
/// hold text only.
pub fn decode_payload(bytes: &[u8], format: u8, kind: ValueKind) -> Option<(SecretValue, Metadata)> {
    let (value, metadata) = parse_payload(bytes, format, kind)?;
    let value = SecretValue::new(bytes[value].to_vec());
    (ValueKind::of(&value) == kind).then_some((value, metadata))
}

/// The metadata of a payload [`encode_payload`] produced, in row format
/// `format` for a value of `kind`, without copying the value out: what a
/// listing of versions reads. `None` when the bytes are not such a payload
/// or the metadata breaks the limits (the value's bytes are not checked
/// against `kind`).
pub fn decode_metadata(bytes: &[u8], format: u8, kind: ValueKind) -> Option<Metadata> {
    parse_payload(bytes, format, kind).map(|(_, metadata)| metadata)
}

/// [`decode_payload`] taking the plaintext buffer, which becomes the
/// value's own (no copy): the value is moved to its front and the rest
/// stays in its spare capacity, which the value zeroizes with it.
pub fn decode_payload_owned(
    mut plain: Zeroizing<Vec<u8>>,
    format: u8,
    kind: ValueKind,
) -> Option<(SecretValue, Metadata)> {
    let (value, metadata) = parse_payload(&plain, format, kind)?;
    let len = value.len();
    plain.copy_within(value, 0);
    plain.truncate(len);
    let value = SecretValue::new(std::mem::take(&mut *plain));
    (ValueKind::of(&value) == kind).then_some((value, metadata))
}

/// Checks a payload's layout and decodes its metadata; the byte range of
/// the value.
fn parse_payload(bytes: &[u8], format: u8, kind: ValueKind) -> Option<(std::ops::Range<usize>, Metadata)> {
    let mut r = Reader(bytes);
    let payload_format = if format == FORMAT_V1 { FORMAT_V1 } else { PAYLOAD_FORMAT };
    if r.take(1)? != [payload_format] || (format == FORMAT_V1 && kind != ValueKind::Text) {
        return None;
    }
    let len = u32::from_le_bytes(r.take(4)?.try_into().ok()?) as usize;
    r.take(len)?;
    let value = 5..5 + len;
    let entries = u16::from_le_bytes(r.take(2)?.try_into().ok()?);
    let mut map = BTreeMap::new();
    for _ in 0..entries {
        let k = r.string()?;
        let v = r.string()?;
        map.insert(k, v);
    }
    if !r.0.is_empty() {
        return None;
    }
    Some((value, Metadata::try_from(map).ok()?))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn string(&mut self) -> Option<String> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?) as usize;
        std::str::from_utf8(self.take(len)?).ok().map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: StoreUid = StoreUid::from_bytes([9; 16]);

    fn cipher(byte: u8, version: u32) -> RowCipher {
        RowCipher::new(&DataKey::from_bytes(&[byte; crate::KEY_LEN]), version, UID)
    }

    fn place<'a>(ns: &'a str, key: &'a str) -> RowPlace<'a> {
        RowPlace::new(ns, key, 1, 2, 3, ValueKind::Text)
    }

    #[test]
    fn payload_round_trip() {
        let meta = Metadata::try_from([("owner", "payments ✓"), ("empty", "")]).unwrap();
        let value = SecretValue::from("s3cr3t \u{0}\n✓");
        let bytes = encode_payload(&value, &meta);
        assert_eq!(bytes.len(), bytes.capacity(), "allocated once at its final size");
        let (v, m) = decode_payload(&bytes, FORMAT_VERSION, ValueKind::Text).unwrap();
        assert_eq!(v, value);
        assert!(v.is_text());
        assert_eq!(m, meta);
        assert!(decode_payload(&bytes[..bytes.len() - 1], FORMAT_VERSION, ValueKind::Text).is_none());
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(decode_payload(&longer, FORMAT_VERSION, ValueKind::Text).is_none());
        assert!(decode_payload(&bytes, FORMAT_VERSION, ValueKind::Binary).is_none(), "kind disagrees");
        assert!(decode_payload(&bytes, FORMAT_V1, ValueKind::Text).is_none(), "format disagrees");
        assert_eq!(decode_metadata(&bytes, FORMAT_VERSION, ValueKind::Text), Some(meta.clone()));
        assert!(decode_metadata(&bytes[..bytes.len() - 1], FORMAT_VERSION, ValueKind::Text).is_none());
    }

    #[test]
    fn binary_payloads_keep_every_byte() {
        let bytes: Vec<u8> = (0..=255).collect();
        let value = SecretValue::from(bytes.clone());
        let encoded = encode_payload(&value, &Metadata::new());
        let (v, _) = decode_payload(&encoded, FORMAT_VERSION, ValueKind::Binary).unwrap();
        assert_eq!(v.expose_secret(), bytes.as_slice());
        assert!(!v.is_text());
        assert!(decode_payload(&encoded, FORMAT_VERSION, ValueKind::Text).is_none());
        // A format 1 payload: text only.
        let mut v1 = encode_payload(&SecretValue::from("old"), &Metadata::new()).to_vec();
        v1[0] = FORMAT_V1;
        assert_eq!(decode_payload(&v1, FORMAT_V1, ValueKind::Text).unwrap().0.expose_str().unwrap(), "old");
    }

    #[test]
    fn seal_binds_place_version_and_key() {
        let c = cipher(1, 1);
        let p = place("ns", "k");
        let (nonce, sealed) = c.seal_row(&p, b"plain").unwrap();
        assert_eq!(&*c.open_row(&p, &nonce, &sealed).unwrap(), b"plain");
        assert!(c.open_row(&place("ns", "k2"), &nonce, &sealed).is_none(), "other key");
        assert!(c.open_row(&place("ns2", "k"), &nonce, &sealed).is_none(), "other namespace");
        assert!(c.open_row(&place("", "nsk"), &nonce, &sealed).is_none(), "ambiguous split");
        let moved = RowPlace { updated_ns: 3, ..place("ns", "k") };
        assert!(c.open_row(&moved, &nonce, &sealed).is_none(), "edited timestamp");
        let other_version = RowPlace { version: 4, ..place("ns", "k") };
        assert!(c.open_row(&other_version, &nonce, &sealed).is_none(), "edited version");
        let other_kind = RowPlace { kind: ValueKind::Binary, ..place("ns", "k") };
        assert!(c.open_row(&other_kind, &nonce, &sealed).is_none(), "edited kind");
        assert!(c.open_row_format(FORMAT_V1, &p, &nonce, &sealed).is_none(), "other format");
        assert!(cipher(1, 2).open_row(&p, &nonce, &sealed).is_none(), "other version");
        assert!(cipher(2, 1).open_row(&p, &nonce, &sealed).is_none(), "other key material");
        let other_store =
            RowCipher::new(&DataKey::from_bytes(&[1; crate::KEY_LEN]), 1, StoreUid::from_bytes([8; 16]));
        assert!(other_store.open_row(&p, &nonce, &sealed).is_none(), "another store's uid");
        let legacy = RowCipher::legacy(&Zeroizing::new([1; crate::KEY_LEN]), 1);
        assert_eq!((legacy.format(), c.format()), (FORMAT_V2, FORMAT_VERSION));
        assert!(legacy.open_row(&p, &nonce, &sealed).is_none(), "format 2 without the uid");
        let (n2, s2) = legacy.seal_row(&p, b"plain").unwrap();
        assert_eq!(&*legacy.open_row(&p, &n2, &s2).unwrap(), b"plain", "a 0.2 row still opens");
        let (nonce2, _) = c.seal_row(&p, b"plain").unwrap();
        assert_ne!(nonce, nonce2, "fresh nonce per seal");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x01;
            assert!(c.open_row(&p, &nonce, &bad).is_none(), "flipped byte {i}");
        }
        let mut bad_nonce = nonce;
        bad_nonce[5] ^= 0x80;
        assert!(c.open_row(&p, &bad_nonce, &sealed).is_none());
        assert!(c.open_row(&p, &nonce[..11], &sealed).is_none());
    }

    /// Seals `place` in row format 3, as a build before format 4 did: the
    /// associated data without the role and the expiry.
    fn seal_format_3(c: &RowCipher, place: &RowPlace<'_>, plaintext: &[u8]) -> ([u8; NONCE_LEN], Vec<u8>) {
        let nonce = fresh_nonce().unwrap();
        let sealed = c
            .with_row_aad(FORMAT_V3, place, |aad| {
                c.aead.encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            })
            .unwrap();
        (nonce, sealed)
    }

    #[test]
    fn a_history_row_does_not_open_as_the_current_row_nor_the_other_way() {
        let c = cipher(1, 1);
        let current = place("ns", "k");
        let history = current.with_role(RowRole::History);
        let (n, s) = c.seal_row(&history, b"old value").unwrap();
        assert_eq!(&*c.open_row(&history, &n, &s).unwrap(), b"old value");
        assert!(c.open_row(&current, &n, &s).is_none(), "history passed off as current");
        assert!(c.open_row_format(FORMAT_V3, &current, &n, &s).is_none(), "history as a format 3 row");
        let (n, s) = c.seal_row(&current, b"value").unwrap();
        assert!(c.open_row(&history, &n, &s).is_none(), "current passed off as history");
    }

    #[test]
    fn an_expiry_cannot_be_stripped_added_or_moved() {
        let c = cipher(1, 1);
        let expiring = place("ns", "k").with_expiry(Some(1_000));
        let (n, s) = c.seal_row(&expiring, b"token").unwrap();
        assert_eq!(&*c.open_row(&expiring, &n, &s).unwrap(), b"token");
        assert!(c.open_row(&place("ns", "k"), &n, &s).is_none(), "expiry stripped");
        assert!(c.open_row(&expiring.with_expiry(Some(2_000)), &n, &s).is_none(), "expiry moved later");
        assert!(c.open_row(&expiring.with_expiry(Some(0)), &n, &s).is_none(), "expiry 0 is not none");
        let (n, s) = c.seal_row(&place("ns", "k"), b"token").unwrap();
        assert!(c.open_row(&place("ns", "k").with_expiry(Some(0)), &n, &s).is_none(), "expiry added");
    }

    #[test]
    fn a_format_3_row_opens_as_a_current_row_without_expiry_only() {
        let c = cipher(1, 1);
        let p = place("ns", "k");
        let (n, s) = seal_format_3(&c, &p, b"from before");
        assert_eq!(&*c.open_row(&p, &n, &s).unwrap(), b"from before");
        assert_eq!(&*c.open_row_format(FORMAT_V3, &p, &n, &s).unwrap(), b"from before");
        assert!(c.open_row_format(FORMAT_VERSION, &p, &n, &s).is_none(), "format 3 is not format 4");
        assert!(c.open_row(&p.with_role(RowRole::History), &n, &s).is_none(), "as history");
        assert!(c.open_row(&p.with_expiry(Some(5)), &n, &s).is_none(), "with an expiry");
        assert!(c.open_row(&place("ns", "k2"), &n, &s).is_none(), "moved");
        // A format 4 row sealed now never opens as format 3.
        let (n, s) = c.seal_row(&p, b"now").unwrap();
        assert!(c.open_row_format(FORMAT_V3, &p, &n, &s).is_none());
        assert_eq!(c.format(), FORMAT_VERSION);
    }

    #[test]
    fn a_format_2_cipher_seals_no_history_or_expiring_row() {
        let legacy = RowCipher::legacy(&Zeroizing::new([1; crate::KEY_LEN]), 1);
        assert!(legacy.seal_row(&place("", "k").with_role(RowRole::History), b"x").is_err());
        assert!(legacy.seal_row(&place("", "k").with_expiry(Some(1)), b"x").is_err());
        assert!(legacy.seal_row(&place("", "k"), b"x").is_ok());
    }

    #[test]
    fn long_associated_data_and_owned_decoding() {
        let c = cipher(1, 1);
        // Past the stack buffer: a namespace of schema 1 could be 1,024 bytes.
        let ns = "n".repeat(AAD_STACK);
        let p = place(&ns, "k");
        let meta = Metadata::try_from([("owner", "ops")]).unwrap();
        let payload = encode_payload(&SecretValue::from("long-ns-value"), &meta);
        let (nonce, sealed) = c.seal_row(&p, &payload).unwrap();
        let plain = c.open_row(&p, &nonce, &sealed).unwrap();
        assert!(c.open_row(&place(&ns[1..], "k"), &nonce, &sealed).is_none());
        let (v, m) = decode_payload_owned(plain, FORMAT_VERSION, ValueKind::Text).unwrap();
        assert_eq!(v.expose_str().unwrap(), "long-ns-value");
        assert_eq!(m, meta);
        let short = place("ns", "k");
        let (nonce, sealed) = c.seal_row(&short, &payload).unwrap();
        let bytes = c.open_row(&short, &nonce, &sealed).unwrap();
        assert_eq!(&*bytes, &**payload);
        assert!(decode_payload_owned(bytes.clone(), FORMAT_VERSION, ValueKind::Binary).is_none(), "kind");
        let mut cut = bytes.clone();
        let len = cut.len();
        cut.truncate(len - 1);
        assert!(decode_payload_owned(cut, FORMAT_VERSION, ValueKind::Text).is_none(), "cut short");
    }

    #[test]
    fn the_aes_key_schedule_is_zeroized_on_drop() {
        // A compile-time proof: aes implements `ZeroizeOnDrop` for its
        // ciphers only with its `zeroize` feature, which wipes the round keys
        // in `Drop`. The store's cipher owns one of these and drops it with
        // the `RowCipher` (the old key's, at the end of a rotation).
        fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        zeroized_on_drop::<BlockCipher>();
        let cipher = cipher(7, 1);
        assert!(cipher.verify_check(&cipher.seal_check().unwrap()), "the cipher in use is this one");
    }

    #[test]
    fn check_value() {
        let c = cipher(1, 4);
        let blob = c.seal_check().unwrap();
        assert!(c.verify_check(&blob));
        assert!(!cipher(2, 4).verify_check(&blob));
        assert!(!cipher(1, 5).verify_check(&blob));
        let other_store =
            RowCipher::new(&DataKey::from_bytes(&[1; crate::KEY_LEN]), 4, StoreUid::from_bytes([8; 16]));
        assert!(!other_store.verify_check(&blob), "an edited uid fails the check");
        assert!(!c.verify_check(&blob[..10]));
    }
}
