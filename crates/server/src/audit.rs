//! The audit trail: one JSON line per mutation, per value read and per
//! refused request.
//!
//! Every create, delete, restore and purge is recorded **before** it is carried out
//! (`"outcome":"started"`) and again after, with its result
//! (`"outcome":"succeeded"` or `"failed"` and the status answered). A
//! request refused with 401 or 403 is recorded as `"outcome":"denied"`; a
//! mutation cut off before the store answered (the request timeout, the
//! client gone) as `"outcome":"abandoned"`, since it may or may not have
//! been made. A
//! request whose record cannot be written is answered **503** before
//! anything changes, so no acknowledged change goes unrecorded.
//!
//! ```json
//! {"time":"2025-01-01T12:00:00.000Z","requestId":"req_…","token":"ci","tenant":"tenant_123","project":"project_456","store":"sqlite-default","key":"github-token","action":"create","outcome":"started","status":null}
//! {"time":"2025-01-01T12:00:00.004Z","requestId":"req_…","token":"ci","tenant":"tenant_123","project":"project_456","store":"sqlite-default","key":"github-token","action":"create","outcome":"succeeded","status":201}
//! ```
//!
//! | member | holds |
//! | --- | --- |
//! | `time` | RFC 3339 UTC with milliseconds |
//! | `requestId` | the request id (also `X-Request-ID`) |
//! | `token` | the name of the token (`admin` or a `[[tokens]]` name); `null` when no known token was presented |
//! | `tenant`, `project`, `store`, `key` | from the path or body; `null` when the route has none or it was not read yet |
//! | `version` | the version of the path, on the routes of one version (a value read at a version, a restore, a purge of a version); left out elsewhere |
//! | `action` | `create`, `delete`, `restore`, `purge` (a version or a key with its history), `reveal` (a value read, current or at a version), `list-stores`, `list-credentials`, `list-versions`, `read-metadata` (a credential's or a version's), `metrics` |
//! | `outcome` | `started`, `succeeded`, `failed`, `denied`, `abandoned` |
//! | `status` | the HTTP status answered; `null` on `started` and `abandoned` |
//!
//! A record never holds a value, a token or a token hash; ids from the
//! request are cut to 255 characters. The record of a request that
//! presented no known token (a 401) holds only ids that follow the id
//! rules, each cut to 48 characters (a cut one ends in `…`), and
//! `(invalid)` in place of any other, so that it takes at most 512 bytes
//! whatever the request: an anonymous client cannot make records grow.
//! Each line is written with one `write` call to a file opened for
//! appending (created owner-only, mode 0600), or to stderr.
//!
//! **Durability.** The `started` record of a create or delete and the
//! record of a value read are on disk (`fdatasync`) before the store is
//! called or the value is sent ([`AuditLog::append_durable`]): a thread of
//! the log's own runs `fdatasync` for every request that waits, covering
//! every line written before the call began, so concurrent requests share
//! one call (group commit) and no async worker thread waits on the disk.
//! When it fails, the request is answered 503. Other records are written at
//! once and reach the disk with the next `fdatasync`. A stderr or writer
//! target is flushed, never synced.
//!
//! **Rotation.** A file log is rotated when it reaches
//! [`Rotation::max_bytes`]: `audit.log` becomes `audit.log.1` (`.1`
//! becomes `.2`, and so on, [`Rotation::keep`] files kept), after an
//! `fdatasync`, and a new file is started. [`AuditLog::reopen`] (the
//! server calls it on SIGHUP) closes the file and opens the path again at
//! the next record, for an external rotation tool.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::watch;

/// The default file name of the audit log, in the data directory.
pub const AUDIT_LOG_FILE: &str = "audit.log";

/// The longest id copied from a request into a record.
pub const MAX_AUDIT_ID_LEN: usize = 255;

/// The longest id, in characters, kept in the record of a request that
/// presented no known token ([`AuditEntry::anonymous`]).
pub const MAX_ANONYMOUS_ID_LEN: usize = 48;

/// The most bytes the record of a request that presented no known token
/// takes, its newline included.
pub const MAX_ANONYMOUS_RECORD_LEN: usize = 512;

/// What the record of a request that presented no known token holds in
/// place of an id that breaks the id rules.
pub const INVALID_ID: &str = "(invalid)";

/// Where the audit trail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    /// Appended to this file (created with mode 0600, its directory with
    /// 0700 when missing).
    File(PathBuf),
    /// Written to stderr (`audit_log = "-"`).
    Stderr,
}

impl AuditTarget {
    /// `-` is stderr; anything else a file path.
    pub fn parse(text: &str) -> Self {
        if text == "-" {
            AuditTarget::Stderr
        } else {
            AuditTarget::File(PathBuf::from(text))
        }
    }

    /// The default: `audit.log` in `data_dir`.
    pub fn default_in(data_dir: &Path) -> Self {
        AuditTarget::File(data_dir.join(AUDIT_LOG_FILE))
    }
}

/// What a request did, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    /// Create Credential in Store.
    Create,
    /// Delete Credential.
    Delete,
    /// List Credential Stores (recorded only when refused).
    ListStores,
    /// List Credential Keys (recorded only when refused).
    ListCredentials,
    /// Get Credential Metadata (recorded only when refused).
    ReadMetadata,
    /// `/metrics` (recorded only when refused).
    Metrics,
    /// Read Credential Value, current or at a version: every read, and
    /// every refusal.
    Reveal,
    /// List Credential Versions (recorded only when refused).
    ListVersions,
    /// Restore Credential Version: before and after, as a create.
    Restore,
    /// Purge a version, or a key with its history: before and after.
    Purge,
    /// A console sign-in (`POST /console/sign-in`): every success, naming
    /// the token, and every refusal.
    SignIn,
    /// A console sign-out (`POST /console/sign-out`).
    SignOut,
}

/// How far a recorded request got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditOutcome {
    /// About to be carried out.
    Started,
    /// Carried out; answered with a success status.
    Succeeded,
    /// Answered with an error status.
    Failed,
    /// Refused: 401 or 403.
    Denied,
    /// Cut off before the store answered (the request timeout, or the
    /// client went away): the change may or may not have been made.
    Abandoned,
}

/// One audit line. Never holds a value, a token or a token hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
    /// The request, its token and what it names; its members stand in the
    /// line between `time` and `outcome`.
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// How far it got.
    pub outcome: AuditOutcome,
    /// The status answered; `None` on [`AuditOutcome::Started`] and
    /// [`AuditOutcome::Abandoned`].
    pub status: Option<u16>,
}

/// The request-side facts of a record, filled in as the handler learns them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// The request id.
    pub request_id: String,
    /// The token's name, when a known token was presented.
    pub token: Option<String>,
    /// The tenant of the path.
    pub tenant: Option<String>,
    /// The project of the path.
    pub project: Option<String>,
    /// The store of the path.
    pub store: Option<String>,
    /// The credential key.
    pub key: Option<String>,
    /// The version of the path, on the routes of one version; left out of
    /// the line when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// What the request does.
    pub action: AuditAction,
}

fn cut(id: &str) -> String {
    if id.len() <= MAX_AUDIT_ID_LEN {
        // Bytes bound characters: nothing to cut.
        id.to_owned()
    } else {
        id.chars().take(MAX_AUDIT_ID_LEN).collect()
    }
}

impl AuditEntry {
    /// An entry for request `request_id` doing `action`.
    pub fn new(request_id: &str, action: AuditAction) -> Self {
        Self {
            request_id: cut(request_id),
            token: None,
            tenant: None,
            project: None,
            store: None,
            key: None,
            version: None,
            action,
        }
    }

    /// With the tenant and project of the path.
    pub fn project(mut self, tenant: &str, project: &str) -> Self {
        self.tenant = Some(cut(tenant));
        self.project = Some(cut(project));
        self
    }

    /// With the store of the path.
    pub fn store(mut self, store: &str) -> Self {
        self.store = Some(cut(store));
        self
    }

    /// With the credential key.
    pub fn key(mut self, key: &str) -> Self {
        self.key = Some(cut(key));
        self
    }

    /// With the version of the path.
    pub fn version(mut self, version: &str) -> Self {
        self.version = Some(cut(version));
        self
    }

    /// This entry as recorded for a request that presented no known token:
    /// each id that breaks the id rules (`^[a-zA-Z0-9\-_.]+$`) replaced by
    /// [`INVALID_ID`], the others and the request id (checked when it was
    /// read) cut to
    /// [`MAX_ANONYMOUS_ID_LEN`] characters, so that its record takes at
    /// most [`MAX_ANONYMOUS_RECORD_LEN`] bytes whatever the request sent.
    pub fn anonymous(&self) -> Self {
        // Ids that pass are ASCII: cutting at a byte index is cutting at a
        // character. The request id is checked already (`request.rs`).
        let short = |id: &str| match id.get(..MAX_ANONYMOUS_ID_LEN) {
            Some(head) if head.len() < id.len() => format!("{head}…"),
            _ => id.to_owned(),
        };
        let keep = |id: &Option<String>| {
            id.as_deref().map(|id| match credstore_core::validate_id(id) {
                Ok(()) => short(id),
                Err(_) => INVALID_ID.to_owned(),
            })
        };
        Self {
            request_id: short(&self.request_id),
            token: None,
            tenant: keep(&self.tenant),
            project: keep(&self.project),
            store: keep(&self.store),
            key: keep(&self.key),
            version: keep(&self.version),
            action: self.action,
        }
    }

    /// With the token's name.
    pub fn token(mut self, name: &str) -> Self {
        self.token = Some(cut(name));
        self
    }

    /// The record of this entry at `outcome`, answered with `status`.
    pub fn record(&self, outcome: AuditOutcome, status: Option<u16>) -> AuditRecord {
        AuditRecord {
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            entry: self.clone(),
            outcome,
            status,
        }
    }
}

/// When a file log is rotated, and how many rotated files are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// The size at which the file is rotated; 0: never (an external tool
    /// rotates it and sends SIGHUP).
    pub max_bytes: u64,
    /// How many rotated files (`audit.log.1` ...) are kept.
    pub keep: u32,
}

impl Rotation {
    /// The default: rotated at 100 MiB, 5 files kept, so the log takes
    /// at most about 600 MiB.
    pub const DEFAULT: Rotation = Rotation { max_bytes: 100 * 1024 * 1024, keep: 5 };
}

impl Default for Rotation {
    fn default() -> Self {
        Self::DEFAULT
    }
}

enum Sink {
    /// The file, opened on first use, again after a failed write or a
    /// [`AuditLog::reopen`], and anew after a rotation.
    File {
        path: PathBuf,
        file: Option<Arc<File>>,
        /// Its size, counted from its length when opened.
        size: u64,
        rotation: Rotation,
    },
    Stderr,
    Writer(Box<dyn Write + Send>),
}

/// The sink and the buffer each line is built in, reused.
struct Locked {
    sink: Sink,
    line: Vec<u8>,
}

impl Locked {
    fn new(sink: Sink) -> Mutex<Self> {
        Mutex::new(Self { sink, line: Vec::with_capacity(512) })
    }
}

/// The audit log: appends [`AuditRecord`]s as JSON lines.
pub struct AuditLog {
    sink: Mutex<Locked>,
    target: String,
    /// The `fdatasync` thread of a file log.
    syncer: Option<Syncer>,
}

/// What the `fdatasync` thread has made durable, in line numbers.
#[derive(Debug, Clone, Copy, Default)]
struct Synced {
    /// Every line up to this one is on disk.
    upto: u64,
    /// A sync covering up to this line failed.
    failed: u64,
}

/// What the `fdatasync` thread is asked to do.
#[derive(Default)]
struct SyncRequest {
    /// The file written to now.
    file: Option<Arc<File>>,
    /// The highest line a request waits for.
    wanted: u64,
    stop: bool,
}

struct SyncShared {
    request: Mutex<SyncRequest>,
    wake: Condvar,
    /// How many `fdatasync` calls were made.
    syncs: AtomicU64,
    /// The number of lines written, raised after each `write` returns.
    written: AtomicU64,
    done: watch::Sender<Synced>,
}

/// The `fdatasync` thread of a file log, and how to wait for it.
struct Syncer {
    shared: Arc<SyncShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    fn start() -> std::io::Result<Self> {
        let shared = Arc::new(SyncShared {
            request: Mutex::new(SyncRequest::default()),
            wake: Condvar::new(),
            syncs: AtomicU64::new(0),
            written: AtomicU64::new(0),
            done: watch::Sender::new(Synced::default()),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("credstore-audit-sync".into())
            .spawn(move || sync_loop(&worker))?;
        Ok(Self { shared, thread: Some(thread) })
    }

    /// Waits until line `line` is on disk.
    async fn wait(&self, line: u64) -> std::io::Result<()> {
        let mut done = self.shared.done.subscribe();
        {
            let mut request = self.shared.request.lock().unwrap_or_else(|e| e.into_inner());
            request.wanted = request.wanted.max(line);
        }
        self.shared.wake.notify_one();
        let synced = *done
            .wait_for(|s| s.upto >= line || s.failed >= line)
            .await
            .map_err(|_| std::io::Error::other("the audit log's sync thread is gone"))?;
        if synced.upto >= line {
            Ok(())
        } else {
            Err(std::io::Error::other("fdatasync of the audit log failed"))
        }
    }

    /// Notes that lines now go to `file`.
    fn file(&self, file: &Arc<File>) {
        self.shared.request.lock().unwrap_or_else(|e| e.into_inner()).file = Some(Arc::clone(file));
    }

    /// Notes a line written; its number.
    fn written(&self) -> u64 {
        self.shared.written.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Notes that every line written is on disk (synced by the caller).
    fn all_synced(&self) {
        let upto = self.shared.written.load(Ordering::Acquire);
        self.shared.done.send_modify(|s| s.upto = s.upto.max(upto));
    }
}

/// The `fdatasync` thread: one call for everything written when a request
/// asks, however many ask meanwhile.
fn sync_loop(shared: &SyncShared) {
    let mut synced = 0;
    loop {
        let (target, file) = {
            let mut request = shared.request.lock().unwrap_or_else(|e| e.into_inner());
            while request.wanted <= synced && !request.stop {
                request = shared.wake.wait(request).unwrap_or_else(|e| e.into_inner());
            }
            if request.stop {
                return;
            }
            // Every line counted here was written before the sync starts.
            (shared.written.load(Ordering::Acquire), request.file.clone())
        };
        let result = file.map_or(Ok(()), |f| f.sync_data());
        shared.syncs.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::error!(error = %e, "cannot fdatasync the audit log");
        }
        shared.done.send_modify(|s| match result {
            Ok(()) => s.upto = s.upto.max(target),
            Err(_) => s.failed = s.failed.max(target),
        });
        synced = target;
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.shared.request.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog").field("target", &self.target).finish_non_exhaustive()
    }
}

/// Rotates the file log at `path` (written through `file`): synced, then
/// renamed to `path.1` after `path.1` became `path.2` and so on up to
/// `path.{keep}`, which is replaced; the directory is synced so the
/// renames outlive a crash.
fn rotate(path: &Path, file: &File, keep: u32) -> std::io::Result<()> {
    file.sync_data()?;
    let numbered = |n: u32| {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    };
    for n in (1..keep.max(1)).rev() {
        match std::fs::rename(numbered(n), numbered(n + 1)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    std::fs::rename(path, numbered(1))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// Opens `path` for appending, owner-only, creating its directory (0700).
fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.is_dir()) {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

impl AuditLog {
    /// An audit log writing to `target`. A file is opened on first use (and
    /// again after a failed write), so a log that cannot be opened refuses
    /// the requests it should record, with 503, rather than the server not
    /// starting.
    ///
    /// # Panics
    /// When the thread that syncs a file log cannot be started.
    pub fn new(target: &AuditTarget) -> Self {
        match target {
            AuditTarget::File(path) => Self {
                target: path.display().to_string(),
                sink: Locked::new(Sink::File {
                    path: path.clone(),
                    file: None,
                    size: 0,
                    rotation: Rotation::DEFAULT,
                }),
                syncer: Some(Syncer::start().expect("start the audit log's sync thread")),
            },
            AuditTarget::Stderr => {
                Self { target: "stderr".into(), sink: Locked::new(Sink::Stderr), syncer: None }
            }
        }
    }

    /// An audit log writing to `writer` (for embedding: a pipe, a socket).
    pub fn to_writer(writer: impl Write + Send + 'static) -> Self {
        Self { target: "a writer".into(), sink: Locked::new(Sink::Writer(Box::new(writer))), syncer: None }
    }

    /// With a file log rotated as `rotation` says (the default:
    /// [`Rotation::DEFAULT`]); other targets do not rotate.
    pub fn with_rotation(self, rotation: Rotation) -> Self {
        {
            let mut locked = self.sink.lock().unwrap_or_else(|e| e.into_inner());
            if let Sink::File { rotation: r, .. } = &mut locked.sink {
                *r = rotation;
            }
        }
        self
    }

    /// Closes a file log, after an `fdatasync`; the next record opens the
    /// path again (for an external rotation tool: the server calls this on
    /// SIGHUP).
    pub fn reopen(&self) {
        let mut locked = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        if let Sink::File { file: Some(f), .. } = &mut locked.sink {
            if f.sync_data().is_ok() {
                if let Some(s) = &self.syncer {
                    s.all_synced();
                }
            }
        }
        if let Sink::File { file, .. } = &mut locked.sink {
            *file = None;
        }
    }

    /// Appends the record of `entry` as [`AuditLog::append_entry`] does,
    /// and returns once it is on disk (`fdatasync`, shared with the
    /// records of concurrent requests, on the log's own thread). A stderr
    /// or writer target is flushed only.
    ///
    /// # Errors
    /// The line could not be written, or the `fdatasync` failed.
    pub async fn append_durable(
        &self,
        entry: &AuditEntry,
        outcome: AuditOutcome,
        status: Option<u16>,
    ) -> std::io::Result<()> {
        let line = self.append_numbered(entry, outcome, status)?;
        match (&self.syncer, line) {
            (Some(syncer), Some(line)) => syncer.wait(line).await,
            _ => Ok(()),
        }
    }

    /// Where the records go, for messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// How many `fdatasync` calls the log's thread has made.
    pub fn syncs(&self) -> u64 {
        self.syncer.as_ref().map_or(0, |s| s.shared.syncs.load(Ordering::Relaxed))
    }

    /// Appends `record` as one JSON line.
    ///
    /// # Errors
    /// The line could not be written (the file cannot be opened or
    /// written).
    pub fn append(&self, record: &AuditRecord) -> std::io::Result<()> {
        self.write_line(|line| {
            encode(line, |o| json_str(o, &record.time), &record.entry, record.outcome, record.status);
        })
        .map(|_| ())
    }

    /// Appends the record of `entry` at `outcome`, answered with `status`,
    /// timed now: the same line as `append(&entry.record(outcome, status))`,
    /// without building the record.
    ///
    /// # Errors
    /// As for [`AuditLog::append`].
    pub fn append_entry(
        &self,
        entry: &AuditEntry,
        outcome: AuditOutcome,
        status: Option<u16>,
    ) -> std::io::Result<()> {
        self.append_numbered(entry, outcome, status).map(|_| ())
    }

    /// [`AuditLog::append_entry`], and the number of the line in a file log.
    fn append_numbered(
        &self,
        entry: &AuditEntry,
        outcome: AuditOutcome,
        status: Option<u16>,
    ) -> std::io::Result<Option<u64>> {
        let time = humantime::format_rfc3339_millis(SystemTime::now());
        // A timestamp has nothing to escape; writing to a Vec cannot fail.
        let time = |o: &mut Vec<u8>| {
            let _ = write!(o, "\"{time}\"");
        };
        self.write_line(|line| encode(line, time, entry, outcome, status))
    }

    /// Writes `line` to the file log, opening it first when it is closed,
    /// and rotates it once it has reached its size; the line's number.
    fn write_file(
        &self,
        path: &Path,
        file: &mut Option<Arc<File>>,
        size: &mut u64,
        rotation: Rotation,
        line: &[u8],
    ) -> std::io::Result<u64> {
        if file.is_none() {
            let opened = Arc::new(open_append(path)?);
            *size = opened.metadata().map_or(0, |m| m.len());
            if let Some(syncer) = &self.syncer {
                syncer.file(&opened);
            }
            *file = Some(opened);
        }
        let Some(f) = file.as_deref() else { unreachable!("opened above") };
        if let Err(e) = { f }.write_all(line) {
            *file = None;
            return Err(e);
        }
        *size += line.len() as u64;
        let number = self.syncer.as_ref().map_or(0, Syncer::written);
        if rotation.max_bytes > 0 && *size >= rotation.max_bytes {
            match rotate(path, f, rotation.keep) {
                Ok(()) => {
                    if let Some(syncer) = &self.syncer {
                        syncer.all_synced();
                    }
                    *file = None;
                }
                // The file keeps growing; the next line tries again.
                Err(e) => {
                    tracing::error!(error = %e, audit_log = %path.display(), "cannot rotate the audit log")
                }
            }
        }
        Ok(number)
    }

    /// Builds one line in the sink's reused buffer (`fill`) and writes it
    /// with one `write` call; the line's number in a file log.
    fn write_line(&self, fill: impl FnOnce(&mut Vec<u8>)) -> std::io::Result<Option<u64>> {
        let mut guard = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let Locked { sink, line } = &mut *guard;
        line.clear();
        fill(line);
        line.push(b'\n');
        let result = match sink {
            Sink::Stderr => {
                let mut err = std::io::stderr().lock();
                err.write_all(line).and_then(|()| err.flush()).map(|()| None)
            }
            Sink::Writer(w) => w.write_all(line).and_then(|()| w.flush()).map(|()| None),
            Sink::File { path, file, size, rotation } => {
                self.write_file(path, file, size, *rotation, line).map(Some)
            }
        };
        // Keep the buffer for the next line, unless a huge one grew it.
        if line.capacity() > 16 * 1024 {
            *line = Vec::new();
        }
        result
    }
}

/// The request-side members of one line, borrowed.
impl AuditAction {
    fn as_str(self) -> &'static str {
        match self {
            AuditAction::Create => "create",
            AuditAction::Delete => "delete",
            AuditAction::ListStores => "list-stores",
            AuditAction::ListCredentials => "list-credentials",
            AuditAction::ReadMetadata => "read-metadata",
            AuditAction::Metrics => "metrics",
            AuditAction::Reveal => "reveal",
            AuditAction::ListVersions => "list-versions",
            AuditAction::Restore => "restore",
            AuditAction::Purge => "purge",
            AuditAction::SignIn => "sign-in",
            AuditAction::SignOut => "sign-out",
        }
    }
}

impl AuditOutcome {
    fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Started => "started",
            AuditOutcome::Succeeded => "succeeded",
            AuditOutcome::Failed => "failed",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Abandoned => "abandoned",
        }
    }
}

/// One record as JSON, exactly as `serde_json` writes [`AuditRecord`]
/// (same members, same order, same escapes), without a line end.
/// `time` writes the time member's value.
fn encode(
    out: &mut Vec<u8>,
    time: impl FnOnce(&mut Vec<u8>),
    f: &AuditEntry,
    outcome: AuditOutcome,
    status: Option<u16>,
) {
    out.extend_from_slice(b"{\"time\":");
    time(out);
    out.extend_from_slice(b",\"requestId\":");
    json_str(out, &f.request_id);
    for (name, value) in [
        (&b",\"token\":"[..], &f.token),
        (b",\"tenant\":", &f.tenant),
        (b",\"project\":", &f.project),
        (b",\"store\":", &f.store),
        (b",\"key\":", &f.key),
    ] {
        out.extend_from_slice(name);
        match value {
            Some(v) => json_str(out, v),
            None => out.extend_from_slice(b"null"),
        }
    }
    if let Some(version) = &f.version {
        out.extend_from_slice(b",\"version\":");
        json_str(out, version);
    }
    out.extend_from_slice(b",\"action\":\"");
    out.extend_from_slice(f.action.as_str().as_bytes());
    out.extend_from_slice(b"\",\"outcome\":\"");
    out.extend_from_slice(outcome.as_str().as_bytes());
    out.extend_from_slice(b"\",\"status\":");
    match status {
        Some(s) => {
            let _ = write!(out, "{s}");
        }
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
}

/// `text` as a JSON string, escaped as `serde_json` does: `"` and `\`,
/// the short escapes `\b \f \n \r \t`, other control characters as
/// `\u00XX`; everything else as is.
fn json_str(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            0x08 => b'b',
            0x0c => b'f',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x00..=0x1f => b'u',
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.push(b'\\');
        out.push(short);
        if short == b'u' {
            out.extend_from_slice(&[b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn durable_records_of_concurrent_requests_share_fdatasync_calls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = std::sync::Arc::new(AuditLog::new(&AuditTarget::File(path.clone())));
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let log = log.clone();
                tokio::spawn(async move {
                    let entry = AuditEntry::new(&format!("req_{i}"), AuditAction::Create).token("ci");
                    log.append_durable(&entry, AuditOutcome::Started, None).await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(lines_of(&path).len(), 64);
        let syncs = log.syncs();
        assert!((1..64).contains(&syncs), "64 durable records took {syncs} fdatasync calls");
        // A record that does not wait is not synced on its own.
        log.append_entry(&AuditEntry::new("r", AuditAction::Delete), AuditOutcome::Succeeded, Some(204))
            .unwrap();
        assert_eq!(log.syncs(), syncs);
        // Stderr and writers are flushed, not synced.
        let to_writer = AuditLog::to_writer(Shared::default());
        to_writer
            .append_durable(&AuditEntry::new("r", AuditAction::Reveal), AuditOutcome::Succeeded, Some(200))
            .await
            .unwrap();
        assert_eq!(to_writer.syncs(), 0);
    }

    #[test]
    fn the_file_rotates_at_its_size_and_keeps_that_many() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::new(&AuditTarget::File(path.clone()))
            .with_rotation(Rotation { max_bytes: 2_000, keep: 2 });
        for i in 0..100 {
            log.append_entry(
                &AuditEntry::new(&format!("req_{i}"), AuditAction::Create),
                AuditOutcome::Started,
                None,
            )
            .unwrap();
        }
        let rotated = |n: u32| dir.path().join(format!("audit.log.{n}"));
        let (now, one, two) = (lines_of(&path), lines_of(&rotated(1)), lines_of(&rotated(2)));
        assert!(!rotated(3).exists(), "only two rotated files are kept");
        for file in [&path, &rotated(1), &rotated(2)] {
            assert!(std::fs::metadata(file).unwrap().len() < 2_000 + 200, "{}", file.display());
        }
        // The newest lines, in order, across the three files.
        let ids: Vec<String> =
            two.iter().chain(&one).chain(&now).map(|l| l["requestId"].as_str().unwrap().to_owned()).collect();
        let first: usize = ids[0].trim_start_matches("req_").parse().unwrap();
        let expected: Vec<String> = (first..100).map(|i| format!("req_{i}")).collect();
        assert_eq!(ids, expected);
        assert!(first > 0, "older lines went with the oldest file");
    }

    #[test]
    fn reopen_starts_a_new_file_after_an_external_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::new(&AuditTarget::File(path.clone()));
        let entry = |id: &str| AuditEntry::new(id, AuditAction::Delete);
        log.append_entry(&entry("before"), AuditOutcome::Started, None).unwrap();
        std::fs::rename(&path, dir.path().join("moved.log")).unwrap();
        log.append_entry(&entry("still-old"), AuditOutcome::Started, None).unwrap();
        log.reopen();
        log.append_entry(&entry("after"), AuditOutcome::Started, None).unwrap();
        let moved: Vec<_> =
            lines_of(&dir.path().join("moved.log")).iter().map(|l| l["requestId"].clone()).collect();
        assert_eq!(moved, ["before", "still-old"]);
        assert_eq!(lines_of(&path)[0]["requestId"], "after");
    }

    #[test]
    fn records_are_one_json_line_with_exactly_the_members() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("audit.log");
        let log = AuditLog::new(&AuditTarget::File(path.clone()));
        let entry = AuditEntry::new("req_1", AuditAction::Create)
            .project("t", "p")
            .store("s")
            .key(&"k".repeat(300))
            .token("ci");
        log.append(&entry.record(AuditOutcome::Started, None)).unwrap();
        log.append(&entry.record(AuditOutcome::Succeeded, Some(201))).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        let mut keys: Vec<&str> = lines[0].as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = [
            "time",
            "requestId",
            "token",
            "tenant",
            "project",
            "store",
            "key",
            "action",
            "outcome",
            "status",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert!(text.starts_with(r#"{"time":""#), "{text}");
        assert_eq!(lines[0]["outcome"], "started");
        assert_eq!(lines[0]["status"], serde_json::Value::Null);
        assert_eq!(lines[1]["outcome"], "succeeded");
        assert_eq!(lines[1]["status"], 201);
        assert_eq!(lines[1]["action"], "create");
        assert_eq!(lines[1]["key"].as_str().unwrap().len(), MAX_AUDIT_ID_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(
                std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
    }

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_exactly_what_serde_json_writes() {
        let tricky = "q\"b\\s/n\nr\rt\tb\u{8}f\u{c}z\u{0}e\u{1f}d\u{7f}é🙂";
        let out = Shared::default();
        let log = AuditLog::to_writer(out.clone());
        let mut expected = Vec::new();
        let entries = [
            AuditEntry::new("req_1", AuditAction::Create).project("t", "p").store("s").key("k").token("ci"),
            AuditEntry::new(tricky, AuditAction::ListStores).project(tricky, tricky).token(tricky),
            AuditEntry::new("r", AuditAction::Metrics),
            AuditEntry::new("r", AuditAction::ReadMetadata).store(tricky).key(tricky),
            AuditEntry::new("r", AuditAction::ListCredentials),
            AuditEntry::new("r", AuditAction::Delete),
            AuditEntry::new("r", AuditAction::Restore).key("k").version(tricky),
            AuditEntry::new("r", AuditAction::Purge).version("7"),
            AuditEntry::new("r", AuditAction::ListVersions),
        ];
        let outcomes = [
            (AuditOutcome::Started, None),
            (AuditOutcome::Succeeded, Some(201)),
            (AuditOutcome::Failed, Some(503)),
            (AuditOutcome::Denied, Some(401)),
            (AuditOutcome::Abandoned, None),
            (AuditOutcome::Failed, Some(65535)),
            (AuditOutcome::Started, None),
            (AuditOutcome::Succeeded, Some(204)),
            (AuditOutcome::Denied, Some(403)),
        ];
        for (entry, (outcome, status)) in entries.iter().zip(outcomes) {
            let mut record = entry.record(outcome, status);
            record.time = tricky.to_owned();
            log.append(&record).unwrap();
            expected.extend(serde_json::to_vec(&record).unwrap());
            expected.push(b'\n');
        }
        assert_eq!(
            String::from_utf8(out.0.lock().unwrap().clone()).unwrap(),
            String::from_utf8(expected).unwrap()
        );
    }

    #[test]
    fn append_entry_writes_the_record_of_the_entry() {
        let out = Shared::default();
        let log = AuditLog::to_writer(out.clone());
        let entry =
            AuditEntry::new("req_9", AuditAction::Delete).project("t", "p").store("s").key("k\"").token("ci");
        let before = SystemTime::now();
        log.append_entry(&entry, AuditOutcome::Succeeded, Some(204)).unwrap();
        let after = SystemTime::now();
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.ends_with('\n') && text.lines().count() == 1, "{text:?}");
        let line: serde_json::Value = serde_json::from_str(&text).unwrap();
        let time = humantime::parse_rfc3339(line["time"].as_str().unwrap()).unwrap();
        let millis = |t: SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
        assert!(millis(before) <= millis(time) && millis(time) <= millis(after));
        let mut record = entry.record(AuditOutcome::Succeeded, Some(204));
        record.time = line["time"].as_str().unwrap().to_owned();
        assert_eq!(text, format!("{}\n", serde_json::to_string(&record).unwrap()));
    }

    #[test]
    fn an_unopenable_file_fails_every_append() {
        let dir = tempfile::tempdir().unwrap();
        // A directory cannot be opened as a file, even by root.
        let log = AuditLog::new(&AuditTarget::File(dir.path().to_path_buf()));
        let record = AuditEntry::new("r", AuditAction::Delete).record(AuditOutcome::Started, None);
        assert!(log.append(&record).is_err());
        assert!(log.append(&record).is_err());
        let entry = AuditEntry::new("r", AuditAction::Delete);
        assert!(log.append_entry(&entry, AuditOutcome::Started, None).is_err());
        assert_eq!(AuditTarget::parse("-"), AuditTarget::Stderr);
        assert_eq!(AuditTarget::parse("a.log"), AuditTarget::File("a.log".into()));
    }
}
