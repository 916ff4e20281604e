//! Hand-written baselines: what a user would write without credstore.

use std::collections::HashMap;

use tokio::sync::RwLock;

/// The memory baseline of issue 7: a `tokio::sync::RwLock<HashMap<String, String>>`.
#[derive(Debug, Default)]
pub struct MapStore {
    map: RwLock<HashMap<String, String>>,
}

impl MapStore {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the value of `key`.
    pub async fn get(&self, key: &str) -> Option<String> {
        self.map.read().await.get(key).cloned()
    }

    /// Inserts or replaces `key`.
    pub async fn set(&self, key: &str, value: &str) {
        self.map.write().await.insert(key.to_owned(), value.to_owned());
    }

    /// Whether `key` is present.
    pub async fn has(&self, key: &str) -> bool {
        self.map.read().await.contains_key(key)
    }
}
