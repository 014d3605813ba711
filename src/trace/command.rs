//! `appswitch trace`: assembles the trace process (the policy it starts
//! with, the handler, the link to a daemon or an in-process control
//! filesystem, the program's resolv.conf) and runs the program under the
//! tracer. `appswitch attach` (attach.rs) shares all of it but the program:
//! [`prepare`], then [`link`].

use super::backend;
use super::daemon_link;
use super::events;
use super::handler::{Enforcer, Reporter};
use super::snapshot::{LiveNet, LivePolicy, Snapshot};
use super::standalone::in_process;
use super::vip_router::{HostIdentity, Router};
use crate::cli::{load_config, TraceArgs, UsageError};
use crate::config::{Config, DefaultAction, Mode};
use crate::policy;
use crate::policy::table::{self, PolicyTable};
use crate::protocol::ToDaemon;
use anyhow::Context;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `trace` and `attach` take alike from their command lines.
pub(super) struct Common<'a> {
    pub policy: Option<&'a Path>,
    pub mode: Option<Mode>,
    pub backend: Option<tracer::Backend>,
    pub labels: Vec<(String, String)>,
    pub events: Option<&'a Path>,
    pub mount: Option<&'a Path>,
    pub no_daemon: bool,
}

impl<'a> Common<'a> {
    fn of_trace(args: &'a TraceArgs) -> Common<'a> {
        Common {
            policy: args.policy.as_deref(),
            mode: args.program.mode,
            backend: args.program.backend,
            labels: args.program.labels.clone().unwrap_or_default(),
            events: args.events.as_deref(),
            mount: args.mount.as_deref(),
            no_daemon: args.no_daemon,
        }
    }
}

/// The trace's own rules (--policy), as a table; the config's default otherwise.
fn load_policy(path: Option<&Path>, config: &Config) -> anyhow::Result<PolicyTable> {
    let default_deny = config.policy.default == DefaultAction::Deny;
    let Some(path) = path else {
        return Ok(PolicyTable::new(default_deny));
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading policy {}", path.display()))?;
    let file =
        policy::parse_policy(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    for (i, r) in file.rules.iter().enumerate() {
        if let Some(policy::AddrMatch {
            host: policy::Host::Service(s),
            ..
        }) = &r.addr
        {
            log::warn!(
                "{}: rule {} names service '{s}': services are known only under a daemon (/appswitch/services); standalone it matches nothing",
                path.display(),
                i + 1
            );
        }
    }
    Ok(table::from_file(file, default_deny))
}

/// What is decided before anything runs: the backend, the trace's own
/// policy, the handler and its event log, and whether a daemon can be
/// joined. Starts no thread and mounts nothing (`attach` forks after it).
pub(super) struct Prepared {
    pub chosen: tracer::Chosen,
    pub local: PolicyTable,
    pub live: Arc<LivePolicy>,
    pub handler: Enforcer,
    pub join: Join,
}

pub(super) fn prepare(c: &Common, config: &Config) -> anyhow::Result<Prepared> {
    // Which backend runs: decided (and any reason it cannot) before anything starts.
    let asked = backend::asked(c.backend, config)?;
    let chosen = asked.choose()?;
    log::info!(
        "backend: {} ({}, from {})",
        chosen.name(),
        asked.backend.name(),
        asked.from
    );
    let local = load_policy(c.policy, config)?;
    let mode = c.mode.unwrap_or(config.policy.mode);
    let sink = match c.events {
        Some(path) => Some(
            events::EventSink::open(path)
                .with_context(|| format!("opening events file {}", path.display()))?,
        ),
        None => None,
    };
    let live = LivePolicy::new(Snapshot::combine(
        &local,
        None,
        &Default::default(),
        &Default::default(),
        mode,
        0,
    ));
    let policed = c.policy.is_some() || local.default_deny();
    let handler = Enforcer::new(live.clone(), policed, sink, c.labels.clone(), chosen);
    Ok(Prepared {
        chosen,
        local,
        live,
        handler,
        join: join(c, config),
    })
}

/// Can this process join the daemon? Seen once, before anything starts.
fn join(c: &Common, config: &Config) -> Join {
    let socket = &config.daemon.socket;
    if c.mount.is_some() || c.no_daemon {
        return Join::Yes;
    }
    match std::os::unix::net::UnixStream::connect(socket) {
        Ok(_) => Join::Yes,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Join::Denied(format!(
            "cannot join the daemon at {}: permission denied (its socket is root's, mode 0600; \
             run as root to be under the daemon's policy and services)",
            socket.display()
        )),
        Err(e) => Join::Away(format!("no daemon at {} ({e})", socket.display())),
    }
}

/// The handler, linked to a daemon or to this process's own control files
/// (--mount), or to neither.
pub(super) struct Linked {
    pub handler: Enforcer,
    pub net: Arc<LiveNet>,
    /// No daemon: services are this process's alone.
    standalone: bool,
    drained: Option<std::sync::mpsc::Receiver<()>>,
    _mounted: Option<controlfs::Mounted>,
}

/// Join the daemon (waiting up to a second for its policy) or mount the
/// control files, as `c` and `p.join` say. `hello` registers the program.
pub(super) fn link(
    c: &Common,
    config: &Config,
    p: Prepared,
    hello: ToDaemon,
) -> anyhow::Result<Linked> {
    let Prepared {
        local,
        live,
        mut handler,
        join,
        ..
    } = p;
    // A daemon that is away may come back (the link keeps trying); one whose
    // socket we may not use never lets us in.
    if let Join::Denied(why) = &join {
        log::warn!("{why}: running without it (no daemon policy, services or names)");
    }
    let socket = &config.daemon.socket;
    let net = LiveNet::new();
    let mut standalone = true;
    let mut mounted = None;
    let mut drained = None;
    if let Some(dir) = c.mount {
        let (reporter, m) = in_process(dir, hello, &local, &live, &net, config, c.mode)?;
        handler = handler.with_reporter(reporter);
        mounted = Some(m);
    } else if !c.no_daemon && socket.exists() && !matches!(join, Join::Denied(_)) {
        let client = daemon_link::start(
            socket.clone(),
            hello,
            local.clone(),
            live.clone(),
            net.clone(),
            c.mode,
        );
        standalone = false;
        // Start under the daemon's policy when it answers promptly; a stale
        // socket with no daemon behind it costs nothing.
        let end = Instant::now() + Duration::from_secs(1);
        let waiting = || {
            let s = client.state.load(std::sync::atomic::Ordering::Relaxed);
            s == daemon_link::TRYING || (s == daemon_link::CONNECTED && live.get().version == 0)
        };
        while waiting() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(why) = net.refused.lock().ok().and_then(|r| r.clone()) {
            return Err(UsageError(why).into());
        }
        if live.get().version == 0 {
            log::warn!(
                "no answer from the daemon at {}; running on the local policy until it comes back",
                socket.display()
            );
        }
        handler = handler.with_reporter(Reporter {
            tx: client.tx,
            counters: client.counters,
            pids: client.pids,
            events_wanted: net.events_wanted.clone(),
        });
        drained = Some(client.drained);
    }
    Ok(Linked {
        handler,
        net,
        standalone,
        drained,
        _mounted: mounted,
    })
}

impl Linked {
    /// Route connects to services (and make the program one at `host`,
    /// with --ip): the daemon says where services listen.
    pub fn route(&mut self, host: Option<HostIdentity>) {
        let host = host.map(|mut h| {
            if let Some(b) = self.net.bind.lock().ok().and_then(|b| *b) {
                h.bind_ip = b;
            }
            h
        });
        let router = Router::new(self.net.clone(), host, self.standalone);
        self.handler.set_router(router);
    }

    /// Once the program is gone: let the last reports (its final
    /// connections and events) reach the daemon, then unmount.
    pub fn finish(self) {
        let Linked {
            handler, drained, ..
        } = self;
        drop(handler);
        if let Some(d) = drained {
            daemon_link::Client::drain(d, Duration::from_secs(1));
        }
    }
}

pub fn run(args: TraceArgs) -> anyhow::Result<i32> {
    let config = load_config(args.program.config.as_deref())?;
    let common = Common::of_trace(&args);
    let prepared = prepare(&common, &config)?;
    let chosen = prepared.chosen;
    let mut words = args.command.iter().cloned();
    let program = words.next().context("no program given")?;
    let mut cmd = tracer::Command {
        user: args.user.clone(),
        program: program.clone(),
        args: words.collect(),
        bind_files: Vec::new(),
        backend: chosen,
        isolate: None,
    };
    if (args.isolate || config.trace.isolate) && !args.no_isolate {
        if chosen != tracer::Chosen::Unotify {
            return Err(UsageError(format!(
                "--isolate: the {} backend cannot put a socket into the program; \
                 isolation needs user notification (--backend unotify)",
                chosen.name()
            ))
            .into());
        }
        cmd.isolate = Some(tracer::Isolation {
            addresses: args.ip.into_iter().collect(),
            outside: Vec::new(),
        });
    }
    let hello = ToDaemon::Hello {
        pid: std::process::id() as i32,
        comm: std::path::Path::new(&program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        cmdline: args
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        labels: common.labels.clone(),
        local_policy: prepared.local.render(),
        host: args.ip.map(|ip| crate::protocol::HostDecl {
            ip,
            name: args.name.clone(),
            lb: args.lb.unwrap_or_default(),
        }),
        backend: chosen.name().into(),
        attached: false,
        supervisor: None,
    };
    let port_range = config
        .services
        .port_range()
        .map_err(|e| UsageError(format!("{e:#}")))?;
    let host = args.ip.map(|ip| HostIdentity {
        ip,
        name: args.name.clone(),
        lb: args.lb.unwrap_or_default(),
        bind_ip: config.services.bind,
        expose: args.expose.clone(),
        ports: port_range,
        isolated: cmd.isolate.is_some(),
    });
    if let Some(ip) = args.ip {
        // A service is reached through the daemon: without one, --ip would
        // silently do nothing for anyone else.
        if args.no_daemon {
            return Err(UsageError(format!(
                "--ip {ip}: a service is reached through the daemon, and --no-daemon was given \
                 (drop it, or use --mount DIR to serve the control files from this trace)"
            ))
            .into());
        }
        if let Join::Away(why) | Join::Denied(why) = &prepared.join {
            return Err(UsageError(format!(
                "--ip {ip}: {why}: start `appswitch daemon` first, or use --mount DIR"
            ))
            .into());
        }
    }
    let mut linked = link(&common, &config, prepared, hello)?;
    linked.route(host);
    let net = &linked.net;
    // The daemon's DNS responder becomes the program's nameserver, through a
    // private mount (needs root: CAP_SYS_ADMIN for a mount namespace).
    let resolv = net.resolv_conf.lock().ok().and_then(|r| r.clone());
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    // The responder listens on a loopback address of the daemon's network
    // namespace: a program in another one could not reach it.
    let daemon_ns = net.netns.load(std::sync::atomic::Ordering::Relaxed);
    let same_ns = daemon_ns == 0 || daemon_ns == crate::procfs::netns(None);
    if let (Some(r), true, true, false) = (resolv, root, same_ns, args.no_dns) {
        let etc = std::path::PathBuf::from("/etc/resolv.conf");
        if r.exists() && etc.exists() {
            if let Some(iso) = cmd.isolate.as_mut() {
                // Its nameserver (the responder, on our loopback) is outside.
                iso.outside = nameservers(&r)
                    .into_iter()
                    .map(|ip| std::net::SocketAddr::new(ip, 53))
                    .collect();
            }
            cmd.bind_files.push((r, etc));
        }
    }
    let status = tracer::run(&cmd, &mut linked.handler)?;
    // Let the last reports (the program's final connections and events) reach the daemon.
    linked.finish();
    Ok(status.code())
}

/// The nameserver addresses of a resolv.conf.
fn nameservers(path: &std::path::Path) -> Vec<std::net::IpAddr> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse().ok())
        .collect()
}

/// Whether this process can join the daemon, seen before the program starts.
pub(super) enum Join {
    Yes,
    /// No daemon answers now (it may come back: the link keeps trying).
    Away(String),
    /// Its socket is not ours to use: it never lets us in.
    Denied(String),
}
