//! Directories: listing, stable inode numbers, entries that come and go.
mod common;

use std::os::unix::fs::MetadataExt;

use common::*;

fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn readdir_lists_provider_entries_with_dot_and_dotdot() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    assert_eq!(
        names(&f.dir),
        ["apps", "ctl", "gen", "info", "log", "ro", "secret"]
    );
    assert_eq!(names(&f.p("apps")), ["1", "2"]);
    assert_eq!(names(&f.p("apps/1")), ["info"]);
    let (ok, out, _) = sh(&format!("ls -a {}", f.p("apps").display()), false);
    assert!(ok);
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        [".", "..", "1", "2"]
    );
    // readdir's inode numbers are the ones stat reports.
    for e in std::fs::read_dir(f.p("apps")).unwrap() {
        let e = e.unwrap();
        use std::os::unix::fs::DirEntryExt;
        assert_eq!(e.ino(), std::fs::metadata(e.path()).unwrap().ino());
    }
    assert_eq!(
        std::fs::read_to_string(f.p("apps/2/info")).unwrap(),
        "app apps/2/info\n"
    );
    assert!(std::fs::metadata(f.p("apps/2")).unwrap().is_dir());
}

#[test]
fn inodes_are_stable_and_gone_entries_give_enoent() {
    if !can_mount() {
        return;
    }
    let f = Fixture::new();
    let ino = std::fs::metadata(f.p("apps/1/info")).unwrap().ino();
    assert_eq!(std::fs::metadata(f.p("apps/1/info")).unwrap().ino(), ino);
    assert_ne!(std::fs::metadata(f.p("apps/2/info")).unwrap().ino(), ino);
    assert_eq!(std::fs::metadata(&f.dir).unwrap().ino(), 1);

    f.demo.apps.lock().unwrap().remove(&1);
    let e = std::fs::metadata(f.p("apps/1/info")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    assert_eq!(
        std::fs::metadata(f.p("apps/1")).unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
    assert_eq!(names(&f.p("apps")), ["2"]);

    f.demo.apps.lock().unwrap().insert(1);
    assert_eq!(std::fs::metadata(f.p("apps/1/info")).unwrap().ino(), ino);
    f.demo.apps.lock().unwrap().insert(3);
    assert_eq!(names(&f.p("apps")), ["1", "2", "3"]);
    assert_eq!(
        std::fs::metadata(f.p("nope")).unwrap_err().raw_os_error(),
        Some(libc::ENOENT)
    );
    // A file is not a directory.
    assert_eq!(
        std::fs::metadata(f.p("info/x")).unwrap_err().raw_os_error(),
        Some(libc::ENOTDIR)
    );
}
