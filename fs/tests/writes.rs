//! Writes: one write(2) = one Provider::write, errors, size limit, refused targets.
mod common;

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use common::*;

fn ctl(data: &str) -> (String, Vec<u8>) {
    ("ctl".to_string(), data.as_bytes().to_vec())
}

#[test]
fn shell_truncate_and_append_both_write() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let p = f.p("ctl").display().to_string();
    let (ok, _, err) = sh(&format!("echo 'x' > {p}"), false);
    assert!(ok, "{err}");
    let (ok, _, err) = sh(&format!("echo y >> {p}"), false);
    assert!(ok, "{err}");
    assert_eq!(f.demo.writes(), vec![ctl("x\n"), ctl("y\n")]);
}

#[test]
fn each_write_call_is_one_provider_write() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(f.p("ctl"))
        .unwrap();
    file.write_all(b"first\n").unwrap();
    file.write_all(b"second\n").unwrap();
    drop(file);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(f.p("ctl"))
        .unwrap();
    file.write_all(b"third\n").unwrap();
    drop(file);
    assert_eq!(
        f.demo.writes(),
        vec![ctl("first\n"), ctl("second\n"), ctl("third\n")]
    );
}

#[test]
fn provider_error_fails_the_write() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let p = f.p("ctl").display().to_string();
    // dash's echo reports any write error as "I/O error"; bash names the errno.
    let (ok, _, err) = sh(&format!("echo bad > {p}"), false);
    assert!(!ok, "must exit non-zero");
    assert!(err.contains("error"), "{err}");
    let (ok, _, err) = sh(&format!("bash -c 'echo bad > {p}'"), false);
    assert!(!ok, "must exit non-zero");
    assert!(err.contains("Invalid argument"), "{err}");
    let e = std::fs::write(&p, "bad\n").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    assert!(f.demo.writes().is_empty());
}

/// Write `len` bytes in one write(2) from a buffer starting `page_off` bytes into a page.
fn write_at_page_offset(
    path: &std::path::Path,
    len: usize,
    page_off: usize,
) -> std::io::Result<usize> {
    let buf = vec![b'z'; len + 8192];
    let skip = (page_off + 4096 - buf.as_ptr() as usize % 4096) % 4096;
    let data = &buf[skip..skip + len];
    assert_eq!(data.as_ptr() as usize % 4096, page_off);
    let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.write(data)
}

#[test]
fn write_size_limit_is_all_or_nothing() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let limit = controlfs::max_write_transaction();
    assert!(limit >= 128 * 1024, "limit {limit}");
    // Up to the limit, from any buffer alignment: one call with all the bytes.
    for off in [0, 4000] {
        assert_eq!(
            write_at_page_offset(&f.p("ctl"), limit, off).unwrap(),
            limit
        );
    }
    let w = f.demo.writes();
    assert_eq!(w.len(), 2);
    assert!(w.iter().all(|(_, d)| d.len() == limit));
    // Above it: EFBIG as a whole, the provider sees nothing.
    for (len, off) in [
        (limit + 1, 0),
        (limit + 1, 4000),
        (1 << 20, 0),
        (1 << 20, 16),
        (3 << 20, 100),
    ] {
        let e = write_at_page_offset(&f.p("ctl"), len, off).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EFBIG), "len {len} off {off}");
    }
    assert_eq!(f.demo.writes().len(), 2);
}

#[test]
fn writes_to_directories_and_bad_truncates_fail() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let e = std::fs::OpenOptions::new()
        .write(true)
        .open(f.p("apps"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EISDIR));
    let (ok, _, err) = sh(&format!("echo x > {}", f.p("apps").display()), false);
    assert!(!ok && err.contains("Is a directory"), "{err}");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(0)
        .open(f.p("ctl"))
        .unwrap();
    assert_eq!(
        file.set_len(5).unwrap_err().raw_os_error(),
        Some(libc::EINVAL)
    );
    file.set_len(0).unwrap();
    assert!(f.demo.writes().is_empty());
}

#[test]
fn gathered_writes_are_committed_by_their_writers_close() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let log = |f: &Fixture| f.demo.txn.lock().unwrap().clone();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(f.p("info"))
        .unwrap();
    file.write_all(b"one\n").unwrap();
    // Larger than one FUSE request: still accepted (split into parts).
    file.write_all(&vec![b'x'; 3 << 20]).unwrap();
    // A child that inherits the descriptor and drops it at exec (Rust opens
    // files close-on-exec) closes it too: that close commits nothing.
    let st = std::process::Command::new("true").status().unwrap();
    assert!(st.success());
    assert!(
        !log(&f).iter().any(|l| l.starts_with("commit")),
        "no commit before the writer's close"
    );
    // The writer's close commits, before close(2) returns.
    drop(file);
    let l = log(&f);
    let id = l[0].split_whitespace().nth(1).unwrap().to_string();
    assert_eq!(l[0], format!("part {id} one\n"));
    let parts: usize = l
        .iter()
        .filter_map(|x| x.strip_prefix(&format!("part {id} ")))
        .map(str::len)
        .sum();
    assert_eq!(parts, 4 + (3 << 20));
    // Committed once, after every part, by the time close returned (the
    // release may already follow it).
    let pos = |what: &str| l.iter().position(|x| *x == format!("{what} {id}"));
    let last_part = l.iter().rposition(|x| x.starts_with("part")).unwrap();
    assert!(
        pos("commit").is_some_and(|c| c > last_part),
        "{:?}",
        &l[l.len() - 2..]
    );
    assert!(pos("release").is_none_or(|r| Some(r) > pos("commit")));
    // The last close (release) follows.
    assert!(eventually(std::time::Duration::from_secs(2), || log(&f)
        .contains(&format!("release {id}"))));
    // A refused part fails that write(2); a refused commit fails close(2).
    let p = f.p("info").display().to_string();
    let (ok, _, _) = sh(&format!("echo bad > {p}"), false);
    assert!(!ok);
    let (ok, out, err) = sh(
        &format!(
            "python3 -c \"import os\nf=os.open('{p}', os.O_WRONLY)\nos.write(f, b'nocommit')\n\
             try:\n  os.close(f); print('closed')\nexcept OSError as e: print(e.errno)\""
        ),
        false,
    );
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        libc::EIO.to_string(),
        "a failed commit fails the close"
    );
    // Opening for reading gathers nothing.
    let before = log(&f).len();
    let _ = std::fs::read_to_string(f.p("info")).unwrap();
    assert_eq!(log(&f).len(), before);
}
