//! A HashiCorp Vault / OpenBao credential store for credstore, keeping
//! credentials in a KV version 2 mount, built on [`vaultrs`].
//!
//! - Settings in [`VaultConfig`]: address, a token, an AppRole login or a
//!   JWT login (Kubernetes service-account tokens), the KV v2 mount (default
//!   `secret`), a path prefix for this store, the Vault namespace, a
//!   timeout, TLS roots; [`VaultConfig::from_env`] reads `VAULT_ADDR`,
//!   `VAULT_TOKEN`, `VAULT_NAMESPACE`, `VAULT_CACERT` and `VAULT_JWT_ROLE`,
//!   `VAULT_JWT_FILE`, `VAULT_JWT_MOUNT`. A plain `http://` address must
//!   name a loopback host (`127.0.0.0/8`, `[::1]`, `localhost`: a Vault
//!   Agent or dev server on the same host) unless
//!   [`VaultConfig::allow_insecure_http`] is set; [`VaultStore::new`]
//!   refuses it otherwise, before any request.
//! - Everything in [`Capabilities::full`](credstore_core::Capabilities::full):
//!   durable, list, metadata, binary values, and atomic conditional writes
//!   through KV v2's check-and-set (`cas`); and history, natively:
//!   `versions` (KV v2's versions, read by number), `recover_deleted` (a
//!   delete leaves the last version readable), `expiry` (enforced by the
//!   store's clock), and a retention of [`VaultConfig::max_versions`]
//!   versions per key (default 10) with no age limit; see [History, delete
//!   and purge](#history-delete-and-purge).
//! - One HTTP request for `get`, `has` and `version`, and for an upsert of
//!   a key the store recently read or wrote; see [Requests per
//!   operation](#requests-per-operation).
//! - AppRole and JWT tokens are renewed before they expire and replaced by a
//!   new login when renewal fails, the maximum TTL is near, or the server
//!   refuses the token, so no call fails because a token quietly expired. A
//!   JWT login reads its file at every login, so a rotated (projected)
//!   service-account token is picked up; see [Authentication](#authentication).
//! - Every operation runs under the timeout, retries included; retries are
//!   bounded (3 attempts, 50 ms then 150 ms apart plus jitter) and only for
//!   retriable failures. A check-and-set write of a create-only or
//!   replace-if-version call is retried only when the failure proves it was
//!   not carried out (no connection, sealed, standby), so a retry never
//!   meets its own first attempt.
//! - [`VaultStore::new`] sends nothing: a server that is down is reported by
//!   [`check_availability`](credstore_core::CredentialStore::check_availability)
//!   ("connection refused at http://127.0.0.1:8200", "vault is sealed",
//!   "token rejected", "mount 'x' is not a KV v2 mount (it is KV version 1)").
//! - [`with_namespace`](credstore_core::CredentialStore::with_namespace) gives
//!   handles on sub-paths that share the client and token, as the HTTP server
//!   uses for tenants; it sends nothing either.
//! - Errors carry the native cause as their `source()`, reduced to what
//!   holds no secret: the server's status and error strings, or the network
//!   failure (never a token, a header or a response body).
//! - [`TransitKeyProvider`]: a Transit key as the key-encryption key of an
//!   encrypting store (such as the embedded SQLite one), on the same client;
//!   see [Vault Transit as the key-encryption
//!   key](#vault-transit-as-the-key-encryption-key).
//!
//! # Layout in KV v2
//!
//! ## Paths
//!
//! A credential `key` of a store with mount `secret` and prefix `apps/pay`
//! is the KV v2 secret `secret/apps/pay/key`; a namespace handle adds its
//! segments: `secret/apps/pay/tenant-1/project-a/key`
//! ([`VaultStore::secret_path`] names it). The keys `.` and `..`, which no
//! HTTP path can hold, are stored as `~.` and `~..`; `~` appears in no valid
//! key, so nothing collides. Namespace segments are never `.` or `..` (the
//! core [`Namespace`](credstore_core::Namespace) type refuses them), and the
//! whole namespace is at most
//! [`MAX_NAMESPACE_LEN`](credstore_core::MAX_NAMESPACE_LEN) bytes.
//!
//! What separates two stores is this location: the server (and its Vault
//! namespace), the mount and the prefix. Stores with the same ones share
//! their keys whatever their store ids, which are not part of any path. Give
//! each store a prefix of its own, and not one inside another store's: a
//! store with prefix `apps/pay` sees what a store with prefix `apps` keeps
//! in its namespace `pay`.
//!
//! ## Data
//!
//! The secret's data is one JSON object. A text (UTF-8) value:
//!
//! ```json
//! {"value": "the secret value", "metadata": {"owner": "payments"}}
//! ```
//!
//! Any other bytes, base64 (RFC 4648, standard alphabet, padded) under a
//! field of its own:
//!
//! ```json
//! {"value_base64": "3q2+7w==", "metadata": {"owner": "payments"}}
//! ```
//!
//! - `value` is a text value as a string, so
//!   `bao kv get -field=value secret/apps/pay/key` (or `vault kv get`)
//!   prints it, and a secret written with `bao kv put secret/apps/pay/key
//!   value=...` reads back as a credential with no metadata.
//! - `value_base64` holds a value that is not UTF-8; `bao kv get
//!   -field=value_base64 ... | base64 -d` gives its bytes back. It is a field
//!   of its own, not a flag next to `value`, so that no tool (nor an older
//!   credstore) mistakes the base64 text for the value. Reading either back
//!   is lossless; a secret with both fields, or with its value in another
//!   `value_*` field (an encoding this version does not know), is refused
//!   with an error that names the field and does not show the data.
//! - `metadata` holds the credential's metadata as a string map, and is
//!   left out when empty. It sits in the version's data, not in KV v2's
//!   `custom_metadata`, because `custom_metadata` belongs to the key, not
//!   to a version, and can only be written by a second request: a reader or
//!   a concurrent writer could then pair one write's value with another
//!   write's metadata, and a failure between the two requests would leave
//!   half a write. In the data, value and metadata are written together,
//!   atomically, in one version. The store neither reads nor writes
//!   `custom_metadata`, so it stays free for operators.
//! - `created_at` is the credential's creation time, RFC 3339 in UTC to the
//!   nanosecond (`2024-05-01T12:00:00.123456789Z`, the server's clock: the
//!   `created_time` of the version that created the credential). Every
//!   write after the first carries it forward, so that one read of the
//!   current version answers `get` whole; the write that creates a
//!   credential leaves it out, since that version's own `created_time` is
//!   the creation. `bao kv patch` keeps it, as it should: the credential
//!   lives on.
//! - `new_credential` is `true` in the version whose write created the
//!   credential (a first write, a write after a delete or over an expired
//!   version), and absent otherwise: that version's own `created_time` is
//!   then the creation, without looking at earlier versions, which belong
//!   to the key's earlier life.
//! - `expires_at` is the version's expiry time (RFC 3339, UTC, to the
//!   nanosecond), present only when the write set one
//!   ([`SetOptions::expires_at`](credstore_core::SetOptions::expires_at)).
//!   The store compares it with its clock ([`VaultConfig::clock`]); KV v2
//!   itself knows nothing of it (its `delete_version_after` counts from a
//!   version's creation for every version of a key, and soft-deletes, so it
//!   cannot say "this value until then"). An unreadable `expires_at` is an
//!   error, never a credential that does not expire.
//! - A version whose data is `{"credstore_deleted_at": "<RFC 3339>"}` is a
//!   delete marker (see [History, delete and
//!   purge](#history-delete-and-purge)), never a credential.
//! - Other fields in the data are ignored; a secret without a value field is
//!   refused with an error that does not show its data.
//!
//! A write as the crate writes it after the first, in full:
//!
//! ```json
//! {"value": "sk_live_456", "metadata": {"owner": "payments"}, "created_at": "2024-05-01T12:00:00.123456789Z"}
//! ```
//!
//! This is the 0.3 layout; the 0.2 layout is the same without
//! `new_credential`, `expires_at` and delete markers, and reads unchanged:
//! such data never expires, and its history is KV v2's versions as they
//! are. Data written by credstore 0.1 (`value` and
//! `metadata`, no `created_at`), or by another tool, reads as before:
//! without `created_at`, the creation is the version's own `created_time`
//! for version 1, and otherwise comes from the key's KV v2 metadata (a
//! second request, see below); an unreadable `created_at` counts as none.
//! The first write of such a key by this version adds `created_at`; nothing
//! is rewritten by a read.
//!
//! ## Versions and times
//!
//! - Each write is a new KV v2 version. The credential's
//!   [`Version`](credstore_core::Version) is the KV v2 version number, a
//!   dash, and that version's `created_time` in nanoseconds since the Unix
//!   epoch: `3-1714564800123456789` is version 3 (`bao kv get -version=3`).
//! - `created_at` is the data's `created_at` (above); for data without one,
//!   the key's `created_time` from its KV v2 metadata (or, when an older
//!   version was soft-deleted by another tool, the creation of the first
//!   version written after it). `updated_at` is the current version's
//!   `created_time`. Both come from the server's clock, to the nanosecond.
//! - `delete` writes a delete marker and soft-deletes it (see below), after
//!   which the key can be set again as a new credential. A key whose latest
//!   version is a delete marker, was soft-deleted (`bao kv delete`) or
//!   destroyed by another tool, or has expired by the store's clock counts
//!   as missing: `get`, `has`, `version` and `list` do not see it.
//!
//! ## History, delete and purge
//!
//! - **Versions kept**: the newest [`VaultConfig::max_versions`] version
//!   numbers of a key (default [`DEFAULT_MAX_VERSIONS`], 10, KV v2's own
//!   default), delete markers included, as KV v2 counts them. A store whose
//!   `max_versions` is not the default sets it as the key's KV v2
//!   `max_versions` when it writes the key's first version (one more
//!   request, once per key), so KV v2 destroys older versions as it writes;
//!   with the default, the mount's setting prunes (0, KV v2's default, is
//!   10). Whatever KV v2 keeps, the store reads no version older than its
//!   own limit. A mount with a lower `max_versions` wins (KV v2 keeps the
//!   smaller): set the store's no higher. There is no age limit
//!   (`max_age` is `None`): KV v2's `delete_version_after` counts from each
//!   version's creation, the current version's too, where the contract
//!   counts from when a version stopped being current, so the store does
//!   not offer one it cannot honour.
//! - [`get_version`](credstore_core::CredentialStore::get_version) reads
//!   `?version=N` and the key's metadata at once; the version's time must
//!   match (a version of an earlier life of the key, after a purge, is
//!   `None`), as must the retention. A soft-deleted or destroyed version,
//!   and a delete marker, are `None`.
//! - [`list_versions`](credstore_core::CredentialStore::list_versions)
//!   reads the key's metadata, pages its versions newest first (live ones
//!   only: soft-deleted, destroyed and delete markers are left out), and
//!   reads each listed version's data for its metadata and `expires_at`
//!   (values are zeroized unread). States: `expired` when its `expires_at`
//!   has passed by the store's clock; `current` for the key's current
//!   version; `deleted` for a version right before a soft-deleted one (the
//!   one current when the key was deleted; also the one before a version
//!   another tool soft-deleted); `previous` otherwise.
//! - **`delete`** cannot be KV v2's soft delete of the current version
//!   alone: KV v2 serves no data of a soft-deleted version, so the deleted
//!   value could not be read back to restore it. Instead `delete` reads the
//!   key, writes a delete marker as a new version with `cas` at the version
//!   it read (a concurrent write makes it read and try again, so no write is
//!   deleted unseen), then soft-deletes the marker (`POST
//!   {mount}/delete/{path}` with its number), so that `bao kv get` shows the
//!   key deleted. The version before the marker keeps its data: listed as
//!   `deleted`, readable by `get_version`, and
//!   [`restore`](credstore_core::CredentialStoreExt::restore)d with
//!   [`SetOptions::create_only`](credstore_core::SetOptions::create_only)
//!   it is the key again (a new version, a new `created_at`). Should the
//!   soft delete fail (a policy without it), the marker alone still makes
//!   the key missing; a warning is logged.
//! - **`purge`** destroys for real. `PurgeTarget::Key` deletes the key's
//!   metadata and every version (`DELETE {mount}/metadata/{path}`): KV v2
//!   removes their data from storage. `PurgeTarget::Version` destroys that
//!   version (`POST {mount}/destroy/{path}`), refused with
//!   `PreconditionFailed` while it is the live current version. A version
//!   past the retention or already destroyed purges nothing (`false`).
//! - Expired versions stay in the history, as `expired`, until the
//!   retention drops them; a create-only write over an expired key succeeds
//!   (with the expired version's number as `cas`).
//!
//! ## Conditional writes
//!
//! Every mode writes one version with KV v2's check-and-set parameter
//! `cas`, which Vault applies atomically: the write succeeds only if the
//! key's current version number is still `cas`.
//!
//! - Create-only sends `cas=0`, which succeeds only while the key has no
//!   version: of racing creators exactly one wins, the others get
//!   [`PreconditionFailed`](credstore_core::Error::PreconditionFailed). After
//!   a purge (metadata deleted) it succeeds at once. A key whose current
//!   version is a delete marker, was soft-deleted by another tool, or has
//!   expired is missing, so create-only writes over it with that version's
//!   number as `cas` (at once when this connection saw it so, after one
//!   read otherwise): still atomic, as the version number only grows.
//! - Replace-if-version reads the key's current version, fails unless it is
//!   live and its number and time match the expected version, then sends
//!   `cas=<number>`: of racing writers from one version exactly one wins. A
//!   missing or soft-deleted key fails the condition. It always reads first,
//!   never from what the store remembers (below), so that its condition is
//!   checked against the server.
//! - Upsert writes with `cas` set to the number of the current version as
//!   the store last saw it, carrying that version's `created_at`, so
//!   `created` and `created_at` are exact; it reads the key first only when
//!   it saw nothing of it recently. When a concurrent writer got in between,
//!   the write is refused, and it reads and tries again; after 3 attempts it
//!   writes without `cas` (so concurrent upserts all succeed).
//! - Vault's "check-and-set parameter did not match the current version" is
//!   `PreconditionFailed` for create-only and replace-if-version; for an
//!   upsert it only makes it try again.
//!
//! KV v2 counts versions from 1 again after a key's metadata is deleted, so
//! a number alone could name two writes: version 1 of a deleted credential
//! and version 1 of the new one. That is why the version text holds the
//! write's time too, and why replace-if-version compares it before it writes:
//! a version from an earlier life of the key never matches. `cas` itself only
//! takes the number, so one narrow ABA window remains: if, between the
//! replace's read and its `cas` write (one round trip), another client
//! deletes the key and writes it again up to the same number, the write goes
//! through against the new credential. Deleting a key is the only way for a
//! number to repeat; a key that is never deleted has no such window.
//!
//! Mounts and keys that require check-and-set (`cas_required`) work: every
//! write sends `cas`, except the last attempt of an upsert that lost three
//! races in a row, which then fails with a retriable
//! [`Conflict`](credstore_core::Error::Conflict).
//!
//! ## What the store remembers between calls
//!
//! Each connection (a [`VaultStore`] and the namespace handles made from it)
//! remembers, for up to 30 seconds and at most 4096 keys, what it last saw
//! of each key: its current version number and `created_at`, or that it
//! was missing. It is a hint for upserts only, never an answer: `get`,
//! `has`, `version`, `list`, create-only and replace-if-version always ask
//! the server. An upsert from the hint still sends `cas`, so a key another
//! client wrote since makes the write fail, and the upsert reads the key
//! and writes again: the value, metadata and version are always one whole
//! write, and `created_at` is kept.
//!
//! What a hint cannot see is a change that leaves the version number where
//! it was: another tool soft-deleting the current version (`bao kv
//! delete`), or another client deleting the key and writing it again up to
//! the same number, within those 30 seconds. An upsert then overwrites the
//! key as the credential it saw (`created` false, the earlier `created_at`)
//! where a fresh read would have made it a new credential. The value
//! written is the one asked for either way; only those two fields of the
//! outcome, and the `created_at` carried, follow the earlier life. Without
//! the hint, the same happens when the change falls within the one round
//! trip between the read and the write.
//!
//! # Requests per operation
//!
//! Counted by a proxy in this crate's tests (`tests/requests.rs`), which
//! fail when an operation makes more:
//!
//! | operation | HTTP requests |
//! |---|---|
//! | `get`, `has`, `version` | 1: the current version's data and version metadata |
//! | `get_many` of *n* keys | *n* `get`s, up to 16 at once: KV v2 has no batch read, so this is the provided [`get_many`](credstore_core::CredentialStore::get_many) |
//! | `set` (upsert), key seen in the last 30 s (read, written, found missing, deleted) | 1: the write, with `cas` |
//! | `set` (upsert), key not seen | 2: a read, then the write |
//! | `create` | 1: the write with `cas=0` (2 when the key exists: the refused write, then a read to tell a live key from a deleted or expired one; 3 when that read finds a soft-deleted version, whose number the key's metadata tells) |
//! | `replace` | 2: a read, then the write with `cas` |
//! | `delete` | 3: a read (did it exist?), the delete marker with `cas`, its soft delete |
//! | `list` | 1 LIST, then one read of each key's current version until the page is full (the data tells a delete marker and an expired credential; the value is zeroized unread) |
//! | `get_version` | 2, at once: the version's data and the key's metadata |
//! | `list_versions` | 1 metadata read, then one read per version on the page (8 at a time) |
//! | `purge` | 2: a metadata read, then the metadata delete (`Key`) or the destroy (`Version`; a third, a read, when it names the current version) |
//!
//! Add one metadata read to `get`, and to the read of an upsert or a
//! replace, for data without `created_at` at a version above 1 (written by
//! credstore 0.1 or another tool), until the store's first write of it
//! (`has` and `version` never need it); and one request, once per
//! connection, for the check that the mount is KV v2 (the availability probe
//! does it too). A concurrent writer costs an upsert a read and a second
//! write. AppRole and JWT logins and renewals are a request each, about
//! once per two thirds of the token's lease.
//!
//! # Authentication
//!
//! - A fixed token ([`VaultConfig::token`]), never renewed.
//! - AppRole ([`VaultConfig::approle`]): role id and secret id.
//! - JWT ([`VaultConfig::jwt`]), the method Kubernetes service-account
//!   tokens use with Vault and OpenBao (the `jwt` auth method, or the
//!   `kubernetes` one, which takes the same login): a role, and a file
//!   holding the JWT, such as a projected service-account token. The file is
//!   read at every login and never kept, so when the kubelet rotates it, the
//!   next login uses the new token. The mount is `jwt` unless
//!   [`VaultConfig::jwt_mount`] says otherwise. An expired JWT is refused by
//!   the server; the call fails with
//!   [`PermissionDenied`](credstore_core::Error::PermissionDenied) naming
//!   the server's reason and when the JWT's `exp` passed, and the next call
//!   tries again with whatever the file then holds. From the environment:
//!   `VAULT_JWT_ROLE` (which selects JWT login), `VAULT_JWT_FILE` (default
//!   [`DEFAULT_JWT_FILE`], the pod's service-account token) and
//!   `VAULT_JWT_MOUNT` (default [`DEFAULT_JWT_MOUNT`]).
//!
//! AppRole and JWT logins share one machinery: the store logs in on first
//! use, renews its token once two thirds of its lease have passed, logs in
//! again when renewal fails or would leave less than half the first lease
//! (the maximum TTL is near), and logs in again once when the server refuses
//! the token mid-call. [`VaultStore::auth_stats`] counts logins and renewals.
//! The token a login answers is checked as a configured one is: one that is
//! empty or holds anything but visible ASCII (which no HTTP header can
//! carry) fails the call with
//! [`Error::Backend`](credstore_core::Error::Backend) naming the store and
//! the login, and is not installed; the next call logs in again.
//!
//! The token needs, on `{mount}/data/{prefix}/*`, `read`, `create` and
//! `update`; on `{mount}/metadata/{prefix}/*`, `read`, `list` and `delete`
//! (and `update` when [`VaultConfig::max_versions`] is not the default);
//! on `{mount}/delete/{prefix}/*`, `update` (the soft delete of a delete
//! marker); and on `{mount}/destroy/{prefix}/*`, `update` (purging one
//! version).
//!
//! # Redirects
//!
//! The HTTP client follows no redirect. Vault's API never needs one: a
//! standby node that does not forward answers `307` to the active node, and
//! a load balancer or proxy that redirects sends the client somewhere the
//! configuration does not name. Following would send the `X-Vault-Token`
//! header (which HTTP clients do not strip across hosts, as they do
//! `Authorization`) and, for a `307` or `308`, the written value again, to
//! that other host, possibly over plain `http://`. Following only
//! same-origin redirects would be safe, but nothing in Vault's API answers
//! one, so the store does not follow any: a simpler rule to audit. A
//! redirect fails the operation with
//! [`Error::Config`](credstore_core::Error::Config) naming the store, the
//! status and the target's origin (scheme, host and port; never its path or
//! query): "vault at https://vault-2:8200 answered HTTP 307, a redirect to
//! https://vault-1:8200; the store follows no redirect, ...". Point the
//! address at the active node, or at a load balancer that forwards to it.
//! It is not retried: the same server would answer the same.
//!
//! # Secrets in memory
//!
//! What this crate holds is zeroized when dropped:
//!
//! - the token, the AppRole secret id and the JWT:
//!   [`SecretValue`](credstore_core::SecretValue)s or `Zeroizing` strings;
//!   a login's `client_token` is moved into one at once, and the copy a
//!   renewal answers is overwritten;
//! - the two plain `String` copies of the token vaultrs keeps in its client
//!   (`VaultClientSettings::token`, `EndpointMiddleware::token`): overwritten
//!   when the session holding them is dropped (a new login, a refused
//!   token, the store dropped);
//! - values read: text moved (not copied) out of the parsed answer into the
//!   returned [`SecretValue`](credstore_core::SecretValue); base64 text
//!   zeroized once decoded; everything else in the secret's data (other
//!   fields, a value refused as unreadable, the data `has` and `version`
//!   read only for its version) overwritten before it is dropped;
//! - values written: the base64 text of a binary value; a text value is
//!   borrowed, never copied, until it is serialized;
//! - the raw body of the availability probe's `lookup-self` (which answers
//!   the token) and its parsed form;
//! - Transit: the body of an encrypt request, which carries the data key
//!   (wiped once sent); the raw body of a decrypt answer, its parsed form,
//!   and the plaintext, decoded into a zeroizing buffer.
//!
//! ## What stays in memory
//!
//! Copies made below this crate, in buffers it never owns, are freed without
//! being overwritten, and may linger in freed memory until reused:
//!
//! - writes: vaultrs serializes the data into a `serde_json::Value`, rustify
//!   into the request body (`Vec<u8>`), which reqwest and hyper send and
//!   free; the token goes into an `X-Vault-Token` `HeaderValue` per request
//!   (marked sensitive, so never logged, but not wiped);
//! - reads: hyper's receive buffers and the response body rustify collects;
//!   serde_json's scratch buffer, which holds a string while it unescapes
//!   it (a value with `"`, `\` or control characters);
//! - logins: the request vaultrs builds with the AppRole secret id or the
//!   JWT, and the login's answer body;
//! - TLS: rustls encrypts from and decrypts into buffers of its own.
//!
//! Taking these over would mean replacing vaultrs's request path; the
//! HTTP stack's buffers would remain. Where freed memory must not hold a
//! secret, run with an allocator that clears freed memory.
//!
//! # Vault Transit as the key-encryption key
//!
//! An encrypting store (the embedded SQLite store, for one) seals its rows
//! under a random data key and keeps that key only wrapped by a
//! key-encryption key (see `credstore-seal`). With [`TransitKeyProvider`]
//! that key is a Transit key, which never leaves Vault or OpenBao: a copy
//! of the store's disk, or of the whole machine, holds nothing readable
//! without the server's consent.
//!
//! - Wrapping is one `POST {mount}/encrypt/{key}` of the data key, and
//!   unwrapping one `POST {mount}/decrypt/{key}`; a store unwraps once when
//!   it opens, and a read or a write makes no Transit call. The wrapped key
//!   is Transit's ciphertext (`vault:v1:...`), kept in the store's key
//!   record.
//! - Each call sends Transit's `associated_data`: the store's random uid and
//!   its data key's version. A key record copied into another store, or
//!   given another version, does not unwrap (`wrong key-encryption key`).
//!   The key must be of an AEAD type: `aes256-gcm96` (the default),
//!   `aes128-gcm96` or `chacha20-poly1305`; any other is refused by the
//!   server, and the provider says so. A server that ignores
//!   `associated_data` (it answers a warning) is refused: the binding would
//!   silently be lost.
//! - It shares everything with [`VaultStore`]: the address, TLS roots, the
//!   token, AppRole or JWT login (renewed as a store's is), the Vault
//!   namespace, the timeout over the whole call, bounded retries of
//!   retriable failures, no redirects.
//!
//! Set it up once:
//!
//! ```text
//! bao secrets enable transit
//! bao write -f transit/keys/credstore          # aes256-gcm96
//! bao write transit/config/keys disable_upsert=true
//! ```
//!
//! `disable_upsert` makes an encrypt to a key that does not exist fail
//! instead of creating it, so a mistyped `key` is an error (a token with
//! only the policy below cannot create keys either: it is refused with
//! HTTP 403). The token needs no more than:
//!
//! ```hcl
//! path "transit/encrypt/credstore" { capabilities = ["update"] }
//! path "transit/decrypt/credstore" { capabilities = ["update"] }
//! ```
//!
//! In a config file, `TransitKeySettings` (the `serde` feature) reads the
//! same server and login settings as `VaultSettings`, with `mount`
//! (default `transit`) and `key`:
//!
//! ```toml
//! address = "https://vault.example.com:8200"
//! key = "credstore"                        # the Transit key
//! mount = "transit"                        # optional
//! token_file = "/run/secrets/vault-token"  # or token_env, approle_*, jwt_*
//! ca_cert = "vault-ca.pem"                 # optional, as a store's
//! timeout_ms = 10000                       # optional, as a store's
//! ```
//!
//! **Rotating the Transit key** (`bao write -f transit/keys/credstore/rotate`,
//! or `auto_rotate_period`) needs nothing from credstore: the wrapped key
//! names the key version that wrapped it, older versions keep decrypting,
//! and the next wrap (a key-encryption key rotation of the store) uses the
//! newest. The one caveat is `min_decryption_version`: raising it above the
//! version in a store's key record makes that store fail to open with
//! [`Error::Config`](credstore_core::Error::Config) naming
//! `min_decryption_version`. Rewrap every store's data key (a key-encryption
//! key rotation) before raising it. Deleting the Transit key, or losing the
//! server's storage, loses every store whose data key it wraps.
//!
//! Errors: connection refused, a timeout, sealed, HTTP 429 or 5xx are
//! [`Unavailable`](credstore_core::Error::Unavailable) (retriable); HTTP 403
//! is [`PermissionDenied`](credstore_core::Error::PermissionDenied); a
//! missing mount or key, a key type without associated data and
//! `min_decryption_version` are [`Config`](credstore_core::Error::Config);
//! a wrapped key this Transit key did not wrap for this store is a `Config`
//! starting `wrong key-encryption key`. None holds the token or the key.
//!
//! # Example
//!
//! ```no_run
//! use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Error, Metadata, Namespace, SecretValue, StoreId};
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
//! let written = store.set(&key, &SecretValue::from("sk_live_123"), &meta).await?;
//! // Now `bao kv get -field=value secret/apps/payments/stripe-api-key` prints it.
//! let cred = store.get(&key).await?.expect("just set");
//! assert_eq!((cred.metadata.clone(), cred.version.clone()), (meta.clone(), written.version));
//!
//! // Rotate only the version we read (KV v2 check-and-set).
//! match store.replace(&key, &SecretValue::from("sk_live_456"), &meta, &cred.version).await {
//!     Ok(_) | Err(Error::PreconditionFailed { .. }) => {} // we rotated, or someone else did
//!     Err(e) => return Err(e),
//! }
//!
//! // secret/apps/payments/tenant-1/project-a/...
//! let tenant = store.with_namespace(&Namespace::new("tenant-1/project-a")?)?;
//! assert!(!tenant.has(&key).await?);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod client;
mod config;
mod errors;
mod last_seen;
mod layout;
mod store;
mod transit;
#[cfg(feature = "serde")]
mod uri;

pub use client::AuthStats;
#[cfg(feature = "serde")]
pub use config::{LoginSettings, VaultSettings};
pub use config::{
    VaultConfig, DEFAULT_JWT_FILE, DEFAULT_JWT_MOUNT, DEFAULT_MAX_VERSIONS, DEFAULT_MOUNT, DEFAULT_TIMEOUT,
};
pub use store::VaultStore;
#[cfg(feature = "serde")]
pub use transit::TransitKeySettings;
pub use transit::{TransitKeyProvider, DEFAULT_TRANSIT_MOUNT, TRANSIT_KIND};
#[cfg(feature = "serde")]
pub use uri::VaultScheme;

/// The Vault / OpenBao store's [`StoreKind`](credstore_core::StoreKind): `vault`.
pub const KIND: credstore_core::StoreKind = credstore_core::StoreKind::from_static("vault");

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
