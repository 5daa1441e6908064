//! Embeds the SDK's sources (sdk/: the `verge-sdk` package, `verge-macros`
//! and the WIT) in the `verge` binary, so a worker builds on a machine that
//! has the binary but not this checkout (see `toolchain::sdk`).
//!
//! The list is made by walking sdk/, not written by hand, so a file added
//! to the SDK cannot be left out of the binary.

use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let sdk = manifest_dir
        .join("../sdk")
        .canonicalize()
        .expect("sdk/ beside host/");
    // A directory here makes cargo rerun this script when any file under
    // it changes, is added or is removed.
    println!("cargo:rerun-if-changed={}", sdk.display());
    // sqlx::migrate! embeds host/migrations/; a new migration must rebuild
    // the binary even when no Rust file changed.
    println!("cargo:rerun-if-changed=migrations");

    let mut files = Vec::new();
    walk(&sdk, &mut files);
    files.sort();
    let mut out = String::from("&[\n");
    for file in &files {
        let relative = file.strip_prefix(&sdk).unwrap();
        let relative = relative.to_str().expect("SDK file names are UTF-8");
        out.push_str(&format!(
            "    ({:?}, include_bytes!({:?})),\n",
            relative.replace('\\', "/"),
            file.display().to_string()
        ));
    }
    out.push_str("]\n");
    let dest = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("sdk_files.rs");
    std::fs::write(dest, out).expect("writing sdk_files.rs");
}

/// Every file under `dir`, leaving out build output and hidden files
/// (editor and VCS droppings are not part of the SDK).
fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading sdk/") {
        let entry = entry.expect("reading sdk/");
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" || name == "Cargo.lock" {
            continue;
        }
        let path = entry.path();
        if entry.file_type().expect("reading sdk/").is_dir() {
            walk(&path, files);
        } else {
            files.push(path);
        }
    }
}
