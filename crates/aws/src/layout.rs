//! How credentials are laid out in Secrets Manager: secret names and their
//! length cap, the description envelope that carries metadata and
//! timestamps, text and binary values, the empty-value placeholder, and the
//! version ids and staging label this crate writes.
//!
//! See the crate docs ("Layout") for the user-facing description.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use credstore_core::{CredentialKey, Error, Metadata, Namespace, Result, SecretValue, StoreId};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// The `SecretString` stored for an empty value, which Secrets Manager
/// refuses. The envelope's `e` flag tells it apart from a real `" "`.
pub(crate) const EMPTY_PLACEHOLDER: &str = " ";

/// Every version id (`ClientRequestToken`) this crate writes starts with this,
/// so a version written by another tool (console, CLI, rotation) is told
/// apart from ours.
pub(crate) const TOKEN_PREFIX: &str = "credstore1-";

/// The longest secret name Secrets Manager accepts, in characters (secret
/// names here are ASCII, so bytes): the one cap every length rule of this
/// crate derives from. A name is `{prefix}/{namespace}/{key}`, and a key may
/// be [`MAX_ID_LEN`](credstore_core::MAX_ID_LEN) (255) bytes, so the prefix
/// and namespace together get `512 - 1 - 255 = 256` bytes; see
/// [`AwsStore::max_namespace_len`](crate::AwsStore::max_namespace_len).
pub const MAX_SECRET_NAME_LEN: usize = 512;

/// The longest name prefix, namespace included: a 255-byte key and its `/`
/// separator must fit after it.
pub(crate) const MAX_PREFIX_LEN: usize = MAX_SECRET_NAME_LEN - 1 - credstore_core::MAX_ID_LEN;

/// The longest namespace a store with the configured `prefix` accepts: what
/// is left of [`MAX_PREFIX_LEN`] after the prefix and its `/`.
pub(crate) fn max_namespace_len(prefix: &str) -> usize {
    let used = if prefix.is_empty() { 0 } else { prefix.len() + 1 };
    MAX_PREFIX_LEN.saturating_sub(used)
}

/// The staging label a version carries between being written
/// (`PutSecretValue`) and becoming `AWSCURRENT`. One label for every writer:
/// staging a version moves it from the version staged before.
pub(crate) const STAGED_LABEL: &str = "credstore-staged";

/// What a value is stored as: text in `SecretString` (the empty value as
/// [`EMPTY_PLACEHOLDER`]), anything else in `SecretBinary`. The crate's copy
/// of the value for the requests of one write (retries included), zeroized
/// when dropped.
pub(crate) enum Payload {
    /// `SecretString`.
    Text(Zeroizing<String>),
    /// `SecretBinary`.
    Binary(Zeroizing<Vec<u8>>),
}

impl Payload {
    pub(crate) fn of(value: &SecretValue) -> Self {
        if value.is_empty() {
            return Payload::Text(Zeroizing::new(EMPTY_PLACEHOLDER.to_owned()));
        }
        match value.expose_str() {
            Ok(text) => Payload::Text(Zeroizing::new(text.to_owned())),
            Err(_) => Payload::Binary(Zeroizing::new(value.expose_secret().to_vec())),
        }
    }
}

/// The tag that holds a credential's `created_at`, in nanoseconds since the
/// Unix epoch as decimal digits. Set by `CreateSecret` (with the secret) and
/// when a deleted key is set again; no other write touches tags, so an
/// overwrite need not read it first.
pub(crate) const CREATED_TAG: &str = "credstore-created";

/// The longest description Secrets Manager accepts, in characters.
pub(crate) const MAX_DESCRIPTION_LEN: usize = 2048;

/// A fresh version id: [`TOKEN_PREFIX`] and 32 random hex digits (43
/// characters; the service wants 32 to 64).
pub(crate) fn new_version_id() -> String {
    format!("{TOKEN_PREFIX}{}", uuid::Uuid::new_v4().simple())
}

/// Whether a version id was written by this crate.
pub(crate) fn is_our_version(version_id: &str) -> bool {
    version_id.starts_with(TOKEN_PREFIX)
}

/// Checks the configured name prefix: empty, or id-valid segments joined by
/// `/` (the namespace rules), at most [`MAX_PREFIX_LEN`] bytes.
///
/// # Errors
/// [`Error::InvalidNamespace`] naming the rule that failed.
pub(crate) fn check_prefix(prefix: &str) -> Result<()> {
    Namespace::new(prefix)?.check_len(MAX_PREFIX_LEN)
}

/// Maps keys to secret names and back: `{prefix}/{key}`, or `{key}` with no
/// prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Names {
    /// The prefix, without a trailing `/`; empty for none.
    prefix: String,
}

impl Names {
    pub(crate) fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The names of this prefix's keys start with this.
    pub(crate) fn name_start(&self) -> String {
        if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        }
    }

    /// The names of namespace `ns` below this prefix.
    pub(crate) fn child(&self, ns: &Namespace) -> Self {
        match (self.prefix.is_empty(), ns.is_root()) {
            (_, true) => self.clone(),
            (true, false) => Self::new(ns.as_str()),
            (false, false) => Self::new(&format!("{}/{ns}", self.prefix)),
        }
    }

    /// The secret name of `key`.
    pub(crate) fn name(&self, key: &CredentialKey) -> String {
        format!("{}{}", self.name_start(), key.as_str())
    }

    /// The key a secret name stands for in this prefix, or `None` when the
    /// name is outside it (another prefix, or a deeper namespace).
    pub(crate) fn key_of(&self, name: &str) -> Option<CredentialKey> {
        let rest = name.strip_prefix(&self.name_start())?;
        // Keys hold no '/', so a name in a namespace below is never a key here.
        CredentialKey::new(rest).ok()
    }
}

/// What the description keeps of the version before the current one (the
/// one `AWSPREVIOUS` is on), so that it can be read back with its metadata,
/// times and expiry: `{"v":"..","m":{..},"u":..,"e":true,"x":..}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Previous {
    /// Its version id.
    pub v: String,
    /// Its metadata; absent when empty.
    pub m: Metadata,
    /// Its `updated_at`, nanoseconds since the Unix epoch.
    pub u: u64,
    /// Its value is empty (the placeholder).
    pub e: bool,
    /// Its `expires_at`, nanoseconds since the Unix epoch; absent for none.
    pub x: Option<u64>,
}

impl Previous {
    pub(crate) fn updated_at(&self) -> SystemTime {
        from_nanos(self.u)
    }

    pub(crate) fn expires_at(&self) -> Option<SystemTime> {
        self.x.map(from_nanos)
    }

    fn encode(&self, out: &mut String) {
        use std::fmt::Write as _;
        let v = serde_json::to_string(&self.v).unwrap_or_default();
        let _ = write!(out, "{{\"v\":{v}");
        if !self.m.is_empty() {
            let _ = write!(out, ",\"m\":{}", serde_json::to_string(&self.m).unwrap_or_default());
        }
        let _ = write!(out, ",\"u\":{}", self.u);
        if self.e {
            out.push_str(",\"e\":true");
        }
        if let Some(x) = self.x {
            let _ = write!(out, ",\"x\":{x}");
        }
        out.push('}');
    }

    fn from_json(value: Value) -> std::result::Result<Self, String> {
        let Value::Object(mut fields) = value else { return Err("`p` is not a JSON object".into()) };
        let v = match fields.remove("v") {
            Some(Value::String(v)) => v,
            _ => return Err("`p.v` is missing or not a string".into()),
        };
        let m = match fields.remove("m") {
            Some(m) => serde_json::from_value::<Metadata>(m).map_err(|e| format!("`p.m`: {e}"))?,
            None => Metadata::new(),
        };
        let u =
            fields.get("u").and_then(Value::as_u64).ok_or("`p.u` is missing or not an unsigned integer")?;
        let e = match fields.get("e") {
            Some(Value::Bool(e)) => *e,
            Some(_) => return Err("`p.e` is not a boolean".into()),
            None => false,
        };
        let x = match fields.get("x") {
            None | Some(Value::Null) => None,
            Some(x) => Some(x.as_u64().ok_or("`p.x` is not an unsigned integer")?),
        };
        Ok(Self { v, m, u, e, x })
    }
}

/// What the description of a secret written by this crate holds, as compact
/// JSON: `{"cs":1,"m":{..},"c":..,"u":..,"v":"..","e":true,"x":..,"p":{..}}`.
///
/// The field names are one or two letters so that the largest metadata the
/// core allows, with every character escaped, still fits the 2,048
/// characters of a description (see `largest_envelope_fits` below). The
/// fields are written in this order, `cs` first (a description is told to
/// be an envelope by how it starts); unknown fields are ignored on reading.
/// Encoded and decoded with `serde_json` by hand, so that `serde` stays an
/// optional dependency of the crate (its `serde` feature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    /// The layout version: 1 with `c`, 2 without (`created_at` is then in
    /// the [`CREATED_TAG`] tag, or the secret's creation date).
    pub cs: u32,
    /// The metadata; absent when empty.
    pub m: Metadata,
    /// `created_at`, nanoseconds since the Unix epoch, when the write knew
    /// it (the [`CREATED_TAG`] tag, when present, wins); absent (or null)
    /// when not known.
    pub c: Option<u64>,
    /// `updated_at`, nanoseconds since the Unix epoch.
    pub u: u64,
    /// The version id of the value written with this description.
    pub v: String,
    /// True when the value is empty and the `SecretString` holds
    /// [`EMPTY_PLACEHOLDER`]; absent when false.
    pub e: bool,
    /// `expires_at` of the version written with this description,
    /// nanoseconds since the Unix epoch; absent when it never expires.
    pub x: Option<u64>,
    /// The version before it, when it is kept (see [`Previous`]); absent
    /// when the write created the key, when the version before was not one
    /// this store described, or when it did not fit the description.
    pub p: Option<Previous>,
}

const ENVELOPE_START: &str = "{\"cs\":";

impl Envelope {
    pub(crate) fn new(
        metadata: &Metadata,
        created_at: Option<SystemTime>,
        updated_at: SystemTime,
        version: String,
        empty: bool,
    ) -> Self {
        Self {
            // Readers of layout 1 need `c`: an envelope without it says so.
            cs: if created_at.is_some() { 1 } else { 2 },
            m: metadata.clone(),
            c: created_at.map(to_nanos),
            u: to_nanos(updated_at),
            v: version,
            e: empty,
            x: None,
            p: None,
        }
    }

    /// Returns a copy that expires at `expires_at`.
    pub(crate) fn with_expires_at(mut self, expires_at: Option<SystemTime>) -> Self {
        self.x = expires_at.map(to_nanos);
        self
    }

    /// Returns a copy that keeps `previous`, if the description still fits
    /// [`MAX_DESCRIPTION_LEN`] characters with it; without it otherwise
    /// (that version is then not kept: see the crate docs).
    pub(crate) fn with_previous(mut self, previous: Option<Previous>) -> Self {
        self.p = previous;
        if self.p.is_some() && self.encode().chars().count() > MAX_DESCRIPTION_LEN {
            self.p = None;
        }
        self
    }

    /// What the description of the next write keeps of this one.
    pub(crate) fn as_previous(&self) -> Previous {
        Previous { v: self.v.clone(), m: self.m.clone(), u: self.u, e: self.e, x: self.x }
    }

    pub(crate) fn expires_at(&self) -> Option<SystemTime> {
        self.x.map(from_nanos)
    }

    /// Whether the version written with this description has expired at `now`.
    pub(crate) fn expired(&self, now: SystemTime) -> bool {
        self.expires_at().is_some_and(|t| t <= now)
    }

    /// The description text: `{"cs":..,"m":{..},"c":..,"u":..,"v":"..","e":true}`,
    /// leaving out `m` when empty, `c` when unknown and `e` when false.
    pub(crate) fn encode(&self) -> String {
        use std::fmt::Write as _;
        // Serializing a map of strings, or a string, cannot fail; writing
        // to a String neither.
        let mut out = format!("{ENVELOPE_START}{}", self.cs);
        if !self.m.is_empty() {
            let _ = write!(out, ",\"m\":{}", serde_json::to_string(&self.m).unwrap_or_default());
        }
        if let Some(c) = self.c {
            let _ = write!(out, ",\"c\":{c}");
        }
        let v = serde_json::to_string(&self.v).unwrap_or_default();
        let _ = write!(out, ",\"u\":{},\"v\":{v}", self.u);
        if self.e {
            out.push_str(",\"e\":true");
        }
        if let Some(x) = self.x {
            let _ = write!(out, ",\"x\":{x}");
        }
        if let Some(p) = &self.p {
            out.push_str(",\"p\":");
            p.encode(&mut out);
        }
        out.push('}');
        out
    }

    /// The envelope in a parsed description, or why it is not one.
    fn from_json(text: &str) -> std::result::Result<Self, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let Value::Object(mut fields) = value else { return Err("not a JSON object".into()) };
        let number = |name: &str, fields: &Map<String, Value>| match fields.get(name) {
            Some(v) => v.as_u64().map(Some).ok_or_else(|| format!("`{name}` is not an unsigned integer")),
            None => Ok(None),
        };
        let required = |name: &str, got: Option<u64>| got.ok_or_else(|| format!("missing field `{name}`"));
        let cs = required("cs", number("cs", &fields)?)?;
        let cs = u32::try_from(cs).map_err(|_| format!("`cs` is out of range: {cs}"))?;
        let m = match fields.remove("m") {
            Some(m) => serde_json::from_value::<Metadata>(m).map_err(|e| format!("`m`: {e}"))?,
            None => Metadata::new(),
        };
        let c = match fields.get("c") {
            Some(Value::Null) => None,
            _ => number("c", &fields)?,
        };
        let u = required("u", number("u", &fields)?)?;
        let v = match fields.remove("v") {
            Some(Value::String(v)) => v,
            Some(_) => return Err("`v` is not a string".into()),
            None => return Err("missing field `v`".into()),
        };
        let e = match fields.get("e") {
            Some(Value::Bool(e)) => *e,
            Some(_) => return Err("`e` is not a boolean".into()),
            None => false,
        };
        let x = match fields.get("x") {
            Some(Value::Null) => None,
            _ => number("x", &fields)?,
        };
        let p = match fields.remove("p") {
            None | Some(Value::Null) => None,
            Some(p) => Some(Previous::from_json(p)?),
        };
        Ok(Self { cs, m, c, u, v, e, x, p })
    }

    /// Reads a description: `Ok(None)` for a description that is not an
    /// envelope (a secret made by another tool).
    ///
    /// # Errors
    /// [`Error::Backend`] when it starts like an envelope but does not parse.
    pub(crate) fn decode(store: &StoreId, name: &str, description: Option<&str>) -> Result<Option<Self>> {
        let Some(text) = description.filter(|d| d.starts_with(ENVELOPE_START)) else { return Ok(None) };
        match Self::from_json(text) {
            Ok(env) if env.cs == 1 && env.c.is_none() => Err(Error::backend(
                store,
                format!(
                    "the description of secret {name:?} is a credstore envelope without its creation time"
                ),
            )),
            Ok(env) if env.cs == 1 || env.cs == 2 => Ok(Some(env)),
            Ok(env) => Err(Error::backend(
                store,
                format!(
                    "secret {name:?} uses credstore layout version {}, which this version cannot read",
                    env.cs
                ),
            )),
            Err(e) => Err(Error::backend(
                store,
                format!("the description of secret {name:?} is not a valid credstore envelope: {e}"),
            )),
        }
    }

    pub(crate) fn created_at(&self) -> Option<SystemTime> {
        self.c.map(from_nanos)
    }

    pub(crate) fn updated_at(&self) -> SystemTime {
        from_nanos(self.u)
    }
}

pub(crate) fn to_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub(crate) fn from_nanos(n: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(n)
}

/// The [`CREATED_TAG`] value for `t`.
pub(crate) fn created_tag_value(t: SystemTime) -> String {
    to_nanos(t).to_string()
}

/// Reads a [`CREATED_TAG`] value; `None` when it is not one of ours.
pub(crate) fn parse_created_tag(value: &str) -> Option<SystemTime> {
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u64>().ok().map(from_nanos)
}

/// A fresh `updated_at`: now, and strictly later than every one this process
/// handed out before (two writes in one clock tick, or a clock stepped back,
/// still get increasing times).
pub(crate) fn next_updated_at() -> SystemTime {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = to_nanos(SystemTime::now());
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last.saturating_add(1));
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return from_nanos(next),
            Err(seen) => last = seen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use credstore_core::{MAX_METADATA_ENTRIES, MAX_METADATA_TOTAL_BYTES};

    #[test]
    fn names_round_trip_and_stay_in_their_prefix() {
        let root = Names::new("");
        let app = Names::new("app");
        let tenant = app.child(&Namespace::new("t1").unwrap());
        assert_eq!(root.child(&Namespace::root()), root);
        assert_eq!(root.child(&Namespace::new("t1").unwrap()).prefix(), "t1");
        let key = CredentialKey::new("db.password").unwrap();
        assert_eq!(root.name(&key), "db.password");
        assert_eq!(app.name(&key), "app/db.password");
        assert_eq!(tenant.name(&key), "app/t1/db.password");
        assert_eq!(app.key_of("app/db.password"), Some(key.clone()));
        assert_eq!(app.key_of("app/t1/db.password"), None, "a deeper namespace is not a key");
        assert_eq!(app.key_of("apple/db.password"), None);
        assert_eq!(root.key_of("app/db.password"), None);
        assert_eq!(tenant.key_of("app/t1/db.password"), Some(key));
    }

    #[test]
    fn prefix_rules() {
        assert!(check_prefix("").is_ok());
        assert!(check_prefix("prod/credstore").is_ok());
        for bad in ["a//b", "/a", "a b", "a/../b"] {
            assert!(matches!(check_prefix(bad), Err(Error::InvalidNamespace { .. })), "{bad}");
        }
        let longest = format!("{}/{}", "a".repeat(128), "b".repeat(MAX_PREFIX_LEN - 129));
        assert_eq!(longest.len(), MAX_PREFIX_LEN);
        assert!(check_prefix(&longest).is_ok());
        let err = check_prefix(&format!("{longest}c")).unwrap_err();
        assert!(matches!(err, Error::InvalidNamespace { .. }), "{err}");
    }

    #[test]
    fn namespace_cap_leaves_room_for_the_longest_key() {
        assert_eq!(MAX_PREFIX_LEN, 256);
        assert_eq!(max_namespace_len(""), 256);
        assert_eq!(max_namespace_len("prod/app"), 256 - 9);
        assert_eq!(max_namespace_len(&"p".repeat(256)), 0);
        // The longest namespace and the longest key make the longest name.
        let prefix = "prod/app";
        let ns = Namespace::new("n".repeat(max_namespace_len(prefix))).unwrap();
        let key = CredentialKey::new("k".repeat(credstore_core::MAX_ID_LEN)).unwrap();
        let name = Names::new(prefix).child(&ns).name(&key);
        assert_eq!(name.len(), MAX_SECRET_NAME_LEN);
    }

    #[test]
    fn text_and_binary_payloads() {
        assert!(matches!(Payload::of(&SecretValue::from("t")), Payload::Text(t) if *t == "t"));
        assert!(matches!(Payload::of(&SecretValue::from("")), Payload::Text(t) if *t == EMPTY_PLACEHOLDER));
        let bytes = vec![0xff, 0x00, 0x80];
        assert!(matches!(Payload::of(&SecretValue::from(bytes.clone())), Payload::Binary(b) if *b == bytes));
    }

    #[test]
    fn the_payloads_copy_of_a_value_is_zeroized_on_drop() {
        fn zeroized_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        for value in [SecretValue::from("text"), SecretValue::from(vec![0xff])] {
            match Payload::of(&value) {
                Payload::Text(t) => zeroized_on_drop(&t),
                Payload::Binary(b) => zeroized_on_drop(&b),
            }
        }
    }

    #[test]
    fn created_tags_and_updated_times() {
        let t = from_nanos(1_732_712_345_123_456_789);
        assert_eq!(created_tag_value(t), "1732712345123456789");
        assert_eq!(parse_created_tag(&created_tag_value(t)), Some(t));
        for bad in ["", "12a", "-1", "99999999999999999999999"] {
            assert_eq!(parse_created_tag(bad), None, "{bad}");
        }
        let a = next_updated_at();
        let b = next_updated_at();
        assert!(b > a);
    }

    #[test]
    fn version_ids_fit_the_service_limits() {
        let v = new_version_id();
        assert!((32..=64).contains(&v.len()), "{v}");
        assert!(is_our_version(&v));
        assert!(!is_our_version("0c5f5b7e-5d1c-4a2b-9d4e-2f6a8b9c0d1e"));
        assert_ne!(v, new_version_id());
    }

    #[test]
    fn envelope_round_trips_exactly() {
        let id = StoreId::new("s").unwrap();
        let meta = Metadata::try_from([("owner", "pay\"ments ✓"), ("a", "\\")]).unwrap();
        let t0 = SystemTime::now();
        let env = Envelope::new(&meta, Some(t0), t0 + Duration::from_nanos(1), new_version_id(), true);
        let text = env.encode();
        assert!(text.starts_with(ENVELOPE_START), "{text}");
        let back = Envelope::decode(&id, "n", Some(&text)).unwrap().unwrap();
        assert_eq!(back, env);
        assert_eq!(back.created_at(), Some(t0));
        assert_eq!(back.cs, 1, "an envelope with c is layout 1, which 0.1 reads");
        // Without c: layout 2, and created_at is left to the tag.
        let blind = Envelope::new(&meta, None, t0, new_version_id(), false);
        let text = blind.encode();
        assert!(text.starts_with("{\"cs\":2,") && !text.contains("\"c\":"), "{text}");
        let back = Envelope::decode(&id, "n", Some(&text)).unwrap().unwrap();
        assert_eq!((back.created_at(), &back), (None, &blind));
        assert_eq!(back.m, meta);
        // Empty metadata and a non-empty value leave their fields out.
        let plain = Envelope::new(&Metadata::new(), Some(t0), t0, "v".into(), false).encode();
        assert!(!plain.contains("\"m\"") && !plain.contains("\"e\""), "{plain}");
    }

    #[test]
    fn envelope_text_is_the_layout_written_so_far() {
        // Byte for byte what earlier versions of this crate wrote and read.
        let meta = Metadata::try_from([("owner", "ci \"q\" ✓")]).unwrap();
        let env = Envelope {
            cs: 1,
            m: meta,
            c: Some(5),
            u: 7,
            v: "credstore1-ab".into(),
            e: true,
            x: None,
            p: None,
        };
        let text = r#"{"cs":1,"m":{"owner":"ci \"q\" ✓"},"c":5,"u":7,"v":"credstore1-ab","e":true}"#;
        assert_eq!(env.encode(), text);
        let id = StoreId::new("s").unwrap();
        assert_eq!(Envelope::decode(&id, "n", Some(text)).unwrap(), Some(env));
        let bare =
            Envelope { cs: 2, m: Metadata::new(), c: None, u: 7, v: "x".into(), e: false, x: None, p: None };
        assert_eq!(bare.encode(), r#"{"cs":2,"u":7,"v":"x"}"#);
        // Unknown fields are ignored and a null `c` is an unknown one.
        let later = r#"{"cs":2,"c":null,"u":7,"v":"x","zz":[1]}"#;
        assert_eq!(Envelope::decode(&id, "n", Some(later)).unwrap(), Some(bare));
    }

    #[test]
    fn foreign_and_broken_descriptions() {
        let id = StoreId::new("s").unwrap();
        for broken in [
            r#"{"cs":2,"v":"x"}"#,
            r#"{"cs":2,"u":-1,"v":"x"}"#,
            r#"{"cs":2,"u":1}"#,
            r#"{"cs":2,"u":1,"v":3}"#,
            r#"{"cs":2,"u":1,"v":"x","e":1}"#,
            r#"{"cs":2,"u":1,"v":"x","m":null}"#,
            r#"{"cs":2,"c":"1","u":1,"v":"x"}"#,
            r#"{"cs":99999999999,"u":1,"v":"x"}"#,
        ] {
            let err = Envelope::decode(&id, "n", Some(broken)).unwrap_err();
            assert!(err.to_string().contains("is not a valid credstore envelope"), "{broken}: {err}");
        }
        assert_eq!(Envelope::decode(&id, "n", None).unwrap(), None);
        assert_eq!(Envelope::decode(&id, "n", Some("Database password")).unwrap(), None);
        assert_eq!(Envelope::decode(&id, "n", Some("{\"other\":1}")).unwrap(), None);
        assert!(Envelope::decode(&id, "n", Some("{\"cs\":1,\"c\":")).is_err());
        assert!(Envelope::decode(&id, "n", Some("{\"cs\":3,\"c\":1,\"u\":1,\"v\":\"x\"}")).is_err());
        // Layout 1 always has c.
        assert!(Envelope::decode(&id, "n", Some("{\"cs\":1,\"u\":1,\"v\":\"x\"}")).is_err());
        // Metadata that breaks the core's rules is refused, not returned.
        let bad = "{\"cs\":1,\"m\":{\"bad key\":\"v\"},\"c\":1,\"u\":1,\"v\":\"x\"}";
        assert!(Envelope::decode(&id, "n", Some(bad)).is_err());
    }

    #[test]
    fn expiry_and_the_previous_version_round_trip_and_are_dropped_when_they_do_not_fit() {
        let id = StoreId::new("s").unwrap();
        let t = from_nanos(1_700_000_000_000_000_001);
        let meta = Metadata::try_from([("owner", "ci")]).unwrap();
        let before = Envelope::new(&meta, Some(t), t, "credstore1-a".into(), true).with_expires_at(Some(t));
        let env = Envelope::new(&Metadata::new(), Some(t), t, "credstore1-b".into(), false)
            .with_expires_at(Some(t + Duration::from_secs(1)))
            .with_previous(Some(before.as_previous()));
        let text = env.encode();
        assert_eq!(
            text,
            r#"{"cs":1,"c":1700000000000000001,"u":1700000000000000001,"v":"credstore1-b","x":1700000001000000001,"p":{"v":"credstore1-a","m":{"owner":"ci"},"u":1700000000000000001,"e":true,"x":1700000000000000001}}"#
        );
        let back = Envelope::decode(&id, "n", Some(&text)).unwrap().unwrap();
        assert_eq!(back, env);
        assert_eq!(back.p.as_ref().map(Previous::expires_at), Some(Some(t)));
        assert!(back.expired(t + Duration::from_secs(1)) && !back.expired(t));
        // A 0.2 reader ignores both fields; an envelope without them never expires.
        let plain = Envelope::new(&meta, Some(t), t, "v".into(), false);
        assert!(!plain.expired(from_nanos(u64::MAX)));
        // Two versions' worth of the largest metadata do not fit: the previous one is dropped.
        let mut big = Metadata::new();
        for i in 0..8 {
            big.insert(format!("k{i}"), "\"".repeat(100)).unwrap();
        }
        let previous = Envelope::new(&big, Some(t), t, new_version_id(), false).as_previous();
        let env = Envelope::new(&big, Some(t), t, new_version_id(), false).with_previous(Some(previous));
        assert_eq!(env.p, None);
        assert!(env.encode().chars().count() <= MAX_DESCRIPTION_LEN);
    }

    #[test]
    fn largest_envelope_fits() {
        // The worst case: 16 one-letter keys, 900 bytes in all, every value
        // byte a '"' that JSON escapes to two characters, far-future
        // timestamps, the empty flag.
        let mut meta = Metadata::new();
        let value_bytes = MAX_METADATA_TOTAL_BYTES - MAX_METADATA_ENTRIES;
        for i in 0..MAX_METADATA_ENTRIES {
            let len =
                value_bytes / MAX_METADATA_ENTRIES + usize::from(i < value_bytes % MAX_METADATA_ENTRIES);
            let key = char::from(b'a' + u8::try_from(i).unwrap()).to_string();
            meta.insert(key, "\"".repeat(len)).unwrap();
        }
        assert_eq!(meta.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(), MAX_METADATA_TOTAL_BYTES);
        let far = from_nanos(u64::MAX);
        let text =
            Envelope::new(&meta, Some(far), far, new_version_id(), true).with_expires_at(Some(far)).encode();
        assert!(text.chars().count() <= MAX_DESCRIPTION_LEN, "{} characters", text.chars().count());
        assert!(text.len() <= MAX_DESCRIPTION_LEN, "{} bytes", text.len());
    }
}
