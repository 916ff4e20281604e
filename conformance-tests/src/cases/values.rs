//! Text values: sizes, special characters, and the limit refused before I/O.

use credstore_core::{CredentialStoreExt, Metadata, SecretValue, MAX_VALUE_BYTES};

use super::{absent, assert_invalid_input, assert_unchanged, key, meta, meta_if, must_get, set, text};
use crate::StoreFactory;

/// The empty string is a value like any other.
pub async fn empty_value_round_trip(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("empty-value");
    let m = meta_if(&*store, meta([("note", "empty")]));
    set(&*store, &k, &SecretValue::from(""), &m).await;
    let c = must_get(&*store, &k).await;
    assert!(c.value.is_empty(), "expected the empty value, got {} bytes", c.value.len());
    assert!(c.value.is_text(), "the empty value must read back as text");
    assert_eq!(c.metadata, m);
    assert!(store.has(&k).await.expect("has"));
}

/// A text value of exactly `MAX_VALUE_BYTES` round-trips, ASCII and multi-byte.
pub async fn largest_value_round_trip(f: &dyn StoreFactory) {
    let store = f.create().await;
    let ascii: String = (0..MAX_VALUE_BYTES).map(|i| char::from(b'!' + (i % 90) as u8)).collect();
    let multi: String = "€".repeat(MAX_VALUE_BYTES / 3) + &"x".repeat(MAX_VALUE_BYTES % 3);
    for (name, value) in [("ascii", ascii), ("multibyte", multi)] {
        assert_eq!(value.len(), MAX_VALUE_BYTES);
        let k = key(&format!("largest-{name}"));
        let v = SecretValue::from(value);
        set(&*store, &k, &v, &Metadata::new()).await;
        let got = must_get(&*store, &k).await.value;
        assert!(got == v, "the {name} value changed ({} bytes back)", got.len());
        assert!(got.is_text(), "the {name} value came back as binary");
    }
}

/// One byte over the limit is refused as invalid input, not retriable, and
/// nothing is stored.
pub async fn value_over_limit_rejected_and_nothing_stored(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("too-big");
    let v = SecretValue::from("x".repeat(MAX_VALUE_BYTES + 1));
    let err = store.set(&k, &v, &Metadata::new()).await.expect_err("an over-limit value must be refused");
    assert_invalid_input(&err, "value");
    assert!(!err.is_retriable());
    assert!(absent(&*store, &k).await, "a refused value was stored");
    if store.capabilities().create_only {
        let err = store.create(&k, &v, &Metadata::new()).await.expect_err("over-limit create");
        assert_invalid_input(&err, "value");
        assert!(absent(&*store, &k).await, "a refused create stored the value");
    }
}

/// A refused overwrite leaves the stored value, metadata, version and times
/// as they were.
pub async fn value_over_limit_leaves_existing_value(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("keep-me");
    set(&*store, &k, &SecretValue::from("original"), &meta_if(&*store, meta([("v", "1")]))).await;
    let before = must_get(&*store, &k).await;
    let big = SecretValue::from("y".repeat(MAX_VALUE_BYTES + 1));
    let m2 = meta_if(&*store, meta([("v", "2")]));
    assert_invalid_input(&store.set(&k, &big, &m2).await.unwrap_err(), "value");
    if store.capabilities().replace_if_version {
        let err = store.replace(&k, &big, &m2, &before.version).await.unwrap_err();
        assert_invalid_input(&err, "value");
    }
    assert_unchanged(&before, &must_get(&*store, &k).await, "after a refused overwrite");
}

/// Values with control characters, quotes, NUL and unicode round-trip exactly.
pub async fn value_with_special_characters(f: &dyn StoreFactory) {
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
        "base64:looks-like-a-marker==",
    ];
    for (i, value) in values.iter().enumerate() {
        let k = key(&format!("special-{i}"));
        set(&*store, &k, &SecretValue::from(*value), &Metadata::new()).await;
        let got = must_get(&*store, &k).await;
        assert!(got.value.expose_secret() == value.as_bytes(), "value {i} changed in the round trip");
    }
}

/// A text value reads back as text (`is_text`), whether it was built from a
/// `String` or from UTF-8 bytes.
pub async fn text_value_reads_back_as_text(f: &dyn StoreFactory) {
    let store = f.create().await;
    for (name, value) in [
        ("from-str", SecretValue::from("plain text ✓")),
        ("from-utf8-bytes", SecretValue::from("bytes that are UTF-8 é".as_bytes().to_vec())),
    ] {
        assert!(value.is_text());
        let k = key(name);
        set(&*store, &k, &value, &Metadata::new()).await;
        let got = must_get(&*store, &k).await.value;
        assert!(got.is_text(), "{name}: a text value came back as binary");
        assert_eq!(text(&got), text(&value), "{name}: the text changed");
    }
}
