//! Control-filesystem mechanism: a FUSE tree of synthetic files whose contents come
//! from callbacks ([`Provider`]). It knows nothing about what the files mean.
//!
//! # Tree
//! Paths are `""` (the root, which must be a [`Kind::Dir`]) or names joined by `'/'`.
//! [`Provider::attr`] decides what exists; [`Provider::list`] names a directory's entries
//! (entries whose `attr` is `None` are left out). Inode numbers are assigned lazily and
//! stay fixed per path for the mount's lifetime. Attribute and entry TTLs are zero: every
//! lookup and stat asks the provider again, so an entry that disappears gives ENOENT.
//! Creating, removing, renaming or linking anything fails with EPERM; chmod/chown with EPERM.
//!
//! # Permissions
//! Mounted with `default_permissions`: the kernel checks [`Attr::perm`], `uid` and `gid`
//! itself (a non-root user gets EACCES writing a root-owned 0644 file). With
//! [`MountOptions::allow_other`] other users can see the mount at all. In addition the fs
//! refuses (EACCES), even to root, to open for reading a file with no read bit, or for
//! writing a file with no write bit. Mounted `nosuid,nodev,noexec`, type `fuse.controlfs`.
//!
//! # Reading files ([`Kind::File`])
//! Opened with FOPEN_DIRECT_IO. Each open(2) for reading calls [`Provider::read`] once
//! and keeps the bytes in the handle: reads serve that snapshot, so one `cat` sees one
//! consistent rendering. An `Err(errno)` from `read` makes open(2) fail with it. st_size
//! is 0 (tools that trust st_size, e.g. `mmap`, see an empty file).
//!
//! # Writing files
//! `>` (O_TRUNC: the truncation to 0 is accepted and does nothing) and `>>` (O_APPEND)
//! both work. Each FUSE write calls [`Provider::write`] once with exactly its bytes (the
//! offset is ignored); `Ok` => the write returns all bytes, `Err(errno)` => write(2) fails
//! with that errno (`sh -c "echo bad > f"` prints an error and exits non-zero).
//!
//! **Write size.** One write(2) from one buffer is one transaction up to
//! [`max_write_transaction`] bytes (1 MiB − 4 KiB on a usual x86-64 kernel: 255 pages):
//! the kernel delivers such a write whole, so the provider sees it in one call. The
//! kernel splits larger writes (max_write is 1 MiB, also the kernel's default page
//! limit); the fs refuses with EFBIG every FUSE write larger than the limit, and the
//! first piece of any larger write(2) is larger than the limit, so such a write(2) fails
//! with EFBIG as a whole and the provider sees none of it. (A writev(2) of many small
//! scattered segments can still be split below the limit; tools like echo/printf/shells
//! write one buffer.) Each write(2) on the same open file is its own transaction.
//!
//! **Gathered writes.** For paths where [`Provider::gathers`] says so, the transaction
//! is the open file instead: every write(2) through it, of any size and from any
//! process sharing it (dup'd descriptors, forked children), is handed to
//! [`Provider::write_part`] (which may check it and fail that write). A close(2) by the
//! process that wrote first (FUSE flush with its lock owner), or fsync(2), calls
//! [`Provider::commit`], whose error close(2) returns: the transaction applies before
//! close returns. Closes by other processes sharing the open file (a subshell's
//! commands, a child dropping an inherited descriptor at exec) do not commit; the last
//! close of the open file (release) commits what is left.
//!
//! # Streams ([`Kind::Stream`])
//! An endless append-only file fed by a [`StreamHub`] ([`Provider::stream`]). Each open
//! for reading gets a cursor at the start of the hub's current backlog. A read returns
//! the bytes available at once; if there are none it waits (the FUSE request is parked in
//! the hub and answered by [`StreamHub::publish`]; the session thread is not blocked, so
//! other files stay usable). With O_NONBLOCK it fails with EAGAIN instead. st_size is the
//! number of bytes published so far and mtime the last publish, so `tail -f` works: it
//! prints the last lines of the backlog, then polls (FUSE counts as remote: no inotify)
//! once a second and prints new lines. A sequential read continues at the cursor; a read
//! at another offset is a seek to that absolute byte (clamped to the backlog). A reader
//! that falls more than the backlog behind skips to the backlog's start.
//!
//! A reader waiting in a stream read cannot be interrupted by the kernel (fuser answers
//! FUSE_INTERRUPT with ENOSYS, so the kernel waits for our reply even for SIGKILL). A
//! reaper thread therefore checks parked readers every 50 ms in /proc and ends the read
//! with EINTR when the reader has SIGKILL (or any fatal signal) pending or, unless it is
//! ptraced, an unblocked signal it handles. A stopped-by-signal reader (SIGTSTP) stays
//! waiting until data arrives. Parked reads of released handles are dropped; on unmount
//! all stream reads get end-of-file.
//!
//! # Threads
//! One FUSE session thread serves all requests and calls the provider: provider
//! callbacks must be quick and must not touch the mount themselves (that would deadlock).
//! `publish()` may be called from any thread, including from inside callbacks.
//!
//! # Mounting
//! [`mount`] uses fuser with its pure-Rust mount code: as root it opens /dev/fuse and calls
//! mount(2) directly (no fusermount, no libfuse); only if mount(2) fails with EPERM (not
//! root) does fuser fall back to the setuid `fusermount3`. [`Mounted`] unmounts when
//! dropped: umount(2), or if files are still open, abort + detach
//! (MNT_FORCE|MNT_DETACH), then it waits (up to 5 s) for the session thread.
//! [`detach_stale`] clears a mount left by a crashed process.

pub use nix::errno::Errno;

mod fs;
mod mount;
mod stream;

pub use mount::{detach_stale, mount, serving, MountOptions, Mounted};
pub use stream::StreamHub;

/// Mount subtype: mounts of this crate have type `fuse.controlfs`.
const SUBTYPE: &str = "controlfs";

/// What a path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A directory, listed by [`Provider::list`].
    Dir,
    /// A generated file: [`Provider::read`] at open, [`Provider::write`] per write.
    File,
    /// An endless, blocking, append-only file fed by [`Provider::stream`] (like a log pipe).
    Stream,
}

/// Attributes of a path.
#[derive(Clone, Copy, Debug)]
pub struct Attr {
    pub kind: Kind,
    /// Permission bits, e.g. 0o644.
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
}

/// The content of the tree. Callbacks run on the FUSE session thread: keep them quick.
pub trait Provider: Send + Sync + 'static {
    /// Attributes of `path`: "" is the root, otherwise components joined by '/', e.g.
    /// "apps/3/info". None: no such entry.
    fn attr(&self, path: &str) -> Option<Attr>;
    /// Entry names in directory `path` (no "." or "..").
    fn list(&self, path: &str) -> Vec<String>;
    /// Render file `path` once per open(2): the reader sees exactly this snapshot until it
    /// closes.
    fn read(&self, path: &str) -> Result<Vec<u8>, Errno>;
    /// One write(2) to file `path`: the provider applies all of `data` or nothing.
    /// Ok(()) => the write returns data.len(). Err(errno) => the write(2) fails with that
    /// errno (the provider records the reason itself). See "Write size" above.
    fn write(&self, path: &str, data: &[u8]) -> Result<(), Errno>;
    /// The size stat(2) reports for file `path`, when it is cheap to know
    /// (None: 0). `tail -f` compares it with what it has read.
    fn size(&self, path: &str) -> Option<u64> {
        let _ = path;
        None
    }
    /// For Kind::Stream files: the hub to read from.
    fn stream(&self, path: &str) -> Option<std::sync::Arc<StreamHub>> {
        let _ = path;
        None
    }
    /// Whether writes to `path` are gathered per open file: then every
    /// write(2) through one open(2) goes to [`Provider::write_part`] (any
    /// size), and each close(2) of it, or fsync(2), to [`Provider::commit`].
    fn gathers(&self, path: &str) -> bool {
        let _ = path;
        false
    }
    /// One write(2) to an open file of a gathering path; `open` identifies
    /// the open file (the same for all its writes). Err => that write(2)
    /// fails with the errno.
    fn write_part(&self, path: &str, open: u64, data: &[u8]) -> Result<(), Errno> {
        let _ = (path, open, data);
        Err(Errno::EIO)
    }
    /// Apply what the open file gathered since the last commit: at a close
    /// by its first writer or fsync (the error is theirs), and at its last
    /// close (`last`: the error is then only for the provider to record; the
    /// provider forgets the open file).
    fn commit(&self, path: &str, open: u64, last: bool) -> Result<(), Errno> {
        let _ = (path, open, last);
        Ok(())
    }
    /// A write the fs refused itself, before [`Provider::write`] (one piece of
    /// a write(2) over [`max_write_transaction`] bytes gets EFBIG), so the
    /// provider can record why. `len` is the size of the refused piece.
    fn refused(&self, path: &str, len: usize, errno: Errno) {
        let _ = (path, len, errno);
    }
}

/// The largest write(2) delivered to [`Provider::write`] in one call on this kernel
/// (see "Write size"): (pages − 1) × page size, where pages = min(1 MiB / page size,
/// /proc/sys/fs/fuse/max_pages_limit). Each mount computes its own limit the same way
/// at INIT (with 32 pages if the kernel lacks FUSE_MAX_PAGES).
pub fn max_write_transaction() -> usize {
    txn_limit(kernel_max_pages())
}

/// The kernel's cap on pages per FUSE request.
fn kernel_max_pages() -> usize {
    std::fs::read_to_string("/proc/sys/fs/fuse/max_pages_limit")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(256)
}

/// Write transaction limit when requests carry at most `pages` pages.
fn txn_limit(pages: usize) -> usize {
    // SAFETY: sysconf has no preconditions.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    };
    let pages = pages.min(fs::MAX_WRITE as usize / page).max(2);
    (pages - 1) * page
}
