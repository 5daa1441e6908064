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

/// The names of the `<name>.sqlite` files in `dir`, sorted; none when
/// `dir` does not exist yet (KV namespaces and D1 databases are made on
/// first use).
pub(crate) fn sqlite_files(dir: &std::path::Path) -> anyhow::Result<Vec<String>> {
    use anyhow::Context;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let file = entry.with_context(|| format!("reading {}", dir.display()))?;
        if let Some(name) = file
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(".sqlite"))
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}
