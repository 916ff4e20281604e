//! Expiry ([`SetOptions::expires_at`]): a credential reads as absent from
//! its `expires_at` on, by the store's clock, and shows as `Expired` in its
//! history. Each case runs on a store built on a
//! [`ManualClock`](credstore_core::ManualClock) of its own
//! ([`StoreFactory::create_on_clock`]) and steps it across the boundary:
//! no sleeping.

use std::time::{Duration, SystemTime};

use credstore_core::{Clock as _, CredentialStoreExt, Metadata, SecretValue, SetOptions, VersionState};

use super::{
    absent, assert_invalid_input, assert_precondition_failed, assert_unchanged, caps, key, list_all, meta,
    meta_if, must_get, must_get_version, names, on_clock, set_text, text,
};
use crate::StoreFactory;

/// How far ahead of the store's clock the cases set `expires_at`.
const LIFETIME: Duration = Duration::from_secs(60);

/// One nanosecond, the least step of a [`SystemTime`].
const NANO: Duration = Duration::from_nanos(1);

fn expiring(at: SystemTime) -> SetOptions {
    SetOptions::new().with_expires_at(Some(at))
}

/// A credential is there, with its `expires_at`, up to a nanosecond before
/// it; from exactly `expires_at` on it is absent from `get`, `has`,
/// `version` and `list`, and a delete finds nothing.
pub async fn expiry_present_until_expires_at_and_absent_from_it(f: &dyn StoreFactory) {
    let (store, clock) = on_clock(f).await;
    let k = key("short-lived");
    let at = clock.now() + LIFETIME;
    let out = store.set_opts(&k, &SecretValue::from("token"), &Metadata::new(), &expiring(at)).await;
    let out = out.unwrap_or_else(|e| panic!("a write with an expiry failed: {e}"));
    assert_eq!(must_get(&*store, &k).await.expires_at, Some(at), "get returns the expiry written");
    clock.set(at - NANO);
    let c = must_get(&*store, &k).await;
    assert_eq!((text(&c.value), &c.version, c.expires_at), ("token", &out.version, Some(at)));
    assert!(store.has(&k).await.expect("has"), "has, a nanosecond before expiry");
    assert_eq!(store.version(&k).await.expect("version"), Some(out.version.clone()));
    if caps(&*store).list {
        assert_eq!(names(list_all(&*store, "", 100).await), vec!["short-lived"], "listed before expiry");
    }
    clock.set(at);
    assert!(absent(&*store, &k).await, "get or has still finds the credential at its expires_at");
    assert_eq!(store.version(&k).await.expect("version"), None, "version, at expires_at");
    if caps(&*store).list {
        assert!(list_all(&*store, "", 100).await.is_empty(), "an expired key is listed");
    }
    assert!(!store.delete(&k).await.expect("delete"), "a delete of an expired key found it");
}

/// An expired version shows as `Expired` in the history, with its
/// `expires_at`, and still reads by `get_version`; nothing is `Current`.
pub async fn expired_version_shows_expired_in_list_versions(f: &dyn StoreFactory) {
    let (store, clock) = on_clock(f).await;
    let k = key("history-of-expiry");
    let first = set_text(&*store, "history-of-expiry", "lasting").await;
    let at = clock.now() + LIFETIME;
    let m = meta_if(&*store, meta([("kind", "session")]));
    let second = store.set_opts(&k, &SecretValue::from("session"), &m, &expiring(at)).await.expect("set");
    let listed = super::all_versions(&*store, &k, 10).await;
    assert_eq!(listed[0].version, second.version);
    assert_eq!((listed[0].state, listed[0].expires_at), (VersionState::Current, Some(at)));
    clock.set(at);
    let listed = super::all_versions(&*store, &k, 10).await;
    let states: Vec<_> = listed.iter().map(|v| (v.version.clone(), v.state)).collect();
    let mut want = vec![(second.version.clone(), VersionState::Expired)];
    if super::kept(&*store, 2) == 2 {
        want.push((first.version, VersionState::Previous));
    }
    assert_eq!(states, want, "the history of an expired key");
    assert_eq!((listed[0].expires_at, &listed[0].metadata), (Some(at), &m));
    let c = must_get_version(&*store, &k, &second.version).await;
    assert_eq!((text(&c.value), c.expires_at), ("session", Some(at)), "get_version of an expired version");
    assert!(store.get(&k).await.expect("get").is_none());
}

/// A create-only write over an expired key succeeds and creates it anew,
/// without the old expiry.
pub async fn create_only_over_an_expired_key_succeeds(f: &dyn StoreFactory) {
    let (store, clock) = on_clock(f).await;
    let k = key("expired-then-created");
    let at = clock.now() + LIFETIME;
    let old =
        store.set_opts(&k, &SecretValue::from("old"), &Metadata::new(), &expiring(at)).await.expect("set");
    clock.set(at);
    let out =
        store.set_opts(&k, &SecretValue::from("new"), &Metadata::new(), &SetOptions::create_only()).await;
    if !caps(&*store).create_only {
        assert!(matches!(out, Err(credstore_core::Error::Unsupported { .. })), "{out:?}");
        return;
    }
    let out = out.unwrap_or_else(|e| panic!("a create-only write over an expired key failed: {e}"));
    assert!(out.created, "the expired key counts as absent, so the write creates it");
    assert_ne!(out.version, old.version);
    let c = must_get(&*store, &k).await;
    assert_eq!((text(&c.value), c.expires_at), ("new", None));
}

/// A replace-if-version write against an expired key fails, even at its
/// last version, and changes nothing: the expired version is still the
/// newest, as it was (read by `get_version` where the store keeps versions;
/// elsewhere with the clock set back).
pub async fn replace_against_an_expired_key_fails_and_changes_nothing(f: &dyn StoreFactory) {
    let (store, clock) = on_clock(f).await;
    let k = key("expired-then-replaced");
    let at = clock.now() + LIFETIME;
    let old =
        store.set_opts(&k, &SecretValue::from("old"), &Metadata::new(), &expiring(at)).await.expect("set");
    let before = must_get(&*store, &k).await;
    clock.set(at);
    let r = store.replace(&k, &SecretValue::from("new"), &Metadata::new(), &old.version).await;
    if caps(&*store).replace_if_version {
        assert_precondition_failed(r, "a replace of an expired key");
    } else {
        assert!(matches!(r, Err(credstore_core::Error::Unsupported { .. })), "{r:?}");
    }
    assert!(store.get(&k).await.expect("get").is_none());
    if caps(&*store).versions {
        // Read at its version, so that a cache in front (which may remember
        // the miss) is not asked.
        let kept = must_get_version(&*store, &k, &old.version).await;
        assert_unchanged(&before, &kept, "the expired version after the refused replace");
        assert_eq!(kept.expires_at, Some(at));
        let newest = super::all_versions(&*store, &k, 10).await;
        assert_eq!(
            newest.first().map(|v| &v.version),
            Some(&old.version),
            "the refused replace wrote a version"
        );
    } else {
        clock.set(at - NANO);
        assert_unchanged(
            &before,
            &must_get(&*store, &k).await,
            "the expired credential after the refused replace",
        );
    }
}

/// An overwrite without `expires_at` clears the expiry: the credential
/// stays long past the old time.
pub async fn overwrite_without_expires_at_clears_the_expiry(f: &dyn StoreFactory) {
    let (store, clock) = on_clock(f).await;
    let k = key("made-permanent");
    let at = clock.now() + LIFETIME;
    store.set_opts(&k, &SecretValue::from("temp"), &Metadata::new(), &expiring(at)).await.expect("set");
    set_text(&*store, "made-permanent", "kept").await;
    assert_eq!(must_get(&*store, &k).await.expires_at, None, "the overwrite kept the old expiry");
    clock.set(at + Duration::from_secs(86_400));
    assert_eq!(text(&must_get(&*store, &k).await.value), "kept", "expired by the overwritten version's time");
}

/// An `expires_at` now or in the past, by the store's clock, is refused
/// with `InvalidInput` on `expires_at` before any I/O: nothing stored, an
/// existing value unchanged; an unreachable store refuses it the same way.
pub async fn past_or_present_expires_at_is_refused_before_any_io(f: &dyn StoreFactory) {
    let (store, clock) = on_clock(f).await;
    let k = key("born-expired");
    for at in [clock.now(), clock.now() - Duration::from_secs(1)] {
        let r = store.set_opts(&k, &SecretValue::from("v"), &Metadata::new(), &expiring(at)).await;
        assert_invalid_input(&r.expect_err("an expiry not in the future was accepted"), "expires_at");
        assert!(absent(&*store, &k).await, "the refused write stored the credential");
    }
    set_text(&*store, "born-expired", "current").await;
    let before = must_get(&*store, &k).await;
    let r = store.set_opts(&k, &SecretValue::from("v"), &Metadata::new(), &expiring(clock.now())).await;
    assert_invalid_input(&r.expect_err("an expiry not in the future was accepted"), "expires_at");
    assert_unchanged(&before, &must_get(&*store, &k).await, "after the refused overwrite");
    if let Some(unreachable) = f.unreachable().await {
        if caps(&*unreachable).expiry {
            let past = unreachable.info().now() - Duration::from_secs(1);
            let r =
                unreachable.set_opts(&k, &SecretValue::from("v"), &Metadata::new(), &expiring(past)).await;
            assert_invalid_input(&r.expect_err("an unreachable store accepted a past expiry"), "expires_at");
        }
    }
}
