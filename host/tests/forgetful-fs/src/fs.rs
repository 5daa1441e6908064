//! The FUSE side: a passthrough over the backing directory in which file
//! data stops in an [`Overlay`] until the file is fsynced.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr};
use std::fs::{self, DirBuilder, File, FileTimes, Metadata, OpenOptions, Permissions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, DirEntryExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

use crate::overlay::Overlay;

/// Zero, so the kernel asks again for every name and size: after
/// [`State::drop_unsynced`] files shrink, and a cached size would outlive
/// the data it described.
const TTL: Duration = Duration::ZERO;

/// Every file is opened for direct I/O so the kernel keeps no copy of file
/// data that could survive a drop.
const OPEN_FLAGS: FopenFlags = FopenFlags::FOPEN_DIRECT_IO;

/// A backing inode, `(st_dev, st_ino)`: what unsynced data belongs to, since
/// it follows the file through renames and stays while an unlinked file is
/// open.
type Key = (u64, u64);

fn key(md: &Metadata) -> Key {
    (md.dev(), md.ino())
}

/// A kernel-visible inode.
#[derive(Debug)]
struct Node {
    key: Key,
    /// Where it is in the backing directory; `None` once its name is gone.
    path: Option<PathBuf>,
    /// Lookups the kernel has not forgotten yet.
    lookups: u64,
}

/// An open file.
#[derive(Debug)]
struct Handle {
    key: Key,
    /// The backing file, always read-write so that an fsync through any
    /// handle can write out the file's cache, as fsync on any descriptor
    /// makes the whole file durable.
    file: File,
    /// Opened with `O_SYNC`/`O_DSYNC`: each write is durable when it returns.
    sync: bool,
}

/// Everything the filesystem knows, behind one lock: requests are served by
/// one thread, and the test calls in from another.
#[derive(Debug)]
pub(crate) struct State {
    nodes: HashMap<u64, Node>,
    by_key: HashMap<Key, u64>,
    next_ino: u64,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    caches: HashMap<Key, Overlay>,
    /// Unlinked but still open: their cache goes with the last handle,
    /// before the backing inode number can be reused.
    doomed: HashSet<Key>,
}

impl State {
    /// Starts with the root inode mapped to `root`.
    pub(crate) fn new(root: &Path) -> io::Result<Self> {
        let md = fs::metadata(root)?;
        let root_ino = u64::from(INodeNo::ROOT);
        let root_node = Node {
            key: key(&md),
            path: Some(root.to_path_buf()),
            lookups: 1,
        };
        Ok(Self {
            nodes: HashMap::from([(root_ino, root_node)]),
            by_key: HashMap::from([(key(&md), root_ino)]),
            next_ino: root_ino + 1,
            handles: HashMap::new(),
            next_fh: 1,
            caches: HashMap::new(),
            doomed: HashSet::new(),
        })
    }

    /// Forgets every unsynced write, as a power loss would.
    pub(crate) fn drop_unsynced(&mut self) {
        self.caches.clear();
    }

    /// Bytes written but not yet synced, over all files.
    pub(crate) fn unsynced_bytes(&self) -> u64 {
        self.caches.values().map(Overlay::dirty_bytes).sum()
    }

    fn path(&self, ino: INodeNo) -> Result<&Path, Errno> {
        self.nodes
            .get(&ino.0)
            .and_then(|node| node.path.as_deref())
            .ok_or(Errno::ENOENT)
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.path(parent)?.join(name))
    }

    fn handle(&self, fh: FileHandle) -> Result<&Handle, Errno> {
        self.handles.get(&fh.0).ok_or(Errno::EBADF)
    }

    /// The kernel learnt of `path` (lookup, create, mkdir): hands out its
    /// inode number and counts the lookup.
    fn remember(&mut self, path: PathBuf, md: &Metadata) -> INodeNo {
        let ino = match self.by_key.get(&key(md)) {
            Some(ino) => *ino,
            None => {
                let ino = self.next_ino;
                self.next_ino += 1;
                self.by_key.insert(key(md), ino);
                let node = Node {
                    key: key(md),
                    path: None,
                    lookups: 0,
                };
                self.nodes.insert(ino, node);
                ino
            }
        };
        let node = self.nodes.get_mut(&ino).expect("by_key names live nodes");
        node.path = Some(path);
        node.lookups += 1;
        INodeNo(ino)
    }

    /// Attributes of `ino`: the backing file's, through the handle when
    /// there is one, since an unlinked file has no path left.
    fn metadata(&self, ino: INodeNo, fh: Option<FileHandle>) -> io::Result<Metadata> {
        if let Some(handle) = fh.and_then(|fh| self.handles.get(&fh.0)) {
            return handle.file.metadata();
        }
        let node = self.nodes.get(&ino.0).ok_or(io::ErrorKind::NotFound)?;
        if let Some(path) = &node.path {
            return fs::symlink_metadata(path);
        }
        match self.handles.values().find(|h| h.key == node.key) {
            Some(handle) => handle.file.metadata(),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    /// The size a reader sees: unsynced data may reach past the backing file.
    fn size(&self, md: &Metadata) -> u64 {
        let cached = self.caches.get(&key(md)).map_or(0, Overlay::end);
        md.len().max(cached)
    }

    fn attr(&self, ino: INodeNo, md: &Metadata) -> FileAttr {
        FileAttr {
            ino,
            size: self.size(md),
            blocks: md.blocks(),
            atime: md.accessed().unwrap_or(UNIX_EPOCH),
            mtime: md.modified().unwrap_or(UNIX_EPOCH),
            ctime: UNIX_EPOCH + Duration::new(md.ctime().max(0) as u64, md.ctime_nsec() as u32),
            crtime: md.created().unwrap_or(UNIX_EPOCH),
            kind: FileType::from_std(md.file_type()).unwrap_or(FileType::RegularFile),
            perm: (md.mode() & 0o7777) as u16,
            nlink: md.nlink() as u32,
            uid: md.uid(),
            gid: md.gid(),
            rdev: md.rdev() as u32,
            blksize: md.blksize() as u32,
            flags: 0,
        }
    }

    fn open_handle(&mut self, key: Key, file: File, flags: i32) -> FileHandle {
        let fh = self.next_fh;
        self.next_fh += 1;
        let sync = flags & libc::O_DSYNC != 0;
        self.handles.insert(fh, Handle { key, file, sync });
        FileHandle(fh)
    }

    /// The name `path` of backing inode `key` is gone (unlink, rmdir, or
    /// replaced by a rename). Hard links are not modelled: the inode is
    /// taken to be gone with it, or with its last open handle.
    fn name_removed(&mut self, path: &Path, key: Key) {
        if let Some(ino) = self.by_key.remove(&key)
            && let Some(node) = self.nodes.get_mut(&ino)
            && node.path.as_deref() == Some(path)
        {
            node.path = None;
        }
        if self.handles.values().any(|h| h.key == key) {
            self.doomed.insert(key);
        } else {
            self.caches.remove(&key);
        }
    }

    /// A rename moved `from` (and, for a directory, everything under it) to `to`.
    fn relocate(&mut self, from: &Path, to: &Path) {
        for node in self.nodes.values_mut() {
            if let Some(path) = &node.path
                && let Ok(rest) = path.strip_prefix(from)
            {
                node.path = Some(if rest.as_os_str().is_empty() {
                    to.to_path_buf()
                } else {
                    to.join(rest)
                });
            }
        }
    }
}

/// Writes the cache of `key` to the backing file and makes it durable there;
/// the cache is kept if that fails, as a failed fsync leaves data unsynced.
fn flush(
    caches: &mut HashMap<Key, Overlay>,
    key: Key,
    file: &File,
    datasync: bool,
) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    if let Some(cache) = caches.get(&key) {
        for (offset, data) in cache.extents() {
            file.write_all_at(data, offset)?;
        }
    }
    if datasync {
        file.sync_data()?;
    } else {
        file.sync_all()?;
    }
    caches.remove(&key);
    Ok(())
}

/// Reads `buf.len()` bytes at `offset` from the backing file, leaving zeros
/// where it ends: unsynced data can reach past it.
fn read_backing(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn open_backing(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)
}

/// The [`Filesystem`] fuser serves, sharing its [`State`] with the test.
#[derive(Debug)]
pub(crate) struct Forgetful {
    state: Arc<Mutex<State>>,
}

impl Forgetful {
    pub(crate) fn new(state: Arc<Mutex<State>>) -> Self {
        Self { state }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Removes the entry `name` of `parent` with `remove` (a file or a
    /// directory), forgetting its name.
    fn remove(
        &self,
        parent: INodeNo,
        name: &OsStr,
        reply: ReplyEmpty,
        remove: impl FnOnce(&Path) -> io::Result<()>,
    ) {
        let mut state = self.lock();
        let result = state.child(parent, name).and_then(|path| {
            let md = fs::symlink_metadata(&path)?;
            remove(&path)?;
            state.name_removed(&path, key(&md));
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

/// Locks the state, ignoring poisoning: a panicking request leaves no
/// half-made change worth refusing service over.
pub(crate) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Filesystem for Forgetful {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // SQLite maps its `-shm` wal-index shared, which the kernel refuses
        // on direct-I/O files unless allowed here. Older kernels lack the
        // flag: then only `locking_mode=EXCLUSIVE` WAL (no `-shm`) works.
        let _ = config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut state = self.lock();
        let result = state.child(parent, name).and_then(|path| {
            let md = fs::symlink_metadata(&path)?;
            let ino = state.remember(path, &md);
            Ok(state.attr(ino, &md))
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        let mut state = self.lock();
        let Some(node) = state.nodes.get_mut(&ino.0) else {
            return;
        };
        node.lookups = node.lookups.saturating_sub(nlookup);
        if node.lookups == 0 && ino != INodeNo::ROOT {
            let key = node.key;
            state.nodes.remove(&ino.0);
            if state.by_key.get(&key) == Some(&ino.0) {
                state.by_key.remove(&key);
            }
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let state = self.lock();
        match state.metadata(ino, fh) {
            Ok(md) => reply.attr(&TTL, &state.attr(ino, &md)),
            Err(e) => reply.error(e.into()),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let result = (|| -> Result<FileAttr, Errno> {
            let opened;
            let file = match fh.and_then(|fh| state.handles.get(&fh.0)) {
                Some(handle) => &handle.file,
                None => {
                    // Truncation needs a writable descriptor; a directory
                    // cannot be opened for writing, and is never truncated.
                    let path = state.path(ino)?;
                    opened = OpenOptions::new()
                        .read(true)
                        .write(size.is_some())
                        .open(path)?;
                    &opened
                }
            };
            if let Some(mode) = mode {
                file.set_permissions(Permissions::from_mode(mode & 0o7777))?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::fchown(file, uid, gid)?;
            }
            if let Some(size) = size {
                // Metadata goes straight to the backing file, as in LazyFS;
                // the cache must not resurrect bytes past the new end.
                file.set_len(size)?;
                if let Some(cache) = state.caches.get_mut(&key(&file.metadata()?)) {
                    cache.truncate(size);
                }
            }
            if atime.is_some() || mtime.is_some() {
                let mut times = FileTimes::new();
                if let Some(t) = atime {
                    times = times.set_accessed(time(t));
                }
                if let Some(t) = mtime {
                    times = times.set_modified(time(t));
                }
                file.set_times(times)?;
            }
            Ok(state.attr(ino, &file.metadata()?))
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut state = self.lock();
        let result = state.child(parent, name).and_then(|path| {
            // The kernel has applied the caller's umask already; ours must
            // not apply a second time.
            DirBuilder::new().mode(mode).create(&path)?;
            fs::set_permissions(&path, Permissions::from_mode(mode & 0o7777))?;
            let md = fs::symlink_metadata(&path)?;
            let ino = state.remember(path, &md);
            Ok(state.attr(ino, &md))
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, reply, |path| fs::remove_file(path));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.remove(parent, name, reply, |path| fs::remove_dir(path));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if !flags.is_empty() {
            // RENAME_NOREPLACE / RENAME_EXCHANGE: callers fall back to rename(2).
            reply.error(Errno::EINVAL);
            return;
        }
        let mut state = self.lock();
        let result = (|| -> Result<(), Errno> {
            let from = state.child(parent, name)?;
            let to = state.child(newparent, newname)?;
            let moved = key(&fs::symlink_metadata(&from)?);
            let replaced = fs::symlink_metadata(&to).ok().map(|md| key(&md));
            fs::rename(&from, &to)?;
            if let Some(replaced) = replaced.filter(|k| *k != moved) {
                state.name_removed(&to, replaced);
            }
            state.relocate(&from, &to);
            Ok(())
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.lock();
        let result = (|| -> Result<FileHandle, Errno> {
            // The kernel truncates through setattr before opening, since
            // atomic O_TRUNC is not negotiated: `flags` has no O_TRUNC.
            let file = open_backing(state.path(ino)?)?;
            let key = key(&file.metadata()?);
            Ok(state.open_handle(key, file, flags.0))
        })();
        match result {
            Ok(fh) => reply.opened(fh, OPEN_FLAGS),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let state = self.lock();
        let result = (|| -> Result<Vec<u8>, Errno> {
            let handle = state.handle(fh)?;
            let md = handle.file.metadata()?;
            let end = state.size(&md).min(offset.saturating_add(u64::from(size)));
            let mut buf = vec![0; end.saturating_sub(offset) as usize];
            read_backing(&handle.file, offset, &mut buf)?;
            if let Some(cache) = state.caches.get(&handle.key) {
                cache.read_into(offset, &mut buf);
            }
            Ok(buf)
        })();
        match result {
            Ok(buf) => reply.data(&buf),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let result = (|| -> Result<(), Errno> {
            let handle = state.handles.get(&fh.0).ok_or(Errno::EBADF)?;
            state
                .caches
                .entry(handle.key)
                .or_default()
                .write(offset, data);
            if handle.sync {
                flush(&mut state.caches, handle.key, &handle.file, true)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) promises no durability.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.lock();
        if let Some(handle) = state.handles.remove(&fh.0)
            && state.doomed.contains(&handle.key)
            && !state.handles.values().any(|h| h.key == handle.key)
        {
            state.doomed.remove(&handle.key);
            state.caches.remove(&handle.key);
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let result = match state.handles.get(&fh.0) {
            Some(handle) => {
                flush(&mut state.caches, handle.key, &handle.file, datasync).map_err(Errno::from)
            }
            None => Err(Errno::EBADF),
        };
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let state = self.lock();
        let result = (|| -> Result<Vec<(u64, FileType, std::ffi::OsString)>, Errno> {
            let mut entries = vec![
                (ino.0, FileType::Directory, ".".into()),
                (ino.0, FileType::Directory, "..".into()),
            ];
            for entry in fs::read_dir(state.path(ino)?)? {
                let entry = entry?;
                let kind = FileType::from_std(entry.file_type()?).unwrap_or(FileType::RegularFile);
                // The backing inode number: only `ls -i` and the like see it.
                entries.push((entry.ino(), kind, entry.file_name()));
            }
            Ok(entries)
        })();
        match result {
            Ok(entries) => {
                for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize)
                {
                    if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Directory entries are never held back (they reach the backing
        // directory at once), so this only passes the request on.
        let state = self.lock();
        let result = state
            .path(ino)
            .and_then(|path| Ok(File::open(path)?.sync_all()?));
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        let state = self.lock();
        let result = (|| -> Result<libc::statvfs, Errno> {
            let path = cstring(state.path(ino)?)?;
            let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
            // SAFETY: `path` is a valid C string and `st` is writable
            // memory of the right type, filled in when the call succeeds.
            if unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) } != 0 {
                return Err(io::Error::last_os_error().into());
            }
            // SAFETY: statvfs returned 0, so it filled `st`.
            Ok(unsafe { st.assume_init() })
        })();
        match result {
            Ok(st) => reply.statfs(
                st.f_blocks,
                st.f_bfree,
                st.f_bavail,
                st.f_files,
                st.f_ffree,
                st.f_bsize as u32,
                st.f_namemax as u32,
                st.f_frsize as u32,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.lock();
        let result = (|| -> Result<(FileAttr, FileHandle), Errno> {
            let path = state.child(parent, name)?;
            let existed = fs::symlink_metadata(&path).is_ok();
            let truncate = flags & libc::O_TRUNC != 0;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .create_new(flags & libc::O_EXCL != 0)
                .truncate(truncate)
                .mode(mode)
                .open(&path)?;
            if !existed {
                // The kernel has applied the caller's umask already.
                file.set_permissions(Permissions::from_mode(mode & 0o7777))?;
            }
            let md = file.metadata()?;
            if truncate {
                state.caches.remove(&key(&md));
            }
            let ino = state.remember(path, &md);
            let attr = state.attr(ino, &md);
            Ok((attr, state.open_handle(key(&md), file, flags)))
        })();
        match result {
            Ok((attr, fh)) => reply.created(&TTL, &attr, Generation(0), fh, OPEN_FLAGS),
            Err(e) => reply.error(e),
        }
    }
}
