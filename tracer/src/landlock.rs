//! Programs that restrict their own TCP connects or binds with Landlock.
//!
//! A call the tracer carries out runs in the tracer's (unrestricted)
//! Landlock domain, not the program's, and the program's domain cannot be
//! queried. So a process that created a ruleset handling network access and
//! then restricted itself (or descends from one) gets EACCES, Landlock's own
//! errno, for every TCP connect and bind the tracer would carry out: refused
//! rather than widened (docs/RULES.md). Filesystem-only rulesets change
//! nothing.

use crate::remote;
use std::collections::HashSet;

#[derive(Default)]
pub(crate) struct Landlock {
    /// Processes that created a ruleset handling network access.
    net_rulesets: HashSet<i32>,
    /// Processes restricted by such a ruleset.
    restricted: HashSet<i32>,
}

/// landlock_create_ruleset's flag asking only for the ABI version.
const CREATE_RULESET_VERSION: u64 = 1;

impl Landlock {
    /// landlock_create_ruleset(attr, size, flags) at its entry. The
    /// attribute is read as the kernel will (handled_access_net follows
    /// handled_access_fs); a ruleset that handles network access marks the
    /// process.
    pub(crate) fn create_ruleset(&mut self, tgid: i32, tid: i32, args: &[u64; 6]) {
        let (attr, size, flags) = (args[0], args[1], args[2]);
        if flags & CREATE_RULESET_VERSION != 0 || attr == 0 || size < 16 {
            return;
        }
        // Unreadable: the kernel will fail the call too; mark anyway, to err
        // on the side of the program's own restriction.
        let net = remote::read_u64(tid, attr + 8).unwrap_or(u64::MAX);
        if net != 0 {
            self.net_rulesets.insert(tgid);
        }
    }

    /// landlock_restrict_self at its entry.
    pub(crate) fn restrict_self(&mut self, tgid: i32) {
        if self.net_rulesets.contains(&tgid) {
            self.restricted.insert(tgid);
        }
    }

    /// A new process inherits its parent's domain (and rulesets).
    pub(crate) fn fork(&mut self, parent: i32, child: i32) {
        if self.net_rulesets.contains(&parent) {
            self.net_rulesets.insert(child);
        }
        if self.restricted.contains(&parent) {
            self.restricted.insert(child);
        }
    }

    pub(crate) fn exited(&mut self, tgid: i32) {
        self.net_rulesets.remove(&tgid);
        self.restricted.remove(&tgid);
    }

    pub(crate) fn restricted(&self, tgid: i32) -> bool {
        !self.restricted.is_empty() && self.restricted.contains(&tgid)
    }
}
