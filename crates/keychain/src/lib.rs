//! The operating system's credential store as a credstore backend: Linux
//! kernel keyutils and the Secret Service, the macOS Keychain, the Windows
//! Credential Manager.
//!
//! - One [`KeychainStore`] per store id, over the platform store
//!   [`KeychainConfig`] names ([`Platform`]; by default the target's usual
//!   one: Keychain, Credential Manager, Secret Service on Linux).
//! - [`KeychainStore::new`] makes no platform call;
//!   [`check_availability`](credstore_core::CredentialStore::check_availability)
//!   answers with the platform's own cause: "no Secret Service provider
//!   (org.freedesktop.secrets) on the session bus", "collection 'default'
//!   is locked", "the kernel's key quota for this user is exhausted
//!   (EDQUOT)", "the kernel refused the keyutils system call (EPERM: a
//!   seccomp profile ...)". Operations fail with the same reasons as
//!   [`Error::Unavailable`](credstore_core::Error::Unavailable) (retriable)
//!   or [`Error::PermissionDenied`](credstore_core::Error::PermissionDenied).
//! - Every platform call runs under the configured timeout (default 5 s);
//!   the store never shows a prompt (a locked collection is reported, not
//!   unlocked).
//!
//! # Layout
//!
//! Every platform keeps a credential as one entry named by a **service** and
//! an **account**, the names keychain tools show:
//!
//! - service: `credstore:{store id}` for the root namespace,
//!   `credstore:{store id}:{namespace}` for a namespace handle
//!   ([`KeychainStore::service_name`]); neither part can hold a `:`, so no
//!   two stores or namespaces share a service;
//! - account: the credential key.
//!
//! So what separates two stores is the store id, held in the service name:
//! stores with different ids never share keys, and stores opened with the
//! same id over the same platform store (and keyring or collection) share
//! theirs, from any process of the user (the `credstore` CLI and a server
//! reach one store so).
//!
//! The entry's secret holds the value, metadata, timestamps and version
//! together, so a write is one platform call and a value never pairs with
//! another write's metadata: a header line, then the value.
//!
//! ```text
//! credstore/1 {"v":"9f3c0a1b2c3d4e5f","c":1764580000123456789,"u":1764580000123456789,"m":{"owner":"ci"}}
//! the value's bytes, as they are
//! ```
//!
//! - `v` is the version (16 hex digits, new on every write), `c` and `u`
//!   are `created_at` and `updated_at` in nanoseconds since the Unix epoch,
//!   `m` the metadata (left out when empty), `x` when the credential
//!   expires, in nanoseconds (left out when it never does: every entry
//!   written before expiry existed reads as never expiring).
//! - The value follows the newline byte for byte, so text stays readable:
//!   `secret-tool lookup service credstore:laptop account github-token | tail -n +2`.
//!   Empty values are fine (the entry is never empty, which keyutils and
//!   some providers refuse). On the Secret Service a value that is not
//!   UTF-8 is written as base64 and the header says `"e":"base64"`,
//!   because KWallet keeps text only; elsewhere bytes are stored as is.
//! - An item under the same names in another layout reads as
//!   [`Error::Integrity`](credstore_core::Error::Integrity) (its bytes are
//!   never shown) and is overwritten by a write.
//!
//! ## Kernel keyutils
//!
//! ```text
//! parent keyring (@u by default, or @s, the persistent keyring, a serial)
//! └── keyring "credstore:{store}[:{namespace}]"
//!     └── keyring "{key}"
//!         ├── user "0"   the entry's first 32,767 bytes
//!         └── user "1"   the rest (a user key holds at most 32,767 bytes)
//! ```
//!
//! `keyctl show @u` shows the tree; `keyctl print` on chunk `0` prints the
//! header and the value. A write builds the credential's keyring in a
//! staging keyring of the process and moves it into place with one
//! `KEYCTL_MOVE` (Linux 5.1), so readers see the old entry or the new one;
//! a create-only write passes `KEYCTL_MOVE_EXCL`, which the kernel refuses
//! atomically when the key exists. Keys get the permissions
//! possessor+owner: all, others: none, so every process of the user reaches
//! a store in `@u`. A credential costs two keys and its entry's bytes of
//! the user's key quota (`/proc/key-users`). Root's quota is large; a
//! non-root user has 200 keys and 20,000 bytes by default, so a value over
//! about 19,000 bytes does not fit it and the write fails with
//! [`Error::Unavailable`](credstore_core::Error::Unavailable) naming
//! `EDQUOT` (raise `/proc/sys/kernel/keys/maxbytes`, or use the Secret
//! Service for large values). A key that starts with `.` is named `~.…`,
//! because the kernel reserves keyring names starting with `.`.
//!
//! ## Secret Service
//!
//! One item per credential in the collection of the configured alias
//! (default `default`, the login keyring), with attributes `service` and
//! `account`, label `{key} ({service})`, content type `text/plain`. A write
//! is one `CreateItem` call with `replace`; the secret travels encrypted
//! (the `dh-ietf1024-sha256-aes128-cbc-pkcs7` session). Listing searches
//! the collection for `service`.
//!
//! ## macOS Keychain, Windows Credential Manager
//!
//! A generic password (service, account) in the login keychain; a generic
//! credential with target `{key}.{service}` and user name `{key}`. The
//! Credential Manager holds at most 2,560 bytes per credential: larger
//! entries fail with [`Error::Backend`](credstore_core::Error::Backend).
//!
//! # The keychain as a key-encryption key
//!
//! [`KeychainKeyProvider`] (Unix targets) keeps an encrypting store's
//! key-encryption key in the keychain, as the entry `credstore-kek` /
//! `{entry}`: see its docs and [`KeychainKeySettings`] for where each
//! platform keeps it and for how long. Kernel keyutils loses it at reboot
//! (or sooner), so it is refused there unless explicitly accepted.
//!
//! # Secrets in memory
//!
//! Entries are built and read back in zeroizing buffers and handed out as
//! [`SecretValue`](credstore_core::SecretValue)s. The platform libraries
//! (zbus and the Secret Service session's encryption, keyring-core and the
//! native APIs) copy the entry into buffers of their own that this crate
//! cannot zeroize; the kernel keeps keyutils payloads in kernel memory.
//! No error or log line holds an entry's bytes: an entry that cannot be
//! decoded is reported without them.
//!
//! # What each platform supports
//!
//! | | persistence | list | create-only | replace-if-version | expiry |
//! |---|---|---|---|---|---|
//! | kernel keyutils | until reboot | reads the keyring | `KEYCTL_MOVE_EXCL` | no | kernel key timeout, and the store's clock |
//! | Secret Service | durable | attribute search | no | no | the store's clock |
//! | macOS Keychain | durable | search by service | no | no | the store's clock |
//! | Windows Credential Manager | durable | no | no | no | the store's clock |
//!
//! **Expiry.** Every platform keeps a credential's `expires_at` in its
//! entry's header (`x`), and the store decides by its
//! [`clock`](KeychainConfig::clock) that a key past it reads as absent:
//! `get`, `has` and `version` answer as for a missing key, `list` leaves it
//! out (reading each listed entry's header: one platform read per key), a
//! write over it creates the key anew (on keyutils a create-only write
//! clears the expired keyring, only if it is still that one, and moves its
//! own in with `KEYCTL_MOVE_EXCL` again), and `delete` clears it away and
//! answers `false`. On kernel keyutils the credential's keyring and its
//! chunks also get a kernel key timeout, the time left by the store's clock
//! rounded up to whole seconds, set before the keyring is moved into place:
//! the kernel frees the keys by itself (`keyctl show` shows them until
//! then; `/proc/keys` shows the time left).
//!
//! **Batch reads.** No platform reads several entries in one call:
//! [`get_many`](credstore_core::CredentialStore::get_many) is the provided
//! method, one `get` per key, up to
//! [`BATCH_CONCURRENCY`](credstore_core::BATCH_CONCURRENCY) at once.
//!
//! **No history.** No platform keeps an entry's earlier versions, so
//! [`versions`](credstore_core::Capabilities::versions) is declared off
//! everywhere: [`get_version`](credstore_core::CredentialStore::get_version)
//! and [`list_versions`](credstore_core::CredentialStore::list_versions)
//! answer [`Error::Unsupported`](credstore_core::Error::Unsupported), and a
//! purge of a key is its delete.
//!
//! No platform can compare and swap an entry, so replace-if-version writes
//! are declared off everywhere (refused with
//! [`Error::Unsupported`](credstore_core::Error::Unsupported) before any
//! call); the Secret Service's `CreateItem` either replaces or adds a
//! duplicate, so it has no atomic create-only either. Metadata and binary
//! values are supported everywhere.
//!
//! # What is tested where
//!
//! - Linux, in CI (`tests/`):
//!   - `conformance_keyutils`: the whole conformance suite on kernel
//!     keyutils, in a session keyring of the test binary's own; nothing else
//!     is written, and the end of the run checks that nothing is left (no
//!     key outside the layout, an empty keyring once cleared, no staging
//!     keyring).
//!   - `conformance_secret_service`: the whole suite on the Secret Service,
//!     against `gnome-keyring-daemon` on a private D-Bus bus the tests start
//!     (and that dies with them); skipped loudly when the Debian packages
//!     are missing, a failure under `CI=true`. `scripts/test-tools`
//!     installs them when run as root.
//!   - `faults`: no provider on the bus, a locked collection, the keyutils
//!     quota exhausted (as the user `nobody` when run as root), a seccomp
//!     filter refusing `add_key`: each `available: false` with the cause, a
//!     retriable [`Error::Unavailable`](credstore_core::Error::Unavailable),
//!     and nothing stored lost.
//!   - `layout`: the keyring tree as `keyctl` shows it, the items as
//!     `secret-tool` shows them.
//!   - `expiry`: on keyutils, the kernel timeout in `/proc/keys`; on both,
//!     a credential present one nanosecond before its `expires_at` and
//!     absent from it on, by a `ManualClock`. The conformance suites' time
//!     cases run on a `ManualClock` too (`create_on_clock`).
//!   - `kek`: [`KeychainKeyProvider`] on keyutils and the Secret Service:
//!     data keys wrapped and unwrapped through `credstore_seal::KeyRecord`,
//!     the key created by the first wrap and used by a second provider,
//!     racing creators, a deleted entry, another entry's key, an entry
//!     holding two keys, a locked or absent Secret Service.
//! - macOS and Windows: type-checked only (`cargo check` / `cargo clippy
//!   --target aarch64-apple-darwin`, `--target x86_64-pc-windows-msvc`);
//!   the layout, timeouts and error translation are the code that runs on
//!   Linux, the platform calls are keyring-core's.
//!
//! # Example
//!
//! ```no_run
//! use credstore_core::{CredentialKey, CredentialStore, CredentialStoreExt, Metadata, SecretValue, StoreId};
//! use credstore_keychain::{KeychainConfig, KeychainStore};
//!
//! # async fn demo() -> credstore_core::Result<()> {
//! let store = KeychainStore::new(StoreId::new("laptop")?, KeychainConfig::new())?;
//! let key = CredentialKey::new("github-token")?;
//! store.set(&key, &SecretValue::from("ghp_example"), &Metadata::new()).await?;
//! assert_eq!(store.get(&key).await?.expect("just set").value.expose_str()?, "ghp_example");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod errors;
#[cfg(unix)]
mod kek;
mod layout;
mod platform;
mod store;
#[cfg(feature = "serde")]
mod uri;

#[cfg(target_os = "linux")]
mod keyutils;
#[cfg(any(target_os = "macos", target_os = "windows"))]
mod native;
#[cfg(all(target_os = "linux", feature = "secret-service"))]
mod secret_service;

#[cfg(feature = "serde")]
pub use config::KeychainSettings;
pub use config::{KeychainConfig, KeyutilsKeyring, Platform, SecretServiceOptions, DEFAULT_TIMEOUT};
#[cfg(unix)]
#[cfg_attr(docsrs, doc(cfg(unix)))]
pub use kek::{KeychainKeyProvider, KeychainKeySettings, KEK_PROVIDER_KIND, KEK_SERVICE};
pub use store::KeychainStore;
#[cfg(feature = "serde")]
pub use uri::KeychainScheme;

/// The keychain store's [`StoreKind`](credstore_core::StoreKind): `keychain`.
pub const KIND: credstore_core::StoreKind = credstore_core::StoreKind::from_static("keychain");

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
