//! The tracer's request/answer line to the daemon for backend choices and
//! client VIPs (Pick, Announce, Who), on a connection of its own.

use super::daemon_link::RETRY;
use crate::protocol::{ToDaemon, ToTracer};
use crate::services::balancer::NoBackend;
use crate::services::routes::Labels;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// The tracer's line to the daemon for backend choices: one request, one
/// answer, on a connection of its own (the tracer thread waits for it; a
/// choice made centrally is what makes round robin exact across programs).
pub struct Picker {
    socket: PathBuf,
    conn: Option<(UnixStream, BufReader<UnixStream>)>,
    /// When the last attempt failed: no new attempt for RETRY.
    failed: Option<std::time::Instant>,
}

/// How long a choice may take before the tracer decides on its own.
const PICK_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a server waits to learn a client's virtual IP (the daemon waits
/// at most 50 ms for it).
const WHO_TIMEOUT: Duration = Duration::from_millis(100);

impl Picker {
    pub fn new(socket: PathBuf) -> Picker {
        Picker {
            socket,
            conn: None,
            failed: None,
        }
    }

    fn connect(&self) -> Option<(UnixStream, BufReader<UnixStream>)> {
        let s = UnixStream::connect(&self.socket).ok()?;
        s.set_read_timeout(Some(PICK_TIMEOUT)).ok()?;
        s.set_write_timeout(Some(PICK_TIMEOUT)).ok()?;
        let r = BufReader::new(s.try_clone().ok()?);
        Some((s, r))
    }

    /// One request; its answer line when `answer`, waiting at most
    /// `timeout`. None when the daemon cannot be asked (then no new attempt
    /// for RETRY).
    fn ask(&mut self, req: &ToDaemon, answer: bool, timeout: Duration) -> Option<ToTracer> {
        if self.conn.is_none() {
            if self.failed.is_some_and(|t| t.elapsed() < RETRY) {
                return None;
            }
            self.conn = self.connect();
            if self.conn.is_none() {
                self.failed = Some(std::time::Instant::now());
                return None;
            }
        }
        let line = req.line();
        let mut ok = self
            .conn
            .as_mut()
            .is_some_and(|(w, _)| w.write_all(line.as_bytes()).is_ok());
        if !ok {
            // A daemon that restarted: a new connection at once, once.
            self.conn = self.connect();
            ok = self
                .conn
                .as_mut()
                .is_some_and(|(w, _)| w.write_all(line.as_bytes()).is_ok());
        }
        let Some((_, r)) = self.conn.as_mut() else {
            self.failed = Some(std::time::Instant::now());
            return None;
        };
        let _ = r.get_ref().set_read_timeout(Some(timeout));
        let mut reply = None;
        if ok && answer {
            let mut line = String::new();
            ok = r.read_line(&mut line).is_ok_and(|n| n > 0);
            reply = serde_json::from_str::<ToTracer>(&line).ok();
            ok &= reply.is_some();
        }
        if !ok {
            self.conn = None;
            self.failed = Some(std::time::Instant::now());
        }
        reply
    }

    /// The daemon's choice; None when the daemon cannot be asked.
    pub fn pick(
        &mut self,
        vip: std::net::SocketAddr,
        labels: &Labels,
        from: Option<std::net::IpAddr>,
    ) -> Option<Result<std::net::SocketAddr, NoBackend>> {
        let req = ToDaemon::Pick {
            vip,
            labels: labels.clone(),
            from,
        };
        match self.ask(&req, true, PICK_TIMEOUT)? {
            ToTracer::Picked { to: Some(a), .. } => Some(Ok(a)),
            ToTracer::Picked { why, .. } => Some(Err(why.unwrap_or(NoBackend::NoneLive))),
            _ => None,
        }
    }

    /// Tell the daemon this program (virtual address `vip`) connected from `local`.
    pub fn announce(
        &mut self,
        local: std::net::SocketAddr,
        vip: std::net::SocketAddr,
        backend: std::net::SocketAddr,
    ) {
        let _ = self.ask(
            &ToDaemon::Announce {
                local,
                vip,
                backend,
            },
            false,
            PICK_TIMEOUT,
        );
    }

    /// The virtual address of the client at `peer` (connected to `backend`), if it has one.
    pub fn who(
        &mut self,
        peer: std::net::SocketAddr,
        backend: std::net::SocketAddr,
    ) -> Option<std::net::SocketAddr> {
        match self.ask(&ToDaemon::Who { peer, backend }, true, WHO_TIMEOUT)? {
            ToTracer::Peer { vip } => vip,
            _ => None,
        }
    }
}
