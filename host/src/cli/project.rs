//! A worker crate on disk: its verge.toml and how to build it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::config::WorkerConfig;
use crate::toolchain::{self, Symbols};

/// The worker a command is about: `name` when given, else the one named in
/// ./verge.toml, as wrangler does.
pub(super) fn worker_name(name: Option<&str>) -> Result<String> {
    match name {
        Some(name) => Ok(name.to_owned()),
        None => Ok(Project::open(Path::new("."))
            .context("no worker named on the command line, and none here")?
            .config
            .name),
    }
}

pub(super) struct Project {
    pub dir: PathBuf,
    /// verge.toml as written; this text is what gets uploaded.
    pub config_text: String,
    pub config: WorkerConfig,
}

impl Project {
    /// Reads and validates `dir/verge.toml`.
    pub(super) fn open(dir: &Path) -> Result<Self> {
        let dir = dir
            .canonicalize()
            .with_context(|| format!("no such directory: {}", dir.display()))?;
        let path = dir.join("verge.toml");
        let config_text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (run `verge new NAME` to start a worker)",
                path.display()
            )
        })?;
        let config = WorkerConfig::parse(&config_text)?;
        Ok(Self {
            dir,
            config_text,
            config,
        })
    }

    /// Builds the component and returns its bytes (see [`Self::component`]).
    pub(super) fn build(&self, symbols: Symbols) -> Result<Vec<u8>> {
        let wasm = self.component(symbols)?;
        std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))
    }

    /// Builds the component and returns where it is: `[build] command`
    /// when set (it decides about symbols itself), else cargo through
    /// [`toolchain::build`].
    pub(super) fn component(&self, symbols: Symbols) -> Result<PathBuf> {
        let build = &self.config.build;
        let wasm = match (&build.command, &build.component) {
            (Some(command), Some(component)) => {
                eprintln!("verge: running `{command}`");
                let status = Command::new("sh")
                    .args(["-c", command])
                    .current_dir(&self.dir)
                    .status()
                    .with_context(|| format!("running `{command}`"))?;
                if !status.success() {
                    bail!("`{command}` failed ({status})");
                }
                self.dir.join(component)
            }
            (Some(_), None) => bail!(
                "verge.toml: [build] command is set, so [build] component must name the .wasm it produces"
            ),
            (None, component) => {
                let built = toolchain::build(&self.dir, symbols)?;
                match component {
                    Some(component) => self.dir.join(component),
                    None => built
                        .into_iter()
                        .find(|c| c.package_dir == self.dir)
                        .map(|c| c.wasm)
                        .with_context(|| {
                            format!(
                                "cargo built no cdylib for {}: add `[lib] crate-type = [\"cdylib\"]` to Cargo.toml",
                                self.dir.display()
                            )
                        })?,
                }
            }
        };
        Ok(wasm)
    }
}
