//! Which interception backend the traced programs of a test run under.
//!
//! The tests choose no backend themselves: `appswitch trace` inherits
//! `APPSWITCH_BACKEND` from the test's environment (scripts/test.sh runs the
//! suite once per backend). A test about one backend asks `backend()`: the
//! variable's value, checked against what really runs (a program under the
//! ptrace backend has a TracerPid; under user notification it has none), so a
//! variable that appswitch does not honour fails loudly instead of testing
//! the other backend.

use super::{appswitch, run, stdout};
use std::process::Command;
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Ptrace,
    Unotify,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Ptrace => "ptrace",
            Backend::Unotify => "unotify",
        }
    }
}

/// `APPSWITCH_BACKEND` as this test process inherited it (None: unset or empty).
pub fn requested() -> Option<String> {
    std::env::var("APPSWITCH_BACKEND")
        .ok()
        .filter(|s| !s.is_empty())
}

/// The backend a traced program runs under here (probed once).
pub fn backend() -> Backend {
    static SEEN: OnceLock<Backend> = OnceLock::new();
    *SEEN.get_or_init(|| {
        let out = run(Command::new(appswitch()).args([
            "trace",
            "--no-daemon",
            "--",
            "cat",
            "/proc/self/status",
        ]));
        assert_eq!(out.status.code(), Some(0), "trace cat: {out:?}");
        let status = stdout(&out);
        let tracer: i32 = status
            .lines()
            .find_map(|l| l.strip_prefix("TracerPid:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("TracerPid in /proc/self/status");
        let seen = if tracer != 0 {
            Backend::Ptrace
        } else {
            Backend::Unotify
        };
        match requested().as_deref() {
            Some("ptrace") | Some("unotify") => assert_eq!(
                requested().as_deref(),
                Some(seen.name()),
                "APPSWITCH_BACKEND asks for one backend and the program runs under another"
            ),
            _ => {}
        }
        seen
    })
}

/// Print why a test about the other backend does nothing here.
pub fn skip(why: &str) {
    println!("skipped under the {} backend: {why}", backend().name());
}
