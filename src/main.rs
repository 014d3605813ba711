//! The appswitch binary: a thin shell over the tracer and the policy side.

mod cli;
mod events;

use anyhow::Context;
use clap::Parser;
use cli::{Cli, Cmd, TraceArgs};
use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .format_target(false)
        .init();
    let cli = Cli::parse();
    let r = match cli.command {
        Cmd::Trace(args) => trace(args),
    };
    match r {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("appswitch: {e:#}");
            // 127 like a shell for a program that cannot be run.
            ExitCode::from(127)
        }
    }
}

fn trace(args: TraceArgs) -> anyhow::Result<i32> {
    let mut words = args.command.into_iter();
    let program = words.next().context("no program given")?;
    let cmd = tracer::Command {
        program,
        args: words.collect(),
    };
    let status = match &args.events {
        Some(path) => {
            let sink = events::EventSink::open(path)
                .with_context(|| format!("opening events file {}", path.display()))?;
            tracer::run(&cmd, &mut events::Recorder::new(sink))?
        }
        None => tracer::run(&cmd, &mut tracer::PassThrough)?,
    };
    Ok(status.code())
}
