//! Reading generated files, permissions, refused mutations.
mod common;

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;

use common::*;

#[test]
fn cat_reads_rendered_content_and_size_is_zero() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    assert_eq!(
        std::fs::read_to_string(f.p("info")).unwrap(),
        "hello from controlfs\n"
    );
    let md = std::fs::metadata(f.p("info")).unwrap();
    assert!(md.is_file());
    assert_eq!(md.len(), 0);
    assert_eq!(md.mode() & 0o7777, 0o644);
    let (ok, out, _) = sh(&format!("cat {}", f.p("info").display()), false);
    assert!(ok);
    assert_eq!(out, "hello from controlfs\n");
    assert!(std::fs::metadata(&f.dir).unwrap().is_dir());
}

#[test]
fn one_open_is_one_snapshot() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let before = f.demo.reads.load(Ordering::SeqCst);
    let mut file = std::fs::File::open(f.p("gen")).unwrap();
    assert_eq!(f.demo.reads.load(Ordering::SeqCst), before + 1);
    let mut first = vec![0u8; 4096];
    file.read_exact(&mut first).unwrap();
    // The content changes while the file is open: this reader must not see it.
    f.demo.generation.store(7, Ordering::SeqCst);
    let mut rest = Vec::new();
    file.read_to_end(&mut rest).unwrap();
    first.extend_from_slice(&rest);
    assert_eq!(first, "0\n".repeat(50_000).into_bytes());
    assert_eq!(
        f.demo.reads.load(Ordering::SeqCst),
        before + 1,
        "one render per open"
    );
    // A new open renders again.
    let again = std::fs::read(f.p("gen")).unwrap();
    assert_eq!(again, "7\n".repeat(50_000).into_bytes());
}

#[test]
fn kernel_checks_modes_for_other_users() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let info = f.p("info").display().to_string();
    let secret = f.p("secret").display().to_string();
    // allow_other: nobody sees the mount and can read a 0644 file ...
    let (ok, out, _) = sh(&format!("cat {info}"), true);
    assert!(ok);
    assert_eq!(out, "hello from controlfs\n");
    // ... but not write it (root-owned 0644), nor read a 0600 file.
    let (ok, _, err) = sh(&format!("echo x > {info}"), true);
    assert!(!ok);
    assert!(err.contains("Permission denied"), "{err}");
    let (ok, _, err) = sh(&format!("cat {secret}"), true);
    assert!(!ok);
    assert!(err.contains("Permission denied"), "{err}");
    assert!(f.demo.writes().is_empty());
    // root reads the 0600 file.
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "s3cret\n");
}

#[test]
fn without_allow_other_other_users_see_nothing() {
    if !can_mount() {
        return;
    }
    let f = Fixture::with(Demo::new(1024), false);
    let (ok, _, err) = sh(&format!("cat {}", f.p("info").display()), true);
    assert!(!ok);
    assert!(err.contains("Permission denied"), "{err}");
    assert!(std::fs::read(f.p("info")).is_ok());
}

#[test]
fn no_write_bit_means_no_write_even_for_root() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let e = std::fs::OpenOptions::new()
        .write(true)
        .open(f.p("ro"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EACCES));
    assert_eq!(std::fs::read_to_string(f.p("ro")).unwrap(), "read only\n");
}

#[test]
fn tree_cannot_be_changed() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let eperm = Some(libc::EPERM);
    let e = std::fs::File::create(f.p("new")).unwrap_err();
    assert_eq!(e.raw_os_error(), eperm);
    assert_eq!(
        std::fs::create_dir(f.p("d")).unwrap_err().raw_os_error(),
        eperm
    );
    assert_eq!(
        std::fs::remove_file(f.p("info"))
            .unwrap_err()
            .raw_os_error(),
        eperm
    );
    assert_eq!(
        std::fs::remove_dir(f.p("apps")).unwrap_err().raw_os_error(),
        eperm
    );
    let e = std::fs::rename(f.p("info"), f.p("info2")).unwrap_err();
    assert_eq!(e.raw_os_error(), eperm);
    let e = std::os::unix::fs::symlink("info", f.p("l")).unwrap_err();
    assert_eq!(e.raw_os_error(), eperm);
    use std::os::unix::fs::PermissionsExt;
    let e = std::fs::set_permissions(f.p("info"), std::fs::Permissions::from_mode(0o666));
    assert_eq!(e.unwrap_err().raw_os_error(), eperm);
    let (ok, _, err) = sh(&format!("echo x > {}", f.p("new").display()), false);
    assert!(!ok && err.contains("not permitted"), "{err}");
}

#[test]
fn mount_is_listed_with_type_and_name() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(f.dir.to_str().unwrap()))
        .expect("mount listed");
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields[0], "controlfs-test");
    assert_eq!(fields[2], "fuse.controlfs");
    for opt in [
        "nosuid",
        "nodev",
        "noexec",
        "default_permissions",
        "allow_other",
    ] {
        assert!(fields[3].split(',').any(|o| o == opt), "{opt} in {line}");
    }
}
