//! An AWS Secrets Manager [`CredentialStore`](credstore_core::CredentialStore),
//! on `aws-sdk-secretsmanager`.
//!
//! ```
//! use credstore_aws::{AwsConfig, AwsStore, DeletionPolicy};
//! use credstore_core::{CredentialStore, SecretValue, StoreId, StoreKind};
//!
//! # fn main() -> credstore_core::Result<()> {
//! // Explicit settings: nothing is read from the environment, nothing is sent yet.
//! let store = AwsStore::new(
//!     StoreId::new("aws-prod")?,
//!     AwsConfig::new()
//!         .region("eu-west-1")
//!         .prefix("prod/app")
//!         .tag("team", "payments")
//!         .deletion(DeletionPolicy::RecoveryWindow(7))
//!         .static_credentials("AKIAIOSFODNN7EXAMPLE", SecretValue::from("wJalrXUtnFEMI/K7MDENG")),
//! )?;
//! assert_eq!(store.kind(), StoreKind::AwsSecretsManager);
//! assert_eq!(store.secret_name(&"stripe-key".parse()?), "prod/app/stripe-key");
//!
//! // One client, a key space per tenant.
//! let tenant = store.with_namespace("tenant-42")?;
//! assert_eq!(tenant.prefix(), "prod/app/tenant-42");
//! # Ok(()) }
//! ```
//!
//! With the standard AWS chain (environment, profile, SSO, instance
//! metadata), in async code:
//!
//! ```no_run
//! # async fn demo() -> credstore_core::Result<()> {
//! use credstore_aws::{AwsConfig, AwsStore};
//! use credstore_core::{CredentialKey, CredentialStore, Metadata, SecretValue, StoreId};
//!
//! let store = AwsStore::from_env(StoreId::new("aws")?, AwsConfig::new().prefix("myapp")).await?;
//! let key = CredentialKey::new("github-token")?;
//! store.set(&key, &SecretValue::from("ghp_example"), &Metadata::try_from([("owner", "ci")])?).await?;
//! assert!(store.has(&key).await?);
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! Other AWS tools read and manage these secrets as they are:
//!
//! - **Name**: key `k` is the secret `{prefix}/k` (just `k` with no prefix).
//!   [`AwsStore::with_namespace`] appends `/{ns}` to the prefix. Keys hold no
//!   `/`, so a namespace's secrets never show up as keys of its parent.
//! - **Value**: the `SecretString` is the credential's value, byte for byte.
//!   The one exception is the empty value, which Secrets Manager refuses: it
//!   is stored as a single space `" "`, with `"e":true` in the description
//!   (below) saying that it stands for `""`. A real `" "` has no such flag,
//!   so both round-trip.
//! - **Description**: a compact JSON envelope,
//!   `{"cs":1,"m":{"owner":"ci"},"c":1732712345123456789,"u":1732712399000000001,"v":"credstore1-…","e":true}`:
//!   `cs` is the layout version, `m` the metadata (left out when empty),
//!   `c`/`u` are `created_at`/`updated_at` in nanoseconds since the Unix
//!   epoch, `v` is the version id written with it, `e` the empty-value flag
//!   (left out when false). Metadata values may be any text without control
//!   characters; the core's limits (16 entries, 900 bytes) keep the envelope
//!   within the description's 2,048 characters even when every character is
//!   escaped. Tags are left to you ([`AwsConfig::tag`]), since their
//!   character set cannot hold arbitrary metadata.
//! - **Versions**: every write is one `CreateSecret` or `UpdateSecret` that
//!   sets value and description together, with a version id of its own
//!   (`ClientRequestToken`, `credstore1-` and 32 hex digits). `get` reads the
//!   version its description names, so value and metadata always come from
//!   the same `set`, even under concurrent writers. When the current version
//!   was written by something else (console, `put-secret-value`, rotation),
//!   that value wins, with the metadata of the last write through this
//!   crate and `updated_at` from the version's creation date.
//! - **Timestamps**: `created_at` is kept on overwrite and reset when a
//!   deleted key is set again; `updated_at` is the time of the last `set`
//!   (strictly later than the one before). Secrets without an envelope
//!   report the secret's `CreatedDate` and the version's date.
//!
//! # Deleting and setting again
//!
//! [`DeletionPolicy::Immediate`] (the default) deletes without recovery; the
//! service purges the secret asynchronously, and a `set` that finds it still
//! being purged waits and retries (up to 30 s) instead of failing with
//! `InvalidRequestException`. With [`DeletionPolicy::RecoveryWindow`], a
//! deleted key is absent from `get`, `has` and `list` at once, and a `set` of
//! it restores the secret (`RestoreSecret`) and overwrites value,
//! description and timestamps as for a new key. Between those two calls a
//! concurrent reader can briefly see the old value; if the overwrite fails,
//! the secret is deleted again (best effort).
//!
//! # Errors, timeouts, retries
//!
//! Errors are translated in one place (see [`errors`] for the table): a
//! missing secret is "absent"; bad credentials and access denied are
//! [`Error::PermissionDenied`](credstore_core::Error::PermissionDenied);
//! throttling, 5xx, timeouts and connection failures are the retriable
//! [`Error::Unavailable`](credstore_core::Error::Unavailable). Every request
//! is bounded by [`AwsConfig::timeout`], retries included, and retried at most
//! [`AwsConfig::max_attempts`] times, only when retriable.
//!
//! # Secrets
//!
//! No value, secret access key or session token appears in `Debug`, errors or
//! logs. Values read are moved into zeroizing [`SecretValue`](credstore_core::SecretValue)s;
//! copies the SDK makes while sending (request bodies, the credentials it
//! signs with) are not zeroized, as the SDK does not offer it.
#![warn(missing_docs)]

mod client;
mod config;
pub mod errors;
mod layout;
mod store;

pub use config::{AwsConfig, DeletionPolicy, DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT};
pub use store::AwsStore;
