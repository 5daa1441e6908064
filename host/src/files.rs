//! Writing files so that neither a crash nor a power loss leaves half of
//! one: data is synced before it is renamed into place, and the rename is
//! synced with its directory.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` and syncs them to disk.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Renames `from` to `to`, and syncs the directory so the rename survives
/// a power loss.
pub(crate) fn rename_synced(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).with_context(|| format!("renaming into {}", to.display()))?;
    sync_parent(to)
}

/// Syncs the directory holding `path`: creations, renames and removals in
/// it are durable once this returns.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// Writes through a synced temporary file and a rename, so a crash never
/// leaves a truncated file under the final name.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    write_synced(&tmp, bytes)?;
    rename_synced(&tmp, path)
}
