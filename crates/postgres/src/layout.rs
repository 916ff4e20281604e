//! The store's tables in its schema, the SQL of every statement, and the
//! migration that creates them (see the crate docs, "Layout").

/// The schema version this crate writes, kept in `meta` as `schema_version`.
pub(crate) const SCHEMA_VERSION: u32 = 1;
/// `meta.name` of the schema version (its value: the decimal digits).
pub(crate) const META_SCHEMA_VERSION: &str = "schema_version";
/// `meta.name` of the key record ([`credstore_seal::KeyRecord::to_bytes`]).
pub(crate) const META_KEY_RECORD: &str = "key_record";

/// The statements of one schema, its name quoted once here.
#[derive(Debug)]
pub(crate) struct Sql {
    /// The schema, unquoted.
    pub(crate) schema: String,
    /// The change feed's channel: `credstore_` and the schema.
    pub(crate) channel: String,
    /// The advisory lock the migration holds: derived from the schema name.
    pub(crate) lock_id: i64,
    pub(crate) migrate: String,
    pub(crate) read_meta: String,
    pub(crate) insert_key_record: String,
    pub(crate) swap_key_record: String,
    pub(crate) get: String,
    pub(crate) version: String,
    /// A block of [`crate::versions::BLOCK`] versions.
    pub(crate) next_versions: String,
    pub(crate) read_for_write: String,
    pub(crate) insert: String,
    pub(crate) update: String,
    pub(crate) delete: String,
    pub(crate) list: String,
}

/// FNV-1a, 64 bits: the same lock id in every process and every version.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

impl Sql {
    /// The statements of `schema`, a name [`crate::config::check_schema`]
    /// accepted (so quoting it needs no escape).
    pub(crate) fn new(schema: &str) -> Self {
        let s = format!("\"{schema}\"");
        let c = format!("{s}.credentials");
        let m = format!("{s}.meta");
        Self {
            schema: schema.to_owned(),
            channel: format!("credstore_{schema}"),
            lock_id: fnv1a(format!("credstore/migrate/{schema}").as_bytes()) as i64,
            migrate: format!(
                "CREATE SCHEMA IF NOT EXISTS {s};
                 CREATE TABLE IF NOT EXISTS {m} (name text PRIMARY KEY, value bytea NOT NULL);
                 CREATE TABLE IF NOT EXISTS {c} (
                     ns text COLLATE \"C\" NOT NULL,
                     key text COLLATE \"C\" NOT NULL,
                     version bigint NOT NULL,
                     created_ns bigint NOT NULL,
                     updated_ns bigint NOT NULL,
                     kind smallint NOT NULL,
                     key_version integer NOT NULL,
                     format smallint NOT NULL,
                     nonce bytea NOT NULL,
                     sealed bytea NOT NULL,
                     PRIMARY KEY (ns, key));
                 CREATE SEQUENCE IF NOT EXISTS {s}.versions AS bigint;
                 INSERT INTO {m} (name, value) VALUES ('{META_SCHEMA_VERSION}', '{SCHEMA_VERSION}'::bytea)
                     ON CONFLICT (name) DO NOTHING;"
            ),
            read_meta: format!("SELECT name, value FROM {m} WHERE name IN ('{META_SCHEMA_VERSION}', '{META_KEY_RECORD}')"),
            insert_key_record: format!("INSERT INTO {m} (name, value) VALUES ('{META_KEY_RECORD}', $1)"),
            swap_key_record: format!("UPDATE {m} SET value = $1 WHERE name = '{META_KEY_RECORD}' AND value = $2"),
            get: format!(
                "SELECT version, created_ns, updated_ns, kind, key_version, format, nonce, sealed FROM {c} \
                 WHERE ns = $1 AND key = $2"
            ),
            version: format!("SELECT version FROM {c} WHERE ns = $1 AND key = $2"),
            next_versions: format!(
                "SELECT nextval('{s}.versions') FROM generate_series(1, {})",
                crate::versions::BLOCK
            ),
            read_for_write: format!("SELECT created_ns, version FROM {c} WHERE ns = $1 AND key = $2"),
            insert: format!(
                "INSERT INTO {c} (ns, key, version, created_ns, updated_ns, kind, key_version, format, nonce, sealed) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (ns, key) DO NOTHING"
            ),
            update: format!(
                "UPDATE {c} SET version = $3, updated_ns = $4, kind = $5, key_version = $6, format = $7, \
                 nonce = $8, sealed = $9 WHERE ns = $1 AND key = $2 AND version = $10"
            ),
            delete: format!("DELETE FROM {c} WHERE ns = $1 AND key = $2 RETURNING version"),
            list: format!(
                "SELECT key FROM {c} WHERE ns = $1 AND key > $2 AND key >= $3 AND key < $4 ORDER BY key LIMIT $5"
            ),
        }
    }
}

/// The upper bound of the keys starting with `prefix`: the prefix with its
/// last byte one higher. Keys hold printable ASCII only (below 0x7f), so the
/// bound is still ASCII; the empty prefix gets a bound above every key.
pub(crate) fn prefix_end(prefix: &str) -> String {
    match prefix.as_bytes().last() {
        None => "\u{7f}".to_owned(),
        Some(&last) => {
            let mut end = prefix[..prefix.len() - 1].to_owned();
            end.push(char::from(last + 1));
            end
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_and_channel_are_derived_from_the_schema() {
        let a = Sql::new("team_a");
        assert_eq!(a.lock_id, Sql::new("team_a").lock_id);
        assert_ne!(a.lock_id, Sql::new("team_b").lock_id);
        assert_eq!(a.channel, "credstore_team_a");
        assert!(a.get.contains("\"team_a\".credentials"));
    }

    #[test]
    fn prefix_bounds_cover_exactly_the_prefixed_keys() {
        assert_eq!(prefix_end("db."), "db/");
        assert_eq!(prefix_end("a~"), "a\u{7f}");
        let end = prefix_end("");
        assert!("~~~" < end.as_str());
    }
}
