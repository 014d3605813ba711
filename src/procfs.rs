//! What the policy side reads from /proc about traced processes.

/// A thread's effective uid, from /proc/TID/status (credentials are per
/// thread in the kernel: setuid without exec shows); u32::MAX when unreadable.
pub fn euid(tid: i32) -> u32 {
    status_field(tid, "Uid:")
        // real, effective, saved, fs: the effective one.
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(u32::MAX)
}

/// A process's parent (PPid in /proc/PID/status); None when gone.
pub fn parent(pid: i32) -> Option<i32> {
    status_field(pid, "PPid:")?.trim().parse().ok()
}

fn status_field(tid: i32, name: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim().to_string())
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

/// The inodes of a process's sockets (the `N` of `socket:[N]` among
/// /proc/PID/fd): what sock_diag names them by. Empty when unreadable.
pub fn socket_inodes(pid: i32) -> std::collections::HashSet<u64> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Default::default();
    };
    dir.flatten()
        .filter_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            let t = target.to_str()?;
            t.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let me = std::process::id() as i32;
        assert!(!comm(me).is_empty());
        // SAFETY: geteuid and getppid have no preconditions.
        assert_eq!(euid(me), unsafe { libc::geteuid() });
        assert_eq!(parent(me), Some(unsafe { libc::getppid() }));
        assert_ne!(netns(None), 0);
        assert_eq!(netns(Some(me)), netns(None));
    }

    #[test]
    fn finds_this_process_sockets() {
        use std::os::unix::fs::MetadataExt;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ino = std::fs::metadata(format!("/proc/self/fd/{}", {
            use std::os::fd::AsRawFd;
            l.as_raw_fd()
        }))
        .unwrap()
        .ino();
        assert!(socket_inodes(std::process::id() as i32).contains(&ino));
        assert!(socket_inodes(-1).is_empty());
    }
}
