//! The appswitch binary: a thin shell over the library (src/lib.rs).

use appswitch::cli::{load_config, Cli, Cmd, DaemonArgs, UsageError};
use appswitch::daemon;
use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn,fuser=error"))
        .format_timestamp(None)
        .format_target(false)
        .init();
    let cli = Cli::parse();
    let r = match cli.command {
        Cmd::Trace(args) => appswitch::trace::command::run(args),
        Cmd::Daemon(args) => daemon_cmd(args).map(|()| 0),
    };
    match r {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("appswitch: {e:#}");
            ExitCode::from(e.downcast_ref::<UsageError>().map_or(127, |_| 2))
        }
    }
}

fn daemon_cmd(args: DaemonArgs) -> anyhow::Result<()> {
    let mut config = load_config(args.config.as_deref())?;
    if let Some(etcd) = args.cluster {
        config.cluster.etcd = etcd;
    }
    daemon::run(&config, args.mount.as_deref())
}
