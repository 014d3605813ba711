//! What the policy side reads from /proc about traced processes.

/// Who a thread is, for app= and uid= rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub comm: String,
    /// The effective uid (u32::MAX when unreadable).
    pub uid: u32,
}

/// A thread's name and effective uid, from one read of /proc/TID/status
/// (credentials are per thread in the kernel: setuid without exec shows).
pub fn identity(tid: i32) -> Identity {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    Identity {
        comm: field("Name:").unwrap_or_default().to_string(),
        // real, effective, saved, fs: match the effective uid.
        uid: field("Uid:")
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(u32::MAX),
    }
}

/// A thread's name (/proc/TID/comm), empty when gone.
pub fn comm(tid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{tid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_default()
}

/// The inode of a process's network namespace (None: this process); 0 if unknown.
pub fn netns(pid: Option<i32>) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let path = match pid {
        Some(p) => format!("/proc/{p}/ns/net"),
        None => "/proc/self/ns/net".to_string(),
    };
    std::fs::metadata(path).map_or(0, |m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id() as i32;
        let id = identity(me);
        assert_eq!(id.comm, comm(me));
        // SAFETY: geteuid has no preconditions.
        assert_eq!(id.uid, unsafe { libc::geteuid() });
        assert_ne!(netns(None), 0);
        assert_eq!(netns(Some(me)), netns(None));
    }
}
