//! The change feed: what a store reports of its writes and deletes, so that
//! a cache in front of it (in this process or in another replica) drops what
//! changed instead of waiting for its TTL.
//!
//! - [`Change`]: one key of one namespace was written (with its new
//!   [`Version`]) or deleted. Never a value.
//! - [`FeedEvent`]: a change, or word that changes may have been missed
//!   ([`FeedEvent::Lost`]) and that the feed is whole again
//!   ([`FeedEvent::Restored`]).
//! - [`ChangeFeed`]: one subscriber's stream of events, from
//!   [`CredentialStore::subscribe`](crate::CredentialStore::subscribe).
//! - [`ChangeHub`]: the fan-out a backend builds its feed on: it publishes
//!   each change once and every subscriber gets those of its own namespace.
//!
//! ```
//! use credstore_core::{ChangeHub, CredentialKey, FeedEvent, Namespace, Version};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> credstore_core::Result<()> {
//! let hub = ChangeHub::new(64);
//! let tenant = Namespace::new("tenant-1")?;
//! let mut root = hub.subscribe(&Namespace::root());
//! let mut in_tenant = hub.subscribe(&tenant);
//!
//! let key = CredentialKey::new("api-key")?;
//! hub.publish(&tenant, &key, Some(&Version::from_counter(7)));
//! hub.publish(&Namespace::root(), &key, None); // a delete at the root
//!
//! // The root sees both, namespaces relative to it.
//! let Some(FeedEvent::Changed(first)) = root.next().await else { panic!() };
//! assert_eq!((first.namespace.as_str(), first.version.as_ref().map(|v| v.as_str())), ("tenant-1", Some("7")));
//! // The tenant's handle sees its own change only, at its own root.
//! let Some(FeedEvent::Changed(own)) = in_tenant.next().await else { panic!() };
//! assert!(own.namespace.is_root() && own.key == key);
//! # Ok(()) }
//! ```

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{BoxStream, Stream, StreamExt};
use tokio::sync::broadcast;

use crate::{CredentialKey, Namespace, Version};

/// One change of a store: a key was written or deleted. Never carries a
/// value or metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// The key's namespace, relative to the handle the feed was taken from:
    /// the root for a key of that handle's own namespace, `b` for a key of
    /// `a/b` seen from `a`.
    pub namespace: Namespace,
    /// The key.
    pub key: CredentialKey,
    /// The key's version after the change; `None` when it was deleted.
    pub version: Option<Version>,
}

impl Change {
    /// A change of `key` in `namespace` (relative to the subscriber's
    /// handle) to `version`, `None` for a delete.
    pub fn new(namespace: Namespace, key: CredentialKey, version: Option<Version>) -> Self {
        Self { namespace, key, version }
    }
}

/// What a [`ChangeFeed`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeedEvent {
    /// A key was written or deleted, and the change is committed: a read
    /// made after this event sees it (or a later one).
    Changed(Change),
    /// Changes may have been missed since the previous event: the
    /// connection that carries the feed broke, or this subscriber fell
    /// behind. Whatever the subscriber derived from earlier reads may be
    /// stale. The feed goes on (it is not over until `next` returns `None`);
    /// [`FeedEvent::Restored`] follows once it is whole again.
    Lost {
        /// Why, for a log line: never a value.
        reason: String,
    },
    /// The feed is whole again after [`FeedEvent::Lost`]: every change
    /// committed from now on is reported.
    Restored,
}

/// One subscriber's stream of [`FeedEvent`]s, from
/// [`CredentialStore::subscribe`](crate::CredentialStore::subscribe).
///
/// Reports the changes of the subscribed handle's namespace and of the
/// namespaces nested in it, each once, in the order the store reports them.
/// A feed that is not read keeps a bounded number of events; past that, the
/// oldest are dropped and the subscriber gets [`FeedEvent::Lost`]. `next`
/// returns `None` when the feed has ended for good (its store is gone); it
/// is also a [`Stream`].
pub struct ChangeFeed {
    events: BoxStream<'static, FeedEvent>,
}

impl ChangeFeed {
    /// A feed over any stream of events: what a backend with a feed of its
    /// own returns (most build on [`ChangeHub`]).
    pub fn new(events: impl Stream<Item = FeedEvent> + Send + 'static) -> Self {
        Self { events: events.boxed() }
    }

    /// The next event; `None` once the feed has ended.
    pub async fn next(&mut self) -> Option<FeedEvent> {
        self.events.next().await
    }
}

impl Stream for ChangeFeed {
    type Item = FeedEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<FeedEvent>> {
        self.events.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for ChangeFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeFeed").finish_non_exhaustive()
    }
}

/// What a [`ChangeHub`] carries: a change with its full namespace, or a
/// loss or restoration of the whole feed.
#[derive(Debug, Clone)]
enum HubEvent {
    Changed { namespace: Namespace, key: CredentialKey, version: Option<Version> },
    Lost(String),
    Restored,
}

/// The fan-out a backend builds its change feed on: it publishes each change
/// once, with the key's full namespace, and [`subscribe`](Self::subscribe)
/// hands each handle the changes of its own namespace (nested ones
/// included), relative to it.
///
/// Bounded: each subscriber keeps at most `capacity` unread events; one that
/// falls further behind gets [`FeedEvent::Lost`], then [`FeedEvent::Restored`]
/// (nothing is missed from there on) and the newest events.
/// Cheap to clone (clones publish to the same subscribers).
#[derive(Clone)]
pub struct ChangeHub {
    sender: broadcast::Sender<HubEvent>,
}

impl ChangeHub {
    /// A hub whose subscribers each keep up to `capacity` unread events (at
    /// least one).
    pub fn new(capacity: usize) -> Self {
        Self { sender: broadcast::channel(capacity.max(1)).0 }
    }

    /// Reports that `key` of the full namespace `namespace` is now at
    /// `version` (`None`: deleted). Call it once the change is committed.
    /// Cheap when nobody subscribes.
    pub fn publish(&self, namespace: &Namespace, key: &CredentialKey, version: Option<&Version>) {
        if self.sender.receiver_count() > 0 {
            let event = HubEvent::Changed {
                namespace: namespace.clone(),
                key: key.clone(),
                version: version.cloned(),
            };
            let _ = self.sender.send(event);
        }
    }

    /// Tells every subscriber that changes may have been missed (the
    /// connection that carries them broke), with the reason.
    pub fn lost(&self, reason: impl Into<String>) {
        let _ = self.sender.send(HubEvent::Lost(reason.into()));
    }

    /// Tells every subscriber that the feed is whole again.
    pub fn restored(&self) {
        let _ = self.sender.send(HubEvent::Restored);
    }

    /// How many feeds are subscribed now.
    pub fn subscribers(&self) -> usize {
        self.sender.receiver_count()
    }

    /// A feed of the changes of `base` (a handle's full namespace) and of
    /// the namespaces nested in it, each [`Change::namespace`] relative to
    /// `base`. Reports every change published after this call. The feed ends
    /// when every clone of the hub is dropped.
    pub fn subscribe(&self, base: &Namespace) -> ChangeFeed {
        let receiver = self.sender.subscribe();
        let base = base.clone();
        // `true` once the subscriber was told it fell behind: it is whole
        // again from the next event on, and is told so first.
        let events = futures::stream::unfold((receiver, false), move |(mut receiver, lagged)| {
            let base = base.clone();
            async move {
                if lagged {
                    return Some((FeedEvent::Restored, (receiver, false)));
                }
                loop {
                    let mut lagged = false;
                    let event = match receiver.recv().await {
                        Ok(HubEvent::Changed { namespace, key, version }) => {
                            match relative(&base, &namespace) {
                                Some(namespace) => FeedEvent::Changed(Change { namespace, key, version }),
                                None => continue,
                            }
                        }
                        Ok(HubEvent::Lost(reason)) => FeedEvent::Lost { reason },
                        Ok(HubEvent::Restored) => FeedEvent::Restored,
                        Err(broadcast::error::RecvError::Lagged(missed)) => {
                            lagged = true;
                            FeedEvent::Lost { reason: format!("the subscriber fell {missed} events behind") }
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    };
                    return Some((event, (receiver, lagged)));
                }
            }
        });
        ChangeFeed::new(events)
    }
}

impl fmt::Debug for ChangeHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChangeHub").field("subscribers", &self.subscribers()).finish()
    }
}

/// `namespace` relative to `base`, when it is `base` or nested in it.
fn relative(base: &Namespace, namespace: &Namespace) -> Option<Namespace> {
    if base.is_root() {
        return Some(namespace.clone());
    }
    let rest = namespace.as_str().strip_prefix(base.as_str())?;
    if rest.is_empty() {
        return Some(Namespace::root());
    }
    // Already valid as a part of a valid namespace.
    rest.strip_prefix('/').and_then(|rest| Namespace::new(rest).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(s: &str) -> Namespace {
        Namespace::new(s).unwrap()
    }

    #[test]
    fn relative_namespaces_keep_to_the_subtree_of_the_base() {
        assert_eq!(relative(&ns("a"), &ns("a")), Some(Namespace::root()));
        assert_eq!(relative(&ns("a"), &ns("a/b/c")), Some(ns("b/c")));
        assert_eq!(relative(&ns("a"), &ns("ab")), None);
        assert_eq!(relative(&ns("a"), &Namespace::root()), None);
        assert_eq!(relative(&ns("a/b"), &ns("a")), None);
        assert_eq!(relative(&Namespace::root(), &ns("x/y")), Some(ns("x/y")));
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_it_lost_changes_and_is_restored_then_gets_the_newest() {
        let hub = ChangeHub::new(2);
        let mut feed = hub.subscribe(&Namespace::root());
        let key = CredentialKey::new("k").unwrap();
        for n in 1..=5 {
            hub.publish(&Namespace::root(), &key, Some(&Version::from_counter(n)));
        }
        assert!(matches!(feed.next().await, Some(FeedEvent::Lost { .. })));
        assert_eq!(feed.next().await, Some(FeedEvent::Restored), "whole again from here on");
        let Some(FeedEvent::Changed(change)) = feed.next().await else { panic!("a change") };
        assert_eq!(change.version, Some(Version::from_counter(4)));
    }

    #[tokio::test]
    async fn the_feed_ends_when_the_hub_is_dropped_and_loss_and_restore_reach_every_namespace() {
        let hub = ChangeHub::new(8);
        let mut feed = hub.subscribe(&ns("tenant"));
        hub.lost("connection reset");
        hub.restored();
        drop(hub);
        assert_eq!(feed.next().await, Some(FeedEvent::Lost { reason: "connection reset".into() }));
        assert_eq!(feed.next().await, Some(FeedEvent::Restored));
        assert_eq!(feed.next().await, None);
    }
}
