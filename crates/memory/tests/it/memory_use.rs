//! What the store holds on to, measured by the bytes this test binary has
//! allocated and not freed (a counting allocator over the system's).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use credstore_core::{
    CredentialKey, CredentialStore, CredentialStoreExt, ListOptions, Metadata, Namespace, SecretValue,
    StoreId,
};
use credstore_memory::MemoryStore;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only a counter is
// kept beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn ns(tenant: usize, project: usize) -> Namespace {
    Namespace::new(format!("tenant_{tenant}/project_{project}")).unwrap()
}

// One test in this binary, so no other test allocates meanwhile.
#[tokio::test(flavor = "current_thread")]
async fn reads_on_fresh_namespaces_leave_memory_flat_and_namespaces_with_keys_stay() {
    let store = MemoryStore::new(StoreId::new("mem").unwrap());
    let key = CredentialKey::new("k").unwrap();
    let kept = store.with_namespace(&ns(0, 0)).unwrap();
    kept.set(&key, &SecretValue::from("v"), &Metadata::new()).await.unwrap();
    drop(kept);

    // Warm up whatever allocates once (the runtime's structures, ...).
    for i in 0..1_000 {
        let handle = store.with_namespace(&ns(1, i)).unwrap();
        handle.list(&ListOptions::default()).await.unwrap();
    }
    let before = LIVE.load(Ordering::Relaxed);
    for i in 0..100_000 {
        let handle = store.with_namespace(&ns(2, i)).unwrap();
        assert!(handle.get(&key).await.unwrap().is_none());
        assert!(handle.list(&ListOptions::default()).await.unwrap().keys.is_empty());
        assert!(!handle.delete(&key).await.unwrap());
    }
    let grown = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    eprintln!("100,000 reads on fresh namespaces: {grown} bytes kept");
    assert!(grown <= 2 * 1024 * 1024, "100,000 reads on fresh namespaces kept {grown} bytes");

    // A namespace that holds keys outlives its handles; one emptied by a
    // delete is forgotten with its last handle, and works again after.
    let again = store.with_namespace(&ns(0, 0)).unwrap();
    assert!(again.get(&key).await.unwrap().is_some(), "keys outlive their handles");
    assert!(again.delete(&key).await.unwrap());
    drop(again);
    let fresh = store.with_namespace(&ns(0, 0)).unwrap();
    assert!(fresh.get(&key).await.unwrap().is_none());
    let other = fresh.clone();
    other.set(&key, &SecretValue::from("w"), &Metadata::new()).await.unwrap();
    drop(other);
    assert!(fresh.has(&key).await.unwrap(), "two handles on one namespace share it");
}
