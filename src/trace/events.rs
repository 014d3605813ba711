//! `--events FILE`: one JSON line per intercepted call.

use serde::Serialize;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::SystemTime;
use tracer::sockaddr::family_name;
use tracer::{Call, Errno, Outcome, Verdict};

/// One line of the event log.
#[derive(Serialize, Debug)]
pub struct Event<'a> {
    pub time: String,
    pub pid: i32,
    pub tid: i32,
    pub comm: String,
    pub abi: &'static str,
    /// The interception backend: "unotify" or "ptrace".
    pub backend: &'static str,
    pub call: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// For rewrites: the address the call was carried out with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewritten: Option<String>,
    pub verdict: &'a str,
    /// The policy's decision: allow, deny or redirect (absent without a policy question).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    /// The deciding rule's ID (its line number in a --policy file, or its ID
    /// in /appswitch/policy); absent: the default decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    /// Where that rule came from: "file" (--policy) or "daemon".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_source: Option<&'static str>,
    /// The first `log` rule that matched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logged_by: Option<usize>,
    /// true in monitor mode: the decision was recorded, not applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<bool>,
    /// The return value, the errno name ("ECONNREFUSED"), or null when the
    /// call was passed to the kernel without watching its result.
    pub result: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

/// Where event lines go. Flushed after every line so `tail -f` sees them and
/// nothing is lost if the tracer is killed. On stderr ("-") they never
/// block the tracer: lines stderr does not take are dropped and counted
/// (src/stderr.rs).
pub struct EventSink {
    out: Box<dyn Write + Send>,
}

impl EventSink {
    pub fn open(path: &Path) -> io::Result<EventSink> {
        let out: Box<dyn Write + Send> = if path == Path::new("-") {
            Box::new(crate::stderr::Stderr)
        } else {
            Box::new(BufWriter::new(File::create(path)?))
        };
        Ok(EventSink { out })
    }

    pub fn write(&mut self, ev: &Event<'_>) {
        match serde_json::to_string(ev) {
            Ok(line) => self.write_line(&line),
            Err(e) => log::error!("writing event: {e}"),
        }
    }

    /// Write one event line (`line`: the event as JSON, without newline).
    pub fn write_line(&mut self, line: &str) {
        // One write per line: on stderr ("-") each write is one queued line.
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        let r = self.out.write_all(&buf).and_then(|()| self.out.flush());
        if let Err(e) = r {
            log::error!("writing event: {e}");
        }
    }
}

pub fn now() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

fn protocol_name(call: &Call) -> Option<String> {
    let (domain, sotype, proto) = match (call.socket, call.socket_args) {
        (Some(s), _) => (s.domain, s.sotype, s.protocol),
        (None, Some((d, t, p))) => (d, t & 0xf, p),
        _ => return None,
    };
    if domain != libc::AF_INET && domain != libc::AF_INET6 {
        return Some(
            match sotype {
                libc::SOCK_STREAM => "stream",
                libc::SOCK_DGRAM => "dgram",
                libc::SOCK_SEQPACKET => "seqpacket",
                libc::SOCK_RAW => "raw",
                _ => "other",
            }
            .into(),
        );
    }
    Some(match (sotype, proto) {
        (libc::SOCK_STREAM, 0 | libc::IPPROTO_TCP) => "tcp".into(),
        (libc::SOCK_DGRAM, 0 | libc::IPPROTO_UDP) => "udp".into(),
        (libc::SOCK_RAW, _) => "raw".into(),
        (libc::SOCK_DGRAM, libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6) => "icmp".into(),
        (libc::SOCK_SEQPACKET, _) => "seqpacket".into(),
        (t, p) => format!("type={t},proto={p}"),
    })
}

pub fn result_value(outcome: Outcome) -> serde_json::Value {
    match outcome {
        Outcome::Ok(v) => v.into(),
        Outcome::Err(e) => format!("{e:?}").into(),
        Outcome::Unknown => serde_json::Value::Null,
    }
}

/// Build the event for a finished call; `comm` is the program's name.
pub fn event<'a>(
    call: &'a Call,
    verdict: &'a Verdict,
    outcome: Outcome,
    comm: String,
    backend: tracer::Chosen,
) -> Event<'a> {
    let family = match (call.socket, call.socket_args, &call.addr) {
        (Some(s), _, _) => Some(family_name(s.domain)),
        (None, Some((d, _, _)), _) => Some(family_name(d)),
        (None, None, Some(a)) => Some(family_name(i32::from(a.family()))),
        _ => None,
    };
    Event {
        time: now(),
        pid: call.pid,
        tid: call.tid,
        comm,
        abi: call.abi.name(),
        backend: backend.name(),
        call: call.op.name(),
        fd: call.fd,
        family,
        protocol: protocol_name(call),
        address: call.addr.as_ref().map(|a| a.to_string()),
        rewritten: match verdict {
            Verdict::Rewrite(a) | Verdict::Answer(a) => Some(a.to_string()),
            _ => None,
        },
        verdict: verdict.name(),
        action: None,
        rule: None,
        rule_source: None,
        logged_by: None,
        monitor: None,
        result: result_value(outcome),
        reason: None,
    }
}

/// The event for a call the tracer refused on its own; `comm` is the
/// program's name, `backend` the one that runs it.
pub fn refusal<'a>(
    pid: i32,
    tid: i32,
    what: &'a str,
    errno: Errno,
    comm: String,
    backend: tracer::Chosen,
) -> Event<'a> {
    Event {
        time: now(),
        pid,
        tid,
        comm,
        abi: "",
        backend: backend.name(),
        call: "",
        fd: None,
        family: None,
        protocol: None,
        address: None,
        rewritten: None,
        verdict: "refused",
        action: None,
        rule: None,
        rule_source: None,
        logged_by: None,
        monitor: None,
        result: format!("{errno:?}").into(),
        reason: Some(what),
    }
}
