//! A worker builds without this checkout: `verge new` scaffolds a crate
//! that asks for `verge-sdk` by version, and `verge build` takes the SDK from
//! the copy the binary carries. The examples build when copied out too.
//!
//! Projects live in temporary directories outside the repository, with a
//! HOME of their own. The builds share one target directory (and one SDK
//! cache, so the unpacked SDK keeps its path and compiles once per machine)
//! under the repository's target/, so a warm run only links.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::repo;

/// Where these builds share compiled dependencies and the unpacked SDK.
fn shared() -> PathBuf {
    repo().join("target/tmp/portable-guests")
}

/// `verge` run in `dir` as on a machine without this checkout: HOME is a
/// fresh directory; cargo and rustup keep their own homes, so neither
/// downloads anything again.
fn verge(dir: &Path, home: &Path) -> Command {
    let real_home = PathBuf::from(std::env::var_os("HOME").expect("HOME is set"));
    let tool_home = |var: &str, default: &str| {
        std::env::var_os(var).map_or_else(|| real_home.join(default), PathBuf::from)
    };
    let mut command = Command::new(env!("CARGO_BIN_EXE_verge"));
    command
        .current_dir(dir)
        .env("CARGO_HOME", tool_home("CARGO_HOME", ".cargo"))
        .env("RUSTUP_HOME", tool_home("RUSTUP_HOME", ".rustup"))
        .env("HOME", home)
        .env("XDG_CACHE_HOME", shared().join("cache"))
        .env("CARGO_TARGET_DIR", shared().join("target"));
    command
}

/// Runs `verge build` in `dir`; returns the component's path.
fn build(dir: &Path, home: &Path) -> PathBuf {
    let output = verge(dir, home).arg("build").output().unwrap();
    assert!(
        output.status.success(),
        "verge build in {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let wasm = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
    let bytes = std::fs::read(&wasm).unwrap_or_else(|e| panic!("{}: {e}", wasm.display()));
    // `\0asm` and the component-model layer (version 0x0d, layer 1).
    assert_eq!(
        bytes[..8],
        *b"\0asm\x0d\x00\x01\x00",
        "{} is a component",
        wasm.display()
    );
    wasm
}

#[test]
fn new_project_builds_outside_the_checkout_with_the_embedded_sdk() {
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    assert!(!work.path().starts_with(repo().canonicalize().unwrap()));
    let status = verge(work.path(), home.path())
        .args(["new", "demo"])
        .status()
        .unwrap();
    assert!(status.success());
    let project = work.path().join("demo");

    let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
    assert!(manifest.contains(r#"verge-sdk = "0.1.0""#), "{manifest}");
    assert!(
        !manifest.contains("path"),
        "no path on this disk:\n{manifest}"
    );
    let local = std::fs::read_to_string(project.join(".cargo/verge-sdk.toml")).unwrap();
    let cache = shared().join("cache/verge/sdk");
    assert!(local.contains(&cache.display().to_string()), "{local}");
    let gitignore = std::fs::read_to_string(project.join(".gitignore")).unwrap();
    assert!(gitignore.contains("/.cargo/verge-sdk.toml"), "{gitignore}");

    let wasm = build(&project, home.path());
    assert!(
        wasm.ends_with("wasm32-wasip2/release/demo.wasm"),
        "{}",
        wasm.display()
    );

    // Plain cargo finds the SDK through .cargo/verge-sdk.toml (same
    // profile and patch: nothing to rebuild).
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["build", "--release"])
        .current_dir(&project)
        .env("CARGO_TARGET_DIR", shared().join("target"))
        .env_remove("RUSTFLAGS")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "plain cargo build of a `verge new` project"
    );

    // A fresh clone has no .cargo/verge-sdk.toml (it is not in git): the
    // first `verge build` writes it for plain cargo.
    std::fs::remove_file(project.join(".cargo/verge-sdk.toml")).unwrap();
    build(&project, home.path());
    assert_eq!(
        std::fs::read_to_string(project.join(".cargo/verge-sdk.toml")).unwrap(),
        local
    );
}

#[test]
fn examples_build_when_copied_out_of_the_repository() {
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    // A stateless worker, and Durable Objects with typed RPC.
    for example in ["hello", "counter-rpc"] {
        let copy = work.path().join(example);
        copy_dir(&repo().join("guest-examples").join(example), &copy);
        let wasm = build(&copy, home.path());
        let name = example.replace('-', "_");
        assert!(
            wasm.ends_with(format!("release/{name}.wasm")),
            "{}",
            wasm.display()
        );
    }
}

/// Copies a crate's sources (not its build output).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == "target" {
            continue;
        }
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}
