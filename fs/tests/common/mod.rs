//! Demo provider and mount fixture shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use controlfs::{Attr, Errno, Kind, MountOptions, Mounted, Provider, StreamHub};

pub const NOBODY: u32 = 65534;

/// A small tree:
///   info (0644, fixed text)   secret (0600)   ro (0444)   ctl (0644, writes logged;
///   "bad\n" refused with EINVAL)   gen (0644, "<generation>\n" x 50_000)
///   log (0644 stream)   apps/ (0755) with apps/<id>/info for each id in `apps`
///   Writes to `info` are gathered per open file: logged in `txn` as
///   "part OPEN DATA", "commit OPEN" (a close by its first writer, or
///   fsync), "release OPEN" (the last close) ("bad" in a part: EINVAL; a
///   commit after "nocommit": EIO).
pub struct Demo {
    pub hub: Arc<StreamHub>,
    pub writes: Mutex<Vec<(String, Vec<u8>)>>,
    pub reads: AtomicUsize,
    pub generation: AtomicU64,
    pub apps: Mutex<BTreeSet<u32>>,
    pub txn: Mutex<Vec<String>>,
}

impl Demo {
    pub fn new(backlog: usize) -> Arc<Demo> {
        Arc::new(Demo {
            hub: StreamHub::new(backlog),
            writes: Mutex::new(Vec::new()),
            reads: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            apps: Mutex::new([1, 2].into()),
            txn: Mutex::new(Vec::new()),
        })
    }

    pub fn writes(&self) -> Vec<(String, Vec<u8>)> {
        self.writes.lock().unwrap().clone()
    }
}

fn attr(kind: Kind, perm: u16) -> Option<Attr> {
    Some(Attr {
        kind,
        perm,
        uid: 0,
        gid: 0,
    })
}

impl Provider for Demo {
    fn attr(&self, path: &str) -> Option<Attr> {
        match path {
            "" | "apps" => attr(Kind::Dir, 0o755),
            "info" | "ctl" | "gen" => attr(Kind::File, 0o644),
            "secret" => attr(Kind::File, 0o600),
            "ro" => attr(Kind::File, 0o444),
            "log" => attr(Kind::Stream, 0o644),
            p => {
                let rest = p.strip_prefix("apps/")?;
                let (id, file) = match rest.split_once('/') {
                    Some((id, f)) => (id, Some(f)),
                    None => (rest, None),
                };
                let id: u32 = id.parse().ok()?;
                if !self.apps.lock().unwrap().contains(&id) {
                    return None;
                }
                match file {
                    None => attr(Kind::Dir, 0o755),
                    Some("info") => attr(Kind::File, 0o644),
                    Some(_) => None,
                }
            }
        }
    }

    fn list(&self, path: &str) -> Vec<String> {
        match path {
            "" => ["info", "secret", "ro", "ctl", "gen", "log", "apps"]
                .map(String::from)
                .to_vec(),
            "apps" => self
                .apps
                .lock()
                .unwrap()
                .iter()
                .map(|i| i.to_string())
                .collect(),
            _ if path.starts_with("apps/") => vec!["info".into()],
            _ => vec![],
        }
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, Errno> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(match path {
            "info" => b"hello from controlfs\n".to_vec(),
            "secret" => b"s3cret\n".to_vec(),
            "ro" => b"read only\n".to_vec(),
            "ctl" => b"ctl\n".to_vec(),
            "gen" => format!("{}\n", self.generation.load(Ordering::SeqCst))
                .repeat(50_000)
                .into_bytes(),
            p => format!("app {p}\n").into_bytes(),
        })
    }

    fn write(&self, path: &str, data: &[u8]) -> Result<(), Errno> {
        if data == b"bad\n" {
            return Err(Errno::EINVAL);
        }
        self.writes
            .lock()
            .unwrap()
            .push((path.to_string(), data.to_vec()));
        Ok(())
    }

    fn stream(&self, path: &str) -> Option<Arc<StreamHub>> {
        (path == "log").then(|| self.hub.clone())
    }

    fn gathers(&self, path: &str) -> bool {
        path == "info"
    }

    fn write_part(&self, _path: &str, open: u64, data: &[u8]) -> Result<(), Errno> {
        let text = String::from_utf8_lossy(data).into_owned();
        if text.contains("bad") {
            return Err(Errno::EINVAL);
        }
        self.txn.lock().unwrap().push(format!("part {open} {text}"));
        Ok(())
    }

    fn commit(&self, _path: &str, open: u64, last: bool) -> Result<(), Errno> {
        let mut t = self.txn.lock().unwrap();
        let fail = t
            .iter()
            .any(|l| l.starts_with(&format!("part {open} nocommit")));
        t.push(format!(
            "{} {open}",
            if last { "release" } else { "commit" }
        ));
        if fail && !last {
            Err(Errno::EIO)
        } else {
            Ok(())
        }
    }
}

/// A mount of a Demo under a fresh temp dir (traversable by everyone); unmounted on drop,
/// before the temp dir goes.
pub struct Fixture {
    pub m: Option<Mounted>,
    pub demo: Arc<Demo>,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

/// Whether these tests can run here (root and /dev/fuse).
pub fn can_mount() -> bool {
    // SAFETY: geteuid has no preconditions.
    let ok = unsafe { libc::geteuid() } == 0 && Path::new("/dev/fuse").exists();
    if !ok {
        eprintln!("skipped: needs root and /dev/fuse");
    }
    ok
}

impl Fixture {
    pub fn new() -> Fixture {
        Self::with(Demo::new(64 * 1024), true)
    }

    pub fn with(demo: Arc<Demo>, allow_other: bool) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let dir = tmp.path().join("mnt");
        let opts = MountOptions {
            allow_other,
            fsname: "controlfs-test".into(),
        };
        let m = controlfs::mount(demo.clone(), &dir, opts).expect("mount");
        let dir = m.dir().to_path_buf();
        Fixture {
            m: Some(m),
            demo,
            dir,
            _tmp: tmp,
        }
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(m) = self.m.take() {
            let r = m.unmount();
            if !std::thread::panicking() {
                r.expect("unmount");
            }
        }
    }
}

/// `sh -c script` (optionally as nobody): (exit ok, stdout, stderr).
pub fn sh(script: &str, as_nobody: bool) -> (bool, String, String) {
    let mut c = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    };
    let out = c.stdin(Stdio::null()).output().expect("run sh");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A child process, killed on drop, whose stdout lines arrive on a channel.
pub struct Kid {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Kid {
    pub fn spawn(cmd: &mut Command) -> Kid {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let out: ChildStdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Kid { child, lines }
    }

    pub fn line(&self, within: Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    /// Exit status if the child ends within `within`.
    pub fn wait_for(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let t = Instant::now();
        while t.elapsed() < within {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `f` until it is true or `within` passes.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    loop {
        if f() {
            return true;
        }
        if t.elapsed() > within {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
