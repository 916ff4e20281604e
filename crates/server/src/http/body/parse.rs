//! The zeroizing parser of the create body ([`parse_create`]).
//!
//! The body is parsed in one pass straight into its fields (no JSON tree):
//! field names and a key without escapes are borrowed from the buffer, and
//! the value is copied once, into the zeroizing storage of its
//! [`SecretValue`]. `value` and `valueBase64` are taken from the buffer raw
//! and unescaped here ([`unescape`]), never in serde_json's scratch buffer,
//! which is freed without being wiped. Error messages never echo the body.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use credstore_core::{CredentialKey, Metadata, SecretValue};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use crate::http::problem::ApiError;

/// A validated create request.
pub(crate) struct CreateInput {
    /// The key.
    pub(crate) key: CredentialKey,
    /// The value.
    pub(crate) value: SecretValue,
    /// The metadata.
    pub(crate) metadata: Metadata,
    /// When it expires (`expiresAt`), if given.
    pub(crate) expires_at: Option<SystemTime>,
}

/// The most characters of a `valueBase64` whose bytes fit
/// [`credstore_core::MAX_VALUE_BYTES`] (87,384 for 65,536 bytes).
#[cfg(test)]
pub(crate) const MAX_VALUE_BASE64_CHARS: usize = credstore_core::MAX_VALUE_BYTES.div_ceil(3) * 4;

/// Parses and validates a create body. Error messages never echo the body.
///
/// The value is `value` (a JSON string, stored as text) or `valueBase64`
/// (standard padded base64, stored as the bytes it decodes to); exactly
/// one of the two. `expiresAt`, optional, is an RFC 3339 time (`null`:
/// never expires). A field given twice keeps its last value.
///
/// # Errors
/// 400 for malformed JSON, a non-object, then (in this order) an unknown
/// field, a missing or mistyped `key`, a mistyped `value` or
/// `valueBase64`, neither of the two (a missing field), a mistyped
/// `metadata`, a mistyped `expiresAt`; 422 for a key that breaks the id
/// rules, both value fields at once, a `valueBase64` that is not base64 or
/// over 65,536 bytes once decoded, a value over 65,536 bytes, metadata that
/// breaks the rules, and an `expiresAt` that is not an RFC 3339 time.
/// Whether the store takes an expiry, and whether it is in the future, is
/// the store's to say (by its clock).
pub(crate) fn parse_create(bytes: &[u8]) -> Result<CreateInput, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let fields = Top::deserialize(&mut de).and_then(|top| de.end().map(|()| top)).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Eof => "ends too early",
            _ => "is not valid JSON",
        };
        ApiError::bad_request(format!("the body {what} (line {}, column {})", e.line(), e.column()))
    })?;
    let Top::Object(fields) = fields else {
        return Err(ApiError::bad_request(
            "the body must be a JSON object with the fields key, value (or valueBase64) and metadata",
        ));
    };
    let CreateFields { key, value, value_base64, metadata, expires_at, unknown } = fields;
    if let Some(shown) = unknown {
        return Err(ApiError::bad_request(format!(
            "unknown field {shown:?}; the fields are key, value (or valueBase64), metadata and expiresAt"
        )));
    }
    let mistyped = |name: &str| ApiError::bad_request(format!("the field {name} must be a string"));
    let key = match key {
        Slot::Missing => return Err(ApiError::bad_request("missing field key")),
        Slot::Other => return Err(mistyped("key")),
        Slot::Text(key) => key,
    };
    let text = value.text().map_err(|()| mistyped("value"))?;
    let base64 = value_base64.text().map_err(|()| mistyped("valueBase64"))?;
    if text.is_none() && base64.is_none() {
        return Err(ApiError::bad_request("missing field value (or valueBase64 for a binary value)"));
    }
    let metadata = match metadata {
        MetaField::Absent => BTreeMap::new(),
        MetaField::Map(m) => m,
        MetaField::NotAString(shown) => {
            return Err(ApiError::bad_request(format!("metadata value {shown:?} must be a string")))
        }
        MetaField::NotAnObject => {
            return Err(ApiError::bad_request("the field metadata must be an object of strings"))
        }
    };
    let expires_at = match expires_at {
        Slot::Missing => None,
        Slot::Text(text) => Some(text),
        Slot::Other => {
            return Err(ApiError::bad_request(
                "the field expiresAt must be an RFC 3339 time as a string, or null",
            ))
        }
    };
    let key = CredentialKey::new(key.into_owned()).map_err(|e| match e {
        credstore_core::Error::InvalidKey { reason, .. } => ApiError::invalid_field("key", reason),
        other => ApiError::from(other),
    })?;
    let value = match (text, base64) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_field(
                "value and valueBase64",
                "give exactly one of the two: value for text, valueBase64 for bytes",
            ))
        }
        // A JSON string is UTF-8 text: the value is a text `SecretValue`.
        (Some(text), None) => {
            if text.as_str().len() > credstore_core::MAX_VALUE_BYTES {
                // Refused before it is copied, as `check_value` would.
                return Err(too_long_value(text.as_str().len()));
            }
            SecretValue::from_text(text.into_owned())
        }
        (None, Some(encoded)) => {
            let bytes = decode_base64(encoded.as_str(), credstore_core::MAX_VALUE_BYTES)
                .map_err(|why| ApiError::invalid_field("valueBase64", why))?;
            SecretValue::from_bytes(bytes)
        }
        (None, None) => unreachable!("checked above"),
    };
    credstore_core::check_value(&value)?;
    let metadata = Metadata::try_from(metadata)?;
    let expires_at = expires_at
        .map(|t| {
            crate::http::json::parse_time(t.as_str()).map_err(|why| ApiError::invalid_field("expiresAt", why))
        })
        .transpose()?;
    Ok(CreateInput { key, value, metadata, expires_at })
}

fn too_long_value(len: usize) -> ApiError {
    ApiError::invalid_field(
        "value",
        format!("is {len} bytes; the limit is {}", credstore_core::MAX_VALUE_BYTES),
    )
}

/// A JSON string of the body: borrowed from the buffer when it has no
/// escapes, else unescaped into a zeroizing string.
enum Text<'a> {
    Borrowed(&'a str),
    Owned(Zeroizing<String>),
}

impl Text<'_> {
    fn as_str(&self) -> &str {
        match self {
            Text::Borrowed(s) => s,
            Text::Owned(s) => s,
        }
    }

    fn into_owned(self) -> String {
        match self {
            Text::Borrowed(s) => s.to_owned(),
            Text::Owned(mut s) => std::mem::take(&mut *s),
        }
    }
}

/// A field that should be a string: absent, a string, or something else.
enum Slot<'a> {
    Missing,
    Text(Text<'a>),
    Other,
}

impl<'a> Slot<'a> {
    /// The string, if given; `Err` when it is not a string.
    fn text(self) -> Result<Option<Text<'a>>, ()> {
        match self {
            Slot::Missing => Ok(None),
            Slot::Text(t) => Ok(Some(t)),
            Slot::Other => Err(()),
        }
    }
}

/// `metadata` as given.
enum MetaField {
    Absent,
    Map(BTreeMap<String, String>),
    /// The first entry whose value is not a string (its key, cut to 64
    /// characters).
    NotAString(String),
    NotAnObject,
}

/// The fields of a body object; errors are kept for [`parse_create`] to
/// report in its order, so the whole body is always read (and a syntax
/// error anywhere wins).
struct CreateFields<'a> {
    key: Slot<'a>,
    value: Slot<'a>,
    value_base64: Slot<'a>,
    metadata: MetaField,
    /// `expiresAt`: missing (or `null`), a string, or something else.
    expires_at: Slot<'a>,
    /// The first unknown field's name, cut to 64 characters.
    unknown: Option<String>,
}

enum Top<'a> {
    Object(CreateFields<'a>),
    NotAnObject,
}

fn shown(name: &str) -> String {
    name.chars().take(64).collect()
}

/// Writes a visitor's methods for the JSON scalars it does not keep, each
/// answering `$other`: `scalars_are!(Slot<'de> = Slot::Other;
/// visit_bool(bool), visit_unit())`.
macro_rules! scalars_are {
    ($value:ty = $other:expr; $($visit:ident($($scalar:ty)?)),+) => {$(
        fn $visit<E: de::Error>(self $(, _: $scalar)?) -> Result<$value, E> {
            Ok($other)
        }
    )+};
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
                let mut fields = CreateFields {
                    key: Slot::Missing,
                    value: Slot::Missing,
                    value_base64: Slot::Missing,
                    metadata: MetaField::Absent,
                    expires_at: Slot::Missing,
                    unknown: None,
                };
                while let Some(name) = map.next_key::<FieldName>()? {
                    match name {
                        FieldName::Key => fields.key = map.next_value::<StringOrOther>()?.0,
                        FieldName::Value => fields.value = map.next_value::<SecretText>()?.0,
                        FieldName::ValueBase64 => fields.value_base64 = map.next_value::<SecretText>()?.0,
                        FieldName::Metadata => fields.metadata = map.next_value::<MetaField>()?,
                        FieldName::ExpiresAt => {
                            fields.expires_at =
                                map.next_value::<Option<StringOrOther>>()?.map_or(Slot::Missing, |s| s.0)
                        }
                        FieldName::Unknown(name) => {
                            map.next_value::<IgnoredAny>()?;
                            fields.unknown.get_or_insert(name);
                        }
                    }
                }
                Ok(Top::Object(fields))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Top<'de>, A::Error> {
                IgnoredAny.visit_seq(seq)?;
                Ok(Top::NotAnObject)
            }
            scalars_are!(Top<'de> = Top::NotAnObject;
                visit_bool(bool), visit_i64(i64), visit_u64(u64), visit_f64(f64), visit_str(&str), visit_unit());
        }
        d.deserialize_any(V)
    }
}

/// The name of a body field; matched without allocating.
enum FieldName {
    Key,
    Value,
    ValueBase64,
    Metadata,
    ExpiresAt,
    Unknown(String),
}

impl<'de> Deserialize<'de> for FieldName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = FieldName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<FieldName, E> {
                Ok(match name {
                    "key" => FieldName::Key,
                    "value" => FieldName::Value,
                    "valueBase64" => FieldName::ValueBase64,
                    "metadata" => FieldName::Metadata,
                    "expiresAt" => FieldName::ExpiresAt,
                    other => FieldName::Unknown(shown(other)),
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// Any JSON value, kept when it is a string.
struct StringOrOther<'a>(Slot<'a>);

impl<'de> Deserialize<'de> for StringOrOther<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StringVisitor).map(StringOrOther)
    }
}

struct StringVisitor;

impl<'de> Visitor<'de> for StringVisitor {
    type Value = Slot<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Slot<'de>, E> {
        Ok(Slot::Text(Text::Borrowed(s)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Slot<'de>, E> {
        Ok(Slot::Text(Text::Owned(Zeroizing::new(s.to_owned()))))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Slot<'de>, E> {
        Ok(Slot::Text(Text::Owned(Zeroizing::new(s))))
    }
    scalars_are!(Slot<'de> = Slot::Other;
        visit_bool(bool), visit_i64(i64), visit_u64(u64), visit_f64(f64), visit_unit());
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Slot<'de>, A::Error> {
        IgnoredAny.visit_seq(seq)?;
        Ok(Slot::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Slot<'de>, A::Error> {
        IgnoredAny.visit_map(map)?;
        Ok(Slot::Other)
    }
}

/// `value` or `valueBase64`: any JSON value, kept when it is a string. The
/// string is taken raw from the body (serde_json has checked its syntax and
/// copied nothing) and unescaped by [`unescape`], so no copy of the secret
/// is left in serde_json's scratch buffer.
struct SecretText<'a>(Slot<'a>);

impl<'de> Deserialize<'de> for SecretText<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?.get();
        let Some(inside) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
            return Ok(SecretText(Slot::Other));
        };
        if !inside.contains('\\') {
            return Ok(SecretText(Slot::Text(Text::Borrowed(inside))));
        }
        let text = unescape(inside).map_err(de::Error::custom)?;
        Ok(SecretText(Slot::Text(Text::Owned(text))))
    }
}

/// The text of a JSON string from between its quotes, escapes resolved, in
/// a zeroizing buffer allocated once: unescaping only shortens, so the
/// buffer never grows and leaves no copy behind. The parser has checked
/// the syntax (no control characters, well-formed escapes) but not that
/// `\u` escapes pair their surrogates, which is checked here as serde_json
/// would.
fn unescape(inside: &str) -> Result<Zeroizing<String>, &'static str> {
    const LONE: &str = "a \\u escape is half of a surrogate pair";
    let bytes = inside.as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len()));
    let mut rest = bytes;
    while let Some(at) = rest.iter().position(|&b| b == b'\\') {
        out.extend_from_slice(&rest[..at]);
        let (escape, after) = rest[at + 1..].split_first().ok_or("a string ends inside an escape")?;
        rest = after;
        let ch = match escape {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let high = hex4(&mut rest)?;
                let code = match high {
                    0xD800..=0xDBFF => {
                        let low = rest.strip_prefix(b"\\u").ok_or(LONE)?;
                        rest = low;
                        let low = hex4(&mut rest)?;
                        if !(0xDC00..=0xDFFF).contains(&low) {
                            return Err(LONE);
                        }
                        0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return Err(LONE),
                    bmp => bmp,
                };
                char::from_u32(code).ok_or(LONE)?
            }
            _ => return Err("an unknown escape"),
        };
        let mut utf8 = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
        zeroize::Zeroize::zeroize(&mut utf8);
    }
    out.extend_from_slice(rest);
    // Valid UTF-8 in, whole characters added: this cannot fail, and a
    // failure would hand the bytes back to be wiped.
    match String::from_utf8(std::mem::take(&mut *out)) {
        Ok(text) => Ok(Zeroizing::new(text)),
        Err(e) => {
            drop(Zeroizing::new(e.into_bytes()));
            Err("a string is not UTF-8 once unescaped")
        }
    }
}

/// The four hex digits of a `\u` escape at the front of `rest`, consumed.
fn hex4(rest: &mut &[u8]) -> Result<u32, &'static str> {
    let digits = rest.get(..4).ok_or("a \\u escape has fewer than four hex digits")?;
    let mut code = 0;
    for &d in digits {
        code =
            code * 16 + char::from(d).to_digit(16).ok_or("a \\u escape has a character that is not hex")?;
    }
    *rest = &rest[4..];
    Ok(code)
}

impl<'de> Deserialize<'de> for MetaField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MetaField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of strings")
            }
            fn visit_unit<E: de::Error>(self) -> Result<MetaField, E> {
                Ok(MetaField::Absent)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MetaField, A::Error> {
                let mut out = BTreeMap::new();
                let mut bad = None;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    match map.next_value_seed(StringSeed)? {
                        Slot::Text(v) if bad.is_none() => {
                            out.insert(key.into_owned(), v.into_owned());
                        }
                        Slot::Text(_) => {}
                        _ => {
                            bad.get_or_insert_with(|| shown(&key));
                        }
                    }
                }
                Ok(bad.map_or(MetaField::Map(out), MetaField::NotAString))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<MetaField, A::Error> {
                IgnoredAny.visit_seq(seq)?;
                Ok(MetaField::NotAnObject)
            }
            scalars_are!(MetaField = MetaField::NotAnObject;
                visit_bool(bool), visit_i64(i64), visit_u64(u64), visit_f64(f64), visit_str(&str));
        }
        d.deserialize_any(V)
    }
}

/// Deserializes one value with [`StringVisitor`].
struct StringSeed;

impl<'de> DeserializeSeed<'de> for StringSeed {
    type Value = Slot<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Slot<'de>, D::Error> {
        d.deserialize_any(StringVisitor)
    }
}

/// Decodes standard, padded base64 (RFC 4648 §4) of at most `limit`
/// bytes, strictly: no whitespace, padding only at the end and only as
/// needed, unused bits zero (so every byte string has exactly one
/// encoding). The size is checked from the length before anything is
/// decoded.
///
/// # Errors
/// Why the text is refused; never any of its characters (they are the
/// secret).
pub(crate) fn decode_base64(text: &str, limit: usize) -> Result<Vec<u8>, String> {
    let input = text.as_bytes();
    if !input.len().is_multiple_of(4) {
        return Err(format!(
            "is not padded base64: its length {} is not a multiple of 4 (standard base64 with = padding)",
            input.len()
        ));
    }
    let padding = input.iter().rev().take_while(|&&b| b == b'=').count();
    if padding > 2 {
        return Err("is not base64: at most two = pad the end".into());
    }
    let decoded_len = input.len() / 4 * 3 - padding;
    if decoded_len > limit {
        return Err(format!("decodes to {decoded_len} bytes; the limit is {limit}"));
    }
    // The standard engine is strict: canonical padding, unused bits zero, no
    // whitespace. Decoding goes into a zeroizing buffer, so a refused input
    // leaves no partly decoded secret behind.
    use base64::Engine as _;
    let mut out = Zeroizing::new(Vec::with_capacity(decoded_len));
    match base64::engine::general_purpose::STANDARD.decode_vec(input, &mut out) {
        Ok(()) => Ok(std::mem::take(&mut *out)),
        Err(base64::DecodeError::InvalidByte(offset, _)) => Err(format!(
            "is not standard base64: the character at offset {offset} is outside A-Z, a-z, 0-9, + and / \
             (or is = before the end)"
        )),
        Err(base64::DecodeError::InvalidLastSymbol(..)) => {
            Err("is not canonical base64: the unused bits before the = padding must be zero".into())
        }
        Err(_) => Err("is not standard, padded base64".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(body: &str) -> u16 {
        match parse_create(body.as_bytes()) {
            Ok(_) => 200,
            Err(e) => e.status.as_u16(),
        }
    }

    fn detail(body: &str) -> String {
        parse_create(body.as_bytes()).err().map(|e| e.detail).unwrap_or_default()
    }

    #[test]
    fn create_bodies() {
        assert_eq!(status(r#"{"key":"a","value":"v"}"#), 200);
        assert_eq!(status(r#"{"key":"a","value":"","metadata":null}"#), 200);
        assert_eq!(status(r#"{"key":"a","value":"v","metadata":{"owner":"me"}}"#), 200);
        assert_eq!(status(r#" {"metadata":{},"value":"v\u0000\n","key":"a\u0062"} "#), 200);
        for bad in [
            "",
            "{",
            "[]",
            "\"s\"",
            r#"{"value":"v"}"#,
            r#"{"key":"a"}"#,
            r#"{"key":1,"value":"v"}"#,
            r#"{"key":"a","value":2}"#,
            r#"{"key":"a","value":"v","metadata":[]}"#,
            r#"{"key":"a","value":"v","metadata":{"x":1}}"#,
            r#"{"key":"a","value":"v","extra":1}"#,
            r#"{"key":"a","value":"v"} x"#,
        ] {
            assert_eq!(status(bad), 400, "{bad}");
        }
        for bad in [
            r#"{"key":"a b","value":"v"}"#,
            r#"{"key":"","value":"v"}"#,
            r#"{"key":"a","value":"v","metadata":{"bad key":"x"}}"#,
            r#"{"key":"a","value":"v","metadata":{"":"x"}}"#,
            r#"{"key":"a","value":"v","metadata":{"k":"line\nbreak"}}"#,
        ] {
            assert_eq!(status(bad), 422, "{bad}");
        }
        let big = format!(r#"{{"key":"a","value":"{}"}}"#, "x".repeat(credstore_core::MAX_VALUE_BYTES + 1));
        let err = parse_create(big.as_bytes()).err().unwrap();
        assert_eq!(err.status, 422);
        assert!(err.detail.contains("value") && !err.detail.contains("xxxx"), "{}", err.detail);
        assert!(err.detail.contains("65537 bytes; the limit is 65536"), "{}", err.detail);
    }

    #[test]
    fn errors_come_in_a_fixed_order_whatever_the_field_order() {
        // A syntax error anywhere wins over every field error.
        assert!(detail(r#"{"key":7,"extra":1,"value":}"#).contains("not valid JSON"));
        assert!(detail(r#"[1,2"#).contains("ends too early"));
        assert!(detail(r#"[1,2]"#).contains("JSON object"));
        // Unknown fields come first, then key, value, valueBase64, metadata.
        assert!(detail(r#"{"key":7,"extra":1}"#).starts_with("unknown field \"extra\""));
        assert!(detail(r#"{"metadata":1,"value":2,"key":3}"#).contains("key must be a string"));
        assert!(detail(r#"{"metadata":1,"value":2,"key":"k"}"#).contains("value must be a string"));
        assert!(detail(r#"{"metadata":1,"valueBase64":2,"key":"k"}"#).contains("valueBase64 must be"));
        assert!(detail(r#"{"metadata":1,"key":"k"}"#).starts_with("missing field value"));
        assert!(detail(r#"{"metadata":1,"key":"k","value":"v"}"#).contains("metadata must be an object"));
        assert!(detail(r#"{"metadata":{"a":"x","b":[1],"c":2},"key":"k","value":"v"}"#)
            .contains("metadata value \"b\" must be a string"));
        // The last of a repeated field counts.
        assert_eq!(status(r#"{"key":7,"key":"k","value":"v"}"#), 200);
        let input = parse_create(br#"{"key":"k","value":"a","value":"b"}"#).ok().unwrap();
        assert_eq!(input.value.expose_str().unwrap(), "b");
        let shown = detail(&format!(r#"{{"{}":1}}"#, "u".repeat(100)));
        assert!(shown.contains(&format!("\"{}\"", "u".repeat(64))), "{shown}");
    }

    #[test]
    fn expires_at_is_an_rfc3339_time_or_null() {
        use std::time::{Duration, UNIX_EPOCH};
        let at = |body: &str| parse_create(body.as_bytes()).ok().unwrap().expires_at;
        assert_eq!(at(r#"{"key":"a","value":"v"}"#), None);
        assert_eq!(at(r#"{"key":"a","value":"v","expiresAt":null}"#), None);
        assert_eq!(
            at(r#"{"key":"a","value":"v","expiresAt":"2030-01-01T01:00:00+01:00"}"#),
            Some(UNIX_EPOCH + Duration::from_secs(1_893_456_000))
        );
        assert_eq!(status(r#"{"key":"a","value":"v","expiresAt":5}"#), 400);
        assert!(detail(r#"{"key":"a","value":"v","expiresAt":{}}"#).contains("expiresAt must be"));
        assert_eq!(status(r#"{"key":"a","value":"v","expiresAt":"soon"}"#), 422);
        assert!(detail(r#"{"key":"a","value":"v","expiresAt":"soon"}"#).starts_with("invalid expiresAt:"));
        // Field errors keep their order: a bad key before a bad expiresAt.
        assert!(detail(r#"{"expiresAt":7,"key":1,"value":"v"}"#).contains("key must be a string"));
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let input =
            parse_create(br#"{"key":"k\u002d1","value":"a\"b\\c\u00e9","metadata":{"o\u0077ner":"\u00fc"}}"#)
                .ok()
                .unwrap();
        assert_eq!(input.key.as_str(), "k-1");
        assert_eq!(input.value.expose_str().unwrap(), "a\"b\\cé");
        assert_eq!(input.metadata.get("owner"), Some("ü"));
    }

    /// The unit tests' allocator: the system's, handing out zeroed blocks
    /// (so every byte it reads was written) and, while a test arms it,
    /// looking into every block freed for text that should have been wiped
    /// first.
    mod freed {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Mutex;

        /// The texts looked for while armed; empty: not armed.
        static WANTED: Mutex<Vec<&'static [u8]>> = Mutex::new(Vec::new());
        static ARMED: AtomicUsize = AtomicUsize::new(0);
        static FOUND: AtomicUsize = AtomicUsize::new(0);

        pub struct Scanner;

        // SAFETY: every call is forwarded to `System`; `dealloc` only reads
        // the block it is handed, before freeing it, and blocks are
        // allocated zeroed, so every byte read is initialized.
        unsafe impl GlobalAlloc for Scanner {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                System.alloc_zeroed(layout)
            }
            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                System.alloc_zeroed(layout)
            }
            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                if ARMED.load(Ordering::SeqCst) > 0 {
                    let block = std::slice::from_raw_parts(ptr, layout.size());
                    // try_lock: the scanner's own lock is never waited for
                    // inside the allocator.
                    if let Ok(wanted) = WANTED.try_lock() {
                        if wanted.iter().any(|w| block.windows(w.len()).any(|b| b == *w)) {
                            FOUND.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
                System.dealloc(ptr, layout)
            }
        }

        #[global_allocator]
        static ALLOCATOR: Scanner = Scanner;

        /// How many blocks holding one of `wanted` were freed while `f` ran.
        pub fn blocks_freed_holding(wanted: &[&'static [u8]], f: impl FnOnce()) -> usize {
            static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
            let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
            WANTED.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(wanted);
            FOUND.store(0, Ordering::SeqCst);
            ARMED.fetch_add(1, Ordering::SeqCst);
            f();
            ARMED.fetch_sub(1, Ordering::SeqCst);
            let found = FOUND.load(Ordering::SeqCst);
            let mut list = WANTED.lock().unwrap_or_else(|e| e.into_inner());
            // Emptied without freeing while armed.
            list.clear();
            found
        }
    }

    #[test]
    fn escaped_values_leave_no_plaintext_in_freed_memory() {
        // Each text looked for appears only once unescaped: the body spells
        // its first character as a \u escape.
        let text = b"s3cr3t-value-of-the-free-test-7d2a9c" as &[u8];
        let base64 = b"bWFya2VyLTAtc2VjcmV0LWJ5dGVz" as &[u8];
        let decoded = b"marker-0-secret-bytes" as &[u8];
        for (body, wanted) in [
            (&br#"{"key":"k","value":"\u0073\n3cr3t","value":"\u0073\u0033cr3t-value-of-the-free-test-7d2a9c\n"}"#[..], text),
            (&br#"{"key":"k","valueBase64":"\u0062WFya2VyLTAtc2VjcmV0LWJ5dGVz"}"#[..], base64),
        ] {
            let body = Zeroizing::new(body.to_vec());
            let freed = freed::blocks_freed_holding(&[wanted, decoded], || {
                let Ok(input) = parse_create(&body) else { panic!("a valid body") };
                let value = input.value.expose_secret();
                assert!(value.windows(wanted.len()).any(|w| w == wanted) || value == decoded);
                drop(input);
            });
            assert_eq!(freed, 0, "a freed block held the value of {:?}", String::from_utf8_lossy(&body[..24]));
        }
    }

    proptest::proptest! {
        #[test]
        fn values_unescape_exactly_as_serde_json_does(value in "\\PC{0,40}", escape_all in proptest::bool::ANY) {
            let quoted = if escape_all {
                value.chars().map(|c| format!("\\u{:04x}", u32::from(c).min(0xFFFF))).collect::<String>()
            } else {
                serde_json::to_string(&value).unwrap().trim_matches('"').to_owned()
            };
            let body = format!(r#"{{"key":"k","value":"{quoted}"}}"#);
            let ours = parse_create(body.as_bytes()).ok().map(|i| i.value.expose_str().unwrap().to_owned());
            let theirs = serde_json::from_str::<serde_json::Value>(&body).ok().map(|v| v["value"].as_str().unwrap().to_owned());
            proptest::prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn surrogate_pairs_are_joined_and_lone_halves_refused() {
        let input = parse_create(br#"{"key":"k","value":"\ud83d\ude00!"}"#).ok().unwrap();
        assert_eq!(input.value.expose_str().unwrap(), "\u{1F600}!");
        for lone in [r#""\ud83d""#, r#""\ude00""#, r#""\ud83d\u0041""#, r#""\ud83dx""#] {
            let body = format!(r#"{{"key":"k","value":{lone}}}"#);
            assert_eq!(status(&body), 400, "{body}");
            assert!(
                serde_json::from_str::<serde_json::Value>(&body).is_err(),
                "serde_json refuses {body} too"
            );
        }
    }

    #[test]
    fn binary_bodies() {
        let input = parse_create(br#"{"key":"a","valueBase64":"3q2+7w=="}"#).ok().unwrap();
        assert_eq!(input.value.expose_secret(), [0xde, 0xad, 0xbe, 0xef]);
        assert!(!input.value.is_text());
        let input = parse_create(br#"{"key":"a","valueBase64":"aGk=","metadata":{"k":"v"}}"#).ok().unwrap();
        assert!(input.value.is_text(), "UTF-8 bytes are a text value");
        assert_eq!(input.value.expose_str().unwrap(), "hi");
        assert_eq!(status(r#"{"key":"a","valueBase64":""}"#), 200);
        assert_eq!(status(r#"{"key":"a","valueBase64":7}"#), 400);
        assert_eq!(status(r#"{"key":"a"}"#), 400);
        let both = parse_create(br#"{"key":"a","value":"v","valueBase64":"dg=="}"#).err().unwrap();
        assert_eq!(both.status, 422);
        assert!(both.detail.starts_with("invalid value and valueBase64:"), "{}", both.detail);
        for bad in
            ["dg", "dg=", "d===", "dg==dg==", "dh==", "ZmC=", "Zm9v YmFy", "Zm9v\\nYmFy", "Zm9v-_8=", "=AAA"]
        {
            let body = format!(r#"{{"key":"a","valueBase64":"{bad}"}}"#);
            let err = parse_create(body.as_bytes()).err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert_eq!(err.status, 422, "{bad}");
            assert!(err.detail.starts_with("invalid valueBase64:"), "{bad}: {}", err.detail);
        }
        let max = credstore_core::MAX_VALUE_BYTES;
        let ok = format!(r#"{{"key":"a","valueBase64":"{}"}}"#, "AAAA".repeat(max / 3) + "AA==");
        assert_eq!(parse_create(ok.as_bytes()).map(|i| i.value.len()).ok(), Some(max));
        assert_eq!(MAX_VALUE_BASE64_CHARS, 87_384);
        let over = format!(r#"{{"key":"a","valueBase64":"{}"}}"#, "AAAA".repeat(max / 3) + "AAA=");
        let err = parse_create(over.as_bytes()).err().unwrap();
        assert_eq!(err.status, 422);
        assert!(err.detail.contains("65537 bytes; the limit is 65536"), "{}", err.detail);
    }

    #[test]
    fn base64_round_trips_every_length() {
        // RFC 4648 §10 test vectors, and the bytes 0..=255.
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(decode_base64(encoded, 100).unwrap(), plain.as_bytes());
        }
        let all: Vec<u8> = (0..=255).collect();
        let encoded = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6ChoqOkpaanqKmqq6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TFxsfIycrLzM3Oz9DR0tPU1dbX2Nna29zd3t/g4eLj5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7/P3+/w==";
        assert_eq!(decode_base64(encoded, 256).unwrap(), all);
        assert!(decode_base64(encoded, 255).unwrap_err().contains("256 bytes"));
        let err = decode_base64("c2VjcmV0!A==", 100).unwrap_err();
        assert!(err.contains("offset 8") && !err.contains('!'), "{err}");
    }

    #[test]
    fn errors_never_echo_the_value() {
        let err = parse_create(br#"{"key":"a","value":12345678}"#).err().unwrap();
        assert!(!err.detail.contains("12345678"), "{}", err.detail);
        let err = parse_create(br#"{"key":"a","value":"topsecret"#).err().unwrap();
        assert!(!err.detail.contains("topsecret"), "{}", err.detail);
    }
}
