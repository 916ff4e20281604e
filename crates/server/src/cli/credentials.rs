//! `get`, `set`, `ls` and `rm`: one credential at a time, from a shell or a
//! script, on the store [`StoreArgs`] selects.
//!
//! Values never come from arguments (`set` reads stdin or `--from-file`)
//! and are never printed to a terminal unless asked (`get --show`); they
//! are held as [`SecretValue`]s and in zeroizing buffers, and never logged.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use clap::Args;
use credstore_core::{Metadata, SecretValue, SetMode, SetOptions, Version, MAX_PAGE_SIZE, MAX_VALUE_BYTES};
use serde::Serialize;
use zeroize::Zeroizing;

use super::exit::{Exit, Failure, EXIT_CODES_HELP};
use super::target::{parse_key, StoreArgs, Target};
use super::Context;

/// `credstore get`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_HELP)]
pub struct GetArgs {
    /// The credential's key.
    pub key: String,
    /// Print the value even when stdout is a terminal.
    #[arg(long)]
    pub show: bool,
    /// Print JSON: key, storeId, version, createdAt, updatedAt, expiresAt,
    /// metadata, valueKind, and the value (`value`, or `valueBase64` for a
    /// binary one) only with --show or when stdout is not a terminal.
    #[arg(long)]
    pub json: bool,
    /// The store.
    #[command(flatten)]
    pub target: StoreArgs,
}

/// `credstore set`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_HELP)]
pub struct SetArgs {
    /// The credential's key.
    pub key: String,
    /// Read the value from this file (its bytes exactly) instead of stdin.
    #[arg(long, value_name = "PATH")]
    pub from_file: Option<PathBuf>,
    /// Drop one trailing newline (`\n` or `\r\n`) from the value read, as
    /// `echo secret | credstore set KEY` adds one.
    #[arg(long)]
    pub trim_newline: bool,
    /// A metadata entry (repeatable); the metadata replaces the credential's.
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    pub meta: Vec<String>,
    /// Expire the credential after this long (e.g. 90d, 12h).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, conflicts_with = "expires_at")]
    pub expires_in: Option<Duration>,
    /// Expire the credential at this time (RFC 3339, e.g. 2030-01-01T00:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = humantime::parse_rfc3339_weak)]
    pub expires_at: Option<SystemTime>,
    /// Only create: fail (exit 4) when the key exists.
    #[arg(long, conflicts_with = "if_version")]
    pub create_only: bool,
    /// Only replace this version (as `get --json` shows it): fail (exit 4)
    /// when the key is missing or at another version.
    #[arg(long, value_name = "VERSION")]
    pub if_version: Option<String>,
    /// Print what was written as JSON: key, storeId, created, version, createdAt.
    #[arg(long)]
    pub json: bool,
    /// The store.
    #[command(flatten)]
    pub target: StoreArgs,
}

/// `credstore ls`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_HELP)]
pub struct LsArgs {
    /// Only the keys that start with this.
    pub prefix: Option<String>,
    /// At most this many keys (default: every key, page after page).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Print `{"data":[{"key":…},…]}` instead of one key a line.
    #[arg(long)]
    pub json: bool,
    /// The store.
    #[command(flatten)]
    pub target: StoreArgs,
}

/// `credstore rm`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES_HELP)]
pub struct RmArgs {
    /// The credential's key. Exits 0 when it was deleted, 3 when there was none.
    pub key: String,
    /// The store.
    #[command(flatten)]
    pub target: StoreArgs,
}

/// What `get` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shown {
    /// The value's bytes.
    Value,
    /// The JSON, with the value or without.
    Json {
        /// Whether the value is in it.
        value: bool,
    },
    /// Nothing: the value would go to a terminal without --show.
    Refused,
}

/// What `get` prints, decided before any store call: a value goes to a
/// terminal only with `--show`; `--json` then leaves the value out.
pub(crate) fn shown(json: bool, show: bool, stdout_is_terminal: bool) -> Shown {
    let value = show || !stdout_is_terminal;
    match (json, value) {
        (true, value) => Shown::Json { value },
        (false, true) => Shown::Value,
        (false, false) => Shown::Refused,
    }
}

fn missing(key: &str, target: &Target) -> Failure {
    Failure::new(Exit::NotFound, format!("no credential '{key}' in store '{}'", target.store_id()))
}

fn write_out(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::error(format!("cannot write to stdout: {e}")))
}

/// The JSON of `get --json`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GetJson<'a> {
    key: &'a str,
    store_id: &'a str,
    version: &'a str,
    created_at: &'a str,
    updated_at: &'a str,
    expires_at: Option<&'a str>,
    metadata: &'a std::collections::BTreeMap<String, String>,
    value_kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_base64: Option<&'a str>,
}

/// `credstore get`.
pub(crate) async fn get(args: GetArgs, ctx: &Context<'_>) -> Result<(), Failure> {
    let key = parse_key(&args.key)?;
    let shown = shown(args.json, args.show, std::io::stdout().is_terminal());
    if shown == Shown::Refused {
        return Err(Failure::new(
            Exit::NotShown,
            "stdout is a terminal: the value is not printed there without --show (pipe or redirect it, or use \
             --json for the metadata alone)",
        ));
    }
    let target = Target::open(&args.target, ctx).await?;
    if shown == Shown::Value {
        // The value alone: through a server, one value read (a token with
        // `reveal` and not `view` may make it).
        let value = target.values(std::slice::from_ref(&key)).await?.pop().flatten();
        let value = value.ok_or_else(|| missing(&args.key, &target))?;
        return write_out(value.expose_secret());
    }
    let with_value = shown == Shown::Json { value: true };
    let entry = target.read(&key, with_value).await?.ok_or_else(|| missing(&args.key, &target))?;
    let encoded = match &entry.value {
        Some(v) if !v.is_text() => Some(Zeroizing::new(STANDARD.encode(v.expose_secret()))),
        _ => None,
    };
    let json = GetJson {
        key: &entry.key,
        store_id: &entry.store_id,
        version: &entry.version,
        created_at: &entry.created_at,
        updated_at: &entry.updated_at,
        expires_at: entry.expires_at.as_deref(),
        metadata: &entry.metadata,
        value_kind: if entry.text { "text" } else { "binary" },
        value: entry.value.as_ref().and_then(|v| v.expose_str().ok()),
        value_base64: encoded.as_deref().map(String::as_str),
    };
    let len = entry.value.as_ref().map_or(0, SecretValue::len);
    // Sized once (JSON escapes at most 6 bytes per byte, base64 4 per 3):
    // no reallocation leaves a copy of the value behind.
    let mut buf = Zeroizing::new(Vec::with_capacity(len * 6 + 4096));
    serde_json::to_writer(&mut *buf, &json)
        .map_err(|e| Failure::error(format!("cannot encode the answer: {e}")))?;
    buf.push(b'\n');
    write_out(&buf)
}

/// Reads a value: all of `source`, at most [`MAX_VALUE_BYTES`], into a
/// buffer sized once.
fn read_value(mut source: impl Read, what: &str) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_VALUE_BYTES + 1));
    // `take` keeps the reads within the capacity: no reallocation.
    (&mut source)
        .take(MAX_VALUE_BYTES as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Failure::error(format!("cannot read the value from {what}: {e}")))?;
    if buf.len() > MAX_VALUE_BYTES {
        return Err(Failure::usage(format!("the value from {what} is over {MAX_VALUE_BYTES} bytes")));
    }
    Ok(buf)
}

/// The metadata of `--meta KEY=VALUE` arguments.
pub(crate) fn parse_meta(entries: &[String]) -> Result<Metadata, Failure> {
    let mut meta = Metadata::new();
    for entry in entries {
        let Some((k, v)) = entry.split_once('=') else {
            return Err(Failure::usage(format!("--meta {entry:?}: give KEY=VALUE")));
        };
        if meta.get(k).is_some() {
            return Err(Failure::usage(format!("--meta {k:?} is given twice")));
        }
        meta.insert(k, v).map_err(Failure::from)?;
    }
    Ok(meta)
}

/// The JSON of `set --json`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SetJson<'a> {
    key: &'a str,
    store_id: &'a str,
    created: bool,
    version: &'a str,
    created_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    updated_at: Option<&'a str>,
}

/// `credstore set`.
pub(crate) async fn set(args: SetArgs, ctx: &Context<'_>) -> Result<(), Failure> {
    // Every argument is checked before the value is read, and the value
    // before the store is opened.
    let key = parse_key(&args.key)?;
    let metadata = parse_meta(&args.meta)?;
    let mode = match (&args.if_version, args.create_only) {
        (Some(v), _) => SetMode::Replace(
            Version::new(v.as_str()).map_err(|e| Failure::usage(format!("--if-version: {e}")))?,
        ),
        (None, true) => SetMode::Create,
        (None, false) => SetMode::Upsert,
    };
    let expires_at = match (args.expires_in, args.expires_at) {
        (Some(d), _) => Some(SystemTime::now() + d),
        (None, at) => at,
    };
    if expires_at.is_some_and(|t| t <= SystemTime::now()) {
        return Err(Failure::usage("the expiry is not in the future"));
    }
    let mut bytes = match &args.from_file {
        Some(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| Failure::usage(format!("cannot open {}: {e}", path.display())))?;
            read_value(file, &path.display().to_string())?
        }
        None => {
            if std::io::stdin().is_terminal() {
                return Err(Failure::usage(
                    "stdin is a terminal, where a typed value would show: pipe the value in (printf %s \"$VALUE\" \
                     | credstore set KEY) or give --from-file",
                ));
            }
            read_value(std::io::stdin().lock(), "stdin")?
        }
    };
    if args.trim_newline {
        let len = bytes.len();
        if bytes.ends_with(b"\r\n") {
            bytes.truncate(len - 2);
        } else if bytes.ends_with(b"\n") {
            bytes.truncate(len - 1);
        }
    }
    let value = SecretValue::from_bytes(std::mem::take(&mut *bytes));
    let options = SetOptions::new().with_mode(mode).with_expires_at(expires_at);
    let target = Target::open(&args.target, ctx).await?;
    let written = target.write(&key, &value, &metadata, &options).await?;
    if args.json {
        let json = SetJson {
            key: key.as_str(),
            store_id: target.store_id(),
            created: written.created,
            version: &written.version,
            created_at: &written.created_at,
            updated_at: written.updated_at.as_deref(),
        };
        let mut text = serde_json::to_vec(&json).map_err(|e| Failure::error(e.to_string()))?;
        text.push(b'\n');
        write_out(&text)?;
    } else if std::io::stderr().is_terminal() {
        let done = if written.created { "created" } else { "replaced" };
        eprintln!("credstore: {done} '{key}' in store '{}', version {}", target.store_id(), written.version);
    }
    Ok(())
}

/// `credstore ls`: every key under the prefix (or the first `--limit`),
/// page after page.
pub(crate) async fn ls(args: LsArgs, ctx: &Context<'_>) -> Result<(), Failure> {
    let prefix = args.prefix.unwrap_or_default();
    // The prefix is checked (as the store checks it) before any I/O.
    credstore_core::ListOptions::new().with_prefix(prefix.as_str())?;
    let target = Target::open(&args.target, ctx).await?;
    let mut left = args.limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let mut cursor: Option<String> = None;
    let mut keys = Vec::new();
    let mut out = std::io::stdout().lock();
    while left > 0 {
        let (page, next) = target.list(&prefix, cursor.as_deref(), left.min(MAX_PAGE_SIZE)).await?;
        left = left.saturating_sub(page.len());
        if args.json {
            keys.extend(page);
        } else {
            for key in page {
                writeln!(out, "{key}").map_err(|e| Failure::error(format!("cannot write to stdout: {e}")))?;
            }
        }
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    if args.json {
        let data: Vec<_> = keys.iter().map(|k| serde_json::json!({ "key": k })).collect();
        writeln!(out, "{}", serde_json::json!({ "data": data }))
            .map_err(|e| Failure::error(format!("cannot write to stdout: {e}")))?;
    }
    out.flush().map_err(|e| Failure::error(format!("cannot write to stdout: {e}")))
}

/// `credstore rm`: exit 0 when the key was deleted, 3 when it did not exist.
pub(crate) async fn rm(args: RmArgs, ctx: &Context<'_>) -> Result<(), Failure> {
    let key = parse_key(&args.key)?;
    let target = Target::open(&args.target, ctx).await?;
    if target.delete(&key).await? {
        Ok(())
    } else {
        Err(missing(&args.key, &target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_goes_to_a_terminal_only_with_show() {
        assert_eq!(shown(false, false, true), Shown::Refused);
        assert_eq!(shown(false, true, true), Shown::Value);
        assert_eq!(shown(false, false, false), Shown::Value, "a pipe or a file gets the value");
        assert_eq!(
            shown(true, false, true),
            Shown::Json { value: false },
            "--json to a terminal: metadata only"
        );
        assert_eq!(shown(true, true, true), Shown::Json { value: true });
        assert_eq!(shown(true, false, false), Shown::Json { value: true });
    }

    #[test]
    fn meta_arguments_are_key_value_pairs_checked_before_any_io() {
        let meta = parse_meta(&["owner=payments".into(), "note=a=b".into()]).unwrap();
        assert_eq!(meta.get("owner"), Some("payments"));
        assert_eq!(meta.get("note"), Some("a=b"), "the value keeps later '='");
        for bad in [vec!["novalue".to_owned()], vec!["a=1".into(), "a=2".into()], vec!["bad key=1".into()]] {
            assert_eq!(parse_meta(&bad).unwrap_err().exit, Exit::Usage, "{bad:?}");
        }
    }

    #[test]
    fn a_value_over_the_limit_is_refused_and_one_at_it_read_whole() {
        let at = vec![7u8; MAX_VALUE_BYTES];
        assert_eq!(read_value(&at[..], "test").unwrap().len(), MAX_VALUE_BYTES);
        let over = vec![7u8; MAX_VALUE_BYTES + 1];
        assert_eq!(read_value(&over[..], "test").unwrap_err().exit, Exit::Usage);
    }
}
