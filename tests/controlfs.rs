//! The control filesystem and the daemon: real mounts, real traced programs.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// A daemon with its own config, socket, state directory and mount point.
struct Daemon {
    proc: Option<Proc>,
    dir: tempfile::TempDir,
    config: PathBuf,
    mnt: PathBuf,
}

impl Daemon {
    fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config = daemon_config(dir.path());
        let mnt = dir.path().join("mnt");
        let mut d = Daemon {
            proc: None,
            dir,
            config,
            mnt,
        };
        d.launch();
        d
    }

    fn launch(&mut self) {
        // APPSWITCH_TEST_LOG=DIR keeps each daemon's log there (debugging).
        let log = match std::env::var_os("APPSWITCH_TEST_LOG") {
            Some(d) => Stdio::from(
                std::fs::File::create(
                    PathBuf::from(d).join(format!("daemon-{}.log", std::process::id())),
                )
                .unwrap(),
            ),
            None => Stdio::null(),
        };
        let p = Proc(
            Command::new(appswitch())
                .arg("daemon")
                .arg("--config")
                .arg(&self.config)
                .env("RUST_LOG", "appswitch=debug")
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        self.proc = Some(p);
        let (ctl, sock) = (self.mnt.join("ctl"), self.dir.path().join("sock"));
        wait_until(
            "the daemon's mount and socket",
            Duration::from_secs(10),
            || std::fs::read_to_string(&ctl).is_ok_and(|s| s.contains("mode=")) && sock.exists(),
        );
    }

    fn file(&self, name: &str) -> PathBuf {
        self.mnt.join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.file(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    }

    /// `sh -c 'cat DATA > FILE'`: what a user does; returns (ok, stderr).
    fn shell_write(&self, name: &str, data: &str) -> (bool, String) {
        let src = self.dir.path().join("write-data");
        std::fs::write(&src, data).unwrap();
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "cat {} > {}",
                src.display(),
                self.file(name).display()
            ))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// A traced program under this daemon.
    fn trace(&self, prog: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(appswitch());
        c.arg("trace")
            .arg("--config")
            .arg(&self.config)
            .arg("--")
            .arg(prog)
            .args(args);
        c
    }

    fn kill9(&mut self) {
        if let Some(p) = self.proc.take() {
            p.signal(libc::SIGKILL);
            drop(p);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        stop_daemon(self.proc.take(), &self.mnt);
    }
}

/// Start `cmd` with its output read line by line into a channel.
fn lines_of(cmd: &mut Command) -> (Proc, Receiver<String>) {
    let mut p = Proc(cmd.stdout(Stdio::piped()).spawn().unwrap());
    let out = p.0.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    (p, rx)
}

/// Lines "NS RESULT" from connect_loop, as (ns, ok).
fn attempts(p: &mut Proc) -> Receiver<(i64, bool)> {
    let out = p.0.stdout.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some((ns, r)) = line.split_once(' ') {
                if tx.send((ns.parse().unwrap_or(0), r == "ok")).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// The first attempt after `after_ns` whose outcome is `ok`; its time.
fn first_outcome_after(rx: &Receiver<(i64, bool)>, after_ns: i64, ok: bool) -> i64 {
    loop {
        let (ns, r) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("connect_loop stopped");
        if ns > after_ns && r == ok {
            return ns;
        }
    }
}

fn rule_id(policy: &str, needle: &str) -> String {
    policy
        .lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no rule with {needle} in {policy}"))
        .to_string()
}

#[test]
fn policy_writes_reach_a_running_program_within_100ms() {
    let d = Daemon::start();
    let target = Banner::start("up\n");
    let loop_prog = c_prog("connect_loop", &[]);
    let mut client = Proc(
        d.trace(&loop_prog, &[&target.port.to_string(), "3000", "2"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rx = attempts(&mut client);
    first_outcome_after(&rx, 0, true);

    let rule = format!("deny connect 127.0.0.1:{}", target.port);
    std::fs::write(d.file("policy"), format!("{rule}\n")).unwrap();
    let written = monotonic_ns();
    let refused_at = first_outcome_after(&rx, written, false);
    let ms = (refused_at - written) as f64 / 1e6;
    assert!(ms <= 100.0, "took {ms:.1} ms to take effect");

    std::fs::write(d.file("policy"), "allow connect loopback:1-2\n").unwrap();
    let policy = d.read("policy");
    assert_eq!(
        policy,
        format!("1 {rule}\n2 allow connect loopback:1-2\ndefault allow\n"),
        "rules in order"
    );
    std::fs::write(
        d.file("policy"),
        format!("del {}\n", rule_id(&policy, &rule)),
    )
    .unwrap();
    let written = monotonic_ns();
    let ok_at = first_outcome_after(&rx, written, true);
    assert!((ok_at - written) as f64 / 1e6 <= 100.0);
    client.signal(libc::SIGTERM);
}

#[test]
fn connections_show_a_live_download_then_drop_it() {
    let d = Daemon::start();
    // A local HTTP server that trickles 64 KiB every 50 ms for ~2 s, so the
    // download is reliably in progress while we look (loopback would
    // otherwise finish a whole file before the first read).
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut s, _)) = l.accept() {
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req);
            let chunk = vec![b'x'; 64 << 10];
            let _ = s.write_all(
                format!(
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
                    40 * chunk.len()
                )
                .as_bytes(),
            );
            for _ in 0..40 {
                if s.write_all(&chunk).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
    let curl = require("curl");
    let url = format!("http://127.0.0.1:{port}/big");
    let mut c = Proc(
        d.trace(&curl, &["-s", "-o", "/dev/null", &url])
            .spawn()
            .unwrap(),
    );
    let remote = format!("remote=127.0.0.1:{port}");
    let mut line = String::new();
    let mut seen = String::new();
    let end = Instant::now() + Duration::from_secs(10);
    while line.is_empty() {
        assert!(
            Instant::now() < end,
            "no curl connection with bytes: connections={seen:?} stats={:?} curl={:?}",
            d.read("stats"),
            c.0.try_wait()
        );
        seen = d.read("connections");
        line = seen
            .lines()
            .find(|l| l.contains("comm=curl") && l.contains(&remote) && !l.contains(" bytes_in=0 "))
            .unwrap_or("")
            .to_string();
        std::thread::sleep(Duration::from_millis(10));
    }
    // On loopback the kernel may already hold the whole file in buffers
    // (and the server may have closed): any live TCP state is right here.
    assert!(line.contains("proto=tcp"), "{line}");
    assert!(
        ["ESTABLISHED", "CLOSE_WAIT"]
            .iter()
            .any(|s| line.contains(&format!("state={s}"))),
        "{line}"
    );
    // stats and metrics count what the listing shows (the kernel asked).
    let count = |file: &str, key: &str| sample(&d.read(file), key);
    assert_eq!(count("stats", "connections="), 1.0);
    assert_eq!(count("metrics", "appswitch_connections "), 1.0);
    assert_eq!(c.wait_timeout(Duration::from_secs(30)), Some(0));
    let gone = Instant::now();
    wait_until(
        "the closed connection to leave the listing",
        Duration::from_secs(1),
        || !d.read("connections").contains(&remote),
    );
    assert!(gone.elapsed() < Duration::from_secs(1));
    assert_eq!(count("stats", "connections="), 0.0);
    assert_eq!(count("metrics", "appswitch_connections "), 0.0);
}

#[test]
fn bad_writes_are_rejected_whole_with_a_reason() {
    let d = Daemon::start();
    std::fs::write(d.file("policy"), "deny connect any:22\n").unwrap();
    let before = d.read("policy");
    let junk: String = (0u8..=255).map(|b| b as char).collect();
    // An open file is one transaction of at most 16 MiB.
    let big = format!("{}\n", "#".repeat(1023)).repeat((16 << 10) + 1);
    let cases: [(&str, &str, &str); 5] = [
        ("unparsable rule", "deny conect any:80\n", "'conect'"),
        ("17 MiB through one open file", &big, "bytes"),
        ("binary junk", &junk, "not text"),
        (
            "no newline at the end (refused at close)",
            "deny connect any:443\ndeny connect any:444",
            "incomplete last line",
        ),
        (
            "one bad rule among many",
            "allow connect any:1\nallow connect any:2\ndeny connect any:x\nallow connect any:3\n",
            "line 3",
        ),
    ];
    for (what, data, reason) in cases {
        let (ok, err) = d.shell_write("policy", data);
        assert!(!ok, "{what}: accepted");
        assert!(!err.is_empty(), "{what}: the shell printed no error");
        assert_eq!(d.read("policy"), before, "{what}: policy changed");
        let errors = d.read("errors");
        assert!(
            errors.lines().last().is_some_and(|l| l.contains(reason)),
            "{what}: errors = {errors}"
        );
    }
    // One write(2) of 17 MiB (not split by a shell tool): refused whole too.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(d.file("policy"))
            .unwrap();
        let one = format!("{}\n", "#".repeat(1023))
            .repeat(17 << 10)
            .into_bytes();
        assert!(f.write_all(&one).is_err(), "a 17 MiB write was accepted");
        drop(f);
        assert_eq!(d.read("policy"), before);
        let errors = d.read("errors");
        assert!(
            errors.lines().rev().take(2).any(|l| l.contains("bytes")),
            "{errors}"
        );
    }
    // Not root: the kernel refuses (default_permissions, mode 0644 root).
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
        ])
        .arg(format!(
            "echo 'allow connect any' > {}",
            d.file("policy").display()
        ))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    assert_eq!(d.read("policy"), before);
}

#[test]
fn kill9_and_restart_keeps_policy_services_and_running_programs() {
    let mut d = Daemon::start();
    let target = Banner::start("up\n");
    std::fs::write(d.file("policy"), "deny connect any:22\n").unwrap();
    std::fs::write(
        d.file("services"),
        "add web 10.1.0.1:80 -> 127.0.0.1:8080\n",
    )
    .unwrap();
    let loop_prog = c_prog("connect_loop", &[]);
    let mut client = Proc(
        d.trace(&loop_prog, &[&target.port.to_string(), "5000", "2"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rx = attempts(&mut client);
    first_outcome_after(&rx, 0, true);

    d.kill9();
    // The program keeps running on its last policy meanwhile.
    first_outcome_after(&rx, monotonic_ns(), true);
    d.launch();
    assert!(d.read("policy").contains("deny connect any:22"));
    assert!(d
        .read("services")
        .starts_with("web 10.1.0.1:80 -> 127.0.0.1:8080"));
    // The running program reconnects and follows later changes.
    wait_until("the tracer to reconnect", Duration::from_secs(5), || {
        d.read("stats").contains("apps=1")
    });
    std::fs::write(
        d.file("policy"),
        format!("deny connect 127.0.0.1:{}\n", target.port),
    )
    .unwrap();
    let written = monotonic_ns();
    let refused = first_outcome_after(&rx, written, false);
    assert!((refused - written) < 1_000_000_000);
    client.signal(libc::SIGTERM);
}

#[test]
fn events_apps_and_ctl() {
    let d = Daemon::start();
    let target = Banner::start("hello\n");
    let (events, ev_rx) = lines_of(Command::new("cat").arg(d.file("events")));
    let cc = c_prog("connect_check", &[]);
    let out = run(&mut d.trace(&cc, &["127.0.0.1", &target.port.to_string()]));
    assert!(stdout(&out).contains("data=hello"));
    let want = format!("\"address\":\"127.0.0.1:{}\"", target.port);
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let l = ev_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("no event streamed");
        if l.contains(&want) && l.contains("\"call\":\"connect\"") {
            break;
        }
        assert!(Instant::now() < end);
    }
    events.signal(libc::SIGTERM);

    // apps/ID for a running program, and ctl kill.
    let sleeper = require("sleep");
    let mut p = Proc(d.trace(&sleeper, &["30"]).spawn().unwrap());
    let mut id = String::new();
    wait_until("the app to appear", Duration::from_secs(5), || {
        id = std::fs::read_dir(d.file("apps"))
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .next()
                    .unwrap_or_default()
            })
            .unwrap_or_default();
        !id.is_empty()
    });
    let info = d.read(&format!("apps/{id}/info"));
    assert!(
        info.contains("cmdline=") && info.contains("sleep 30"),
        "{info}"
    );
    // The backend that runs it (this pass's: APPSWITCH_BACKEND).
    assert!(
        info.contains(&format!("\nbackend={}\n", backend())),
        "{info}"
    );
    std::fs::write(d.file(&format!("apps/{id}/ctl")), "kill\n").unwrap();
    assert_eq!(p.wait_timeout(Duration::from_secs(5)), Some(137));

    // ctl writes are all or nothing too.
    let (ok, _) = d.shell_write("ctl", "mode monitor\nbogus\n");
    assert!(!ok);
    assert!(d.read("ctl").contains("mode=enforce"));
    std::fs::write(d.file("ctl"), "mode monitor\n").unwrap();
    assert!(d.read("ctl").contains("mode=monitor"));
    assert!(d.read("stats").contains("calls_total="));
}

#[test]
fn trace_mount_serves_the_files_without_a_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    let target = Banner::start("up\n");
    let loop_prog = c_prog("connect_loop", &[]);
    let mut client = Proc(
        Command::new(appswitch())
            .args(["trace", "--mount"])
            .arg(&mnt)
            .arg("--")
            .arg(&loop_prog)
            .args([&target.port.to_string(), "3000", "2"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rx = attempts(&mut client);
    first_outcome_after(&rx, 0, true);
    wait_until("the mount", Duration::from_secs(5), || {
        mnt.join("policy").exists()
    });
    std::fs::write(
        mnt.join("policy"),
        format!("deny connect 127.0.0.1:{}\n", target.port),
    )
    .unwrap();
    let written = monotonic_ns();
    let refused = first_outcome_after(&rx, written, false);
    assert!((refused - written) as f64 / 1e6 <= 100.0);
    client.signal(libc::SIGTERM);
    assert!(client.wait_timeout(Duration::from_secs(10)).is_some());
    wait_until("the unmount", Duration::from_secs(5), || {
        !std::fs::read_to_string("/proc/mounts")
            .unwrap_or_default()
            .contains(&mnt.display().to_string())
    });
}

#[test]
fn rules_naming_a_service_match_its_address() {
    let d = Daemon::start();
    // A loopback VIP: should the rule not apply, the connect stays on the machine.
    std::fs::write(
        d.file("services"),
        "add web 127.0.0.77:8080 -> 127.0.0.1:9\n",
    )
    .unwrap();
    std::fs::write(
        d.file("policy"),
        "deny connect web errno=ENETUNREACH\ndeny connect db errno=EHOSTUNREACH\n",
    )
    .unwrap();
    let cc = c_prog("connect_check", &[]);
    let out = run(&mut d.trace(&cc, &["127.0.0.77", "8080"]));
    assert!(
        stdout(&out).contains("errno=ENETUNREACH"),
        "{}",
        stdout(&out)
    );
    // Another port of the same address is not the service.
    let out = run(&mut d.trace(&cc, &["127.0.0.77", "8081"]));
    assert!(
        stdout(&out).contains("errno=ECONNREFUSED"),
        "{}",
        stdout(&out)
    );
    // Adding the service later makes the waiting rule match.
    std::fs::write(
        d.file("services"),
        "add db 127.0.0.78:5432 -> 127.0.0.1:9\n",
    )
    .unwrap();
    let out = run(&mut d.trace(&cc, &["127.0.0.78", "5432"]));
    assert!(
        stdout(&out).contains("errno=EHOSTUNREACH"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn sigterm_unmounts_cleanly() {
    let mut d = Daemon::start();
    let p = d.proc.take().unwrap();
    p.signal(libc::SIGTERM);
    let mut p = p;
    assert_eq!(p.wait_timeout(Duration::from_secs(10)), Some(0));
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(&d.mnt.display().to_string()),
        "still mounted"
    );
    assert!(!d.dir.path().join("sock").exists(), "socket left behind");
}

#[test]
fn tail_f_follows_events_from_a_fresh_daemon() {
    let d = Daemon::start();
    require("tail");
    let (tail, rx) = lines_of(Command::new("tail").arg("-f").arg(d.file("events")));
    // The first line says the daemon started (the stream is never empty).
    let first = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("tail printed nothing");
    assert!(first.contains("\"daemon\":\"started\""), "{first}");
    let target = Banner::start("x\n");
    let cc = c_prog("connect_check", &[]);
    run(&mut d.trace(&cc, &["127.0.0.1", &target.port.to_string()]));
    let want = format!("127.0.0.1:{}", target.port);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let l = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("tail -f stopped following");
        if l.contains(&want) {
            break;
        }
        assert!(Instant::now() < end);
    }
    tail.signal(libc::SIGTERM);
}

#[test]
fn an_open_file_is_one_transaction_of_any_size() {
    let d = Daemon::start();
    // 6,000 rules, ~190 KB: cat writes them in 128 KiB chunks, a rule split
    // across two of them. All apply, in order.
    let rules: String = (0..6000)
        .map(|i| {
            format!(
                "deny connect 10.{}.{}.{}/32:{}\n",
                i / 250,
                i % 250,
                i % 7,
                1000 + i
            )
        })
        .collect();
    assert!(rules.len() > 128 << 10, "{}", rules.len());
    let (ok, err) = d.shell_write("policy", &rules);
    assert!(ok, "{err}");
    let policy = d.read("policy");
    assert_eq!(policy.lines().count(), 6001, "6,000 rules and the default");
    let last = policy.lines().nth(5999).unwrap();
    assert!(
        last.contains("10.23.249.0") && last.ends_with(":6999"),
        "{last}"
    );
    // The same with one bad rule near the end: nothing of it applies.
    let mut bad = rules.replace("deny connect 10.", "allow connect 10.");
    bad.push_str("allow connect 10.0.0.0/8:x\n");
    let (ok, _) = d.shell_write("policy", &bad);
    assert!(!ok, "a bad last rule must fail the write");
    assert_eq!(d.read("policy"), policy, "all or nothing");
    assert!(d
        .read("errors")
        .lines()
        .last()
        .unwrap()
        .contains("line 6001"));

    // Lines written one write(2) at a time (as bash's printf does) are one
    // transaction too: applied at the close, together.
    let py = |code: &str| {
        let o = Command::new("python3")
            .args(["-c", code, d.file("policy").to_str().unwrap()])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let two = "import os,sys\n\
        f=os.open(sys.argv[1], os.O_WRONLY|os.O_TRUNC)\n\
        os.write(f, b'flush\\n'); os.write(f, b'deny connect any:22\\n')\n\
        os.write(f, b'deny connect any:23\\n')\n\
        print(open(sys.argv[1]).read().count('any:2'))\n\
        os.close(f); print(open(sys.argv[1]).read().count('any:2'))\n";
    assert_eq!(py(two), "0\n2", "nothing before the close, all after it");
    assert_eq!(d.read("policy").lines().count(), 3);
    // A bad second write fails by itself, and the first never applies.
    let bad = "import os,sys\n\
        f=os.open(sys.argv[1], os.O_WRONLY)\n\
        os.write(f, b'deny connect any:24\\n')\n\
        try:\n    os.write(f, b'deny connect any:x\\n'); print('accepted')\n\
        except OSError as e: print(e.errno)\n\
        os.close(f)\n";
    assert_eq!(py(bad), libc::EINVAL.to_string());
    assert!(!d.read("policy").contains("any:24"));
    // bash's printf, as a user types it.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "printf 'deny connect any:25\\ndeny connect any:26\\n' > {}",
            d.file("policy").display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let p = d.read("policy");
    assert!(p.contains("any:25") && p.contains("any:26"), "{p}");
}

#[test]
fn a_daemon_in_normal_use_logs_nothing_to_worry_about() {
    // Its own daemon, with warnings on (fuser's too), stderr kept.
    let dir = tempfile::tempdir().unwrap();
    let config = daemon_config(dir.path());
    // No DNS responder: its fixed address is taken by other tests' daemons.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[dns]\nlisten = \"\"\n");
    std::fs::write(&config, text).unwrap();
    let mnt = dir.path().join("mnt");
    let log = dir.path().join("daemon.log");
    let mut p = Proc(
        Command::new(appswitch())
            .args(["daemon", "--config", config.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_until("the daemon", Duration::from_secs(10), || {
        std::fs::read_to_string(mnt.join("ctl")).is_ok_and(|s| s.contains("mode="))
    });
    // Programs open control files as files: isatty (an ioctl), xattrs.
    let o = run(Command::new("python3").args([
        "-c",
        "import os,sys\nf=open(sys.argv[1]); print(f.isatty()); os.listxattr(sys.argv[1])",
        mnt.join("policy").to_str().unwrap(),
    ]));
    assert_eq!(stdout(&o).trim(), "False", "{o:?}");
    // tail -f of a generated file that does not change says nothing more.
    let o = run(Command::new("timeout").args([
        "2.5",
        "tail",
        "-f",
        mnt.join("policy").to_str().unwrap(),
    ]));
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("truncated"),
        "{o:?}"
    );
    // A normal stop.
    p.signal(libc::SIGTERM);
    assert_eq!(p.wait_timeout(Duration::from_secs(10)), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("WARN") && !text.contains("ERROR") && !text.contains("Not Implemented"),
        "{text}"
    );
}

#[test]
fn one_open_file_is_one_transaction_whoever_writes_through_it() {
    let d = Daemon::start();
    let p = d.file("policy").display().to_string();
    let before = d.read("policy");
    let sh = |script: &str| run(Command::new("bash").arg("-c").arg(script.replace("$P", &p)));
    // Several processes share one open file (an external command's exit
    // closes its copy): a bad line anywhere, and nothing applies.
    let o = sh(
        "( echo 'allow connect any:81'; /bin/echo 'deny connect any:82'; echo 'frobnicate' ) > $P",
    );
    assert!(!o.status.success());
    // Lines written after a failed write do not apply either.
    let o = sh("{ printf 'bogus line\\n' | cat; echo 'deny connect any:83'; } > $P");
    assert!(!o.status.success());
    // A writer killed in the middle of a line applies nothing.
    let o = run(Command::new("python3").args([
        "-c",
        "import os,sys,signal\nf=os.open(sys.argv[1], os.O_WRONLY)\n\
         os.write(f,b'deny connect any:85\\ndeny connect any:8')\nos.kill(os.getpid(), signal.SIGKILL)\n",
        &p,
    ]));
    assert!(!o.status.success());
    wait_until(
        "the killed writer's file to be released",
        Duration::from_secs(2),
        || d.read("errors").contains("incomplete last line"),
    );
    assert_eq!(d.read("policy"), before, "nothing of any of them applied");
    // Another writer meanwhile: a `del ID` of the old table is refused.
    let o = run(Command::new("python3").args([
        "-c",
        "import os,sys\nf=os.open(sys.argv[1], os.O_WRONLY)\nos.write(f,b'allow connect any:100\\n')\n\
         g=os.open(sys.argv[1], os.O_WRONLY); os.write(g,b'deny connect any:200\\n'); os.close(g)\n\
         os.write(f,b'del 1\\n')\n\
         try: os.close(f)\nexcept OSError: pass\n",
        &p,
    ]));
    assert!(o.status.success(), "{o:?}");
    wait_until("the first writer's end", Duration::from_secs(2), || {
        d.read("errors")
            .contains("the table changed while this was written")
    });
    let after = d.read("policy");
    assert!(
        after.contains("any:200") && !after.contains("any:100"),
        "{after}"
    );
    // The writing process closing a descriptor of it (a dup) commits what
    // it wrote so far (documented); what follows is a new transaction.
    let o = run(Command::new("python3").args([
        "-c",
        "import os,sys\nf=os.open(sys.argv[1], os.O_WRONLY)\nos.write(f,b'deny connect any:84\\n')\n\
         os.close(os.dup(f))\n\
         try: os.write(f,b'nonsense\\n')\nexcept OSError: print('refused')\n\
         try: os.close(f)\nexcept OSError: pass\n",
        &p,
    ]));
    assert_eq!(stdout(&o).trim(), "refused", "{o:?}");
    let last = d.read("policy");
    assert!(
        last.contains("any:84") && !last.contains("nonsense"),
        "{last}"
    );
}

/// `metrics` parsed by the Prometheus project's own Python parser
/// (Debian's python3-prometheus-client): family name -> (type, samples as
/// "name{labels} value" lines). Panics if the parser rejects the text.
fn parse_metrics(text: &str) -> String {
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{fam.type} {s.name}{{{labels}}} {s.value}")
"#;
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run /usr/bin/python3 (python3-prometheus-client)");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes())
        .expect("feed the parser");
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "the parser rejected metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sample(parsed: &str, prefix: &str) -> f64 {
    parsed
        .lines()
        .find_map(|l| {
            l.strip_prefix(prefix)
                .map(|v| v.trim().parse::<f64>().unwrap_or(-1.0))
        })
        .unwrap_or_else(|| panic!("no {prefix} in {parsed}"))
}

#[test]
fn metrics_are_prometheus_text_and_counters_move() {
    let d = Daemon::start();
    let target = Banner::start("up\n");
    // A rule, so that every connect is decided (and counted).
    std::fs::write(d.file("policy"), "deny connect 192.0.2.1\n").unwrap();
    let prog = c_prog("connect_check", &[]);
    let port = target.port.to_string();
    let connect = |n: usize| {
        for _ in 0..n {
            let out = run(&mut d.trace(&prog, &["127.0.0.1", &port]));
            assert!(stdout(&out).contains("result=ok"), "{out:?}");
        }
    };
    connect(2);
    let first = parse_metrics(&d.read("metrics"));
    assert!(first.contains("gauge appswitch_apps{}"), "{first}");
    assert!(first.contains("histogram appswitch_decision_duration_seconds_bucket{le=+Inf}"));
    let calls = "counter appswitch_calls_total{app=connect_check}";
    let before = sample(&first, calls);
    assert!(before >= 2.0, "{first}");
    let hist = "histogram appswitch_decision_duration_seconds_count{}";
    let count_before = sample(&first, hist);
    connect(3);
    let second = parse_metrics(&d.read("metrics"));
    assert!(sample(&second, calls) >= before + 3.0, "{second}");
    assert!(sample(&second, hist) >= count_before + 3.0, "{second}");
    let allowed = "counter appswitch_decisions_total{app=connect_check,verdict=allowed}";
    assert!(sample(&second, allowed) >= 5.0, "{second}");
}

#[test]
fn a_restarted_daemon_lists_connections_older_than_the_remembered_ones() {
    // One connection held open, then more short ones than a trace
    // remembers for a restarted daemon (16,384): the held one must still
    // be listed after a kill -9 and restart (found among the program's
    // open sockets).
    let mut d = Daemon::start();
    let target = Banner::start("up\n");
    let (p, id) = hold_one_then_many(&d, target.port);
    wait_until(
        "the held connection to be listed",
        Duration::from_secs(10),
        || d.read("connections").contains(&id),
    );
    d.kill9();
    d.launch();
    listed_once_the_tracer_is_back(&d, &id);
    let listing = d.read("connections");
    let line = listing.lines().find(|l| l.contains(&id)).unwrap_or("");
    assert!(
        line.contains(&format!("remote=127.0.0.1:{}", target.port)),
        "{line}"
    );
    assert!(line.contains("comm=python3"), "{line}");
    p.signal(libc::SIGTERM);
}

#[test]
fn a_socket_connected_again_after_shutdown_is_listed_with_its_new_peer() {
    // A non-blocking connect left connecting (the listener's queue is
    // full), shutdown() (the socket is unconnected again), then a blocking
    // connect elsewhere: a new connection, listed with its own remote
    // (its 0 is not the first connect completing).
    let d = Daemon::start();
    std::fs::write(d.file("policy"), "deny connect any:22\n").unwrap();
    let target = Banner::start("up\n");
    // Untraced, so that the program has no listener of its own (the
    // daemon then asks the kernel only for sockets to the ports reported).
    let full = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // SAFETY: listen(2) again on a listening socket we own.
    assert_eq!(unsafe { libc::listen(full.as_raw_fd(), 0) }, 0);
    let full_port = full.local_addr().unwrap().port();
    let _fill = std::net::TcpStream::connect(("127.0.0.1", full_port)).unwrap();
    let script = r#"
import os, socket, sys, time
port, full = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(); s.setblocking(False)
try:
    s.connect(("127.0.0.1", full))
except BlockingIOError:
    pass
assert s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == 2, "not SYN_SENT"
s.shutdown(socket.SHUT_RDWR)
s.setblocking(True)
s.connect(("127.0.0.1", port))
print(os.fstat(s.fileno()).st_ino, flush=True)
time.sleep(60)
"#;
    let (p, id) = traced_python_socket(
        &d,
        script,
        &[&target.port.to_string(), &full_port.to_string()],
    );
    let remote = format!("remote=127.0.0.1:{}", target.port);
    wait_until(
        "the new connection to be listed",
        Duration::from_secs(5),
        || {
            d.read("connections")
                .lines()
                .any(|l| l.contains(&id) && l.contains(&remote))
        },
    );
    p.signal(libc::SIGTERM);
}

#[test]
fn a_daemon_that_comes_late_lists_connections_older_than_the_remembered_ones() {
    // The trace starts while no daemon answers (a stale socket), the
    // program holds one connection and makes more short ones than a trace
    // remembers; the daemon then comes: the held one is listed.
    let mut d = Daemon::start();
    d.kill9();
    let target = Banner::start("up\n");
    let (p, id) = hold_one_then_many(&d, target.port);
    d.launch();
    listed_once_the_tracer_is_back(&d, &id);
    p.signal(libc::SIGTERM);
}

/// The (re)launched daemon has the trace back and lists connection `id`.
fn listed_once_the_tracer_is_back(d: &Daemon, id: &str) {
    wait_until("the tracer to connect", Duration::from_secs(5), || {
        d.read("stats").contains("apps=1")
    });
    wait_until(
        "the held connection to be listed",
        Duration::from_secs(5),
        || d.read("connections").contains(id),
    );
}

/// A traced program that holds one connection to 127.0.0.1:`port` and
/// then makes 17,000 short ones (more than a trace remembers for a
/// daemon); and the held socket's `id=INODE ` as /appswitch/connections
/// shows it, once it has made them.
fn hold_one_then_many(d: &Daemon, port: u16) -> (Proc, String) {
    traced_python_socket(d, HOLD_ONE_THEN_MANY, &[&port.to_string()])
}

/// A traced python3 `script` (with `args`) that prints a socket's inode:
/// the program, and that socket's `id=INODE ` in /appswitch/connections.
fn traced_python_socket(d: &Daemon, script: &str, args: &[&str]) -> (Proc, String) {
    let python = require("python3");
    let mut argv = vec!["-c", script];
    argv.extend_from_slice(args);
    let mut p = Proc(
        d.trace(&python, &argv)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // (It prints nothing after the inode.)
    let ino = p.first_line();
    assert!(ino.trim().parse::<u64>().is_ok(), "{ino:?}");
    (p, format!("id={} ", ino.trim()))
}

const HOLD_ONE_THEN_MANY: &str = r#"
import os, socket, struct, sys, time
port = int(sys.argv[1])
keep = socket.create_connection(("127.0.0.1", port))
for _ in range(17000):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.connect(("127.0.0.1", port))
    s.close()
print(os.fstat(keep.fileno()).st_ino, flush=True)
time.sleep(60)
"#;
