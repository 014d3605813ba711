//! `appswitch daemon`: holds the policy, services, apps and connections,
//! mounts the control filesystem, and serves tracers on a UNIX socket.

pub mod cluster;
pub mod control_files;
pub mod health;
pub mod health_watch;

mod metrics;
pub mod state;
mod tracer_socket;
mod write_txn;

use crate::config::{Config, DefaultAction};
use crate::services::shared::SharedTable;
use anyhow::Context;
use control_files::Files;
use state::State;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Block the signals the daemon waits for, in this thread and every thread
/// it starts afterwards; returns the set for sigwait.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain signal-mask manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// Every 200 ms, tell tracers whether /appswitch/events is being read.
pub fn watch_event_readers(state: Arc<Mutex<State>>) {
    let _ = std::thread::Builder::new()
        .name("appswitch-events".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(200));
            state::lock(&state).check_event_readers();
        });
}

/// Mount `state` at `dir`, detaching a dead mount left there by a crash.
pub fn mount(state: Arc<Mutex<State>>, dir: &Path) -> anyhow::Result<controlfs::Mounted> {
    if controlfs::serving(dir).unwrap_or(false) {
        anyhow::bail!(
            "{} is served by another appswitch (daemon or trace --mount); stop it first",
            dir.display()
        );
    }
    if controlfs::detach_stale(dir)
        .with_context(|| format!("checking {} for a stale mount", dir.display()))?
    {
        log::warn!("detached a stale mount at {}", dir.display());
    }
    let opts = controlfs::MountOptions {
        allow_other: true,
        fsname: "appswitch".into(),
    };
    controlfs::mount(Arc::new(Files::new(state)), dir, opts)
        .with_context(|| format!("mounting {}", dir.display()))
}

/// Where the cluster side delivers the other nodes' tables and its status.
struct StateSink(Arc<Mutex<State>>);

impl cluster::Sink for StateSink {
    fn remote(&self, nodes: std::collections::BTreeMap<String, cluster::NodeRecord>) {
        state::lock(&self.0).set_remote(nodes);
    }
    fn status(&self, status: cluster::Status) {
        state::lock(&self.0).set_cluster_status(status);
    }
}

/// Names for the DNS responder: the daemon's route table.
struct StateNames(Arc<Mutex<State>>);

impl crate::services::dns::Names for StateNames {
    fn lookup(&self, name: &str) -> Vec<std::net::IpAddr> {
        state::lock(&self.0).routes.lookup(name)
    }
}

/// Start the DNS responder ([dns] in the config) and write the resolv.conf
/// traced programs get. A responder that cannot listen is a warning: the
/// daemon runs on without names.
fn start_dns(config: &Config, state: &Arc<Mutex<State>>) -> anyhow::Result<()> {
    use crate::services::dns;
    let c = &config.dns;
    if c.listen.is_empty() {
        return Ok(());
    }
    let listen: std::net::SocketAddr = c
        .listen
        .parse()
        .with_context(|| format!("[dns] listen = {:?}: expected IP:PORT", c.listen))?;
    if listen.port() != 53 {
        log::warn!(
            "[dns] listen {listen}: resolv.conf can only name port 53; programs will not find it"
        );
    }
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let (host_ns, host_search) = dns::parse_resolv_conf(&host);
    let mut upstream = Vec::new();
    for u in &c.upstream {
        if u == "host" {
            upstream.extend(
                host_ns
                    .iter()
                    .filter(|ip| **ip != listen.ip())
                    .map(|ip| std::net::SocketAddr::new(*ip, 53)),
            );
        } else {
            let a = u
                .parse::<std::net::SocketAddr>()
                .or_else(|_| u.parse::<std::net::IpAddr>().map(|ip| (ip, 53).into()))
                .with_context(|| {
                    format!("[dns] upstream {u:?}: expected IP, IP:PORT or \"host\"")
                })?;
            upstream.push(a);
        }
    }
    let responder = dns::Responder {
        domain: c.domain.clone(),
        upstream,
    };
    if let Err(e) = dns::serve(listen, responder, Arc::new(StateNames(state.clone()))) {
        log::warn!("DNS responder off: cannot listen on {listen}: {e}");
        return Ok(());
    }
    let dir = config
        .daemon
        .socket
        .parent()
        .unwrap_or(Path::new("/run/appswitch"));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("resolv.conf");
    std::fs::write(
        &path,
        dns::resolv_conf(listen.ip(), &c.domain, &host_search),
    )
    .with_context(|| format!("writing {}", path.display()))?;
    state::lock(state).resolv_conf = Some(path);
    Ok(())
}

pub fn run(config: &Config, mount_dir: Option<&Path>) -> anyhow::Result<()> {
    let set = block_signals();
    let d = &config.daemon;
    if std::os::unix::net::UnixStream::connect(&d.socket).is_ok() {
        anyhow::bail!(
            "another appswitch daemon answers at {}; stop it first",
            d.socket.display()
        );
    }
    let default_deny = config.policy.default == DefaultAction::Deny;
    std::fs::create_dir_all(&d.state_dir)
        .with_context(|| format!("creating {}", d.state_dir.display()))?;
    let mut state = State::load(&d.state_dir, default_deny, config.policy.mode)?;
    state.bind_ip = config.services.bind;
    // The balancing state tracers map (services::shared), next to the socket.
    let shared_path = d.socket.with_extension("shm");
    if let Some(dir) = shared_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    match SharedTable::create(&shared_path) {
        Ok(shared) => {
            state.shared = Some(Arc::new(shared));
            state.shared_path = Some(shared_path.clone());
            state.push_routes();
        }
        // Services still work: each traced program then balances on its own.
        Err(e) => log::warn!(
            "cannot create the shared balancing table {}: {e}: round robin is per program, \
             and backend health is not shared",
            shared_path.display()
        ),
    }
    let state = Arc::new(Mutex::new(state));
    start_dns(config, &state)?;
    if !config.cluster.etcd.is_empty() {
        let c = cluster::Cluster::start(&config.cluster, StateSink(state.clone()))
            .context("cluster mode")?;
        let mut s = state::lock(&state);
        // Services must be reachable from other hosts: a loopback bind
        // address becomes the node's address.
        if s.bind_ip.is_loopback() {
            s.bind_ip = c.address;
        }
        log::info!(
            "cluster: node {} at {}, etcd {}",
            c.node,
            c.address,
            c.endpoints.join(",")
        );
        s.cluster = Some(c);
        s.push_routes();
    }
    let dir = mount_dir.unwrap_or(&d.mount);
    let mounted = mount(state.clone(), dir)?;
    watch_event_readers(state.clone());
    health_watch::watch(state.clone());
    let state_for_exit = state.clone();
    tracer_socket::serve(&d.socket, state)
        .with_context(|| format!("listening on {}", d.socket.display()))?;
    crate::stderr::line(
        format!(
            "appswitch daemon: control filesystem at {}, tracers at {}, state in {}",
            dir.display(),
            d.socket.display(),
            d.state_dir.display()
        )
        .as_bytes(),
    );
    let mut sig: libc::c_int = 0;
    // SAFETY: waits for one of the blocked signals.
    unsafe { libc::sigwait(&set, &mut sig) };
    log::info!("signal {sig}: unmounting and exiting");
    // Leave the cluster first: the lease is revoked, our services vanish
    // from the other hosts at once instead of after the TTL.
    let cluster = state::lock(&state_for_exit).cluster.take();
    if let Some(c) = cluster {
        c.shutdown();
    }
    let _ = std::fs::remove_file(&d.socket);
    let _ = std::fs::remove_file(&shared_path);
    mounted
        .unmount()
        .with_context(|| format!("unmounting {}", dir.display()))?;
    Ok(())
}
