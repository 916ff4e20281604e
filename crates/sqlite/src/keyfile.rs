//! Rotating the key of a [`KeyFile`] without ever losing it, and recovering
//! a rotation interrupted by a crash when the store opens.
//!
//! A rotation ([`crate::SqliteStore::rotate_key_file`]) holds an advisory
//! lock (`flock`) on the key file's directory from start to end and goes:
//! 1. check that the key in `<file>` opens the database;
//! 2. link `<file>.old` to `<file>` (the old key, kept until the new one has
//!    opened the database), and write a fresh key to `<file>.new` (synced,
//!    linked into place, directory synced);
//! 3. re-seal the database under the new key in one transaction, committed
//!    at `synchronous = FULL`;
//! 4. rename `<file>.new` to `<file>`, sync the directory;
//! 5. check that the key now in `<file>` opens the database, remove
//!    `<file>.old`, sync the directory.
//!
//! A crash before the commit of step 3 leaves `<file>` opening the
//! database; after it, `<file>.new` does, until step 4. An opening with the
//! key file ([`crate::SqliteConfig::master_key_file`]) tries `<file>`, then
//! `<file>.new`, then `<file>.old`, and finishes the job (see [`after_open`]).

use std::fs;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use credstore_core::{Error, Result, StoreId};

use crate::db;
use crate::errors;
use crate::{KeyFile, MasterKey, RotationReport};
use credstore_seal::files::{parent_dir, sync_dir, write_key_file};

/// Which file a candidate key of an opening came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `<file>`.
    Current,
    /// `<file>.new`: staged by a rotation.
    Staged,
    /// `<file>.old`: kept by a rotation.
    Previous,
}

/// `<file>` with `suffix` appended to its name.
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// An advisory lock on a directory (`flock`), released when dropped or when
/// the process ends, however it ends.
pub(crate) struct DirLock(#[allow(dead_code)] fs::File);

impl DirLock {
    fn take(dir: &Path, wait: bool) -> io::Result<Option<Self>> {
        let file = fs::File::open(dir)?;
        let op = if wait { libc::LOCK_EX } else { libc::LOCK_EX | libc::LOCK_NB };
        loop {
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
                return Ok(Some(DirLock(file)));
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) if !wait => return Ok(None),
                _ => return Err(e),
            }
        }
    }
}

/// Removes `path` if it exists; whether it did.
fn remove_if_exists(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The keys an opening with `file` tries, in order: `<file>` (created when
/// missing), then `<file>.new` and `<file>.old` when they exist and hold a
/// key.
pub(crate) fn candidates(file: &KeyFile) -> Result<Vec<(Role, MasterKey)>> {
    let mut keys = vec![(Role::Current, file.read_or_create()?)];
    for (role, suffix) in [(Role::Staged, ".new"), (Role::Previous, ".old")] {
        let path = sibling(file.path(), suffix);
        if !path.exists() {
            continue;
        }
        match KeyFile::new(&path).allow_loose_permissions(file.allows_loose_permissions()).read() {
            Ok(key) => keys.push((role, key)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring a key file left by a rotation")
            }
        }
    }
    Ok(keys)
}

/// Finishes what a crashed rotation left, once the key of `role` opened the
/// database; see [`crate::SqliteConfig::master_key_file`]. Never fails the
/// opening: a file that cannot be changed is logged and left for the next.
pub(crate) fn after_open(id: &StoreId, db_path: &Path, file: &KeyFile, role: Role) {
    let path = file.path();
    let (new, old) = (sibling(path, ".new"), sibling(path, ".old"));
    if role == Role::Previous {
        tracing::warn!(
            store = %id,
            path = %path.display(),
            database = %db_path.display(),
            "the key in this file does not open the database, but the key kept in {} by an interrupted \
             rotation does: it is used (was the database restored from a backup?); move that file to {} once \
             checked",
            old.display(),
            path.display()
        );
        return;
    }
    if role == Role::Current && !new.exists() && !old.exists() {
        return;
    }
    let dir = parent_dir(path);
    let lock = match DirLock::take(dir, false) {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            // A rotation of this directory's key files is running: it finishes
            // its own files.
            if role == Role::Staged {
                tracing::info!(store = %id, path = %new.display(), "opened with the key of a rotation in progress");
            }
            return;
        }
        Err(e) => {
            tracing::warn!(store = %id, dir = %dir.display(), error = %e, "cannot lock the key file's directory; leftover rotation files stay");
            return;
        }
    };
    let done = (|| -> io::Result<()> {
        if role == Role::Staged {
            // The crash came after the commit: the database is under the key in
            // `<file>.new`, which becomes the key file.
            fs::rename(&new, path)?;
            sync_dir(dir)?;
            tracing::warn!(
                store = %id,
                path = %path.display(),
                database = %db_path.display(),
                "completed an interrupted key rotation: the database was re-sealed under the key in {}, which \
                 now replaces the key file",
                new.display()
            );
        } else if remove_if_exists(&new)? {
            tracing::info!(store = %id, path = %new.display(), "removed a key staged by a rotation that did not commit");
        }
        // The key in `<file>` has opened the database: the old key goes.
        if remove_if_exists(&old)? {
            tracing::info!(store = %id, path = %old.display(), "removed the key kept by the last rotation");
        }
        sync_dir(dir)
    })();
    drop(lock);
    if let Err(e) = done {
        tracing::warn!(store = %id, path = %path.display(), error = %e, "cannot tidy the files of an interrupted key rotation");
    }
}

/// What [`stage`] prepared: the new key, in `<file>.new`, and the lock held
/// until [`finish`].
pub(crate) struct Staged {
    pub key: MasterKey,
    _lock: DirLock,
}

/// Steps 1 and 2 of a rotation (see the module docs).
pub(crate) fn stage(id: &StoreId, db_path: &Path, file: &KeyFile) -> Result<Staged> {
    let path = file.path();
    let dir = parent_dir(path);
    let io = |what: &str, p: &Path, e: io::Error| errors::from_io(id, p, what, &e);
    let lock = DirLock::take(dir, true).map_err(|e| io("lock the directory", dir, e))?.expect("waited for");
    let current = file.read().map_err(|e| Error::config(id, e.to_string()))?;
    if !db::key_opens(id, db_path, &current)? {
        return Err(Error::config(
            id,
            format!(
                "the key in {} does not open database {}; nothing was rotated. Open the store again (an \
                 interrupted rotation is recovered then) or give the new key explicitly",
                path.display(),
                db_path.display()
            ),
        ));
    }
    let (new, old) = (sibling(path, ".new"), sibling(path, ".old"));
    // Under the lock, with `<file>` opening the database, these are leftovers.
    remove_if_exists(&new).map_err(|e| io("remove", &new, e))?;
    remove_if_exists(&old).map_err(|e| io("remove", &old, e))?;
    fs::hard_link(path, &old).map_err(|e| io("keep the old key as", &old, e))?;
    let key = MasterKey::generate();
    // Synced, then linked into place; the directory is synced after (which
    // covers `<file>.old` too).
    if let Err(e) = write_key_file(&new, &key) {
        let _ = fs::remove_file(&old);
        return Err(io("write the new key to", &new, e));
    }
    Ok(Staged { key, _lock: lock })
}

/// Steps 4 and 5 of a rotation, after the database's transaction answered
/// `result`.
pub(crate) fn finish(
    id: &StoreId,
    db_path: &Path,
    file: &KeyFile,
    staged: Staged,
    result: Result<RotationReport>,
) -> Result<RotationReport> {
    let path = file.path();
    let dir = parent_dir(path);
    let (new, old) = (sibling(path, ".new"), sibling(path, ".old"));
    let io = |what: &str, p: &Path, e: io::Error| errors::from_io(id, p, what, &e);
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            // Nothing committed, as a rule; but an error at the commit itself
            // can hide a commit that landed: ask the database.
            return match db::key_opens(id, db_path, &staged.key) {
                Ok(false) => {
                    let _ = remove_if_exists(&new);
                    let _ = remove_if_exists(&old);
                    let _ = sync_dir(dir);
                    Err(e)
                }
                Ok(true) => {
                    fs::rename(&new, path).and_then(|()| sync_dir(dir)).map_err(|e| io("rename", &new, e))?;
                    Err(errors::backend(
                        id,
                        format!(
                            "the rotation answered an error ({e}) but committed nonetheless; {} holds the new key",
                            path.display()
                        ),
                    ))
                }
                Err(check) => Err(Error::config(
                    id,
                    format!(
                        "the rotation failed ({e}) and the database cannot be read to tell whether it committed \
                         ({check}); {} and {} are kept: open the store with the key file to recover",
                        new.display(),
                        old.display()
                    ),
                )),
            };
        }
    };
    fs::rename(&new, path).map_err(|e| {
        Error::config(
            id,
            format!(
                "database {} now uses the key in {}, but it could not replace {} ({e}); opening the store with \
                 the key file completes the rotation",
                db_path.display(),
                new.display(),
                path.display()
            ),
        )
    })?;
    sync_dir(dir).map_err(|e| io("sync", dir, e))?;
    // The new key file must open the database before the old key goes.
    let written = file.read().map_err(|e| Error::config(id, e.to_string()))?;
    if !db::key_opens(id, db_path, &written)? {
        return Err(Error::config(
            id,
            format!(
                "the rotated key file {} does not open database {}; the old key is kept in {}",
                path.display(),
                db_path.display(),
                old.display()
            ),
        ));
    }
    remove_if_exists(&old).map_err(|e| io("remove", &old, e))?;
    sync_dir(dir).map_err(|e| io("sync", dir, e))?;
    drop(staged);
    tracing::info!(store = %id, path = %path.display(), key_version = report.key_version, "the key file holds the rotated key");
    Ok(report)
}
