//! Stream files: backlog then live lines, blocking without blocking the fs, killed
//! readers, tail -f, O_NONBLOCK, backlog bound, unmount with a waiting reader.
mod common;

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const WAIT: Duration = Duration::from_secs(3);

fn cat(f: &Fixture) -> Kid {
    Kid::spawn(Command::new("cat").arg(f.p("log")))
}

#[test]
fn cat_prints_backlog_then_new_lines_and_fs_stays_usable() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    f.demo.hub.publish(b"one\n");
    f.demo.hub.publish(b"two\n");
    let kid = cat(&f);
    assert_eq!(kid.line(WAIT).as_deref(), Some("one"));
    assert_eq!(kid.line(WAIT).as_deref(), Some("two"));
    // cat is now waiting in read(): other files still work.
    assert!(kid.line(Duration::from_millis(200)).is_none());
    assert_eq!(
        std::fs::read_to_string(f.p("info")).unwrap(),
        "hello from controlfs\n"
    );
    assert_eq!(std::fs::read_dir(&f.dir).unwrap().count(), 7);
    f.demo.hub.publish(b"three\n");
    assert_eq!(kid.line(WAIT).as_deref(), Some("three"));
    // A second reader starts at the backlog.
    let kid2 = cat(&f);
    for want in ["one", "two", "three"] {
        assert_eq!(kid2.line(WAIT).as_deref(), Some(want));
    }
    f.demo.hub.publish(b"four\n");
    assert_eq!(kid.line(WAIT).as_deref(), Some("four"));
    assert_eq!(kid2.line(WAIT).as_deref(), Some("four"));
    // st_size is the number of bytes published.
    assert_eq!(std::fs::metadata(f.p("log")).unwrap().len(), 19);
}

#[test]
fn timeout_cat_terminates() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    f.demo.hub.publish(b"line\n");
    let t = Instant::now();
    let out = Command::new("timeout")
        .arg("1")
        .arg("cat")
        .arg(f.p("log"))
        .output()
        .unwrap();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(124));
    assert_eq!(out.stdout, b"line\n");
}

fn killed_reader_does_not_wedge(sig: Signal) {
    let f = Fixture::new();
    f.demo.hub.publish(b"a\n");
    let mut kid = cat(&f);
    assert_eq!(kid.line(WAIT).as_deref(), Some("a"));
    std::thread::sleep(Duration::from_millis(100)); // let it park
    kid.signal(sig);
    let st = kid
        .wait_for(WAIT)
        .expect("reader must die without a publish");
    assert!(!st.success());
    // The filesystem and the stream still work.
    assert_eq!(
        std::fs::read_to_string(f.p("info")).unwrap(),
        "hello from controlfs\n"
    );
    let kid2 = cat(&f);
    assert_eq!(kid2.line(WAIT).as_deref(), Some("a"));
    f.demo.hub.publish(b"b\n");
    assert_eq!(kid2.line(WAIT).as_deref(), Some("b"));
}

#[test]
fn reader_killed_with_sigkill_does_not_wedge() {
    if !can_mount() {
        return;
    }
    killed_reader_does_not_wedge(Signal::SIGKILL);
}

#[test]
fn reader_killed_with_sigint_does_not_wedge() {
    if !can_mount() {
        return;
    }
    killed_reader_does_not_wedge(Signal::SIGINT);
}

#[test]
fn tail_f_shows_backlog_tail_and_new_lines() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    for i in 0..15 {
        f.demo.hub.publish(format!("l{i}\n").as_bytes());
    }
    let kid = Kid::spawn(Command::new("tail").arg("-f").arg(f.p("log")));
    for i in 5..15 {
        assert_eq!(kid.line(WAIT), Some(format!("l{i}")));
    }
    f.demo.hub.publish(b"new\n");
    assert_eq!(kid.line(WAIT).as_deref(), Some("new"));
    f.demo.hub.publish(b"newer\n");
    assert_eq!(kid.line(WAIT).as_deref(), Some("newer"));
}

#[test]
fn nonblocking_read_gets_eagain() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    f.demo.hub.publish(b"x\n");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(f.p("log"))
        .unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(file.read(&mut buf).unwrap(), 2);
    let e = file.read(&mut buf).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
    f.demo.hub.publish(b"y\n");
    assert_eq!(file.read(&mut buf).unwrap(), 2);
    assert_eq!(&buf[..2], b"y\n");
}

#[test]
fn backlog_is_bounded_to_whole_chunks() {
    if !can_mount() {
        return;
    }
    let f = Fixture::with(Demo::new(100), true);
    for i in 0..100 {
        f.demo.hub.publish(format!("line {i:03}\n").as_bytes()); // 9 bytes each
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(f.p("log"))
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = file.read(&mut buf).unwrap();
    let want: String = (89..100).map(|i| format!("line {i:03}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&buf[..n]), want);
}

#[test]
fn unmount_ends_waiting_readers() {
    if !can_mount() {
        return;
    }
    let mut f = Fixture::new();
    f.demo.hub.publish(b"last\n");
    let mut kid = cat(&f);
    assert_eq!(kid.line(WAIT).as_deref(), Some("last"));
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    f.m.take().unwrap().unmount().unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let st = kid.wait_for(WAIT).expect("cat ends at unmount");
    assert!(st.success(), "cat got end-of-file: {st:?}");
}

#[test]
fn unmount_with_idle_open_stream_detaches() {
    if !can_mount() {
        return;
    }
    let mut f = Fixture::new();
    let file = std::fs::File::open(f.p("log")).unwrap();
    let t = Instant::now();
    f.m.take().unwrap().unmount().unwrap();
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(f.dir.to_str().unwrap()));
    drop(file);
}
