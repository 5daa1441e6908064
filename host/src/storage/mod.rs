//! The control database: workers, versions, deployments, secrets, object
//! namespaces and records, and the alarm index's table. Each Durable
//! Object's own database is the objects subsystem's (`objects/storage/`).

mod control;
pub(crate) mod r2;

pub(crate) use control::{
    Activation, ControlStore, NamespaceMigration, NamespaceRecord, ObjectRecord, VersionRecord,
    WorkerRecord,
};
