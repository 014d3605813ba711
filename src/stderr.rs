//! appswitch's own messages to stderr, which never block and never panic.
//!
//! Under `trace` stderr is usually the program's too, and it may be closed,
//! a full pipe nobody reads, or a pipe whose reader has gone. The tracer
//! thread must never wait on it (every traced process would freeze at its
//! next network call) and never die of it. So lines are queued (bounded)
//! and written by a thread of their own, one write(2) of at most PIPE_BUF
//! bytes per line (atomic on a pipe: never split by the program's own
//! output). A line that finds the queue full is dropped and counted; write
//! errors (EPIPE, EBADF, ...) drop the line. At exit we wait a bounded time
//! for the queue to drain.
//!
//! [`hold`] keeps lines in memory, with no writer thread, until
//! [`release`]: `attach` forks its supervisor, which must happen while the
//! process has one thread, after work that may log.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Lines held while stderr does not take them.
const QUEUE: usize = 4096;
/// At most this much per line (PIPE_BUF: a pipe write of this size is atomic).
const LINE_MAX: usize = libc::PIPE_BUF;

struct Shared {
    queue: Mutex<State>,
    /// Signalled when a line is queued, and when the queue becomes empty.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    lines: VecDeque<Vec<u8>>,
    /// The writer is in write(2) with a line it took off the queue.
    writing: bool,
}

static SHARED: OnceLock<Shared> = OnceLock::new();
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Lines held (see [`hold`]); checked before taking HELD.
static HOLDING: AtomicBool = AtomicBool::new(false);
static HELD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

fn shared() -> &'static Shared {
    SHARED.get_or_init(|| {
        let s = Shared {
            queue: Mutex::new(State::default()),
            changed: Condvar::new(),
        };
        let started = std::thread::Builder::new()
            .name("stderr".into())
            .spawn(writer);
        if started.is_err() {
            // No writer: lines will be dropped (counted), never block.
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        s
    })
}

fn writer() {
    let s = shared();
    loop {
        let line = {
            let Ok(mut q) = s.queue.lock() else { return };
            loop {
                if let Some(l) = q.lines.pop_front() {
                    q.writing = true;
                    break l;
                }
                q.writing = false;
                s.changed.notify_all();
                q = match s.changed.wait(q) {
                    Ok(q) => q,
                    Err(_) => return,
                };
            }
        };
        write_line(&line);
    }
}

/// One write(2) of the whole line; EINTR retried, anything else drops it.
fn write_line(line: &[u8]) {
    loop {
        // SAFETY: writing from a live buffer to our own descriptor 2.
        let r = unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
        if r >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            if r < 0 {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
    }
}

/// `text` as one line of at most PIPE_BUF bytes, ending in a newline.
fn fit(text: &[u8]) -> Vec<u8> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    let mut l = Vec::with_capacity(text.len().min(LINE_MAX) + 1);
    if text.len() >= LINE_MAX {
        l.extend_from_slice(&text[..LINE_MAX - 4]);
        l.extend_from_slice(b"...");
    } else {
        l.extend_from_slice(text);
    }
    l.push(b'\n');
    l
}

/// Queue one line for stderr (a newline is added if missing; cut to PIPE_BUF).
/// Never blocks on stderr, never fails.
pub fn line(text: &[u8]) {
    let l = fit(text);
    if HOLDING.load(Ordering::Acquire) {
        if let Ok(mut held) = HELD.lock() {
            // Checked again under the lock: release() may have just run.
            if HOLDING.load(Ordering::Acquire) {
                if held.len() < QUEUE {
                    held.push(l);
                } else {
                    DROPPED.fetch_add(1, Ordering::Relaxed);
                }
                return;
            }
        }
    }
    queue(l);
}

/// Keep lines in memory from now on, without starting the writer thread,
/// until [`release`].
pub fn hold() {
    HOLDING.store(true, Ordering::Release);
}

/// Queue the held lines for stderr (starting the writer) and stop holding.
pub fn release() {
    let held = match HELD.lock() {
        Ok(mut h) => {
            HOLDING.store(false, Ordering::Release);
            std::mem::take(&mut *h)
        }
        Err(_) => {
            HOLDING.store(false, Ordering::Release);
            return;
        }
    };
    for l in held {
        queue(l);
    }
}

fn queue(l: Vec<u8>) {
    let s = shared();
    let Ok(mut q) = s.queue.lock() else {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if q.lines.len() >= QUEUE {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    q.lines.push_back(l);
    s.changed.notify_all();
}

/// `appswitch: MESSAGE` on stderr, as [`line`].
pub fn say(msg: impl std::fmt::Display) {
    line(format!("appswitch: {msg}").as_bytes());
}

/// Lines dropped so far (queue full, or stderr refused them).
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Before exiting: say how many lines were lost, then wait at most `limit`
/// for the queue to be written.
pub fn finish(limit: Duration) {
    let Some(s) = SHARED.get() else { return };
    let n = dropped();
    if n > 0 {
        say(format!(
            "{n} of its messages were dropped: stderr was closed, full or not read"
        ));
    }
    let end = Instant::now() + limit;
    let Ok(mut q) = s.queue.lock() else { return };
    while !q.lines.is_empty() || q.writing {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        q = match s.changed.wait_timeout(q, left) {
            Ok((q, _)) => q,
            Err(_) => return,
        };
    }
}

/// stderr as an `io::Write` for env_logger and `--events -`: each
/// `write` call queues what it is given as one line (env_logger and the
/// event sink hand over one whole line at a time).
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !buf.is_empty() {
            line(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_fit_in_one_atomic_pipe_write() {
        assert_eq!(fit(b"hi"), b"hi\n");
        assert_eq!(fit(b"hi\n"), b"hi\n");
        let cut = fit(&vec![b'x'; LINE_MAX * 2]);
        assert_eq!(cut.len(), LINE_MAX);
        assert!(cut.ends_with(b"...\n"));
        assert_eq!(fit(&vec![b'x'; LINE_MAX - 1]).len(), LINE_MAX);
    }

    #[test]
    fn held_lines_start_no_thread_until_released() {
        hold();
        line(b"held");
        assert_eq!(HELD.lock().unwrap().as_slice(), [b"held\n".to_vec()]);
        release();
        assert!(HELD.lock().unwrap().is_empty());
        assert!(!HOLDING.load(Ordering::Acquire));
    }
}
