//! Databases being closed in the background.
//!
//! Closing an evicted object's database checkpoints its WAL into the file,
//! syncs it and then deletes the `-wal` file *by name*: off the object
//! runtime's threads, since it waits for the disk. If the object came back
//! meanwhile, or was deleted or replaced, the files under that name may
//! already be the new database's, and the old close would delete a WAL
//! holding acknowledged writes. So whatever touches an object's files waits
//! for its previous close first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::id::ObjectKey;
use super::storage::ObjectDb;

type Pending = HashMap<ObjectKey, Arc<tokio::sync::Mutex<()>>>;

#[derive(Default)]
pub(crate) struct Closing {
    /// Per object with a close under way, a lock its closer holds.
    pending: Arc<Mutex<Pending>>,
}

impl Closing {
    /// Closes `db` on the blocking pool, after `delay` (a test hook's; zero
    /// otherwise).
    pub(crate) fn close_in_background(
        &self,
        key: ObjectKey,
        db: Arc<Mutex<ObjectDb>>,
        delay: Duration,
    ) {
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        let held = lock.clone().try_lock_owned().expect("a new lock is free");
        lock_pending(&self.pending).insert(key.clone(), lock.clone());
        let pending = self.pending.clone();
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(delay);
            drop(db);
            drop(held);
            let mut pending = lock_pending(&pending);
            if pending.get(&key).is_some_and(|l| Arc::ptr_eq(l, &lock)) {
                pending.remove(&key);
            }
        });
    }

    /// Waits until no close of `key`'s database is under way.
    pub(crate) async fn wait(&self, key: &ObjectKey) {
        let lock = lock_pending(&self.pending).get(key).cloned();
        if let Some(lock) = lock {
            drop(lock.lock().await);
        }
    }
}

fn lock_pending(pending: &Mutex<Pending>) -> MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(|p| p.into_inner())
}
