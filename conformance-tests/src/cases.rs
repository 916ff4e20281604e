//! The conformance cases. Each is a public async function that takes the
//! factory and panics with a clear message when the store misbehaves.
//!
//! Cases that need an optional capability return early when the store
//! declares it off; the `capabilities_*` cases check that such a declaration
//! is honest, so no behaviour goes untested.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use credstore_core::{
    CredentialKey, CredentialStore, Error, IdError, ListCursor, ListOptions, Metadata, SecretValue,
    MAX_METADATA_ENTRIES, MAX_METADATA_KEY_BYTES, MAX_METADATA_TOTAL_BYTES, MAX_METADATA_VALUE_BYTES,
    MAX_PAGE_SIZE, MAX_VALUE_BYTES,
};

use crate::{unique_name, StoreFactory};

/// How long an unreachable store may take to answer its probe or fail an operation.
pub const UNREACHABLE_DEADLINE: Duration = Duration::from_secs(15);

fn key(s: &str) -> CredentialKey {
    CredentialKey::new(s).unwrap_or_else(|e| panic!("test key {s:?} is invalid: {e}"))
}

fn meta<const N: usize>(entries: [(&str, &str); N]) -> Metadata {
    Metadata::try_from(entries).expect("test metadata is valid")
}

/// A recognisable secret that appears nowhere else, to search output for.
fn secret(tag: &str) -> SecretValue {
    SecretValue::new(unique_name(&format!("SECRET-{tag}")))
}

async fn set(store: &dyn CredentialStore, k: &CredentialKey, v: &SecretValue, m: &Metadata) {
    store.set(k, v, m).await.unwrap_or_else(|e| panic!("set {k} failed: {e}"));
}

async fn must_get(store: &dyn CredentialStore, k: &CredentialKey) -> credstore_core::Credential {
    store
        .get(k)
        .await
        .unwrap_or_else(|e| panic!("get {k} failed: {e}"))
        .unwrap_or_else(|| panic!("get {k}: expected a credential, got none"))
}

async fn list_all(store: &dyn CredentialStore, prefix: &str, page: usize) -> Vec<CredentialKey> {
    let mut opts = ListOptions::new().with_prefix(prefix).unwrap().with_limit(page).unwrap();
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let got = store.list(&opts).await.unwrap_or_else(|e| panic!("list failed: {e}"));
        assert!(got.keys.len() <= page, "a page of {} keys exceeds the limit {page}", got.keys.len());
        out.extend(got.keys);
        match got.next_cursor {
            Some(c) => opts = opts.with_cursor(Some(c)),
            None => return out,
        }
    }
    panic!("list never ended");
}

fn caps(store: &dyn CredentialStore) -> credstore_core::Capabilities {
    store.capabilities()
}

fn assert_invalid_input(err: &Error, field: &str) {
    match err {
        Error::InvalidInput { field: f, .. } => {
            assert!(f.contains(field), "expected field {field}, got {err}")
        }
        other => panic!("expected InvalidInput on {field}, got {other:?}"),
    }
}

fn assert_no_secret(what: &str, text: &str, secret: &SecretValue) {
    assert!(!text.contains(secret.expose_secret()), "{what} contains the secret value: {text}");
}

/// Set then get returns the value, metadata and key exactly.
pub async fn round_trip<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let k = key("round-trip");
    let v = secret("rt");
    let m = meta([("owner", "team-a")]);
    let out = store.set(&k, &v, &m).await.expect("set");
    assert!(out.created, "first set must report created");
    let c = must_get(&*store, &k).await;
    assert_eq!(c.key, k);
    assert!(c.value == v, "value differs after round trip");
    assert_eq!(c.metadata, m);
}

/// Overwriting replaces the value and the whole metadata (no merge).
pub async fn overwrite_replaces_value_and_metadata<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let k = key("overwrite");
    set(&*store, &k, &SecretValue::from("first"), &meta([("a", "1"), ("b", "2")])).await;
    let out = store.set(&k, &SecretValue::from("second"), &meta([("c", "3")])).await.expect("overwrite");
    assert!(!out.created, "overwrite must not report created");
    let c = must_get(&*store, &k).await;
    assert_eq!(c.value.expose_secret(), "second");
    assert_eq!(c.metadata, meta([("c", "3")]), "metadata must be replaced, not merged");
}

/// A key never set reads as `None`, not an error.
pub async fn missing_key_is_none<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    assert!(store.get(&key("never-set")).await.expect("get missing").is_none());
}

/// Delete returns true for an existing key, then false.
pub async fn delete_returns_true_then_false<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let k = key("to-delete");
    set(&*store, &k, &SecretValue::from("v"), &Metadata::new()).await;
    assert!(store.delete(&k).await.expect("delete"), "delete of an existing key returns true");
    assert!(!store.delete(&k).await.expect("delete again"), "second delete returns false");
    assert!(store.get(&k).await.expect("get").is_none());
    assert!(!store.has(&k).await.expect("has"));
}

/// Deleting a key that never existed returns false.
pub async fn delete_missing_key_returns_false<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    assert!(!store.delete(&key("never-existed")).await.expect("delete missing"));
}

/// `has` follows set and delete.
pub async fn has_reflects_presence<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let k = key("presence");
    assert!(!store.has(&k).await.expect("has"));
    set(&*store, &k, &SecretValue::from("v"), &Metadata::new()).await;
    assert!(store.has(&k).await.expect("has"));
    store.delete(&k).await.expect("delete");
    assert!(!store.has(&k).await.expect("has"));
}

/// Reading a missing key does not create it.
pub async fn has_and_get_do_not_create<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let k = key("ghost");
    assert!(!store.has(&k).await.expect("has"));
    assert!(store.get(&k).await.expect("get").is_none());
    assert!(!store.has(&k).await.expect("has"));
    if caps(&*store).list {
        assert!(list_all(&*store, "", 100).await.is_empty(), "reads must not create keys");
    }
}

/// Metadata with punctuation, spaces and quotes round-trips exactly.
pub async fn metadata_round_trip<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    if !caps(&*store).metadata {
        return;
    }
    let k = key("with-metadata");
    let m = meta([
        ("owner", "payments team"),
        ("json-like", r#"{"a": [1, 2], "b": "c"}"#),
        ("quotes", r#"it's "quoted" \ back\slash"#),
        ("symbols", "=+:/@#%&*?!~`^|<>[]{}();,"),
        ("spaces", "  leading and trailing  "),
        ("empty", ""),
    ]);
    set(&*store, &k, &SecretValue::from("v"), &m).await;
    assert_eq!(must_get(&*store, &k).await.metadata, m);
}

/// Empty metadata round-trips as empty.
pub async fn metadata_empty<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let k = key("no-metadata");
    set(&*store, &k, &SecretValue::from("v"), &Metadata::new()).await;
    assert!(must_get(&*store, &k).await.metadata.is_empty());
}

/// Unicode metadata values round-trip exactly.
pub async fn metadata_unicode_values<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    if !caps(&*store).metadata {
        return;
    }
    let k = key("unicode-metadata");
    let m = meta([
        ("ja", "日本語のメタデータ"),
        ("emoji", "🔑✓🚀 keys"),
        ("rtl", "שלום עולם"),
        ("combining", "e\u{301} n\u{303}"),
        ("astral", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢"),
    ]);
    set(&*store, &k, &SecretValue::from("v"), &m).await;
    assert_eq!(must_get(&*store, &k).await.metadata, m);
}

/// Metadata at every limit at once round-trips.
pub async fn metadata_at_limits<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    if !caps(&*store).metadata {
        return;
    }
    // The most entries.
    let mut many = Metadata::new();
    for i in 0..MAX_METADATA_ENTRIES {
        many.insert(format!("k{i:02}"), format!("v{i}")).unwrap();
    }
    // The longest key with the longest value, in multi-byte characters.
    let mut long = Metadata::new();
    let long_value: String = "é".repeat(MAX_METADATA_VALUE_BYTES / 2);
    long.insert("K".repeat(MAX_METADATA_KEY_BYTES), long_value).unwrap();
    // Exactly the total budget.
    let mut full = Metadata::new();
    let per = MAX_METADATA_TOTAL_BYTES / 3;
    for i in 0..3 {
        let k = format!("t{i}-{}", "x".repeat(per - MAX_METADATA_VALUE_BYTES - 3));
        full.insert(k, "v".repeat(MAX_METADATA_VALUE_BYTES)).unwrap();
    }
    assert_eq!(full.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>(), MAX_METADATA_TOTAL_BYTES);
    for (name, m) in [("many", many), ("long", long), ("full", full)] {
        let k = key(&format!("limits-{name}"));
        set(&*store, &k, &SecretValue::from("v"), &m).await;
        assert_eq!(must_get(&*store, &k).await.metadata, m, "metadata {name} changed");
    }
}

/// Metadata past any limit cannot be built, so it never reaches the store,
/// and the error names the field.
pub async fn metadata_over_limits_rejected_before_io<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let k = key("kept-metadata");
    let original = meta([("keep", "me")]);
    set(&*store, &k, &SecretValue::from("v"), &original).await;

    let mut m = Metadata::new();
    for i in 0..MAX_METADATA_ENTRIES {
        m.insert(format!("k{i}"), "v").unwrap();
    }
    assert_invalid_input(&m.insert("one-too-many", "v").unwrap_err(), "metadata");
    let mut m = Metadata::new();
    assert_invalid_input(&m.insert("k".repeat(MAX_METADATA_KEY_BYTES + 1), "v").unwrap_err(), "metadata key");
    assert_invalid_input(&m.insert("bad key", "v").unwrap_err(), "metadata key");
    assert_invalid_input(&m.insert("v", "x".repeat(MAX_METADATA_VALUE_BYTES + 1)).unwrap_err(), "metadata.v");
    assert_invalid_input(&m.insert("ctl", "bell\u{7}").unwrap_err(), "metadata.ctl");
    let big: std::collections::BTreeMap<String, String> =
        (0..4).map(|i| (format!("k{i}"), "x".repeat(MAX_METADATA_VALUE_BYTES))).collect();
    assert_invalid_input(&Metadata::try_from(big).unwrap_err(), "metadata");
    assert!(m.is_empty(), "failed inserts must leave metadata unchanged");

    assert_eq!(must_get(&*store, &k).await.metadata, original);
}

/// The empty string is a value like any other.
pub async fn empty_value_round_trip<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let k = key("empty-value");
    set(&*store, &k, &SecretValue::from(""), &meta([("note", "empty")])).await;
    let c = must_get(&*store, &k).await;
    assert!(c.value.is_empty(), "expected the empty value, got {} bytes", c.value.len());
    assert_eq!(c.metadata, meta([("note", "empty")]));
    assert!(store.has(&k).await.expect("has"));
}

/// A value of exactly `MAX_VALUE_BYTES` round-trips, ASCII and multi-byte.
pub async fn largest_value_round_trip<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let ascii: String = (0..MAX_VALUE_BYTES).map(|i| char::from(b'!' + (i % 90) as u8)).collect();
    let multi: String = "€".repeat(MAX_VALUE_BYTES / 3) + &"x".repeat(MAX_VALUE_BYTES % 3);
    for (name, value) in [("ascii", ascii), ("multibyte", multi)] {
        assert_eq!(value.len(), MAX_VALUE_BYTES);
        let k = key(&format!("largest-{name}"));
        let v = SecretValue::new(value);
        set(&*store, &k, &v, &Metadata::new()).await;
        assert!(must_get(&*store, &k).await.value == v, "{name} value changed");
    }
}

/// One byte over the limit is rejected as invalid input and nothing is stored.
pub async fn value_over_limit_rejected_and_nothing_stored<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let k = key("too-big");
    let v = SecretValue::new("x".repeat(MAX_VALUE_BYTES + 1));
    let err = store.set(&k, &v, &Metadata::new()).await.expect_err("over-limit value must be rejected");
    assert_invalid_input(&err, "value");
    assert!(!err.is_retriable());
    assert!(!store.has(&k).await.expect("has"), "a rejected value must not be stored");
    assert!(store.get(&k).await.expect("get").is_none());
}

/// A rejected overwrite leaves the stored value, metadata and times as they were.
pub async fn value_over_limit_leaves_existing_value<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let k = key("keep-me");
    set(&*store, &k, &SecretValue::from("original"), &meta([("v", "1")])).await;
    let before = must_get(&*store, &k).await;
    let big = SecretValue::new("y".repeat(MAX_VALUE_BYTES + 1));
    assert_invalid_input(&store.set(&k, &big, &meta([("v", "2")])).await.unwrap_err(), "value");
    let after = must_get(&*store, &k).await;
    assert_eq!(after.value.expose_secret(), "original");
    assert_eq!(after.metadata, before.metadata);
    assert_eq!(after.updated_at, before.updated_at);
}

/// Values with control characters, quotes, NUL and unicode round-trip exactly.
pub async fn value_with_special_characters<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let values = [
        "line one\nline two\r\n\ttabbed",
        r#"{"value": "json \"inside\"", "n": 1}"#,
        "  padded with spaces  ",
        "nul\u{0}inside and \u{7f} del",
        "ünïcödé 🔐 ключ 秘密",
        "%2F..%2F/etc/passwd?x=1&y=2#frag",
        "\\\\server\\share'; DROP TABLE credentials; --",
        "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
    ];
    for (i, value) in values.iter().enumerate() {
        let k = key(&format!("special-{i}"));
        set(&*store, &k, &SecretValue::from(*value), &Metadata::new()).await;
        let got = must_get(&*store, &k).await;
        assert!(got.value.expose_secret() == *value, "value {i} changed in the round trip");
    }
}

/// Keys of one byte work, including the punctuation ones.
pub async fn key_of_one_byte<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    for s in ["a", "Z", "0"] {
        let k = key(s);
        set(&*store, &k, &SecretValue::from(format!("value-{s}")), &Metadata::new()).await;
        assert_eq!(must_get(&*store, &k).await.value.expose_secret(), format!("value-{s}"));
    }
}

/// A key of exactly 255 bytes works; 256 is rejected (see
/// `invalid_key_too_long_rejected`).
pub async fn key_of_255_bytes<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let long: String = (0..255).map(|i| ['a', 'B', '7', '-', '_', '.'][i % 6]).collect();
    let k = key(&long);
    set(&*store, &k, &SecretValue::from("long-key"), &Metadata::new()).await;
    assert_eq!(must_get(&*store, &k).await.value.expose_secret(), "long-key");
    assert!(store.has(&k).await.expect("has"));
    if caps(&*store).list {
        assert_eq!(list_all(&*store, "", 100).await, vec![k.clone()]);
    }
    assert!(store.delete(&k).await.expect("delete"));
}

/// A key holding every allowed character works.
pub async fn key_with_every_allowed_character<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let all: String = ('a'..='z').chain('A'..='Z').chain('0'..='9').chain(['-', '_', '.']).collect();
    assert_eq!(all.len(), 65);
    let k = key(&all);
    set(&*store, &k, &SecretValue::from("every-char"), &Metadata::new()).await;
    assert_eq!(must_get(&*store, &k).await.value.expose_secret(), "every-char");
    if caps(&*store).list {
        assert_eq!(list_all(&*store, "", 100).await, vec![k]);
    }
}

/// Keys that look like paths or flags (`.`, `..`, `-`, `_`, ...) are plain
/// keys: stored, listed and deleted without touching any other key.
pub async fn key_special_names<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let names = [".", "..", "...", "-", "_", "-rf", ".hidden", "trailing.", "a..b", "--", "._."];
    let sentinel = key("sentinel");
    set(&*store, &sentinel, &SecretValue::from("untouched"), &Metadata::new()).await;
    for name in names {
        let k = key(name);
        set(&*store, &k, &SecretValue::from(format!("value of {name}")), &Metadata::new()).await;
    }
    for name in names {
        let k = key(name);
        assert_eq!(
            must_get(&*store, &k).await.value.expose_secret(),
            format!("value of {name}"),
            "key {name:?}"
        );
        assert!(store.has(&k).await.expect("has"), "key {name:?}");
    }
    if caps(&*store).list {
        let mut expected: Vec<CredentialKey> = names.iter().map(|n| key(n)).collect();
        expected.push(sentinel.clone());
        expected.sort();
        assert_eq!(list_all(&*store, "", 100).await, expected);
    }
    for name in names {
        assert!(store.delete(&key(name)).await.expect("delete"), "delete {name:?}");
    }
    assert_eq!(must_get(&*store, &sentinel).await.value.expose_secret(), "untouched");
}

/// The empty key cannot be built.
pub async fn invalid_key_empty_rejected<F: StoreFactory + ?Sized>(_f: &F) {
    match CredentialKey::new("") {
        Err(Error::InvalidKey { reason: IdError::Empty, .. }) => {}
        other => panic!("expected InvalidKey(Empty), got {other:?}"),
    }
}

/// A 256-byte key cannot be built.
pub async fn invalid_key_too_long_rejected<F: StoreFactory + ?Sized>(_f: &F) {
    match CredentialKey::new("k".repeat(256)) {
        Err(Error::InvalidKey { reason: IdError::TooLong { len: 256 }, .. }) => {}
        other => panic!("expected InvalidKey(TooLong 256), got {other:?}"),
    }
}

/// Every class of bad character is rejected with the character and its
/// position, and nothing reaches the store.
pub async fn invalid_key_characters_rejected<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let cases: [(&str, char, usize); 14] = [
        ("a b", ' ', 1),
        ("a/b", '/', 1),
        ("..\\x", '\\', 2),
        ("ключ", 'к', 0),
        ("a\u{0}", '\u{0}', 1),
        ("a\nb", '\n', 1),
        ("%2e", '%', 0),
        ("a?b", '?', 1),
        ("a#b", '#', 1),
        ("a:b", ':', 1),
        ("a*b", '*', 1),
        ("tab\t", '\t', 3),
        ("é", 'é', 0),
        ("a+b", '+', 1),
    ];
    for (input, ch, index) in cases {
        match CredentialKey::new(input) {
            Err(Error::InvalidKey { reason: IdError::InvalidChar { ch: c, index: i }, .. }) => {
                assert_eq!((c, i), (ch, index), "for {input:?}");
            }
            other => panic!("expected InvalidChar for {input:?}, got {other:?}"),
        }
    }
    if caps(&*store).list {
        assert!(list_all(&*store, "", 100).await.is_empty());
    }
}

/// `Key` and `key` are two credentials.
pub async fn keys_are_case_sensitive<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    set(&*store, &key("Key"), &SecretValue::from("upper"), &Metadata::new()).await;
    set(&*store, &key("key"), &SecretValue::from("lower"), &Metadata::new()).await;
    assert_eq!(must_get(&*store, &key("Key")).await.value.expose_secret(), "upper");
    assert_eq!(must_get(&*store, &key("key")).await.value.expose_secret(), "lower");
    assert!(store.get(&key("KEY")).await.expect("get").is_none());
}

/// Overwriting keeps `created_at` and moves `updated_at` forward. Sleeps
/// past one second so that stores with second-resolution clocks can show it.
pub async fn created_at_kept_updated_at_advanced<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let k = key("timestamps");
    let first_out = store.set(&k, &SecretValue::from("one"), &Metadata::new()).await.expect("set");
    let first = must_get(&*store, &k).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second_out = store.set(&k, &SecretValue::from("two"), &Metadata::new()).await.expect("overwrite");
    let second = must_get(&*store, &k).await;
    assert_eq!(second.created_at, first.created_at, "created_at must be kept on overwrite");
    assert!(second.updated_at > first.updated_at, "updated_at must advance on overwrite");
    assert!(second.updated_at >= second.created_at);
    let near =
        |a: SystemTime, b: SystemTime| a.duration_since(b).or_else(|e| Ok::<_, ()>(e.duration())).unwrap();
    assert!(near(first_out.created_at, first.created_at) <= Duration::from_secs(1), "set and get disagree");
    assert!(
        near(second_out.created_at, first.created_at) <= Duration::from_secs(1),
        "overwrite reports created_at"
    );
    assert!(near(second_out.updated_at, second.updated_at) <= Duration::from_secs(1));
}

/// Timestamps are the wall-clock time of the write.
pub async fn timestamps_are_current<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let k = key("now");
    let slack = Duration::from_secs(5);
    let before = SystemTime::now() - slack;
    set(&*store, &k, &SecretValue::from("v"), &Metadata::new()).await;
    let after = SystemTime::now() + slack;
    let c = must_get(&*store, &k).await;
    assert!(c.created_at >= before && c.created_at <= after, "created_at {:?} is not now", c.created_at);
    assert!(c.updated_at >= c.created_at);
    assert!(c.updated_at <= after);
}

/// A deleted key can be set again at once, as a new credential.
pub async fn delete_then_recreate<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let k = key("phoenix");
    for round in 0..3 {
        let v = format!("life-{round}");
        let m = meta([("round", &*round.to_string())]);
        let out = store.set(&k, &SecretValue::new(v.clone()), &m).await.expect("set");
        assert!(out.created, "round {round}: a re-created key must report created");
        let c = must_get(&*store, &k).await;
        assert_eq!(c.value.expose_secret(), v);
        assert_eq!(c.metadata, m, "round {round}: no metadata may survive the delete");
        assert!(store.delete(&k).await.expect("delete"));
        assert!(!store.has(&k).await.expect("has"));
    }
}

/// An empty store lists nothing, with no cursor.
pub async fn list_empty_store<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    if !caps(&*store).list {
        return;
    }
    let page = store.list(&ListOptions::new()).await.expect("list");
    assert!(page.keys.is_empty());
    assert!(page.next_cursor.is_none());
}

/// Keys come back in ascending byte order, whatever the insertion order.
pub async fn list_sorted<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    if !caps(&*store).list {
        return;
    }
    let names = ["b", "a", "B", "A", "_x", "-x", ".x", "0", "9z", "a.b", "a-b", "a_b", "ab", "a", "zz", "Zz"];
    for n in names {
        set(&*store, &key(n), &SecretValue::from("v"), &Metadata::new()).await;
    }
    let mut expected: Vec<&str> = names.to_vec();
    expected.sort_unstable();
    expected.dedup();
    let got = list_all(&*store, "", 1000).await;
    assert_eq!(got.iter().map(CredentialKey::as_str).collect::<Vec<_>>(), expected);
}

/// A prefix returns exactly the keys that start with it.
pub async fn list_prefix_bounded<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    if !caps(&*store).list {
        return;
    }
    for n in ["ap", "app-c", "app.a", "app.b", "apple", "b.app", "APP.x"] {
        set(&*store, &key(n), &SecretValue::from("v"), &Metadata::new()).await;
    }
    let names = |v: Vec<CredentialKey>| v.into_iter().map(String::from).collect::<Vec<_>>();
    assert_eq!(names(list_all(&*store, "app.", 100).await), ["app.a", "app.b"]);
    assert_eq!(names(list_all(&*store, "app", 100).await), ["app-c", "app.a", "app.b", "apple"]);
    assert_eq!(names(list_all(&*store, "app.a", 100).await), ["app.a"]);
    assert!(list_all(&*store, "zzz", 100).await.is_empty());
    assert!(list_all(&*store, "app.aa", 100).await.is_empty());
}

/// Paging through more than 250 keys yields each exactly once, in order.
pub async fn list_paginated_over_250_keys<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    if !caps(&*store).list {
        return;
    }
    let store = &store;
    let keys: Vec<CredentialKey> = (0..260).map(|i| key(&format!("page-{i:04}"))).collect();
    // Written 16 at a time to keep remote backends quick.
    for chunk in keys.chunks(16) {
        futures::future::join_all(
            chunk
                .iter()
                .map(|k| async move { set(&**store, k, &SecretValue::from("v"), &Metadata::new()).await }),
        )
        .await;
    }
    set(&**store, &key("other"), &SecretValue::from("v"), &Metadata::new()).await;
    for page in [7, 100, MAX_PAGE_SIZE] {
        let got = list_all(&**store, "page-", page).await;
        let unique: BTreeSet<_> = got.iter().collect();
        assert_eq!(unique.len(), got.len(), "page size {page}: duplicates");
        assert_eq!(got, keys, "page size {page}: gaps or wrong order");
    }
    let first = store.list(&ListOptions::new()).await.expect("list");
    assert_eq!(first.keys.len(), credstore_core::DEFAULT_PAGE_SIZE);
    assert!(first.next_cursor.is_some());
}

/// Deleted keys are not listed.
pub async fn list_excludes_deleted<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    if !caps(&*store).list {
        return;
    }
    for i in 0..5 {
        set(&*store, &key(&format!("k{i}")), &SecretValue::from("v"), &Metadata::new()).await;
    }
    assert!(store.delete(&key("k1")).await.expect("delete"));
    assert!(store.delete(&key("k3")).await.expect("delete"));
    let got: Vec<String> = list_all(&*store, "", 100).await.into_iter().map(String::from).collect();
    assert_eq!(got, ["k0", "k2", "k4"]);
}

/// Bad list options are rejected before any I/O, naming the field.
pub async fn list_invalid_prefix_and_cursor_rejected<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    assert_invalid_input(&ListOptions::new().with_prefix("a/b").unwrap_err(), "prefix");
    assert_invalid_input(&ListOptions::new().with_prefix("x".repeat(256)).unwrap_err(), "prefix");
    assert_invalid_input(&ListOptions::new().with_limit(0).unwrap_err(), "limit");
    assert_invalid_input(&ListOptions::new().with_limit(MAX_PAGE_SIZE + 1).unwrap_err(), "limit");
    for bad in ["", "garbage", "c1zz", "c1", "c12f"] {
        assert_invalid_input(&ListCursor::parse(bad).unwrap_err(), "cursor");
    }
    let k = key("cursor-key");
    let cursor = ListCursor::after(&k);
    assert_eq!(ListCursor::parse(&cursor.to_string()).expect("round trip").start_after(), &k);
    if caps(&*store).list {
        let page = store.list(&ListOptions::new().with_cursor(Some(cursor))).await.expect("list");
        assert!(page.keys.is_empty());
    }
}

/// Two stores from the factory never see each other's keys.
pub async fn namespaces_isolated<F: StoreFactory + ?Sized>(f: &F) {
    let a = f.create().await;
    let b = f.create().await;
    let k = key("shared-name");
    set(&*a, &k, &SecretValue::from("in-a"), &meta([("from", "a")])).await;
    assert!(b.get(&k).await.expect("get").is_none(), "store b sees a's key");
    set(&*b, &k, &SecretValue::from("in-b"), &meta([("from", "b")])).await;
    assert_eq!(must_get(&*a, &k).await.value.expose_secret(), "in-a");
    assert_eq!(must_get(&*b, &k).await.value.expose_secret(), "in-b");
    assert!(a.delete(&k).await.expect("delete"));
    assert_eq!(must_get(&*b, &k).await.value.expose_secret(), "in-b", "delete in a removed b's key");
    set(&*a, &key("only-a"), &SecretValue::from("v"), &Metadata::new()).await;
    if caps(&*b).list {
        assert_eq!(list_all(&*b, "", 100).await, vec![k]);
    }
}

/// 32 concurrent writers on distinct keys all land.
pub async fn concurrent_writers_distinct_keys<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let k = key(&format!("writer-{i:02}"));
                store.set(&k, &SecretValue::new(format!("value-{i}")), &meta([("i", &*i.to_string())])).await
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        t.await.expect("task").unwrap_or_else(|e| panic!("writer {i} failed: {e}"));
    }
    for i in 0..32 {
        let c = must_get(&*store, &key(&format!("writer-{i:02}"))).await;
        assert_eq!(c.value.expose_secret(), format!("value-{i}"));
        assert_eq!(c.metadata.get("i"), Some(&*i.to_string()));
    }
    if caps(&*store).list {
        assert_eq!(list_all(&*store, "writer-", 100).await.len(), 32);
    }
}

/// Concurrent writers on one key all succeed and leave exactly one writer's
/// value with that writer's metadata.
pub async fn concurrent_writers_same_key<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let k = key("contended");
    let value_of = |i: usize| format!("{i:02}:").repeat(300);
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (store, k, v) = (Arc::clone(&store), k.clone(), value_of(i));
            tokio::spawn(async move {
                store.set(&k, &SecretValue::new(v), &meta([("writer", &*i.to_string())])).await
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        t.await.expect("task").unwrap_or_else(|e| panic!("writer {i} failed: {e}"));
    }
    let c = must_get(&*store, &k).await;
    let writer: usize = c.metadata.get("writer").expect("writer metadata").parse().expect("a writer index");
    assert!(c.value.expose_secret() == value_of(writer), "value and metadata come from different writers");
}

/// Readers racing a writer always see a whole value with its own metadata.
pub async fn concurrent_readers_and_writer<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let k = key("read-while-write");
    let value_of = |i: usize| format!("<{i}>").repeat(200);
    set(&*store, &k, &SecretValue::new(value_of(0)), &meta([("n", "0")])).await;
    let writer = {
        let (store, k) = (Arc::clone(&store), k.clone());
        tokio::spawn(async move {
            for i in 1..=10 {
                store
                    .set(&k, &SecretValue::new(value_of(i)), &meta([("n", &*i.to_string())]))
                    .await
                    .expect("set");
            }
        })
    };
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (store, k) = (Arc::clone(&store), k.clone());
            tokio::spawn(async move {
                for _ in 0..10 {
                    let c = store.get(&k).await.expect("get").expect("present throughout");
                    let n: usize = c.metadata.get("n").expect("n").parse().expect("number");
                    assert!(c.value.expose_secret() == value_of(n), "torn read: value and metadata disagree");
                }
            })
        })
        .collect();
    writer.await.expect("writer");
    for r in readers {
        r.await.expect("reader");
    }
}

/// A healthy store reports available with no reason.
pub async fn availability_when_healthy<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let a =
        tokio::time::timeout(UNREACHABLE_DEADLINE, store.check_availability()).await.expect("probe hangs");
    assert!(a.available, "healthy store reported unavailable: {:?}", a.reason);
    assert_eq!(a.reason, None);
}

async fn unreachable_store<F: StoreFactory + ?Sized>(f: &F) -> Option<Arc<dyn CredentialStore>> {
    let probe = f.create().await;
    if !caps(&*probe).can_be_unavailable {
        return None;
    }
    Some(
        f.unreachable()
            .await
            .expect("the store declares can_be_unavailable, so the factory must build an unreachable one"),
    )
}

/// An unreachable store says so, with a reason, within the deadline.
pub async fn unreachable_reports_unavailable<F: StoreFactory + ?Sized>(f: &F) {
    let Some(store) = unreachable_store(f).await else { return };
    let started = Instant::now();
    let a = tokio::time::timeout(UNREACHABLE_DEADLINE, store.check_availability())
        .await
        .expect("the availability probe of an unreachable store must not hang");
    assert!(!a.available, "unreachable store reported available");
    let reason = a.reason.expect("an unavailable store gives a reason");
    assert!(!reason.trim().is_empty(), "the reason is blank");
    assert!(started.elapsed() < UNREACHABLE_DEADLINE);
}

/// Operations on an unreachable store fail quickly with a retriable error
/// that does not contain the value.
pub async fn unreachable_operations_fail_fast_and_retriable<F: StoreFactory + ?Sized>(f: &F) {
    let Some(store) = unreachable_store(f).await else { return };
    let k = key("unreachable");
    let v = secret("unreachable");
    let deadline = UNREACHABLE_DEADLINE;
    let check = |op: &str, r: Result<Result<(), Error>, tokio::time::error::Elapsed>| {
        let err = r.unwrap_or_else(|_| panic!("{op} hung on an unreachable store")).expect_err(op);
        assert!(err.is_retriable(), "{op} on an unreachable store must be retriable, got {err:?}");
        assert_no_secret(op, &format!("{err} {err:?}"), &v);
    };
    check(
        "set",
        tokio::time::timeout(deadline, async { store.set(&k, &v, &Metadata::new()).await.map(drop) }).await,
    );
    check("get", tokio::time::timeout(deadline, async { store.get(&k).await.map(drop) }).await);
    check("has", tokio::time::timeout(deadline, async { store.has(&k).await.map(drop) }).await);
    check("delete", tokio::time::timeout(deadline, async { store.delete(&k).await.map(drop) }).await);
    if caps(&*store).list {
        check(
            "list",
            tokio::time::timeout(deadline, async { store.list(&ListOptions::new()).await.map(drop) }).await,
        );
    }
}

/// The value never shows in `Debug` of the credential, the outcome or the
/// store, nor in the errors of a rejected write.
pub async fn secret_absent_from_debug_and_errors<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let k = key("hidden");
    let v = secret("debug");
    let out = store.set(&k, &v, &meta([("label", "not secret")])).await.expect("set");
    let c = must_get(&*store, &k).await;
    assert_no_secret("Debug of Credential", &format!("{c:?}"), &v);
    assert_no_secret("Debug of SecretValue", &format!("{:?}", c.value), &v);
    assert_no_secret("Debug of SetOutcome", &format!("{out:?}"), &v);
    assert_no_secret("Debug of the store", &format!("{store:?}"), &v);
    assert!(format!("{c:?}").contains("hidden"), "Debug should still show the key");
    let big = SecretValue::new(v.expose_secret().repeat(MAX_VALUE_BYTES / v.len() + 1));
    let err = store.set(&k, &big, &Metadata::new()).await.expect_err("over limit");
    assert_no_secret("the over-limit error", &format!("{err} {err:?}"), &v);
}

/// Credentials, metadata, timestamps and deletions survive a reopen.
pub async fn persistence_across_reopen<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    if !caps(&*store).persistent {
        return;
    }
    let keep = [("p1", "persist one", meta([("a", "1")])), ("p2", "persist two ✓", Metadata::new())];
    for (k, v, m) in &keep {
        set(&*store, &key(k), &SecretValue::from(*v), m).await;
    }
    set(&*store, &key("gone"), &SecretValue::from("deleted"), &Metadata::new()).await;
    assert!(store.delete(&key("gone")).await.expect("delete"));
    let mut before = Vec::new();
    for (k, _, _) in &keep {
        before.push(must_get(&*store, &key(k)).await);
    }
    let id = store.id().clone();
    let reopened =
        f.reopen(store).await.expect("the store declares persistent, so the factory must reopen it");
    assert_eq!(reopened.id(), &id);
    for ((k, v, m), old) in keep.iter().zip(before) {
        let c = must_get(&*reopened, &key(k)).await;
        assert_eq!(c.value.expose_secret(), *v);
        assert_eq!(&c.metadata, m);
        assert_eq!(c.created_at, old.created_at, "created_at changed across reopen");
        assert_eq!(c.updated_at, old.updated_at, "updated_at changed across reopen");
    }
    assert!(!reopened.has(&key("gone")).await.expect("has"), "a deleted key came back");
}

/// `list: true` means list works; `list: false` means `Unsupported`.
pub async fn capabilities_list_honest<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let result = store.list(&ListOptions::new()).await;
    if caps(&*store).list {
        result.expect("the store declares list, so list must work");
    } else {
        assert!(matches!(result, Err(Error::Unsupported { .. })), "list: false must answer Unsupported");
    }
}

/// `metadata: true` means metadata round-trips; `false` means `Unsupported`
/// for non-empty metadata, with nothing stored.
pub async fn capabilities_metadata_honest<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let k = key("meta-honesty");
    let m = meta([("x", "y")]);
    let result = store.set(&k, &SecretValue::from("v"), &m).await;
    if caps(&*store).metadata {
        result.expect("set with metadata");
        assert_eq!(must_get(&*store, &k).await.metadata, m);
    } else {
        assert!(matches!(result, Err(Error::Unsupported { .. })), "metadata: false must answer Unsupported");
        assert!(!store.has(&k).await.expect("has"));
    }
}

/// `persistent: true` needs a factory that reopens; `false` must not keep data.
pub async fn capabilities_persistence_honest<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let persistent = caps(&*store).persistent;
    let k = key("persist-honesty");
    set(&*store, &k, &SecretValue::from("v"), &Metadata::new()).await;
    match f.reopen(store).await {
        Some(reopened) if persistent => {
            assert!(reopened.has(&k).await.expect("has"), "persistent store lost data")
        }
        Some(reopened) => {
            assert!(
                !reopened.has(&k).await.expect("has"),
                "the store keeps data but declares persistent: false"
            )
        }
        None => assert!(!persistent, "the store declares persistent, but the factory cannot reopen it"),
    }
}

/// `can_be_unavailable: false` means the probe always answers available and
/// the factory has no unreachable variant.
pub async fn capabilities_availability_honest<F: StoreFactory + ?Sized>(f: &F) {
    let store = f.create().await;
    let unreachable = f.unreachable().await;
    if caps(&*store).can_be_unavailable {
        assert!(
            unreachable.is_some(),
            "declares can_be_unavailable but the factory builds no unreachable store"
        );
    } else {
        assert!(
            unreachable.is_none(),
            "declares it is never unavailable, yet the factory builds an unreachable store"
        );
        for _ in 0..3 {
            assert!(store.check_availability().await.available);
        }
    }
}

/// A store reports a stable, valid id and a named kind.
pub async fn store_reports_id_and_kind<F: StoreFactory + ?Sized>(f: &F) {
    let a = f.create().await;
    let b = f.create().await;
    assert_eq!(a.id(), a.id());
    credstore_core::validate_id(a.id().as_str()).expect("the id is valid");
    assert!(!a.kind().as_str().is_empty());
    assert_eq!(a.kind(), b.kind());
    credstore_core::validate_id(a.kind().as_str()).expect("the kind is id-like");
}
