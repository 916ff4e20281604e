//! What the data commands read and write, the same whether the store is
//! opened in the process or reached through a server.

use std::collections::BTreeMap;

use credstore_core::SecretValue;

/// A credential as the commands show it.
pub(crate) struct Entry {
    pub key: String,
    pub store_id: String,
    /// The value, when it was asked for.
    pub value: Option<SecretValue>,
    /// Whether the value is UTF-8 text.
    pub text: bool,
    pub version: String,
    pub created_at: String,
    pub updated_at: String,
    pub expires_at: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// What a write did.
pub(crate) struct Written {
    pub created: bool,
    pub version: String,
    pub created_at: String,
    /// Known for a store in the process; the API's answer has none.
    pub updated_at: Option<String>,
}
