//! The appswitch binary: a thin shell over the library (src/lib.rs).

use appswitch::cli::{load_config, BackendArgs, Cli, Cmd, DaemonArgs, UsageError};
use appswitch::daemon;
use appswitch::stderr;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Where appswitch's messages go. Under `trace` they share the program's
    // stderr, so what happens to its calls is said only when asked for:
    // with --log-file, or with RUST_LOG. An attached program's stderr is
    // its own: attach's messages go to the supervisor's.
    let log_file = match &cli.command {
        Cmd::Trace(t) => t.log_file.clone(),
        Cmd::Attach(a) => a.log_file.clone(),
        Cmd::Daemon(_) | Cmd::Detach(_) | Cmd::Backend(_) | Cmd::GenerateAssets(_) => None,
    };
    let asked = log_file.is_some() || std::env::var_os("RUST_LOG").is_some();
    let default = if asked || matches!(cli.command, Cmd::Daemon(_) | Cmd::Attach(_)) {
        "warn,fuser=error"
    } else {
        "warn,fuser=error,appswitch::calls=off"
    };
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default));
    // Never block or panic on our own stderr (see src/stderr.rs).
    logger
        .format_timestamp(None)
        .format_target(false)
        .target(env_logger::Target::Pipe(Box::new(stderr::Stderr)));
    if let Some(path) = &log_file {
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            Ok(f) => {
                logger
                    .target(env_logger::Target::Pipe(Box::new(f)))
                    .format_timestamp_micros();
            }
            Err(e) => {
                stderr::say(format_args!("--log-file {}: {e}", path.display()));
                stderr::finish(FINISH);
                return ExitCode::from(2);
            }
        }
    }
    logger.init();
    let r = match cli.command {
        Cmd::Trace(args) => appswitch::trace::command::run(*args),
        // Both say what went wrong themselves (exit status 2: not attached).
        Cmd::Attach(args) => Ok(appswitch::trace::attach::run(*args)),
        Cmd::Detach(args) => Ok(appswitch::trace::attach::detach_cmd(args)),
        Cmd::Daemon(args) => daemon_cmd(args).map(|()| 0),
        Cmd::Backend(args) => backend_cmd(args).map(|()| 0),
        Cmd::GenerateAssets(args) => appswitch::assets::generate(&args.out).map(|_| 0),
    };
    let code = match r {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            stderr::say(format_args!("{e:#}"));
            ExitCode::from(e.downcast_ref::<UsageError>().map_or(127, |_| 2))
        }
    };
    stderr::finish(FINISH);
    code
}

/// How long to wait at exit for our last messages to reach stderr.
const FINISH: std::time::Duration = std::time::Duration::from_millis(300);

fn daemon_cmd(args: DaemonArgs) -> anyhow::Result<()> {
    let mut config = load_config(args.config.as_deref())?;
    if let Some(etcd) = args.cluster {
        config.cluster.etcd = etcd;
    }
    daemon::run(&config, args.mount.as_deref())
}

fn backend_cmd(args: BackendArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref())?;
    let text = appswitch::trace::backend::report(args.backend, &config)?;
    use std::io::Write;
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| anyhow::anyhow!("writing to stdout: {e}"))
}
