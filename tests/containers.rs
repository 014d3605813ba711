//! Containers (issue 16, docs/CONTAINERS.md): podman runs a container with
//! no network of its own (`--network none`) under `appswitch trace
//! --isolate`. The filter is inherited by podman, conmon, runc and the
//! container's processes; their sockets are in the container's empty
//! namespace, and whatever they reach outside goes through sockets that
//! appswitch makes in its own namespace and hands over.
//!
//! Like tests/services.rs, every test runs in a network namespace it creates
//! (only `lo`): the daemon, podman and the clients join it, so the VIPs
//! (10.1.0.x) exist nowhere else. The image is a static busybox imported
//! from a local root filesystem (no registry is reachable); it stays in
//! podman's store as localhost/appswitch-test-busybox:HASH (HASH: of the
//! busybox binary, about 2 MB; `podman rmi` removes it) so later runs skip
//! the import. Every container is started with `--rm` and a name of this
//! test run's, and removed by name (`podman rm -f`) when a test ends.
//!
//! The tests need root, podman, runc and a static busybox (scripts/setup.sh
//! installs them), and the user-notification backend (`--isolate`): where
//! one is missing, or where podman cannot start a container at all, each
//! test prints why on stderr and passes as skipped.

mod common;
use common::netns::Host;
use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The page busybox httpd serves from the image (/www/index.html).
const PAGE: &str = "hello from a container\n";

/// What podman needs here: the image, and the options of every `podman
/// run` (the runtime and cgroup manager are global options).
struct Podman {
    podman: PathBuf,
    image: String,
    /// `podman` options before `run`.
    global: Vec<String>,
    /// `run` options after the container's name.
    run: Vec<String>,
}

impl Podman {
    /// `podman [global] run --rm --name NAME [run] [extra] IMAGE ARGS...`.
    fn args(&self, name: &str, extra: &[&str], args: &[&str]) -> Vec<String> {
        let mut v = self.global.clone();
        v.extend(["run", "--rm", "--name", name].map(String::from));
        v.extend(self.run.iter().cloned());
        v.extend(extra.iter().map(|s| s.to_string()));
        v.push(self.image.clone());
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }
}

/// The reason a test is skipped, printed past the test harness's capture
/// (std::io::stderr is not captured, eprintln! is).
fn skipped(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "containers::{test}: SKIPPED: {why}");
}

/// Podman, ready, or why not (decided once per run).
fn podman(test: &str) -> Option<&'static Podman> {
    static READY: OnceLock<Result<Podman, String>> = OnceLock::new();
    match READY.get_or_init(prepare) {
        Ok(p) => Some(p),
        Err(why) => {
            skipped(test, why);
            None
        }
    }
}

fn in_path(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Whether `path` is an ELF executable without an interpreter (static):
/// the image has no libraries.
fn is_static(path: &Path) -> bool {
    let Ok(b) = std::fs::read(path) else {
        return false;
    };
    if b.len() < 64 || &b[..4] != b"\x7fELF" || b[4] != 2 || b[5] != 1 {
        return false; // ELF64 little-endian only
    }
    let u16at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
    let (size, n) = (u16at(0x36), u16at(0x38));
    (0..n).all(|i| {
        let o = phoff + i * size;
        // PT_INTERP = 3
        o + 4 <= b.len() && u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) != 3
    })
}

/// `podman ARGS` untraced, bounded; Ok(stdout) or Err(what it said).
fn podman_cmd(podman: &Path, args: &[&str]) -> Result<String, String> {
    let out = run(Command::new(podman).args(args));
    if out.status.success() {
        Ok(stdout(&out))
    } else {
        Err(format!(
            "`podman {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn prepare() -> Result<Podman, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root (podman's store and --isolate need root)".into());
    }
    if backend() != "unotify" {
        return Err(format!(
            "this pass's backend is {}: --isolate needs user notification \
             (the unotify pass runs these tests)",
            backend()
        ));
    }
    let podman = in_path("podman").ok_or("no podman in PATH (scripts/setup.sh installs it)")?;
    in_path("runc").ok_or("no runc in PATH (scripts/setup.sh installs it)")?;
    let busybox = in_path("busybox").ok_or("no busybox in PATH")?;
    if !is_static(&busybox) {
        return Err(format!(
            "{} is not static (install busybox-static)",
            busybox.display()
        ));
    }
    // The image: busybox and a page, imported once per busybox binary.
    let bin = std::fs::read(&busybox).map_err(|e| format!("{}: {e}", busybox.display()))?;
    let hash = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bin.hash(&mut h);
        PAGE.hash(&mut h);
        h.finish()
    };
    let image = format!("localhost/appswitch-test-busybox:{hash:016x}");
    if podman_cmd(&podman, &["image", "exists", &image]).is_err() {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let root = dir.path().join("rootfs");
        for d in ["bin", "etc", "tmp", "www"] {
            std::fs::create_dir_all(root.join(d)).map_err(|e| e.to_string())?;
        }
        std::fs::copy(&busybox, root.join("bin/busybox")).map_err(|e| e.to_string())?;
        std::fs::write(root.join("www/index.html"), PAGE).map_err(|e| e.to_string())?;
        let tar = dir.path().join("rootfs.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .map_err(|e| format!("tar: {e}"))?;
        if !st.success() {
            return Err(format!("tar failed: {st}"));
        }
        podman_cmd(&podman, &["import", tar.to_str().unwrap(), &image])
            .map_err(|e| format!("importing the image: {e}"))?;
    }
    // Podman's default limits (nofile 1048576, nproc 4194304) are above
    // the hard limits where root lacks CAP_SYS_RESOURCE (as in this
    // sandbox): runc cannot set them. 1024 open files and 4096 processes
    // (or our own hard limit, if lower) can always be set.
    let mut nproc = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a local.
    unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut nproc) };
    let nproc = nproc.rlim_max.min(4096);
    let p = Podman {
        podman,
        image,
        // crun refuses the hybrid cgroup layout of these machines; systemd
        // is not the cgroup manager here.
        global: ["--runtime", "runc", "--cgroup-manager=cgroupfs"]
            .map(String::from)
            .to_vec(),
        run: vec![
            "--pull".into(),
            "never".into(),
            "--network".into(),
            "none".into(),
            "--ulimit".into(),
            "nofile=1024:1024".into(),
            "--ulimit".into(),
            format!("nproc={nproc}:{nproc}"),
        ],
    };
    // Can podman run a container at all here (untraced)?
    let probe = {
        let name = container_name("probe");
        let _gone = Removed(&p, name.clone());
        let args = p.args(&name, &[], &["/bin/busybox", "true"]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        podman_cmd(&p.podman, &args)
    };
    probe.map_err(|e| format!("podman cannot run a container here: {e}"))?;
    Ok(p)
}

/// A container name of this test run's.
fn container_name(what: &str) -> String {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    format!(
        "appswitch-test-{}-{what}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Removes container NAME when dropped (`podman rm -f`, bounded), whatever
/// state the test left it in: declared after the trace that runs it, so it
/// goes first.
struct Removed<'a>(&'a Podman, String);

impl Drop for Removed<'_> {
    fn drop(&mut self) {
        let child = Command::new(&self.0.podman)
            .args(&self.0.global)
            .args(["rm", "--force", "--ignore", "--time", "0", &self.1])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Ok(c) = child {
            let mut p = Proc(c);
            if p.wait_timeout(Duration::from_secs(30)).is_none() {
                let _ = writeln!(std::io::stderr(), "podman rm {} timed out", self.1);
            }
        }
    }
}

/// A container server under appswitch (`trace --isolate --ip VIP --name
/// web -- podman run --network none ... busybox httpd`), reached by name
/// from a traced client in the host's (here: the test's) namespace.
#[test]
fn a_server_in_a_container_is_reached_by_name_from_the_host() {
    let Some(p) = podman("a_server_in_a_container_is_reached_by_name_from_the_host") else {
        return;
    };
    let h = Host::start();
    let name = container_name("srv");
    let args = p.args(
        &name,
        &[],
        &["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut srv = Proc(
        h.trace(
            &["--isolate", "--ip", "10.1.0.1", "--name", "web"],
            &p.podman,
            &args,
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap(),
    );
    let gone = Removed(p, name);
    // The container's listener, handed over: a backend of web's VIP. (Its
    // health stays unknown: the daemon takes the listener for one in the
    // container's namespace, which it cannot check.)
    wait_until(
        &format!("the container's listener in {}", h.services()),
        Duration::from_secs(30),
        || {
            if let Some(code) = srv.wait_timeout(Duration::ZERO) {
                let mut err = String::new();
                if let Some(mut e) = srv.0.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                panic!("the traced podman exited ({code}) before serving: {err}");
            }
            !h.backends("10.1.0.1:8080").is_empty()
        },
    );
    for url in ["http://web:8080/", "http://10.1.0.1:8080/"] {
        let o = h.curl(&[], url);
        assert!(o.status.success(), "curl {url}: {o:?}");
        assert_eq!(stdout(&o), PAGE, "curl {url}");
    }
    // busybox wget (static, its own resolver) too.
    let busybox = in_path("busybox").unwrap();
    let o = run(&mut h.trace(&[], &busybox, &["wget", "-q", "-O-", "http://web:8080/"]));
    assert!(o.status.success(), "wget: {o:?}");
    assert_eq!(stdout(&o), PAGE);

    // Removing the container ends the traced podman.
    drop(gone);
    assert!(
        srv.wait_timeout(Duration::from_secs(20)).is_some(),
        "the traced podman outlived its container"
    );
}

/// A traced client inside a container (`trace --isolate -- podman run
/// --network none ... busybox wget http://NAME:PORT/`) reaches a traced
/// service on the host by name: the container's /etc/resolv.conf is the
/// trace's (the daemon's responder), bind-mounted by podman.
#[test]
fn a_client_in_a_container_reaches_a_host_service_by_name() {
    let Some(p) = podman("a_client_in_a_container_reaches_a_host_service_by_name") else {
        return;
    };
    let h = Host::start();
    let _web = h.web(
        &["--ip", "10.1.0.2", "--name", "hostweb"],
        8000,
        "hello from the host",
    );
    h.wait_backends("10.1.0.2:8000", 1);
    let name = container_name("cli");
    let args = p.args(
        &name,
        &["-v", "/etc/resolv.conf:/etc/resolv.conf:ro"],
        // (No -T: busybox 1.35's wget crashes with it, untraced too. The
        // run is bounded by `run`'s time limit.)
        &["/bin/busybox", "wget", "-q", "-O-", "http://hostweb:8000/"],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = h.trace(&["--isolate"], &p.podman, &args);
    let _gone = Removed(p, name.clone());
    let o = run(&mut cmd);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "hello from the host");

    // Without the trace's resolv.conf the container has none (podman writes
    // none with --network none): the name is not found, the VIP still is.
    let name = container_name("cli");
    let args = p.args(
        &name,
        &[],
        &[
            "/bin/busybox",
            "sh",
            "-c",
            "wget -q -O- http://hostweb:8000/ >/dev/null 2>&1 && echo name; \
             wget -q -O- http://10.1.0.2:8000/",
        ],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = h.trace(&["--isolate"], &p.podman, &args);
    let _gone2 = Removed(p, name);
    let o = run(&mut cmd);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "hello from the host");
}
