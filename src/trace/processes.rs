//! The traced program's live processes (thread-group IDs), shared by the
//! handler that sees them come and go and the daemon link that may kill them.

use std::collections::HashSet;

/// The traced program's live processes, and whether it was told to die
/// (apps/ID/ctl: kill). A kill that arrives before the program has started,
/// or while it forks, still reaches every process: later ones die at birth.
#[derive(Debug, Default)]
pub struct Processes {
    pub live: HashSet<i32>,
    pub killed: bool,
}

impl Processes {
    /// Up to `n` live processes, oldest (lowest pid first, as a rule) first.
    pub fn oldest(&self, n: usize) -> Vec<i32> {
        let mut v: Vec<i32> = self.live.iter().copied().collect();
        v.sort_unstable();
        v.truncate(n);
        v
    }

    pub fn kill_all(&mut self) {
        self.killed = true;
        for &pid in &self.live {
            // SAFETY: signalling a traced process of ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}
