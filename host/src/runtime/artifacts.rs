//! Compiled components, cached on disk by content hash.
//!
//! An upload is compiled once. The original bytes go to
//! `components/<sha256>.wasm` and the native code to
//! `artifacts/<sha256>-<engine>.cwasm`, where `<engine>` fingerprints the
//! wasmtime version and settings; after a restart (or on another host with
//! the same build) the artifact is mapped back in without recompiling.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::files::write_atomically;

pub struct ArtifactCache {
    engine: Engine,
    components_dir: PathBuf,
    artifacts_dir: PathBuf,
    /// Fingerprint of the engine's compiler and settings.
    engine_key: String,
    compiled: AtomicU64,
    loaded: AtomicU64,
}

/// How many components were compiled and how many loaded from the cache
/// since the host started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ArtifactStats {
    pub compiled: u64,
    pub loaded_from_cache: u64,
}

/// The SHA-256 of a component, in hex: its identity in the cache.
pub fn content_hash(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ArtifactCache {
    pub fn open(engine: &Engine, data_dir: &Path) -> Result<Self> {
        let components_dir = data_dir.join("components");
        let artifacts_dir = data_dir.join("artifacts");
        for dir in [&components_dir, &artifacts_dir] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            engine: engine.clone(),
            components_dir,
            artifacts_dir,
            engine_key: format!("{:016x}", hasher.finish()),
            compiled: AtomicU64::new(0),
            loaded: AtomicU64::new(0),
        })
    }

    pub fn stats(&self) -> ArtifactStats {
        ArtifactStats {
            compiled: self.compiled.load(Ordering::Relaxed),
            loaded_from_cache: self.loaded.load(Ordering::Relaxed),
        }
    }

    /// The component for uploaded `bytes` whose hash is `hash`: from the
    /// cache when this exact component was compiled before (a config-only
    /// change, a re-upload), else compiled, with an error a user can act on
    /// when the bytes are not a component. Blocking: compiling takes seconds
    /// for a large component.
    pub fn compile(&self, hash: &str, bytes: &[u8]) -> Result<Component> {
        if let Some(component) = self.cached(hash) {
            return Ok(component);
        }
        check_is_component(bytes)?;
        let component = Component::new(&self.engine, bytes)
            .map_err(anyhow::Error::from)
            .context("the component failed validation or compilation")?;
        self.compiled.fetch_add(1, Ordering::Relaxed);
        Ok(component)
    }

    /// Stores an accepted upload, its bytes and its compiled artifact,
    /// unless they are stored already.
    pub fn persist(&self, hash: &str, bytes: &[u8], component: &Component) -> Result<()> {
        let component_path = self.component_path(hash);
        if !component_path.exists() {
            write_atomically(&component_path, bytes)?;
        }
        let artifact_path = self.artifact_path(hash);
        if !artifact_path.exists() {
            let artifact = component.serialize().map_err(anyhow::Error::from)?;
            write_atomically(&artifact_path, &artifact)?;
        }
        Ok(())
    }

    /// The stored component with `hash`, from its cached artifact when there
    /// is one for this engine, else compiled again from the stored bytes.
    pub fn load(&self, hash: &str) -> Result<Component> {
        if let Some(component) = self.cached(hash) {
            return Ok(component);
        }
        let bytes = std::fs::read(self.component_path(hash))
            .with_context(|| format!("reading stored component {hash}"))?;
        let component = self.compile(hash, &bytes)?;
        self.persist(hash, &bytes, &component)?;
        Ok(component)
    }

    /// The compiled artifact for `hash`, if this engine has one.
    fn cached(&self, hash: &str) -> Option<Component> {
        let artifact = self.artifact_path(hash);
        if !artifact.exists() {
            return None;
        }
        // SAFETY: artifacts are written only by `persist`, from a component
        // this engine compiled, under a name that carries the engine
        // fingerprint; wasmtime checks the fingerprint again.
        match unsafe { Component::deserialize_file(&self.engine, &artifact) } {
            Ok(component) => {
                self.loaded.fetch_add(1, Ordering::Relaxed);
                Some(component)
            }
            Err(e) => {
                tracing::warn!(artifact = %artifact.display(), "cached artifact unusable, recompiling: {e:#}");
                None
            }
        }
    }

    /// The stored component with `hash`, as uploaded.
    pub fn component(&self, hash: &str) -> Result<Vec<u8>> {
        let path = self.component_path(hash);
        std::fs::read(&path).with_context(|| format!("reading stored component {}", path.display()))
    }

    /// The size of the stored component with `hash`, if it is stored.
    pub fn component_size(&self, hash: &str) -> Option<u64> {
        std::fs::metadata(self.component_path(hash))
            .ok()
            .map(|m| m.len())
    }

    /// Removes the files of components no longer referenced by any version.
    pub fn remove(&self, hash: &str) -> Result<()> {
        for path in [self.component_path(hash), self.artifact_path(hash)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
            }
        }
        Ok(())
    }

    fn component_path(&self, hash: &str) -> PathBuf {
        self.components_dir.join(format!("{hash}.wasm"))
    }

    fn artifact_path(&self, hash: &str) -> PathBuf {
        self.artifacts_dir
            .join(format!("{hash}-{}.cwasm", self.engine_key))
    }
}

/// Tells apart "not wasm", "a core module" and "a component" from the
/// header, so the common mistakes get a precise message.
fn check_is_component(bytes: &[u8]) -> Result<()> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        bail!(
            "not a WebAssembly binary (it does not start with the `\\0asm` magic bytes); \
             upload the .wasm component your build produced"
        );
    }
    match bytes[4..8] {
        // Version 1, layer 0: a core module.
        [1, 0, 0, 0] => bail!(
            "this is a core WebAssembly module, not a component: build it with \
             `cargo build --target wasm32-wasip2` (or `cargo component build`), \
             or wrap it with `wasm-tools component new`"
        ),
        // Layer 1: a component, of any pre-release encoding version.
        [_, _, 1, 0] => Ok(()),
        _ => bail!("unrecognised WebAssembly binary version {:?}", &bytes[4..8]),
    }
}
