//! Binary values: every byte value and invalid UTF-8 round-trip exactly.

use credstore_core::{CredentialStoreExt, Error, Metadata, SecretValue, MAX_VALUE_BYTES};

use super::{absent, assert_invalid_input, assert_unchanged, key, must_get, set, text};
use crate::StoreFactory;

fn every_byte() -> Vec<u8> {
    (0..=255u8).collect()
}

/// Byte strings that are not UTF-8, each a different way to be invalid.
fn invalid_utf8() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("bom-like", vec![0xff, 0xfe]),
        ("lone-continuation", vec![b'a', 0x80, b'b', 0xbf]),
        ("truncated-sequence", vec![b'x', 0xe2, 0x82]),
        ("overlong-slash", vec![0xc0, 0xaf]),
        ("surrogate", vec![0xed, 0xa0, 0x80]),
        ("past-unicode", vec![0xf4, 0x90, 0x80, 0x80]),
        ("nul-and-high", vec![0x00, 0xff, 0x00, 0xfe, 0x00]),
        ("text-then-garbage", b"looks like text \xfe\xed".to_vec()),
        ("single-ff", vec![0xff]),
    ]
}

async fn round_trip(store: &dyn credstore_core::CredentialStore, name: &str, bytes: Vec<u8>) {
    let k = key(&format!("bin-{name}"));
    let value = SecretValue::from(bytes.clone());
    let out = set(store, &k, &value, &Metadata::new()).await;
    let c = must_get(store, &k).await;
    assert_eq!(c.value.len(), bytes.len(), "{name}: the length changed");
    assert!(c.value.expose_secret() == bytes.as_slice(), "{name}: the bytes changed in the round trip");
    assert_eq!(c.value.is_text(), value.is_text(), "{name}: text-ness changed");
    assert_eq!(c.version, out.version);
}

/// A value holding every byte value 0..=255, forwards and backwards,
/// round-trips exactly.
pub async fn binary_every_byte_value_round_trips(f: &dyn StoreFactory) {
    let store = f.create().await;
    round_trip(&*store, "ascending", every_byte()).await;
    round_trip(&*store, "descending", every_byte().into_iter().rev().collect()).await;
    round_trip(&*store, "repeated", every_byte().repeat(16)).await;
}

/// Invalid UTF-8 of every kind (0xff 0xfe, lone continuation bytes,
/// truncated and overlong sequences, surrogates) round-trips exactly.
pub async fn binary_invalid_utf8_round_trips(f: &dyn StoreFactory) {
    let store = f.create().await;
    for (name, bytes) in invalid_utf8() {
        assert!(std::str::from_utf8(&bytes).is_err(), "{name} is UTF-8");
        round_trip(&*store, name, bytes).await;
    }
}

/// A binary value read back is not text: `is_text` is false and
/// `expose_str` is `Error::NotText` at the first invalid byte, never a
/// lossy conversion.
pub async fn binary_value_is_not_text(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("not-text");
    set(&*store, &k, &SecretValue::from(b"abc\xff\xfe".to_vec()), &Metadata::new()).await;
    let c = must_get(&*store, &k).await;
    assert!(!c.value.is_text(), "a binary value came back as text");
    match c.value.expose_str() {
        Err(Error::NotText { valid_up_to }) => assert_eq!(valid_up_to, 3),
        other => panic!("expose_str on a binary value must be NotText, got {other:?}"),
    }
    assert!(c.value.expose_secret() == b"abc\xff\xfe");
}

/// A binary value of exactly `MAX_VALUE_BYTES` round-trips.
pub async fn binary_largest_value_round_trips(f: &dyn StoreFactory) {
    let store = f.create().await;
    let bytes: Vec<u8> = (0..MAX_VALUE_BYTES).map(|i| (i * 7 + i / 256) as u8).collect();
    assert!(std::str::from_utf8(&bytes).is_err());
    round_trip(&*store, "largest", bytes).await;
}

/// A binary value one byte over the limit is refused as invalid input, and
/// neither creates a key nor changes an existing one.
pub async fn binary_value_over_limit_refused_and_nothing_stored(f: &dyn StoreFactory) {
    let store = f.create().await;
    let big = SecretValue::from(vec![0xffu8; MAX_VALUE_BYTES + 1]);
    let k = key("bin-too-big");
    let err = store.set(&k, &big, &Metadata::new()).await.expect_err("over-limit binary value");
    assert_invalid_input(&err, "value");
    assert!(absent(&*store, &k).await, "a refused binary value was stored");
    let kept = key("bin-kept");
    set(&*store, &kept, &SecretValue::from(vec![0xfe, 0x01]), &Metadata::new()).await;
    let before = must_get(&*store, &kept).await;
    assert_invalid_input(&store.set(&kept, &big, &Metadata::new()).await.unwrap_err(), "value");
    assert_unchanged(&before, &must_get(&*store, &kept).await, "after a refused binary overwrite");
}

/// A key can go from text to binary and back; each read gives the last
/// write's bytes and text-ness.
pub async fn binary_and_text_overwrite_each_other(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("shape-shifter");
    set(&*store, &k, &SecretValue::from("text first"), &Metadata::new()).await;
    set(&*store, &k, &SecretValue::from(vec![0x00, 0xff, 0x10]), &Metadata::new()).await;
    let c = must_get(&*store, &k).await;
    assert!(!c.value.is_text() && c.value.expose_secret() == [0x00, 0xff, 0x10]);
    set(&*store, &k, &SecretValue::from("text again"), &Metadata::new()).await;
    let c = must_get(&*store, &k).await;
    assert_eq!(text(&c.value), "text again");
}
