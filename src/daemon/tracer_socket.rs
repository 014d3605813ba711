//! The daemon's UNIX socket: one thread per tracer reads its reports; a
//! writer thread per tracer sends what the State pushes.

use super::peers::Peers;
use super::state::lock;
use super::state::State;
use crate::protocol::{ToDaemon, ToTracer};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};

/// Bind the socket (replacing a stale one) and serve tracers in the background.
pub fn serve(path: &Path, state: Arc<Mutex<State>>) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    let peers = Arc::new(super::peers::Peers::default());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new()
        .name("appswitch-accept".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let (state, peers) = (state.clone(), peers.clone());
                let _ = std::thread::Builder::new()
                    .name("appswitch-tracer".into())
                    .spawn(move || tracer_session(stream, state, peers));
            }
        })?;
    Ok(())
}

fn tracer_session(stream: UnixStream, state: Arc<Mutex<State>>, peers: Arc<Peers>) {
    let Ok(mut w) = stream.try_clone() else {
        return;
    };
    let mut lines = BufReader::new(stream).lines();
    let Some(Ok(first)) = lines.next() else {
        return;
    };
    let Ok(hello) = serde_json::from_str::<ToDaemon>(&first) else {
        log::warn!("a tracer did not say hello: {first:.80}");
        return;
    };
    if let ToDaemon::Pick { .. } | ToDaemon::Announce { .. } | ToDaemon::Who { .. } = hello {
        return pick_session(hello, lines, w, state, &peers);
    }
    let (tx, rx) = channel::<ToTracer>();
    let Some(app) = lock(&state).register(hello, tx) else {
        return;
    };
    let _ = std::thread::Builder::new()
        .name("appswitch-push".into())
        .spawn(move || {
            for msg in rx {
                if w.write_all(msg.line().as_bytes()).is_err() {
                    return;
                }
            }
        });
    for line in lines {
        let Ok(line) = line else { break };
        match serde_json::from_str::<ToDaemon>(&line) {
            Ok(msg) => lock(&state).handle(app, msg),
            Err(e) => log::warn!("app {app}: unreadable message: {e}"),
        }
    }
    lock(&state).unregister(app);
}

/// A tracer's connection for backend choices: each Pick and Who is
/// answered at once (Announce has no answer).
fn pick_session(
    first: ToDaemon,
    lines: std::io::Lines<BufReader<UnixStream>>,
    mut w: UnixStream,
    state: Arc<Mutex<State>>,
    peers: &Peers,
) {
    let mut next = Some(first);
    let mut lines = lines;
    while let Some(msg) = next.take() {
        let reply = match msg {
            ToDaemon::Pick { vip, labels, from } => {
                let r = pick(&state, vip, &labels);
                if let (Ok(to), Some(_)) = (r, from) {
                    peers.picked(to);
                }
                Some(ToTracer::Picked {
                    to: r.ok(),
                    why: r.err(),
                })
            }
            ToDaemon::Announce {
                local,
                vip,
                backend,
            } => {
                peers.announce(local, vip, backend);
                None
            }
            ToDaemon::Who { peer, backend } => Some(ToTracer::Peer {
                vip: peers.who(peer, backend),
            }),
            _ => None,
        };
        if let Some(reply) = reply {
            if w.write_all(reply.line().as_bytes()).is_err() {
                return;
            }
        }
        next = match lines.next() {
            Some(Ok(l)) => serde_json::from_str(&l).ok(),
            _ => None,
        };
    }
}

/// The backend for a connect to `vip`: the route is read under the lock,
/// the kernel queried without it, the choice made under it again.
fn pick(
    state: &Arc<Mutex<State>>,
    vip: std::net::SocketAddr,
    labels: &crate::services::routes::Labels,
) -> Result<std::net::SocketAddr, crate::services::balancer::NoBackend> {
    let (route, probe) = {
        let s = lock(state);
        (s.routes.route(&vip).cloned(), s.probe())
    };
    let route = route.ok_or(crate::services::balancer::NoBackend::NoneLive)?;
    let leastconn = route.lb == crate::services::static_table::Lb::LeastConn;
    let health = probe.assess(&route, &probe.query([&route], leastconn));
    lock(state).choose(&route, &health, labels)
}
