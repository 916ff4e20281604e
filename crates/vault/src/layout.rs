//! How credentials are laid out in KV v2: paths, the secret's data, and the
//! timestamps and liveness read from a key's metadata. Pure functions, no I/O.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use credstore_core::{validate_namespace, Metadata, SecretValue};
use serde::Serialize;
use serde_json::{Map, Value};
use vaultrs::api::kv2::responses::{ReadSecretMetadataResponse, SecretMetadata};

/// The data field holding the value.
pub(crate) const VALUE_FIELD: &str = "value";
/// The data field holding the metadata, present only when it is not empty.
pub(crate) const METADATA_FIELD: &str = "metadata";

/// The escape marking a path segment that would otherwise be `.` or `..`,
/// which HTTP clients and Vault's router resolve as relative paths. `~` can
/// appear in no key or namespace, so the encoding is one-to-one.
const ESCAPE: char = '~';

/// The path segment for a key or namespace segment.
pub(crate) fn encode_segment(segment: &str) -> Cow<'_, str> {
    if segment == "." || segment == ".." {
        Cow::Owned(format!("{ESCAPE}{segment}"))
    } else {
        Cow::Borrowed(segment)
    }
}

/// The key a listed path segment stands for, or `None` for a segment that
/// [`encode_segment`] cannot have produced (written by another tool).
pub(crate) fn decode_segment(segment: &str) -> Option<&str> {
    match segment.strip_prefix(ESCAPE) {
        Some(rest @ ("." | "..")) => Some(rest),
        Some(_) => None,
        None if segment == "." || segment == ".." || segment.contains(ESCAPE) => None,
        None => Some(segment),
    }
}

/// Validates `path` (segments of `[a-zA-Z0-9-_.]` joined by `/`, surrounding
/// slashes ignored) and returns it with each segment encoded. Empty stays empty.
pub(crate) fn encode_path(path: &str) -> Result<String, String> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    validate_namespace(trimmed).map_err(|e| match e {
        credstore_core::Error::InvalidInput { reason, .. } => reason,
        other => other.to_string(),
    })?;
    Ok(trimmed.split('/').map(encode_segment).collect::<Vec<_>>().join("/"))
}

/// The data written for one credential: `{"value": "...", "metadata": {...}}`,
/// `metadata` left out when empty.
#[derive(Serialize)]
pub(crate) struct Wire<'a> {
    #[serde(serialize_with = "credstore_core::secret::expose")]
    value: &'a SecretValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a BTreeMap<String, String>>,
}

impl<'a> Wire<'a> {
    pub(crate) fn new(value: &'a SecretValue, metadata: &'a Metadata) -> Self {
        Self { value, metadata: (!metadata.is_empty()).then(|| metadata.as_map()) }
    }
}

/// Reads a credential back from a secret's data. The value string is moved,
/// not copied, into the returned [`SecretValue`]. Error messages never
/// contain the data.
pub(crate) fn from_wire(data: Value) -> Result<(SecretValue, Metadata), String> {
    let Value::Object(mut map) = data else {
        return Err("the secret's data is not a JSON object".into());
    };
    let value = match map.remove(VALUE_FIELD) {
        Some(Value::String(s)) => SecretValue::new(s),
        Some(_) => return Err(format!("the secret's field '{VALUE_FIELD}' is not a string")),
        None => {
            return Err(format!("the secret has no field '{VALUE_FIELD}' (it was not written by credstore)"))
        }
    };
    let metadata = match map.remove(METADATA_FIELD) {
        None | Some(Value::Null) => Metadata::new(),
        Some(Value::Object(m)) => metadata_from_object(m)?,
        Some(_) => return Err(format!("the secret's field '{METADATA_FIELD}' is not an object")),
    };
    Ok((value, metadata))
}

fn metadata_from_object(m: Map<String, Value>) -> Result<Metadata, String> {
    let mut out = BTreeMap::new();
    for (k, v) in m {
        match v {
            Value::String(s) => {
                out.insert(k, s);
            }
            _ => return Err(format!("metadata entry {k:?} is not a string")),
        }
    }
    Metadata::try_from(out).map_err(|e| format!("the stored metadata is invalid: {e}"))
}

/// A live key's current version and times, as its KV v2 metadata says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyState {
    /// The current version, the one to read.
    pub version: u64,
    /// The creation of the oldest version in the current run of live
    /// versions: the key's own `created_time` unless an older version was
    /// deleted or destroyed, as by `vault kv delete`.
    pub created_at: SystemTime,
    /// The current version's `created_time`.
    pub updated_at: SystemTime,
}

fn version_live(v: &SecretMetadata, now: SystemTime) -> bool {
    // A deletion time in the future is a scheduled deletion (delete_version_after).
    !v.destroyed && (v.deletion_time.is_empty() || parse_time(&v.deletion_time).is_some_and(|t| t > now))
}

/// The key's state, or `None` when it has no live current version (never
/// written, or its latest version soft-deleted or destroyed by another tool).
pub(crate) fn key_state(
    meta: &ReadSecretMetadataResponse,
    now: SystemTime,
) -> Result<Option<KeyState>, String> {
    let version = meta.current_version;
    let Some(current) = meta.versions.get(&version.to_string()) else {
        return Ok(None);
    };
    if version == 0 || !version_live(current, now) {
        return Ok(None);
    }
    let time =
        |s: &str, what: &str| parse_time(s).ok_or_else(|| format!("unreadable {what} in the key's metadata"));
    let updated_at = time(&current.created_time, "version created_time")?;
    let mut first = version;
    let created_at = loop {
        if first <= 1 {
            break time(&meta.created_time, "created_time")?;
        }
        match meta.versions.get(&(first - 1).to_string()) {
            Some(prev) if version_live(prev, now) => first -= 1,
            // The run started after a dead version: it began with `first`.
            Some(_) => break time(&meta.versions[&first.to_string()].created_time, "version created_time")?,
            // Older versions were pruned (max_versions): the key's own time.
            None => break time(&meta.created_time, "created_time")?,
        }
    };
    Ok(Some(KeyState { version, created_at: created_at.min(updated_at), updated_at }))
}

/// Parses the RFC 3339 times Vault writes (`2024-05-01T12:00:00.123456789Z`,
/// or with a `+hh:mm` offset).
pub(crate) fn parse_time(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos: u32 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let mut scale = 100_000_000u32;
        for c in frac[..digits].bytes().take(9) {
            nanos += u32::from(c - b'0') * scale;
            scale /= 10;
        }
        rest = &frac[digits..];
    }
    let offset: i64 = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let digit = |c: &u8| c.is_ascii_digit().then(|| i64::from(c - b'0'));
            let mins = (digit(h1)? * 10 + digit(h2)?) * 60 + digit(m1)? * 10 + digit(m2)?;
            if *sign == b'+' {
                mins * 60
            } else {
                -mins * 60
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset;
    if secs >= 0 {
        Some(UNIX_EPOCH + Duration::new(secs.unsigned_abs(), nanos))
    } else {
        UNIX_EPOCH.checked_sub(Duration::new(secs.unsigned_abs(), 0))?.checked_add(Duration::new(0, nanos))
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn dot_segments_are_escaped_one_to_one() {
        for key in [".", "..", "...", "a..b", ".hidden", "-", "x"] {
            let enc = encode_segment(key);
            assert_ne!(enc, ".");
            assert_ne!(enc, "..");
            assert_eq!(decode_segment(&enc), Some(key), "{key}");
        }
        assert_eq!(encode_segment("."), "~.");
        assert_eq!(decode_segment("~x"), None);
        assert_eq!(decode_segment("a~b"), None);
        assert_eq!(decode_segment("."), None);
    }

    #[test]
    fn paths_are_validated_and_encoded() {
        assert_eq!(encode_path("").unwrap(), "");
        assert_eq!(encode_path("/apps/x/").unwrap(), "apps/x");
        // Dot segments never reach a path: core refuses them in namespaces
        // and prefixes (keys "." and ".." are encoded instead, see above).
        assert!(encode_path("a/../b").is_err());
        assert!(encode_path("./a").is_err());
        assert!(encode_path("a//b").is_err());
        assert!(encode_path("a b").is_err());
    }

    #[test]
    fn wire_round_trip_and_layout() {
        let v = SecretValue::from("s3cr3t \"quoted\"\n");
        let m = Metadata::try_from([("owner", "team ✓")]).unwrap();
        let json = serde_json::to_value(Wire::new(&v, &m)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"value": "s3cr3t \"quoted\"\n", "metadata": {"owner": "team ✓"}})
        );
        let (v2, m2) = from_wire(json).unwrap();
        assert!(v2 == v);
        assert_eq!(m2, m);
        let plain = serde_json::to_value(Wire::new(&v, &Metadata::new())).unwrap();
        assert_eq!(
            plain,
            serde_json::json!({"value": "s3cr3t \"quoted\"\n"}),
            "no metadata field when empty"
        );
    }

    #[test]
    fn foreign_data_is_refused_without_echoing_it() {
        for data in [
            serde_json::json!({"password": "hunter2"}),
            serde_json::json!({"value": 42, "x": "hunter2"}),
            serde_json::json!({"value": "hunter2", "metadata": "hunter2"}),
            serde_json::json!({"value": "hunter2", "metadata": {"k": 1}}),
            serde_json::json!(["hunter2"]),
        ] {
            let err = from_wire(data).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn parses_vault_times() {
        let t = parse_time("2024-05-01T12:00:00.123456789Z").unwrap();
        let d = t.duration_since(UNIX_EPOCH).unwrap();
        assert_eq!(d.as_secs(), 1_714_564_800);
        assert_eq!(d.subsec_nanos(), 123_456_789);
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_time("2024-05-01T14:00:00+02:00"),
            Some(UNIX_EPOCH + Duration::from_secs(1_714_564_800))
        );
        assert_eq!(
            parse_time("2000-02-29T00:00:00.5Z").unwrap().duration_since(UNIX_EPOCH).unwrap().as_millis(),
            951_782_400_500
        );
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T00:00:00Z",
            "2024-05-01T00:00:00",
            "2024-05-01T00:00:00.Z",
            "garbage-garbage-garb",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    fn version(created: &str, deletion: &str, destroyed: bool) -> SecretMetadata {
        SecretMetadata { created_time: created.into(), deletion_time: deletion.into(), destroyed }
    }

    fn meta(current: u64, versions: Vec<(u64, SecretMetadata)>) -> ReadSecretMetadataResponse {
        ReadSecretMetadataResponse {
            cas_required: false,
            created_time: "2024-01-01T00:00:00Z".into(),
            current_version: current,
            delete_version_after: "0s".into(),
            max_versions: 0,
            oldest_version: 0,
            updated_time: "2024-01-01T00:00:00Z".into(),
            custom_metadata: None,
            versions: versions.into_iter().map(|(n, v)| (n.to_string(), v)).collect::<HashMap<_, _>>(),
        }
    }

    #[test]
    fn key_state_follows_deletions() {
        let now = SystemTime::now();
        let t = |s| parse_time(s).unwrap();
        // Written three times: created at the key's time, updated at v3.
        let m = meta(
            3,
            vec![
                (1, version("2024-01-01T00:00:00Z", "", false)),
                (2, version("2024-01-02T00:00:00Z", "", false)),
                (3, version("2024-01-03T00:00:00Z", "", false)),
            ],
        );
        let s = key_state(&m, now).unwrap().unwrap();
        assert_eq!(
            (s.version, s.created_at, s.updated_at),
            (3, t("2024-01-01T00:00:00Z"), t("2024-01-03T00:00:00Z"))
        );
        // Latest version soft-deleted: absent.
        let m = meta(
            2,
            vec![
                (1, version("2024-01-01T00:00:00Z", "", false)),
                (2, version("2024-01-02T00:00:00Z", "2024-01-02T01:00:00Z", false)),
            ],
        );
        assert_eq!(key_state(&m, now).unwrap(), None);
        // Destroyed: absent. Metadata only: absent.
        let m = meta(1, vec![(1, version("2024-01-01T00:00:00Z", "", true))]);
        assert_eq!(key_state(&m, now).unwrap(), None);
        assert_eq!(key_state(&meta(0, vec![]), now).unwrap(), None);
        // Set again after a soft delete: a new credential from v3 on.
        let m = meta(
            4,
            vec![
                (1, version("2024-01-01T00:00:00Z", "", false)),
                (2, version("2024-01-02T00:00:00Z", "2024-01-02T01:00:00Z", false)),
                (3, version("2024-01-03T00:00:00Z", "", false)),
                (4, version("2024-01-04T00:00:00Z", "", false)),
            ],
        );
        let s = key_state(&m, now).unwrap().unwrap();
        assert_eq!((s.created_at, s.updated_at), (t("2024-01-03T00:00:00Z"), t("2024-01-04T00:00:00Z")));
        // A deletion scheduled in the future does not count yet.
        let m = meta(1, vec![(1, version("2024-01-01T00:00:00Z", "2999-01-01T00:00:00Z", false))]);
        assert!(key_state(&m, now).unwrap().is_some());
        // Pruned history: the key's own created_time.
        let m = meta(
            12,
            vec![
                (11, version("2024-01-11T00:00:00Z", "", false)),
                (12, version("2024-01-12T00:00:00Z", "", false)),
            ],
        );
        assert_eq!(key_state(&m, now).unwrap().unwrap().created_at, t("2024-01-01T00:00:00Z"));
    }
}
