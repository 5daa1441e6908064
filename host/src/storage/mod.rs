//! The control database: workers, versions, deployments, secrets, object
//! namespaces and records, the alarm index's table and the cron triggers'
//! last runs; KV namespaces (`kv/`) and D1 databases (`d1/`). Each Durable
//! Object's own database is the objects subsystem's (`objects/storage/`).

mod control;
mod cron_runs;
pub(crate) mod d1;
pub(crate) mod kv;
pub(crate) mod r2;

pub(crate) use control::{
    Activation, ControlStore, NamespaceMigration, NamespaceRecord, ObjectRecord, VersionRecord,
    WorkerRecord,
};

/// How commits reach the disk: `FULL`, unless the debug switch
/// `VERGE_UNSAFE_NO_FSYNC=1` turns syncing off, which exists only to show
/// that the power-loss test catches a missing fsync. Never for real data.
pub(crate) fn synchronous() -> &'static str {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let off = *OFF.get_or_init(|| {
        let off = std::env::var_os("VERGE_UNSAFE_NO_FSYNC").is_some_and(|v| v == "1");
        if off {
            tracing::warn!(
                "VERGE_UNSAFE_NO_FSYNC=1: databases commit WITHOUT fsync; a power loss loses acknowledged writes"
            );
        }
        off
    });
    if off { "OFF" } else { "FULL" }
}
