//! The store's tables in its schema, the SQL of every statement, and the
//! migration that creates them (see the crate docs, "Layout").

/// The schema version this crate writes, kept in `meta` as `schema_version`:
/// 2 since the history table (1: credstore-postgres 0.2).
pub(crate) const SCHEMA_VERSION: u32 = 2;
/// `meta.name` of the schema version (its value: the decimal digits).
pub(crate) const META_SCHEMA_VERSION: &str = "schema_version";
/// `meta.name` of the key record ([`credstore_seal::KeyRecord::to_bytes`]).
pub(crate) const META_KEY_RECORD: &str = "key_record";

/// The statements of one schema, its name quoted once here.
///
/// Parameters of the statements that keep the history in order (see the
/// crate docs, "History"): `cut` is the `superseded_ns` at or below which a
/// superseded version is past the age retention (`i64::MIN` without an age
/// limit); `off` is how many existing history rows of the key a write keeps
/// (`i64::MAX` without a count limit); `now` is the store clock's time in
/// nanoseconds.
#[derive(Debug)]
pub(crate) struct Sql {
    /// The schema, unquoted.
    pub(crate) schema: String,
    /// The change feed's channel: `credstore_` and the schema.
    pub(crate) channel: String,
    /// The advisory lock the migration holds: derived from the schema name.
    pub(crate) lock_id: i64,
    /// Creates what is missing of the current layout (a new schema).
    pub(crate) migrate: String,
    /// Layout 1 (0.2) to 2: the columns of expiry and history on
    /// `credentials`; the history table itself is made by `migrate`.
    pub(crate) upgrade_1_to_2: String,
    pub(crate) read_meta: String,
    pub(crate) insert_key_record: String,
    pub(crate) swap_key_record: String,
    /// `$1` ns, `$2` key.
    pub(crate) get: String,
    /// [`get`](Self::get)'s columns, then the key, of the keys of a batch:
    /// `$1` ns, `$2` the keys (`text[]`).
    pub(crate) get_many: String,
    /// `$1` ns, `$2` key.
    pub(crate) version: String,
    /// A block of [`crate::versions::BLOCK`] versions.
    pub(crate) next_versions: String,
    /// `$1` ns, `$2` key.
    pub(crate) read_for_write: String,
    /// A create, and the prune of the key's history (left by a delete):
    /// `$1` ns, `$2` key, `$3` version, `$4` created_ns = updated_ns, `$5`
    /// expires_ns, `$6` kind, `$7` key_version, `$8` format, `$9` nonce,
    /// `$10` sealed, `$11` hist_nonce, `$12` hist_sealed, `$13` cut, `$14`
    /// off.
    pub(crate) insert: String,
    /// An overwrite that moves the row overwritten to the history and
    /// prunes it, in one statement: `$1` ns, `$2` key, `$3` version, `$4`
    /// updated_ns, `$5` kind, `$6` key_version, `$7` format, `$8` nonce,
    /// `$9` sealed, `$10` the version overwritten, `$11` created_ns, `$12`
    /// expires_ns, `$13` hist_nonce, `$14` hist_sealed, `$15` the time the
    /// row overwritten must not have expired by (`i64::MIN` to overwrite an
    /// expired row), `$16` superseded_ns, `$17` whether the row overwritten
    /// is kept in the history, `$18` cut, `$19` off.
    pub(crate) update: String,
    /// `$1` ns, `$2` key, `$3` superseded_ns, `$4` cut, `$5` off, `$6`
    /// whether the deleted row is kept in the history.
    pub(crate) delete: String,
    /// `$1` ns, `$2` after, `$3` prefix, `$4` end, `$5` limit, `$6` now.
    pub(crate) list: String,
    /// `$1` ns, `$2` key, `$3` max_versions, `$4` cut, `$5` version.
    pub(crate) get_version: String,
    /// `$1` ns, `$2` key, `$3` max_versions, `$4` cut, `$5` cursor (or
    /// NULL), `$6` limit.
    pub(crate) list_versions: String,
    /// `$1` ns, `$2` key: the first statement of a purge of the key.
    pub(crate) purge_key_current: String,
    /// `$1` ns, `$2` key: the second, in the same transaction, so that it
    /// sees a history row a write racing the first one moved there.
    pub(crate) purge_key_history: String,
    /// `$1` ns, `$2` key, `$3` version, `$4` now.
    pub(crate) purge_version: String,
}

/// FNV-1a, 64 bits: the same lock id in every process and every version.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The columns of a history row, in the order of the statements that copy one.
const HISTORY_COLUMNS: &str =
    "ns, key, version, seq, created_ns, updated_ns, expires_ns, superseded_ns, deleted, kind, key_version, \
     format, nonce, sealed";

impl Sql {
    /// The statements of `schema`, a name [`crate::config::check_schema`]
    /// accepted (so quoting it needs no escape).
    pub(crate) fn new(schema: &str) -> Self {
        let s = format!("\"{schema}\"");
        let c = format!("{s}.credentials");
        let h = format!("{s}.history");
        let m = format!("{s}.meta");
        let max = i64::MAX;
        // Deletes the key's history rows past the retention, among those
        // the statement's snapshot sees: superseded at or before `cut`, or
        // older than the `off` newest.
        let prune = |cut: &str, off: &str| {
            format!(
                "(superseded_ns <= {cut} OR (seq, updated_ns, version) <= (SELECT seq, updated_ns, version \
                 FROM {h} WHERE ns = $1 AND key = $2 ORDER BY seq DESC, updated_ns DESC, version DESC \
                 OFFSET {off} LIMIT 1))"
            )
        };
        // Every kept version of the key, newest first (`rank` 1): the
        // current row then the history, within the retention.
        let kept = format!(
            "WITH v AS (
                 SELECT true AS cur, version, seq, created_ns, updated_ns, expires_ns, NULL::bigint AS superseded_ns,
                        false AS deleted, kind, key_version, format, nonce, sealed
                 FROM {c} WHERE ns = $1 AND key = $2
                 UNION ALL
                 SELECT false, version, seq, created_ns, updated_ns, expires_ns, superseded_ns, deleted, kind,
                        key_version, format, nonce, sealed
                 FROM {h} WHERE ns = $1 AND key = $2),
             r AS (SELECT *, row_number() OVER (ORDER BY cur DESC, seq DESC, updated_ns DESC, version DESC) AS rank
                   FROM v),
             kept AS (SELECT * FROM r WHERE rank <= $3::bigint AND (cur OR superseded_ns > $4::bigint))"
        );
        let kept_columns =
            "cur, version, created_ns, updated_ns, expires_ns, deleted, kind, key_version, format, nonce, sealed";
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
                     seq bigint NOT NULL DEFAULT 0,
                     expires_ns bigint,
                     hist_version bigint,
                     hist_nonce bytea,
                     hist_sealed bytea,
                     PRIMARY KEY (ns, key));
                 CREATE TABLE IF NOT EXISTS {h} (
                     ns text COLLATE \"C\" NOT NULL,
                     key text COLLATE \"C\" NOT NULL,
                     version bigint NOT NULL,
                     seq bigint NOT NULL,
                     created_ns bigint NOT NULL,
                     updated_ns bigint NOT NULL,
                     expires_ns bigint,
                     superseded_ns bigint NOT NULL,
                     deleted boolean NOT NULL,
                     kind smallint NOT NULL,
                     key_version integer NOT NULL,
                     format smallint NOT NULL,
                     nonce bytea NOT NULL,
                     sealed bytea NOT NULL,
                     PRIMARY KEY (ns, key, version));
                 CREATE SEQUENCE IF NOT EXISTS {s}.versions AS bigint;
                 INSERT INTO {m} (name, value) VALUES ('{META_SCHEMA_VERSION}', '{SCHEMA_VERSION}'::bytea)
                     ON CONFLICT (name) DO NOTHING;"
            ),
            upgrade_1_to_2: format!(
                "ALTER TABLE {c}
                     ADD COLUMN IF NOT EXISTS seq bigint NOT NULL DEFAULT 0,
                     ADD COLUMN IF NOT EXISTS expires_ns bigint,
                     ADD COLUMN IF NOT EXISTS hist_version bigint,
                     ADD COLUMN IF NOT EXISTS hist_nonce bytea,
                     ADD COLUMN IF NOT EXISTS hist_sealed bytea;
                 UPDATE {m} SET value = '2'::bytea WHERE name = '{META_SCHEMA_VERSION}' AND value = '1'::bytea;"
            ),
            read_meta: format!("SELECT name, value FROM {m} WHERE name IN ('{META_SCHEMA_VERSION}', '{META_KEY_RECORD}')"),
            insert_key_record: format!("INSERT INTO {m} (name, value) VALUES ('{META_KEY_RECORD}', $1)"),
            swap_key_record: format!("UPDATE {m} SET value = $1 WHERE name = '{META_KEY_RECORD}' AND value = $2"),
            get: format!(
                "SELECT version, created_ns, updated_ns, kind, key_version, format, nonce, sealed, expires_ns FROM {c} \
                 WHERE ns = $1 AND key = $2"
            ),
            get_many: format!(
                "SELECT version, created_ns, updated_ns, kind, key_version, format, nonce, sealed, expires_ns, key \
                 FROM {c} WHERE ns = $1 AND key = ANY($2)"
            ),
            version: format!("SELECT version, expires_ns FROM {c} WHERE ns = $1 AND key = $2"),
            next_versions: format!(
                "SELECT nextval('{s}.versions') FROM generate_series(1, {})",
                crate::versions::BLOCK
            ),
            read_for_write: format!("SELECT created_ns, version, expires_ns FROM {c} WHERE ns = $1 AND key = $2"),
            insert: format!(
                "WITH i AS (
                     INSERT INTO {c} (ns, key, version, seq, created_ns, updated_ns, expires_ns, kind, key_version,
                                      format, nonce, sealed, hist_version, hist_nonce, hist_sealed)
                     VALUES ($1, $2, $3, coalesce((SELECT max(seq) FROM {h} WHERE ns = $1 AND key = $2), 0) + 1,
                             $4, $4, $5, $6, $7, $8, $9, $10, $3, $11, $12)
                     ON CONFLICT (ns, key) DO NOTHING RETURNING 1),
                 p AS (DELETE FROM {h} WHERE ns = $1 AND key = $2 AND EXISTS (SELECT 1 FROM i) AND {})
                 SELECT count(*) FROM i",
                prune("$13", "$14")
            ),
            update: format!(
                "WITH o AS (
                     SELECT version, seq, created_ns, updated_ns, expires_ns, kind, key_version, format,
                            hist_version, hist_nonce, hist_sealed
                     FROM {c} WHERE ns = $1 AND key = $2 AND version = $10),
                 u AS (
                     UPDATE {c} SET version = $3, seq = seq + 1, created_ns = $11, updated_ns = $4,
                            expires_ns = $12, kind = $5, key_version = $6, format = $7, nonce = $8, sealed = $9,
                            hist_version = $3, hist_nonce = $13, hist_sealed = $14
                     WHERE ns = $1 AND key = $2 AND version = $10 AND coalesce(expires_ns, {max}) > $15
                     RETURNING 1),
                 m AS (
                     INSERT INTO {h} ({HISTORY_COLUMNS})
                     SELECT $1, $2, version, seq, created_ns, updated_ns, expires_ns, $16, false, kind,
                            key_version, format, hist_nonce, hist_sealed
                     FROM o WHERE $17::boolean AND EXISTS (SELECT 1 FROM u) AND hist_version = version
                     ON CONFLICT (ns, key, version) DO NOTHING),
                 p AS (DELETE FROM {h} WHERE ns = $1 AND key = $2 AND EXISTS (SELECT 1 FROM u) AND {})
                 SELECT count(*) FROM u",
                prune("$18", "$19")
            ),
            delete: format!(
                "WITH d AS (DELETE FROM {c} WHERE ns = $1 AND key = $2 RETURNING *),
                 m AS (
                     INSERT INTO {h} ({HISTORY_COLUMNS})
                     SELECT $1, $2, version, seq, created_ns, updated_ns, expires_ns, $3, true, kind,
                            key_version, format, hist_nonce, hist_sealed
                     FROM d WHERE $6::boolean AND hist_version = version
                     ON CONFLICT (ns, key, version) DO NOTHING),
                 p AS (DELETE FROM {h} WHERE ns = $1 AND key = $2 AND EXISTS (SELECT 1 FROM d) AND {})
                 SELECT version, expires_ns FROM d",
                prune("$4", "$5")
            ),
            list: format!(
                "SELECT key FROM {c} WHERE ns = $1 AND key > $2 AND key >= $3 AND key < $4 \
                 AND coalesce(expires_ns, {max}) > $6 ORDER BY key LIMIT $5"
            ),
            get_version: format!("{kept} SELECT {kept_columns} FROM kept WHERE version = $5::bigint"),
            list_versions: format!(
                "{kept} SELECT {kept_columns} FROM kept
                 WHERE rank > (CASE WHEN $5::bigint IS NULL THEN 0
                               ELSE (SELECT rank FROM kept WHERE version = $5::bigint) END)
                 ORDER BY rank LIMIT $6::bigint"
            ),
            purge_key_current: format!("DELETE FROM {c} WHERE ns = $1 AND key = $2"),
            purge_key_history: format!("DELETE FROM {h} WHERE ns = $1 AND key = $2"),
            purge_version: format!(
                "WITH cur AS (SELECT version, expires_ns FROM {c} WHERE ns = $1 AND key = $2),
                      dh AS (DELETE FROM {h} WHERE ns = $1 AND key = $2 AND version = $3
                             AND NOT EXISTS (SELECT 1 FROM cur WHERE version = $3 AND coalesce(expires_ns, {max}) > $4)
                             RETURNING superseded_ns),
                      dc AS (DELETE FROM {c} WHERE ns = $1 AND key = $2 AND version = $3
                             AND coalesce(expires_ns, {max}) <= $4 RETURNING 1)
                 SELECT (SELECT version FROM cur), (SELECT expires_ns FROM cur),
                        (SELECT superseded_ns FROM dh), (SELECT count(*) FROM dc)"
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
