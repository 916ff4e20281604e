//! Metadata round trips at the limits.

use credstore_core::{
    Metadata, SecretValue, MAX_METADATA_ENTRIES, MAX_METADATA_KEY_BYTES, MAX_METADATA_TOTAL_BYTES,
    MAX_METADATA_VALUE_BYTES,
};

use super::{key, meta, must_get, set};
use crate::StoreFactory;

/// Metadata with punctuation, spaces and quotes round-trips exactly.
pub async fn metadata_round_trip(f: &dyn StoreFactory) {
    let m = meta([
        ("owner", "payments team"),
        ("json-like", r#"{"a": [1, 2], "b": "c"}"#),
        ("quotes", r#"it's "quoted" \ back\slash"#),
        ("symbols", "=+:/@#%&*?!~`^|<>[]{}();,"),
        ("spaces", "  leading and trailing  "),
        ("empty", ""),
    ]);
    round_trips(f, "with-metadata", m).await;
}

/// Writes `m` under `name` on a fresh store and reads it back exactly.
async fn round_trips(f: &dyn StoreFactory, name: &str, m: Metadata) {
    let store = f.create().await;
    let k = key(name);
    set(&*store, &k, &SecretValue::from("v"), &m).await;
    assert_eq!(must_get(&*store, &k).await.metadata, m, "{name}");
}

/// Empty metadata round-trips as empty, on every store.
pub async fn metadata_empty(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("no-metadata");
    set(&*store, &k, &SecretValue::from("v"), &Metadata::new()).await;
    assert!(must_get(&*store, &k).await.metadata.is_empty());
}

/// Unicode metadata values round-trip exactly.
pub async fn metadata_unicode_values(f: &dyn StoreFactory) {
    let m = meta([
        ("ja", "日本語のメタデータ"),
        ("emoji", "🔑✓🚀 keys"),
        ("rtl", "שלום עולם"),
        ("combining", "e\u{301} n\u{303}"),
        ("astral", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢"),
    ]);
    round_trips(f, "unicode-metadata", m).await;
}

/// Metadata at every limit round-trips: the most entries, the longest key
/// with the longest multi-byte value, exactly the total budget.
pub async fn metadata_at_limits(f: &dyn StoreFactory) {
    let store = f.create().await;
    let mut many = Metadata::new();
    for i in 0..MAX_METADATA_ENTRIES {
        many.insert(format!("k{i:02}"), format!("v{i}")).unwrap();
    }
    let mut long = Metadata::new();
    long.insert("K".repeat(MAX_METADATA_KEY_BYTES), "é".repeat(MAX_METADATA_VALUE_BYTES / 2)).unwrap();
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
