//! The envelope a durable tier keeps per key: one binary value holding the
//! credential as the wrapped store answered it and the time it was fetched.
//!
//! Layout (integers big-endian; a time is `i64` seconds since the Unix
//! epoch, negative before it, then `u32` nanoseconds, below 10⁹):
//!
//! | bytes | field |
//! | --- | --- |
//! | 4 | magic `CSC` `0x01` |
//! | 12 | fetched at: when the cache started the read that returned it |
//! | 12 | created at |
//! | 12 | updated at |
//! | 1 | 1 when an expiry follows, else 0 |
//! | 0 or 12 | expires at |
//! | 1 + n | version: length n (1 to 128), then its ASCII |
//! | 2 | number of metadata entries m |
//! | m × (1 + k + 2 + v) | each entry: key length k, key, value length v, value (UTF-8) |
//! | 4 + l | value: length l, then its bytes |
//!
//! Nothing may follow. A value that does not read back exactly so is
//! refused as a whole ([`DecodeError`]), never partly used.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use credstore_core::{Credential, CredentialKey, Metadata, SecretValue, Version};
use zeroize::Zeroizing;

/// The first four bytes of every envelope: `CSC` and the format version.
pub(super) const MAGIC: [u8; 4] = *b"CSC\x01";

/// A cached credential and when it was fetched from the wrapped store.
pub(super) struct Envelope {
    pub(super) credential: Credential,
    pub(super) fetched_at: SystemTime,
}

/// Why bytes are not an envelope; names the part, never holds the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DecodeError(pub(super) &'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "not a cache envelope: {}", self.0)
    }
}

/// The envelope of `credential` fetched at `fetched_at`, in a buffer of
/// exactly its size (so never reallocated, leaving no copy behind), wrapped
/// so that it is zeroized when dropped.
pub(super) fn encode(credential: &Credential, fetched_at: SystemTime) -> SecretValue {
    let version = credential.version.as_str().as_bytes();
    let value = credential.value.expose_secret();
    let metadata_len: usize = credential.metadata.iter().map(|(k, v)| 3 + k.len() + v.len()).sum();
    let len = 4
        + 12 * 3
        + 1
        + if credential.expires_at.is_some() { 12 } else { 0 }
        + 1
        + version.len()
        + 2
        + metadata_len
        + 4
        + value.len();
    let mut out = Zeroizing::new(Vec::with_capacity(len));
    out.extend_from_slice(&MAGIC);
    put_time(&mut out, fetched_at);
    put_time(&mut out, credential.created_at);
    put_time(&mut out, credential.updated_at);
    match credential.expires_at {
        Some(at) => {
            out.push(1);
            put_time(&mut out, at);
        }
        None => out.push(0),
    }
    // Version, metadata keys and values are bounded well below these widths
    // by their types (128 bytes, 16 entries of 64 and 256 bytes).
    out.push(u8::try_from(version.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(version);
    out.extend_from_slice(&u16::try_from(credential.metadata.len()).unwrap_or(u16::MAX).to_be_bytes());
    for (k, v) in credential.metadata.iter() {
        out.push(u8::try_from(k.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(&u16::try_from(v.len()).unwrap_or(u16::MAX).to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(value);
    debug_assert_eq!(out.len(), len, "the size computed up front");
    SecretValue::from_bytes(std::mem::take(&mut *out))
}

/// Reads the envelope of `key` back. The value gets a buffer of its own
/// (zeroized when its last clone drops); the envelope's stays the caller's.
///
/// # Errors
/// [`DecodeError`] naming the first part that is missing or malformed.
pub(super) fn decode(key: &CredentialKey, bytes: &[u8]) -> Result<Envelope, DecodeError> {
    let mut r = Reader(bytes);
    if r.take(4, "magic")? != MAGIC {
        return Err(DecodeError("magic"));
    }
    let fetched_at = r.time("fetched at")?;
    let created_at = r.time("created at")?;
    let updated_at = r.time("updated at")?;
    let expires_at = match r.take(1, "expiry flag")?[0] {
        0 => None,
        1 => Some(r.time("expires at")?),
        _ => return Err(DecodeError("expiry flag")),
    };
    let n = usize::from(r.take(1, "version length")?[0]);
    let version = std::str::from_utf8(r.take(n, "version")?).map_err(|_| DecodeError("version"))?;
    let version = Version::new(version).map_err(|_| DecodeError("version"))?;
    let m = u16::from_be_bytes(r.array("metadata count")?);
    let mut metadata = Metadata::new();
    for _ in 0..m {
        let k = usize::from(r.take(1, "metadata key length")?[0]);
        let k = std::str::from_utf8(r.take(k, "metadata key")?).map_err(|_| DecodeError("metadata key"))?;
        let v = usize::from(u16::from_be_bytes(r.array("metadata value length")?));
        let v =
            std::str::from_utf8(r.take(v, "metadata value")?).map_err(|_| DecodeError("metadata value"))?;
        metadata.insert(k, v).map_err(|_| DecodeError("metadata entry"))?;
    }
    let l =
        usize::try_from(u32::from_be_bytes(r.array("value length")?)).map_err(|_| DecodeError("value"))?;
    let value = r.take(l, "value")?;
    if !r.0.is_empty() {
        return Err(DecodeError("trailing bytes"));
    }
    let credential = Credential {
        key: key.clone(),
        value: SecretValue::from_bytes(value.to_vec()),
        metadata,
        version,
        created_at,
        updated_at,
        expires_at,
    };
    Ok(Envelope { credential, fetched_at })
}

fn put_time(out: &mut Vec<u8>, t: SystemTime) {
    let (secs, nanos) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (i64::try_from(d.as_secs()).unwrap_or(i64::MAX), d.subsec_nanos()),
        Err(before) => {
            let d = before.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match d.subsec_nanos() {
                0 => (-secs, 0),
                n => (-secs - 1, 1_000_000_000 - n),
            }
        }
    };
    out.extend_from_slice(&secs.to_be_bytes());
    out.extend_from_slice(&nanos.to_be_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        self.take(N, what)?.try_into().map_err(|_| DecodeError(what))
    }

    fn time(&mut self, what: &'static str) -> Result<SystemTime, DecodeError> {
        let secs = i64::from_be_bytes(self.array(what)?);
        let nanos = u32::from_be_bytes(self.array(what)?);
        if nanos >= 1_000_000_000 {
            return Err(DecodeError(what));
        }
        let at = match u64::try_from(secs) {
            Ok(secs) => UNIX_EPOCH.checked_add(Duration::from_secs(secs)),
            Err(_) => UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs())),
        };
        at.and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nanos)))).ok_or(DecodeError(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(expires_at: Option<SystemTime>) -> Credential {
        let mut metadata = Metadata::new();
        metadata.insert("owner", "payments").expect("metadata");
        metadata.insert("note", "ünïcode").expect("metadata");
        Credential {
            key: CredentialKey::new("db-password").expect("key"),
            value: SecretValue::from(&b"\x00\xffbinary"[..]),
            metadata,
            version: Version::new("7").expect("version"),
            created_at: UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789),
            updated_at: UNIX_EPOCH - Duration::new(5, 1),
            expires_at,
        }
    }

    #[test]
    fn an_envelope_reads_back_exactly_what_was_written() {
        let fetched_at = UNIX_EPOCH + Duration::new(1_800_000_000, 5);
        for expires_at in [None, Some(UNIX_EPOCH + Duration::new(1_900_000_000, 999_999_999))] {
            let original = credential(expires_at);
            let bytes = encode(&original, fetched_at);
            assert_eq!(bytes.expose_secret()[..4], MAGIC);
            let back = decode(&original.key, bytes.expose_secret()).expect("decodes");
            assert_eq!(back.fetched_at, fetched_at);
            let c = back.credential;
            assert_eq!(c.value, original.value);
            assert!(!c.value.is_text(), "bytes stay bytes");
            assert_eq!(
                (c.key, c.metadata, c.version, c.created_at, c.updated_at, c.expires_at),
                (
                    original.key,
                    original.metadata,
                    original.version,
                    original.created_at,
                    original.updated_at,
                    expires_at
                )
            );
        }
    }

    #[test]
    fn a_truncated_or_padded_or_foreign_envelope_is_refused_whole() {
        let original = credential(None);
        let bytes = encode(&original, UNIX_EPOCH);
        let bytes = bytes.expose_secret();
        for cut in 0..bytes.len() {
            assert!(decode(&original.key, &bytes[..cut]).is_err(), "cut at {cut} of {}", bytes.len());
        }
        let mut padded = bytes.to_vec();
        padded.push(0);
        assert_eq!(decode(&original.key, &padded).err(), Some(DecodeError("trailing bytes")));
        let mut foreign = bytes.to_vec();
        foreign[3] = 2;
        assert_eq!(decode(&original.key, &foreign).err(), Some(DecodeError("magic")));
        assert!(decode(&original.key, b"plain text someone stored").is_err());
    }
}
