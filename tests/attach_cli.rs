//! `appswitch attach` and `appswitch detach` from the command line: usage,
//! the checks made before the program is touched (each leaves it as it
//! was), and the detach client's talk with a supervisor. What an attach does
//! to a program is tests/attach.rs.

mod common;

use common::*;
use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn appswitch_cmd(sub: &str, args: &[&str]) -> Output {
    run(Command::new(appswitch()).arg(sub).args(args))
}

fn attach(args: &[&str]) -> Output {
    appswitch_cmd("attach", args)
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A running program for attach to find: `sleep`, ours to end.
fn sleeper() -> Proc {
    Proc(
        Command::new("sleep")
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
            .expect("start sleep"),
    )
}

/// What an attach would change in a process: its tracer, seccomp mode and
/// filters, no_new_privs.
fn marks(pid: i32) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .filter(|l| {
            ["TracerPid:", "Seccomp:", "Seccomp_filters:", "NoNewPrivs:"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(str::to_string)
        .collect()
}

/// `o` failed with status 2 and `want` in its message, the program unchanged.
fn refused(o: &Output, want: &str, pid: i32, before: &[String]) {
    assert_eq!(code(o), 2, "{o:?}");
    let err = stderr(o);
    assert!(err.contains(want), "wanted {want:?} in: {err}");
    assert!(o.stdout.is_empty(), "{o:?}");
    assert_eq!(marks(pid), before, "the program changed");
}

#[test]
fn a_pid_is_required_and_must_be_a_process_id() {
    let o = attach(&[]);
    assert_eq!(code(&o), 2, "{o:?}");
    assert!(stderr(&o).contains("<PID>"), "{}", stderr(&o));
    for bad in ["abc", "0", "12x", "99999999999"] {
        let o = attach(&[bad]);
        assert_eq!(code(&o), 2, "{bad}: {o:?}");
        assert!(
            stderr(&o).contains("expected a process ID"),
            "{bad}: {}",
            stderr(&o)
        );
    }
    let o = appswitch_cmd("detach", &["abc"]);
    assert_eq!(code(&o), 2, "{o:?}");
    let o = attach(&["--backend", "strace", "1"]);
    assert_eq!(code(&o), 2, "{o:?}");
    let o = attach(&["--mount", "/tmp/x", "--no-daemon", "1"]);
    assert_eq!(code(&o), 2, "{o:?}");
}

#[test]
fn no_such_process() {
    // Above any pid_max: never a process.
    let o = attach(&["999999999"]);
    assert_eq!(code(&o), 2, "{o:?}");
    assert!(
        stderr(&o).contains("appswitch: attach: no process 999999999"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_zombie_is_no_process() {
    // `true` exits; its parent, now `sleep`, never reaps it.
    let mut parent = Proc(
        Command::new("sh")
            .args(["-c", "true & exec sleep 60"])
            .spawn()
            .expect("sh"),
    );
    let mut zombie = None;
    wait_until("a zombie child", Duration::from_secs(10), || {
        let children =
            std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", parent.pid()))
                .unwrap_or_default();
        zombie = children.split_whitespace().find_map(|c| {
            let stat = std::fs::read_to_string(format!("/proc/{c}/stat")).ok()?;
            stat.contains(") Z ").then(|| c.to_string())
        });
        zombie.is_some()
    });
    let z = zombie.unwrap_or_default();
    let o = attach(&[&z]);
    assert_eq!(code(&o), 2, "{o:?}");
    assert!(
        stderr(&o).contains(&format!("no process {z}")),
        "{}",
        stderr(&o)
    );
    parent.signal(libc::SIGKILL);
    let _ = parent.wait_timeout(Duration::from_secs(5));
}

#[test]
fn a_thread_is_named_with_its_process() {
    require("python3");
    let mut p = Proc(
        Command::new("python3")
            .args([
                "-c",
                "import threading,time,sys\n\
                 threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n\
                 print('up', flush=True)\n\
                 time.sleep(60)\n",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3"),
    );
    assert_eq!(p.first_line().trim(), "up");
    let pid = p.pid();
    let tid = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("tasks")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .find(|t| *t != pid)
        .expect("a second thread");
    let before = marks(pid);
    let o = attach(&[&tid.to_string()]);
    refused(
        &o,
        &format!("{tid} is a thread of process {pid}: attach to {pid}"),
        pid,
        &before,
    );
}

#[test]
fn bad_options_are_refused_before_the_program_is_touched() {
    let p = sleeper();
    let pid = p.pid().to_string();
    let before = marks(p.pid());
    let (_d, policy) = policy_file("deny conect any:22\n");
    let policy = policy.to_string_lossy().into_owned();
    let o = attach(&["--policy", &policy, &pid]);
    refused(&o, "line 1, column 6", p.pid(), &before);
    assert!(
        stderr(&o).starts_with("appswitch: attach: "),
        "{}",
        stderr(&o)
    );
    let o = attach(&["--policy", "/nonexistent/rules.txt", &pid]);
    refused(&o, "/nonexistent/rules.txt", p.pid(), &before);
    // In the background stderr is /dev/null.
    let o = attach(&["--events", "-", &pid]);
    refused(&o, "--events -", p.pid(), &before);
    // The backend's precedence is trace's: a bad environment value names itself.
    let o = run(Command::new(appswitch())
        .args(["attach", &pid])
        .env(BACKEND_ENV, "strace"));
    refused(&o, "APPSWITCH_BACKEND=strace", p.pid(), &before);
    let o = attach(&["--config", "/nonexistent/appswitch.toml", &pid]);
    refused(&o, "/nonexistent/appswitch.toml", p.pid(), &before);
}

/// Listen where the supervisor of `pid` would: @appswitch-attach-PID.
fn fake_supervisor(pid: i32) -> UnixListener {
    let addr = SocketAddr::from_abstract_name(format!("appswitch-attach-{pid}").as_bytes())
        .expect("abstract address");
    UnixListener::bind_addr(&addr).expect("bind the supervisor's name")
}

#[test]
fn a_program_already_attached_is_not_attached_again() {
    let p = sleeper();
    let before = marks(p.pid());
    let _held = fake_supervisor(p.pid());
    let o = attach(&[&p.pid().to_string()]);
    refused(
        &o,
        &format!(
            "appswitch: attach: {} is already attached by appswitch (supervisor {})",
            p.pid(),
            std::process::id()
        ),
        p.pid(),
        &before,
    );
}

#[test]
fn detach_of_a_program_not_attached() {
    let o = appswitch_cmd("detach", &["999999"]);
    assert_eq!(code(&o), 2, "{o:?}");
    assert!(
        stderr(&o).contains("999999 is not attached by appswitch"),
        "{}",
        stderr(&o)
    );
    let p = sleeper();
    let o = appswitch_cmd("detach", &[&p.pid().to_string()]);
    assert_eq!(code(&o), 2, "{o:?}");
    assert!(
        stderr(&o).contains(&format!(
            "{} is not attached by appswitch (no supervisor answers at @appswitch-attach-{}",
            p.pid(),
            p.pid()
        )),
        "{}",
        stderr(&o)
    );
}

/// Answer one `detach` client with `answer`; returns what it asked.
fn answer_once(l: UnixListener, answer: &'static str) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let (mut c, _) = l.accept().expect("accept");
        let mut asked = Vec::new();
        let mut buf = [0u8; 64];
        while !asked.contains(&b'\n') {
            match c.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => asked.extend_from_slice(&buf[..n]),
            }
        }
        c.write_all(answer.as_bytes()).expect("answer");
        String::from_utf8_lossy(&asked).into_owned()
    })
}

#[test]
fn detach_asks_the_supervisor() {
    let p = sleeper();
    let served = answer_once(fake_supervisor(p.pid()), "ok\n");
    let o = appswitch_cmd("detach", &[&p.pid().to_string()]);
    assert_eq!(code(&o), 0, "{o:?}");
    assert_eq!(
        stdout(&o),
        format!(
            "detached pid={} supervisor={}\n",
            p.pid(),
            std::process::id()
        )
    );
    assert_eq!(served.join().unwrap(), "detach\n");
}

#[test]
fn a_supervisor_refusing_detach_is_a_failure() {
    let p = sleeper();
    let served = answer_once(
        fake_supervisor(p.pid()),
        "error: not permitted: uid 65534 is neither root nor the supervisor's (0)\n",
    );
    let o = appswitch_cmd("detach", &[&p.pid().to_string()]);
    assert_eq!(code(&o), 1, "{o:?}");
    assert!(stderr(&o).contains("not permitted"), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    served.join().unwrap();
}

#[test]
fn help_says_what_attach_needs_and_what_detach_means() {
    let o = attach(&["--help"]);
    assert_eq!(code(&o), 0, "{o:?}");
    let help = stdout(&o);
    for want in [
        "CAP_SYS_PTRACE",
        "dumpable",
        "CAP_SYS_ADMIN",
        "no_new_privs",
        "permanent",
        "ENOSYS",
        "appswitch detach",
        "--foreground",
        "attached pid=PID backend=BACKEND threads=N stopped_us=U supervisor=SPID",
        "--ip",
        "--user",
        "resolv.conf",
        "Examples:",
    ] {
        assert!(help.contains(want), "attach --help lacks {want:?}:\n{help}");
    }
    let top = stdout(&run(Command::new(appswitch()).arg("--help")));
    assert!(top.contains("attach"), "{top}");
    assert!(top.contains("detach"), "{top}");
    let o = appswitch_cmd("detach", &["--help"]);
    assert!(stdout(&o).contains("undecided"), "{}", stdout(&o));
}
