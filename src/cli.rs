//! Command-line interface.

use crate::config::Mode;
use crate::services::static_table::Lb;
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

/// appswitch gives any Linux program an application-level network: its
/// network system calls are intercepted at the socket layer (seccomp user
/// notification, or ptrace with a seccomp-BPF filter; static binaries, Go
/// and raw syscalls included) and checked, redirected or recorded. After
/// connect() the kernel carries the data: nothing sits in the data path.
#[derive(Parser, Debug)]
#[command(name = "appswitch", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run a program under the tracer.
    ///
    /// Only network calls stop the program (connect, bind, listen, accept,
    /// sendto/sendmsg/sendmmsg with an address, and with --events also socket,
    /// getsockname and getpeername); everything else runs at native speed.
    /// Calls made through the i386 ABI (int 0x80, socketcall) are trapped too.
    /// Children, threads and exec'd programs stay traced. The exit status is
    /// the program's (128+N if it died of signal N); signals sent to this
    /// process with kill(1) are passed on to the program (once it exited, to
    /// its traced descendants), and ones the program sends its parent reach
    /// this process's parent. Under the ptrace backend, debuggers cannot run
    /// inside a trace (one tracer per process); under user notification they
    /// can (--backend).
    ///
    /// With --policy, each call is decided by the rules (docs/RULES.md):
    /// first match wins, refused calls fail with the rule's errno and send
    /// nothing, redirected ones are carried out with the new address while
    /// the program keeps seeing the one it asked for.
    ///
    /// When `appswitch daemon` runs (its socket, [daemon] socket in the
    /// config, exists), the program also follows the daemon's policy
    /// (/appswitch/policy, after its own --policy rules), shows up under
    /// /appswitch/apps, and reports its connections and decisions; it keeps
    /// its last policy while the daemon is away. --no-daemon opts out.
    ///
    /// With --ip the program is a service at a virtual IP (docs/SERVICES.md).
    /// Under a daemon, every traced program reaches services by VIP or by
    /// name: its /etc/resolv.conf is privately replaced by one naming the
    /// daemon's DNS responder (the host's file is untouched).
    ///
    /// Examples:
    ///   appswitch trace --ip 10.1.0.1 --name web -- python3 -m http.server 8000
    ///   appswitch trace -- curl http://web:8000/
    ///   appswitch trace --events /tmp/ev.jsonl -- curl -s http://127.0.0.1:8000/
    ///   appswitch trace --policy rules.txt -- ./static-binary
    ///   appswitch trace --policy rules.txt --mode monitor --events - -- python3 app.py
    #[command(verbatim_doc_comment)]
    Trace(Box<TraceArgs>),

    /// Put a program that is already running under appswitch.
    ///
    /// From then on its network calls (and those of every thread, and of
    /// every process it creates later) are decided as under `trace`:
    /// --policy, the daemon's policy and services, /appswitch/apps, --events.
    /// The program is not restarted: it is stopped for a moment (about
    /// 0.2 ms under user notification) to install the filter in all its
    /// threads at once. Connections it made before stay open and, under a
    /// daemon or --mount, are listed in connections (established TCP, the
    /// connections of its listeners, connected UDP).
    ///
    /// By default attach returns once the filter is in, printing one line:
    ///   attached pid=PID backend=BACKEND threads=N stopped_us=U supervisor=SPID
    /// (with ` no_new_privs=set` when it had to set no_new_privs), and a
    /// supervisor process (SPID) stays behind to decide the program's calls
    /// until the program and its children have exited. --foreground keeps
    /// that supervisor in this process instead: it prints the same line, then
    /// returns when the program is gone (exit status 0). Exit status 2: not
    /// attached (bad usage, no such process, not permitted, already attached
    /// or traced...); the program was left as it was.
    ///
    /// Detach: a seccomp filter cannot be removed from a running program, so
    /// detaching means that every later call passes as the program made it,
    /// undecided and unrecorded, while the supervisor stays until the program
    /// exits (without it the kernel would fail the trapped calls with
    /// ENOSYS). `appswitch detach PID`, `detach` written to
    /// /appswitch/apps/ID/ctl, and SIGTERM, SIGINT or SIGHUP to the
    /// supervisor all detach; signals are never passed to the program (it is
    /// not our child). To end the program: kill it, or `kill` in apps/ID/ctl.
    ///
    /// Prerequisites: CAP_SYS_PTRACE, or the program's user and a dumpable
    /// program (and Yama's ptrace_scope allowing it); no other tracer (strace,
    /// gdb) and no other seccomp supervisor on it. The program needs
    /// CAP_SYS_ADMIN to take a filter, otherwise attach sets no_new_privs on
    /// it, which is permanent: its later execs of setuid programs gain no
    /// privileges. The user-notification backend needs what it needs under
    /// `trace` (Linux >= 6.9; attaching itself needs >= 5.7), ptrace works
    /// on older kernels; `appswitch backend` says what this host has.
    ///
    /// Limits: no --ip/--name (an attached program is not a service), no
    /// --user (it runs as it already does), and no private /etc/resolv.conf
    /// (service names resolve only if the host's resolver knows them; VIPs
    /// work). Processes it created before the attach are not covered.
    ///
    /// Examples:
    ///   appswitch attach 4242
    ///   appswitch attach --policy rules.txt --mode monitor --events /tmp/ev.jsonl 4242
    ///   appswitch attach --foreground --log-file /tmp/attach.log $(pidof -s nginx)
    ///   appswitch detach 4242
    #[command(verbatim_doc_comment)]
    Attach(Box<AttachArgs>),

    /// Make the supervisor of an attached program stop deciding.
    ///
    /// Every later network call of PID (attached with `appswitch attach`)
    /// passes as the program made it, undecided and unrecorded; its
    /// supervisor stays until the program exits (a seccomp filter cannot be
    /// removed from a running program). Talks to the supervisor through the
    /// abstract UNIX socket @appswitch-attach-PID (this network namespace),
    /// as root or the supervisor's user. Exit status 0 when detached (also
    /// when it already was), 2 when PID is not attached, 1 when its
    /// supervisor refused (another user) or did not answer.
    ///
    /// Examples:
    ///   appswitch detach 4242
    #[command(verbatim_doc_comment)]
    Detach(DetachArgs),

    /// Run the per-host daemon and mount the control filesystem.
    ///
    /// The daemon holds the policy, static services, traced apps and their
    /// connections; mounts the control filesystem (default /appswitch; see
    /// docs/CONTROLFS.md) and serves tracers on a UNIX socket. Policy and
    /// services are saved on every change and restored at start. SIGTERM or
    /// SIGINT unmounts and exits; a dead mount left by a crash is detached.
    ///
    /// Examples:
    ///   appswitch daemon &
    ///   echo 'deny connect any:22' > /appswitch/policy
    ///   cat /appswitch/connections
    #[command(verbatim_doc_comment)]
    Daemon(DaemonArgs),

    /// Say which interception backend `appswitch trace` would run, and why.
    ///
    /// Prints key=value lines: backend (what would run: unotify or ptrace),
    /// asked (auto, unotify or ptrace), from (where that came from: --backend,
    /// APPSWITCH_BACKEND, the config file, or the built-in default) and
    /// unotify (whether this kernel and this process allow seccomp user
    /// notification, or why not). The same choice as `trace`, with the same
    /// precedence: --backend, then $APPSWITCH_BACKEND, then [trace] backend in
    /// the config, then the built-in default. Exit status 2 when the
    /// backend asked for cannot run here (as `trace` would fail).
    ///
    /// Examples:
    ///   appswitch backend
    ///   appswitch backend --backend auto
    #[command(verbatim_doc_comment)]
    Backend(BackendArgs),

    /// Write the man pages and shell completions (for packaging).
    #[command(hide = true)]
    GenerateAssets(GenerateArgs),
}

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// Directory to write appswitch*.1 and the bash, zsh and fish completions to.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct BackendArgs {
    /// The backend to ask for (as `trace --backend`).
    #[arg(long, value_name = "BACKEND", value_parser = backend_arg())]
    pub backend: Option<tracer::Backend>,

    /// Configuration file (default: $APPSWITCH_CONFIG, then
    /// /etc/appswitch/appswitch.toml, then built-in defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `trace --backend`'s help, naming the built-in default.
fn backend_help() -> String {
    format!(
        "How the program's calls are intercepted (default: $APPSWITCH_BACKEND, then \
         [trace] backend in the config, then {}). The choice never changes what a \
         rule decides; `appswitch backend` says which one would run, and why",
        crate::config::DEFAULT_BACKEND.name()
    )
}

/// A --backend value; help and completions list the three names.
fn backend_arg() -> impl clap::builder::TypedValueParser<Value = tracer::Backend> {
    use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new([
        PossibleValue::new("auto").help(
            "Seccomp user notification when the kernel has it (Linux >= 6.9: \
             SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP, SECCOMP_ADDFD_FLAG_SEND, PIDFD_THREAD; \
             and this process not under another listener: nested appswitch, LXD, \
             syd), else ptrace",
        ),
        PossibleValue::new("unotify")
            .aliases(["user-notification", "user-notif"])
            .help(
                "Seccomp user notification, or refuse to start, saying what the kernel \
                 lacks. The program may use ptrace itself (strace, gdb)",
            ),
        PossibleValue::new("ptrace").help(
            "ptrace with a seccomp filter. Works on every kernel appswitch supports; \
             no debugger can run inside the trace",
        ),
    ])
    .try_map(|s| crate::config::parse_backend(&s))
}

#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    /// Configuration file (default: $APPSWITCH_CONFIG, then
    /// /etc/appswitch/appswitch.toml, then built-in defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where to mount the control filesystem (default: [daemon] mount in the config).
    #[arg(long, value_name = "DIR")]
    pub mount: Option<PathBuf>,

    /// Cluster mode: share the service table with the other hosts' daemons
    /// through etcd (docs/CLUSTER.md). Overrides [cluster] etcd in the config.
    #[arg(long, value_name = "etcd=URL[,URL...]", value_parser = parse_cluster)]
    pub cluster: Option<EtcdList>,
}

/// One --cluster value (an alias, so clap takes it as one value).
pub type EtcdList = Vec<String>;

fn parse_cluster(s: &str) -> Result<EtcdList, String> {
    let list = s.strip_prefix("etcd=").ok_or_else(|| {
        format!("'{s}': expected etcd=URL[,URL...], e.g. etcd=http://10.0.0.5:2379")
    })?;
    let urls: Vec<String> = list
        .split(',')
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect();
    if urls.is_empty() {
        return Err(format!("'{s}': no etcd endpoint given"));
    }
    Ok(urls)
}

/// The options `trace` and `attach` share about the program: how its
/// calls are decided and intercepted.
#[derive(clap::Args, Debug)]
pub struct ProgramArgs {
    /// enforce: apply verdicts; monitor: allow everything and record (in
    /// --events) what would have been refused. Default: from the config.
    #[arg(long, value_enum)]
    pub mode: Option<Mode>,

    #[arg(long, value_name = "BACKEND", value_parser = backend_arg(), help = backend_help())]
    pub backend: Option<tracer::Backend>,

    /// Labels of this program, matched by label=K=V rules: k=v[,k=v...].
    #[arg(long, value_name = "K=V,...", value_parser = parse_labels)]
    pub labels: Option<LabelList>,

    /// Configuration file (default: $APPSWITCH_CONFIG, then
    /// /etc/appswitch/appswitch.toml, then built-in defaults).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    /// Write one JSON line per intercepted call to FILE ("-" for stderr):
    /// time, pid, tid, comm, abi, backend, call, fd, family, protocol, address,
    /// verdict, result (the return value, or the errno name on failure).
    /// On stderr ("-"), lines are dropped (and counted) rather than make the
    /// tracer wait when stderr does not take them.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,

    /// Rules to enforce, one per line (docs/RULES.md), e.g.
    /// `deny connect any:22`. Checked before the program starts: a bad line
    /// is reported with its line, column and token.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    #[command(flatten)]
    pub program: ProgramArgs,

    /// Mount the control filesystem at DIR from this process (no daemon):
    /// /DIR/policy, connections, events... for this program only.
    #[arg(long, value_name = "DIR", conflicts_with = "no_daemon")]
    pub mount: Option<PathBuf>,

    /// Do not connect to a daemon even if its socket exists.
    #[arg(long)]
    pub no_daemon: bool,

    /// Write appswitch's own messages to FILE (appended), including what
    /// happens to the program's calls (refusals, failovers: off by
    /// default, since they would land in the program's own stderr). RUST_LOG
    /// still sets the level.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Run the program as USER (name or uid), with its group and
    /// supplementary groups (as runuser would; HOME, USER and LOGNAME are
    /// set), or with GROUP (name or gid) as its group. appswitch itself
    /// keeps running as root. Use this instead of a setuid program or
    /// sudo inside the trace: those lose their privileges under ptrace.
    #[arg(long, value_name = "USER[:GROUP]", value_parser = parse_user)]
    pub user: Option<tracer::Credentials>,

    /// Keep the host's /etc/resolv.conf: no private mount namespace for the
    /// program (service names then resolve only if the host's resolver knows
    /// them; VIPs still work).
    #[arg(long)]
    pub no_dns: bool,

    /// Run the program in a network namespace of its own with only loopback
    /// (and its --ip VIP, on loopback): what it reaches outside goes through
    /// sockets appswitch makes in its own namespace and puts in the program's
    /// place, after which the program talks to the kernel directly. Its
    /// loopback is its own, as in a container: host services are reached by
    /// VIP, name or a host address. Needs root and the user-notification
    /// backend. Default: `[trace] isolate` in the config (docs/ISOLATION.md).
    #[arg(long, overrides_with = "no_isolate")]
    pub isolate: bool,

    /// Do not isolate, whatever the config says.
    #[arg(long)]
    pub no_isolate: bool,

    /// The program's virtual IP: it becomes a service. When it listens on a
    /// port (on 0.0.0.0, on VIP, or any local address), its real socket is
    /// bound to a host port the kernel chooses ([services] bind in the
    /// config) and it is a backend of VIP:PORT; getsockname() still shows
    /// what it asked for. Several programs may share a VIP: connects are
    /// load balanced among them. Traced clients reach it with connect() to
    /// VIP:PORT (or by --name through the daemon's DNS); nothing else sees it.
    #[arg(long, value_name = "VIP")]
    pub ip: Option<std::net::IpAddr>,

    /// DNS name for the VIP (answered by the daemon's DNS responder, also as
    /// NAME.<domain>), and the service's name in /appswitch/services.
    #[arg(long, value_name = "NAME", requires = "ip", value_parser = parse_name)]
    pub name: Option<String>,

    /// Load balancing among the VIP's backends: roundrobin (default),
    /// random, leastconn. The first backend of a service sets it.
    #[arg(long, value_name = "POLICY", requires = "ip", value_parser = parse_lb)]
    pub lb: Option<Lb>,

    /// Publish the service's PORT on the host's HOSTPORT (all interfaces)
    /// for untraced clients: the program's socket for PORT really listens
    /// there. Repeatable.
    #[arg(long, value_name = "PORT:HOSTPORT", requires = "ip", value_parser = parse_expose)]
    pub expose: Vec<(u16, u16)>,

    /// The program to run, and its arguments (after "--").
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_name = "PROG [ARGS]..."
    )]
    pub command: Vec<OsString>,
}

#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// Write one JSON line per intercepted call to FILE ("-" for stderr:
    /// only with --foreground or --log-file), as `trace --events`.
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,

    /// Rules to enforce, one per line (docs/RULES.md), e.g.
    /// `deny connect any:22`. Checked before the program is touched: a bad
    /// line is reported with its line, column and token.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,

    #[command(flatten)]
    pub program: ProgramArgs,

    /// Mount the control filesystem at DIR from the supervisor (no
    /// daemon): /DIR/policy, connections, events... for this program only,
    /// until it exits.
    #[arg(long, value_name = "DIR", conflicts_with = "no_daemon")]
    pub mount: Option<PathBuf>,

    /// Do not connect to a daemon even if its socket exists.
    #[arg(long)]
    pub no_daemon: bool,

    /// Write appswitch's own messages to FILE (appended), including what
    /// happens to the program's calls. In the background the supervisor's
    /// stderr goes there too (else to /dev/null). RUST_LOG sets the level.
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Supervise from this process: print the attached line, then return
    /// when the program is gone. SIGTERM/SIGINT/SIGHUP (^C) detach.
    #[arg(long)]
    pub foreground: bool,

    /// The running program's process ID (its main thread's).
    #[arg(value_name = "PID", value_parser = parse_pid)]
    pub pid: i32,
}

#[derive(clap::Args, Debug)]
pub struct DetachArgs {
    /// The attached program's process ID.
    #[arg(value_name = "PID", value_parser = parse_pid)]
    pub pid: i32,
}

/// A process ID: a positive number.
fn parse_pid(s: &str) -> Result<i32, String> {
    match s.parse::<i32>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("'{s}': expected a process ID (a positive number)")),
    }
}

/// One --labels value (an alias, so clap takes it as one value, not a list of them).
pub type LabelList = Vec<(String, String)>;

fn parse_labels(s: &str) -> Result<LabelList, String> {
    crate::services::static_table::parse_labels(s)
}

fn parse_name(s: &str) -> Result<String, String> {
    if crate::services::static_table::valid_name(s) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "'{s}': expected a DNS label (letters, digits, -; starting with a letter; at most 63)"
        ))
    }
}

fn parse_lb(s: &str) -> Result<Lb, String> {
    Lb::parse(s).ok_or_else(|| format!("'{s}': expected roundrobin, random or leastconn"))
}

fn parse_expose(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("'{s}': expected PORT:HOSTPORT, e.g. 8000:18000 (ports 1-65535)");
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a == 0 || b == 0 {
        return Err(bad());
    }
    Ok((a, b))
}

/// An error in what the user gave us (exit status 2, like a usage error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The config file, a bad one being the user's error.
pub fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<crate::config::Config> {
    crate::config::Config::load(path).map_err(|e| UsageError(format!("{e:#}")).into())
}

/// USER[:GROUP] -> the credentials the program runs with.
fn parse_user(s: &str) -> Result<tracer::Credentials, String> {
    use nix::unistd::{Gid, Group, Uid, User};
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let user = match u.parse::<u32>() {
        Ok(n) => User::from_uid(Uid::from_raw(n)).ok().flatten(),
        Err(_) => User::from_name(u).ok().flatten(),
    };
    // As runuser: a user the system knows (its groups, home and name).
    let Some(p) = user else {
        return Err(format!("no such user: '{u}'"));
    };
    let (uid, mut gid, home, name) = (
        p.uid.as_raw(),
        p.gid.as_raw(),
        Some(p.dir.clone()),
        Some(p.name.clone()),
    );
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => Group::from_name(g)
                .ok()
                .flatten()
                .ok_or_else(|| format!("no such group: '{g}'"))?
                .gid
                .as_raw(),
        };
    }
    // Supplementary groups as initgroups(3) would set them (none for a
    // uid without a passwd entry).
    let groups = match &name {
        Some(n) => {
            let c = std::ffi::CString::new(n.as_str()).map_err(|e| e.to_string())?;
            nix::unistd::getgrouplist(&c, Gid::from_raw(gid))
                .map_err(|e| format!("groups of {n}: {e}"))?
                .into_iter()
                .map(|g| g.as_raw())
                .collect()
        }
        None => vec![gid],
    };
    let mut env = Vec::new();
    if let Some(n) = name {
        env.push(("USER".into(), n.clone().into()));
        env.push(("LOGNAME".into(), n.into()));
    }
    if let Some(h) = home {
        env.push(("HOME".into(), h.into_os_string()));
    }
    Ok(tracer::Credentials {
        uid,
        gid,
        groups,
        env,
    })
}
