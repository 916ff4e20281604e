//! Copying every credential of one store to another (`credstore migrate`).

use std::fmt;

use credstore_core::{
    CredentialKey, CredentialStore, CredentialStoreExt, Error, ListOptions, SetOptions, MAX_PAGE_SIZE,
};

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
/// - Values are copied as bytes: text and binary values arrive exactly as
///   they are in `from`. A binary value for a store that does not hold
///   binary values fails that key (`Unsupported`), never a lossy copy.
/// - Safe to re-run: a key whose value and metadata are already identical in
///   `to` is not written again; a different one is overwritten.
/// - Versions are not copied (each store makes its own), but they guard the
///   copy: where `to` supports it, a missing key is written create-only and
///   a different one is replaced only at the version just read, so a write
///   to `to` that lands during the migration is never overwritten; that key
///   fails instead ("changed during the migration"), and a re-run copies it.
/// - Keys are never deleted from `to`; keys only in `to` stay.
/// - `createdAt` in `to` is the time of the copy (stores set their own
///   timestamps).
/// - A failure on one key is recorded and the rest go on.
/// - `progress` is called with the report so far after each key
///   (`credstore migrate` draws it on a terminal).
///
/// # Errors
/// Listing `from` fails; per-key failures are in the report instead.
pub async fn migrate(
    from: &dyn CredentialStore,
    to: &dyn CredentialStore,
    mut progress: impl FnMut(&MigrationReport),
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
            progress(&report);
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
    if existing.as_ref().is_some_and(|d| d.value == src.value && d.metadata == src.metadata) {
        report.unchanged += 1;
        report.verified += 1;
        return Ok(());
    }
    let caps = to.capabilities();
    let options = match &existing {
        None if caps.create_only => SetOptions::create_only(),
        Some(d) if caps.replace_if_version => SetOptions::replace(d.version.clone()),
        _ => SetOptions::new(),
    };
    match to.set_opts(key, &src.value, &src.metadata, &options).await {
        Ok(_) => {}
        Err(Error::PreconditionFailed { .. }) => {
            return Err(format!("'{}' changed during the migration; run it again", to.id()));
        }
        Err(e) => return Err(format!("write to '{}': {e}", to.id())),
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use credstore_core::{Metadata, SecretValue, StoreId};
    use credstore_memory::MemoryStore;

    use super::*;

    fn store(id: &str) -> Arc<dyn CredentialStore> {
        Arc::new(MemoryStore::new(StoreId::new(id).unwrap()))
    }

    #[tokio::test]
    async fn copies_bytes_metadata_and_is_idempotent() {
        let (from, to) = (store("from"), store("to"));
        let every_byte: Vec<u8> = (0..=255u8).rev().collect();
        let not_utf8 = vec![b'a', 0xc3, 0x28, 0xff];
        let mut meta = Metadata::new();
        meta.insert("owner", "payments").unwrap();
        let values = [
            ("text", SecretValue::from("hunter2")),
            ("every-byte", SecretValue::from(every_byte.clone())),
            ("not-utf8", SecretValue::from(not_utf8.clone())),
        ];
        for (k, v) in &values {
            from.set(&CredentialKey::new(*k).unwrap(), v, &meta).await.unwrap();
        }
        // One key already differs in the destination: it is replaced.
        let stale = CredentialKey::new("text").unwrap();
        to.set(&stale, &SecretValue::from("old"), &Metadata::new()).await.unwrap();

        let mut seen = Vec::new();
        let report = migrate(from.as_ref(), to.as_ref(), |r| seen.push(r.listed)).await.unwrap();
        assert_eq!(seen, [1, 2, 3], "progress after each key");
        assert!(report.is_complete(), "{report:?}");
        assert_eq!((report.listed, report.copied, report.unchanged, report.verified), (3, 3, 0, 3));
        for (k, v) in &values {
            let got = to.get(&CredentialKey::new(*k).unwrap()).await.unwrap().unwrap();
            assert_eq!(got.value.expose_secret(), v.expose_secret(), "{k}");
            assert_eq!(got.value.is_text(), v.is_text(), "{k}");
            assert_eq!(got.metadata, meta);
        }

        let again = migrate(from.as_ref(), to.as_ref(), |_| {}).await.unwrap();
        assert_eq!((again.listed, again.copied, again.unchanged, again.verified), (3, 0, 3, 3));
    }

    /// A destination where another writer sets every key right after the
    /// migration read it: the copy must not overwrite that write.
    #[derive(Debug)]
    struct Contended(Arc<dyn CredentialStore>);

    #[credstore_core::async_trait]
    impl CredentialStore for Contended {
        fn info(&self) -> &credstore_core::StoreInfo {
            self.0.info()
        }
        fn with_namespace(
            &self,
            ns: &credstore_core::Namespace,
        ) -> credstore_core::Result<Arc<dyn CredentialStore>> {
            Ok(Arc::new(Contended(self.0.with_namespace(ns)?)))
        }
        async fn get(
            &self,
            key: &CredentialKey,
        ) -> credstore_core::Result<Option<credstore_core::Credential>> {
            let read = self.0.get(key).await?;
            self.0.set(key, &SecretValue::from("theirs"), &Metadata::new()).await?;
            Ok(read)
        }
        async fn write(
            &self,
            request: &credstore_core::WriteRequest<'_>,
        ) -> credstore_core::Result<credstore_core::SetOutcome> {
            self.0.write(request).await
        }
        async fn delete(&self, key: &CredentialKey) -> credstore_core::Result<bool> {
            self.0.delete(key).await
        }
        async fn list(&self, options: &ListOptions) -> credstore_core::Result<credstore_core::ListPage> {
            self.0.list(options).await
        }
        async fn check_availability(&self) -> credstore_core::Availability {
            self.0.check_availability().await
        }
    }

    #[tokio::test]
    async fn versions_guard_the_copy_against_concurrent_writes() {
        let (from, to) = (store("from"), store("to"));
        for k in ["absent-before", "different-before"] {
            from.set(&CredentialKey::new(k).unwrap(), &SecretValue::from("ours"), &Metadata::new())
                .await
                .unwrap();
        }
        let different = CredentialKey::new("different-before").unwrap();
        to.set(&different, &SecretValue::from("old"), &Metadata::new()).await.unwrap();
        let contended = Contended(to.clone());
        let report = migrate(from.as_ref(), &contended, |_| {}).await.unwrap();
        assert_eq!(report.copied, 0, "{report:?}");
        assert_eq!(report.failed.len(), 2, "{report:?}");
        for (key, reason) in &report.failed {
            assert!(reason.contains("changed during the migration"), "{reason}");
            let kept = to.get(key).await.unwrap().unwrap();
            assert_eq!(kept.value.expose_secret(), b"theirs", "the concurrent write of {key} stays");
        }
    }

    #[tokio::test]
    async fn namespaces_are_migrated_apart() {
        let (from, to) = (store("from"), store("to"));
        let ns = credstore_core::Namespace::new("t/p").unwrap();
        let key = CredentialKey::new("k").unwrap();
        from.with_namespace(&ns).unwrap().set(&key, &SecretValue::from("v"), &Metadata::new()).await.unwrap();
        from.set(&CredentialKey::new("root-only").unwrap(), &SecretValue::from("r"), &Metadata::new())
            .await
            .unwrap();
        let report = migrate(
            from.with_namespace(&ns).unwrap().as_ref(),
            to.with_namespace(&ns).unwrap().as_ref(),
            |_| {},
        )
        .await
        .unwrap();
        assert_eq!((report.listed, report.copied), (1, 1));
        assert!(to.with_namespace(&ns).unwrap().has(&key).await.unwrap());
        assert!(!to.has(&key).await.unwrap(), "nothing leaks into the root namespace");
        assert!(!to.has(&CredentialKey::new("root-only").unwrap()).await.unwrap());
    }
}
