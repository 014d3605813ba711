//! Network namespaces a test creates (and deletes): every address in them,
//! virtual IPs included, exists only there.

use super::{appswitch, daemon_config, require, run, stop_daemon, wait_until, Proc};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A network namespace with only `lo` (up), deleted on drop.
pub struct Netns {
    pub name: String,
    file: std::fs::File,
}

impl Netns {
    pub fn new() -> Netns {
        static N: AtomicUsize = AtomicUsize::new(0);
        require("ip");
        let name = format!(
            "appsw-t{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let ok = |c: &mut Command| assert!(c.status().unwrap().success(), "{c:?}");
        ok(Command::new("ip").args(["netns", "add", &name]));
        ok(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]));
        let file = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
        Netns { name, file }
    }

    /// `prog` run inside the namespace (only the network namespace changes).
    pub fn cmd(&self, prog: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(prog);
        let fd = self.file.as_raw_fd();
        // SAFETY: setns is async-signal-safe; fd stays open until exec.
        unsafe {
            c.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

impl Netns {
    /// An untraced python3 server in the namespace on `ip`, port chosen by
    /// the kernel: it sends `banner` and a newline to each client. With its port.
    pub fn banner_server(&self, ip: &str, banner: &str) -> (Proc, u16) {
        let code = format!(
            "import socket\n\
             s=socket.socket(); s.bind(('{ip}',0)); s.listen(16)\n\
             print(s.getsockname()[1], flush=True)\n\
             while True:\n    c,_=s.accept(); c.sendall(b'{banner}\\n'); c.close()\n"
        );
        let mut p = Proc(
            self.cmd("python3")
                .args(["-c", &code])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let port = p.first_line().trim().parse().expect("the server's port");
        (p, port)
    }

    /// `ip -n NS ARGS...`, which must succeed.
    pub fn ip(&self, args: &[&str]) {
        let st = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "ip -n {} {}", self.name, args.join(" "));
    }
}

/// A namespace with a daemon in it.
pub struct Host {
    // Dropped in order: programs first (by the tests), then daemon, then namespace.
    pub daemon: Option<Proc>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub mnt: PathBuf,
    pub ns: Netns,
    /// Extra arguments of `appswitch daemon`.
    pub daemon_args: Vec<String>,
}

impl Host {
    /// A fresh namespace (only `lo`) with a daemon.
    pub fn start() -> Host {
        Host::new(Netns::new(), "", &[])
    }

    /// A daemon in `ns`, with `extra` appended to its config.
    pub fn new(ns: Netns, extra: &str, daemon_args: &[&str]) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let config = daemon_config(dir.path());
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(extra);
        std::fs::write(&config, text).unwrap();
        let mnt = dir.path().join("mnt");
        let mut h = Host {
            daemon: None,
            dir,
            config,
            mnt,
            ns,
            daemon_args: daemon_args.iter().map(|s| s.to_string()).collect(),
        };
        h.launch();
        h
    }

    /// Start the daemon and wait until it serves its mount and socket.
    pub fn launch(&mut self) {
        let log = match std::env::var_os("APPSWITCH_TEST_LOG") {
            Some(d) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(PathBuf::from(d).join(format!("daemon-{}.log", self.ns.name)))
                    .unwrap(),
            ),
            None => Stdio::null(),
        };
        self.daemon = Some(Proc(
            self.ns
                .cmd(appswitch())
                .args(["daemon", "--config"])
                .arg(&self.config)
                .args(&self.daemon_args)
                .env("RUST_LOG", "appswitch=debug")
                .stderr(log)
                .spawn()
                .unwrap(),
        ));
        let (ctl, sock) = (self.mnt.join("ctl"), self.dir.path().join("sock"));
        wait_until("the daemon", Duration::from_secs(10), || {
            std::fs::read_to_string(&ctl).is_ok_and(|s| s.contains("mode=")) && sock.exists()
        });
    }

    /// SIGKILL the daemon (its mount is left dead, as after a crash).
    pub fn kill9(&mut self) {
        if let Some(p) = self.daemon.take() {
            p.signal(libc::SIGKILL);
            drop(p);
        }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.mnt.join(name)
    }

    /// The backend lines of `vip` in `cat services`.
    pub fn backends(&self, vip: &str) -> Vec<String> {
        let s = self.services();
        let mut lines = s.lines().skip_while(|l| !l.contains(&format!(" {vip} ")));
        if lines.next().is_none() {
            return Vec::new();
        }
        lines
            .take_while(|l| l.starts_with("  backend"))
            .map(str::to_string)
            .collect()
    }

    pub fn services(&self) -> String {
        std::fs::read_to_string(self.mnt.join("services")).unwrap()
    }

    /// `appswitch trace [opts] -- prog args` in the namespace.
    pub fn trace(&self, opts: &[&str], prog: impl AsRef<Path>, args: &[&str]) -> Command {
        let mut c = self.ns.cmd(appswitch());
        c.arg("trace")
            .arg("--config")
            .arg(&self.config)
            .args(opts)
            .arg("--")
            .arg(prog.as_ref())
            .args(args);
        c
    }

    /// A traced `python3 -m http.server PORT` serving `body` as its index.
    pub fn web(&self, opts: &[&str], port: u16, body: &str) -> Proc {
        let root = self.dir.path().join(format!("www-{body}"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), body).unwrap();
        let mut c = self.trace(opts, "python3", &["-m", "http.server", &port.to_string()]);
        c.current_dir(&root)
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        Proc(c.spawn().unwrap())
    }

    /// Wait until `vip` has `n` backends that are up.
    pub fn wait_backends(&self, vip: &str, n: usize) {
        wait_until(
            &format!("{n} backends of {vip} in {}", self.services()),
            Duration::from_secs(10),
            || {
                self.backends(vip)
                    .iter()
                    .filter(|l| l.contains("health=up"))
                    .count()
                    == n
            },
        );
    }

    pub fn curl(&self, opts: &[&str], url: &str) -> Output {
        let curl = require("curl");
        run(&mut self.trace(opts, curl, &["-sS", "--max-time", "5", url]))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        stop_daemon(self.daemon.take(), &self.mnt);
    }
}

/// The pid of the traced program behind `trace` (its only child).
pub fn tracee(trace: &Proc) -> i32 {
    let s = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", trace.pid()))
        .unwrap_or_default();
    s.split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the traced program")
}

pub fn kill_program(trace: &mut Proc) {
    // SAFETY: signalling the program our test started.
    unsafe { libc::kill(tracee(trace), libc::SIGKILL) };
    assert_eq!(
        trace.wait_timeout(Duration::from_secs(10)),
        Some(128 + libc::SIGKILL),
        "the trace ends with its program"
    );
}
