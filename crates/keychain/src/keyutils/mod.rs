//! The Linux kernel key retention service (keyutils) as a platform.
//!
//! Layout, inside the configured parent keyring (see
//! [`KeyutilsKeyring`](crate::KeyutilsKeyring)):
//!
//! ```text
//! parent (@u, @s, the persistent keyring, or a keyring by serial)
//! └── keyring "credstore:{store}[:{namespace}]"     one per store namespace
//!     └── keyring "{key}"                          one per credential (`~{key}`
//!                                                  for a key that starts with `.`)
//!         ├── user "0"   the entry's first 32,767 bytes
//!         └── user "1"   the rest, if any (at most 3 chunks)
//! ```
//!
//! A write builds the credential's keyring and its chunks in a staging
//! keyring of the process, then moves it into the namespace keyring with one
//! `KEYCTL_MOVE`: readers see the old entry or the new one, never a mix.
//! Create-only writes pass `KEYCTL_MOVE_EXCL`, so the kernel refuses the
//! move atomically when the key exists. A credential written with an expiry
//! gets a kernel timeout on its keyring (and chunks), set in the staging
//! keyring before the move, rounded up to whole seconds: the kernel drops
//! it by itself once it expired, while the store decides by its own clock
//! that it reads as absent from the exact instant.

pub(crate) mod sys;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use credstore_core::{async_trait, Capabilities, Persistence};
use zeroize::Zeroizing;

use crate::errors::{Failure, Kind, PResult};
use crate::layout::ValueEncoding;
use crate::platform::Platform;
use crate::KeyutilsKeyring;
use sys::Serial;

/// How many times an operation is retried when a concurrent write replaced
/// the keyring it was reading.
const ATTEMPTS: usize = 5;

/// The keyutils platform.
#[derive(Debug)]
pub(crate) struct Keyutils {
    keyring: KeyutilsKeyring,
}

impl Keyutils {
    pub(crate) fn new(keyring: KeyutilsKeyring) -> Self {
        Self { keyring }
    }

    /// The parent keyring's id for system calls.
    fn parent(&self) -> PResult<Serial> {
        match self.keyring {
            KeyutilsKeyring::User => Ok(sys::USER_KEYRING),
            KeyutilsKeyring::Session => Ok(sys::SESSION_KEYRING),
            KeyutilsKeyring::Persistent => sys::persistent_keyring(sys::SESSION_KEYRING)
                .map_err(|e| failure(e, "cannot get the persistent keyring")),
            KeyutilsKeyring::Serial(id) => Ok(id),
        }
    }

    /// The namespace keyring, if it exists. A parent keyring that does not
    /// exist is an error, not an empty store.
    fn namespace_ring(&self, service: &str) -> PResult<Option<Serial>> {
        let parent = self.parent()?;
        let ring = found(sys::search(parent, sys::KEYRING, service), "cannot search the parent keyring")?;
        if ring.is_none() {
            Self::check_parent(parent)?;
        }
        Ok(ring)
    }

    /// Whether the parent keyring exists and can be used.
    fn check_parent(parent: Serial) -> PResult<()> {
        let id = match parent {
            sys::USER_KEYRING | sys::SESSION_KEYRING => sys::keyring_id(parent, true),
            serial => sys::keyring_id(serial, false),
        };
        id.map(drop).map_err(|e| failure(e, "the parent keyring is not usable"))
    }

    /// The namespace keyring, created if missing (atomically, so two
    /// processes creating it at once end up sharing one).
    fn ensure_namespace_ring(&self, service: &str) -> PResult<Serial> {
        for _ in 0..ATTEMPTS {
            if let Some(ring) = self.namespace_ring(service)? {
                return Ok(ring);
            }
            let parent = self.parent()?;
            let stage = Stage::new()?;
            let ring = sys::add_key(sys::KEYRING, service, None, stage.0)
                .map_err(|e| failure(e, "cannot create the namespace keyring"))?;
            sys::set_perm(ring, sys::PERM_OWNER_ALL)
                .map_err(|e| failure(e, "cannot set keyring permissions"))?;
            match sys::move_key(ring, stage.0, parent, sys::MOVE_EXCL) {
                Ok(()) => return Ok(ring),
                // Another writer created it first: use theirs.
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                Err(e) => return Err(failure(e, "cannot link the namespace keyring into its parent")),
            }
        }
        Err(Failure::new(Kind::Unavailable, "the namespace keyring kept changing under concurrent writers"))
    }

    /// Reads the entry of the credential keyring `cred`.
    fn read_cred(cred: Serial) -> io::Result<Zeroizing<Vec<u8>>> {
        let mut chunks: Vec<(usize, Zeroizing<Vec<u8>>)> = Vec::new();
        for key in sys::links(cred)? {
            let desc = sys::describe(key)?;
            let mut parts = desc.splitn(5, ';');
            let (ktype, name) = (parts.next(), parts.nth(3));
            let Some(index) = name.and_then(|n| n.parse::<usize>().ok()).filter(|_| ktype == Some("user"))
            else {
                continue;
            };
            chunks.push((index, sys::read(key)?));
        }
        chunks.sort_by_key(|(i, _)| *i);
        if chunks.iter().enumerate().any(|(want, (i, _))| *i != want) {
            // A chunk is missing: the keyring is being torn down.
            return Err(io::Error::from_raw_os_error(libc::ENOKEY));
        }
        let mut out = Zeroizing::new(Vec::with_capacity(chunks.iter().map(|(_, c)| c.len()).sum()));
        for (_, chunk) in &chunks {
            out.extend_from_slice(chunk);
        }
        Ok(out)
    }
}

/// A staging keyring of this process, invalidated when dropped: whatever a
/// failed write left in it goes with it, and it dies with the process.
struct Stage(Serial);

impl Stage {
    fn new() -> PResult<Self> {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!("credstore-stage-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        sys::add_key(sys::KEYRING, &name, None, sys::PROCESS_KEYRING)
            .map(Self)
            .map_err(|e| failure(e, "cannot create a staging keyring"))
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = sys::invalidate(self.0);
    }
}

/// The description of a credential's keyring: the key, with `~` before a
/// key that starts with `.` (the kernel reserves keyring names starting
/// with `.`; `~` is in no key, so nothing collides).
fn cred_name(account: &str) -> std::borrow::Cow<'_, str> {
    if account.starts_with('.') {
        format!("~{account}").into()
    } else {
        account.into()
    }
}

/// The key named by a credential keyring's description.
fn account_of(name: &str) -> &str {
    name.strip_prefix('~').unwrap_or(name)
}

/// Whether an error means "that key is not there (any more)".
fn is_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOKEY | libc::EKEYREVOKED | libc::EKEYEXPIRED | libc::ENOENT))
}

/// `Ok(None)` for a missing key.
fn found(res: io::Result<Serial>, what: &str) -> PResult<Option<Serial>> {
    match res {
        Ok(s) => Ok(Some(s)),
        Err(e) if is_gone(&e) => Ok(None),
        Err(e) => Err(failure(e, what)),
    }
}

/// The keyring of credential `account` in namespace keyring `ns`, `None`
/// when there is none.
fn find_cred(ns: Serial, account: &str) -> PResult<Option<Serial>> {
    found(sys::search(ns, sys::KEYRING, &cred_name(account)), "cannot search the keyring")
}

/// A key timeout for `ttl`: whole seconds, rounded up (the kernel never
/// drops an entry before the store would call it expired), at least 1 (0
/// clears a timeout), at most `u32::MAX`.
fn timeout_secs(ttl: Duration) -> u32 {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
}

/// Names a refused keyutils call with the kernel's own cause.
pub(crate) fn failure(e: io::Error, what: &str) -> Failure {
    let errno = e.raw_os_error().unwrap_or(0);
    let (kind, cause) = match errno {
        libc::EDQUOT => (Kind::Unavailable, "the kernel's key quota for this user is exhausted (EDQUOT; see /proc/key-users and /proc/sys/kernel/keys/maxkeys, maxbytes)".to_owned()),
        libc::ENOSYS => (Kind::Unavailable, "the kernel refused the keyutils system call (ENOSYS: no key support, or a seccomp profile blocks add_key/keyctl)".to_owned()),
        libc::EPERM => (Kind::Unavailable, "the kernel refused the keyutils system call (EPERM: a seccomp profile or security module blocks add_key/keyctl)".to_owned()),
        libc::EACCES => (Kind::Denied, "the kernel denied access to the keyring (EACCES)".to_owned()),
        libc::ENOKEY | libc::EKEYREVOKED | libc::EKEYEXPIRED => {
            (Kind::Unavailable, format!("the keyring does not exist or was revoked ({e})"))
        }
        libc::ENOMEM => (Kind::Unavailable, "the kernel is out of memory for keys (ENOMEM)".to_owned()),
        libc::EOPNOTSUPP => (Kind::Config, "the parent is not a keyring (EOPNOTSUPP)".to_owned()),
        _ => (Kind::Other, e.to_string()),
    };
    Failure::new(kind, format!("{what}: {cause}")).with_source(e)
}

#[async_trait]
impl Platform for Keyutils {
    fn name(&self) -> &'static str {
        "kernel keyutils"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::full()
            .with_persistence(Persistence::UntilReboot)
            .with_replace_if_version(false)
            .with_expiry(true)
    }

    fn encoding(&self) -> ValueEncoding {
        ValueEncoding::Raw
    }

    async fn read(&self, service: &str, account: &str) -> PResult<Option<Zeroizing<Vec<u8>>>> {
        let Some(ns) = self.namespace_ring(service)? else { return Ok(None) };
        for _ in 0..ATTEMPTS {
            let Some(cred) = find_cred(ns, account)? else {
                return Ok(None);
            };
            match Self::read_cred(cred) {
                Ok(bytes) => return Ok(Some(bytes)),
                // Replaced or deleted while we read it: look again.
                Err(e) if is_gone(&e) => continue,
                Err(e) => return Err(failure(e, "cannot read the credential")),
            }
        }
        Err(Failure::new(Kind::Unavailable, "the credential kept changing under concurrent writers"))
    }

    async fn exists(&self, service: &str, account: &str) -> PResult<bool> {
        let Some(ns) = self.namespace_ring(service)? else { return Ok(false) };
        Ok(find_cred(ns, account)?.is_some())
    }

    async fn write(&self, service: &str, account: &str, entry: &[u8], create_only: bool) -> PResult<()> {
        self.write_expiring(service, account, entry, create_only, None).await
    }

    async fn write_expiring(
        &self,
        service: &str,
        account: &str,
        entry: &[u8],
        create_only: bool,
        ttl: Option<Duration>,
    ) -> PResult<()> {
        let timeout = ttl.map(timeout_secs);
        let ns = self.ensure_namespace_ring(service)?;
        let stage = Stage::new()?;
        let cred = sys::add_key(sys::KEYRING, &cred_name(account), None, stage.0)
            .map_err(|e| failure(e, "cannot create the credential keyring"))?;
        sys::set_perm(cred, sys::PERM_OWNER_ALL).map_err(|e| failure(e, "cannot set keyring permissions"))?;
        for (i, chunk) in entry.chunks(sys::MAX_USER_PAYLOAD).enumerate() {
            let key = sys::add_key(sys::USER, &i.to_string(), Some(chunk), cred)
                .map_err(|e| failure(e, "cannot add the credential's key"))?;
            sys::set_perm(key, sys::PERM_OWNER_ALL).map_err(|e| failure(e, "cannot set key permissions"))?;
            if let Some(secs) = timeout {
                sys::set_timeout(key, secs).map_err(|e| failure(e, "cannot set the key's timeout"))?;
            }
        }
        if let Some(secs) = timeout {
            sys::set_timeout(cred, secs).map_err(|e| failure(e, "cannot set the keyring's timeout"))?;
        }
        let flags = if create_only { sys::MOVE_EXCL } else { 0 };
        match sys::move_key(cred, stage.0, ns, flags) {
            Ok(()) => Ok(()),
            Err(e) if create_only && e.raw_os_error() == Some(libc::EEXIST) => {
                Err(Failure::new(Kind::Exists, "the key exists"))
            }
            Err(e) => Err(failure(e, "cannot move the credential into its keyring")),
        }
    }

    /// Atomic by serial: the credential keyring read is the one unlinked,
    /// or nothing is (a write in between moved in a keyring of its own).
    async fn delete_entry(&self, service: &str, account: &str, entry: &[u8]) -> PResult<bool> {
        let Some(ns) = self.namespace_ring(service)? else { return Ok(false) };
        let Some(cred) = find_cred(ns, account)? else { return Ok(false) };
        match Self::read_cred(cred) {
            Ok(bytes) if bytes.as_slice() == entry => {}
            Ok(_) => return Ok(false),
            Err(e) if is_gone(&e) => return Ok(false),
            Err(e) => return Err(failure(e, "cannot read the credential")),
        }
        match sys::unlink(cred, ns) {
            Ok(()) => {
                let _ = sys::invalidate(cred);
                Ok(true)
            }
            Err(e) if is_gone(&e) => Ok(false),
            Err(e) => Err(failure(e, "cannot unlink the credential")),
        }
    }

    async fn delete(&self, service: &str, account: &str) -> PResult<bool> {
        let Some(ns) = self.namespace_ring(service)? else { return Ok(false) };
        for _ in 0..ATTEMPTS {
            let Some(cred) = find_cred(ns, account)? else {
                return Ok(false);
            };
            match sys::unlink(cred, ns) {
                Ok(()) => {
                    // Free its quota now rather than at garbage collection.
                    let _ = sys::invalidate(cred);
                    return Ok(true);
                }
                // A concurrent write replaced it: delete the new one.
                Err(e) if is_gone(&e) => continue,
                Err(e) => return Err(failure(e, "cannot unlink the credential")),
            }
        }
        Err(Failure::new(Kind::Unavailable, "the credential kept changing under concurrent writers"))
    }

    async fn list(&self, service: &str) -> PResult<Vec<String>> {
        let Some(ns) = self.namespace_ring(service)? else { return Ok(Vec::new()) };
        let links = match sys::links(ns) {
            Ok(l) => l,
            Err(e) if is_gone(&e) => return Ok(Vec::new()),
            Err(e) => return Err(failure(e, "cannot read the keyring")),
        };
        let mut keys = Vec::with_capacity(links.len());
        for link in links {
            let desc = match sys::describe(link) {
                Ok(d) => d,
                Err(e) if is_gone(&e) => continue,
                Err(e) => return Err(failure(e, "cannot describe a key")),
            };
            let mut parts = desc.splitn(5, ';');
            if parts.next() == Some("keyring") {
                if let Some(name) = parts.nth(3) {
                    keys.push(account_of(name).to_owned());
                }
            }
        }
        Ok(keys)
    }

    async fn probe(&self) -> PResult<()> {
        Self::check_parent(self.parent()?)?;
        // A small key added and dropped: the kernel answers quota and seccomp
        // refusals the way a write would meet them.
        // It costs what the smallest write costs: a staging keyring, a
        // credential keyring and one key.
        let stage = Stage::new()?;
        let ring = sys::add_key(sys::KEYRING, "probe", None, stage.0)
            .map_err(|e| failure(e, "cannot add a keyring"))?;
        sys::add_key(sys::USER, "0", Some(b"1"), ring).map_err(|e| failure(e, "cannot add a key"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_to_whole_seconds_and_never_clear() {
        assert_eq!(timeout_secs(Duration::from_secs(60)), 60);
        assert_eq!(timeout_secs(Duration::from_millis(60_001)), 61);
        assert_eq!(timeout_secs(Duration::from_nanos(1)), 1);
        assert_eq!(timeout_secs(Duration::ZERO), 1);
        assert_eq!(timeout_secs(Duration::from_secs(u64::MAX)), u32::MAX);
    }
}
