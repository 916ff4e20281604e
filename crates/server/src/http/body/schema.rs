//! The shape of the create body in the OpenAPI document: the Credential
//! Stores API's text body and the binary one *(extension)*, with every rule
//! of the parser ([`super::parse_create`]) that JSON Schema can state. The
//! parser, not these types, reads a body.

use std::collections::BTreeMap;

use serde::Deserialize;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::ToSchema;

/// The body of *Create Credential in Store*: a text value in `value`, or
/// *(extension)* a binary value in `valueBase64`; exactly one of the two.
/// Unknown fields are refused (400).
// No `Debug` on these shapes: they hold the value.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Documents the body; `parse_create` reads it.
pub enum CreateCredentialRequest {
    /// A text value, as in the Credential Stores API.
    Text(CreateTextCredential),
    /// A binary value, base64-encoded (extension).
    Binary(CreateBinaryCredential),
}

/// A create body with a text `value` (the Credential Stores API's shape).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // Documents the body; `parse_create` reads it.
pub struct CreateTextCredential {
    /// The credential key: 1 to 255 characters of `[a-zA-Z0-9-_.]`.
    #[schema(pattern = r"^[a-zA-Z0-9_.-]+$", min_length = 1, max_length = 255, example = "string")]
    key: String,
    /// The credential value: any string of at most 65,536 bytes of UTF-8
    /// (`maxLength` counts characters; the byte limit is the one enforced,
    /// so a value of multi-byte characters holds fewer), stored as a text
    /// value. Never returned but by the value read, to a token with the
    /// `reveal` action.
    #[schema(max_length = 65536, example = "string")]
    value: String,
    /// The metadata for the credential. Omitted or `null` is empty.
    #[schema(schema_with = metadata_schema, required = false)]
    metadata: Option<BTreeMap<String, String>>,
    /// *(extension)* When the credential expires.
    #[schema(schema_with = expires_at_schema, required = false)]
    expires_at: Option<String>,
}

/// *(extension)* A create body with a binary value in `valueBase64`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // Documents the body; `parse_create` reads it.
pub struct CreateBinaryCredential {
    /// The credential key: 1 to 255 characters of `[a-zA-Z0-9-_.]`.
    #[schema(pattern = r"^[a-zA-Z0-9_.-]+$", min_length = 1, max_length = 255, example = "signing-key")]
    key: String,
    /// *(extension)* The value's bytes in standard, padded base64 (RFC 4648
    /// §4: `A-Z a-z 0-9 + /`, `=` padding, no line breaks or spaces, unused
    /// bits zero), at most 65,536 bytes once decoded (87,384 characters;
    /// the pattern counts the groups: 21,845 groups of four and `==` at
    /// most). Bytes that are UTF-8 text are stored as a text value
    /// (`valueKind` `text`), any others as a binary value (`binary`).
    #[schema(
        pattern = r"^(?:(?:[A-Za-z0-9+/]{4}){0,21845}|(?:[A-Za-z0-9+/]{4}){0,21844}[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=|(?:[A-Za-z0-9+/]{4}){0,21845}[A-Za-z0-9+/][AQgw]==)$",
        max_length = 87384,
        example = "3q2+7w=="
    )]
    value_base64: String,
    /// The metadata for the credential, as with a text value.
    #[schema(schema_with = metadata_schema, required = false)]
    metadata: Option<BTreeMap<String, String>>,
    /// *(extension)* When the credential expires, as with a text value.
    #[schema(schema_with = expires_at_schema, required = false)]
    expires_at: Option<String>,
}

/// The pattern of a metadata value: no control character (Unicode
/// category Cc, as Rust's `char::is_control`).
pub(crate) const METADATA_VALUE_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

/// The schema of `metadata`, with every rule of
/// [`credstore_core::Metadata`] that JSON Schema can state.
fn metadata_schema() -> Schema {
    use credstore_core::{MAX_METADATA_ENTRIES, MAX_METADATA_KEY_BYTES, MAX_METADATA_TOTAL_BYTES};
    let names = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(crate::ids::ID_PATTERN))
        .min_length(Some(1))
        .max_length(Some(MAX_METADATA_KEY_BYTES));
    let values = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(credstore_core::MAX_METADATA_VALUE_BYTES))
        .pattern(Some(METADATA_VALUE_PATTERN));
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .description(Some(format!(
            "The metadata for the credential: at most {MAX_METADATA_ENTRIES} entries; keys follow the id \
             pattern and are 1 to {MAX_METADATA_KEY_BYTES} bytes; values are text without control \
             characters of at most {} bytes of UTF-8 (`maxLength` counts characters; the byte limit is \
             the one enforced); keys and values together at most {MAX_METADATA_TOTAL_BYTES} bytes (a \
             rule JSON Schema cannot state). Omitted or `null` is empty.",
            credstore_core::MAX_METADATA_VALUE_BYTES
        )))
        .property_names(Some(names))
        .additional_properties(Some(values))
        .max_properties(Some(MAX_METADATA_ENTRIES))
        .examples([serde_json::json!({"owner": "payments"})])
        .into()
}

/// *(extension)* The optional body of *Restore Credential Version*.
/// Unknown fields are refused (400).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RestoreCredentialRequest {
    /// When the restored write expires, as on a create; omitted or `null`:
    /// never, whenever the version restored expired.
    #[schema(schema_with = expires_at_schema, required = false)]
    pub expires_at: Option<String>,
}

/// The schema of `expiresAt` *(extension)*.
fn expires_at_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::DateTime)))
        .pattern(Some(crate::http::json::TIME_PATTERN))
        .max_length(Some(40))
        .description(Some(
            "*(extension)* When the credential expires: an RFC 3339 time, `Z` or a UTC offset \
             (`2030-01-01T00:00:00Z`). From then on, by the store's clock, the credential reads as absent \
             (404; left out of the key listing; a create with `If-None-Match: *` succeeds over it) and its \
             version is listed as `expired`. It must be in the future (422 otherwise), and the store must \
             support expiry (422 otherwise). Omitted or `null`: never expires. An overwrite replaces it.",
        ))
        .examples([serde_json::json!("2030-01-01T00:00:00Z")])
        .into()
}
