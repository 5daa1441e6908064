//! The tools and peers a benchmark run compares against, found on the
//! machine: a load generator (oha or wrk), workerd (from npm), wasmtime
//! (from crates.io) and Node.js (which must already be there).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::repo;

/// An external program and the version it reported.
#[derive(Debug, Clone)]
pub struct Tool {
    pub name: &'static str,
    pub path: PathBuf,
    pub version: String,
}

impl Tool {
    pub fn command(&self) -> Command {
        Command::new(&self.path)
    }
}

/// Where npm installs workerd: inside target/, so nothing global changes.
fn tools_dir() -> PathBuf {
    repo().join("target/bench-tools")
}

/// First line of `program args...`'s output, if it runs.
fn version_of(program: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = if output.stdout.is_empty() {
        output.stderr
    } else {
        output.stdout
    };
    Some(
        String::from_utf8_lossy(&text)
            .lines()
            .next()?
            .trim()
            .to_owned(),
    )
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|candidate| candidate.is_file())
    })
}

fn run(mut command: Command, what: &str) -> Result<()> {
    eprintln!("bench: {what}");
    let status = command.status().with_context(|| what.to_owned())?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// The programs a comparison runs against, as found on this machine.
/// Finding installs nothing: `just bench` (and `.ci/run`) install what is
/// missing first, with [`Peers::install_missing`]; a run without one of
/// them skips what needs it and says so.
pub struct Peers {
    /// oha or wrk: every throughput bench needs one.
    pub load: Option<Tool>,
    pub workerd: Option<Tool>,
    /// The wasmtime CLI at the version Verge embeds, for `wasmtime serve`.
    pub wasmtime: Option<Tool>,
    /// Node.js, for the process-start baseline; never installed here.
    pub node: Option<Tool>,
}

impl Peers {
    pub fn find() -> Self {
        Self {
            load: find_load_generator(),
            workerd: find_workerd(),
            wasmtime: find_wasmtime(),
            node: find_node(),
        }
    }

    /// Installs the peers this machine lacks (oha and wasmtime with cargo,
    /// which takes minutes; workerd with npm), then finds them all.
    pub fn install_missing() -> Result<Self> {
        let found = Self::find();
        if found.load.is_none() {
            let mut install = Command::new("cargo");
            install.args(["install", "oha", "--locked"]);
            run(install, "installing oha (cargo install oha --locked)")?;
        }
        if found.workerd.is_none() {
            let dir = tools_dir();
            std::fs::create_dir_all(&dir)?;
            let mut install = Command::new("npm");
            install
                .args([
                    "install",
                    "--no-save",
                    "--no-audit",
                    "--no-fund",
                    "--prefix",
                ])
                .arg(&dir)
                .arg("workerd");
            run(install, "installing workerd (npm install workerd)")?;
        }
        if found.wasmtime.is_none() {
            let mut install = Command::new("cargo");
            install.args(["install", "--locked", "wasmtime-cli@48.0.8"]);
            run(
                install,
                "installing wasmtime (cargo install --locked wasmtime-cli@48.0.8)",
            )?;
        }
        let peers = Self::find();
        for (name, tool) in [
            ("a load generator", &peers.load),
            ("workerd", &peers.workerd),
            ("wasmtime", &peers.wasmtime),
        ] {
            anyhow::ensure!(
                tool.is_some(),
                "{name} is still missing after installing it"
            );
        }
        Ok(peers)
    }

    /// What is missing, and how to get it, one line each.
    pub fn missing(&self) -> Vec<String> {
        let mut missing = Vec::new();
        if self.load.is_none() {
            missing.push("oha or wrk (every throughput bench): `cargo install oha --locked`, or wrk from your distribution".to_owned());
        }
        if self.workerd.is_none() {
            missing.push("workerd: `npm install --prefix target/bench-tools workerd`".to_owned());
        }
        if self.wasmtime.is_none() {
            missing.push(
                "wasmtime 48 (`wasmtime serve`): `cargo install --locked wasmtime-cli@48.0.8`"
                    .to_owned(),
            );
        }
        if self.node.is_none() {
            missing.push("node (the Node.js process-start baseline)".to_owned());
        }
        missing
    }
}

/// oha if present, else wrk.
fn find_load_generator() -> Option<Tool> {
    if let Some(path) = on_path("oha")
        && let Some(version) = version_of(&path, &["--version"])
    {
        return Some(Tool {
            name: "oha",
            path,
            version,
        });
    }
    // wrk prints its version with a failing exit status.
    on_path("wrk").map(|path| Tool {
        name: "wrk",
        version: version_of(&path, &["-v"]).unwrap_or_else(|| "wrk".into()),
        path,
    })
}

/// workerd from the npm package `workerd`, installed under target/.
fn find_workerd() -> Option<Tool> {
    let binary = tools_dir().join("node_modules/@cloudflare/workerd-linux-64/bin/workerd");
    let version = version_of(&binary, &["--version"])?;
    Some(Tool {
        name: "workerd",
        path: binary,
        version,
    })
}

/// The wasmtime CLI, if it is the version Verge embeds.
fn find_wasmtime() -> Option<Tool> {
    let path = on_path("wasmtime")?;
    let version = version_of(&path, &["--version"]).filter(|v| v.starts_with("wasmtime 48."))?;
    Some(Tool {
        name: "wasmtime",
        path,
        version,
    })
}

fn find_node() -> Option<Tool> {
    let path = on_path("node")?;
    let version = version_of(&path, &["--version"])?;
    Some(Tool {
        name: "node",
        path,
        version,
    })
}
