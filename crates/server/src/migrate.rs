//! Copying every credential of one store to another (`credstore migrate`).

use std::fmt;

use credstore_core::{CredentialKey, CredentialStore, ListOptions, MAX_PAGE_SIZE};

/// What a migration did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Keys listed in the source.
    pub listed: usize,
    /// Keys written to the destination (new or different there).
    pub copied: usize,
    /// Keys already identical in the destination (value and metadata), left alone.
    pub unchanged: usize,
    /// Keys confirmed identical in the destination: the unchanged ones, and
    /// the copied ones once read back.
    pub verified: usize,
    /// Keys listed but gone from the source by the time they were read.
    pub vanished: usize,
    /// Keys that failed, with the reason (never a value).
    pub failed: Vec<(CredentialKey, String)>,
}

impl MigrationReport {
    /// Whether every listed key is now identical in the destination.
    pub fn is_complete(&self) -> bool {
        self.failed.is_empty()
    }
}

impl fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "listed {}, copied {}, already identical {}, verified {}, vanished {}, failed {}",
            self.listed,
            self.copied,
            self.unchanged,
            self.verified,
            self.vanished,
            self.failed.len()
        )
    }
}

/// Copies every credential of `from` to `to`, with its metadata, and
/// verifies each copy by reading it back.
///
/// # Behavior
/// - Safe to re-run: a key whose value and metadata are already identical in
///   `to` is not written again; a different one is overwritten.
/// - Keys are never deleted from `to`; keys only in `to` stay.
/// - `createdAt` in `to` is the time of the copy (stores set their own
///   timestamps).
/// - A failure on one key is recorded and the rest go on.
///
/// # Errors
/// Listing `from` fails; per-key failures are in the report instead.
pub async fn migrate(
    from: &dyn CredentialStore,
    to: &dyn CredentialStore,
) -> credstore_core::Result<MigrationReport> {
    let mut report = MigrationReport::default();
    let mut opts = ListOptions::new().with_limit(MAX_PAGE_SIZE)?;
    loop {
        let page = from.list(&opts).await?;
        for key in page.keys {
            report.listed += 1;
            if let Err(reason) = copy_one(from, to, &key, &mut report).await {
                tracing::warn!(key = %key, %reason, "migration of one key failed");
                report.failed.push((key, reason));
            }
        }
        match page.next_cursor {
            Some(c) => opts = opts.with_cursor(Some(c)),
            None => break,
        }
    }
    Ok(report)
}

async fn copy_one(
    from: &dyn CredentialStore,
    to: &dyn CredentialStore,
    key: &CredentialKey,
    report: &mut MigrationReport,
) -> Result<(), String> {
    let Some(src) = from.get(key).await.map_err(|e| format!("read from '{}': {e}", from.id()))? else {
        report.vanished += 1;
        return Ok(());
    };
    let existing = to.get(key).await.map_err(|e| format!("read from '{}': {e}", to.id()))?;
    if existing.is_some_and(|d| d.value == src.value && d.metadata == src.metadata) {
        report.unchanged += 1;
        report.verified += 1;
        return Ok(());
    }
    to.set(key, &src.value, &src.metadata).await.map_err(|e| format!("write to '{}': {e}", to.id()))?;
    report.copied += 1;
    match to.get(key).await.map_err(|e| format!("read back from '{}': {e}", to.id()))? {
        Some(d) if d.value == src.value && d.metadata == src.metadata => {
            report.verified += 1;
            Ok(())
        }
        Some(_) => Err("the copy read back differs from the source".into()),
        None => Err("the copy is missing when read back".into()),
    }
}
