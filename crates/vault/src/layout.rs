//! How credentials are laid out in KV v2: paths, the secret's data (text or
//! base64), versions, and the timestamps and liveness read from a key's
//! metadata. Pure functions, no I/O.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use credstore_core::{Metadata, Namespace, SecretValue, Version};
use serde::Serialize;
use serde_json::{Map, Value};
use vaultrs::api::kv2::responses::{ReadSecretMetadataResponse, SecretMetadata, SecretVersionMetadata};
use zeroize::Zeroizing;

/// The data field holding a text value.
pub(crate) const VALUE_FIELD: &str = "value";
/// The data field holding a binary value, base64 with padding (RFC 4648).
pub(crate) const VALUE_BASE64_FIELD: &str = "value_base64";
/// The data field holding the metadata, present only when it is not empty.
pub(crate) const METADATA_FIELD: &str = "metadata";
/// The data field holding the credential's creation time (RFC 3339, UTC, to
/// the nanosecond), written by every write after the one that created the
/// credential.
pub(crate) const CREATED_AT_FIELD: &str = "created_at";
/// The data field marking the write that created the credential (`true`):
/// its own `created_time` is the credential's creation, with no need to
/// look at earlier versions (which may belong to a deleted or expired
/// earlier life of the key).
pub(crate) const NEW_FIELD: &str = "new_credential";
/// The data field holding the version's expiry time (RFC 3339, UTC, to the
/// nanosecond), present only when the write set one.
pub(crate) const EXPIRES_AT_FIELD: &str = "expires_at";
/// The data field of a delete marker: the version `delete` writes (and then
/// soft-deletes) over the credential's last version, holding the time of
/// the delete and nothing else.
pub(crate) const DELETED_AT_FIELD: &str = "credstore_deleted_at";

/// The escape marking a key that would otherwise be the path segment `.` or
/// `..`, which HTTP clients and Vault's router resolve as relative paths.
/// `~` can appear in no key, so the encoding is one-to-one.
const ESCAPE: char = '~';

/// The path segment for a key.
pub(crate) fn encode_key(key: &str) -> Cow<'_, str> {
    if key == "." || key == ".." {
        Cow::Owned(format!("{ESCAPE}{key}"))
    } else {
        Cow::Borrowed(key)
    }
}

/// The key a listed path segment stands for, or `None` for a segment that
/// [`encode_key`] cannot have produced (written by another tool).
pub(crate) fn decode_key(segment: &str) -> Option<&str> {
    match segment.strip_prefix(ESCAPE) {
        Some(rest @ ("." | "..")) => Some(rest),
        Some(_) => None,
        None if segment == "." || segment == ".." || segment.contains(ESCAPE) => None,
        None => Some(segment),
    }
}

/// Validates a configured path (a mount, a prefix: segments of
/// `[a-zA-Z0-9-_.]` joined by `/`, no `.` or `..` segment, surrounding
/// slashes ignored) and returns it trimmed. Empty stays empty.
pub(crate) fn validate_path(path: &str) -> Result<String, String> {
    let trimmed = path.trim_matches('/');
    match Namespace::new(trimmed) {
        Ok(ns) => Ok(ns.as_str().to_owned()),
        Err(credstore_core::Error::InvalidNamespace { reason, .. }) => Err(reason.to_string()),
        Err(other) => Err(other.to_string()),
    }
}

/// The data written for one credential: `{"value": "..."}` for text,
/// `{"value_base64": "..."}` for any other bytes, with `"metadata": {...}`
/// unless it is empty, and `"created_at": "..."` unless the write creates
/// the credential.
#[derive(Serialize)]
pub(crate) struct Wire<'a> {
    #[serde(rename = "value", skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(rename = "value_base64", skip_serializing_if = "Option::is_none")]
    base64: Option<Base64Text>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created_at: Option<String>,
    #[serde(rename = "new_credential", skip_serializing_if = "std::ops::Not::not")]
    new: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
}

impl<'a> Wire<'a> {
    pub(crate) fn new(value: &'a SecretValue, metadata: &'a Metadata) -> Self {
        let (text, base64) = match value.expose_str() {
            Ok(text) => (Some(text), None),
            Err(_) => (None, Some(Base64Text(Zeroizing::new(BASE64.encode(value.expose_secret()))))),
        };
        Self {
            text,
            base64,
            metadata: (!metadata.is_empty()).then(|| metadata.as_map()),
            created_at: None,
            new: false,
            expires_at: None,
        }
    }

    /// Sets the `created_at` field: `None` for a write that creates the
    /// credential (its own `created_time` is then the creation time, and
    /// the `new_credential` marker says so).
    pub(crate) fn set_created_at(&mut self, created_at: Option<SystemTime>) {
        self.new = created_at.is_none();
        self.created_at = created_at.map(format_time);
    }

    /// Sets the `expires_at` field: `None` for a credential that never
    /// expires.
    pub(crate) fn set_expires_at(&mut self, expires_at: Option<SystemTime>) {
        self.expires_at = expires_at.map(format_time);
    }
}

/// The data of a delete marker: `{"credstore_deleted_at": "..."}`.
#[derive(Serialize)]
pub(crate) struct DeleteMarker {
    #[serde(rename = "credstore_deleted_at")]
    deleted_at: String,
}

impl DeleteMarker {
    pub(crate) fn at(t: SystemTime) -> Self {
        Self { deleted_at: format_time(t) }
    }
}

/// Whether a version's data is a delete marker ([`DELETED_AT_FIELD`]).
pub(crate) fn is_delete_marker(data: &Value) -> bool {
    data.get(DELETED_AT_FIELD).is_some()
}

/// Whether the data says its write created the credential ([`NEW_FIELD`]).
pub(crate) fn is_new_credential(data: &Value) -> bool {
    data.get(NEW_FIELD).and_then(Value::as_bool) == Some(true)
}

/// The `expires_at` a version's data records. Data without the field (0.2
/// and older, other tools) never expires; an unreadable time is an error,
/// so that a credential meant to expire is never served as if it did not.
pub(crate) fn expires_at_of(data: &Value) -> Result<Option<SystemTime>, String> {
    match data.get(EXPIRES_AT_FIELD) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_time(s)
            .map(Some)
            .ok_or_else(|| format!("the secret's field '{EXPIRES_AT_FIELD}' is not an RFC 3339 time")),
        Some(_) => Err(format!("the secret's field '{EXPIRES_AT_FIELD}' is not a string")),
    }
}

/// The credential metadata a version's data records, without touching its
/// value: for listing versions.
pub(crate) fn metadata_of(data: &Value) -> Result<Metadata, String> {
    match data.get(METADATA_FIELD) {
        None | Some(Value::Null) => Ok(Metadata::new()),
        Some(Value::Object(m)) => metadata_from_object(m.clone()),
        Some(_) => Err(format!("the secret's field '{METADATA_FIELD}' is not an object")),
    }
}

/// The base64 text of a binary value, zeroized when dropped.
struct Base64Text(Zeroizing<String>);

impl Serialize for Base64Text {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Reads a credential back from a secret's data. A text value is moved, not
/// copied, into the returned [`SecretValue`]; base64 text is zeroized once
/// decoded; whatever else the data holds (other fields, a value refused) is
/// zeroized before it is dropped. Error messages never contain the data.
pub(crate) fn from_wire(data: Value) -> Result<(SecretValue, Metadata), String> {
    let mut data = Scrubbed(data);
    let Value::Object(map) = &mut data.0 else {
        return Err("the secret's data is not a JSON object".into());
    };
    let text = map.remove(VALUE_FIELD).map(Scrubbed);
    let base64 = map.remove(VALUE_BASE64_FIELD).map(Scrubbed);
    let value = match (text.map(Scrubbed::take), base64.map(Scrubbed::take)) {
        (Some(Value::String(s)), None) => SecretValue::from_text(s),
        (None, Some(Value::String(s))) => {
            let s = Zeroizing::new(s);
            let bytes = BASE64.decode(s.as_bytes()).map_err(|e| {
                // The error's Display quotes the offending character: not passed on.
                let at = match e {
                    base64::DecodeError::InvalidByte(at, _)
                    | base64::DecodeError::InvalidLastSymbol(at, _) => {
                        format!(" at offset {at}")
                    }
                    _ => String::new(),
                };
                format!("the secret's field '{VALUE_BASE64_FIELD}' is not valid base64{at}")
            })?;
            SecretValue::from_bytes(bytes)
        }
        (Some(a), Some(b)) => {
            scrub(a);
            scrub(b);
            return Err(format!(
                "the secret has both '{VALUE_FIELD}' and '{VALUE_BASE64_FIELD}'; it holds one value"
            ));
        }
        (Some(other), None) => {
            scrub(other);
            return Err(format!("the secret's field '{VALUE_FIELD}' is not a string"));
        }
        (None, Some(other)) => {
            scrub(other);
            return Err(format!("the secret's field '{VALUE_BASE64_FIELD}' is not a string"));
        }
        (None, None) => {
            if let Some(marker) = map.keys().find(|k| k.starts_with("value_")) {
                return Err(format!(
                    "the secret's value is in field '{marker}', an encoding this version of credstore does \
                     not know (it knows '{VALUE_FIELD}' and '{VALUE_BASE64_FIELD}')"
                ));
            }
            return Err(format!("the secret has no field '{VALUE_FIELD}' (it was not written by credstore)"));
        }
    };
    let metadata = match map.remove(METADATA_FIELD) {
        None | Some(Value::Null) => Metadata::new(),
        Some(Value::Object(m)) => metadata_from_object(m)?,
        Some(_) => return Err(format!("the secret's field '{METADATA_FIELD}' is not an object")),
    };
    Ok((value, metadata))
}

/// A piece of a secret's data that is scrubbed when dropped, unless taken.
struct Scrubbed(Value);

impl Scrubbed {
    fn take(mut self) -> Value {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Scrubbed {
    fn drop(&mut self) {
        scrub(std::mem::take(&mut self.0));
    }
}

/// The `created_at` a secret's data records, if it holds a readable one.
/// Data written by credstore 0.1, by another tool, or by the write that
/// created the credential has none; an unreadable one counts as none.
pub(crate) fn created_at_of(data: &Value) -> Option<SystemTime> {
    data.get(CREATED_AT_FIELD).and_then(Value::as_str).and_then(parse_time)
}

/// Overwrites every string in `data` with zeros before it is dropped: for
/// reads that only need the version.
pub(crate) fn scrub(data: Value) {
    use zeroize::Zeroize as _;
    match data {
        Value::String(mut s) => s.zeroize(),
        Value::Array(a) => a.into_iter().for_each(scrub),
        Value::Object(m) => m.into_iter().for_each(|(mut k, v)| {
            k.zeroize();
            scrub(v);
        }),
        _ => {}
    }
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

/// The [`Version`] of a write: the KV v2 version number, a dash, and the
/// version's `created_time` in nanoseconds since the Unix epoch, such as
/// `3-1714564800123456789`. The time tells apart the versions of one number
/// in the key's successive lives (KV v2 counts from 1 again after the key's
/// metadata is deleted).
pub(crate) fn version_text(number: u64, created: SystemTime) -> Version {
    let nanos = created.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    // Digits and one dash, under 50 bytes: always a valid version.
    Version::new(format!("{number}-{nanos}")).unwrap_or_else(|_| Version::from_counter(number))
}

/// The KV v2 version number and `created_time` (nanoseconds since the Unix
/// epoch) a [`Version`] of [`version_text`]'s form names; `None` for any
/// other text (no version of this store).
pub(crate) fn parse_version(version: &Version) -> Option<(u64, u128)> {
    let (number, nanos) = version.as_str().split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(number) || !digits(nanos) {
        return None;
    }
    Some((number.parse().ok()?, nanos.parse().ok()?))
}

/// Whether the version `number` written at `created` is the one `nanos`
/// (from [`parse_version`]) names.
pub(crate) fn same_write(created: SystemTime, nanos: u128) -> bool {
    created.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()) == nanos
}

/// Where a version the key's metadata lists stands, before its data is
/// read (its data tells whether it has expired).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Standing {
    /// The key's current version, live: what `get` reads unless it expired.
    Newest,
    /// The version right after it is soft-deleted (a delete marker): this
    /// one was current when the key was deleted.
    BeforeDelete,
    /// An earlier version.
    Earlier,
}

/// One version the key's metadata lists within the retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Kept {
    pub number: u64,
    /// Its `created_time`.
    pub written_at: SystemTime,
    pub standing: Standing,
}

impl Kept {
    pub(crate) fn version(&self) -> Version {
        version_text(self.number, self.written_at)
    }
}

/// The key's versions that can be read, newest first: within the newest
/// `max_versions` numbers (delete markers count, as KV v2 counts them when
/// it prunes), neither soft-deleted nor destroyed.
pub(crate) fn kept_versions(
    meta: &ReadSecretMetadataResponse,
    max_versions: u32,
    now: SystemTime,
) -> Result<Vec<Kept>, String> {
    let current = meta.current_version;
    let oldest = current.saturating_sub(u64::from(max_versions.max(1))) + 1;
    let mut kept = Vec::new();
    for number in (oldest.max(1)..=current).rev() {
        let Some(v) = meta.versions.get(&number.to_string()) else { continue };
        if !version_live(v, now) {
            continue;
        }
        let written_at = time(&v.created_time, "version created_time")?;
        let next_soft_deleted = meta
            .versions
            .get(&(number + 1).to_string())
            .is_some_and(|next| !next.destroyed && !version_live(next, now));
        let standing = if number == current {
            Standing::Newest
        } else if next_soft_deleted {
            Standing::BeforeDelete
        } else {
            Standing::Earlier
        };
        kept.push(Kept { number, written_at, standing });
    }
    Ok(kept)
}

/// Whether version `number` of the key is within the newest `max_versions`
/// numbers.
pub(crate) fn within_retention(meta: &ReadSecretMetadataResponse, number: u64, max_versions: u32) -> bool {
    number >= 1
        && number <= meta.current_version
        && meta.current_version - number < u64::from(max_versions.max(1))
}

/// The version `number` as the key's metadata lists it, if it is live
/// (neither soft-deleted nor destroyed).
pub(crate) fn live_version(
    meta: &ReadSecretMetadataResponse,
    number: u64,
    now: SystemTime,
) -> Option<SystemTime> {
    let v = meta.versions.get(&number.to_string())?;
    version_live(v, now).then(|| parse_time(&v.created_time)).flatten()
}

/// The version `number`'s entry in the key's metadata, unless destroyed:
/// `Some(created_time)` for a version whose value is still held (live or
/// soft-deleted).
pub(crate) fn undestroyed_version(meta: &ReadSecretMetadataResponse, number: u64) -> Option<SystemTime> {
    let v = meta.versions.get(&number.to_string())?;
    (!v.destroyed).then(|| parse_time(&v.created_time)).flatten()
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
    /// The current version's `expires_at`, when known (read from its data);
    /// `None` also when only the key's metadata was read.
    pub expires_at: Option<SystemTime>,
}

impl KeyState {
    /// The credstore version of this state.
    pub(crate) fn version_text(&self) -> Version {
        version_text(self.version, self.updated_at)
    }

    /// Whether this state's version has expired at `now`.
    pub(crate) fn expired(&self, now: SystemTime) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }
}

fn version_live(v: &SecretMetadata, now: SystemTime) -> bool {
    // A deletion time in the future is a scheduled deletion (delete_version_after).
    !v.destroyed && (v.deletion_time.is_empty() || parse_time(&v.deletion_time).is_some_and(|t| t > now))
}

fn time(s: &str, what: &str) -> Result<SystemTime, String> {
    parse_time(s).ok_or_else(|| format!("unreadable {what} in the key's metadata"))
}

/// When the credential whose version `version` is live began, by the key's
/// metadata: for data that records no `created_at` (see [`created_at_of`]).
pub(crate) fn created_from_metadata(
    meta: &ReadSecretMetadataResponse,
    version: u64,
    now: SystemTime,
) -> Result<SystemTime, String> {
    Ok(run_start(meta, version, now)?.0)
}

/// Whether a version a data read returned is live (Vault answers 404 for
/// deleted and destroyed versions already; this is the belt to those braces).
pub(crate) fn read_version_live(v: &SecretVersionMetadata, now: SystemTime) -> bool {
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
    let updated_at = time(&current.created_time, "version created_time")?;
    let (created_at, _) = run_start(meta, version, now)?;
    Ok(Some(KeyState { version, created_at: created_at.min(updated_at), updated_at, expires_at: None }))
}

/// When the run of live versions that ends at `version` began, and whether
/// it began with `version` itself (the write of `version` created the key).
/// Versions before a dead one belong to an earlier credential.
pub(crate) fn run_start(
    meta: &ReadSecretMetadataResponse,
    version: u64,
    now: SystemTime,
) -> Result<(SystemTime, bool), String> {
    let mut first = version;
    loop {
        if first <= 1 {
            return Ok((time(&meta.created_time, "created_time")?, first == version));
        }
        match meta.versions.get(&(first - 1).to_string()) {
            Some(prev) if version_live(prev, now) => first -= 1,
            // The run started after a dead version: it began with `first`.
            Some(_) => {
                let created = meta.versions.get(&first.to_string()).map_or("", |v| &v.created_time);
                return Ok((time(created, "version created_time")?, first == version));
            }
            // Older versions were pruned (max_versions): the key's own time.
            None => return Ok((time(&meta.created_time, "created_time")?, false)),
        }
    }
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

/// Formats a time as RFC 3339 in UTC with nine fractional digits, as
/// `2024-05-01T12:00:00.123456789Z`; [`parse_time`] reads it back exactly.
/// Times before 1970 are written as the epoch (no credential has one).
pub(crate) fn format_time(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's algorithm, the inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
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
    fn dot_keys_are_escaped_one_to_one() {
        for key in [".", "..", "...", "a..b", ".hidden", "-", "x"] {
            let enc = encode_key(key);
            assert_ne!(enc, ".");
            assert_ne!(enc, "..");
            assert_eq!(decode_key(&enc), Some(key), "{key}");
        }
        assert_eq!(encode_key("."), "~.");
        assert_eq!(decode_key("~x"), None);
        assert_eq!(decode_key("a~b"), None);
        assert_eq!(decode_key("."), None);
    }

    #[test]
    fn configured_paths_follow_the_namespace_rules() {
        assert_eq!(validate_path("").unwrap(), "");
        assert_eq!(validate_path("/apps/x/").unwrap(), "apps/x");
        assert!(validate_path("a/../b").unwrap_err().contains(".."));
        assert!(validate_path("./a").is_err());
        assert!(validate_path("a//b").is_err());
        assert!(validate_path("a b").is_err());
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
        assert!(v2 == v && v2.is_text());
        assert_eq!(m2, m);
        let plain = serde_json::to_value(Wire::new(&v, &Metadata::new())).unwrap();
        assert_eq!(
            plain,
            serde_json::json!({"value": "s3cr3t \"quoted\"\n"}),
            "no metadata field when empty"
        );
    }

    #[test]
    fn binary_values_are_base64_under_their_own_field() {
        let every_byte: Vec<u8> = (0..=255).collect();
        let v = SecretValue::from_bytes(every_byte.clone());
        let json = serde_json::to_value(Wire::new(&v, &Metadata::new())).unwrap();
        let encoded = json["value_base64"].as_str().unwrap();
        assert_eq!(BASE64.decode(encoded).unwrap(), every_byte);
        assert!(json.get("value").is_none(), "a binary value never sits in 'value': {json}");
        let (back, _) = from_wire(json).unwrap();
        assert_eq!(back.expose_secret(), every_byte.as_slice());
        assert!(!back.is_text());
        // Invalid UTF-8 of one byte, and base64 of UTF-8 read back as text.
        let json = serde_json::to_value(Wire::new(&SecretValue::from(vec![0xff]), &Metadata::new())).unwrap();
        assert_eq!(json, serde_json::json!({"value_base64": "/w=="}));
        let (text, _) = from_wire(serde_json::json!({"value_base64": "aGk="})).unwrap();
        assert!(text.is_text() && text.expose_secret() == b"hi");
        let (empty, _) = from_wire(serde_json::json!({"value_base64": ""})).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn unknown_or_ambiguous_encodings_are_clear_errors() {
        let err = from_wire(serde_json::json!({"value_base85": "hunter2"})).unwrap_err();
        assert!(err.contains("'value_base85'") && err.contains("does not know"), "{err}");
        let err = from_wire(serde_json::json!({"value": "a", "value_base64": "YQ=="})).unwrap_err();
        assert!(err.contains("both"), "{err}");
        let err = from_wire(serde_json::json!({"value_base64": "hunter2!"})).unwrap_err();
        assert!(err.contains("not valid base64") && !err.contains("hunter2") && !err.contains('!'), "{err}");
        // A text value with extra fields of another tool stays readable.
        let (v, _) = from_wire(serde_json::json!({"value": "a", "value_hint": "b"})).unwrap();
        assert!(v.expose_secret() == b"a");
    }

    #[test]
    fn foreign_data_is_refused_without_echoing_it() {
        for data in [
            serde_json::json!({"password": "hunter2"}),
            serde_json::json!({"value": 42, "x": "hunter2"}),
            serde_json::json!({"value_base64": 42, "x": "hunter2"}),
            serde_json::json!({"value": "hunter2", "metadata": "hunter2"}),
            serde_json::json!({"value": "hunter2", "metadata": {"k": 1}}),
            serde_json::json!(["hunter2"]),
        ] {
            let err = from_wire(data).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn versions_name_the_number_and_the_write() {
        let t = parse_time("2024-05-01T12:00:00.123456789Z").unwrap();
        assert_eq!(version_text(3, t).as_str(), "3-1714564800123456789");
        assert_ne!(version_text(1, t), version_text(1, t + Duration::from_nanos(1)), "lives differ");
        assert_ne!(version_text(1, t), version_text(2, t));
    }

    #[test]
    fn created_at_is_written_and_read_back_exactly() {
        let t = parse_time("2024-05-01T12:00:00.123456789Z").unwrap();
        assert_eq!(format_time(t), "2024-05-01T12:00:00.123456789Z");
        for t in [UNIX_EPOCH, t + Duration::from_nanos(1), parse_time("2000-02-29T23:59:59Z").unwrap()] {
            assert_eq!(parse_time(&format_time(t)), Some(t), "{}", format_time(t));
        }
        let now = SystemTime::now();
        assert_eq!(parse_time(&format_time(now)), Some(now));
        let v = SecretValue::from("v");
        let none = Metadata::new();
        let mut wire = Wire::new(&v, &none);
        wire.set_created_at(Some(t));
        let json = serde_json::to_value(&wire).unwrap();
        assert_eq!(json, serde_json::json!({"value": "v", "created_at": "2024-05-01T12:00:00.123456789Z"}));
        assert_eq!(created_at_of(&json), Some(t));
        // Old data, other tools' data, and garbage: none recorded.
        assert_eq!(created_at_of(&serde_json::json!({"value": "v"})), None);
        assert_eq!(created_at_of(&serde_json::json!({"value": "v", "created_at": "yesterday"})), None);
        assert_eq!(created_at_of(&serde_json::json!({"value": "v", "created_at": 5})), None);
        // The field does not disturb reading the value.
        let (back, meta) = from_wire(json).unwrap();
        assert!(back == v && meta.is_empty());
        wire.set_created_at(None);
        assert_eq!(
            serde_json::to_value(&wire).unwrap(),
            serde_json::json!({"value": "v", "new_credential": true}),
            "the write that creates the credential says so"
        );
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
