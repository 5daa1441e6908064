//! The control database: workers, versions, deployments, secrets, object
//! namespaces and records, and the alarm index's table. Each Durable
//! Object's own database is the objects subsystem's (`objects/storage/`).
//! D1 databases live in `d1/`.

mod control;
pub(crate) mod d1;

pub(crate) use control::{
    Activation, ControlStore, NamespaceMigration, NamespaceRecord, ObjectRecord, VersionRecord,
    WorkerRecord,
};
