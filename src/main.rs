//! The appswitch binary: a thin shell over the tracer and the policy side.

mod cli;

use anyhow::Context;
use appswitch::config::{Config, DefaultAction};
use appswitch::enforcer::Enforcer;
use appswitch::events;
use appswitch::rules::{self, Policy, Verb};
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
            ExitCode::from(e.downcast_ref::<UsageError>().map_or(127, |_| 2))
        }
    }
}

/// An error in what the user gave us (exit status 2, like a usage error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

fn load_policy(args: &TraceArgs, config: &Config) -> anyhow::Result<Policy> {
    let mut default_deny = config.policy.default == DefaultAction::Deny;
    let Some(path) = &args.policy else {
        return Ok(Policy::new(Vec::new(), default_deny));
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading policy {}", path.display()))?;
    let file =
        rules::parse_policy(&text).map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    for (i, r) in file.rules.iter().enumerate() {
        if let Some(rules::AddrMatch {
            host: rules::Host::Service(s),
            ..
        }) = &r.addr
        {
            log::warn!(
                "{}: rule {} names service '{s}', which is not known (services come with the daemon): it matches nothing yet",
                path.display(),
                i + 1
            );
        }
    }
    if let Some(v) = file.default {
        default_deny = v == Verb::Deny;
    }
    Ok(Policy::new(file.rules, default_deny))
}

fn trace(args: TraceArgs) -> anyhow::Result<i32> {
    let config = Config::load(args.config.as_deref()).map_err(|e| UsageError(format!("{e:#}")))?;
    let policy = load_policy(&args, &config)?;
    let mode = args.mode.unwrap_or(config.policy.mode);
    let sink = match &args.events {
        Some(path) => Some(
            events::EventSink::open(path)
                .with_context(|| format!("opening events file {}", path.display()))?,
        ),
        None => None,
    };
    let policed = args.policy.is_some() || policy.default_deny();
    let mut handler = Enforcer::new(policy, mode, policed, sink, args.labels.unwrap_or_default());
    let mut words = args.command.into_iter();
    let program = words.next().context("no program given")?;
    let cmd = tracer::Command {
        program,
        args: words.collect(),
    };
    Ok(tracer::run(&cmd, &mut handler)?.code())
}
