//! What this store last saw of each secret it wrote or read whole, so that
//! a read of a version it knows is one `GetSecretValue`, and an upsert of a
//! secret it saw lately is one `UpdateSecret`, without a `DescribeSecret`.
//!
//! An entry holds no secret value: the version, the envelope written with
//! it and its `created_at` ([`Known`]), and when the secret was last seen
//! whole ([`Proof`]). An entry is only a hint: a read uses it only when
//! `GetSecretValue` answers that very version as `AWSCURRENT`, and an upsert
//! only while the proof is fresh ([`PROOF_TTL`]) and the update answers the
//! same ARN (see the crate docs, "Writes", for the one change the ARN cannot
//! show).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::layout::Envelope;

/// How long after this store last saw a secret's ARN and creation-time tag
/// (see [`Proof`]) an upsert of it is one `UpdateSecret`, without a
/// `DescribeSecret`; past it, the upsert describes the secret again.
pub(crate) const PROOF_TTL: Duration = Duration::from_secs(30);
/// At most this many secrets are remembered; past it, the map starts over.
const CAPACITY: usize = 4096;

/// What this store knows of a version it wrote, or read with the
/// description naming it: the envelope written with it and its
/// `created_at`. Neither changes for a version (every write makes a new
/// version with its own envelope, and the creation-time tag only changes
/// with a write), so a read that gets this version back from
/// `GetSecretValue` as `AWSCURRENT` needs no `DescribeSecret`. Holds no
/// secret value.
#[derive(Debug, Clone)]
pub(crate) struct Known {
    pub version: String,
    pub envelope: Envelope,
    pub created_at: SystemTime,
    /// When this store last saw the secret whole (from `CreateSecret`, or a
    /// `DescribeSecret` showing the [`CREATED_TAG`](crate::layout::CREATED_TAG) tag): what lets an
    /// upsert skip the `DescribeSecret`.
    pub proof: Option<Proof>,
}

impl Known {
    /// Version `version`, written with `envelope`, of a key created at
    /// `created_at`.
    pub(crate) fn new(
        version: &str,
        envelope: &Envelope,
        created_at: SystemTime,
        proof: Option<Proof>,
    ) -> Self {
        Known { version: version.to_owned(), envelope: envelope.clone(), created_at, proof }
    }
}

/// What an upsert needs to report its outcome without a `DescribeSecret`:
/// the secret's ARN, which `UpdateSecret` answers (a secret deleted and made
/// again has a new one), and when it was seen with `created_at` in its
/// [`CREATED_TAG`](crate::layout::CREATED_TAG) tag (which an update does not touch). Trusted for
/// [`PROOF_TTL`] from `seen`.
#[derive(Debug, Clone)]
pub(crate) struct Proof {
    pub arn: String,
    /// When the request that showed it was sent.
    pub seen: Instant,
}

impl Proof {
    /// A proof from an answer naming `arn`, when the creation time is in
    /// the tag.
    pub(crate) fn of(arn: Option<&str>, tagged: bool, seen: Instant) -> Option<Self> {
        arn.filter(|a| tagged && !a.is_empty()).map(|arn| Self { arn: arn.to_owned(), seen })
    }

    /// Whether it is still trusted.
    pub(crate) fn fresh(&self) -> bool {
        self.seen.elapsed() < PROOF_TTL
    }
}

/// The map from a secret's name to what this store last saw of it, shared
/// by every handle of one store.
#[derive(Debug, Default)]
pub(crate) struct LastSeen {
    map: Mutex<HashMap<String, Known>>,
}

impl LastSeen {
    /// What was last seen of secret `name`, if anything.
    pub(crate) fn get(&self, name: &str) -> Option<Known> {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// Records what was just seen of secret `name`.
    pub(crate) fn put(&self, name: &str, known: Known) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CAPACITY && !map.contains_key(name) {
            map.clear();
        }
        map.insert(name.to_owned(), known);
    }

    /// Forgets secret `name`: its state is not known.
    pub(crate) fn forget(&self, name: &str) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(name);
    }
}

#[cfg(test)]
mod tests {
    use credstore_core::Metadata;

    use super::*;

    #[test]
    fn remembers_forgets_and_stays_bounded() {
        let seen = LastSeen::default();
        assert!(seen.get("a").is_none());
        let t = SystemTime::now();
        let envelope = Envelope::new(&Metadata::new(), Some(t), t, "v1".to_owned(), false);
        seen.put("a", Known::new("v1", &envelope, t, None));
        assert_eq!(seen.get("a").map(|k| k.version), Some("v1".to_owned()));
        seen.put("a", Known::new("v2", &envelope, t, None));
        assert_eq!(seen.get("a").map(|k| k.version), Some("v2".to_owned()), "the last seen wins");
        seen.forget("a");
        assert!(seen.get("a").is_none());
        for i in 0..CAPACITY + 10 {
            seen.put(&format!("k{i}"), Known::new("v1", &envelope, t, None));
        }
        assert!(seen.map.lock().unwrap().len() <= CAPACITY);
        assert!(seen.get(&format!("k{}", CAPACITY + 9)).is_some(), "the newest is kept");
    }

    #[test]
    fn a_proof_needs_an_arn_and_the_tag_and_expires() {
        let now = Instant::now();
        assert!(Proof::of(None, true, now).is_none());
        assert!(Proof::of(Some(""), true, now).is_none());
        assert!(Proof::of(Some("arn:aws:secretsmanager:r:1:secret:k-AbCdEf"), false, now).is_none());
        let proof = Proof::of(Some("arn:aws:secretsmanager:r:1:secret:k-AbCdEf"), true, now).expect("proof");
        assert!(proof.fresh());
        if let Some(old) = now.checked_sub(PROOF_TTL) {
            assert!(!Proof { seen: old, ..proof }.fresh(), "a proof is trusted for PROOF_TTL only");
        }
    }
}
