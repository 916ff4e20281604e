//! [`RowSet`]: an authenticated digest of which rows a store holds, at which
//! versions, so that a row put back to an older copy of itself is detected.
//!
//! Every row is an element `(namespace, key, version, created, updated)`;
//! the digest is the sum, modulo 2^512, of a keyed pseudo-random function
//! of every element (an incremental multiset hash, MSet-Add-Hash). A write
//! subtracts the old row's element and adds the new one's, so keeping it
//! costs a few AES blocks per write and one small record per transaction.
//! The record ([`RowSetState`]) also holds the number of rows and the last
//! row version handed out, and is authenticated under the same key: an
//! attacker who cannot compute the function (it is keyed by a subkey of the
//! data key) cannot make a set of rows match a digest it was not, nor pass
//! off an older record while any row written after it remains.
//!
//! The function is AES-256-CMAC under a 256-bit subkey of the data key,
//! four times with a domain byte, for 512 bits per element: wide enough
//! that the generalized-birthday attacks on additive multiset hashes need
//! far more observed versions of each row than any store keeps.

use aes::Aes256;
use cmac::{Cmac, Mac};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::{DataKey, StoreUid};

/// The number of 64-bit limbs of a [`Digest`]: 512 bits.
const LIMBS: usize = 8;

const KEY_DOMAIN: &[u8] = b"credstore/row-set-key\0";
const ELEMENT_DOMAIN: &[u8] = b"credstore/row-set-element\0";
const STATE_DOMAIN: &[u8] = b"credstore/row-set-state\0";

/// The length of a sealed [`RowSetState`]: the digest (64), the row count
/// (8), the last version (8) and the tag (16).
pub const ROW_SET_RECORD_LEN: usize = 64 + 8 + 8 + 16;

/// A sum of elements, modulo 2^512.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Digest([u64; LIMBS]);

impl Digest {
    fn add(&mut self, other: &Digest) {
        let mut carry = false;
        for (a, b) in self.0.iter_mut().zip(other.0) {
            let (s, c1) = a.overflowing_add(b);
            let (s, c2) = s.overflowing_add(u64::from(carry));
            *a = s;
            carry = c1 || c2;
        }
    }

    fn sub(&mut self, other: &Digest) {
        let mut borrow = false;
        for (a, b) in self.0.iter_mut().zip(other.0) {
            let (d, b1) = a.overflowing_sub(b);
            let (d, b2) = d.overflowing_sub(u64::from(borrow));
            *a = d;
            borrow = b1 || b2;
        }
    }

    fn to_bytes(self) -> [u8; 64] {
        let mut out = [0u8; 64];
        for (chunk, limb) in out.chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        out
    }

    fn from_bytes(bytes: &[u8]) -> Self {
        let mut limbs = [0u64; LIMBS];
        for (limb, chunk) in limbs.iter_mut().zip(bytes.chunks_exact(8)) {
            *limb = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        }
        Digest(limbs)
    }
}

/// The state a store keeps of its rows: their digest, their number, and
/// the last row version handed out when it was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RowSetState {
    sum: Digest,
    count: u64,
    /// The last row version handed out.
    pub last_version: i64,
}

impl RowSetState {
    /// Adds a row's element.
    pub fn add(&mut self, element: &Digest) {
        self.sum.add(element);
        self.count = self.count.wrapping_add(1);
    }

    /// Removes a row's element.
    pub fn remove(&mut self, element: &Digest) {
        self.sum.sub(element);
        self.count = self.count.wrapping_sub(1);
    }

    /// The number of rows.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether `rows` (the state computed from the rows as they are) is this
    /// recorded state: the same digest and number, and no row newer than the
    /// last version recorded. `max_version` is the highest row version.
    pub fn matches(&self, rows: &RowSetState, max_version: i64) -> bool {
        self.sum == rows.sum && self.count == rows.count && max_version <= self.last_version
    }
}

/// The keyed function of one data key version: elements, and the sealing
/// of a [`RowSetState`]. Made by [`crate::RowCipher::new`]; its subkey's
/// key schedule is wiped on drop.
pub struct RowSet {
    /// AES-256-CMAC keyed by the subkey, its key schedule expanded once
    /// (wiped on drop); each evaluation starts from a copy.
    keyed: Cmac<Aes256>,
    uid: StoreUid,
    key_version: u32,
}

impl RowSet {
    pub(crate) fn new(dek: &DataKey, uid: StoreUid, key_version: u32) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        for (i, half) in key.chunks_exact_mut(16).enumerate() {
            let mut mac = cmac(dek.expose_secret());
            mac.update(KEY_DOMAIN);
            mac.update(&[i as u8]);
            half.copy_from_slice(&mac.finalize().into_bytes());
        }
        Self { keyed: cmac(&key), uid, key_version }
    }

    /// The element of the row at `ns`/`key` of version `version`, created
    /// and last written at these times (nanoseconds since the Unix epoch).
    pub fn element(&self, ns: &str, key: &str, version: i64, created_ns: i64, updated_ns: i64) -> Digest {
        let mut base = self.keyed.clone();
        base.update(ELEMENT_DOMAIN);
        base.update(self.uid.as_bytes());
        for part in [ns, key] {
            base.update(&(part.len() as u16).to_be_bytes());
            base.update(part.as_bytes());
        }
        base.update(&version.to_be_bytes());
        base.update(&created_ns.to_be_bytes());
        base.update(&updated_ns.to_be_bytes());
        let mut bytes = [0u8; 64];
        for (i, quarter) in bytes.chunks_exact_mut(16).enumerate() {
            let mut mac = base.clone();
            mac.update(&[i as u8]);
            quarter.copy_from_slice(&mac.finalize().into_bytes());
        }
        Digest::from_bytes(&bytes)
    }

    fn tag(&self, body: &[u8]) -> [u8; 16] {
        let mut mac = self.keyed.clone();
        mac.update(STATE_DOMAIN);
        mac.update(self.uid.as_bytes());
        mac.update(&self.key_version.to_be_bytes());
        mac.update(body);
        mac.finalize().into_bytes().into()
    }

    /// The record of `state`: the digest (64 bytes LE limbs), the count
    /// (u64 BE), the last version (i64 BE) and a 16-byte tag binding them to
    /// the store's uid and this key version.
    pub fn seal_state(&self, state: &RowSetState) -> Vec<u8> {
        let mut out = Vec::with_capacity(ROW_SET_RECORD_LEN);
        out.extend_from_slice(&state.sum.to_bytes());
        out.extend_from_slice(&state.count.to_be_bytes());
        out.extend_from_slice(&state.last_version.to_be_bytes());
        let tag = self.tag(&out);
        out.extend_from_slice(&tag);
        out
    }

    /// The state of a record sealed by [`RowSet::seal_state`] under this key
    /// version; `None` when it fails authentication.
    pub fn open_state(&self, record: &[u8]) -> Option<RowSetState> {
        if record.len() != ROW_SET_RECORD_LEN {
            return None;
        }
        let (body, tag) = record.split_at(ROW_SET_RECORD_LEN - 16);
        let expected: &[u8] = &self.tag(body);
        if !bool::from(expected.ct_eq(tag)) {
            return None;
        }
        Some(RowSetState {
            sum: Digest::from_bytes(&body[..64]),
            count: u64::from_be_bytes(body[64..72].try_into().ok()?),
            last_version: i64::from_be_bytes(body[72..80].try_into().ok()?),
        })
    }
}

fn cmac(key: &[u8; 32]) -> Cmac<Aes256> {
    <Cmac<Aes256> as Mac>::new_from_slice(key).expect("a 32-byte key fits AES-256")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(byte: u8) -> RowSet {
        RowSet::new(&DataKey::from_bytes(&[byte; 32]), StoreUid::from_bytes([1; 16]), 1)
    }

    #[test]
    fn the_digest_is_order_free_and_a_removal_undoes_an_addition() {
        let s = set(1);
        let (a, b, c) =
            (s.element("", "a", 1, 1, 1), s.element("", "b", 2, 2, 2), s.element("ns", "a", 3, 3, 3));
        let mut x = RowSetState { last_version: 3, ..Default::default() };
        x.add(&a);
        x.add(&b);
        x.add(&c);
        let mut y = RowSetState::default();
        y.add(&c);
        y.add(&a);
        y.add(&b);
        assert!(x.matches(&y, 3));
        y.remove(&b);
        assert!(!x.matches(&y, 3));
        y.add(&b);
        assert!(x.matches(&y, 3));
        // Carries and borrows cross every limb.
        let mut z = RowSetState::default();
        z.remove(&a);
        z.add(&a);
        assert_eq!(z, RowSetState::default());
    }

    #[test]
    fn an_element_depends_on_every_field_and_the_key() {
        let s = set(1);
        let e = s.element("ns", "k", 2, 10, 20);
        for other in [
            s.element("ns", "k", 1, 10, 20),
            s.element("ns", "k", 2, 11, 20),
            s.element("ns", "k", 2, 10, 21),
            s.element("ns", "k2", 2, 10, 20),
            s.element("n", "sk", 2, 10, 20),
            set(2).element("ns", "k", 2, 10, 20),
        ] {
            assert_ne!(e, other);
        }
    }

    #[test]
    fn a_sealed_state_opens_only_unchanged_and_under_its_key() {
        let s = set(1);
        let mut state = RowSetState { last_version: 7, ..Default::default() };
        state.add(&s.element("", "k", 7, 1, 1));
        let record = s.seal_state(&state);
        assert_eq!(record.len(), ROW_SET_RECORD_LEN);
        assert_eq!(s.open_state(&record), Some(state));
        for i in 0..record.len() {
            let mut bad = record.clone();
            bad[i] ^= 1;
            assert_eq!(s.open_state(&bad), None, "flipped byte {i}");
        }
        assert_eq!(set(2).open_state(&record), None, "another key");
        let other_version = RowSet::new(&DataKey::from_bytes(&[1; 32]), StoreUid::from_bytes([1; 16]), 2);
        assert_eq!(other_version.open_state(&record), None, "another key version");
        // A newer row than the recorded last version does not match.
        assert!(!state.matches(&state, 8));
    }
}
