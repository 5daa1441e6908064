//! What the host keeps on disk besides compiled artifacts: the control
//! database (workers, versions, deployments, secrets, object namespaces)
//! and each Durable Object's own database.

mod control;
mod object_db;

pub(crate) use control::now as unix_now;
pub use control::{ControlStore, NamespaceRecord, ObjectRecord, VersionRecord, WorkerRecord};
pub use object_db::{KvRange, ObjectDb, Rows, SqlError, SqlErrorKind};
