//! The conformance suite for credstore backends.
//!
//! Every backend in this workspace passes it, and so should yours. The suite
//! is one registry of cases, [`CASES`]; each case is also a public async
//! function in [`cases`], so you can call one on its own while debugging.
//!
//! # Running the suite on your backend
//!
//! 1. Add the suite as a dev-dependency, and a test target without the
//!    standard harness to your `Cargo.toml`:
//!
//!    ```toml
//!    [dev-dependencies]
//!    credstore-conformance = "0.2"
//!
//!    [[test]]
//!    name = "conformance"
//!    harness = false
//!    ```
//!
//! 2. Write `tests/conformance.rs`: implement [`StoreFactory`] and expand
//!    [`conformance_main!`], which writes `fn main`. The argument is an
//!    `Option<impl StoreFactory>`: `None` when a test server your backend
//!    needs is missing (say so loudly first; every case then shows as
//!    ignored, `skipped: test server missing`).
//!
//!    ```
//!    use std::sync::Arc;
//!    use credstore_conformance::{conformance_main, mock::MockStore, unique_name, StoreFactory};
//!    use credstore_core::{CredentialStore, StoreId};
//!
//!    struct Factory;
//!
//!    #[credstore_conformance::async_trait]
//!    impl StoreFactory for Factory {
//!        async fn create(&self) -> Arc<dyn CredentialStore> {
//!            // Your backend here; the suite's own mock stands in for it.
//!            Arc::new(MockStore::new(StoreId::new(unique_name("mock")).unwrap()))
//!        }
//!    }
//!
//!    conformance_main!(Some(Factory));
//!    # // The doctest harness supplies no test arguments; run one case by name instead.
//!    # let _ = main;
//!    # credstore_conformance::run_case("round_trip", &Factory);
//!    ```
//!
//! 3. `cargo test --test conformance`. The usual test flags work: a name
//!    filter, `--exact`, `--list`, `--test-threads`, `--nocapture`.
//!
//! # Gates and skips
//!
//! Each case of [`CASES`] names what it [`Needs`]; it runs only when the
//! store's [`Capabilities`] declare it:
//!
//! | Shown as                            | Runs when                                                         |
//! |-------------------------------------|-------------------------------------------------------------------|
//! | `needs list`                        | `capabilities.list`                                               |
//! | `needs metadata`                    | `capabilities.metadata`                                           |
//! | `needs binary`                      | `capabilities.binary`                                             |
//! | `needs create_only`                 | `capabilities.create_only`                                        |
//! | `needs replace_if_version`          | `capabilities.replace_if_version`                                 |
//! | `needs persistence beyond process`  | `capabilities.persistence.survives_restart()`; `reopen` returns `Some` |
//! | `needs can_be_unavailable`          | `capabilities.can_be_unavailable`; `unreachable` returns `Some`   |
//! | `needs change_feed`                 | `capabilities.change_feed` (the feed cases, each wait bounded)    |
//! | `needs versions`                    | `capabilities.versions` (history, restore, purge)                 |
//! | `needs recover_deleted`             | `versions` and `recover_deleted` (recovery after a delete)        |
//! | `needs versions without recover_deleted` | `versions`, not `recover_deleted` (a delete destroys the history) |
//! | `needs retention.max_versions <= 20` | `versions` and a `retention.max_versions` of at most [`SMALL_RETENTION`] |
//! | `needs retention.max_age`           | `versions` and a `retention.max_age`; and a store on a clock      |
//! | `needs expiry`                      | `capabilities.expiry`; and a store on a clock                     |
//! | `needs expiry and versions`         | `expiry` and `versions`; and a store on a clock                   |
//! | `needs versions and change_feed`    | `versions` and `change_feed` (the feed's reports of restore and purge) |
//! | `needs create_on_clock`             | the need above is declared, but [`StoreFactory::create_on_clock`] returns `None` |
//!
//! The cases about time (expiry, age-based retention) each build a store on
//! a [`ManualClock`] of their own with [`StoreFactory::create_on_clock`]
//! and step it across the boundary; the suite asks the factory for one such
//! store first, and when it answers `None` those cases are skipped as
//! `needs create_on_clock`, saying why. [`NamespaceFactory::on_clock`]
//! implements it for a factory of namespaces.
//!
//! The capabilities are read once, from the first store the factory makes.
//! A case that does not apply is reported as ignored, with its need in
//! brackets, never as passed:
//!
//! ```text
//! test [needs create_only] create_only_raced_by_16 ... ignored
//! ```
//!
//! and one line on stderr lists every skipped case with its reason. Running
//! with `--ignored` or `--include-ignored` makes each skipped case FAIL with
//! its reason, so a skip can never pass for a success.
//!
//! The declarations are held honest both ways: the `capabilities_*` cases
//! run for every store and check that what is declared off is refused with
//! [`Error::Unsupported`](credstore_core::Error::Unsupported) before any I/O,
//! with nothing stored, and what is declared on works. The persistence class
//! decides the reopen cases: a store whose
//! [`Persistence::survives_restart`](credstore_core::Persistence::survives_restart)
//! must be reopened by [`StoreFactory::reopen`] with its data intact; one
//! that lives in the process only must not keep data across a reopen.
//!
//! A case fails by panicking, with a message that says what the store did
//! wrong; a case that runs longer than [`CASE_TIMEOUT`] fails too. To debug
//! one case outside the harness, call its function in [`cases`] from your
//! own async test, or [`run_case`] by name.
//!
//! # Test doubles
//!
//! [`mock::MockStore`] is a scriptable, in-memory store that injects faults
//! (fail the next N calls, fail a ratio of calls, hang, panic), adds latency
//! and counts calls: for your own tests of code that uses a store.

#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use credstore_core::{Capabilities, Clock, CredentialStore, CredentialStoreExt, ManualClock};
use futures::future::BoxFuture;
use libtest_mimic::{Arguments, Failed, Trial};

pub mod cases;
mod factory;
pub mod fixtures;
pub mod mock;

pub use async_trait::async_trait;
pub use cases::CASES;
pub use factory::NamespaceFactory;

/// Makes the stores the cases run against.
///
/// The trait is object safe; cases take `&dyn StoreFactory`.
#[async_trait]
pub trait StoreFactory: Send + Sync {
    /// A fresh, empty store: nothing stored at its root namespace. Where the
    /// backend can hold several stores side by side (one database file, one
    /// server), stores from separate calls should share it, so that the
    /// isolation cases test something real.
    async fn create(&self) -> Arc<dyn CredentialStore>;

    /// A new instance over the same storage as `store`, as after a process
    /// restart: the caller passes its only reference, so the old instance
    /// can be dropped (and its files closed) first.
    ///
    /// Must return `Some` when the store's persistence
    /// [survives a restart](credstore_core::Persistence::survives_restart);
    /// a store that lives in the process may return `None` (the default) or a
    /// new, empty instance.
    ///
    /// For a durable store that declares a change feed, the suite also calls
    /// it while it keeps `store`, and checks that a change made through the
    /// new instance is reported to a feed of the old one (as two replicas
    /// over one database): the two must be able to live side by side.
    async fn reopen(&self, store: Arc<dyn CredentialStore>) -> Option<Arc<dyn CredentialStore>> {
        drop(store);
        None
    }

    /// A store whose backend cannot be reached: a closed port, an unusable
    /// path. Its probe must answer within a few seconds. Must return `Some`
    /// when the stores declare `can_be_unavailable`, and `None` (the default)
    /// when they do not.
    async fn unreachable(&self) -> Option<Arc<dyn CredentialStore>> {
        None
    }

    /// A fresh, empty store like [`create`](Self::create)'s that decides
    /// expiry and age-based retention by `clock` (its
    /// [`StoreInfo::clock`](credstore_core::StoreInfo::clock)), so that the
    /// cases about time can step a [`ManualClock`]
    /// across a boundary instead of sleeping. Each call gets a clock of its
    /// own.
    ///
    /// Should return `Some` when the stores declare
    /// [`expiry`](credstore_core::Capabilities::expiry) or an age limit in
    /// their [`retention`](credstore_core::Capabilities::retention); the
    /// cases that need it are skipped, saying so, on `None` (the default).
    async fn create_on_clock(&self, clock: Arc<dyn Clock>) -> Option<Arc<dyn CredentialStore>> {
        drop(clock);
        None
    }
}

/// A name unique within this process and across processes:
/// `{prefix}-{pid}-{n}-{nanos}`. Valid as a store id, key, key prefix or
/// namespace segment when `prefix` is.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{}-{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The capability a case needs to apply to a store; a case whose need is not
/// met is reported as ignored with [`Needs::label`] as its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Needs {
    /// Runs on every store.
    Nothing,
    /// [`Capabilities::list`].
    List,
    /// [`Capabilities::metadata`].
    Metadata,
    /// [`Capabilities::binary`].
    Binary,
    /// [`Capabilities::create_only`].
    CreateOnly,
    /// [`Capabilities::replace_if_version`].
    ReplaceIfVersion,
    /// A [`Capabilities::persistence`] that survives a restart (the reopen cases).
    PersistenceBeyondProcess,
    /// [`Capabilities::can_be_unavailable`] (the unreachable-store cases).
    CanBeUnavailable,
    /// [`Capabilities::change_feed`] (the change feed cases).
    ChangeFeed,
    /// [`Capabilities::versions`] (the history, restore and purge cases).
    Versions,
    /// [`Capabilities::versions`] and [`Capabilities::recover_deleted`]
    /// (the cases of recovery after a delete).
    RecoverDeleted,
    /// [`Capabilities::versions`] without [`Capabilities::recover_deleted`]
    /// (a delete destroys the history).
    VersionsWithoutRecovery,
    /// [`Capabilities::versions`] with a
    /// [`retention.max_versions`](credstore_core::Retention::max_versions)
    /// of at most [`SMALL_RETENTION`], small enough to write past.
    SmallRetention,
    /// [`Capabilities::versions`] with an age limit
    /// ([`retention.max_age`](credstore_core::Retention::max_age)), and a
    /// factory that builds a store on a given clock
    /// ([`StoreFactory::create_on_clock`]).
    AgeRetention,
    /// [`Capabilities::expiry`], and a factory that builds a store on a
    /// given clock ([`StoreFactory::create_on_clock`]).
    Expiry,
    /// [`Capabilities::expiry`] and [`Capabilities::versions`], and a
    /// factory that builds a store on a given clock.
    ExpiryWithVersions,
    /// [`Capabilities::versions`] and [`Capabilities::change_feed`] (the
    /// feed's reports of a restore and a purge).
    VersionsAndChangeFeed,
}

/// The largest [`retention.max_versions`](credstore_core::Retention::max_versions)
/// the retention cases write past; a store keeping more versions (or
/// every version) skips them, saying so.
pub const SMALL_RETENTION: u32 = 20;

impl Needs {
    /// Whether a store with `caps` meets this need.
    pub fn is_met(self, caps: &Capabilities) -> bool {
        match self {
            Needs::Nothing => true,
            Needs::List => caps.list,
            Needs::Metadata => caps.metadata,
            Needs::Binary => caps.binary,
            Needs::CreateOnly => caps.create_only,
            Needs::ReplaceIfVersion => caps.replace_if_version,
            Needs::PersistenceBeyondProcess => caps.persistence.survives_restart(),
            Needs::CanBeUnavailable => caps.can_be_unavailable,
            Needs::ChangeFeed => caps.change_feed,
            Needs::Versions => caps.versions,
            Needs::RecoverDeleted => caps.versions && caps.recover_deleted,
            Needs::VersionsWithoutRecovery => caps.versions && !caps.recover_deleted,
            Needs::SmallRetention => {
                caps.versions && caps.retention.max_versions.is_some_and(|n| n <= SMALL_RETENTION)
            }
            Needs::AgeRetention => caps.versions && caps.retention.max_age.is_some(),
            Needs::Expiry => caps.expiry,
            Needs::ExpiryWithVersions => caps.expiry && caps.versions,
            Needs::VersionsAndChangeFeed => caps.versions && caps.change_feed,
        }
    }

    /// Whether the case also needs a store on a clock of its own
    /// ([`StoreFactory::create_on_clock`] returning `Some`): the cases that
    /// step time across an expiry or retention boundary.
    pub fn clock(self) -> bool {
        matches!(self, Needs::AgeRetention | Needs::Expiry | Needs::ExpiryWithVersions)
    }

    /// The capability's name, such as `create_only` or `persistence beyond
    /// process`; empty for [`Needs::Nothing`].
    pub fn capability(self) -> &'static str {
        match self {
            Needs::Nothing => "",
            Needs::List => "list",
            Needs::Metadata => "metadata",
            Needs::Binary => "binary",
            Needs::CreateOnly => "create_only",
            Needs::ReplaceIfVersion => "replace_if_version",
            Needs::PersistenceBeyondProcess => "persistence beyond process",
            Needs::CanBeUnavailable => "can_be_unavailable",
            Needs::ChangeFeed => "change_feed",
            Needs::Versions => "versions",
            Needs::RecoverDeleted => "recover_deleted",
            Needs::VersionsWithoutRecovery => "versions without recover_deleted",
            Needs::SmallRetention => "retention.max_versions <= 20",
            Needs::AgeRetention => "retention.max_age",
            Needs::Expiry => "expiry",
            Needs::ExpiryWithVersions => "expiry and versions",
            Needs::VersionsAndChangeFeed => "versions and change_feed",
        }
    }

    /// How a skip shows in the test output: `needs create_only`.
    pub fn label(self) -> String {
        format!("needs {}", self.capability())
    }
}

/// The future a case's [`Case::run`] returns.
pub type CaseFuture<'a> = BoxFuture<'a, ()>;

/// One conformance case, as listed in [`CASES`].
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's name, the name of its function in [`cases`].
    pub name: &'static str,
    /// What the store must declare for the case to apply.
    pub needs: Needs,
    /// Runs the case; panics with a clear message when the store misbehaves.
    pub run: for<'a> fn(&'a dyn StoreFactory) -> CaseFuture<'a>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Case").field("name", &self.name).field("needs", &self.needs).finish()
    }
}

/// How long one case may run before it fails: a store that hangs fails its
/// case instead of the whole run.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(300);

/// The kind of every trial when the factory is `None`.
const SERVER_MISSING: &str = "skipped: test server missing";

/// The kind of a case about time when the factory builds no store on a
/// given clock.
const NO_CLOCK: &str = "needs create_on_clock";

/// Why such a case is skipped.
const NO_CLOCK_REASON: &str = "skipped: the factory builds no store on a given clock \
    (StoreFactory::create_on_clock returns None), so time cannot be stepped across the boundary";

/// Runs the suite as a test binary's `main`: parses the libtest arguments,
/// builds one multi-thread tokio runtime, reads the capabilities of one
/// store from `factory`, and runs one trial per case of [`CASES`]. Returns the
/// exit code (failure when any case failed).
///
/// Cases whose [`Needs`] the store does not meet are ignored with the need
/// as their kind; with `factory` `None` every case is ignored as
/// `skipped: test server missing`. Forcing ignored cases to run
/// (`--ignored`, `--include-ignored`) fails each skipped case with its reason.
/// One line on stderr lists the skipped cases.
///
/// Use it through [`conformance_main!`].
pub fn run<F: StoreFactory + 'static>(factory: Option<F>) -> ExitCode {
    let args = Arguments::from_args();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => Arc::new(rt),
        Err(e) => {
            eprintln!("credstore-conformance: cannot start a tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let factory = factory.map(|f| Arc::new(f) as Arc<dyn StoreFactory>);
    let (trials, summary) = trials(factory, runtime);
    eprintln!("{summary}");
    libtest_mimic::run(&args, trials).exit_code()
}

/// Builds one trial per case, and the summary line of skips.
fn trials(
    factory: Option<Arc<dyn StoreFactory>>,
    runtime: Arc<tokio::runtime::Runtime>,
) -> (Vec<Trial>, String) {
    let Some(factory) = factory else {
        let trials = CASES
            .iter()
            .map(|case| {
                Trial::test(case.name, || Err(Failed::from(SERVER_MISSING)))
                    .with_kind(SERVER_MISSING)
                    .with_ignored_flag(true)
            })
            .collect();
        let summary =
            format!("credstore-conformance: all {} cases skipped: test server missing", CASES.len());
        return (trials, summary);
    };
    let probe = runtime.block_on(factory.create());
    let caps = probe.capabilities();
    let title = format!("store '{}' ({})", probe.id(), probe.kind());
    drop(probe);
    let on_clock = CASES.iter().any(|c| c.needs.clock() && c.needs.is_met(&caps))
        && runtime.block_on(factory.create_on_clock(Arc::new(ManualClock::starting_now()))).is_some();
    let mut skipped: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    let trials = CASES
        .iter()
        .map(|case| {
            if case.needs.is_met(&caps) && case.needs.clock() && !on_clock {
                skipped.entry(NO_CLOCK.to_owned()).or_default().push(case.name);
                Trial::test(case.name, move || Err(Failed::from(NO_CLOCK_REASON)))
                    .with_kind(NO_CLOCK)
                    .with_ignored_flag(true)
            } else if case.needs.is_met(&caps) {
                let (factory, runtime, run) = (Arc::clone(&factory), Arc::clone(&runtime), case.run);
                let name = case.name;
                Trial::test(name, move || {
                    runtime.block_on(async move {
                        match tokio::time::timeout(CASE_TIMEOUT, run(&*factory)).await {
                            Ok(()) => Ok(()),
                            Err(_) => Err(Failed::from(format!(
                                "{name} did not finish within {} s",
                                CASE_TIMEOUT.as_secs()
                            ))),
                        }
                    })
                })
            } else {
                let label = case.needs.label();
                skipped.entry(label.clone()).or_default().push(case.name);
                let reason = format!("skipped: the store does not declare {}", case.needs.capability());
                Trial::test(case.name, move || Err(Failed::from(reason)))
                    .with_kind(label)
                    .with_ignored_flag(true)
            }
        })
        .collect();
    let count: usize = skipped.values().map(Vec::len).sum();
    let summary = if count == 0 {
        format!("credstore-conformance: {title}: all {} cases apply, none skipped", CASES.len())
    } else {
        let reasons: Vec<String> =
            skipped.iter().map(|(label, names)| format!("{label}: {}", names.join(", "))).collect();
        format!(
            "credstore-conformance: {title}: {count} of {} cases skipped ({})",
            CASES.len(),
            reasons.join("; ")
        )
    };
    (trials, summary)
}

/// Runs the case named `name` of [`CASES`] on `factory` in a new runtime,
/// panicking if it fails or does not exist. For doctests and debugging; test
/// binaries use [`run`].
pub fn run_case(name: &str, factory: &dyn StoreFactory) {
    let case = CASES.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no case named {name}"));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    runtime.block_on(bounded((case.run)(factory)));
}

async fn bounded(fut: impl Future<Output = ()>) {
    if tokio::time::timeout(CASE_TIMEOUT, fut).await.is_err() {
        panic!("the case did not finish within {} s", CASE_TIMEOUT.as_secs());
    }
}

/// Writes the `fn main` of a conformance test binary (a `[[test]]` target
/// with `harness = false`) that runs [`run`] on `$factory`, an expression of
/// type `Option<impl StoreFactory + 'static>`.
///
/// ```
/// # use std::sync::Arc;
/// # use credstore_conformance::{mock::MockStore, StoreFactory};
/// # use credstore_core::{CredentialStore, StoreId};
/// struct Factory;
/// #[credstore_conformance::async_trait]
/// impl StoreFactory for Factory {
///     async fn create(&self) -> Arc<dyn CredentialStore> {
///         Arc::new(MockStore::new(StoreId::new(credstore_conformance::unique_name("m")).unwrap()))
///     }
/// }
/// credstore_conformance::conformance_main!(Some(Factory));
/// # let _ = main;
/// ```
#[macro_export]
macro_rules! conformance_main {
    ($factory:expr) => {
        fn main() -> ::std::process::ExitCode {
            $crate::run($factory)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::{Fault, MockStore};
    use credstore_core::StoreId;

    struct Limited(Capabilities);

    #[async_trait]
    impl StoreFactory for Limited {
        async fn create(&self) -> Arc<dyn CredentialStore> {
            Arc::new(MockStore::new(StoreId::new(unique_name("t")).unwrap()).with_capabilities(self.0))
        }
    }

    /// A store that answers every call with a backend error.
    struct Broken;

    #[async_trait]
    impl StoreFactory for Broken {
        async fn create(&self) -> Arc<dyn CredentialStore> {
            let caps = MockStore::DEFAULT_CAPABILITIES.with_can_be_unavailable(false);
            let m = MockStore::new(StoreId::new("broken").unwrap()).with_capabilities(caps);
            m.fail_ratio(1.0, Fault::Backend);
            Arc::new(m)
        }
    }

    fn runtime() -> Arc<tokio::runtime::Runtime> {
        Arc::new(tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap())
    }

    /// Runs `trials` with `extra` arguments, the output going to a log file
    /// (so the nested run's summary does not mix with this test's); returns
    /// the conclusion and the log.
    fn run_logged(trials: Vec<Trial>, extra: &[&str]) -> (libtest_mimic::Conclusion, String) {
        let log = std::env::temp_dir().join(unique_name("credstore-conformance-log"));
        let log_arg = log.to_str().expect("a UTF-8 temp path").to_owned();
        let argv = ["suite", "--test-threads", "2", "--color", "never", "--logfile", &log_arg].into_iter();
        let args = Arguments::from_iter(argv.chain(extra.iter().copied()));
        let conclusion = libtest_mimic::run(&args, trials);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let _ = std::fs::remove_file(&log);
        (conclusion, text)
    }

    fn limited_caps() -> Capabilities {
        MockStore::DEFAULT_CAPABILITIES
            .with_create_only(false)
            .with_binary(false)
            .with_can_be_unavailable(false)
    }

    #[test]
    fn gated_cases_are_ignored_with_their_need_and_fail_when_forced() {
        let factory: Arc<dyn StoreFactory> = Arc::new(Limited(limited_caps()));
        let (list, summary) = trials(Some(Arc::clone(&factory)), runtime());
        let gated = CASES.iter().filter(|c| !c.needs.is_met(&limited_caps())).count();
        assert!(gated >= 10, "{gated}");
        let ignored: Vec<&Trial> = list.iter().filter(|t| t.has_ignored_flag()).collect();
        assert_eq!(ignored.len(), gated);
        assert!(ignored.iter().all(|t| t.kind().starts_with("needs ")), "every skip names its need");
        let raced = list.iter().find(|t| t.name() == "create_only_raced_by_16").unwrap();
        assert_eq!((raced.kind(), raced.has_ignored_flag()), ("needs create_only", true));
        assert!(summary.contains(&format!("{gated} of {} cases skipped", CASES.len())), "{summary}");
        assert!(summary.contains("needs create_only: create_only_creates_when_absent"), "{summary}");

        // Run normally: skipped cases are ignored, never passed; the
        // honesty case for the capability runs and passes. (The filter also
        // matches two cases of expiry and recovery, which the mock does not
        // declare.)
        let (c, log) = run_logged(list, &["create_only"]);
        assert_eq!((c.num_passed, c.num_failed, c.num_ignored), (1, 0, 6), "{c:?}");
        let line = log.lines().find(|l| l.contains("create_only_raced_by_16")).unwrap_or_default();
        let words = line.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(words.starts_with("test [needs create_only] create_only_raced_by_16 "), "{log}");
        assert!(line.ends_with("... ignored"), "{log}");

        // Forced: every skipped case fails with its reason.
        let (list, _) = trials(Some(factory), runtime());
        let (c, log) = run_logged(list, &["--ignored"]);
        assert_eq!((c.num_failed as usize, c.num_passed), (gated, 0), "{c:?}");
        assert!(log.contains("skipped: the store does not declare binary"), "{log}");
    }

    #[test]
    fn time_cases_without_a_store_on_a_clock_are_skipped_with_the_reason_and_fail_when_forced() {
        let caps = MockStore::DEFAULT_CAPABILITIES.with_expiry(true).with_can_be_unavailable(false);
        let (list, summary) = trials(Some(Arc::new(Limited(caps))), runtime());
        let on_clock: Vec<&Trial> = list.iter().filter(|t| t.kind() == NO_CLOCK).collect();
        let want = CASES.iter().filter(|c| c.needs.clock() && c.needs.is_met(&caps)).count();
        assert!(want >= 5 && on_clock.len() == want, "{} of {want}", on_clock.len());
        assert!(on_clock.iter().all(|t| t.has_ignored_flag()), "a time case without a clock must not run");
        assert!(summary.contains("needs create_on_clock: expiry_present_until_expires_at_and_absent_from_it"));
        let (c, log) = run_logged(
            list,
            &["--include-ignored", "--exact", "expiry_present_until_expires_at_and_absent_from_it"],
        );
        assert_eq!((c.num_passed, c.num_failed), (0, 1), "{c:?}");
        assert!(log.contains("create_on_clock returns None"), "{log}");
    }

    /// A store that declares `declared` over a mock that really does
    /// `real`: a store lying about its capabilities.
    #[derive(Debug)]
    struct Lying {
        info: credstore_core::StoreInfo,
        inner: Arc<dyn CredentialStore>,
    }

    #[async_trait]
    impl CredentialStore for Lying {
        fn info(&self) -> &credstore_core::StoreInfo {
            &self.info
        }
        fn with_namespace(
            &self,
            ns: &credstore_core::Namespace,
        ) -> credstore_core::Result<Arc<dyn CredentialStore>> {
            Ok(Arc::new(Lying { info: self.info.join(ns)?, inner: self.inner.with_namespace(ns)? }))
        }
        async fn get(
            &self,
            key: &credstore_core::CredentialKey,
        ) -> credstore_core::Result<Option<credstore_core::Credential>> {
            self.inner.get(key).await
        }
        async fn write(
            &self,
            request: &credstore_core::WriteRequest<'_>,
        ) -> credstore_core::Result<credstore_core::SetOutcome> {
            self.inner.write(request).await
        }
        async fn delete(&self, key: &credstore_core::CredentialKey) -> credstore_core::Result<bool> {
            self.inner.delete(key).await
        }
        async fn get_version(
            &self,
            key: &credstore_core::CredentialKey,
            version: &credstore_core::Version,
        ) -> credstore_core::Result<Option<credstore_core::Credential>> {
            self.inner.get_version(key, version).await
        }
        async fn list_versions(
            &self,
            key: &credstore_core::CredentialKey,
            options: &credstore_core::VersionListOptions,
        ) -> credstore_core::Result<credstore_core::VersionPage> {
            self.inner.list_versions(key, options).await
        }
        async fn purge(
            &self,
            key: &credstore_core::CredentialKey,
            target: &credstore_core::PurgeTarget,
        ) -> credstore_core::Result<bool> {
            self.inner.purge(key, target).await
        }
        async fn list(
            &self,
            options: &credstore_core::ListOptions,
        ) -> credstore_core::Result<credstore_core::ListPage> {
            self.inner.list(options).await
        }
        async fn check_availability(&self) -> credstore_core::Availability {
            self.inner.check_availability().await
        }
    }

    struct Liar {
        declared: Capabilities,
        real: Capabilities,
    }

    #[async_trait]
    impl StoreFactory for Liar {
        async fn create(&self) -> Arc<dyn CredentialStore> {
            let inner =
                MockStore::new(StoreId::new(unique_name("liar")).unwrap()).with_capabilities(self.real);
            let info = inner.info().with_capabilities(self.declared);
            Arc::new(Lying { info, inner: Arc::new(inner) })
        }
    }

    /// Runs the case `name` on a store declaring `declared` over a mock
    /// doing `real`; returns (passed, failed) and the log.
    fn run_liar(name: &str, declared: Capabilities, real: Capabilities) -> (u64, u64, String) {
        let (list, _) = trials(Some(Arc::new(Liar { declared, real })), runtime());
        let (c, log) = run_logged(list, &["--exact", name]);
        (c.num_passed, c.num_failed, log)
    }

    #[test]
    fn a_store_lying_about_its_history_fails_the_honesty_cases_both_ways() {
        let base = MockStore::DEFAULT_CAPABILITIES.with_can_be_unavailable(false);
        let history = base.with_versions(true).with_retention(credstore_core::Retention::versions(10));
        let recovering = history.with_recover_deleted(true);
        let expiring = base.with_expiry(true);
        for (name, declared, real, why) in [
            ("capabilities_versions_honest", history, base, "version history"),
            ("capabilities_versions_honest", base, history, "declares it off"),
            ("capabilities_recover_deleted_honest", recovering, history, "the history after a delete"),
            (
                "capabilities_recover_deleted_honest",
                history,
                recovering,
                "kept versions without recover_deleted",
            ),
            ("capabilities_expiry_honest", expiring, base, "get returns the expiry written"),
        ] {
            let (passed, failed, log) = run_liar(name, declared, real);
            assert_eq!((passed, failed), (0, 1), "{name} passed a store lying about it ({why}): {log}");
            assert!(log.contains(why), "{name}: the failure says why ({why}): {log}");
        }
        // The same cases pass when the declaration is true.
        for (name, caps) in [
            ("capabilities_versions_honest", history),
            ("capabilities_versions_honest", base),
            ("capabilities_recover_deleted_honest", recovering),
            ("capabilities_recover_deleted_honest", history),
            ("capabilities_expiry_honest", expiring),
            ("capabilities_expiry_honest", base),
        ] {
            let (passed, failed, log) = run_liar(name, caps, caps);
            assert_eq!((passed, failed), (1, 0), "{name} failed an honest store: {log}");
        }
    }

    #[test]
    fn a_missing_server_skips_every_case_and_fails_when_forced() {
        let (list, summary) = trials(None, runtime());
        assert_eq!(list.len(), CASES.len());
        assert!(list.iter().all(|t| t.has_ignored_flag() && t.kind() == SERVER_MISSING));
        assert!(summary.contains("test server missing"), "{summary}");
        let (c, log) = run_logged(list, &["--include-ignored", "--exact", "round_trip"]);
        assert_eq!((c.num_passed, c.num_failed), (0, 1), "{c:?}");
        assert!(log.contains(SERVER_MISSING), "{log}");
    }

    #[test]
    fn a_misbehaving_store_fails_its_cases() {
        let (list, _) = trials(Some(Arc::new(Broken)), runtime());
        let (c, log) = run_logged(list, &["--exact", "round_trip"]);
        assert_eq!((c.num_passed, c.num_failed), (0, 1), "{c:?}");
        assert!(log.contains("scripted fault: backend failure"), "the failure names the cause: {log}");
    }

    #[test]
    fn every_need_has_a_label() {
        for need in [
            Needs::List,
            Needs::Metadata,
            Needs::Binary,
            Needs::CreateOnly,
            Needs::ReplaceIfVersion,
            Needs::PersistenceBeyondProcess,
            Needs::CanBeUnavailable,
            Needs::ChangeFeed,
        ] {
            assert!(need.label().len() > "needs ".len(), "{need:?}");
            assert!(need.is_met(&Capabilities::full().with_change_feed(true)), "{need:?}");
        }
        let history = Capabilities::full()
            .with_versions(true)
            .with_recover_deleted(true)
            .with_expiry(true)
            .with_change_feed(true)
            .with_retention(
                credstore_core::Retention::versions(SMALL_RETENTION)
                    .with_max_age(Some(Duration::from_secs(1))),
            );
        for need in [
            Needs::Versions,
            Needs::RecoverDeleted,
            Needs::SmallRetention,
            Needs::AgeRetention,
            Needs::Expiry,
            Needs::ExpiryWithVersions,
            Needs::VersionsAndChangeFeed,
        ] {
            assert!(need.label().len() > "needs ".len(), "{need:?}");
            assert!(need.is_met(&history), "{need:?}");
            assert!(!need.is_met(&Capabilities::full().with_change_feed(true)), "{need:?} is optional");
        }
        assert_eq!(
            Needs::SmallRetention.label(),
            format!("needs retention.max_versions <= {SMALL_RETENTION}")
        );
        assert!(!Needs::VersionsWithoutRecovery.is_met(&history));
        assert!(Needs::VersionsWithoutRecovery.is_met(&history.with_recover_deleted(false)));
        let many = history.with_retention(credstore_core::Retention::versions(SMALL_RETENTION + 1));
        assert!(!Needs::SmallRetention.is_met(&many) && !Needs::AgeRetention.is_met(&many));
        assert!(!Needs::SmallRetention.is_met(&history.with_retention(credstore_core::Retention::UNBOUNDED)));
        assert!(Needs::Expiry.clock() && Needs::AgeRetention.clock() && !Needs::Versions.clock());
        assert_eq!(Needs::ChangeFeed.label(), "needs change_feed");
        assert!(!Needs::ChangeFeed.is_met(&Capabilities::full()), "the feed is optional");
        assert!(Needs::Nothing.is_met(&limited_caps()));
        assert!(!Needs::PersistenceBeyondProcess.is_met(&MockStore::DEFAULT_CAPABILITIES));
    }
}

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
