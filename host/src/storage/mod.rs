//! What the host keeps on disk besides compiled artifacts: the control
//! database (workers, versions, deployments, secrets, object namespaces,
//! the alarm index) and each Durable Object's own database.

mod alarm_index;
mod control;
mod object_alarms;
mod object_db;

pub use alarm_index::AlarmRecord;
pub use control::{ControlStore, NamespaceRecord, ObjectRecord, VersionRecord, WorkerRecord};
pub(crate) use control::{now as unix_now, now_ms as unix_now_ms};
pub use object_alarms::DueAlarm;
pub use object_db::{KvRange, ObjectDb, Rows, SqlError, SqlErrorKind};
