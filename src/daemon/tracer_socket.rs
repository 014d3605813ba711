//! The daemon's UNIX socket: one thread per tracer reads its reports; a
//! writer thread per tracer sends what the State pushes.

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
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new()
        .name("appswitch-accept".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = state.clone();
                let _ = std::thread::Builder::new()
                    .name("appswitch-tracer".into())
                    .spawn(move || tracer_session(stream, state));
            }
        })?;
    Ok(())
}

fn tracer_session(stream: UnixStream, state: Arc<Mutex<State>>) {
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
    let (tx, rx) = channel::<ToTracer>();
    let registered = lock(&state).register(hello, tx);
    let Some(app) = registered else {
        // Refused: say why, then close.
        for msg in rx.try_iter() {
            let _ = w.write_all(msg.line().as_bytes());
        }
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
        match ToDaemon::parse(&line) {
            Ok(msg) => crate::daemon::state::handle_reported(&state, app, msg),
            Err(e) => log::warn!("app {app}: unreadable message: {e}"),
        }
    }
    lock(&state).unregister(app);
}
