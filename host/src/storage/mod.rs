//! What the host keeps on disk besides compiled artifacts: the control
//! database of workers, versions, deployments and secrets.

mod control;

pub use control::{ControlStore, VersionRecord, WorkerRecord};
