//! [`StreamHub`]: an append-only byte stream with a bounded backlog, read through
//! FUSE file handles whose blocking reads are parked here and answered by `publish()`.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use fuser::ReplyData;

/// Append-only byte stream with a bounded backlog.
///
/// `publish()` appends bytes and answers the reads that are parked waiting for them; it
/// never waits for a reader. Each reader (an open file handle of a [`crate::Kind::Stream`]
/// file) has its own cursor; a reader that falls behind the backlog skips to its start.
pub struct StreamHub {
    inner: Mutex<Inner>,
}

struct Inner {
    backlog: usize,
    /// Published chunks still kept, each with its absolute start offset.
    chunks: VecDeque<(u64, Vec<u8>)>,
    /// Absolute offset of the first kept byte.
    start: u64,
    /// Absolute offset one past the last published byte (= bytes published so far).
    end: u64,
    mtime: SystemTime,
    readers: HashMap<u64, Reader>,
}

struct Reader {
    /// Absolute position of the next byte this reader gets.
    cursor: u64,
    /// File offset the kernel will pass on a sequential next read; any other offset is a seek.
    next_off: u64,
    parked: VecDeque<Parked>,
}

struct Parked {
    unique: u64,
    pid: u32,
    offset: u64,
    size: u32,
    reply: ReplyData,
}

/// A parked read, as seen by the reaper of dead readers.
pub(crate) struct ParkedInfo {
    pub unique: u64,
    pub pid: u32,
}

/// What a read asks for.
pub(crate) struct ReadReq {
    pub unique: u64,
    pub pid: u32,
    pub offset: u64,
    pub size: u32,
    pub nonblock: bool,
}

impl std::fmt::Debug for StreamHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.lock();
        f.debug_struct("StreamHub")
            .field("backlog", &g.backlog)
            .field("start", &g.start)
            .field("end", &g.end)
            .field("readers", &g.readers.len())
            .finish()
    }
}

impl StreamHub {
    /// A new empty hub keeping at most `backlog_bytes` of past output for new readers
    /// (whole chunks are dropped oldest first; the newest chunk is always kept).
    pub fn new(backlog_bytes: usize) -> Arc<StreamHub> {
        Arc::new(StreamHub {
            inner: Mutex::new(Inner {
                backlog: backlog_bytes,
                chunks: VecDeque::new(),
                start: 0,
                end: 0,
                mtime: SystemTime::now(),
                readers: HashMap::new(),
            }),
        })
    }

    /// Append `bytes` (typically one line ending in '\n') and answer parked reads.
    /// How many open handles read this stream now.
    pub fn readers(&self) -> usize {
        self.lock().readers.len()
    }

    /// Never blocks on readers: replies to the kernel are non-blocking writes.
    pub fn publish(&self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut replies = Vec::new();
        {
            let mut g = self.lock();
            let g = &mut *g;
            g.chunks.push_back((g.end, bytes.to_vec()));
            g.end += bytes.len() as u64;
            g.mtime = SystemTime::now();
            while g.chunks.len() > 1 && (g.end - g.start) as usize > g.backlog {
                let (_, c) = g.chunks.pop_front().expect("non-empty");
                g.start += c.len() as u64;
            }
            for r in g.readers.values_mut() {
                while let Some(p) = r.parked.front() {
                    let Some(data) = serve(&g.chunks, g.start, g.end, r, p.offset, p.size) else {
                        break;
                    };
                    let p = r.parked.pop_front().expect("front exists");
                    replies.push((p.reply, data));
                }
            }
        }
        for (reply, data) in replies {
            reply.data(&data);
        }
    }

    /// Bytes published so far (reported as the stream file's st_size).
    pub(crate) fn published(&self) -> u64 {
        self.lock().end
    }

    pub(crate) fn mtime(&self) -> SystemTime {
        self.lock().mtime
    }

    /// A new reader `key`, its cursor at the start of the current backlog.
    pub(crate) fn attach(&self, key: u64) {
        let mut g = self.lock();
        let start = g.start;
        g.readers.insert(
            key,
            Reader {
                cursor: start,
                next_off: 0,
                parked: VecDeque::new(),
            },
        );
    }

    /// Forget reader `key`; its parked reads (if any) get end-of-file.
    /// Later reads on `key` get end-of-file at once.
    pub(crate) fn detach(&self, key: u64) {
        let parked = self.lock().readers.remove(&key).map(|r| r.parked);
        for p in parked.into_iter().flatten() {
            p.reply.data(&[]);
        }
    }

    /// Serve a read now if bytes are available, else park `reply` until `publish()`
    /// (or fail with EAGAIN for a non-blocking read).
    pub(crate) fn read(&self, key: u64, req: ReadReq, reply: ReplyData) {
        let mut g = self.lock();
        let g = &mut *g;
        let Some(r) = g.readers.get_mut(&key) else {
            return reply.data(&[]);
        };
        if req.size == 0 {
            return reply.data(&[]);
        }
        if r.parked.is_empty() {
            if let Some(data) = serve(&g.chunks, g.start, g.end, r, req.offset, req.size) {
                return reply.data(&data);
            }
        }
        if req.nonblock {
            return reply.error(fuser::Errno::EAGAIN);
        }
        r.parked.push_back(Parked {
            unique: req.unique,
            pid: req.pid,
            offset: req.offset,
            size: req.size,
            reply,
        });
    }

    /// The reads of reader `key` that are parked.
    pub(crate) fn parked(&self, key: u64) -> Vec<ParkedInfo> {
        let g = self.lock();
        g.readers
            .get(&key)
            .map(|r| {
                r.parked
                    .iter()
                    .map(|p| ParkedInfo {
                        unique: p.unique,
                        pid: p.pid,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Fail the parked read `unique` of reader `key` with `err`.
    pub(crate) fn cancel(&self, key: u64, unique: u64, err: fuser::Errno) {
        let p = {
            let mut g = self.lock();
            g.readers.get_mut(&key).and_then(|r| {
                let i = r.parked.iter().position(|p| p.unique == unique)?;
                r.parked.remove(i)
            })
        };
        if let Some(p) = p {
            p.reply.error(err);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Bytes for a read of `size` at file `offset` by reader `r`, advancing it; None if the
/// reader is at the end. A sequential read (offset == next_off) continues at the cursor;
/// any other offset is a seek to that absolute position. A cursor before the backlog
/// skips to its start.
fn serve(
    chunks: &VecDeque<(u64, Vec<u8>)>,
    start: u64,
    end: u64,
    r: &mut Reader,
    offset: u64,
    size: u32,
) -> Option<Vec<u8>> {
    if offset != r.next_off {
        r.cursor = offset.min(end);
    }
    r.cursor = r.cursor.max(start);
    if r.cursor >= end {
        return None;
    }
    let want = (size as u64).min(end - r.cursor) as usize;
    let mut out = Vec::with_capacity(want);
    let mut i = chunks.partition_point(|(s, _)| *s <= r.cursor) - 1;
    while out.len() < want {
        let (s, c) = &chunks[i];
        let from = (r.cursor + out.len() as u64 - s) as usize;
        let n = (c.len() - from).min(want - out.len());
        out.extend_from_slice(&c[from..from + n]);
        i += 1;
    }
    r.cursor += want as u64;
    r.next_off = offset + want as u64;
    Some(out)
}
