//! What lets most writes be one statement: versions drawn from the sequence
//! in blocks, and the creation time of the versions this store last saw.
//!
//! - [`VersionBlock`]: a write needs its version before it seals the row
//!   (the version is bound into the row's associated data), so versions are
//!   taken from the `versions` sequence [`BLOCK`] at a time and handed out
//!   from memory. Each value of the sequence is handed out once, by one
//!   process, so a key never has one version twice; versions of two
//!   processes interleave, so they are unique, not ordered.
//! - [`KnownRows`]: an overwrite seals the row with the key's `created_ns`
//!   and replaces only the version it read. A version of a key is written
//!   once, with one `created_ns`, so what this store last read or wrote of
//!   a key (its version and that version's `created_ns`) never turns wrong:
//!   it only stops being the current row. An overwrite sure of the row it
//!   replaces is one statement, `UPDATE … WHERE version = $known` with the
//!   move of that row's history copy to `history` and the prune of the
//!   key's history in CTEs of the same statement (they act only when the
//!   `UPDATE` did); when the row moved on or expired, that statement changes
//!   nothing and the write reads the row, as it would have without.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

/// How many versions one draw from the sequence takes.
pub(crate) const BLOCK: i64 = 32;
/// The most keys [`KnownRows`] remembers; when full it forgets them all.
pub(crate) const KNOWN_ROWS: usize = 4096;

/// Versions drawn from the sequence, not yet handed out.
#[derive(Debug, Default)]
pub(crate) struct VersionBlock(Mutex<Vec<i64>>);

impl VersionBlock {
    /// The next version drawn, or `None` when a new block must be drawn.
    pub(crate) fn take(&self) -> Option<i64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Keeps a new block; the caller takes its first version itself.
    pub(crate) fn refill(&self, mut drawn: Vec<i64>) {
        // Handed out smallest first.
        drawn.sort_unstable_by(|a, b| b.cmp(a));
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend(drawn);
    }
}

/// The version and `created_ns` this store last read or wrote of each key,
/// for [`KNOWN_ROWS`] keys at most.
///
/// Keys are remembered by a keyed hash of their namespace and name (no
/// allocation on the read path). Two keys whose hashes collide share a slot,
/// which costs a write its single statement and nothing else: versions are
/// unique in the whole schema, so an `UPDATE … WHERE version = $known` with
/// another key's version changes no row, and the write reads its own.
#[derive(Debug, Default)]
pub(crate) struct KnownRows {
    rows: Mutex<HashMap<u64, (i64, i64)>>,
    hasher: RandomState,
}

impl KnownRows {
    fn slot(&self, ns: &str, key: &str) -> u64 {
        self.hasher.hash_one((ns, key))
    }

    /// The last seen `(version, created_ns)` of `key` in namespace `ns`.
    pub(crate) fn get(&self, ns: &str, key: &str) -> Option<(i64, i64)> {
        let slot = self.slot(ns, key);
        self.rows.lock().unwrap_or_else(|e| e.into_inner()).get(&slot).copied()
    }

    /// Remembers that `key` is at `version`, created at `created_ns`.
    pub(crate) fn saw(&self, ns: &str, key: &str, version: i64, created_ns: i64) {
        let slot = self.slot(ns, key);
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        if rows.len() >= KNOWN_ROWS && !rows.contains_key(&slot) {
            rows.clear();
        }
        rows.insert(slot, (version, created_ns));
    }

    /// Forgets `key` (deleted, or its row moved on).
    pub(crate) fn forget(&self, ns: &str, key: &str) {
        let slot = self.slot(ns, key);
        self.rows.lock().unwrap_or_else(|e| e.into_inner()).remove(&slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_hands_out_each_version_once_smallest_first() {
        let block = VersionBlock::default();
        assert_eq!(block.take(), None);
        block.refill(vec![7, 5, 6]);
        assert_eq!(
            [block.take(), block.take(), block.take(), block.take()],
            [Some(5), Some(6), Some(7), None]
        );
    }

    #[test]
    fn known_rows_are_bounded_and_forgotten() {
        let known = KnownRows::default();
        known.saw("", "k", 3, 100);
        assert_eq!(known.get("", "k"), Some((3, 100)));
        assert_eq!(known.get("ns", "k"), None);
        known.forget("", "k");
        assert_eq!(known.get("", "k"), None);
        for n in 0..=KNOWN_ROWS {
            known.saw("", &n.to_string(), 1, 1);
        }
        assert!(known.rows.lock().unwrap().len() <= KNOWN_ROWS);
    }
}
