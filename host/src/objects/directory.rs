//! The directory of live actors: which object has one, how to reach it,
//! and which to evict when too many objects are active.
//!
//! Sending happens under the directory lock, and an actor retires only
//! under the same lock with an empty inbox: a message is never sent to an
//! actor that has decided to stop.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;
use tokio::sync::{mpsc, oneshot};

use super::error::ObjectError;
use super::id::ObjectKey;
use super::mailbox::{Backlog, Inbox, Message, Outbox};

pub(crate) struct Directory {
    state: Mutex<Actors>,
    /// Active objects past which the least recently used one is evicted
    /// to make room (the host's `--max-objects`).
    max_active: usize,
}

struct Actors {
    mailboxes: HashMap<ObjectKey, Mailbox>,
    /// The active actors, least recently sent anything first. An actor
    /// asked to leave is not in it: it no longer counts as active and is
    /// not picked again, unless an event arrives before it is gone.
    active: LruCache<ObjectKey, ()>,
}

/// How to reach an actor, and what waits for it.
struct Mailbox {
    outbox: Outbox,
    backlog: Arc<Backlog>,
}

impl Directory {
    pub(crate) fn new(max_active: usize) -> Self {
        Self {
            state: Mutex::new(Actors {
                mailboxes: HashMap::new(),
                active: LruCache::unbounded(),
            }),
            max_active,
        }
    }

    fn actors(&self) -> MutexGuard<'_, Actors> {
        // Every change below is a handful of map operations that cannot
        // panic halfway through.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands `message` to `key`'s actor, unless it is an event the object
    /// has no room for. When the object has no actor (or its actor died),
    /// `start` is given the inbox and backlog of a new one, with `message`
    /// waiting in it; an error from `start` is returned and nothing is kept.
    pub(crate) fn send(
        &self,
        key: &ObjectKey,
        message: Message,
        start: impl FnOnce(Inbox, Arc<Backlog>) -> Result<(), ObjectError>,
    ) -> Result<(), ObjectError> {
        let mut actors = self.actors();
        let is_event = matches!(message, Message::Event(_));
        let message = match actors.mailboxes.get(key) {
            Some(mailbox) => {
                if let Message::Event(pending) = &message {
                    mailbox.backlog.admit(pending)?;
                }
                match mailbox.outbox.send(message) {
                    Ok(()) => {
                        if !actors.active.promote(key) && is_event {
                            // Asked to leave, but busy again: active after all.
                            actors.active.put(key.clone(), ());
                        }
                        return Ok(());
                    }
                    // The actor died (a panic in the host): start over.
                    Err(mpsc::error::SendError(message)) => {
                        actors.mailboxes.remove(key);
                        actors.active.pop(key);
                        message
                    }
                }
            }
            None => message,
        };
        let (outbox, inbox) = mpsc::unbounded_channel();
        let backlog = Arc::new(Backlog::default());
        if let Message::Event(pending) = &message {
            backlog.admit(pending)?;
        }
        outbox.send(message).expect("the inbox is alive");
        start(inbox, backlog.clone())?;
        if actors.active.len() >= self.max_active
            && let Some((oldest, ())) = actors.active.pop_lru()
        {
            // It leaves once its queued events are done.
            let (done, _) = oneshot::channel();
            if let Some(mailbox) = actors.mailboxes.get(&oldest) {
                let _ = mailbox.outbox.send(Message::Evict(done));
            }
        }
        actors
            .mailboxes
            .insert(key.clone(), Mailbox { outbox, backlog });
        actors.active.put(key.clone(), ());
        Ok(())
    }

    /// Sends only to an actor that exists; returns whether it did.
    pub(crate) fn send_existing(&self, key: &ObjectKey, message: Message) -> bool {
        let actors = self.actors();
        actors
            .mailboxes
            .get(key)
            .is_some_and(|mailbox| mailbox.outbox.send(message).is_ok())
    }

    /// An actor that has nothing left to do asks to leave: it is removed
    /// (and `on_leave` runs, under the lock) unless a message arrived
    /// meanwhile.
    pub(crate) fn retire(&self, key: &ObjectKey, inbox: &Inbox, on_leave: impl FnOnce()) -> bool {
        let mut actors = self.actors();
        if !inbox.is_empty() {
            return false;
        }
        actors.mailboxes.remove(key);
        actors.active.pop(key);
        on_leave();
        true
    }

    /// Removes an actor whatever its inbox holds (its object was deleted).
    pub(crate) fn remove(&self, key: &ObjectKey) {
        let mut actors = self.actors();
        actors.mailboxes.remove(key);
        actors.active.pop(key);
    }

    /// The objects with an actor that `which` picks.
    pub(crate) fn keys_where(&self, which: impl Fn(&ObjectKey) -> bool) -> Vec<ObjectKey> {
        self.actors()
            .mailboxes
            .keys()
            .filter(|k| which(k))
            .cloned()
            .collect()
    }

    /// How many objects have an actor, active or leaving.
    pub(crate) fn len(&self) -> usize {
        self.actors().mailboxes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::mailbox::tests::rpc;
    use super::*;

    fn key(n: u8) -> ObjectKey {
        ObjectKey::numbered(n)
    }

    /// A directory whose actors are just their inboxes, kept by key.
    struct Harness {
        directory: Directory,
        inboxes: HashMap<ObjectKey, Inbox>,
    }

    impl Harness {
        fn new(max_active: usize) -> Self {
            Self {
                directory: Directory::new(max_active),
                inboxes: HashMap::new(),
            }
        }

        fn event(&mut self, n: u8) {
            let mut started = None;
            self.directory
                .send(&key(n), Message::Event(rpc("m").0), |inbox, _| {
                    started = Some(inbox);
                    Ok(())
                })
                .unwrap();
            if let Some(inbox) = started {
                self.inboxes.insert(key(n), inbox);
            }
        }

        /// Drains `n`'s inbox: whether it was asked to leave.
        fn asked_to_leave(&mut self, n: u8) -> bool {
            let inbox = self.inboxes.get_mut(&key(n)).unwrap();
            let mut evict = false;
            while let Ok(message) = inbox.try_recv() {
                evict |= matches!(message, Message::Evict(_));
            }
            evict
        }
    }

    #[test]
    fn the_least_recently_used_object_is_evicted_past_the_limit() {
        let mut h = Harness::new(2);
        h.event(1);
        h.event(2);
        h.event(1); // 2 is now the least recently used
        h.event(3);
        assert!(h.asked_to_leave(2));
        assert!(!h.asked_to_leave(1));
        assert!(!h.asked_to_leave(3));
        // Leaving, it still has an actor until it retires.
        assert_eq!(h.directory.len(), 3);
    }

    #[test]
    fn an_object_asked_to_leave_that_gets_an_event_stays_active() {
        let mut h = Harness::new(2);
        h.event(1);
        h.event(2);
        h.event(3); // asks 1 to leave
        assert!(h.asked_to_leave(1));
        h.event(1); // 1 is busy again: 2 is now the oldest
        h.event(4);
        assert!(h.asked_to_leave(2));
        assert!(!h.asked_to_leave(1));
    }

    #[test]
    fn an_actor_retires_only_with_an_empty_inbox() {
        let mut h = Harness::new(8);
        h.event(1);
        let inbox = h.inboxes.remove(&key(1)).unwrap();
        let mut left = false;
        assert!(!h.directory.retire(&key(1), &inbox, || left = true));
        assert!(!left);
        let mut inbox = inbox;
        while inbox.try_recv().is_ok() {}
        assert!(h.directory.retire(&key(1), &inbox, || left = true));
        assert!(left);
        assert_eq!(h.directory.len(), 0);
        assert!(
            !h.directory
                .send_existing(&key(1), Message::Event(rpc("m").0))
        );
    }

    #[test]
    fn a_failed_start_keeps_nothing() {
        let directory = Directory::new(8);
        let refused = directory.send(&key(1), Message::Event(rpc("m").0), |_, _| {
            Err(ObjectError::NotDeployed("no such class".into()))
        });
        assert!(matches!(refused, Err(ObjectError::NotDeployed(_))));
        assert_eq!(directory.len(), 0);
    }
}
