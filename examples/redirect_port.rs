//! A test handler for the tracer: `redirect_port FROM TO [--events] -- PROG [ARGS]`
//! redirects every IPv4/IPv6 TCP or UDP connect() to port FROM to the same host
//! on port TO, and carries out every other connect by emulation too (so the
//! emulation path is exercised for allowed calls as well). With --events each
//! connect is printed to stderr as `connect ADDR -> VERDICT = RESULT`.
//!
//! It shows how the policy side plugs into the mechanism: implement
//! `tracer::NetHandler` and call `tracer::run`.

use std::ffi::OsString;
use tracer::{Call, Interests, NetHandler, Op, Outcome, SockAddr, Verdict};

struct Redirect {
    from: u16,
    to: u16,
    verbose: bool,
}

impl NetHandler for Redirect {
    fn interests(&self) -> Interests {
        Interests {
            connect: true,
            socket_info: true,
            ..Interests::NONE
        }
    }

    fn decide(&mut self, call: &Call) -> Verdict {
        match (&call.op, call.addr.as_ref().and_then(SockAddr::ip)) {
            (Op::Connect, Some(mut ip)) if ip.port() == self.from => {
                ip.set_port(self.to);
                Verdict::Rewrite(ip.into())
            }
            _ => Verdict::Allow,
        }
    }

    fn finished(&mut self, call: &Call, verdict: &Verdict, outcome: Outcome) {
        if self.verbose {
            let addr = call
                .addr
                .as_ref()
                .map(|a| a.to_string())
                .unwrap_or_default();
            let v = match verdict {
                Verdict::Rewrite(a) => format!("rewrite {a}"),
                v => v.name().to_string(),
            };
            eprintln!(
                "{} {} {addr} -> {v} = {outcome:?}",
                call.abi.name(),
                call.op.name()
            );
        }
    }
}

fn main() {
    let mut args = std::env::args_os().skip(1);
    let usage = || -> ! {
        eprintln!("usage: redirect_port FROM TO [--events] -- PROG [ARGS...]");
        std::process::exit(2)
    };
    let port = |a: Option<OsString>| -> u16 {
        a.and_then(|s| s.to_str()?.parse().ok())
            .unwrap_or_else(|| usage())
    };
    let from = port(args.next());
    let to = port(args.next());
    let mut verbose = false;
    let mut attach = None;
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--") => break,
            Some("--events") => verbose = true,
            Some("--attach") => attach = Some(port(args.next()) as i32),
            _ => usage(),
        }
    }
    // The backend, as for `appswitch trace`: $APPSWITCH_BACKEND (auto,
    // unotify, ptrace), else appswitch's built-in default.
    let asked = match std::env::var("APPSWITCH_BACKEND") {
        Ok(s) if !s.is_empty() => appswitch::config::parse_backend(&s).unwrap_or_else(|e| {
            eprintln!("redirect_port: APPSWITCH_BACKEND={s}: {e}");
            std::process::exit(2)
        }),
        _ => appswitch::config::DEFAULT_BACKEND,
    };
    let backend = asked.choose().unwrap_or_else(|why| {
        eprintln!("redirect_port: {why}");
        std::process::exit(2)
    });
    let mut h = Redirect { from, to, verbose };
    if let Some(pid) = attach {
        // Attach to a running process instead of starting one.
        let r = tracer::attach(pid, backend, &mut h, &mut |a| {
            println!(
                "attached pid={} backend={} threads={} stopped_us={}",
                a.pid,
                a.backend.name(),
                a.threads,
                a.stopped.as_micros()
            )
        });
        if let Err(e) = r {
            eprintln!("redirect_port: {e}");
            std::process::exit(2)
        }
        std::process::exit(0)
    }
    let program = args.next().unwrap_or_else(|| usage());
    let cmd = tracer::Command {
        user: None,
        program,
        args: args.collect(),
        bind_files: Vec::new(),
        backend,
        isolate: None,
    };
    match tracer::run(&cmd, &mut h) {
        Ok(status) => std::process::exit(status.code()),
        Err(e) => {
            eprintln!("redirect_port: {e}");
            std::process::exit(127)
        }
    }
}
