//! The layout shared by every platform: the service name, and the one entry
//! that holds a credential's value, metadata, timestamps and version.
//!
//! An entry is a header line of JSON and the value after it:
//!
//! ```text
//! credstore/1 {"v":"9f3c0a1b2c3d4e5f","c":1764580000123456789,"u":1764580000123456789,"m":{"owner":"ci"}}\n
//! <the value's bytes>
//! ```
//!
//! `e: "base64"` in the header says the value after it is base64 (on
//! platforms that refuse bytes that are not text); otherwise the value is
//! stored as is, so a text value is readable with the platform's own tools.
//! `x`, when present, is when the credential expires (nanoseconds since the
//! Unix epoch); entries written without one (every entry of 0.2) never
//! expire, and a reader that does not know `x` ignores it.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use credstore_core::{Metadata, Namespace, SecretValue, StoreId, Version};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// What every entry starts with.
pub(crate) const MAGIC: &[u8] = b"credstore/1 ";

/// The service name of a store's namespace: `credstore:{store id}` for the
/// root, `credstore:{store id}:{namespace}` otherwise. Neither part can hold
/// a `:`, so two stores or namespaces never share a service name.
pub(crate) fn service_name(store: &StoreId, namespace: &Namespace) -> String {
    if namespace.is_root() {
        format!("credstore:{store}")
    } else {
        format!("credstore:{store}:{namespace}")
    }
}

/// How the value is written after the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueEncoding {
    /// As is, bytes or text.
    Raw,
    /// Text as is; anything that is not UTF-8 as base64.
    TextOrBase64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    /// The version.
    v: String,
    /// `created_at`, nanoseconds since the Unix epoch.
    c: u64,
    /// `updated_at`, nanoseconds since the Unix epoch.
    u: u64,
    /// Metadata; left out when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    m: BTreeMap<String, String>,
    /// `base64` when the value is encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    /// `expires_at`, nanoseconds since the Unix epoch; left out when the
    /// credential never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    x: Option<u64>,
}

/// A decoded entry.
pub(crate) struct Entry {
    pub value: SecretValue,
    pub metadata: Metadata,
    pub version: Version,
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    pub expires_at: Option<SystemTime>,
}

impl Entry {
    /// Whether the entry is past its `expires_at` at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// Why an entry could not be decoded; never holds any of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadEntry(pub &'static str);

impl std::fmt::Display for BadEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the entry is not in credstore's layout: {}", self.0)
    }
}

impl std::error::Error for BadEntry {}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn time(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

/// The times of an entry: `created_at`, `updated_at` and `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    pub created_at: SystemTime,
    pub updated_at: SystemTime,
    pub expires_at: Option<SystemTime>,
}

/// Encodes one entry.
pub(crate) fn encode(
    value: &SecretValue,
    metadata: &Metadata,
    version: &Version,
    times: Times,
    encoding: ValueEncoding,
) -> Zeroizing<Vec<u8>> {
    let base64 = encoding == ValueEncoding::TextOrBase64 && !value.is_text();
    let header = Header {
        v: version.as_str().to_owned(),
        c: nanos(times.created_at),
        u: nanos(times.updated_at),
        m: metadata.as_map().clone(),
        e: base64.then(|| "base64".to_owned()),
        // Never 0 (the epoch): a write's expiry is later than its store's clock.
        x: times.expires_at.map(nanos),
    };
    let json = serde_json::to_vec(&header).expect("a header of strings and numbers serializes");
    let mut out = Zeroizing::new(Vec::with_capacity(MAGIC.len() + json.len() + 1 + value.len() * 4 / 3 + 4));
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&json);
    out.push(b'\n');
    if base64 {
        let text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(value.expose_secret()));
        out.extend_from_slice(text.as_bytes());
    } else {
        out.extend_from_slice(value.expose_secret());
    }
    out
}

/// Decodes one entry.
///
/// # Errors
/// [`BadEntry`] when the bytes are not an entry of this layout (another
/// tool's item under the same names).
pub(crate) fn decode(bytes: &[u8]) -> Result<Entry, BadEntry> {
    let rest = bytes.strip_prefix(MAGIC).ok_or(BadEntry("it does not start with `credstore/1 `"))?;
    let newline = rest.iter().position(|&b| b == b'\n').ok_or(BadEntry("the header line has no end"))?;
    let header: Header =
        serde_json::from_slice(&rest[..newline]).map_err(|_| BadEntry("the header is not valid JSON"))?;
    let body = &rest[newline + 1..];
    let value = match header.e.as_deref() {
        None => SecretValue::new(body.to_vec()),
        Some("base64") => SecretValue::from_bytes(
            base64::engine::general_purpose::STANDARD
                .decode(body)
                .map_err(|_| BadEntry("bad base64 value"))?,
        ),
        Some(_) => return Err(BadEntry("unknown value encoding")),
    };
    let metadata = Metadata::try_from(header.m).map_err(|_| BadEntry("the metadata breaks the limits"))?;
    let version = Version::new(header.v).map_err(|_| BadEntry("bad version"))?;
    Ok(Entry {
        value,
        metadata,
        version,
        created_at: time(header.c),
        updated_at: time(header.u),
        expires_at: header.x.map(time),
    })
}

/// A fresh version: 16 hex digits, different on every write.
pub(crate) fn new_version() -> Version {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS once per process and differs per
    // instance; with the time and a counter mixed in, versions do not repeat.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(nanos(SystemTime::now()));
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    Version::new(format!("{:016x}", h.finish())).expect("hex digits are a valid version")
}

/// The time of a write, never before `created_at` of the entry it replaces
/// (clocks can step back) and never equal to it.
pub(crate) fn write_time(previous: Option<SystemTime>) -> SystemTime {
    let now = SystemTime::now();
    match previous {
        Some(p) if now <= p => p + Duration::from_nanos(1),
        _ => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(value: SecretValue, encoding: ValueEncoding) -> Entry {
        let meta = Metadata::try_from([("owner", "ci"), ("note", "ünïcode")]).unwrap();
        let v = new_version();
        let t = SystemTime::now();
        let bytes =
            encode(&value, &meta, &v, Times { created_at: t, updated_at: t, expires_at: None }, encoding);
        let e = decode(&bytes).unwrap();
        assert_eq!(e.metadata, meta);
        assert_eq!(e.version, v);
        assert_eq!((e.created_at, e.updated_at, e.expires_at), (t, t, None));
        e
    }

    #[test]
    fn expiry_rides_in_the_header_and_entries_without_it_never_expire() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_764_580_000_123_456_789);
        let x = t + Duration::from_secs(60);
        let times = Times { created_at: t, updated_at: t, expires_at: Some(x) };
        let bytes =
            encode(&SecretValue::from("v"), &Metadata::new(), &new_version(), times, ValueEncoding::Raw);
        let header = std::str::from_utf8(&bytes).unwrap().lines().next().unwrap().to_owned();
        assert!(header.ends_with(",\"x\":1764580060123456789}"), "{header}");
        let e = decode(&bytes).unwrap();
        assert_eq!(e.expires_at, Some(x));
        assert!(!e.is_expired(x - Duration::from_nanos(1)) && e.is_expired(x));
        // An entry as 0.2 wrote it: no `x`, so it never expires.
        let old = b"credstore/1 {\"v\":\"9f3c0a1b2c3d4e5f\",\"c\":1764580000123456789,\"u\":1764580000123456789,\"m\":{\"owner\":\"ci\"}}\nold";
        let e = decode(old).unwrap();
        assert_eq!((e.expires_at, e.value.expose_str().unwrap()), (None, "old"));
        assert!(!e.is_expired(UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 4)));
    }

    #[test]
    fn binary_empty_and_text_round_trip_in_both_encodings() {
        let every: Vec<u8> = (0..=255).collect();
        for enc in [ValueEncoding::Raw, ValueEncoding::TextOrBase64] {
            assert!(round_trip(SecretValue::from_bytes(every.clone()), enc).value.expose_secret() == every);
            assert!(round_trip(SecretValue::from(""), enc).value.is_empty());
            let text = round_trip(SecretValue::from("line1\nline2"), enc);
            assert_eq!(text.value.expose_str().unwrap(), "line1\nline2");
        }
    }

    #[test]
    fn text_stays_readable_and_binary_is_encoded_only_where_asked() {
        let v = new_version();
        let t = SystemTime::now();
        let text = encode(
            &SecretValue::from("hunter2"),
            &Metadata::new(),
            &v,
            Times { created_at: t, updated_at: t, expires_at: None },
            ValueEncoding::TextOrBase64,
        );
        assert!(text.ends_with(b"}\nhunter2"), "{:?}", String::from_utf8_lossy(&text));
        let bin = SecretValue::from_bytes(vec![0xff, 0x00]);
        let raw = encode(
            &bin,
            &Metadata::new(),
            &v,
            Times { created_at: t, updated_at: t, expires_at: None },
            ValueEncoding::Raw,
        );
        assert!(raw.ends_with(&[b'\n', 0xff, 0x00]));
        let b64 = encode(
            &bin,
            &Metadata::new(),
            &v,
            Times { created_at: t, updated_at: t, expires_at: None },
            ValueEncoding::TextOrBase64,
        );
        assert!(b64.ends_with(b"\n/wA=") && b64.windows(12).any(|w| w == b"\"e\":\"base64\""));
    }

    #[test]
    fn foreign_items_are_refused_without_echoing_them() {
        for bad in [&b"hunter2"[..], b"credstore/1 {not json}\nx", b"credstore/1 {\"v\":\"1\"", b""] {
            let err = decode(bad).err().expect("refused").to_string();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn versions_differ_and_service_names_do_not_collide() {
        let a: std::collections::HashSet<String> = (0..1000).map(|_| new_version().to_string()).collect();
        assert_eq!(a.len(), 1000);
        let id = StoreId::new("s").unwrap();
        assert_eq!(service_name(&id, &Namespace::root()), "credstore:s");
        assert_eq!(service_name(&id, &Namespace::new("a/b").unwrap()), "credstore:s:a/b");
        let t = SystemTime::now();
        assert!(write_time(Some(t + Duration::from_secs(60))) > t + Duration::from_secs(60));
    }
}
