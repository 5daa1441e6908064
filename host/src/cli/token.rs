//! The admin token: a host always requires one. `verge serve` and `verge
//! up` use `VERGE_ADMIN_TOKEN` when it is set; otherwise they generate one
//! on first start and keep it in the data directory (`admin-token`, mode
//! 0600), where the CLI finds it when run beside the host.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The file in a data directory that holds the host's token.
const TOKEN_FILE: &str = "admin-token";

/// Data directories the CLI looks in, relative to where it runs, when no
/// token is given: `verge serve`'s and `verge up`'s defaults.
const DEFAULT_DATA_DIRS: &[&str] = &["verge-data", ".verge/up"];

/// The token a host with data in `data_dir` requires: `given` if set,
/// else the one stored there, else a new one, stored.
pub(super) fn host_token(data_dir: &Path, given: Option<String>) -> Result<String> {
    if let Some(token) = given {
        return Ok(token);
    }
    let path = data_dir.join(TOKEN_FILE);
    if let Some(token) = read(&path)? {
        eprintln!("verge: admin token in {}", path.display());
        return Ok(token);
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let token = hex::encode(rand::random::<[u8; 32]>());
    write_private(&path, &token)?;
    eprintln!("verge: generated an admin token in {}", path.display());
    Ok(token)
}

/// The token the CLI sends: `given`, else the one in `data_dir`, else one
/// found in a default data directory under the current one.
pub(super) fn client_token(given: Option<&str>, data_dir: Option<&Path>) -> Result<String> {
    if let Some(token) = given {
        return Ok(token.to_owned());
    }
    let candidates: Vec<PathBuf> = match data_dir {
        Some(dir) => vec![dir.join(TOKEN_FILE)],
        None => DEFAULT_DATA_DIRS
            .iter()
            .map(|dir| Path::new(dir).join(TOKEN_FILE))
            .collect(),
    };
    for path in &candidates {
        if let Some(token) = read(path)? {
            return Ok(token);
        }
    }
    bail!(
        "no admin token: set VERGE_ADMIN_TOKEN, or pass --data with the host's data directory (looked in {})",
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn read(path: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_owned())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Creates `path` readable by its owner only, with `text`.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_generated_token_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = host_token(dir.path(), None).unwrap();
        assert_eq!(first.len(), 64);
        let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(host_token(dir.path(), None).unwrap(), first);
        assert_eq!(client_token(None, Some(dir.path())).unwrap(), first);
        assert_eq!(
            client_token(Some("given"), Some(dir.path())).unwrap(),
            "given"
        );
        assert_eq!(
            host_token(dir.path(), Some("given".into())).unwrap(),
            "given"
        );
    }
}
