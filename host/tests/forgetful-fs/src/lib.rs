//! A FUSE filesystem that forgets, on command, every write not yet fsynced:
//! the approach of [LazyFS], for power-loss tests.
//!
//! # Why
//!
//! Killing a process with SIGKILL does not lose what it wrote: the kernel's
//! page cache outlives it and reaches the disk later. So a test that kills a
//! server and restarts it cannot tell whether the server fsynced before it
//! acknowledged a write. Here the data directory lives on a mount that
//! holds written data in memory until it is fsynced; the test kills the
//! server, calls [`ForgetfulFs::drop_unsynced`] (the power cut), restarts
//! the server on the same mount and checks that every acknowledged write is
//! still there.
//!
//! # The model
//!
//! The mount is a passthrough view of a backing directory.
//!
//! - **Forgotten:** file data written since that file's last `fsync` or
//!   `fdatasync`. Writes stay in a per-file cache of byte ranges over the
//!   backing file, and reads see the cache laid over the backing file; a
//!   file extended by unsynced writes shrinks back when they are dropped.
//!   An fsync writes the file's cache to the backing file and fsyncs that.
//! - **Kept:** everything else. Creating, renaming and removing files and
//!   directories, truncation, chmod, chown and timestamps go straight to the
//!   backing directory, as in LazyFS, and so survive a drop whether or not
//!   the directory was fsynced.
//!
//! Not modelled: the loss of directory entries (a file created or renamed
//! without an fsync of its directory always survives), torn writes (a write
//! is kept or forgotten whole, never in part), reordering (nothing is lost
//! without a drop), hard links, symlinks and special files. Writes opened
//! with `O_SYNC`/`O_DSYNC` are durable when they return.
//!
//! Files are opened in direct-I/O mode and attributes are never cached, so
//! the kernel holds no file data that could outlive a drop. That is fine for
//! SQLite in WAL mode; its shared-memory `-shm` file, if used, is mapped
//! through the kernel's page cache, but SQLite rebuilds it from the WAL on
//! the first open after a crash.
//!
//! [LazyFS]: https://github.com/dsrhaslab/lazyfs

mod fs;
mod overlay;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use fuser::{BackgroundSession, Config, MountOption};

use crate::fs::{Forgetful, State, lock};

/// A mounted forgetful view of a backing directory, served from a
/// background thread until dropped (which unmounts it).
#[derive(Debug)]
pub struct ForgetfulFs {
    state: Arc<Mutex<State>>,
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
}

impl ForgetfulFs {
    /// Mounts a forgetful view of `backing` at `mountpoint` (both existing
    /// directories; `backing` must not lie inside the mount), serving in a
    /// background thread.
    pub fn mount(backing: &Path, mountpoint: &Path) -> io::Result<Self> {
        let context = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!(
                    "mounting a forgetful view of {} at {}: {e}",
                    backing.display(),
                    mountpoint.display()
                ),
            )
        };
        let backing = backing.canonicalize().map_err(context)?;
        let state = Arc::new(Mutex::new(State::new(&backing).map_err(context)?));
        let mut config = Config::default();
        // No AutoUnmount: fusermount3 only does it with allow_other, which
        // the one user of the mount has no need for. Drop unmounts instead.
        config.mount_options = vec![MountOption::FSName("forgetful".into())];
        let session = fuser::spawn_mount(Forgetful::new(state.clone()), mountpoint, &config)
            .map_err(context)?;
        Ok(Self {
            state,
            session: Some(session),
            mountpoint: mountpoint.to_path_buf(),
        })
    }

    /// Discards every file's unsynced writes, as a power loss would: from
    /// now on reads see only what was fsynced. Call it once the processes
    /// under test are dead, since one still running would carry on from
    /// state that no longer exists.
    pub fn drop_unsynced(&self) {
        lock(&self.state).drop_unsynced();
    }

    /// Bytes written but not yet fsynced, over all files: what a drop
    /// would forget now, so a test can show it forgot something.
    pub fn unsynced_bytes(&self) -> u64 {
        lock(&self.state).unsynced_bytes()
    }

    /// Where the filesystem is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }
}

impl Drop for ForgetfulFs {
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        if let Err(e) = session.umount_and_join() {
            // Busy, most likely: something still has a file open there.
            // Detach it so the mountpoint can go; the serving thread ends
            // when the last user lets go.
            eprintln!(
                "forgetful-fs: unmounting {}: {e}; detaching it",
                self.mountpoint.display()
            );
            if let Ok(path) = std::ffi::CString::new(self.mountpoint.as_os_str().as_encoded_bytes())
            {
                // SAFETY: `path` is a valid C string.
                unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

/// Whether FUSE can be used here: `Ok` once a trial mount has worked, else
/// why not. Tests that need FUSE call it and report themselves skipped with
/// the reason. Checked once per process.
pub fn available() -> Result<(), String> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT.get_or_init(probe).clone()
}

fn probe() -> Result<(), String> {
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse does not exist".into());
    }
    let dir = tempfile::tempdir().map_err(|e| format!("making a temporary directory: {e}"))?;
    let backing = dir.path().join("backing");
    let mountpoint = dir.path().join("mnt");
    for path in [&backing, &mountpoint] {
        std::fs::create_dir(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
    }
    let fs = ForgetfulFs::mount(&backing, &mountpoint).map_err(|e| {
        // As root the mount is made directly; anyone else needs the helper.
        let helper = std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|dir| dir.join("fusermount3").exists())
        });
        if helper {
            e.to_string()
        } else {
            format!("{e} (and no fusermount3 on PATH: install the fuse3 package)")
        }
    })?;
    let probe = mountpoint.join("probe");
    let read = std::fs::write(&probe, b"probe").and_then(|()| std::fs::read(&probe));
    drop(fs);
    match read {
        Ok(data) if data == b"probe" => Ok(()),
        Ok(data) => Err(format!(
            "trial mount read back {data:?} instead of \"probe\""
        )),
        Err(e) => Err(format!("using the trial mount: {e}")),
    }
}
