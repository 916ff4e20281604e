//! An AWS Secrets Manager [`CredentialStore`](credstore_core::CredentialStore),
//! on `aws-sdk-secretsmanager`.
//!
//! ```
//! use credstore_aws::{AwsConfig, AwsStore, DeletionPolicy};
//! use credstore_core::{CredentialStore, CredentialStoreExt, Namespace, SecretValue, StoreId};
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
//! assert_eq!(*store.kind(), credstore_aws::KIND);
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
//! use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Metadata, SecretValue, StoreId};
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
//! # Settings from a config file
//!
//! With the `serde` feature, `AwsSettings` is what one store's table of a
//! configuration file holds (`region`, `endpoint`, `prefix`, `kms_key_id`,
//! `timeout_ms`, `max_attempts`, `allow_insecure_http`, all optional;
//! credentials always from the AWS chain), checked as it is deserialized, and `AwsSettings::open`
//! opens the store as [`AwsStore::from_env`] does. `credstore-server`'s
//! `[[stores]]` tables of `type = "aws-secrets-manager"` are these
//! settings.
//!
//! # AWS KMS as the key-encryption key
//!
//! With the `kms` feature, `KmsKeyProvider` is a
//! `credstore_seal::KeyProvider`: an encrypting store (the encrypted
//! SQLite store) keeps its data key wrapped by a KMS key, which never
//! leaves KMS, instead of by a key file beside its data. The store makes
//! one KMS call when it is created and at each key-encryption key
//! rotation (`Encrypt`), and one when it opens (`Decrypt`); a read or a
//! write makes none. The feature is off by default: `aws-sdk-kms` is the
//! largest crate of this one's build (about five times
//! `aws-sdk-secretsmanager`), which a Secrets Manager store has no use for.
//!
//! ```no_run
//! # async fn demo() -> credstore_core::Result<()> {
//! use credstore_aws::{AwsConfig, KmsKeyProvider};
//! use credstore_core::StoreId;
//! use credstore_seal::{DataKey, KeyRecord, StoreUid};
//!
//! let store = StoreId::new("team")?;
//! // The standard AWS chain for region and credentials, as AwsStore::from_env.
//! let kek = KmsKeyProvider::from_env(&store, "alias/credstore", &AwsConfig::new()).await?;
//! let record = KeyRecord::wrap(&store, StoreUid::generate(), 1, &DataKey::generate(), &kek).await?; // Encrypt
//! let data_key = record.unwrap(&store, &kek).await?; // Decrypt
//! # let _ = data_key; Ok(()) }
//! ```
//!
//! With the `serde` feature too, `KmsKeySettings` is what a store's `key`
//! table of a configuration file holds besides `provider = "aws-kms"`;
//! credentials always come from the AWS chain, never from the file:
//!
//! ```toml
//! key = { provider = "aws-kms", key_id = "alias/credstore", region = "eu-west-1" }
//! # every field: key_id (required: key id, key ARN, alias name or alias ARN),
//! # region, endpoint (a VPC endpoint, moto), timeout_ms, max_attempts,
//! # allow_insecure_http, as a Secrets Manager store's settings
//! ```
//!
//! - **Calls**: `Encrypt` of the data key's 32 bytes with `KeyId` = the
//!   configured key; `Decrypt` with the same `KeyId`, so KMS refuses a
//!   ciphertext of another key (`IncorrectKeyException`). Both carry the
//!   **encryption context** of `credstore_seal::WrapContext::pairs`:
//!   `credstore-store-uid` (the store's random uid, 32 hex digits) and
//!   `credstore-key-version` (the data key's version, decimal). A wrapped
//!   data key copied into another store, or given another version,
//!   does not decrypt; the context shows in CloudTrail and can be used in
//!   policy conditions (`kms:EncryptionContext:credstore-store-uid`).
//! - **IAM permissions**: `kms:Encrypt` and `kms:Decrypt` on the key (for
//!   an alias, on the key it points to), for example in the key policy or
//!   an IAM policy:
//!
//!   ```json
//!   { "Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"],
//!     "Resource": "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab" }
//!   ```
//!
//!   The key must be a symmetric encryption key (`SYMMETRIC_DEFAULT`,
//!   `ENCRYPT_DECRYPT`); multi-Region keys work from any of their Regions.
//!   KMS's automatic key rotation needs nothing from the store: the key id
//!   stays, older ciphertexts still decrypt. To move to another key, rewrap
//!   the data key (`credstore_seal::KeyRecord::rewrap`).
//! - **Wrapped data key layout** (the bytes of
//!   `credstore_seal::WrappedKey` in the store's key record): the layout
//!   version (u8, 1), the key ARN that `Encrypt` answered (u16 BE length
//!   and UTF-8), then KMS's ciphertext blob as it returned it. When the
//!   provider names its key by key id or key ARN, a data key recorded as
//!   wrapped by another key is refused before any request; named by an
//!   alias, KMS decides.
//! - **Errors** (`credstore_seal::KeyProvider`'s contract, naming the
//!   store, with an [`errors::AwsError`] as source):
//!
//!   | KMS answer | error |
//!   |---|---|
//!   | `IncorrectKeyException`, `InvalidCiphertextException` (another key, another store uid or key version, a damaged ciphertext) | `credstore_seal::wrong_key`: `Config`, starting `wrong key-encryption key` |
//!   | `NotFoundException`, `DisabledException`, `KMSInvalidStateException` (pending deletion), `InvalidKeyUsageException`, `UnsupportedOperationException`, `InvalidArnException` | `Config` naming the key |
//!   | `AccessDeniedException`, bad credentials | `PermissionDenied` naming the key and the permission |
//!   | `KeyUnavailableException`, `DependencyTimeoutException`, `KMSInternalException`, throttling, 5xx, timeouts, connection failures | `Unavailable` (retriable) |
//!   | anything else | `Backend` |
//!
//!   Every call is bounded by [`AwsConfig::timeout`] (default 10 s),
//!   retries included, and retried at most [`AwsConfig::max_attempts`]
//!   times, only when retriable. `KeyUnavailableException` is retriable as
//!   KMS documents it, not a `Config` error.
//! - **Memory**: the data key `Decrypt` answers is moved out of the answer
//!   into a buffer wiped on drop, and the answer dropped at once. The SDK's
//!   own buffers are not wiped (see "What stays in memory"): the `Encrypt`
//!   request's copy of the data key and its base64 in the JSON body, and
//!   the `Decrypt` answer's body and base64 decoding.
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
//! - **What separates two stores** is this location: the account and region
//!   (or endpoint) and the prefix. Stores with the same ones share their
//!   keys whatever their store ids, which no name holds. Give each store a
//!   prefix of its own, and not one inside another store's: a store with
//!   prefix `app/pay` sees what a store with prefix `app` keeps in its
//!   namespace `pay`. With no prefix, the store's root keys are the
//!   account's secrets whose names hold no `/`, other tools' included.
//! - **Value**: a text value is the `SecretString`, byte for byte, as other
//!   tools expect. A value that is not UTF-8 is the `SecretBinary`, byte for
//!   byte (both hold up to 65,536 bytes). Reading returns whichever the
//!   version holds, so a binary secret made by another tool reads as its
//!   bytes. The one exception is the empty value, which Secrets Manager
//!   refuses: it is stored as a single space `" "`, with `"e":true` in the
//!   description (below) saying that it stands for `""`. A real `" "` has no
//!   such flag, so both round-trip.
//! - **Description**: a compact JSON envelope,
//!   `{"cs":2,"m":{"owner":"ci"},"u":1732712399000000001,"v":"credstore1-…","e":true}`:
//!   `cs` is the layout version, `m` the metadata (left out when empty),
//!   `u` is `updated_at` in nanoseconds since the Unix epoch, `v` the version
//!   id written with it, `e` the empty-value flag (left out when false).
//!   Writes that read the secret first (create, replace, setting a deleted
//!   key again) also write `c`, `created_at` in nanoseconds, and mark the
//!   envelope `"cs":1`, the layout credstore 0.1 reads; an overwrite does
//!   not know `c` and writes `"cs":2` (0.1 refuses to read those, with an
//!   error naming the layout version, rather than misreport them).
//!   Metadata values may be any text without control characters; the
//!   core's limits (16 entries, 900 bytes) keep the envelope within the
//!   description's 2,048 characters even when every character is escaped.
//!   Since 0.3 two more fields, which 0.2 ignores: `x`, the version's
//!   `expires_at` in nanoseconds (left out when it never expires), and `p`,
//!   what the previous version was written with,
//!   `{"v":"credstore1-…","m":{..},"u":..,"e":true,"x":..}` (its version
//!   id, metadata, `updated_at`, empty flag and expiry), left out when the
//!   write created the key, when the version it overwrote was not one this
//!   crate described, or when the description would not fit 2,048
//!   characters with it (see "History").
//! - **Tags**: the tag `credstore-created` holds `created_at` (nanoseconds,
//!   decimal). `CreateSecret` sets it with the secret, and setting a
//!   deleted key again resets it (`TagResource`); no other write touches
//!   tags, which is what lets an overwrite be one request. The other tags
//!   are yours ([`AwsConfig::tag`], at most 49): their character set cannot
//!   hold arbitrary metadata. `created_at` is this tag, else the
//!   envelope's `c` (a secret last written by 0.1), else the secret's
//!   `CreatedDate` (a secret made by another tool).
//! - **Versions**: a credential's
//!   [`Version`](credstore_core::Version) is the `VersionId` of the secret's
//!   `AWSCURRENT` version. Every write makes a version of its own
//!   (`ClientRequestToken`, `credstore1-` and 32 hex digits), and the
//!   envelope names the version it was written with, so a reader can tell
//!   whether a value and a description belong together (see "Reads"). When
//!   the current version was written by something else (console,
//!   `put-secret-value`, rotation), that value wins, with its own
//!   `VersionId`, the metadata of the last write through this crate and
//!   `updated_at` from the version's creation date.
//! - **Staging label**: `credstore-staged` marks the version a
//!   replace-if-version write staged last (see "Writes"); it moves from
//!   version to version and means nothing to other tools.
//! - **Timestamps**: `created_at` is kept on overwrite and reset when a
//!   deleted or expired key is set again; `updated_at` is the time of the write,
//!   strictly later than every earlier write of the same process (and than
//!   the previous write of the key, as far as the writers' clocks agree).
//!   Secrets without an envelope report the secret's `CreatedDate` and the
//!   version's date.
//!
//! # Requests per operation
//!
//! Requests that run at the same time cost one round trip together.
//!
//! | operation | requests | round trips |
//! |---|---|---|
//! | `get` of a version this store wrote or read before | `GetSecretValue` | 1 |
//! | `get` of any other version | `GetSecretValue` and `DescribeSecret`, at the same time | 1 |
//! | `has`, `version` | `DescribeSecret` | 1 |
//! | `get_many` of up to 20 keys this store wrote or read before | `BatchGetSecretValue` | 1 |
//! | `get_many` of other keys | `BatchGetSecretValue` per 20 keys, then a `get` of each key not settled by it | 2 |
//! | `set` of a key this store made, wrote or read in the last 30 s | `UpdateSecret` (value and description) | 1 |
//! | `set` of another existing key | `DescribeSecret`, then `UpdateSecret` (the description written keeps the version overwritten) | 2 |
//! | `set` of a new key | `DescribeSecret` (finds nothing), then `CreateSecret` | 2 |
//! | `get_version` | `DescribeSecret`, then `GetSecretValue` of that `VersionId` | 2 |
//! | `list_versions` | `DescribeSecret` (labels and description; no value read) | 1 |
//! | `purge` of the key | `DescribeSecret`, `DeleteSecret` (forced) | 2 |
//! | `purge` of a version | `DescribeSecret`, `UpdateSecretVersionStage` | 2 |
//! | `create` of a new key | `CreateSecret` | 1 |
//! | `create` of a present key | `CreateSecret` (refused), `DescribeSecret` | 2 |
//! | `replace` | `DescribeSecret`, `PutSecretValue`, `UpdateSecretVersionStage`, `UpdateSecret` | 4 |
//! | `delete` | `DescribeSecret`, `DeleteSecret` | 2 |
//! | `list` | `ListSecrets` per 100 secrets | 1 per page |
//!
//! A `get` that finds the answers disagree (below) makes one more
//! `GetSecretValue`; setting a key deleted with a recovery window goes the
//! long way (restore, tag, then the staged write). On a service that
//! handles requests one at a time (moto on loopback), two requests at the
//! same time still cost two requests' worth of server time; across a
//! network, where the round trip dominates, they cost about one. The test
//! `tests/requests.rs` counts the requests of each operation and checks
//! which of them run at the same time, through a proxy in front of moto.
//!
//! # Reads
//!
//! Every version of ours has its own envelope, written with it and never
//! changed, so a store remembers, per secret, the last version it wrote or
//! read whole with the envelope and `created_at` that go with it (metadata
//! and times, never the value; at most 4,096 secrets). A `get` first sends
//! `GetSecretValue` alone when it remembers a version of the secret; if the
//! answer is that version and carries `AWSCURRENT`, the remembered envelope
//! completes it. (A description edited outside credstore without a new
//! version is not seen then; every write through credstore, from any
//! process, makes a new version.) Otherwise the read goes on as below,
//! with the answer it already has.
//!
//! `get` sends `GetSecretValue` (the current version) and `DescribeSecret`
//! together. The description says which version its metadata belongs to,
//! and the version map which version is current; from those alone the read
//! decides which version it returns (the current one; the one the
//! description names while a replace is between its steps; a version
//! written by another tool, with the last metadata). When the value that
//! came back is that version, that is the answer. Otherwise (a write landed
//! between the two answers, a replace is between its steps, or the service
//! answered with another version) the read asks for that version by
//! `VersionId`, so value, metadata, version and timestamps always come from
//! one write, never two. A description that names a version of ours that
//! does not exist is never paired with another value: the read looks again
//! (a few times, briefly) and then fails with the retriable
//! [`Error::Conflict`](credstore_core::Error::Conflict).
//!
//! When a service shows `AWSCURRENT` on two versions (moto does after
//! `UpdateSecretVersionStage` then `UpdateSecret`; Secrets Manager does
//! not), the store takes the one the description names, else the first by
//! id, so every reader and writer agrees.
//!
//! # Batch reads
//!
//! [`get_many`](credstore_core::CredentialStore::get_many) sends one
//! `BatchGetSecretValue` per 20 distinct secrets (the service's limit),
//! up to [`BATCH_CONCURRENCY`](credstore_core::BATCH_CONCURRENCY) at once,
//! each within the store's timeout and retries like every request. Its
//! answer carries each secret's current value and version but not its
//! description, so a key is settled by it alone as `get`'s first step is:
//! when it answers the version this store remembers for the secret (above),
//! as `AWSCURRENT`; the remembered envelope then gives metadata, times and
//! expiry. A secret it reports as `ResourceNotFoundException` answers
//! `None`. Every other key (a version this store does not remember, a
//! secret scheduled for deletion) is then read with `get`, up to 16 at
//! once, so the answers are always what `get` answers. Any other error the
//! service reports for one secret (access denied to it, a KMS key it cannot
//! use) fails the whole batch with this crate's translation of it; the call
//! needs `secretsmanager:BatchGetSecretValue` and, per secret,
//! `secretsmanager:GetSecretValue`.
//!
//! # Writes
//!
//! - **Upsert** ([`SetMode::Upsert`](credstore_core::SetMode::Upsert), what
//!   `set` does): one `UpdateSecret` with the value, the description and a
//!   fresh `ClientRequestToken`. The new version and the description naming
//!   it arrive in one call, so no reader sees one without the other; of
//!   concurrent upserts, the last one wins whole. A missing secret is then
//!   made with `CreateSecret`; when another writer made it first, the
//!   upsert overwrites it. The outcome's `created_at` (from the tag, which
//!   the update does not change) and whether the key was new come from one
//!   of two places:
//!   - When this store saw the secret whole in the last 30 s (it created
//!     it, or a `DescribeSecret` of a write or read showed its ARN and the
//!     `credstore-created` tag), the update goes alone. `UpdateSecret`
//!     answers the secret's ARN, and a secret deleted and made again has a
//!     new one (a random suffix), so when the ARN is the one seen, the key
//!     was present and its creation time is the one seen. Another ARN, or
//!     none, and the upsert describes the secret after the update.
//!   - Otherwise `DescribeSecret` goes first, and the update writes a
//!     description that keeps the version it overwrites (see "History"):
//!     one more round trip than sending both at once, the price of a
//!     history that does not depend on what this process saw. A secret
//!     found expired, without a value, scheduled for deletion or between
//!     the steps of a replace goes the long way (below).
//!
//!   One change keeps the ARN: a key deleted by another process with a
//!   [`DeletionPolicy::RecoveryWindow`] and set again (restored, its tag
//!   reset) within those 30 s. An upsert from this store then still
//!   reports `created: false` rightly (the key was present), but the
//!   earlier `created_at`, as this store's own reads of that version do;
//!   other readers see the reset tag. Stores that all delete with
//!   [`DeletionPolicy::Immediate`] (the default) never see this. The
//!   trade: on a service that handles requests one at a time (moto), the
//!   `DescribeSecret` alongside doubles an overwrite's time; across a
//!   network it costs little latency but one more request (and its price)
//!   per write.
//! - **Create-only** ([`SetMode::Create`](credstore_core::SetMode::Create)):
//!   one `CreateSecret` with value, description and tag; atomic, so over an
//!   existing secret it fails with
//!   [`Error::PreconditionFailed`](credstore_core::Error::PreconditionFailed)
//!   and changes nothing; of racing creates exactly one wins.
//! - **Replace-if-version**
//!   ([`SetMode::Replace`](credstore_core::SetMode::Replace)): after a
//!   `DescribeSecret` that checks the current version, `PutSecretValue`
//!   stages the new version under `credstore-staged` (not `AWSCURRENT`);
//!   `UpdateSecretVersionStage` moves `AWSCURRENT` to it with
//!   `RemoveFromVersionId` = the expected version, which the service
//!   refuses once another write has moved the label; then `UpdateSecret`
//!   writes the description. A refused move is `PreconditionFailed`: of
//!   racing replaces from one version, exactly one wins, and the losers'
//!   staged versions lose their label and are never current. Between the
//!   move and the description, readers still see the previous write (the
//!   description names it) and other replaces wait for the description. If
//!   the description cannot be written, `AWSCURRENT` is moved back. A
//!   replace left half-done by a process that died is taken over by the
//!   next replace after three request timeouts; an upsert just overwrites
//!   it.
//! - An upsert that lands in the one round trip between a replace's move
//!   and its description write loses its description to the replace:
//!   readers of this crate then see the replace's write whole (value,
//!   metadata and version together) while `AWSCURRENT` is on the upsert's
//!   version, until the next write. Nothing is ever read mixed.
//! - **Expired keys** count as missing: a create-only write or an upsert
//!   over one writes through the staging label as over a restored key (a
//!   new `created_at`, no previous version kept), and a replace fails.
//! - **Permissions**: `secretsmanager:CreateSecret`, `UpdateSecret`,
//!   `DescribeSecret`, `GetSecretValue`, `PutSecretValue`,
//!   `UpdateSecretVersionStage`, `DeleteSecret`, `ListSecrets`, and
//!   `TagResource` (the creation-time tag is written with `CreateSecret`);
//!   `RestoreSecret` with [`DeletionPolicy::RecoveryWindow`].
//!
//! # History
//!
//! Secrets Manager keeps for sure only the versions that carry a staging
//! label: `AWSCURRENT` and `AWSPREVIOUS`, which every write moves from the
//! version it replaces. A version without a label is deprecated, and the
//! service removes deprecated versions when it pleases (past 100 versions,
//! once a day old); `ListSecretVersionIds` with `IncludeDeprecated` shows
//! them while they last (moto keeps them all and ignores the flag). So the
//! store declares [`Retention::versions(2)`](credstore_core::Retention::versions)
//! with no age limit, and reads only those two:
//!
//! - [`list_versions`](credstore_core::CredentialStore::list_versions) is
//!   one `DescribeSecret`: its `VersionIdsToStages` lists the labelled
//!   versions and its description says what each was written with. The
//!   current version is listed with the envelope's metadata, times and
//!   expiry; the `AWSPREVIOUS` one with what the envelope's `p` kept of it,
//!   when `p` names it. A previous version `p` does not name (written by
//!   another tool, or overwritten by another tool's write, or `p` dropped
//!   because it did not fit) is not kept: the store never reports a version
//!   with metadata, times or expiry it does not know. A value another tool
//!   wrote over one of ours is listed as current, and ours as previous.
//! - [`get_version`](credstore_core::CredentialStore::get_version) reads a
//!   kept version by `VersionId` (`GetSecretValue`), with that metadata;
//!   any other version id is `None`, even if the service still holds it.
//! - **Expiry** is store-enforced: `x` in the envelope, compared with the
//!   store's clock ([`AwsConfig::clock`]). `get`, `has`, `version` and
//!   `list` (from the descriptions `ListSecrets` returns: no extra request)
//!   treat an expired key as missing; its version is listed as `expired`.
//! - **No recovery after a delete**
//!   ([`recover_deleted`](credstore_core::Capabilities::recover_deleted) is
//!   false): with [`DeletionPolicy::Immediate`] the secret is gone; with a
//!   recovery window the service refuses to read a secret scheduled for
//!   deletion, so nothing of it can be read through the store until a
//!   write restores it, and that write starts a new key (its description
//!   keeps no previous version). The console or `aws secretsmanager
//!   restore-secret` can still recover it within the window.
//! - **Purge**: `PurgeTarget::Key` is `DeleteSecret` with
//!   `ForceDeleteWithoutRecovery`, whatever the deletion policy: the secret
//!   and all its versions. `PurgeTarget::Version` takes `AWSPREVIOUS` off
//!   the version (`UpdateSecretVersionStage`), so that no read of this
//!   store returns it. Secrets Manager has no call that destroys a single
//!   version: the value stays in the service, deprecated and readable by
//!   its `VersionId` with `GetSecretValue`, until the service removes it.
//!   To destroy a leaked value for certain, purge the key (and set it
//!   again). The current version is refused with `PreconditionFailed`, an
//!   expired one too (it still carries `AWSCURRENT`, which cannot be taken
//!   off a version alone): purge the key.
//!
//! Restoring an earlier version
//! ([`restore`](credstore_core::CredentialStoreExt::restore)) with
//! [`SetOptions::replace`](credstore_core::SetOptions::replace) is a
//! replace-if-version write of its value and metadata, atomic as every
//! replace is. Existing 0.2 secrets open unchanged: their envelope has no
//! `x` (they never expire) and no `p` (their previous version, written
//! before 0.3, is not kept until the next write).
//!
//! # Deleting and setting again
//!
//! [`DeletionPolicy::Immediate`] (the default) deletes without recovery; the
//! service purges the secret asynchronously, and a write that finds it still
//! being purged waits and retries (up to 30 s) instead of failing with
//! `InvalidRequestException`. With [`DeletionPolicy::RecoveryWindow`], a
//! deleted key is absent from `get`, `has` and `list` at once, and a write of
//! it (a create-only one included) restores the secret (`RestoreSecret`) and
//! overwrites value, description and timestamps as for a new key (the tag
//! reset, the value written through the staging label). Between those
//! calls a concurrent reader can briefly see the old value; if the
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
//! # Plain HTTP
//!
//! An `http://` endpoint, given by [`AwsConfig::endpoint_url`], the
//! settings' `endpoint` or the AWS environment (`AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER`, a profile's `endpoint_url`), must
//! name a loopback host (`127.0.0.0/8`, `[::1]`, `localhost`: moto or
//! LocalStack on the same host) unless [`AwsConfig::allow_insecure_http`]
//! (`allow_insecure_http = true`) is set: values and the session token
//! would cross the network in the clear. [`AwsStore::new`] and
//! [`AwsStore::from_env`] refuse it with
//! [`Error::Config`](credstore_core::Error::Config) naming the setting,
//! before any request; the settings refuse it when deserialized.
//!
//! # Redirects
//!
//! No redirect is followed: the SDK's HTTP client (hyper through
//! `aws-smithy-http-client`) has no redirect support, so a `3xx` answer
//! comes back as it is, and neither the signed request (with its session
//! token) nor a written value goes to the place it points to. Secrets
//! Manager never redirects; an endpoint that does (a proxy, a wrong
//! [`AwsConfig::endpoint_url`]) fails the call with
//! [`Error::Config`](credstore_core::Error::Config) naming the status and
//! the target's origin (scheme, host, port; never its path or query), not
//! retried. The tests pin this down with a loopback server answering `307`.
//!
//! # Secrets
//!
//! No value, secret access key or session token appears in `Debug`, errors or
//! logs. What this crate holds is zeroized when dropped:
//!
//! - values read: moved (not copied) out of the `GetSecretValue` answer
//!   into a zeroizing [`SecretValue`](credstore_core::SecretValue); an
//!   answer dropped unused (a read of a version that turned out not to be
//!   current, a retry, an error) has its `SecretString` or `SecretBinary`
//!   overwritten first;
//! - values written: one `Zeroizing` copy per write, kept for its requests
//!   (`CreateSecret`, `UpdateSecret`, `PutSecretValue`, retries included);
//! - static credentials: handed to the SDK's `Credentials`, which keeps
//!   them in `Zeroizing` strings.
//!
//! ## What stays in memory
//!
//! The SDK owns the buffers below, and frees them without overwriting them,
//! so the bytes may linger in freed memory until reused:
//!
//! - writes: each request's input takes its own `String` (or `Blob`) copy of
//!   the value, which the SDK serializes into a JSON body (`SecretBinary` as
//!   base64) and hyper sends; so does a KMS `Encrypt` of a data key;
//! - reads: hyper's receive buffers, the response body, and the JSON
//!   deserializer's copies (a `SecretString` with escapes is unescaped into
//!   a new string; `SecretBinary` and a KMS `Decrypt`'s `Plaintext` are
//!   decoded from base64);
//! - signing: the SDK copies the session token into the
//!   `X-Amz-Security-Token` header of each request;
//! - TLS: rustls encrypts from and decrypts into buffers of its own.
//!
//! Where freed memory must not hold a secret, run with an allocator that
//! clears freed memory.
#![warn(missing_docs)]

mod client;
mod config;
pub mod errors;
#[cfg(feature = "kms")]
mod kms;
mod last_seen;
mod layout;
mod store;
#[cfg(feature = "serde")]
mod uri;

#[cfg(feature = "serde")]
pub use config::AwsSettings;
pub use config::{AwsConfig, DeletionPolicy, DEFAULT_MAX_ATTEMPTS, DEFAULT_TIMEOUT};
#[cfg(all(feature = "kms", feature = "serde"))]
pub use kms::KmsKeySettings;
#[cfg(feature = "kms")]
pub use kms::{KmsKeyProvider, KMS_PROVIDER_KIND};
pub use layout::MAX_SECRET_NAME_LEN;
pub use store::AwsStore;
#[cfg(feature = "serde")]
pub use uri::AwsScheme;

/// The AWS Secrets Manager store's [`StoreKind`](credstore_core::StoreKind):
/// `aws-secrets-manager`.
pub const KIND: credstore_core::StoreKind = credstore_core::StoreKind::from_static("aws-secrets-manager");

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
