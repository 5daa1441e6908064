//! The alarm scheduler: one task for the whole host that wakes objects when
//! their alarms fall due, whether or not they are in memory.
//!
//! It holds every alarm of the index in memory, soonest first, loaded from
//! the control database when the host starts (so an alarm that fell due
//! while the host was down fires at once). Firing sends the object an alarm
//! event and forgets the entry; the actor then tells the schedule the
//! object's new set (empty, a retry, or whatever the handler set). The
//! actor's event checks the object's own database, so a stale entry fires
//! nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::Notify;

use crate::clock::unix_now_ms;
use crate::cluster::Cluster;
use crate::objects::ObjectError;
use crate::objects::ObjectSystem;
use crate::objects::id::ObjectKey;
use crate::objects::mailbox::{CallPath, Event, await_reply};

/// How long an alarm event may take before the scheduler tries again.
const ALARM_EVENT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(crate) struct AlarmSchedule {
    state: Mutex<Schedule>,
    changed: Arc<Notify>,
}

#[derive(Default)]
struct Schedule {
    due: BTreeSet<(i64, ObjectKey, String)>,
    by_object: HashMap<ObjectKey, Vec<(String, i64)>>,
}

impl AlarmSchedule {
    fn schedule(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `alarms` the whole set of `key`'s alarms.
    pub(crate) fn replace(&self, key: &ObjectKey, alarms: Vec<(String, i64)>) {
        let mut schedule = self.schedule();
        let schedule = &mut *schedule;
        for (name, at) in schedule.by_object.remove(key).unwrap_or_default() {
            schedule.due.remove(&(at, key.clone(), name));
        }
        for (name, at) in &alarms {
            schedule.due.insert((*at, key.clone(), name.clone()));
        }
        if !alarms.is_empty() {
            schedule.by_object.insert(key.clone(), alarms);
        }
        self.changed.notify_one();
    }

    /// Adds alarms (read from the index) to the schedule.
    pub(crate) fn add(&self, key: &ObjectKey, name: String, at: i64) {
        let mut schedule = self.schedule();
        let entry = schedule.by_object.entry(key.clone()).or_default();
        entry.retain(|(n, _)| *n != name);
        entry.push((name.clone(), at));
        schedule.due.insert((at, key.clone(), name));
        self.changed.notify_one();
    }

    /// Removes and returns what is due by `now`, and when the next one is.
    fn take_due(&self, now: i64) -> (Vec<(ObjectKey, String)>, Option<i64>) {
        let mut schedule = self.schedule();
        let mut fired = Vec::new();
        while let Some((at, _, _)) = schedule.due.first() {
            if *at > now {
                break;
            }
            let (_, key, name) = schedule.due.pop_first().expect("peeked");
            if let Some(alarms) = schedule.by_object.get_mut(&key) {
                alarms.retain(|(n, _)| *n != name);
                if alarms.is_empty() {
                    schedule.by_object.remove(&key);
                }
            }
            fired.push((key, name));
        }
        let next = schedule.due.first().map(|(at, _, _)| *at);
        (fired, next)
    }

    /// How many alarms are scheduled, and how many of them are due by
    /// `now` (firing, or waiting for a retry).
    pub(crate) fn counts(&self, now: i64) -> (usize, usize) {
        let schedule = self.schedule();
        let due = schedule
            .due
            .iter()
            .take_while(|(at, _, _)| *at <= now)
            .count();
        (schedule.due.len(), due)
    }

    /// Forgets every alarm of `key` (the object was deleted).
    pub(crate) fn forget(&self, key: &ObjectKey) {
        self.replace(key, Vec::new());
    }

    /// Forgets every alarm of a deleted namespace.
    pub(crate) fn forget_namespace(&self, namespace: &str) {
        let keys: Vec<ObjectKey> = self
            .schedule()
            .by_object
            .keys()
            .filter(|k| &*k.namespace == namespace)
            .cloned()
            .collect();
        for key in keys {
            self.forget(&key);
        }
    }
}

/// In a cluster: every second, schedules the alarms due soon whose
/// objects no live host owns; firing one takes its object.
pub(crate) async fn adopt_orphans(system: Weak<ObjectSystem>, cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut failing = false;
    loop {
        tick.tick().await;
        let Some(system) = system.upgrade() else {
            return;
        };
        match cluster.orphaned_alarms(unix_now_ms() + 1000).await {
            Ok(orphans) => {
                failing = false;
                for orphan in orphans {
                    tracing::info!(
                        object = %orphan.key,
                        alarm = orphan.name,
                        "taking on the alarm of an object whose host is gone"
                    );
                    // Whatever this host thought of its owner is stale.
                    cluster.forget_owner(&orphan.key);
                    system.alarms.add(&orphan.key, orphan.name, orphan.at_ms);
                }
            }
            // Once per outage: Postgres being away is logged elsewhere too.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!("{e:#}");
            }
            Err(_) => {}
        }
    }
}

/// Fires alarms as they fall due, until the system is gone.
pub(crate) async fn run(system: Weak<ObjectSystem>) {
    loop {
        let Some(strong) = system.upgrade() else {
            return;
        };
        let schedule = &strong.alarms;
        let (fired, next) = schedule.take_due(unix_now_ms());
        for (key, name) in fired {
            fire(&strong, key, name);
        }
        let wait = next.map_or(Duration::from_secs(3600), |at| {
            Duration::from_millis(at.saturating_sub(unix_now_ms()).max(0) as u64)
        });
        let changed = strong.alarms.changed.clone();
        drop(strong);
        tokio::select! {
            // A change made since the look above left a permit: no wake-up
            // is lost.
            () = changed.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Sends the alarm event. If the object cannot take it (its worker is not
/// deployed, it timed out), the alarm goes back on the schedule after the
/// retry delay; the object's database still has it, so nothing is lost.
fn fire(system: &Arc<ObjectSystem>, key: ObjectKey, name: String) {
    let event = Event::Alarm { name: name.clone() };
    let answer = system.enqueue(&key, None, event, CallPath::default());
    let retry_after = system.options.alarm_retry_base;
    let system = Arc::downgrade(system);
    tokio::spawn(async move {
        let e = match await_reply(answer, ALARM_EVENT_TIMEOUT).await {
            Ok(_) => return,
            // Another host of the cluster owns the object: it fires the
            // alarm from its own schedule.
            Err(ObjectError::Moved) => return,
            Err(e) => e,
        };
        let Some(system) = system.upgrade() else {
            return;
        };
        if system.namespaces.by_id(&key.namespace).is_none() {
            // Its class was deleted: the alarm has nothing left to wake.
            tracing::info!(object = %key, alarm = name, "dropping the alarm of a deleted class");
            return;
        }
        tracing::warn!(object = %key, alarm = name, "alarm event failed: {e}");
        let at = unix_now_ms() + retry_after.as_millis() as i64;
        system.alarms.add(&key, name, at);
    });
}
