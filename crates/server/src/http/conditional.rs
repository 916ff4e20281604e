//! Conditional writes *(extension)*: `If-None-Match` / `If-Match` on a
//! create and a restore (RFC 9110 §13.1), and the strong `ETag` of a
//! credential's version.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use std::time::SystemTime;

use credstore_core::{
    CredentialKey, CredentialStore, CredentialStoreExt, Error as StoreError, Metadata, SecretValue,
    SetOptions, SetOutcome, Version,
};

use crate::http::body::CreateInput;
use crate::http::problem::ApiError;

/// The condition of a create, from its `If-Match` / `If-None-Match`
/// headers (RFC 9110 §13.1). See [`write_condition`]; as an extractor it
/// rejects what that refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WriteCondition {
    /// No conditional header: create or overwrite, as the Credential Stores
    /// API does.
    None,
    /// `If-None-Match: *`: create only if the key is absent.
    Absent,
    /// `If-Match: *`: overwrite only if the key exists, whatever its version.
    Exists,
    /// `If-Match: "<version>"`: overwrite only this version.
    Version(Version),
    /// `If-Match` with an entity tag that no credential can have (a weak
    /// tag `W/"…"`, which never matches under the strong comparison
    /// `If-Match` uses, or a tag that is not a version this server makes):
    /// the condition is false whatever is stored. Holds the reason.
    Never(&'static str),
}

impl WriteCondition {
    /// Refuses, before any store call, a condition `store` cannot honour:
    /// 422 naming the writes it lacks and the header that asked for them
    /// (`what` is the request, "a create" or "a restore").
    pub(crate) fn supported_by(
        &self,
        store: &dyn credstore_core::CredentialStore,
        what: &str,
    ) -> Result<(), ApiError> {
        let Some((writes, header)) = self.needs(&store.info().capabilities()) else {
            return Ok(());
        };
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "credential store '{}' does not support {writes}, so the {header} condition cannot be honoured; \
                 nothing was changed (send {what} without {header})",
                store.info().id()
            ),
        ))
    }

    /// The capability the condition needs and the header that asked for
    /// it, when `caps` lacks it.
    fn needs(&self, caps: &credstore_core::Capabilities) -> Option<(&'static str, &'static str)> {
        match self {
            WriteCondition::None => None,
            WriteCondition::Absent if !caps.create_only => Some(("create-only writes", "If-None-Match")),
            WriteCondition::Exists | WriteCondition::Version(_) | WriteCondition::Never(_)
                if !caps.replace_if_version =>
            {
                Some(("replace-if-version writes", "If-Match"))
            }
            _ => None,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WriteCondition {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        write_condition(&parts.headers)
    }
}

/// The one header value of `name`, trimmed; `None` when absent.
fn single_header<'h>(
    headers: &'h HeaderMap,
    name: &header::HeaderName,
) -> Result<Option<&'h [u8]>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::bad_request(format!(
            "{} is sent more than once; send one {} header with one entity tag",
            canonical(name),
            canonical(name)
        )));
    }
    Ok(Some(first.as_bytes().trim_ascii()))
}

fn canonical(name: &header::HeaderName) -> &'static str {
    if name == header::IF_MATCH {
        "If-Match"
    } else {
        "If-None-Match"
    }
}

/// Reads the conditional headers of a create:
///
/// | header | meaning |
/// | --- | --- |
/// | none | create or overwrite (the Credential Stores API's behaviour) |
/// | `If-None-Match: *` | create only; 412 when the key exists |
/// | `If-Match: "<version>"` | overwrite only that version (the strong `ETag` the server sent); 412 when the key is missing or at another version |
/// | `If-Match: *` | overwrite only if the key exists, whatever its version; 412 when it is missing |
/// | `If-Match: W/"…"` | a weak tag never matches (strong comparison): 412 |
///
/// # Errors
/// 400 for both headers at once, a header sent twice, a list of tags, a
/// value that is not an entity tag or `*`, and an `If-None-Match` other
/// than `*`.
pub(crate) fn write_condition(headers: &HeaderMap) -> Result<WriteCondition, ApiError> {
    let if_match = single_header(headers, &header::IF_MATCH)?;
    let if_none_match = single_header(headers, &header::IF_NONE_MATCH)?;
    match (if_match, if_none_match) {
        (None, None) => Ok(WriteCondition::None),
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "send If-Match or If-None-Match, not both: If-None-Match: * creates only, If-Match replaces only",
        )),
        (None, Some(b"*")) => Ok(WriteCondition::Absent),
        (None, Some(_)) => Err(ApiError::bad_request(
            "If-None-Match supports only * on a create (create only if the key is absent); entity tags and \
             lists are not supported",
        )),
        (Some(b"*"), None) => Ok(WriteCondition::Exists),
        (Some(tag), None) => if_match_tag(tag),
    }
}

/// One `If-Match` entity tag: `"<version>"`, or a weak `W/"…"`.
fn if_match_tag(tag: &[u8]) -> Result<WriteCondition, ApiError> {
    let (weak, quoted) = match tag.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, tag),
    };
    // RFC 9110 §8.8.3: DQUOTE *etagc DQUOTE, etagc = %x21 / %x23-7E / obs-text.
    let inner = quoted
        .strip_prefix(b"\"")
        .and_then(|q| q.strip_suffix(b"\""))
        .filter(|i| i.iter().all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80));
    let Some(inner) = inner else {
        let what = if tag.contains(&b',') {
            "If-Match takes one entity tag; lists are not supported"
        } else {
            "If-Match must be * or one entity tag in double quotes, as the ETag header gives it: \
             If-Match: \"<version>\""
        };
        return Err(ApiError::bad_request(what));
    };
    if weak {
        return Ok(WriteCondition::Never(
            "If-Match has a weak entity tag (W/\"…\"), which never matches: If-Match uses the strong \
             comparison; send the ETag exactly as the server gave it (a proxy may have weakened it)",
        ));
    }
    match std::str::from_utf8(inner).ok().and_then(|v| Version::new(v).ok()) {
        Some(version) => Ok(WriteCondition::Version(version)),
        None => Ok(WriteCondition::Never(
            "If-Match names an entity tag that is not a version of this server, so no credential has it",
        )),
    }
}

/// Refuses conditional headers on a route that makes no conditional
/// writes (delete, purge), rather than ignoring a condition the client
/// relies on.
///
/// # Errors
/// 400 when `If-Match` or `If-None-Match` is present.
pub(crate) fn no_condition(headers: &HeaderMap, what: &str) -> Result<(), ApiError> {
    for name in [header::IF_MATCH, header::IF_NONE_MATCH] {
        if headers.contains_key(&name) {
            return Err(ApiError::bad_request(format!(
                "{} is not supported on {what}: conditional writes are creates and restores only",
                canonical(&name)
            )));
        }
    }
    Ok(())
}

/// How many times `If-Match: *` reads the current version and replaces it
/// before it gives up on a key that keeps changing (409).
const EXISTS_ATTEMPTS: usize = 3;

/// What a conditional write writes: a value, or an earlier version back.
enum Write<'a> {
    /// A value and its metadata (a create).
    Set(&'a SecretValue, &'a Metadata),
    /// The value and metadata of a kept version (a restore).
    Restore(&'a Version),
}

impl Write<'_> {
    async fn to(
        &self,
        store: &dyn CredentialStore,
        key: &CredentialKey,
        options: &SetOptions,
    ) -> Result<SetOutcome, StoreError> {
        match self {
            Write::Set(value, meta) => store.set_opts(key, value, meta, options).await,
            Write::Restore(version) => store.restore(key, version, options).await,
        }
    }
}

/// Writes `input` under `condition`; a condition that does not hold is
/// 412 and changes nothing.
pub(crate) async fn conditional_set(
    store: &dyn CredentialStore,
    input: &CreateInput,
    condition: &WriteCondition,
) -> Result<SetOutcome, ApiError> {
    let write = Write::Set(&input.value, &input.metadata);
    conditional_write(store, &input.key, &write, condition, input.expires_at).await
}

/// Writes the kept `version` of `key` back as a new write
/// ([`CredentialStoreExt::restore`]) under `condition`, which is not
/// [`WriteCondition::None`] (the handler answers that 428); the restored
/// write expires at `expires_at` (never, when `None`), not when the
/// version restored did. A condition that does not hold is 412 and changes
/// nothing; a version not kept is 404.
pub(crate) async fn conditional_restore(
    store: &dyn CredentialStore,
    key: &CredentialKey,
    version: &Version,
    condition: &WriteCondition,
    expires_at: Option<SystemTime>,
) -> Result<SetOutcome, ApiError> {
    conditional_write(store, key, &Write::Restore(version), condition, expires_at).await
}

async fn conditional_write(
    store: &dyn CredentialStore,
    key: &CredentialKey,
    write: &Write<'_>,
    condition: &WriteCondition,
    expires_at: Option<SystemTime>,
) -> Result<SetOutcome, ApiError> {
    let failed = |reason: &str| ApiError::from(StoreError::precondition_failed(store.id(), key, reason));
    let options = match condition {
        WriteCondition::None => SetOptions::new(),
        WriteCondition::Absent => SetOptions::create_only(),
        WriteCondition::Version(v) => SetOptions::replace(v.clone()),
        WriteCondition::Never(reason) => return Err(failed(reason)),
        WriteCondition::Exists => {
            // A replace at the version just read: atomic against a delete
            // (412) and a concurrent write (read again).
            for _ in 0..EXISTS_ATTEMPTS {
                let Some(current) = store.version(key).await? else {
                    return Err(failed("the key does not exist (If-Match: *)"));
                };
                let options = SetOptions::replace(current).with_expires_at(expires_at);
                match write.to(store, key, &options).await {
                    Err(StoreError::PreconditionFailed { .. }) => continue,
                    other => return other.map_err(ApiError::from),
                }
            }
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "credential '{key}' changed under {EXISTS_ATTEMPTS} attempts in a row to replace it \
                     (If-Match: *); nothing was changed; retry"
                ),
            ));
        }
    };
    Ok(write.to(store, key, &options.with_expires_at(expires_at)).await?)
}

/// The strong `ETag` of `version`: `"<version>"`.
pub(crate) fn etag(version: &Version) -> Option<HeaderValue> {
    let v = version.as_str();
    let mut tag = String::with_capacity(v.len() + 2);
    tag.push('"');
    tag.push_str(v);
    tag.push('"');
    HeaderValue::try_from(tag).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(pairs: &[(&str, &str)]) -> Result<WriteCondition, ApiError> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        write_condition(&h)
    }

    #[test]
    fn conditional_headers() {
        let v = |s: &str| WriteCondition::Version(Version::new(s).unwrap());
        assert_eq!(condition(&[]).unwrap(), WriteCondition::None);
        assert_eq!(condition(&[("if-none-match", "*")]).unwrap(), WriteCondition::Absent);
        assert_eq!(condition(&[("if-match", "*")]).unwrap(), WriteCondition::Exists);
        assert_eq!(condition(&[("if-match", "\"3\"")]).unwrap(), v("3"));
        assert_eq!(condition(&[("if-match", " \"a-b_c.9\" ")]).unwrap(), v("a-b_c.9"));
        for never in ["W/\"3\"", "\"\"", "\"a,b\""] {
            assert!(
                matches!(condition(&[("if-match", never)]).unwrap(), WriteCondition::Never(_)),
                "{never}"
            );
        }
        let bad = |pairs: &[(&str, &str)], expect: &str| {
            let e = condition(pairs).unwrap_err();
            assert_eq!(e.status, 400, "{pairs:?}");
            assert!(e.detail.contains(expect), "{pairs:?}: {}", e.detail);
        };
        bad(&[("if-match", "\"1\", \"2\"")], "lists are not supported");
        bad(&[("if-match", "3")], "double quotes");
        bad(&[("if-match", "\"a b\"")], "double quotes");
        bad(&[("if-match", "")], "double quotes");
        bad(&[("if-match", "\"1\""), ("if-match", "\"2\"")], "more than once");
        bad(&[("if-none-match", "\"3\"")], "only *");
        bad(&[("if-none-match", "W/\"3\"")], "only *");
        bad(&[("if-none-match", "*"), ("if-match", "\"3\"")], "not both");
    }

    #[test]
    fn etags_are_strong_and_quoted() {
        assert_eq!(etag(&Version::new("3").unwrap()).unwrap(), "\"3\"");
    }
}
