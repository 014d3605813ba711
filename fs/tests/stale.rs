//! detach_stale: a mount left dead by a crashed process, and a live mount of ours.
mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use controlfs::MountOptions;
use nix::sys::signal::Signal;

const CHILD_ENV: &str = "CONTROLFS_TEST_CHILD_MOUNT";

fn opts() -> MountOptions {
    MountOptions {
        allow_other: false,
        fsname: "controlfs-test".into(),
    }
}

fn listed(dir: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    mounts
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(dir.to_str().unwrap()))
}

/// Not a test of its own: when CHILD_ENV names a dir, mount there, say "ready" and wait
/// to be killed. Run by `crash_leaves_dead_mount_that_detach_stale_clears`.
#[test]
fn child_mount_helper() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let _m = controlfs::mount(Demo::new(1024), Path::new(&dir), opts()).unwrap();
    println!("ready");
    std::thread::sleep(Duration::from_secs(30));
}

#[test]
fn crash_leaves_dead_mount_that_detach_stale_clears() {
    if !can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnt");
    let mut kid = Kid::spawn(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "child_mount_helper",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir),
    );
    // Whatever happens below, leave no mount behind.
    struct Cleanup<'a>(&'a Path);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            let _ = controlfs::detach_stale(self.0);
        }
    }
    let _cleanup = Cleanup(&dir);
    let ready =
        std::iter::from_fn(|| kid.line(Duration::from_secs(10))).any(|l| l.ends_with("ready"));
    assert!(ready, "child mounted");
    assert!(std::fs::read(dir.join("info")).is_ok());
    kid.signal(Signal::SIGKILL);
    kid.wait_for(Duration::from_secs(5)).expect("child dies");

    let e = std::fs::metadata(&dir).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "dead mount");
    assert!(controlfs::detach_stale(&dir).unwrap());
    assert!(std::fs::metadata(&dir).unwrap().is_dir());
    assert!(!listed(&dir));
    assert!(!controlfs::detach_stale(&dir).unwrap(), "nothing left");

    // The directory takes a new mount.
    let m = controlfs::mount(Demo::new(1024), &dir, opts()).unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("info")).unwrap(),
        "hello from controlfs\n"
    );
    m.unmount().unwrap();
    assert!(!listed(&dir));
}

#[test]
fn detach_stale_detaches_a_live_mount_of_ours() {
    if !can_mount() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mnt");
    let demo: Arc<Demo> = Demo::new(1024);
    let m = controlfs::mount(demo, &dir, opts()).unwrap();
    assert!(listed(&dir));
    assert!(controlfs::detach_stale(&dir).unwrap());
    assert!(!listed(&dir));
    assert!(std::fs::read(dir.join("info")).is_err());
    m.unmount().unwrap(); // nothing left to unmount; the session ends
}

#[test]
fn detach_stale_leaves_other_dirs_alone() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(!controlfs::detach_stale(tmp.path()).unwrap());
    assert!(!controlfs::detach_stale(&tmp.path().join("missing")).unwrap());
    assert!(tmp.path().is_dir());
}
