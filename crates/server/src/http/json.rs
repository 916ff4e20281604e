//! The JSON answers of the routes.

use std::time::SystemTime;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// A JSON answer that no cache keeps.
pub(crate) fn json_ok<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut resp = (status, Json(body)).into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// RFC 3339 UTC with milliseconds.
pub(crate) fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// The pattern of an RFC 3339 time as the API takes it (`expiresAt`):
/// date, `T`, time with optional fraction, and `Z` or an offset.
pub(crate) const TIME_PATTERN: &str =
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})$";

/// Parses an RFC 3339 time (`2030-01-01T00:00:00Z`,
/// `2030-01-01T02:00:00.5+02:00`): a date and time from 1970 on, with `Z`
/// or a UTC offset, fractions to the nanosecond.
///
/// # Errors
/// What is wrong, to be shown with the field's name.
pub(crate) fn parse_time(text: &str) -> Result<SystemTime, String> {
    const FORMAT: &str = "is not an RFC 3339 time such as 2030-01-01T00:00:00Z or 2030-01-01T02:00:00+02:00";
    let bad = || FORMAT.to_owned();
    if !text.is_ascii() || text.len() < "2030-01-01T00:00:00Z".len() || text.len() > 40 {
        return Err(bad());
    }
    let (local, offset_secs) = match text.as_bytes()[text.len() - 1] {
        b'Z' | b'z' => (&text[..text.len() - 1], 0i64),
        _ => {
            let (local, offset) = text.split_at(text.len() - 6);
            let o = offset.as_bytes();
            let sign = match o[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return Err(bad()),
            };
            if o[3] != b':' || !o[1..3].iter().chain(&o[4..]).all(u8::is_ascii_digit) {
                return Err(bad());
            }
            let (hours, minutes) = (
                i64::from(o[1] - b'0') * 10 + i64::from(o[2] - b'0'),
                i64::from(o[4] - b'0') * 10 + i64::from(o[5] - b'0'),
            );
            if hours > 23 || minutes > 59 {
                return Err(bad());
            }
            (local, sign * (hours * 3600 + minutes * 60))
        }
    };
    let mut utc = local.to_owned();
    if utc.as_bytes().get(10) == Some(&b't') {
        utc.replace_range(10..11, "T");
    }
    if utc.as_bytes().get(10) != Some(&b'T') {
        return Err(bad());
    }
    utc.push('Z');
    let at = humantime::parse_rfc3339(&utc).map_err(|e| format!("{FORMAT} ({e})"))?;
    // The local time less the offset is the time in UTC.
    let shift = std::time::Duration::from_secs(offset_secs.unsigned_abs());
    let at = if offset_secs >= 0 { at.checked_sub(shift) } else { at.checked_add(shift) };
    at.filter(|t| *t >= std::time::UNIX_EPOCH).ok_or_else(|| "is before 1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_times_with_offsets_parse_to_the_same_instant() {
        let at = UNIX_EPOCH + Duration::from_secs(1_893_456_000);
        assert_eq!(parse_time("2030-01-01T00:00:00Z"), Ok(at));
        assert_eq!(parse_time("2030-01-01t00:00:00z"), Ok(at));
        assert_eq!(parse_time("2030-01-01T02:30:00+02:30"), Ok(at));
        assert_eq!(parse_time("2029-12-31T19:00:00-05:00"), Ok(at));
        assert_eq!(parse_time("2030-01-01T00:00:00.25Z"), Ok(at + Duration::from_millis(250)));
        assert_eq!(parse_time(&timestamp(at + Duration::from_millis(7))), Ok(at + Duration::from_millis(7)));
        for bad in [
            "",
            "2030-01-01",
            "2030-01-01 00:00:00Z",
            "2030-01-01T00:00:00",
            "2030-01-01T00:00:00+0200",
            "2030-01-01T00:00:00+24:00",
            "2030-13-01T00:00:00Z",
            "2030-01-01T00:00:00Zé",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:30:00+01:00",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }
}
