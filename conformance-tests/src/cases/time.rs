//! `created_at` and `updated_at`.

use std::time::{Duration, SystemTime};

use super::{key, must_get, set_text};
use crate::StoreFactory;

fn distance(a: SystemTime, b: SystemTime) -> Duration {
    a.duration_since(b).unwrap_or_else(|e| e.duration())
}

/// Overwriting keeps `created_at` and moves `updated_at` forward; the
/// outcome of each write agrees with what `get` returns. Waits past one
/// second so that stores with second-resolution clocks can show it.
pub async fn created_at_kept_updated_at_advanced(f: &dyn StoreFactory) {
    let store = f.create().await;
    let k = key("timestamps");
    let first_out = set_text(&*store, "timestamps", "one").await;
    let first = must_get(&*store, &k).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second_out = set_text(&*store, "timestamps", "two").await;
    let second = must_get(&*store, &k).await;
    assert_eq!(second.created_at, first.created_at, "created_at must be kept on overwrite");
    assert!(second.updated_at > first.updated_at, "updated_at must advance on overwrite");
    assert!(second.updated_at >= second.created_at);
    let second_ = Duration::from_secs(1);
    assert!(distance(first_out.created_at, first.created_at) <= second_, "set and get disagree");
    assert!(distance(second_out.created_at, first.created_at) <= second_, "overwrite reports created_at");
    assert!(distance(second_out.updated_at, second.updated_at) <= second_);
}

/// Timestamps are the wall-clock time of the write.
pub async fn timestamps_are_current(f: &dyn StoreFactory) {
    let store = f.create().await;
    let slack = Duration::from_secs(5);
    let before = SystemTime::now() - slack;
    set_text(&*store, "now", "v").await;
    let after = SystemTime::now() + slack;
    let c = must_get(&*store, &key("now")).await;
    assert!(c.created_at >= before && c.created_at <= after, "created_at {:?} is not now", c.created_at);
    assert!(c.updated_at >= c.created_at);
    assert!(c.updated_at <= after);
}
