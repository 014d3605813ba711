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
