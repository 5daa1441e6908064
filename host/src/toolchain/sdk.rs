//! The SDK the binary carries, so a worker builds on a machine that has the
//! `verge` binary but not the Verge source tree.
//!
//! A worker's Cargo.toml asks for `verge-sdk = "0.1.0"`, a plain version
//! requirement that needs no checkout; its code says `verge::...`, the
//! package's library name. build.rs embeds sdk/ (the `verge-sdk` package,
//! `verge-macros` inside it, and the WIT) in the binary; the first build
//! unpacks it into the per-user cache, and every build tells cargo to take
//! `verge-sdk` from there (`--config patch.crates-io.verge-sdk.path=...`).
//! `verge-macros` needs no patch: the unpacked SDK reaches it by path.
//!
//! A project that picks its own SDK is left alone (see [`project_chooses`]):
//! the bundled examples build against this tree's sdk/, and a command-line
//! patch would override theirs.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// The SDK's files as (path under sdk/, contents); build.rs lists them.
const FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));

/// The SDK's package name, as user manifests and patches spell it. (The
/// library is `verge`; the name `verge` on crates.io is an unrelated crate.)
pub const PACKAGE: &str = "verge-sdk";

/// The machine-local file, beside `.cargo/config.toml`, that holds the
/// patch for plain `cargo` and rust-analyzer. `verge new` projects include
/// it from their config and ignore it in git: its path is this machine's.
pub const LOCAL_PATCH_FILE: &str = "verge-sdk.toml";

/// The embedded SDK's version, as its Cargo.toml says.
pub fn version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| {
        manifest()["package"]["version"]
            .as_str()
            .expect("sdk/Cargo.toml has a literal package.version")
            .to_owned()
    })
}

/// The embedded sdk/Cargo.toml.
fn manifest() -> toml::Table {
    let manifest = FILES
        .iter()
        .find(|(path, _)| *path == "Cargo.toml")
        .map(|(_, contents)| String::from_utf8_lossy(contents))
        .expect("build.rs embeds sdk/Cargo.toml");
    toml::from_str(&manifest).expect("sdk/Cargo.toml is TOML")
}

/// The embedded SDK, unpacked (on first use) into
/// `$XDG_CACHE_HOME/verge/sdk/<version>-<content hash>/`. The hash makes a
/// binary with changed SDK sources use a directory of its own, so a
/// directory once written never changes.
pub fn unpacked() -> Result<PathBuf> {
    let dir =
        cache_root()?
            .join("verge/sdk")
            .join(format!("{}-{}", version(), content_hash(FILES)));
    unpack(FILES, &dir)?;
    Ok(dir)
}

/// `$XDG_CACHE_HOME`, else `~/.cache` (the XDG base directory rules: a
/// relative XDG_CACHE_HOME is ignored).
fn cache_root() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from)
        && dir.is_absolute()
    {
        return Ok(dir);
    }
    let home = std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .context("neither XDG_CACHE_HOME nor HOME is set: verge unpacks its SDK under one")?;
    Ok(PathBuf::from(home).join(".cache"))
}

/// The first 12 hex digits of a SHA-256 over every path and its contents.
fn content_hash(files: &[(&str, &[u8])]) -> String {
    let mut hash = Sha256::new();
    for (path, contents) in files {
        // Lengths first, so no two different file lists hash the same bytes.
        hash.update((path.len() as u64).to_le_bytes());
        hash.update(path.as_bytes());
        hash.update((contents.len() as u64).to_le_bytes());
        hash.update(contents);
    }
    hex::encode(hash.finalize())[..12].to_owned()
}

/// Writes `files` into `dir` unless `dir` exists. All or nothing: the files
/// go into a fresh directory beside `dir` that is then renamed into place,
/// so a concurrent `verge` (or one killed halfway) never leaves half an SDK
/// where cargo would find it. When two race, one rename wins and the other
/// fails because `dir` exists; the loser's copy is deleted with its
/// temporary directory.
fn unpack(files: &[(&str, &[u8])], dir: &Path) -> Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let parent = dir
        .parent()
        .context("the SDK cache has no parent directory")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let temp = tempfile::Builder::new()
        .prefix(".unpacking-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a directory in {}", parent.display()))?;
    for (path, contents) in files {
        let dest = temp.path().join(path);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&dest, contents).with_context(|| format!("writing {}", dest.display()))?;
    }
    match std::fs::rename(temp.path(), dir) {
        Ok(()) => Ok(()),
        Err(_) if dir.exists() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("moving the SDK into {}", dir.display())),
    }
}

/// Whether the project in `dir` picks its own SDK: its Cargo.toml, or
/// that of the workspace it belongs to, does (see [`chooses_own_sdk`]).
/// Cargo lets a command-line patch override the manifest's, so such a
/// project gets no patch from verge; everything else builds against the
/// embedded SDK.
pub fn project_chooses(dir: &Path) -> bool {
    enclosing_manifests(dir)
        .iter()
        .any(|(_, manifest)| chooses_own_sdk(manifest))
}

/// Whether the project in `dir` uses the SDK at all: its Cargo.toml, its
/// workspace root's, or a member's up to two directories down names
/// `verge-sdk`. Another project (a plain wasi:http component) gets no
/// patch, which cargo would warn about and record in its Cargo.lock.
pub fn project_uses(dir: &Path) -> bool {
    let names_sdk = |text: &str| text.contains(PACKAGE);
    if enclosing_manifests(dir)
        .iter()
        .any(|(text, _)| names_sdk(text))
    {
        return true;
    }
    (1..=2)
        .flat_map(|depth| manifests_below(dir, depth))
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .any(|text| names_sdk(&text))
}

/// The manifests cargo reads for the project in `dir`: its own, then each
/// one upwards up to and including the workspace root, as (text, table).
fn enclosing_manifests(dir: &Path) -> Vec<(String, toml::Table)> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let mut found = Vec::new();
    for dir in dir.ancestors() {
        let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        // A broken one: cargo will say what is wrong with it.
        let Ok(manifest) = toml::from_str::<toml::Table>(&text) else {
            break;
        };
        let root = manifest.contains_key("workspace");
        found.push((text, manifest));
        if root {
            break;
        }
    }
    found
}

/// `Cargo.toml` files exactly `depth` directories below `dir`, build
/// output and hidden directories aside.
fn manifests_below(dir: &Path, depth: usize) -> Vec<std::path::PathBuf> {
    let mut dirs = vec![dir.to_owned()];
    for _ in 0..depth {
        dirs = dirs
            .iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flatten()
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.is_dir()
                    && path.file_name().is_some_and(|name| {
                        let name = name.to_string_lossy();
                        name != "target" && !name.starts_with('.')
                    })
            })
            .collect();
    }
    dirs.into_iter()
        .map(|d| d.join("Cargo.toml"))
        .filter(|path| path.is_file())
        .collect()
}

/// Whether a Cargo.toml patches the SDK in `[patch.crates-io]`, or depends
/// on it by path in `[dependencies]` or `[workspace.dependencies]`. The
/// SDK is an entry keyed `verge-sdk`, or one renamed to any key with
/// `package = "verge-sdk"` (such as `verge = { package = "verge-sdk", ... }`).
fn chooses_own_sdk(manifest: &toml::Table) -> bool {
    let table = |keys: &[&str]| {
        keys.iter()
            .try_fold(manifest, |table, key| table.get(*key)?.as_table())
    };
    // The entries of a dependency or patch table that name the SDK.
    let sdk_entries = |keys: &[&str]| {
        table(keys)
            .into_iter()
            .flatten()
            .filter_map(|(key, entry)| match entry {
                toml::Value::Table(entry) => {
                    let package = entry.get("package").and_then(toml::Value::as_str);
                    (package.unwrap_or(key) == PACKAGE).then_some(Some(entry))
                }
                // `verge-sdk = "0.1.0"`: by version.
                _ => (key == PACKAGE).then_some(None),
            })
    };
    let by_path = |keys: &[&str]| {
        sdk_entries(keys).any(|entry| entry.is_some_and(|entry| entry.contains_key("path")))
    };
    sdk_entries(&["patch", "crates-io"]).next().is_some()
        || by_path(&["dependencies"])
        || by_path(&["workspace", "dependencies"])
}

/// The cargo `--config` argument that takes the SDK from `sdk`.
pub fn patch_argument(sdk: &Path) -> String {
    format!("patch.crates-io.{PACKAGE}.path={}", toml_string(sdk))
}

/// `.cargo/verge-sdk.toml`'s contents: the same patch, for plain cargo.
pub fn local_patch_file(sdk: &Path) -> String {
    format!(
        "# Written by `verge`: this machine's copy of the verge SDK, unpacked from\n\
         # the `verge` binary. `verge build` rewrites it; keep it out of git.\n\
         [patch.crates-io]\n\
         {PACKAGE} = {{ path = {} }}\n",
        toml_string(sdk)
    )
}

/// Writes `.cargo/verge-sdk.toml` in `project` when the project's cargo
/// config includes it (as `verge new` sets up) and it does not already say
/// `sdk`, so a fresh clone works with plain cargo after one `verge build`.
/// Unchanged files are not touched: `verge dev` would see a change.
pub fn refresh_local_patch(project: &Path, sdk: &Path) -> Result<()> {
    let config = project.join(".cargo/config.toml");
    let includes_it =
        std::fs::read_to_string(&config).is_ok_and(|config| config.contains(LOCAL_PATCH_FILE));
    let path = project.join(".cargo").join(LOCAL_PATCH_FILE);
    let contents = local_patch_file(sdk);
    if includes_it && std::fs::read_to_string(&path).ok().as_deref() != Some(&contents) {
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `path` as a quoted TOML string.
fn toml_string(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILES: &[(&str, &[u8])] = &[
        ("Cargo.toml", b"[package]\nname = \"x\"\n"),
        ("src/lib.rs", b"pub fn f() {}\n"),
        ("macros/src/lib.rs", b"// macros\n"),
    ];

    fn assert_unpacked(dir: &Path) {
        for (path, contents) in FILES {
            assert_eq!(std::fs::read(dir.join(path)).unwrap(), *contents, "{path}");
        }
    }

    #[test]
    fn unpack_writes_every_file_once_and_leaves_no_temporary_directory() {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join("verge/sdk/0.1.0-abc");
        unpack(FILES, &dir).unwrap();
        assert_unpacked(&dir);
        // A second unpack keeps what is there: a directory once written is
        // never rewritten (its name carries the content hash).
        std::fs::write(dir.join("marker"), "kept").unwrap();
        unpack(FILES, &dir).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("marker")).unwrap(), "kept");
        let entries: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(entries, ["0.1.0-abc"]);
    }

    #[test]
    fn concurrent_unpacks_all_succeed_with_one_complete_copy() {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().join("sdk/0.1.0-abc");
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| unpack(FILES, &dir).unwrap());
            }
        });
        assert_unpacked(&dir);
        assert_eq!(
            std::fs::read_dir(cache.path().join("sdk")).unwrap().count(),
            1
        );
    }

    #[test]
    fn the_embedded_sdk_is_the_crate_and_its_contract() {
        let paths: Vec<_> = super::FILES.iter().map(|(path, _)| *path).collect();
        for expected in [
            "Cargo.toml",
            "src/lib.rs",
            "macros/Cargo.toml",
            "macros/src/lib.rs",
            "wit/worlds.wit",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} embedded; have {paths:?}"
            );
        }
        assert_eq!(version(), env!("CARGO_PKG_VERSION"));
        // The patches name the package; user code names the library.
        let manifest = manifest();
        assert_eq!(manifest["package"]["name"].as_str(), Some(PACKAGE));
        assert_eq!(manifest["lib"]["name"].as_str(), Some("verge"));
        assert_eq!(content_hash(super::FILES).len(), 12);
        assert_ne!(content_hash(FILES), content_hash(&FILES[1..]));
    }

    #[test]
    fn projects_that_pick_their_sdk_are_left_alone() {
        for manifest in [
            "[patch.crates-io]\nverge-sdk = { path = \"../sdk\" }\n",
            "[patch.crates-io]\nverge-sdk.git = \"https://example.com/verge\"\n",
            "[patch.crates-io]\nverge = { package = \"verge-sdk\", path = \"../sdk\" }\n",
            "[dependencies]\nverge-sdk = { path = \"/src/verge/sdk\" }\n",
            "[dependencies]\nverge = { package = \"verge-sdk\", path = \"/src/verge/sdk\" }\n",
            "[workspace.dependencies]\nverge-sdk = { path = \"../sdk\" }\n",
            "[workspace.dependencies]\nsdk = { package = \"verge-sdk\", path = \"../sdk\", version = \"0.1\" }\n",
        ] {
            assert!(
                chooses_own_sdk(&toml::from_str(manifest).unwrap()),
                "{manifest}"
            );
        }
        for manifest in [
            "[dependencies]\nverge-sdk = \"0.1.0\"\n",
            "[dependencies]\nverge-sdk = { version = \"0.1\", features = [] }\n",
            "[dependencies]\nverge = { package = \"verge-sdk\", version = \"0.1\" }\n",
            "[dependencies]\nverge-sdk = { package = \"other\", path = \"../other\" }\n",
            // Some other crate by path, and the unrelated `verge` on crates.io.
            "[dependencies]\nverge-sdk = \"0.1\"\nother = { path = \"../other\" }\n",
            "[patch.crates-io]\nverge = { path = \"../verge\" }\n",
            "[workspace]\nmembers = [\"a\"]\n",
        ] {
            assert!(
                !chooses_own_sdk(&toml::from_str(manifest).unwrap()),
                "{manifest}"
            );
        }
    }

    #[test]
    fn a_workspace_member_follows_its_workspace_root() {
        let root = tempfile::tempdir().unwrap();
        let member = root.path().join("hello");
        std::fs::create_dir_all(&member).unwrap();
        std::fs::write(
            member.join("Cargo.toml"),
            "[dependencies]\nverge-sdk = \"0.1.0\"\n",
        )
        .unwrap();
        assert!(!project_chooses(&member), "no workspace: the embedded SDK");
        std::fs::write(
            root.path().join("Cargo.toml"),
            "[workspace]\nmembers = [\"hello\"]\n[patch.crates-io]\nverge-sdk = { path = \"../sdk\" }\n",
        )
        .unwrap();
        assert!(project_chooses(&member));
        assert!(project_chooses(root.path()));
    }

    #[test]
    fn only_projects_that_name_the_sdk_use_it() {
        let write = |path: &Path, text: &str| {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        let plain = tempfile::tempdir().unwrap();
        write(
            &plain.path().join("Cargo.toml"),
            "[package]\nname = \"p\"\n[dependencies]\nwasip2 = \"1\"\n[workspace]\n",
        );
        assert!(!project_uses(plain.path()), "a plain wasi:http component");

        let workspace = tempfile::tempdir().unwrap();
        write(
            &workspace.path().join("Cargo.toml"),
            "[workspace]\nmembers = [\"crates/*\"]\n",
        );
        let member = workspace.path().join("crates/api");
        write(
            &member.join("Cargo.toml"),
            "[package]\nname = \"api\"\n[dependencies]\nverge-sdk = \"0.1.0\"\n",
        );
        assert!(project_uses(workspace.path()), "a member two levels down");
        assert!(project_uses(&member));
    }

    #[test]
    fn patch_paths_are_quoted_for_toml() {
        let sdk = Path::new("/home/a \"b\"/sdk");
        for config in [patch_argument(sdk), local_patch_file(sdk)] {
            let config: toml::Table = toml::from_str(&config).unwrap();
            assert_eq!(
                config["patch"]["crates-io"]["verge-sdk"]["path"].as_str(),
                Some("/home/a \"b\"/sdk")
            );
        }
    }
}
