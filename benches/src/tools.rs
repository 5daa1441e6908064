//! The tools and peers a benchmark run needs, found on the machine or
//! installed: a load generator (oha or wrk), workerd (from npm), wasmtime
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

/// oha if present, else wrk, else oha installed with cargo.
pub fn load_generator() -> Result<Tool> {
    for (name, args) in [("oha", ["--version"]), ("wrk", ["-v"])] {
        if let Some(path) = on_path(name)
            && let Some(version) =
                version_of(&path, &args).or_else(|| (name == "wrk").then(|| "wrk".into()))
        {
            return Ok(Tool {
                name: if name == "oha" { "oha" } else { "wrk" },
                path,
                version,
            });
        }
    }
    let mut install = Command::new("cargo");
    install.args(["install", "oha", "--locked"]);
    run(install, "installing oha (cargo install oha --locked)")?;
    let path = on_path("oha").context("oha is not on the PATH after installing it")?;
    let version = version_of(&path, &["--version"]).unwrap_or_default();
    Ok(Tool {
        name: "oha",
        path,
        version,
    })
}

/// workerd from the npm package `workerd`, installed under target/.
pub fn workerd() -> Result<Tool> {
    let dir = tools_dir();
    let binary = dir.join("node_modules/@cloudflare/workerd-linux-64/bin/workerd");
    if !binary.is_file() {
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
    let version = version_of(&binary, &["--version"]).context("workerd does not run")?;
    Ok(Tool {
        name: "workerd",
        path: binary,
        version,
    })
}

/// The wasmtime CLI at the version Verge embeds, installed with cargo.
pub fn wasmtime() -> Result<Tool> {
    let wanted = "wasmtime 48.";
    if let Some(path) = on_path("wasmtime")
        && let Some(version) = version_of(&path, &["--version"])
        && version.starts_with(wanted)
    {
        return Ok(Tool {
            name: "wasmtime",
            path,
            version,
        });
    }
    let mut install = Command::new("cargo");
    install.args(["install", "--locked", "wasmtime-cli@48.0.8"]);
    run(
        install,
        "installing wasmtime (cargo install --locked wasmtime-cli@48.0.8)",
    )?;
    let path = on_path("wasmtime").context("wasmtime is not on the PATH after installing it")?;
    let version = version_of(&path, &["--version"]).unwrap_or_default();
    Ok(Tool {
        name: "wasmtime",
        path,
        version,
    })
}

/// Node.js, for the process-start baseline. Not installed here: the machine
/// has it or the measurement is skipped.
pub fn node() -> Option<Tool> {
    let path = on_path("node")?;
    let version = version_of(&path, &["--version"])?;
    Some(Tool {
        name: "node",
        path,
        version,
    })
}
