//! Where the supervisor is woken: on the trapping thread's CPU, or where
//! the scheduler likes.
//!
//! SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6) runs the supervisor on
//! the CPU of the thread that trapped, which sleeps meanwhile: the two take
//! turns like one thread, and a round trip costs two switches on one CPU
//! instead of two cross-CPU wake-ups. That is right while one thread makes
//! the trapped calls. When several make them at once (a client of many
//! processes or threads connecting in parallel), the one supervisor thread
//! is pulled to each trapping CPU in turn and the trapped threads queue for
//! it there; woken the ordinary way, it runs where a CPU is free and the
//! program's other threads go on beside it.
//!
//! Measured (docs/PERFORMANCE.md, issue 11; 9 interleaved rounds, HTTP
//! without keep-alive through a VIP to nginx): ab, one thread making two
//! trapped connects per request, 0.55x untraced with the synchronous
//! wake-up and 0.36x without; http_client, 4 processes, 0.54x with it and
//! 0.62x without. So the mode follows the program: a window of
//! notifications all from one thread keeps (or, after a few such windows,
//! brings back) the synchronous wake-up; a window from several threads
//! drops it. SET_FLAGS may be called at any time.

/// Notifications per look.
const WINDOW: u32 = 16;
/// Windows from one thread in a row before the synchronous wake-up comes
/// back (one window from several threads is enough to leave it).
const CALM: u32 = 4;

pub(crate) struct WakeMode {
    /// The thread of the window's first notification, and whether another
    /// thread's came since.
    first: i32,
    mixed: bool,
    seen: u32,
    /// Windows from one thread in a row.
    calm: u32,
    /// The mode the listener is in.
    sync: bool,
}

impl WakeMode {
    /// The listener starts in the synchronous mode.
    pub(crate) fn new() -> WakeMode {
        WakeMode {
            first: 0,
            mixed: false,
            seen: 0,
            calm: 0,
            sync: true,
        }
    }

    /// A notification from thread `tid` was received: the mode to set on
    /// the listener now, if it changes (`set` says whether it could be).
    pub(crate) fn note(&mut self, tid: i32) -> Option<bool> {
        if self.seen == 0 {
            self.first = tid;
        } else if tid != self.first {
            self.mixed = true;
        }
        self.seen += 1;
        if self.seen < WINDOW {
            return None;
        }
        self.calm = if self.mixed { 0 } else { self.calm + 1 };
        (self.seen, self.mixed) = (0, false);
        let want = if self.sync {
            self.calm > 0
        } else {
            self.calm >= CALM
        };
        (want != self.sync).then_some(want)
    }

    /// The listener is now in mode `sync`.
    pub(crate) fn set(&mut self, sync: bool) {
        self.sync = sync;
    }

    /// [`WakeMode::note`], and the listener set to the mode it names.
    pub(crate) fn follow(&mut self, tid: i32, listener: &super::notif::Listener) {
        if let Some(sync) = self.note(tid) {
            if listener.set_sync_wake_up(sync).is_ok() {
                self.set(sync);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(w: &mut WakeMode, tids: impl IntoIterator<Item = i32>) -> Vec<bool> {
        let mut changes = Vec::new();
        for t in tids {
            if let Some(s) = w.note(t) {
                w.set(s);
                changes.push(s);
            }
        }
        changes
    }

    #[test]
    fn one_thread_stays_synchronous() {
        let mut w = WakeMode::new();
        assert!(feed(&mut w, std::iter::repeat_n(7, 1000)).is_empty());
    }

    #[test]
    fn several_threads_leave_it_and_one_brings_it_back_after_a_while() {
        let mut w = WakeMode::new();
        // Four processes taking turns: off within the first window.
        let mixed = (0..WINDOW as i32).map(|i| 100 + i % 4);
        assert_eq!(feed(&mut w, mixed), vec![false]);
        // One window from one thread is not enough to come back ...
        assert!(feed(&mut w, std::iter::repeat_n(7, WINDOW as usize)).is_empty());
        // ... CALM in a row are.
        let calm = std::iter::repeat_n(7, (WINDOW * (CALM - 1)) as usize);
        assert_eq!(feed(&mut w, calm), vec![true]);
    }

    #[test]
    fn a_window_broken_by_another_thread_restarts_the_count() {
        let mut w = WakeMode::new();
        feed(&mut w, (0..WINDOW as i32).map(|i| i % 2));
        assert!(!w.sync);
        let mut tids: Vec<i32> = vec![7; (WINDOW * (CALM - 1)) as usize];
        tids.push(8);
        tids.extend(std::iter::repeat_n(7, (WINDOW - 1) as usize));
        assert!(
            feed(&mut w, tids).is_empty(),
            "still ordinary: the count started again"
        );
    }
}
