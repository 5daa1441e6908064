//! Which objects were active when, and under what name: kept in memory as
//! events run, one entry per object however busy it is, and written to the
//! control database in batches, off the request path.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use anyhow::Result;

use super::id::ObjectKey;
use crate::clock::unix_now;
use crate::storage::{ControlStore, ObjectRecord};

/// How often pending activity is written.
pub(crate) const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

#[derive(Default)]
pub(crate) struct Activity {
    pending: Mutex<HashMap<ObjectKey, ObjectRecord>>,
}

impl Activity {
    fn pending(&self) -> MutexGuard<'_, HashMap<ObjectKey, ObjectRecord>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that an object was active now (and, when known, its name).
    pub(crate) fn record(&self, key: &ObjectKey, name: Option<&str>) {
        let mut pending = self.pending();
        let record = pending.entry(key.clone()).or_insert_with(|| ObjectRecord {
            id: key.id.to_string(),
            name: None,
            last_active: 0,
        });
        record.last_active = unix_now();
        if let Some(name) = name {
            record.name = Some(name.to_owned());
        }
    }

    /// Drops what is pending for a deleted object.
    pub(crate) fn forget(&self, key: &ObjectKey) {
        self.pending().remove(key);
    }

    /// Writes what is pending to the control database, and returns it
    /// (for a cluster's shared record too).
    pub(crate) fn flush(&self, control: &ControlStore) -> Result<Vec<(String, ObjectRecord)>> {
        let pending = std::mem::take(&mut *self.pending());
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let records: Vec<(String, ObjectRecord)> = pending
            .into_iter()
            .map(|(key, record)| (key.namespace.to_string(), record))
            .collect();
        control.record_objects(&records)?;
        Ok(records)
    }
}
