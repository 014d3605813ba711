//! The `fuser::Filesystem` implementation: paths <-> inodes, per-handle snapshots,
//! writes to `Provider::write`, stream reads to [`StreamHub`].

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo, KernelConfig, LockOwner,
    OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyIoctl, ReplyOpen, ReplyWrite, ReplyXattr, Request, WriteFlags,
};
use log::debug;

use crate::stream::{ReadReq, StreamHub};
use crate::{Attr, Kind, Provider};

/// Attribute and entry TTL: zero, the kernel asks again every time.
const TTL: Duration = Duration::ZERO;
/// max_write asked of the kernel; the kernel may lower it (max_pages).
pub(crate) const MAX_WRITE: u32 = 1 << 20;
/// Pages per request when the kernel does not negotiate FUSE_MAX_PAGES.
const DEFAULT_MAX_PAGES: usize = 32;

/// File handles are unique in the process (they key readers in shared hubs).
static NEXT_FH: AtomicU64 = AtomicU64::new(1);

/// A write that came without a lock owner: then every close is checked.
const ANY_OWNER: u64 = u64::MAX;

fn errno(e: nix::errno::Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e as i32)
}

pub(crate) enum Handle {
    /// A generated file: `data` is the snapshot rendered at open (None if opened write-only).
    File {
        path: String,
        data: Option<Vec<u8>>,
        /// Writes are gathered per open file ([`Provider::gathers`]).
        gathers: bool,
        /// The process (FUSE lock owner: one per file table) that wrote
        /// first since the last commit: its close commits. Another process
        /// sharing the open file (a subshell's command, a child dropping an
        /// inherited descriptor at exec) commits only at the last close.
        writer: Option<u64>,
    },
    /// A stream file: `hub` is set if opened for reading (the reader key is the fh).
    Stream {
        path: String,
        hub: Option<Arc<StreamHub>>,
    },
    /// A directory listing taken at opendir: (ino, type, name).
    Dir {
        entries: Vec<(u64, FileType, String)>,
    },
}

#[derive(Default)]
pub(crate) struct Handles {
    pub map: HashMap<u64, Handle>,
    pub shutdown: bool,
}

/// State shared by the session thread, the reaper thread and `Mounted`.
#[derive(Default)]
pub(crate) struct Shared {
    pub handles: Mutex<Handles>,
    /// Wakes the reaper (a stream handle opened, or shutdown).
    pub wake: Condvar,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Handles> {
        self.handles.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Open stream readers: (fh, hub).
    pub fn stream_readers(h: &Handles) -> Vec<(u64, Arc<StreamHub>)> {
        h.map
            .iter()
            .filter_map(|(fh, h)| match h {
                Handle::Stream { hub: Some(hub), .. } => Some((*fh, hub.clone())),
                _ => None,
            })
            .collect()
    }

    /// Refuse new opens, and end every stream read (parked reads get end-of-file).
    pub fn shutdown(&self) {
        let readers = {
            let mut h = self.lock();
            h.shutdown = true;
            Self::stream_readers(&h)
        };
        self.wake.notify_all();
        for (fh, hub) in readers {
            hub.detach(fh);
        }
    }
}

#[derive(Default)]
struct Inodes {
    by_path: HashMap<String, u64>,
    /// Path of inode `i + 1`.
    paths: Vec<String>,
}

impl Inodes {
    fn ino(&mut self, path: &str) -> u64 {
        if let Some(&i) = self.by_path.get(path) {
            return i;
        }
        self.paths.push(path.to_string());
        let i = self.paths.len() as u64;
        self.by_path.insert(path.to_string(), i);
        i
    }

    fn path(&self, ino: u64) -> Option<String> {
        self.paths.get((ino as usize).checked_sub(1)?).cloned()
    }
}

pub(crate) struct Fs {
    provider: Arc<dyn Provider>,
    shared: Arc<Shared>,
    inodes: Mutex<Inodes>,
    /// Largest FUSE write accepted (see the crate docs: write size).
    max_txn: Arc<AtomicUsize>,
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

fn parent_of(path: &str) -> &str {
    path.rfind('/').map_or("", |i| &path[..i])
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Dir => FileType::Directory,
        Kind::File | Kind::Stream => FileType::RegularFile,
    }
}

impl Fs {
    pub fn new(provider: Arc<dyn Provider>, shared: Arc<Shared>, max_txn: Arc<AtomicUsize>) -> Fs {
        let mut inodes = Inodes::default();
        inodes.ino(""); // root is inode 1
        Fs {
            provider,
            shared,
            inodes: Mutex::new(inodes),
            max_txn,
        }
    }

    fn inodes(&self) -> MutexGuard<'_, Inodes> {
        self.inodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, ino: INodeNo) -> Result<String, fuser::Errno> {
        self.inodes().path(ino.0).ok_or(fuser::Errno::ENOENT)
    }

    /// Path and provider attributes of `ino`, ENOENT if gone.
    fn lookup_ino(&self, ino: INodeNo) -> Result<(String, Attr), fuser::Errno> {
        let path = self.path(ino)?;
        let attr = self.provider.attr(&path).ok_or(fuser::Errno::ENOENT)?;
        Ok((path, attr))
    }

    fn file_attr(&self, ino: u64, path: &str, a: &Attr) -> FileAttr {
        let (size, time) = match a.kind {
            Kind::Stream => match self.provider.stream(path) {
                Some(hub) => (hub.published(), hub.mtime()),
                None => (0, SystemTime::now()),
            },
            _ => (self.provider.size(path).unwrap_or(0), SystemTime::now()),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: 0,
            atime: time,
            mtime: time,
            ctime: time,
            crtime: time,
            kind: file_type(a.kind),
            perm: a.perm & 0o7777,
            nlink: if a.kind == Kind::Dir { 2 } else { 1 },
            uid: a.uid,
            gid: a.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    fn add_handle(&self, h: Handle) -> Result<u64, fuser::Errno> {
        let fh = NEXT_FH.fetch_add(1, Ordering::Relaxed);
        let is_reader = matches!(h, Handle::Stream { hub: Some(_), .. });
        {
            let mut hs = self.shared.lock();
            if hs.shutdown {
                return Err(fuser::Errno::ENOTCONN);
            }
            if let Handle::Stream { hub: Some(hub), .. } = &h {
                hub.attach(fh);
            }
            hs.map.insert(fh, h);
        }
        if is_reader {
            self.shared.wake.notify_all();
        }
        Ok(fh)
    }

    fn open_file(&self, ino: INodeNo, flags: OpenFlags) -> Result<(u64, FopenFlags), fuser::Errno> {
        let (path, a) = self.lookup_ino(ino)?;
        let mode = flags.acc_mode();
        let reads = mode != OpenAccMode::O_WRONLY;
        let writes = mode != OpenAccMode::O_RDONLY;
        if a.kind == Kind::Dir {
            return Err(fuser::Errno::EISDIR);
        }
        // Even root may not read or write what has no such bit at all.
        if (reads && a.perm & 0o444 == 0) || (writes && a.perm & 0o222 == 0) {
            return Err(fuser::Errno::EACCES);
        }
        let h = match a.kind {
            Kind::Stream => {
                let hub = if reads {
                    Some(self.provider.stream(&path).ok_or(fuser::Errno::EIO)?)
                } else {
                    None
                };
                Handle::Stream { path, hub }
            }
            _ => {
                let data = if reads {
                    Some(self.provider.read(&path).map_err(errno)?)
                } else {
                    None
                };
                let gathers = writes && self.provider.gathers(&path);
                Handle::File {
                    path,
                    data,
                    gathers,
                    writer: None,
                }
            }
        };
        Ok((self.add_handle(h)?, FopenFlags::FOPEN_DIRECT_IO))
    }

    /// Commit what the open file gathered (a close by its first writer, or
    /// fsync); the next write starts the next transaction.
    fn commit_now(&self, path: &str, fh: u64) -> Result<(), fuser::Errno> {
        let r = self.provider.commit(path, fh, false).map_err(errno);
        if r.is_ok() {
            if let Some(Handle::File { writer, .. }) = self.shared.lock().map.get_mut(&fh) {
                *writer = None;
            }
        }
        r
    }

    /// The path of an open file whose writes are gathered.
    fn gathering(&self, fh: u64) -> Option<String> {
        match self.shared.lock().map.get(&fh) {
            Some(Handle::File {
                path,
                gathers: true,
                ..
            }) => Some(path.clone()),
            _ => None,
        }
    }

    fn list_dir(&self, ino: INodeNo) -> Result<Vec<(u64, FileType, String)>, fuser::Errno> {
        let (path, a) = self.lookup_ino(ino)?;
        if a.kind != Kind::Dir {
            return Err(fuser::Errno::ENOTDIR);
        }
        let parent = if ino.0 == 1 {
            1
        } else {
            self.inodes().ino(parent_of(&path))
        };
        let mut entries = vec![
            (ino.0, FileType::Directory, ".".to_string()),
            (parent, FileType::Directory, "..".to_string()),
        ];
        for name in self.provider.list(&path) {
            if name.is_empty() || name == "." || name == ".." || name.contains('/') {
                continue;
            }
            let child = join(&path, &name);
            if let Some(ca) = self.provider.attr(&child) {
                let ci = self.inodes().ino(&child);
                entries.push((ci, file_type(ca.kind), name));
            }
        }
        Ok(entries)
    }
}

impl fuser::Filesystem for Fs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(MAX_WRITE);
        let caps = config.capabilities();
        let pages = if caps.contains(fuser::InitFlags::FUSE_MAX_PAGES) {
            crate::kernel_max_pages()
        } else {
            DEFAULT_MAX_PAGES
        };
        // A write(2) from one buffer of at most (pages - 1) pages spans at most `pages`
        // pages and is sent whole; a larger one arrives with a first piece larger than
        // that, which is refused, so the whole write(2) fails.
        let limit = crate::txn_limit(pages);
        self.max_txn.store(limit, Ordering::Relaxed);
        debug!("controlfs: write transaction limit {limit} bytes");
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let r = (|| {
            let (ppath, pa) = self.lookup_ino(parent)?;
            if pa.kind != Kind::Dir {
                return Err(fuser::Errno::ENOTDIR);
            }
            let name = name.to_str().ok_or(fuser::Errno::ENOENT)?;
            let path = join(&ppath, name);
            let a = self.provider.attr(&path).ok_or(fuser::Errno::ENOENT)?;
            let ino = self.inodes().ino(&path);
            Ok(self.file_attr(ino, &path, &a))
        })();
        match r {
            Ok(fa) => reply.entry(&TTL, &fa, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.lookup_ino(ino) {
            Ok((path, a)) => {
                let mut attr = self.file_attr(ino.0, &path, &a);
                // An open generated file: the size of its snapshot.
                if let Some(fh) = fh {
                    if let Some(Handle::File { data: Some(d), .. }) =
                        self.shared.lock().map.get(&fh.0)
                    {
                        attr.size = d.len() as u64;
                    }
                }
                reply.attr(&TTL, &attr)
            }
            Err(e) => reply.error(e),
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
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let r = (|| {
            let (path, a) = self.lookup_ino(ino)?;
            if mode.is_some() || uid.is_some() || gid.is_some() {
                return Err(fuser::Errno::EPERM);
            }
            match size {
                // O_TRUNC / truncate to 0: accepted, nothing to do.
                Some(0) if a.kind != Kind::Dir => {}
                Some(_) if a.kind == Kind::Dir => return Err(fuser::Errno::EISDIR),
                Some(_) => return Err(fuser::Errno::EINVAL),
                None => {}
            }
            Ok(self.file_attr(ino.0, &path, &a))
        })();
        match r {
            Ok(fa) => reply.attr(&TTL, &fa),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.open_file(ino, flags) {
            Ok((fh, f)) => reply.opened(FileHandle(fh), f),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let hub = {
            let hs = self.shared.lock();
            match hs.map.get(&fh.0) {
                Some(Handle::File { data: Some(d), .. }) => {
                    let from = (offset as usize).min(d.len());
                    let to = from.saturating_add(size as usize).min(d.len());
                    return reply.data(&d[from..to]);
                }
                Some(Handle::Stream { hub: Some(hub), .. }) => hub.clone(),
                Some(Handle::Dir { .. }) => return reply.error(fuser::Errno::EISDIR),
                Some(_) => return reply.error(fuser::Errno::EBADF),
                None if hs.shutdown => return reply.data(&[]),
                None => return reply.error(fuser::Errno::EBADF),
            }
        };
        let r = ReadReq {
            unique: req.unique().0,
            pid: req.pid(),
            offset,
            size,
            nonblock: flags.0 & libc::O_NONBLOCK != 0,
        };
        hub.read(fh.0, r, reply);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let (path, gathers) = match self.shared.lock().map.get_mut(&fh.0) {
            Some(Handle::File {
                path,
                gathers,
                writer,
                ..
            }) => {
                if *gathers && writer.is_none() {
                    *writer = Some(lock_owner.map_or(ANY_OWNER, |o| o.0));
                }
                (path.clone(), *gathers)
            }
            Some(Handle::Stream { path, .. }) => (path.clone(), false),
            Some(Handle::Dir { .. }) => return reply.error(fuser::Errno::EISDIR),
            None => return reply.error(fuser::Errno::EBADF),
        };
        if gathers {
            // One piece of the open file's transaction: any size.
            return match self.provider.write_part(&path, fh.0, data) {
                Ok(()) => reply.written(data.len() as u32),
                Err(e) => reply.error(errno(e)),
            };
        }
        if data.len() > self.max_txn.load(Ordering::Relaxed) {
            debug!(
                "controlfs: write of {} bytes to {path:?} refused (EFBIG)",
                data.len()
            );
            self.provider
                .refused(&path, data.len(), nix::errno::Errno::EFBIG);
            return reply.error(fuser::Errno::EFBIG);
        }
        match self.provider.write(&path, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // A close(2) by the process that wrote first commits what the open
        // file gathered (so it applies before close returns).
        let first = matches!(self.shared.lock().map.get(&fh.0), Some(Handle::File { writer: Some(w), .. })
            if *w == lock_owner.0 || *w == ANY_OWNER);
        let r = match self.gathering(fh.0).filter(|_| first) {
            Some(path) => self.commit_now(&path, fh.0),
            None => Ok(()),
        };
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
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
        let h = self.shared.lock().map.remove(&fh.0);
        match h {
            Some(Handle::Stream { hub: Some(hub), .. }) => hub.detach(fh.0),
            // The open file's last close: what it gathered applies (an error
            // is the provider's to record: close(2) has returned).
            Some(Handle::File {
                path,
                gathers: true,
                ..
            }) => {
                let _ = self.provider.commit(&path, fh.0, true);
            }
            _ => {}
        }
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _ds: bool, reply: ReplyEmpty) {
        let r = match self.gathering(fh.0) {
            Some(path) => self.commit_now(&path, fh.0),
            None => Ok(()),
        };
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self
            .list_dir(ino)
            .and_then(|entries| self.add_handle(Handle::Dir { entries }))
        {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let hs = self.shared.lock();
        let Some(Handle::Dir { entries }) = hs.map.get(&fh.0) else {
            return reply.error(fuser::Errno::EBADF);
        };
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        drop(hs);
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.shared.lock().map.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _ds: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    // What these files do not have is said quietly (fuser's defaults log a
    // warning for each): no terminal ioctls, no extended attributes.
    #[allow(clippy::too_many_arguments)]
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(fuser::Errno::ENOTTY);
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(fuser::Errno::ENODATA);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok(); // default_permissions: the kernel checks modes itself
    }

    // The tree is the provider's: no creating, removing or renaming.
    fn mknod(
        &self,
        _r: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _d: u32,
        reply: ReplyEntry,
    ) {
        reply.error(fuser::Errno::EPERM);
    }

    fn mkdir(&self, _r: &Request, _p: INodeNo, _n: &OsStr, _m: u32, _u: u32, reply: ReplyEntry) {
        reply.error(fuser::Errno::EPERM);
    }

    fn unlink(&self, _r: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(fuser::Errno::EPERM);
    }

    fn rmdir(&self, _r: &Request, _p: INodeNo, _n: &OsStr, reply: ReplyEmpty) {
        reply.error(fuser::Errno::EPERM);
    }

    fn symlink(
        &self,
        _r: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _t: &std::path::Path,
        reply: ReplyEntry,
    ) {
        reply.error(fuser::Errno::EPERM);
    }

    fn rename(
        &self,
        _r: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _np: INodeNo,
        _nn: &OsStr,
        _f: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(fuser::Errno::EPERM);
    }

    fn link(&self, _r: &Request, _i: INodeNo, _np: INodeNo, _nn: &OsStr, reply: ReplyEntry) {
        reply.error(fuser::Errno::EPERM);
    }

    fn create(
        &self,
        _r: &Request,
        _p: INodeNo,
        _n: &OsStr,
        _m: u32,
        _u: u32,
        _f: i32,
        reply: fuser::ReplyCreate,
    ) {
        reply.error(fuser::Errno::EPERM);
    }
}
