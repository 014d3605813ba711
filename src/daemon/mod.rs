//! `appswitch daemon`: holds the policy, services, apps and connections,
//! mounts the control filesystem, and serves tracers on a UNIX socket.

pub mod files;
mod server;
pub mod state;

use crate::config::{Config, DefaultAction};
use anyhow::Context;
use files::Files;
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
            files::lock(&state).check_event_readers();
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
    let state = State::load(&d.state_dir, default_deny, config.policy.mode)?;
    let state = Arc::new(Mutex::new(state));
    let dir = mount_dir.unwrap_or(&d.mount);
    let mounted = mount(state.clone(), dir)?;
    watch_event_readers(state.clone());
    server::serve(&d.socket, state)
        .with_context(|| format!("listening on {}", d.socket.display()))?;
    eprintln!(
        "appswitch daemon: control filesystem at {}, tracers at {}, state in {}",
        dir.display(),
        d.socket.display(),
        d.state_dir.display()
    );
    let mut sig: libc::c_int = 0;
    // SAFETY: waits for one of the blocked signals.
    unsafe { libc::sigwait(&set, &mut sig) };
    log::info!("signal {sig}: unmounting and exiting");
    let _ = std::fs::remove_file(&d.socket);
    mounted
        .unmount()
        .with_context(|| format!("unmounting {}", dir.display()))?;
    Ok(())
}
