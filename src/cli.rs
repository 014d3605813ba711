//! Command-line interface.

use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;

/// appswitch gives any Linux program an application-level network: its
/// network system calls are intercepted at the socket layer (ptrace with a
/// seccomp-BPF filter; static binaries, Go and raw syscalls included) and
/// checked, redirected or recorded. After connect() the kernel carries the
/// data: nothing sits in the data path.
#[derive(Parser, Debug)]
#[command(name = "appswitch", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run a program under the tracer.
    ///
    /// Only network calls stop the program (connect, bind, listen, accept,
    /// sendto/sendmsg/sendmmsg with an address, and with --events also socket,
    /// getsockname and getpeername); everything else runs at native speed.
    /// Calls made through the i386 ABI (int 0x80, socketcall) are trapped too.
    /// Children, threads and exec'd programs stay traced. The exit status is
    /// the program's (128+N if it died of signal N); signals sent to this
    /// process with kill(1) are passed on to the program.
    ///
    /// Example:
    ///   appswitch trace --events /tmp/ev.jsonl -- curl -s http://127.0.0.1:8000/
    #[command(verbatim_doc_comment)]
    Trace(TraceArgs),
}

#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    /// Write one JSON line per intercepted call to FILE ("-" for stderr):
    /// time, pid, tid, comm, abi, call, fd, family, protocol, address,
    /// verdict, result (the return value, or the errno name on failure).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,

    /// The program to run, and its arguments (after "--").
    #[arg(
        required = true,
        trailing_var_arg = true,
        value_name = "PROG [ARGS]..."
    )]
    pub command: Vec<OsString>,
}
