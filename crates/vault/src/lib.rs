//! A HashiCorp Vault / OpenBao credential store for credstore, keeping
//! credentials in a KV version 2 mount, built on [`vaultrs`].
//!
//! - Settings in [`VaultConfig`]: address, a token or an AppRole login, the
//!   KV v2 mount (default `secret`), a path prefix for this store, the Vault
//!   namespace, a timeout, TLS roots; [`VaultConfig::from_env`] reads
//!   `VAULT_ADDR`, `VAULT_TOKEN`, `VAULT_NAMESPACE` and `VAULT_CACERT`.
//! - AppRole tokens are renewed before they expire and replaced by a new
//!   login when renewal fails, the maximum TTL is near, or the server refuses
//!   the token, so no call fails because a token quietly expired.
//! - Every operation runs under the timeout, retries included; retries are
//!   bounded (3 attempts, 50 ms then 150 ms apart plus jitter) and only for
//!   retriable failures.
//! - [`VaultStore::new`] sends nothing: a server that is down is reported by
//!   [`check_availability`](credstore_core::CredentialStore::check_availability)
//!   ("connection refused at http://127.0.0.1:8200", "vault is sealed",
//!   "token rejected", "mount 'x' is not a KV v2 mount (it is KV version 1)").
//! - [`VaultStore::with_namespace`] gives handles on sub-paths that share
//!   the client and token, as the HTTP server uses for tenants.
//!
//! # Layout in KV v2
//!
//! A credential `key` of a store with mount `secret` and prefix `apps/pay`
//! is the KV v2 secret `secret/apps/pay/key`; a namespace handle adds its
//! segments: `secret/apps/pay/tenant-1/key`. The keys `.` and `..` (and
//! namespace segments of that name), which no HTTP path can hold, are stored
//! as `~.` and `~..`; `~` appears in no valid key, so nothing collides.
//!
//! The secret's data is one JSON object:
//!
//! ```json
//! {"value": "the secret value", "metadata": {"owner": "payments"}}
//! ```
//!
//! - `value` is the credential's value as a string, so
//!   `bao kv get -field=value secret/apps/pay/key` (or `vault kv get`)
//!   prints it, and a secret written with `bao kv put secret/apps/pay/key
//!   value=...` reads back as a credential with no metadata.
//! - `metadata` holds the credential's metadata as a string map, and is
//!   left out when empty. It sits in the version's data, not in KV v2's
//!   `custom_metadata`, because `custom_metadata` belongs to the key, not
//!   to a version, and can only be written by a second request: a reader or
//!   a concurrent writer could then pair one write's value with another
//!   write's metadata, and a failure between the two requests would leave
//!   half a write. In the data, value and metadata are written together,
//!   atomically, in one version. The store neither reads nor writes
//!   `custom_metadata`, so it stays free for operators.
//! - `created_at` is the key's `created_time` from its KV v2 metadata (or,
//!   when an older version was soft-deleted by another tool, the creation
//!   of the first version written after it); `updated_at` is the current
//!   version's `created_time`. Both come from the server's clock, to the
//!   nanosecond.
//! - `set` writes a new version (KV v2 keeps the mount's `max_versions` of
//!   history); `delete` deletes the key's metadata and so every version,
//!   after which the key can be set again as a new credential. A key whose
//!   latest version another tool soft-deleted (`bao kv delete`) or destroyed
//!   counts as missing: `get`, `has` and `list` do not see it.
//! - Other fields in the data are ignored; a secret without a string
//!   `value` field is refused with an error that does not show its data.
//!
//! Mounts that require check-and-set (`cas_required`) are not supported.
//!
//! # Secrets in memory
//!
//! The token and AppRole secret id are held as [`credstore_core::SecretValue`]
//! or zeroizing strings; values read back are moved into a `SecretValue`.
//! vaultrs and the HTTP stack copy request and response bodies and the
//! token header into buffers this crate cannot zeroize.
//!
//! # Example
//!
//! ```no_run
//! use credstore_core::{CredentialKey, CredentialStore, Metadata, SecretValue, StoreId};
//! use credstore_vault::{VaultConfig, VaultStore};
//!
//! # async fn demo() -> credstore_core::Result<()> {
//! let config = VaultConfig::from_env()?.mount("secret").prefix("apps/payments");
//! let store = VaultStore::new(StoreId::new("vault-default")?, config)?;
//! let status = store.check_availability().await;
//! assert!(status.available, "{:?}", status.reason);
//!
//! let key = CredentialKey::new("stripe-api-key")?;
//! let meta = Metadata::try_from([("owner", "payments")])?;
//! store.set(&key, &SecretValue::from("sk_live_123"), &meta).await?;
//! // Now `bao kv get -field=value secret/apps/payments/stripe-api-key` prints it.
//! let cred = store.get(&key).await?.expect("just set");
//! assert_eq!(cred.metadata, meta);
//!
//! let tenant = store.with_namespace("tenant-1/project-a")?; // secret/apps/payments/tenant-1/project-a/...
//! assert!(!tenant.has(&key).await?);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod client;
mod config;
mod errors;
mod layout;
mod store;

pub use client::AuthStats;
pub use config::{VaultConfig, DEFAULT_MOUNT, DEFAULT_TIMEOUT};
pub use store::VaultStore;
