//! The one internal interface each platform store implements: entries by
//! service name and account, as bytes in the layout of `layout.rs`.

use std::fmt;
use std::time::Duration;

use credstore_core::{async_trait, Capabilities};
use zeroize::Zeroizing;

use crate::errors::{Kind, PResult};
use crate::layout::ValueEncoding;

#[async_trait]
pub(crate) trait Platform: Send + Sync + fmt::Debug + 'static {
    /// How messages name the platform: `kernel keyutils`, `Secret Service`.
    fn name(&self) -> &'static str;

    /// What the store declares on this platform.
    fn capabilities(&self) -> Capabilities;

    /// How values are written in entries.
    fn encoding(&self) -> ValueEncoding;

    /// The entry of `account` in `service`, if any.
    async fn read(&self, service: &str, account: &str) -> PResult<Option<Zeroizing<Vec<u8>>>>;

    /// Whether an entry exists for `account`, without reading it where the
    /// platform can tell.
    async fn exists(&self, service: &str, account: &str) -> PResult<bool> {
        Ok(self.read(service, account).await?.is_some())
    }

    /// Writes the entry in one platform call. With `create_only`, fails with
    /// `Kind::Exists` when the account exists (only platforms that declare
    /// `create_only` are asked).
    async fn write(&self, service: &str, account: &str, entry: &[u8], create_only: bool) -> PResult<()>;

    /// [`Platform::write`] of an entry that expires in `ttl` (by the
    /// store's clock; the store enforces it whatever the platform does).
    /// Platforms that can drop an entry themselves when it expires
    /// (kernel keyutils' key timeouts) override it; the others write the
    /// entry as is.
    async fn write_expiring(
        &self,
        service: &str,
        account: &str,
        entry: &[u8],
        create_only: bool,
        ttl: Option<Duration>,
    ) -> PResult<()> {
        let _ = ttl;
        self.write(service, account, entry, create_only).await
    }

    /// Deletes the entry of `account` only while it is still `entry` (an
    /// expired entry being cleared away, never a newer write); whether it
    /// was. Platforms that can tell one entry from its replacement (kernel
    /// keyutils, by the serial of the credential's keyring) decide
    /// atomically; the others read, compare, then delete.
    async fn delete_entry(&self, service: &str, account: &str, entry: &[u8]) -> PResult<bool> {
        match self.read(service, account).await? {
            Some(now) if now.as_slice() == entry => self.delete(service, account).await,
            _ => Ok(false),
        }
    }

    /// Every entry of `account`: more than one only where the platform
    /// keeps duplicates (the Secret Service, after concurrent
    /// [`Platform::add`]s).
    async fn read_all(&self, service: &str, account: &str) -> PResult<Vec<Zeroizing<Vec<u8>>>> {
        Ok(self.read(service, account).await?.into_iter().collect())
    }

    /// Adds the entry without ever replacing one; `false` when one exists.
    /// Platforms with create-only writes (kernel keyutils) decide
    /// atomically; the others check, then write, so an entry added by
    /// another process in between is replaced (the Secret Service overrides
    /// this to add a second item instead).
    async fn add(&self, service: &str, account: &str, entry: &[u8]) -> PResult<bool> {
        if !self.capabilities().create_only && self.exists(service, account).await? {
            return Ok(false);
        }
        match self.write(service, account, entry, true).await {
            Ok(()) => Ok(true),
            Err(f) if f.kind == Kind::Exists => Ok(false),
            Err(f) => Err(f),
        }
    }

    /// Deletes the entry; whether it existed.
    async fn delete(&self, service: &str, account: &str) -> PResult<bool>;

    /// Every account in `service` (only platforms that declare `list` are asked).
    async fn list(&self, service: &str) -> PResult<Vec<String>>;

    /// Whether the platform can serve now, with its own cause when not.
    async fn probe(&self) -> PResult<()>;
}
