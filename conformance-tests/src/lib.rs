//! The conformance suite for credstore backends.
//!
//! Every backend in this workspace passes it, and so should yours. Add this
//! crate as a dev-dependency, implement [`StoreFactory`] for your backend, and
//! expand [`conformance_suite!`] in an integration test: you get one named
//! `#[tokio::test]` per case in [`cases`].
//!
//! ```
//! use std::sync::Arc;
//! use credstore_conformance::{conformance_suite, StoreFactory};
//! use credstore_core::{CredentialStore, StoreId};
//!
//! struct Factory;
//!
//! #[credstore_core::async_trait]
//! impl StoreFactory for Factory {
//!     async fn create(&self) -> Arc<dyn CredentialStore> {
//!         let id = StoreId::new(credstore_conformance::unique_name("mem")).unwrap();
//!         Arc::new(credstore_memory::MemoryStore::new(id))
//!     }
//! }
//!
//! // In tests/my_backend.rs; `Some(..)` because a fixture may skip (see `servers`).
//! conformance_suite!(Some(Factory));
//! # fn main() {}
//! ```
//!
//! Optional behaviour is gated by the store's
//! [`Capabilities`](credstore_core::Capabilities): the persistence cases need
//! [`StoreFactory::reopen`], the unavailability cases need
//! [`StoreFactory::unreachable`]. The `capabilities_*` cases check that the
//! declaration is honest in both directions.

#![warn(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use credstore_core::CredentialStore;

pub mod cases;
pub mod servers;

pub use async_trait::async_trait;

/// Makes the stores the cases run against.
#[async_trait]
pub trait StoreFactory: Send + Sync {
    /// A fresh, empty store in a namespace of its own. Where
    /// the backend can hold several namespaces (one database file, one
    /// server), stores from separate calls should share it, so the isolation
    /// case tests something real.
    async fn create(&self) -> Arc<dyn CredentialStore>;

    /// A new instance over the same storage and namespace as `store`, as
    /// after a process restart: `store` is dropped first by the caller when
    /// it holds the only reference. Must return `Some` when the store declares
    /// `persistent`.
    async fn reopen(&self, store: Arc<dyn CredentialStore>) -> Option<Arc<dyn CredentialStore>> {
        drop(store);
        None
    }

    /// A store whose backend cannot be reached: a closed port, an unusable
    /// path. Its probe must answer within a few seconds. Must return `Some`
    /// when the stores declare `can_be_unavailable`.
    async fn unreachable(&self) -> Option<Arc<dyn CredentialStore>> {
        None
    }
}

/// A name unique within this process and across processes: `{prefix}-{pid}-{n}-{nanos}`.
/// Valid as a store id, key prefix or namespace.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{}-{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Expands to one `#[tokio::test]` per conformance case.
///
/// `$factory` is an expression of type `Option<impl StoreFactory>`, evaluated
/// inside each test's runtime; `None` means the backend's fixture skipped
/// (it has already said so loudly, and under `CI=true` it panics instead).
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::__cases!(
            $factory;
            round_trip,
            overwrite_replaces_value_and_metadata,
            missing_key_is_none,
            delete_returns_true_then_false,
            delete_missing_key_returns_false,
            has_reflects_presence,
            has_and_get_do_not_create,
            metadata_round_trip,
            metadata_empty,
            metadata_unicode_values,
            metadata_at_limits,
            metadata_over_limits_rejected_before_io,
            empty_value_round_trip,
            largest_value_round_trip,
            value_over_limit_rejected_and_nothing_stored,
            value_over_limit_leaves_existing_value,
            value_with_special_characters,
            key_of_one_byte,
            key_of_255_bytes,
            key_with_every_allowed_character,
            key_special_names,
            invalid_key_empty_rejected,
            invalid_key_too_long_rejected,
            invalid_key_characters_rejected,
            keys_are_case_sensitive,
            created_at_kept_updated_at_advanced,
            timestamps_are_current,
            delete_then_recreate,
            list_empty_store,
            list_sorted,
            list_prefix_bounded,
            list_paginated_over_250_keys,
            list_excludes_deleted,
            list_invalid_prefix_and_cursor_rejected,
            namespaces_isolated,
            concurrent_writers_distinct_keys,
            concurrent_writers_same_key,
            concurrent_readers_and_writer,
            availability_when_healthy,
            unreachable_reports_unavailable,
            unreachable_operations_fail_fast_and_retriable,
            secret_absent_from_debug_and_errors,
            persistence_across_reopen,
            capabilities_list_honest,
            capabilities_metadata_honest,
            capabilities_persistence_honest,
            capabilities_availability_honest,
            store_reports_id_and_kind,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __cases {
    ($factory:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let Some(factory) = $factory else { return };
                $crate::cases::$case(&factory).await;
            }
        )+
    };
}
