//! Validation of core's input types, once: what no value of these types can
//! hold never reaches a store, so the conformance suite does not repeat
//! these checks per backend.

use std::collections::BTreeMap;

use credstore_conformance::mock::MockStore;
use credstore_core::*;

fn assert_invalid_input(err: &Error, field: &str) {
    match err {
        Error::InvalidInput { field: f, .. } => {
            assert!(f.contains(field), "expected field {field}, got {err}")
        }
        other => panic!("expected InvalidInput on {field}, got {other:?}"),
    }
}

#[test]
fn empty_key_is_refused() {
    match CredentialKey::new("") {
        Err(Error::InvalidKey { kind: IdKind::CredentialKey, reason: IdError::Empty, .. }) => {}
        other => panic!("expected InvalidKey(Empty), got {other:?}"),
    }
}

#[test]
fn key_of_256_bytes_is_refused_and_255_accepted() {
    match CredentialKey::new("k".repeat(256)) {
        Err(Error::InvalidKey {
            kind: IdKind::CredentialKey, reason: IdError::TooLong { len: 256 }, ..
        }) => {}
        other => panic!("expected InvalidKey(TooLong 256), got {other:?}"),
    }
    assert!(CredentialKey::new("k".repeat(255)).is_ok());
}

#[test]
fn every_class_of_bad_key_character_is_named_with_its_position() {
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
            Err(Error::InvalidKey { kind, reason: IdError::InvalidChar { ch: c, index: i }, .. }) => {
                assert_eq!(kind, IdKind::CredentialKey);
                assert_eq!((c, i), (ch, index), "for {input:?}");
            }
            other => panic!("expected InvalidChar for {input:?}, got {other:?}"),
        }
    }
}

#[test]
fn store_ids_name_their_kind() {
    match StoreId::new("bad id") {
        Err(e @ Error::InvalidKey { kind: IdKind::StoreId, .. }) => {
            assert!(e.to_string().contains("store id"), "{e}");
            assert!(e.store().is_none());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn metadata_past_any_limit_cannot_be_built() {
    let mut m = Metadata::new();
    for i in 0..MAX_METADATA_ENTRIES {
        m.insert(format!("k{i}"), "v").unwrap();
    }
    assert_invalid_input(&m.insert("one-too-many", "v").unwrap_err(), "metadata");
    assert_eq!(m.len(), MAX_METADATA_ENTRIES, "a failed insert changed the metadata");

    let mut m = Metadata::new();
    assert_invalid_input(&m.insert("k".repeat(MAX_METADATA_KEY_BYTES + 1), "v").unwrap_err(), "metadata key");
    assert_invalid_input(&m.insert("bad key", "v").unwrap_err(), "metadata key");
    assert_invalid_input(&m.insert("", "v").unwrap_err(), "metadata key");
    assert_invalid_input(&m.insert("v", "x".repeat(MAX_METADATA_VALUE_BYTES + 1)).unwrap_err(), "metadata.v");
    assert_invalid_input(&m.insert("ctl", "bell\u{7}").unwrap_err(), "metadata.ctl");
    assert!(m.is_empty(), "failed inserts must leave metadata unchanged");

    let big: BTreeMap<String, String> =
        (0..4).map(|i| (format!("k{i}"), "x".repeat(MAX_METADATA_VALUE_BYTES))).collect();
    assert_invalid_input(&Metadata::try_from(big).unwrap_err(), "metadata");
    let err = serde_json::from_str::<Metadata>(r#"{"k": "line\nbreak"}"#).unwrap_err();
    assert!(err.to_string().contains("control character"), "{err}");
}

#[test]
fn list_options_are_validated() {
    assert_invalid_input(&ListOptions::new().with_prefix("a/b").unwrap_err(), "prefix");
    assert_invalid_input(&ListOptions::new().with_prefix("x".repeat(256)).unwrap_err(), "prefix");
    assert_invalid_input(&ListOptions::new().with_limit(0).unwrap_err(), "limit");
    assert_invalid_input(&ListOptions::new().with_limit(MAX_PAGE_SIZE + 1).unwrap_err(), "limit");
    assert!(ListOptions::new().with_prefix("").is_ok());
    assert!(ListOptions::new().with_limit(MAX_PAGE_SIZE).is_ok());
}

#[test]
fn cursors_parse_only_what_list_returned() {
    for bad in ["", "garbage", "c1zz", "c1", "c12f", "c1ff", "C161"] {
        assert_invalid_input(&ListCursor::parse(bad).unwrap_err(), "cursor");
    }
    let k = CredentialKey::new("cursor-key.v2").unwrap();
    let cursor = ListCursor::after(&k);
    assert_eq!(ListCursor::parse(&cursor.to_string()).expect("round trip").start_after(), &k);
    let longest = CredentialKey::new("z".repeat(MAX_ID_LEN)).unwrap();
    assert!(ListCursor::parse(&ListCursor::after(&longest).to_string()).is_ok());
}

#[test]
fn namespaces_are_validated_and_joined_under_one_cap() {
    for bad in ["a//b", "/a", "a/", "a/./b", "..", "a b", "ключ"] {
        match Namespace::new(bad) {
            Err(Error::InvalidNamespace { .. }) => {}
            other => panic!("{bad:?}: expected InvalidNamespace, got {other:?}"),
        }
    }
    let seg = Namespace::new("s".repeat(255)).unwrap();
    let two = seg.join(&seg).unwrap();
    assert_eq!(two.as_str().len(), 511);
    match two.join(&Namespace::new("x").unwrap()) {
        Err(Error::InvalidNamespace { reason: NamespaceError::TooLong { len: 513, max }, .. }) => {
            assert_eq!(max, MAX_NAMESPACE_LEN)
        }
        other => panic!("{other:?}"),
    }
    assert!(Namespace::new("").unwrap().is_root());
}

#[test]
fn versions_are_entity_tag_text() {
    for bad in ["", "with space", "quo\"te", "com,ma", "ü"] {
        assert_invalid_input(&Version::new(bad).unwrap_err(), "version");
    }
    assert_invalid_input(&Version::new("v".repeat(MAX_VERSION_LEN + 1)).unwrap_err(), "version");
    assert_eq!(Version::from_counter(42).as_str(), "42");
}

#[test]
fn binary_values_are_not_text_and_say_where() {
    let v = SecretValue::from(vec![b'o', b'k', 0xff, 0xfe]);
    assert!(!v.is_text());
    assert!(matches!(v.expose_str(), Err(Error::NotText { valid_up_to: 2 })));
    assert!(SecretValue::from(vec![0xc0, 0xaf]).expose_str().is_err(), "overlong encodings are not text");
    assert!(SecretValue::from(vec![0xed, 0xa0, 0x80]).expose_str().is_err(), "surrogates are not text");
    assert!(SecretValue::from("é".as_bytes()).is_text());
}

#[test]
fn value_limit_is_the_same_for_text_and_bytes() {
    assert!(check_value(&SecretValue::from("x".repeat(MAX_VALUE_BYTES))).is_ok());
    assert!(check_value(&SecretValue::from(vec![0xff; MAX_VALUE_BYTES])).is_ok());
    assert_invalid_input(
        &check_value(&SecretValue::from("s".repeat(MAX_VALUE_BYTES + 1))).unwrap_err(),
        "value",
    );
    let err = check_value(&SecretValue::from(vec![0xff; MAX_VALUE_BYTES + 1])).unwrap_err();
    assert_invalid_input(&err, "value");
    assert!(err.to_string().contains(&MAX_VALUE_BYTES.to_string()), "{err}");
}

#[test]
fn write_requests_refuse_what_the_store_declares_off() {
    let id = StoreId::new("limited").unwrap();
    let off = Capabilities::full()
        .with_binary(false)
        .with_metadata(false)
        .with_create_only(false)
        .with_replace_if_version(false);
    let store = MockStore::new(id.clone()).with_capabilities(off);
    let key = CredentialKey::new("k").unwrap();
    let text = SecretValue::from("v");
    let none = Metadata::new();
    let some = Metadata::try_from([("a", "b")]).unwrap();
    let upsert = SetOptions::new();
    let check = |value: &SecretValue, metadata: &Metadata, options: &SetOptions| {
        WriteRequest::new(store.info(), &key, value, metadata, options).map(|_| ())
    };
    assert!(check(&text, &none, &upsert).is_ok());
    let unsupported = |r: Result<()>, what: &str| match r {
        Err(Error::Unsupported { store, .. }) => assert_eq!(store, id, "{what}"),
        other => panic!("{what}: {other:?}"),
    };
    unsupported(check(&SecretValue::from(vec![0xff]), &none, &upsert), "binary");
    unsupported(check(&text, &some, &upsert), "metadata");
    unsupported(check(&text, &none, &SetOptions::create_only()), "create-only");
    unsupported(check(&text, &none, &SetOptions::replace(Version::from_counter(1))), "replace");
    // The size is checked first, whatever else is off, and the error names
    // the key and the store.
    let big = SecretValue::from(vec![0xff; MAX_VALUE_BYTES + 1]);
    let err = check(&big, &some, &SetOptions::create_only()).unwrap_err();
    assert_invalid_input(&err, "value");
    assert!(err.to_string().contains("key 'k'") && err.to_string().contains("store 'limited'"), "{err}");
    // Everything passes on a store that declares everything.
    let full = MockStore::new(id).with_capabilities(Capabilities::full());
    let replace = SetOptions::replace(Version::from_counter(1));
    assert!(WriteRequest::new(full.info(), &key, &SecretValue::from(vec![0xff]), &some, &replace).is_ok());
}

#[tokio::test]
async fn a_refused_write_never_reaches_the_store() {
    use credstore_conformance::mock::Op;
    let store = MockStore::new(StoreId::new("limited").unwrap())
        .with_capabilities(Capabilities::full().with_binary(false).with_create_only(false));
    let key = CredentialKey::new("k").unwrap();
    let refused = [
        store.set(&key, &SecretValue::from(vec![0xff]), &Metadata::new()).await,
        store.create(&key, &SecretValue::from("v"), &Metadata::new()).await,
        store.set(&key, &SecretValue::from(vec![b'x'; MAX_VALUE_BYTES + 1]), &Metadata::new()).await,
    ];
    assert!(refused.iter().all(Result::is_err), "{refused:?}");
    assert_eq!(store.calls(Op::Set), 0, "a write refused by its check reaches the store");
    store.set(&key, &SecretValue::from("v"), &Metadata::new()).await.unwrap();
    assert_eq!(store.calls(Op::Set), 1);
}

#[test]
fn an_errors_debug_names_its_variant_and_says_its_message() {
    let err = CredentialKey::new("my key!").unwrap_err();
    let debug = format!("{err:?}");
    assert!(debug.starts_with("InvalidKey: invalid credential key"), "{debug}");
    assert!(debug.contains("my key!"), "{debug}");
    let with_source = Error::unavailable(&StoreId::new("s").unwrap(), "down")
        .with_source(std::io::Error::other("connection refused"));
    assert_eq!(
        format!("{with_source:?}"),
        "Unavailable: credential store 's' is unavailable: down: connection refused"
    );
}
