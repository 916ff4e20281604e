//! The conformance cases, by topic. Each case is a public async function
//! that takes the factory and panics with a clear message when the store
//! misbehaves; [`CASES`] is the one registry of them, with the capability
//! each needs.
//!
//! Every case function is re-exported here, so `cases::round_trip(&factory)`
//! runs one case directly.

use std::sync::Arc;

use std::time::{Duration, SystemTime};

use credstore_core::{
    Capabilities, Clock as _, Credential, CredentialKey, CredentialStore, CredentialStoreExt, Error,
    ListOptions, ManualClock, Metadata, SecretValue, SetOutcome, Version, VersionInfo, VersionListOptions,
    VersionState,
};

pub(crate) use crate::fixtures::{key, meta, ns};
use crate::{unique_name, Case, CaseFuture, Needs, StoreFactory};

pub mod availability;
pub mod basic;
pub mod batch;
pub mod binary;
pub mod capabilities;
pub mod changes;
pub mod concurrency;
pub mod conditional;
pub mod expiry;
pub mod history;
pub mod keys;
pub mod list;
pub mod metadata;
pub mod namespaces;
pub mod persistence;
pub mod purge;
pub mod recovery;
pub mod secrecy;
pub mod time;
pub mod values;
pub mod versions;

pub use availability::*;
pub use basic::*;
pub use batch::*;
pub use binary::*;
pub use capabilities::*;
pub use changes::*;
pub use concurrency::*;
pub use conditional::*;
pub use expiry::*;
pub use history::*;
pub use keys::*;
pub use list::*;
pub use metadata::*;
pub use namespaces::*;
pub use persistence::*;
pub use purge::*;
pub use recovery::*;
pub use secrecy::*;
pub use time::*;
pub use values::*;
pub use versions::*;

/// Builds [`CASES`] from `module::case => Need` entries: the one list of
/// case names. A unit test checks that every public case function of the
/// modules above is in it.
macro_rules! registry {
    ($($module:ident :: $case:ident => $needs:ident),+ $(,)?) => {
        /// Every conformance case, in the order the suite lists them, with
        /// the capability each needs.
        pub static CASES: &[Case] = &[$(
            Case {
                name: stringify!($case),
                needs: Needs::$needs,
                run: {
                    fn run<'a>(factory: &'a dyn StoreFactory) -> CaseFuture<'a> {
                        Box::pin($module::$case(factory))
                    }
                    run
                },
            }
        ),+];
    };
}

registry! {
    basic::round_trip => Nothing,
    basic::overwrite_replaces_value_and_metadata => Nothing,
    basic::missing_key_is_none => Nothing,
    basic::delete_returns_true_then_false => Nothing,
    basic::delete_missing_key_returns_false => Nothing,
    basic::has_reflects_presence => Nothing,
    basic::has_and_get_do_not_create => Nothing,
    basic::delete_then_recreate => Nothing,
    basic::store_reports_id_and_kind => Nothing,
    values::empty_value_round_trip => Nothing,
    values::largest_value_round_trip => Nothing,
    values::value_over_limit_rejected_and_nothing_stored => Nothing,
    values::value_over_limit_leaves_existing_value => Nothing,
    values::value_with_special_characters => Nothing,
    values::text_value_reads_back_as_text => Nothing,
    keys::key_of_one_byte => Nothing,
    keys::key_of_255_bytes => Nothing,
    keys::key_with_every_allowed_character => Nothing,
    keys::key_special_names => Nothing,
    keys::keys_are_case_sensitive => Nothing,
    metadata::metadata_round_trip => Metadata,
    metadata::metadata_empty => Nothing,
    metadata::metadata_unicode_values => Metadata,
    metadata::metadata_at_limits => Metadata,
    time::created_at_kept_updated_at_advanced => Nothing,
    time::timestamps_are_current => Nothing,
    list::list_empty_store => List,
    list::list_sorted => List,
    list::list_prefix_bounded => List,
    list::list_paginated_over_250_keys => List,
    list::list_excludes_deleted => List,
    list::list_cursor_past_the_end_is_empty => List,
    namespaces::stores_from_the_factory_are_isolated => Nothing,
    namespaces::namespace_handles_isolate_keys => Nothing,
    namespaces::namespace_handles_isolate_deletes => Nothing,
    namespaces::namespace_handles_isolate_listing => List,
    namespaces::handles_on_one_namespace_share_keys => Nothing,
    namespaces::nested_namespaces_join => Nothing,
    namespaces::nested_namespace_isolated_from_parent_and_root => Nothing,
    namespaces::listing_excludes_nested_namespaces => List,
    namespaces::namespace_reports_joined_namespace => Nothing,
    namespaces::empty_namespace_is_the_same_namespace => Nothing,
    namespaces::over_long_namespace_refused_before_io => Nothing,
    namespaces::namespace_handles_keep_id_kind_and_capabilities => Nothing,
    conditional::create_only_creates_when_absent => CreateOnly,
    conditional::create_only_fails_when_present_and_changes_nothing => CreateOnly,
    conditional::create_only_raced_by_16 => CreateOnly,
    conditional::create_after_delete_succeeds => CreateOnly,
    conditional::replace_at_current_version_succeeds => ReplaceIfVersion,
    conditional::replace_with_stale_version_fails_and_changes_nothing => ReplaceIfVersion,
    conditional::replace_missing_key_fails => ReplaceIfVersion,
    conditional::replace_raced_by_16 => ReplaceIfVersion,
    conditional::replace_with_version_from_before_delete_fails => ReplaceIfVersion,
    conditional::precondition_failed_is_not_retriable => ReplaceIfVersion,
    conditional::failed_conditional_write_applies_no_metadata => ReplaceIfVersion,
    versions::version_changes_on_every_write => Nothing,
    versions::version_from_set_matches_get => Nothing,
    versions::version_agrees_with_get => Nothing,
    versions::version_probe_is_usable_for_replace => ReplaceIfVersion,
    binary::binary_every_byte_value_round_trips => Binary,
    binary::binary_invalid_utf8_round_trips => Binary,
    binary::binary_value_is_not_text => Binary,
    binary::binary_largest_value_round_trips => Binary,
    binary::binary_value_over_limit_refused_and_nothing_stored => Binary,
    binary::binary_and_text_overwrite_each_other => Binary,
    concurrency::concurrent_writers_distinct_keys => Nothing,
    concurrency::concurrent_writers_same_key => Nothing,
    concurrency::concurrent_readers_and_writer => Nothing,
    availability::availability_when_healthy => Nothing,
    availability::unreachable_reports_unavailable => CanBeUnavailable,
    availability::unreachable_operations_fail_fast_and_retriable => CanBeUnavailable,
    availability::unreachable_store_refuses_bad_input_before_io => CanBeUnavailable,
    capabilities::capabilities_list_honest => Nothing,
    capabilities::capabilities_metadata_honest => Nothing,
    capabilities::capabilities_binary_honest => Nothing,
    capabilities::capabilities_create_only_honest => Nothing,
    capabilities::capabilities_replace_if_version_honest => Nothing,
    capabilities::capabilities_persistence_honest => Nothing,
    capabilities::capabilities_availability_honest => Nothing,
    capabilities::capabilities_change_feed_honest => Nothing,
    capabilities::capabilities_versions_honest => Nothing,
    capabilities::capabilities_recover_deleted_honest => Nothing,
    capabilities::capabilities_expiry_honest => Nothing,
    changes::feed_reports_a_write_with_its_key_and_the_set_version => ChangeFeed,
    changes::feed_reports_a_delete_with_no_version => ChangeFeed,
    changes::feed_reports_nothing_for_a_delete_of_a_missing_key => ChangeFeed,
    changes::feed_reports_nothing_for_a_refused_create => ChangeFeed,
    changes::feed_reports_nothing_for_a_refused_replace => ChangeFeed,
    changes::feed_of_a_namespace_reports_it_and_its_nested_namespaces_only => ChangeFeed,
    changes::feed_reports_every_one_of_20_writes_of_a_key_in_order => ChangeFeed,
    changes::feed_reports_every_change_to_every_subscriber => ChangeFeed,
    changes::feed_reports_a_change_made_through_a_second_store => ChangeFeed,
    changes::feed_events_never_show_the_value => ChangeFeed,
    changes::feed_reports_a_restore_with_its_new_version => VersionsAndChangeFeed,
    changes::feed_reports_a_purge_of_a_key_with_no_version => VersionsAndChangeFeed,
    history::list_versions_newest_first_with_states_times_and_metadata => Versions,
    history::get_version_reads_every_kept_version => Versions,
    history::get_version_of_an_unknown_version_is_none => Versions,
    history::list_versions_pages_walk_each_version_once => Versions,
    history::list_versions_of_a_never_written_key_is_empty => Versions,
    history::history_is_per_namespace => Versions,
    history::retention_max_versions_drops_the_oldest => SmallRetention,
    history::retention_max_age_drops_superseded_versions => AgeRetention,
    history::restore_writes_the_old_value_and_metadata_as_a_new_version => Versions,
    history::restore_under_a_racing_write_fails_and_changes_nothing => Versions,
    history::restore_of_an_unknown_version_is_version_not_found => Versions,
    recovery::delete_keeps_history_with_the_last_version_deleted => RecoverDeleted,
    recovery::restore_create_only_recovers_a_deleted_key => RecoverDeleted,
    recovery::delete_without_recover_deleted_leaves_no_versions => VersionsWithoutRecovery,
    recovery::recreate_after_delete_gets_a_new_created_at_and_an_unseen_version => Versions,
    purge::purge_key_leaves_nothing_readable_and_the_key_can_be_created_again => Versions,
    purge::purge_key_of_a_deleted_key_destroys_its_history => RecoverDeleted,
    purge::purge_version_removes_only_that_version => Versions,
    purge::purging_the_current_version_is_precondition_failed_and_changes_nothing => Versions,
    purge::purge_of_a_missing_key_returns_false => Nothing,
    purge::purge_of_an_unknown_version_returns_false => Versions,
    expiry::expiry_present_until_expires_at_and_absent_from_it => Expiry,
    expiry::expired_version_shows_expired_in_list_versions => ExpiryWithVersions,
    expiry::create_only_over_an_expired_key_succeeds => Expiry,
    expiry::replace_against_an_expired_key_fails_and_changes_nothing => Expiry,
    expiry::overwrite_without_expires_at_clears_the_expiry => Expiry,
    expiry::past_or_present_expires_at_is_refused_before_any_io => Expiry,
    persistence::persistence_across_reopen => PersistenceBeyondProcess,
    persistence::namespaces_persist_across_reopen => PersistenceBeyondProcess,
    secrecy::secret_absent_from_debug_and_errors => Nothing,
    batch::batch_answers_in_order_with_none_for_missing_and_repeats_answered_twice => Nothing,
    batch::batch_answers_none_for_a_deleted_key => Nothing,
    batch::batch_answers_none_for_an_expired_key => Expiry,
    batch::batch_sees_only_its_own_namespace => Nothing,
    batch::batch_of_no_keys_answers_empty => Nothing,
    batch::batch_over_the_limit_is_refused_before_any_io => Nothing,
    batch::batch_agrees_with_get_after_overwrites => Nothing,
}

// ---------------------------------------------------------------------------
// Helpers shared by the cases.

/// How long an unreachable store may take to answer its probe or fail an
/// operation.
pub const UNREACHABLE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

pub(crate) fn caps(store: &dyn CredentialStore) -> Capabilities {
    store.capabilities()
}

/// `m` when the store keeps metadata, empty metadata otherwise: for cases
/// about something else that should run on every store.
pub(crate) fn meta_if(store: &dyn CredentialStore, m: Metadata) -> Metadata {
    if caps(store).metadata {
        m
    } else {
        Metadata::new()
    }
}

/// A recognisable secret that appears nowhere else, to search output for.
pub(crate) fn secret(tag: &str) -> SecretValue {
    SecretValue::from(unique_name(&format!("SECRET-{tag}")))
}

/// The value as text, panicking with a clear message when it is not.
pub(crate) fn text(value: &SecretValue) -> &str {
    value.expose_str().unwrap_or_else(|e| panic!("a text value came back as binary: {e}"))
}

pub(crate) async fn set(
    store: &dyn CredentialStore,
    k: &CredentialKey,
    v: &SecretValue,
    m: &Metadata,
) -> SetOutcome {
    store.set(k, v, m).await.unwrap_or_else(|e| panic!("set {k} failed: {e}"))
}

pub(crate) async fn set_text(store: &dyn CredentialStore, k: &str, v: &str) -> SetOutcome {
    set(store, &key(k), &SecretValue::from(v), &Metadata::new()).await
}

pub(crate) async fn must_get(store: &dyn CredentialStore, k: &CredentialKey) -> Credential {
    store
        .get(k)
        .await
        .unwrap_or_else(|e| panic!("get {k} failed: {e}"))
        .unwrap_or_else(|| panic!("get {k}: expected a credential, got none"))
}

pub(crate) async fn get_text(store: &dyn CredentialStore, k: &str) -> String {
    text(&must_get(store, &key(k)).await.value).to_owned()
}

pub(crate) async fn absent(store: &dyn CredentialStore, k: &CredentialKey) -> bool {
    let got = store.get(k).await.unwrap_or_else(|e| panic!("get {k} failed: {e}"));
    let has = store.has(k).await.unwrap_or_else(|e| panic!("has {k} failed: {e}"));
    assert_eq!(got.is_none(), !has, "get and has disagree about {k}");
    got.is_none()
}

pub(crate) async fn list_all(store: &dyn CredentialStore, prefix: &str, page: usize) -> Vec<CredentialKey> {
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

pub(crate) fn names(keys: Vec<CredentialKey>) -> Vec<String> {
    keys.into_iter().map(String::from).collect()
}

pub(crate) fn assert_invalid_input(err: &Error, field: &str) {
    match err {
        Error::InvalidInput { field: f, .. } => {
            assert!(f.contains(field), "expected InvalidInput on {field}, got {err}")
        }
        other => panic!("expected InvalidInput on {field}, got {other:?}"),
    }
}

pub(crate) fn assert_precondition_failed(result: credstore_core::Result<SetOutcome>, what: &str) -> Error {
    match result {
        Err(e @ Error::PreconditionFailed { .. }) => {
            assert!(!e.is_retriable(), "{what}: PreconditionFailed must not be retriable");
            e
        }
        Err(other) => panic!("{what}: expected PreconditionFailed, got {other:?}"),
        Ok(out) => panic!("{what}: expected PreconditionFailed, but the write succeeded: {out:?}"),
    }
}

pub(crate) fn assert_unsupported<T: std::fmt::Debug>(result: credstore_core::Result<T>, what: &str) {
    match result {
        Err(Error::Unsupported { .. }) => {}
        other => panic!("{what}: the store declares it off, so it must answer Unsupported, got {other:?}"),
    }
}

pub(crate) fn assert_no_secret(what: &str, text: &str, secret: &SecretValue) {
    let needle = String::from_utf8_lossy(secret.expose_secret());
    assert!(!text.contains(needle.as_ref()), "{what} contains the secret value");
}

/// Asserts that a credential is exactly what an earlier read returned.
pub(crate) fn assert_unchanged(before: &Credential, after: &Credential, what: &str) {
    assert!(after.value == before.value, "{what}: the value changed");
    assert_eq!(after.metadata, before.metadata, "{what}: the metadata changed");
    assert_eq!(after.version, before.version, "{what}: the version changed");
    assert_eq!(after.created_at, before.created_at, "{what}: created_at changed");
    assert_eq!(after.updated_at, before.updated_at, "{what}: updated_at changed");
}

/// Runs `n` tasks at once, released together by a barrier, and returns
/// their results in task order.
pub(crate) async fn race<T, Fut>(n: usize, task: impl Fn(usize) -> Fut) -> Vec<T>
where
    T: Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let barrier = Arc::clone(&barrier);
            let fut = task(i);
            tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for (i, h) in handles.into_iter().enumerate() {
        out.push(h.await.unwrap_or_else(|e| panic!("task {i} panicked: {e}")));
    }
    out
}

/// Every kept version of `k`, newest first, walked `page` at a time; checks
/// each page's size and that the walk ends.
pub(crate) async fn all_versions(
    store: &dyn CredentialStore,
    k: &CredentialKey,
    page: usize,
) -> Vec<VersionInfo> {
    let mut opts = VersionListOptions::new().with_limit(page).expect("a valid page size");
    let mut out = Vec::new();
    for _ in 0..10_000 {
        let got =
            store.list_versions(k, &opts).await.unwrap_or_else(|e| panic!("list_versions {k} failed: {e}"));
        assert!(
            got.versions.len() <= page,
            "a page of {} versions exceeds the limit {page}",
            got.versions.len()
        );
        out.extend(got.versions);
        match got.next_cursor {
            Some(c) => opts = opts.after(Some(c)),
            None => return out,
        }
    }
    panic!("list_versions of {k} never ended");
}

/// The versions of `k` with their states, newest first, in one page.
pub(crate) async fn version_states(
    store: &dyn CredentialStore,
    k: &CredentialKey,
) -> Vec<(Version, VersionState)> {
    all_versions(store, k, credstore_core::MAX_PAGE_SIZE)
        .await
        .into_iter()
        .map(|v| (v.version, v.state))
        .collect()
}

/// `k` as it was at `v`, which the store must still keep.
pub(crate) async fn must_get_version(
    store: &dyn CredentialStore,
    k: &CredentialKey,
    v: &Version,
) -> Credential {
    store
        .get_version(k, v)
        .await
        .unwrap_or_else(|e| panic!("get_version {k} at {v} failed: {e}"))
        .unwrap_or_else(|| {
            panic!("get_version {k} at {v}: the store declares versions and keeps it, got none")
        })
}

/// How many of the newest `n` versions the store's retention keeps.
pub(crate) fn kept(store: &dyn CredentialStore, n: usize) -> usize {
    match caps(store).retention.max_versions {
        Some(max) => n.min(max as usize),
        None => n,
    }
}

/// A fresh store on a manual clock of its own, which starts at a whole
/// second (so that a backend keeping times to the second or millisecond
/// meets the boundaries the cases set exactly).
pub(crate) async fn on_clock(f: &dyn StoreFactory) -> (Arc<dyn CredentialStore>, ManualClock) {
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("after 1970");
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH + Duration::from_secs(now.as_secs()));
    let store = f.create_on_clock(Arc::new(clock.clone())).await.unwrap_or_else(|| {
        panic!("the factory built a store on a clock once, then create_on_clock returned None")
    });
    assert_eq!(store.info().now(), clock.now(), "the store built on a clock does not read the time from it");
    (store, clock)
}

/// The options to undo a write: replace at `current` where the store
/// declares replace-if-version writes, else an unconditional write.
pub(crate) fn at(store: &dyn CredentialStore, current: &Version) -> credstore_core::SetOptions {
    if caps(store).replace_if_version {
        credstore_core::SetOptions::replace(current.clone())
    } else {
        credstore_core::SetOptions::new()
    }
}

/// Asserts that `result` is [`Error::VersionNotFound`].
pub(crate) fn assert_version_not_found<T: std::fmt::Debug>(result: credstore_core::Result<T>, what: &str) {
    match result {
        Err(Error::VersionNotFound { .. }) => {}
        other => panic!("{what}: expected VersionNotFound, got {other:?}"),
    }
}

/// A version no key of `known` has had: the newest of three writes of the
/// key `other` (so that a store counting versions per key gives one past
/// `known`'s, and one counting for the whole store another number); `known`
/// has been written once.
pub(crate) async fn foreign_version(store: &dyn CredentialStore, known: &SetOutcome, other: &str) -> Version {
    let mut last = None;
    for i in 0..3 {
        last = Some(set_text(store, other, &format!("w{i}")).await.version);
    }
    let version = last.expect("three writes");
    assert_ne!(version, known.version, "two keys' writes returned one version");
    version
}

/// How far apart two times are, either way.
pub(crate) fn distance(a: SystemTime, b: SystemTime) -> Duration {
    a.duration_since(b).unwrap_or_else(|e| e.duration())
}

#[cfg(test)]
mod tests {
    use super::CASES;

    /// Every `pub async fn` of every file in `src/cases` is in the registry,
    /// once: a case cannot be written and then silently never run.
    #[test]
    fn every_case_function_is_registered_once() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cases");
        let mut sources = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("src/cases is readable") {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("mod.rs") {
                sources.push(std::fs::read_to_string(&path).expect("a readable case module"));
            }
        }
        assert!(sources.len() >= 10, "found only {} case modules in {}", sources.len(), dir.display());
        let mut defined: Vec<&str> = sources
            .iter()
            .flat_map(|s| s.lines())
            .filter_map(|l| l.strip_prefix("pub async fn "))
            .map(|l| l.split(['(', '<']).next().unwrap_or(l))
            .collect();
        defined.sort_unstable();
        let mut registered: Vec<&str> = CASES.iter().map(|c| c.name).collect();
        registered.sort_unstable();
        let before = registered.len();
        registered.dedup();
        assert_eq!(before, registered.len(), "a case is registered twice");
        assert_eq!(defined, registered, "case functions and the registry differ");
        assert!(CASES.len() >= 60, "{} cases", CASES.len());
    }
}
