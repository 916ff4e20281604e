//! An AWS Secrets Manager [`CredentialStore`](credstore_core::CredentialStore),
//! on `aws-sdk-secretsmanager`.
//!
//! ```
//! use credstore_aws::{AwsConfig, AwsStore, DeletionPolicy};
//! use credstore_core::{CredentialStore, Namespace, SecretValue, StoreId, StoreKind};
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
//! // One client, a key space per tenant: secrets under prod/app/tenant-42/.
//! let tenant = store.with_namespace(&Namespace::new("tenant-42")?)?;
//! assert_eq!(tenant.namespace().as_str(), "tenant-42");
//!
//! // Secret names hold at most 512 characters: the namespace gets what the
//! // prefix and the longest key leave, and a longer one is refused up front.
//! assert_eq!(store.max_namespace_len(), 247);
//! let too_long = Namespace::new("n".repeat(248))?;
//! assert!(matches!(
//!     store.with_namespace(&too_long),
//!     Err(credstore_core::Error::InvalidNamespace { .. })
//! ));
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
//! let written = store.set(&key, &SecretValue::from("ghp_example"), &Metadata::try_from([("owner", "ci")])?).await?;
//! // Rotate only if nobody else did since.
//! store.replace(&key, &SecretValue::from("ghp_rotated"), &Metadata::new(), &written.version).await?;
//! assert!(store.has(&key).await?);
//! # Ok(()) }
//! ```
//!
//! # Layout
//!
//! Other AWS tools read and manage these secrets as they are:
//!
//! - **Name**: key `k` is the secret `{prefix}/k` (just `k` with no prefix);
//!   the handle on namespace `a/b`
//!   ([`with_namespace`](credstore_core::CredentialStore::with_namespace))
//!   uses `{prefix}/a/b/k`. Keys hold no `/`, so a namespace's secrets never
//!   show up as keys of its parent. A secret name holds at most
//!   [`MAX_SECRET_NAME_LEN`] (512) characters and a key up to 255 bytes, so
//!   prefix and namespace share 256 bytes: [`AwsStore::max_namespace_len`]
//!   is what a namespace may take on a given store. A longer namespace is
//!   refused by `with_namespace` with
//!   [`Error::InvalidNamespace`](credstore_core::Error::InvalidNamespace)
//!   ("is N bytes; the limit is M"), before any request. Through the
//!   Credential Stores API server, where the namespace is
//!   `{tenantId}/{projectId}`, that is a `422` naming both fields, the
//!   namespace's length and this cap.
//! - **Value**: a text value is the `SecretString`, byte for byte, as other
//!   tools expect. A value that is not UTF-8 is the `SecretBinary`, byte for
//!   byte (both hold up to 65,536 bytes). Reading returns whichever the
//!   version holds, so a binary secret made by another tool reads as its
//!   bytes. The one exception is the empty value, which Secrets Manager
//!   refuses: it is stored as a single space `" "`, with `"e":true` in the
//!   description (below) saying that it stands for `""`. A real `" "` has no
//!   such flag, so both round-trip.
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
//! - **Versions**: a credential's
//!   [`Version`](credstore_core::Version) is the `VersionId` of the secret's
//!   `AWSCURRENT` version. Every write makes a version of its own
//!   (`ClientRequestToken`, `credstore1-` and 32 hex digits). `get` reads the
//!   version the description names, so value and metadata always come from
//!   the same write. When the current version was written by something else
//!   (console, `put-secret-value`, rotation), that value wins, with its own
//!   `VersionId`, the metadata of the last write through this crate and
//!   `updated_at` from the version's creation date.
//! - **Staging label**: `credstore-staged` marks the version a write of this
//!   crate staged last (see "Writes"); it moves from version to version and
//!   means nothing to other tools.
//! - **Timestamps**: `created_at` is kept on overwrite and reset when a
//!   deleted key is set again; `updated_at` is the time of the last write
//!   (strictly later than the one before). Secrets without an envelope
//!   report the secret's `CreatedDate` and the version's date.
//!
//! # Writes
//!
//! - A new key is one `CreateSecret` with value and description: atomic, so
//!   a create-only write ([`SetMode::Create`](credstore_core::SetMode::Create))
//!   over an existing secret fails with
//!   [`Error::PreconditionFailed`](credstore_core::Error::PreconditionFailed).
//! - An existing key is written in three steps: `PutSecretValue` stages the
//!   new version under `credstore-staged` (not `AWSCURRENT`);
//!   `UpdateSecretVersionStage` moves `AWSCURRENT` to it with
//!   `RemoveFromVersionId` = the version the write started from, which the
//!   service refuses once another write has moved the label; then
//!   `UpdateSecret` writes the description for the new version. A
//!   replace-if-version write
//!   ([`SetMode::Replace`](credstore_core::SetMode::Replace)) fails with
//!   `PreconditionFailed` when the current version is not the expected one,
//!   or when the move is refused: of racing replaces from one version,
//!   exactly one wins. An upsert whose move is refused starts over.
//! - Between the move and the description, readers of this crate still see
//!   the previous write (the description names it), and other writes of this
//!   crate wait for the description. So a value is never paired with another
//!   write's metadata, and a refused condition changes nothing visible: the
//!   staged version loses its label and is never current. If the
//!   description cannot be written, `AWSCURRENT` is moved back. A write left
//!   half-done by a process that died is taken over by the next write after
//!   three request timeouts.
//! - Other tools see the new value from the move on.
//!
//! # Deleting and setting again
//!
//! [`DeletionPolicy::Immediate`] (the default) deletes without recovery; the
//! service purges the secret asynchronously, and a write that finds it still
//! being purged waits and retries (up to 30 s) instead of failing with
//! `InvalidRequestException`. With [`DeletionPolicy::RecoveryWindow`], a
//! deleted key is absent from `get`, `has` and `list` at once, and a write of
//! it (a create-only one included) restores the secret (`RestoreSecret`) and
//! overwrites value, description and timestamps as for a new key. Between
//! those two calls a concurrent reader can briefly see the old value; if the
//! overwrite fails, the secret is deleted again (best effort).
//!
//! # Errors, timeouts, retries
//!
//! Errors are translated in one place (see [`errors`] for the table): a
//! missing secret is "absent"; bad credentials and access denied are
//! [`Error::PermissionDenied`](credstore_core::Error::PermissionDenied);
//! throttling, 5xx, timeouts and connection failures are the retriable
//! [`Error::Unavailable`](credstore_core::Error::Unavailable). Each error's
//! `source()` is an [`errors::AwsError`]: the operation, the service's code
//! and message, the HTTP status. Every request is bounded by
//! [`AwsConfig::timeout`], retries included, and retried at most
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
pub use layout::MAX_SECRET_NAME_LEN;
pub use store::AwsStore;

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
