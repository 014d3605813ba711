//! The appswitch binary: a thin shell over the tracer and the policy side.

mod cli;

use anyhow::Context;
use appswitch::client;
use appswitch::config::{Config, DefaultAction};
use appswitch::daemon;
use appswitch::enforcer::{Enforcer, Reporter};
use appswitch::events;
use appswitch::live::{LiveNet, LivePolicy, Snapshot};
use appswitch::policytable::{self, PolicyTable};
use appswitch::protocol::ToDaemon;
use appswitch::router::{HostIdentity, Router};
use appswitch::rules;
use clap::Parser;
use cli::{Cli, Cmd, DaemonArgs, TraceArgs};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,fuser=error"))
        .format_timestamp(None)
        .format_target(false)
        .init();
    let cli = Cli::parse();
    let r = match cli.command {
        Cmd::Trace(args) => trace(args),
        Cmd::Daemon(args) => daemon_cmd(args).map(|()| 0),
    };
    match r {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("appswitch: {e:#}");
            ExitCode::from(e.downcast_ref::<UsageError>().map_or(127, |_| 2))
        }
    }
}

/// An error in what the user gave us (exit status 2, like a usage error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| UsageError(format!("{e:#}")).into())
}

fn daemon_cmd(args: DaemonArgs) -> anyhow::Result<()> {
    let mut config = load_config(args.config.as_deref())?;
    if let Some(etcd) = args.cluster {
        config.cluster.etcd = etcd;
    }
    daemon::run(&config, args.mount.as_deref())
}

/// The trace's own rules (--policy), as a table; the config's default otherwise.
fn load_policy(args: &TraceArgs, config: &Config) -> anyhow::Result<PolicyTable> {
    let default_deny = config.policy.default == DefaultAction::Deny;
    let Some(path) = &args.policy else {
        return Ok(PolicyTable::new(default_deny));
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading policy {}", path.display()))?;
    let file =
        rules::parse_policy(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    for (i, r) in file.rules.iter().enumerate() {
        if let Some(rules::AddrMatch {
            host: rules::Host::Service(s),
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
    Ok(policytable::from_file(file, default_deny))
}

fn trace(args: TraceArgs) -> anyhow::Result<i32> {
    let config = load_config(args.config.as_deref())?;
    let local = load_policy(&args, &config)?;
    let mode = args.mode.unwrap_or(config.policy.mode);
    let sink = match &args.events {
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
    let policed = args.policy.is_some() || local.default_deny();
    let labels = args.labels.clone().unwrap_or_default();
    let mut handler = Enforcer::new(live.clone(), policed, sink, labels.clone());
    let mut words = args.command.iter().cloned();
    let program = words.next().context("no program given")?;
    let mut cmd = tracer::Command {
        program: program.clone(),
        args: words.collect(),
        bind_files: Vec::new(),
    };
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
        labels,
        local_policy: local.render(),
        host: args.ip.map(|ip| appswitch::protocol::HostDecl {
            ip,
            name: args.name.clone(),
            lb: args.lb.unwrap_or_default(),
        }),
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
    });
    let net = LiveNet::new();
    let mut picker = None;
    let mut _mounted = None;
    let mut drained = None;
    if let Some(dir) = &args.mount {
        let (reporter, mounted) = in_process(dir, hello, &local, &live, &net, &config, args.mode)?;
        handler = handler.with_reporter(reporter);
        _mounted = Some(mounted);
    } else if !args.no_daemon && config.daemon.socket.exists() {
        let c = client::start(
            config.daemon.socket.clone(),
            hello,
            local.clone(),
            live.clone(),
            net.clone(),
            args.mode,
        );
        picker = Some(client::Picker::new(config.daemon.socket.clone()));
        // Start under the daemon's policy when it answers promptly; a stale
        // socket with no daemon behind it costs nothing.
        let end = Instant::now() + Duration::from_secs(1);
        let waiting = || {
            let s = c.state.load(std::sync::atomic::Ordering::Relaxed);
            s == client::TRYING || (s == client::CONNECTED && live.get().version == 0)
        };
        while waiting() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(2));
        }
        if live.get().version == 0 {
            log::warn!(
                "no answer from the daemon at {}; running on the local policy until it comes back",
                config.daemon.socket.display()
            );
        }
        handler = handler.with_reporter(Reporter {
            tx: c.tx,
            counters: c.counters,
            pids: c.pids,
            events_wanted: net.events_wanted.clone(),
        });
        drained = Some(c.drained);
    }
    // The daemon says where services listen (the node address in cluster mode).
    let host = host.map(|mut h| {
        if let Some(b) = net.bind.lock().ok().and_then(|b| *b) {
            h.bind_ip = b;
        }
        h
    });
    handler = handler.with_router(Router::new(net.clone(), host, picker));
    // The daemon's DNS responder becomes the program's nameserver, through a
    // private mount (needs root: CAP_SYS_ADMIN for a mount namespace).
    let resolv = net.resolv_conf.lock().ok().and_then(|r| r.clone());
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    // The responder listens on a loopback address of the daemon's network
    // namespace: a program in another one could not reach it.
    let daemon_ns = net.netns.load(std::sync::atomic::Ordering::Relaxed);
    let same_ns = daemon_ns == 0 || daemon_ns == appswitch::procfs::netns(None);
    if let (Some(r), true, true, false) = (resolv, root, same_ns, args.no_dns) {
        let etc = std::path::PathBuf::from("/etc/resolv.conf");
        if r.exists() && etc.exists() {
            cmd.bind_files.push((r, etc));
        }
    }
    let status = tracer::run(&cmd, &mut handler)?;
    // Let the last reports (the program's final connections and events) reach the daemon.
    drop(handler);
    if let Some(d) = drained {
        client::Client::drain(d, Duration::from_secs(1));
    }
    Ok(status.code())
}

/// `trace --mount DIR`: the daemon's state and files, in this process, for this program.
fn in_process(
    dir: &std::path::Path,
    hello: ToDaemon,
    local: &PolicyTable,
    live: &Arc<LivePolicy>,
    net: &Arc<LiveNet>,
    config: &Config,
    mode_override: Option<appswitch::config::Mode>,
) -> anyhow::Result<(Reporter, controlfs::Mounted)> {
    use appswitch::daemon::state::State;
    let default_deny = config.policy.default == DefaultAction::Deny;
    let state = Arc::new(Mutex::new(State::new(
        PolicyTable::new(default_deny),
        Default::default(),
        mode_override.unwrap_or(config.policy.mode),
        None,
    )));
    let (to_tracer, from_state) = std::sync::mpsc::channel();
    let app = daemon::files::lock(&state)
        .register(hello, to_tracer)
        .context("registering the program")?;
    let pids = Arc::new(Mutex::new(appswitch::enforcer::Processes::default()));
    {
        let (local, live, net, pids) = (local.clone(), live.clone(), net.clone(), pids.clone());
        std::thread::spawn(move || {
            for msg in from_state {
                client::apply(msg, &local, &live, &net, &pids, mode_override);
            }
        });
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<ToDaemon>(65_536);
    {
        let state = state.clone();
        std::thread::spawn(move || {
            for msg in rx {
                daemon::files::lock(&state).handle(app, msg);
            }
        });
    }
    let mounted = daemon::mount(state.clone(), dir)?;
    daemon::watch_event_readers(state);
    Ok((
        Reporter {
            tx,
            counters: Arc::new(Mutex::new(Default::default())),
            pids,
            events_wanted: net.events_wanted.clone(),
        },
        mounted,
    ))
}
