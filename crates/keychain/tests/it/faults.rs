//! Faults of the real platforms, each answered by `available: false` with
//! the platform's own cause and a typed, retriable error, with nothing
//! stored lost:
//!
//! - no Secret Service provider on the bus (a private bus with nobody on it);
//! - a locked collection (gnome-keyring's login collection, locked over
//!   D-Bus, and unlocked again by a restart of the daemon with its password);
//! - the kernel refusing keyutils calls with the user's key quota
//!   exhausted (run in a child process with its own session keyring, as the
//!   unprivileged user `nobody` when the tests run as root, so the quota of
//!   no other user is touched), and with a seccomp profile that refuses
//!   `add_key` (as some container runtimes do).

use std::time::{Duration, Instant};

use credstore_conformance::fixtures::key;
use credstore_core::{CredentialStore, CredentialStoreExt, Error, Metadata, SecretValue, StoreId};
use credstore_keychain::{KeychainConfig, KeychainStore, KeyutilsKeyring, Platform};

use crate::util::keyctl;
use crate::util::secret_service::Bus;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

fn assert_unavailable(err: Error, needle: &str) {
    match &err {
        Error::Unavailable { reason, .. } => assert!(reason.contains(needle), "{reason:?} lacks {needle:?}"),
        other => panic!("expected Unavailable about {needle:?}, got {other:?}"),
    }
    assert!(err.is_retriable());
}

#[test]
fn secret_service_no_provider_on_the_bus() {
    let Some(bus) = Bus::start(false) else { return };
    let store = bus.store("no-provider");
    runtime().block_on(async {
        let status = store.check_availability().await;
        assert!(!status.available, "{status:?}");
        let reason = status.reason.unwrap();
        assert!(reason.contains("no Secret Service provider (org.freedesktop.secrets)"), "{reason}");
        assert!(reason.contains(bus.address()), "{reason}");
        let err = store.set(&key("k"), &SecretValue::from("v"), &Metadata::new()).await.unwrap_err();
        assert_unavailable(err, "no Secret Service provider");
        assert_unavailable(store.get(&key("k")).await.unwrap_err(), "no Secret Service provider");
    });
}

#[test]
fn secret_service_locked_collection() {
    let Some(mut bus) = Bus::start(true) else { return };
    let store = bus.store("locked");
    let rt = runtime();
    rt.block_on(async {
        let meta = Metadata::try_from([("owner", "faults")]).unwrap();
        store.set(&key("kept"), &SecretValue::from("before-lock"), &meta).await.unwrap();
    });
    bus.lock_collection();
    rt.block_on(async {
        let status = store.check_availability().await;
        assert!(!status.available);
        assert!(status.reason.as_deref().unwrap().contains("collection 'default' is locked"), "{status:?}");
        let err =
            store.set(&key("kept"), &SecretValue::from("during-lock"), &Metadata::new()).await.unwrap_err();
        assert_unavailable(err, "is locked");
        let err = store.set(&key("new"), &SecretValue::from("x"), &Metadata::new()).await.unwrap_err();
        assert_unavailable(err, "is locked");
        assert_unavailable(store.get(&key("kept")).await.unwrap_err(), "is locked");
        assert_unavailable(store.delete(&key("kept")).await.unwrap_err(), "is locked");
    });
    bus.restart_keyring();
    rt.block_on(async {
        assert!(store.check_availability().await.available);
        let kept = store.get(&key("kept")).await.unwrap().expect("nothing lost");
        assert_eq!(kept.value.expose_str().unwrap(), "before-lock");
        assert_eq!(kept.metadata.get("owner"), Some("faults"));
        assert!(store.get(&key("new")).await.unwrap().is_none(), "a refused write stored something");
    });
}

/// Set in a child process: the name of the scenario it runs.
const CHILD: &str = "CREDSTORE_KEYCHAIN_FAULT_CHILD";

/// The name the test harness knows test `test` of this module by.
fn test_path(test: &str) -> String {
    let module = module_path!().split_once("::").map_or(module_path!(), |(_crate, module)| module);
    format!("{module}::{test}")
}

/// Runs the test `name` again in a child process that runs `scenario`: with
/// a session keyring of its own, and as the user `nobody` when `as_nobody`
/// and the tests run as root.
fn in_child(name: &str, as_nobody: bool, scenario: fn()) {
    if std::env::var(CHILD).is_ok_and(|v| v == name) {
        return scenario();
    }
    if let Err(why) = keyctl::usable() {
        assert!(!credstore_test_servers::in_ci(), "CI=true and {why}");
        eprintln!("\n!!!! SKIPPED: {why} !!!!\n");
        return;
    }
    // SAFETY: geteuid has no preconditions.
    let as_nobody = as_nobody && unsafe { libc::geteuid() } == 0;
    let exe = std::env::current_exe().unwrap();
    // `nobody` may not reach the target folder: it runs a copy in a folder of its own.
    let copy = tempfile::Builder::new().prefix("credstore-keychain-child-").tempdir().unwrap();
    let program = if as_nobody {
        use std::os::unix::fs::PermissionsExt;
        let to = copy.path().join("faults");
        std::fs::copy(&exe, &to).expect("copy the test binary");
        for p in [copy.path(), to.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        to
    } else {
        exe
    };
    let mut cmd = std::process::Command::new(program);
    cmd.args(["--exact", &test_path(name), "--nocapture", "--test-threads=1"])
        .env(CHILD, name)
        .current_dir(copy.path());
    if as_nobody {
        use std::os::unix::process::CommandExt;
        cmd.uid(65534).gid(65534);
    }
    let out = cmd.output().expect("run the child");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the {name} scenario failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "the {name} scenario did not run:\n{stdout}\n{stderr}");
}

#[test]
fn keyutils_quota_exhausted() {
    // The user `nobody`, whose quota (200 keys, 20,000 bytes by default)
    // fills fast and is no one else's.
    in_child("keyutils_quota_exhausted", true, quota_scenario);
}

#[test]
fn keyutils_refused_by_seccomp() {
    in_child("keyutils_refused_by_seccomp", false, seccomp_scenario);
}

fn keyutils_store() -> KeychainStore {
    let config = KeychainConfig::new().platform(Platform::Keyutils(KeyutilsKeyring::Session));
    KeychainStore::new(StoreId::new("faults").unwrap(), config).unwrap()
}

/// A seccomp filter on this thread that answers `add_key` with EPERM, as
/// container profiles do; keyctl stays allowed.
fn refuse_add_key() {
    #[repr(C)]
    struct SockFilter {
        code: u16,
        jt: u8,
        jf: u8,
        k: u32,
    }
    #[repr(C)]
    struct SockFprog {
        len: u16,
        filter: *const SockFilter,
    }
    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    const RET_ERRNO: u32 = 0x0005_0000;
    const RET_ALLOW: u32 = 0x7fff_0000;
    let prog = [
        SockFilter { code: LD_W_ABS, jt: 0, jf: 0, k: 0 }, // A = syscall number
        SockFilter { code: JEQ_K, jt: 0, jf: 1, k: libc::SYS_add_key as u32 },
        SockFilter { code: RET_K, jt: 0, jf: 0, k: RET_ERRNO | libc::EPERM as u32 },
        SockFilter { code: RET_K, jt: 0, jf: 0, k: RET_ALLOW },
    ];
    let fprog = SockFprog { len: prog.len() as u16, filter: prog.as_ptr() };
    // SAFETY: the program outlives the calls; the kernel copies it.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0, "no_new_privs");
        assert_eq!(
            libc::prctl(libc::PR_SET_SECCOMP, 2, &fprog as *const SockFprog, 0, 0),
            0,
            "seccomp filter"
        );
    }
}

/// Seccomp refuses `add_key`: no write can happen, reads still work.
fn seccomp_scenario() {
    let session = keyctl::own_session().expect("a session keyring of the child's own");
    let store = keyutils_store();
    let rt = runtime(); // current-thread: every call below runs on this thread
    rt.block_on(async {
        store.set(&key("kept"), &SecretValue::from("before-seccomp"), &Metadata::new()).await.unwrap();
    });
    refuse_add_key();
    rt.block_on(async {
        let status = store.check_availability().await;
        assert!(!status.available, "available with add_key refused");
        assert!(status.reason.as_deref().unwrap().contains("EPERM: a seccomp profile"), "{status:?}");
        let err = store.set(&key("kept"), &SecretValue::from("during"), &Metadata::new()).await.unwrap_err();
        assert_unavailable(err, "seccomp");
        let kept = store.get(&key("kept")).await.unwrap().expect("nothing lost");
        assert_eq!(kept.value.expose_str().unwrap(), "before-seccomp");
        assert!(store.delete(&key("kept")).await.unwrap(), "keyctl is still allowed");
    });
    keyctl::clear(session).unwrap();
}

/// Fills the user's key quota, then checks the store's answers.
fn quota_scenario() {
    let session = keyctl::own_session().expect("a session keyring of the child's own");
    let store = keyutils_store();
    let rt = runtime();
    rt.block_on(async {
        store.set(&key("kept"), &SecretValue::from("before-quota"), &Metadata::new()).await.unwrap();
        assert!(store.check_availability().await.available);
    });
    // Fill: big keys first, then single bytes, until the kernel says EDQUOT.
    let filler = keyctl::add_keyring("filler", session).expect("filler keyring");
    let mut added = 0;
    for size in [4096usize, 256, 1] {
        for i in 0..100_000 {
            match keyctl::add_user_key(&format!("f{size}-{i}"), &vec![b'x'; size], filler) {
                Ok(_) => added += 1,
                Err(e) if e.raw_os_error() == Some(libc::EDQUOT) => break,
                Err(e) => panic!("filling the quota: {e}"),
            }
        }
    }
    assert!(added > 0, "nothing could be added: the quota was already full");
    rt.block_on(async {
        let status = store.check_availability().await;
        assert!(!status.available, "available with the quota exhausted");
        assert!(
            status.reason.as_deref().unwrap().contains("quota for this user is exhausted (EDQUOT"),
            "{status:?}"
        );
        let err =
            store.set(&key("kept"), &SecretValue::from("during-quota"), &Metadata::new()).await.unwrap_err();
        assert_unavailable(err, "EDQUOT");
        let err = store.set(&key("new"), &SecretValue::from("x"), &Metadata::new()).await.unwrap_err();
        assert_unavailable(err, "EDQUOT");
        // Reads need no quota: the old entry is whole.
        let kept = store.get(&key("kept")).await.unwrap().expect("nothing lost");
        assert_eq!(kept.value.expose_str().unwrap(), "before-quota");
        assert!(store.get(&key("new")).await.unwrap().is_none());
    });
    // Free the quota; the kernel's garbage collector returns it shortly.
    keyctl::invalidate(filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    rt.block_on(async {
        let mut backoff = Duration::from_millis(10);
        while !store.check_availability().await.available {
            assert!(Instant::now() < deadline, "quota not returned within 20 s");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
        }
        // The collector may still be returning the rest: the write is
        // retriable, and succeeds once it has.
        loop {
            match store.set(&key("kept"), &SecretValue::from("after-quota"), &Metadata::new()).await {
                Ok(_) => break,
                Err(e) if e.is_retriable() && Instant::now() < deadline => tokio::time::sleep(backoff).await,
                Err(e) => panic!("write after the quota was freed: {e}"),
            }
        }
        let kept = store.get(&key("kept")).await.unwrap().unwrap();
        assert_eq!(kept.value.expose_str().unwrap(), "after-quota");
    });
    keyctl::clear(session).unwrap();
}
