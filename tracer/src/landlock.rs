//! Programs that restrict their own TCP connects or binds with Landlock.
//!
//! A call the tracer carries out runs in the tracer's (unrestricted)
//! Landlock domain, not the program's, and the program's domain cannot be
//! queried. So a process that restricted itself with a ruleset that may
//! handle network access (and every process it starts from then on) gets
//! EACCES, Landlock's own errno, for every TCP connect and bind the tracer
//! would carry out: refused rather than widened (docs/RULES.md).
//!
//! Which ruleset a landlock_restrict_self uses is told by the file itself:
//! the tracer keeps its own copy of every ruleset a traced process creates
//! (at landlock_create_ruleset's exit, with the network access it handles,
//! read at entry) and compares the file the call names with them (kcmp).
//! A ruleset it did not see created (received over SCM_RIGHTS from an
//! untraced process, or past the bound below) counts as handling the network.

use std::collections::HashSet;
use std::os::fd::{AsRawFd, OwnedFd};

/// Whether `ruleset` handles LANDLOCK_ACCESS_NET_CONNECT_TCP.
fn handles_tcp_connect(ruleset: &OwnedFd) -> bool {
    const RULE_NET_PORT: libc::c_int = 2;
    const ACCESS_NET_CONNECT_TCP: u64 = 1 << 1;
    // struct landlock_net_port_attr { u64 allowed_access; u64 port; } (packed)
    let attr: [u64; 2] = [ACCESS_NET_CONNECT_TCP, 0];
    // SAFETY: plain syscall; attr is 16 readable bytes.
    unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            RULE_NET_PORT,
            attr.as_ptr(),
            0,
        ) == 0
    }
}

/// Rulesets the tracer keeps a copy of, at most.
const MAX_RULESETS: usize = 256;
/// landlock_create_ruleset's flag asking only for the ABI version.
const CREATE_RULESET_VERSION: u64 = 1;
const KCMP_FILE: libc::c_int = 0;

#[derive(Default)]
pub(crate) struct Landlock {
    /// Our copies of the rulesets traced processes created, and whether
    /// each handles network access.
    rulesets: Vec<(OwnedFd, bool)>,
    /// Processes restricted by a ruleset that may handle the network.
    restricted: HashSet<i32>,
    /// Whether any traced process ever was (see [`Landlock::orphan`]).
    ever: bool,
}

impl Landlock {
    /// landlock_create_ruleset(attr, size, flags) at its entry: whether the
    /// new ruleset handles network access (handled_access_net follows
    /// handled_access_fs; unreadable counts as yes). None: not a creation.
    pub(crate) fn creating(tid: i32, args: &[u64; 6]) -> Option<bool> {
        let (attr, size, flags) = (args[0], args[1], args[2]);
        if flags & CREATE_RULESET_VERSION != 0 {
            return None;
        }
        if attr == 0 || size < 16 {
            return Some(false);
        }
        Some(!matches!(crate::remote::read_u64(tid, attr + 8), Ok(0)))
    }

    /// The ruleset created (our copy of its descriptor). `net` is what the
    /// attribute said at entry; a sibling could have changed it before the
    /// kernel read it, so the ruleset itself is asked too: a rule letting
    /// TCP connect to port 0 (meaningless, so harmless) is accepted only by
    /// a ruleset that handles TCP connect.
    pub(crate) fn created(&mut self, ruleset: OwnedFd, net: bool) {
        let net = net || handles_tcp_connect(&ruleset);
        if self.rulesets.len() < MAX_RULESETS {
            self.rulesets.push((ruleset, net));
        }
    }

    /// landlock_restrict_self(fd, ...) by thread `tid` of `tgid`, at entry.
    pub(crate) fn restrict_self(&mut self, tgid: i32, tid: i32, fd: i32) {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        let known = self.rulesets.iter().find(|(ours, _)| {
            // SAFETY: plain syscall on integers.
            unsafe { libc::syscall(libc::SYS_kcmp, me, tid, KCMP_FILE, ours.as_raw_fd(), fd) == 0 }
        });
        if known.is_none_or(|(_, net)| *net) {
            self.restricted.insert(tgid);
            self.ever = true;
        }
    }

    /// A new process inherits its parent's domain.
    pub(crate) fn fork(&mut self, parent: i32, child: i32) {
        if self.restricted.contains(&parent) {
            self.restricted.insert(child);
        }
    }

    /// A process found with no known ancestor (user notification learns of
    /// forks late: its parent may have exited first). Its domain cannot be
    /// told, so once any traced process has restricted itself it counts as
    /// restricted: refused rather than widened.
    pub(crate) fn orphan(&mut self, child: i32) {
        if self.ever {
            self.restricted.insert(child);
        }
    }

    pub(crate) fn exited(&mut self, tgid: i32) {
        self.restricted.remove(&tgid);
    }

    pub(crate) fn restricted(&self, tgid: i32) -> bool {
        !self.restricted.is_empty() && self.restricted.contains(&tgid)
    }
}
