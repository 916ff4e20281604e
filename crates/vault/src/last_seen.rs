//! What this connection last saw of each key it read or wrote, so that an
//! upsert can write at once, with the right check-and-set number and the
//! credential's `created_at`, instead of reading the key first.
//!
//! An entry is only a hint: every write made from one sends `cas` with the
//! number it holds, so a key another client wrote since fails the write,
//! which then reads the key and tries again. Entries expire after
//! [`SEEN_TTL`], which bounds how old the hint can be (see the crate docs on
//! what a stale hint can and cannot do).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::layout::KeyState;

/// How long an observation of a key serves as a hint.
pub(crate) const SEEN_TTL: Duration = Duration::from_secs(30);
/// At most this many keys are remembered; beyond it, expired entries are
/// dropped, and if that is not enough, all of them.
const CAPACITY: usize = 4096;

/// A key's state as a read or a write saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Current {
    /// The `current_version` (0 when the key has no metadata): the `cas`
    /// that writes after it. After a data read answered 404 it is a guess
    /// of 0 (the key may have a soft-deleted version of another number).
    pub number: u64,
    /// The live state, `None` when the key counts as missing.
    pub state: Option<KeyState>,
}

impl Current {
    /// A key with no metadata at all (never written, or deleted).
    pub(crate) const ABSENT: Current = Current { number: 0, state: None };

    /// A live key at `state`.
    pub(crate) fn live(state: KeyState) -> Self {
        Current { number: state.version, state: Some(state) }
    }

    /// This observation at `now`: a live state past its `expires_at` is
    /// missing (with its number, the `cas` that writes after it).
    pub(crate) fn as_of(self, now: std::time::SystemTime) -> Self {
        match self.state {
            Some(state) if state.expired(now) => Current { number: self.number, state: None },
            _ => self,
        }
    }
}

/// The map from a key's path in the mount to what this connection last saw
/// of it, shared by every handle of one store.
#[derive(Debug, Default)]
pub(crate) struct LastSeen {
    map: Mutex<HashMap<String, (Current, Instant)>>,
}

impl LastSeen {
    /// The fresh observation of `path`, if any.
    pub(crate) fn get(&self, path: &str) -> Option<Current> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(path).filter(|(_, at)| at.elapsed() < SEEN_TTL).map(|(c, _)| *c)
    }

    /// Records what was just seen of `path`.
    pub(crate) fn put(&self, path: &str, current: Current) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CAPACITY && !map.contains_key(path) {
            map.retain(|_, (_, at)| at.elapsed() < SEEN_TTL);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        map.insert(path.to_owned(), (current, Instant::now()));
    }

    /// Forgets `path`: its state is not known.
    pub(crate) fn forget(&self, path: &str) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn remembers_forgets_and_stays_bounded() {
        let seen = LastSeen::default();
        assert_eq!(seen.get("a"), None);
        let t = SystemTime::now();
        let live = Current::live(KeyState { version: 3, created_at: t, updated_at: t, expires_at: None });
        seen.put("a", live);
        assert_eq!(seen.get("a"), Some(live));
        seen.put("a", Current::ABSENT);
        assert_eq!(seen.get("a"), Some(Current::ABSENT));
        seen.forget("a");
        assert_eq!(seen.get("a"), None);
        for i in 0..CAPACITY + 10 {
            seen.put(&format!("k{i}"), Current::ABSENT);
        }
        assert!(seen.map.lock().unwrap().len() <= CAPACITY);
        assert_eq!(seen.get(&format!("k{}", CAPACITY + 9)), Some(Current::ABSENT), "the newest is kept");
    }
}
