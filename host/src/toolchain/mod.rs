//! Building guests: makes sure the `wasm32-wasip2` target is installed and
//! runs cargo against the SDK the binary carries ([`sdk`]), reporting where
//! each component landed.
//!
//! Used by `verge up`, `verge dev`, `verge deploy` and `verge build`, and by
//! the tests, which build the bundled examples through the same path users
//! do.

pub mod sdk;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

pub const WASM_TARGET: &str = "wasm32-wasip2";

/// A component cargo produced.
#[derive(Debug, Clone)]
pub struct BuiltComponent {
    /// The library target's name (the package name with `_` for `-`).
    pub name: String,
    /// The package's directory (where its verge.toml lives).
    pub package_dir: PathBuf,
    /// The `.wasm` component.
    pub wasm: PathBuf,
}

/// The `cargo` that runs us when there is one (under `cargo run` or `cargo
/// test`), so guests build with the same toolchain.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // Flags meant for the host build (say, -C target-cpu=native) must not
    // leak into a wasm build.
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET"] {
        command.env_remove(var);
    }
    command
}

/// Installs the `wasm32-wasip2` target through rustup if it is missing.
/// Runs once per process.
pub fn ensure_wasm_target() -> Result<()> {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    CHECKED
        .get_or_init(|| install_wasm_target().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn install_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(output) if output.status.success() => {
            if String::from_utf8_lossy(&output.stdout)
                .lines()
                .any(|line| line.trim() == WASM_TARGET)
            {
                return Ok(());
            }
        }
        // Without rustup, assume the toolchain was set up by other means;
        // cargo will say clearly if the target is missing.
        _ => return Ok(()),
    }
    eprintln!("verge: installing the {WASM_TARGET} target (rustup target add {WASM_TARGET})");
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .context("running rustup")?;
    if !status.success() {
        bail!("`rustup target add {WASM_TARGET}` failed ({status})");
    }
    Ok(())
}

/// What a build leaves in the component for debugging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symbols {
    /// The project's release profile as written (the scaffold and the
    /// examples strip symbols): the small component `deploy` and `up` ship.
    Strip,
    /// The release profile with `strip` off, so a trap's backtrace names
    /// the guest's functions (the host's wasmtime demangles them). Built
    /// under a profile of its own, `release-symbols`, so these artifacts
    /// never overwrite the stripped ones and switching costs no rebuild.
    Keep,
}

/// The profile [`Symbols::Keep`] builds with, defined on the command line
/// so projects need not declare it.
const KEEP_SYMBOLS: [&str; 6] = [
    "--config",
    "profile.release-symbols.inherits=\"release\"",
    "--config",
    "profile.release-symbols.strip=false",
    "--profile",
    "release-symbols",
];

/// Builds every cdylib of the package or workspace at `manifest_dir` for
/// `wasm32-wasip2` with release optimizations, against the embedded SDK
/// when it uses the SDK and does not pick its own ([`sdk::project_uses`],
/// [`sdk::project_chooses`]). Cargo's
/// progress goes to stderr.
pub fn build(manifest_dir: &Path, symbols: Symbols) -> Result<Vec<BuiltComponent>> {
    ensure_wasm_target()?;
    let manifest = manifest_dir.join("Cargo.toml");
    let mut command = cargo();
    command.args(["build", "--target", WASM_TARGET]);
    match symbols {
        Symbols::Strip => command.arg("--release"),
        Symbols::Keep => command.args(KEEP_SYMBOLS),
    };
    if sdk::project_uses(manifest_dir) && !sdk::project_chooses(manifest_dir) {
        let sdk = sdk::unpacked()?;
        sdk::refresh_local_patch(manifest_dir, &sdk)?;
        command.arg("--config").arg(sdk::patch_argument(&sdk));
    }
    let mut child = command
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        // The project's own .cargo/config.toml applies, as it would if the
        // user ran cargo there.
        .current_dir(manifest_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("running cargo")?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut built = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        if let Ok(CargoMessage::CompilerArtifact(artifact)) = serde_json::from_str(&line)
            && artifact.target.kind.iter().any(|k| k == "cdylib")
            && let Some(wasm) = artifact
                .filenames
                .into_iter()
                .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        {
            built.push(BuiltComponent {
                name: artifact.target.name,
                package_dir: artifact
                    .manifest_path
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_default(),
                wasm,
            });
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("cargo build failed for {}", manifest.display());
    }
    Ok(built)
}

#[derive(Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
enum CargoMessage {
    CompilerArtifact(Artifact),
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Artifact {
    target: ArtifactTarget,
    filenames: Vec<PathBuf>,
    manifest_path: PathBuf,
}

#[derive(Deserialize)]
struct ArtifactTarget {
    name: String,
    kind: Vec<String>,
}
