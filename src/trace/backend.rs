//! Which interception backend a trace runs: asked for with `--backend`, then
//! $APPSWITCH_BACKEND, then `[trace] backend` in the config, then the
//! built-in default; chosen by the tracer crate (`auto` probes the kernel).
//! `appswitch backend` prints the same choice.

use crate::cli::UsageError;
use crate::config::{parse_backend, Config, DEFAULT_BACKEND};
use std::fmt;

/// The environment variable that selects the backend (below --backend,
/// above the config file).
pub const ENV: &str = "APPSWITCH_BACKEND";

/// Where the backend asked for came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    Config(std::path::PathBuf),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag => f.write_str("--backend"),
            Source::Env => f.write_str(ENV),
            Source::Config(p) if p.as_os_str().is_empty() => {
                f.write_str("[trace] backend in the config")
            }
            Source::Config(p) => write!(f, "[trace] backend in {}", p.display()),
            Source::Default => f.write_str("the built-in default"),
        }
    }
}

/// The backend asked for, and by whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    pub backend: tracer::Backend,
    pub from: Source,
}

/// The backend asked for: `flag`, else $APPSWITCH_BACKEND (unset or empty:
/// not given), else the config's, else the built-in default. A bad value
/// in the environment is a usage error naming it.
pub fn asked(flag: Option<tracer::Backend>, config: &Config) -> Result<Asked, UsageError> {
    asked_with(flag, std::env::var_os(ENV), config)
}

fn asked_with(
    flag: Option<tracer::Backend>,
    env: Option<std::ffi::OsString>,
    config: &Config,
) -> Result<Asked, UsageError> {
    if let Some(backend) = flag {
        return Ok(Asked {
            backend,
            from: Source::Flag,
        });
    }
    if let Some(v) = env.filter(|v| !v.is_empty()) {
        let s = v.to_string_lossy();
        let backend = parse_backend(&s).map_err(|e| UsageError(format!("{ENV}={s}: {e}")))?;
        return Ok(Asked {
            backend,
            from: Source::Env,
        });
    }
    if let Some(backend) = config.trace.backend {
        let path = config.path.clone().unwrap_or_default();
        return Ok(Asked {
            backend,
            from: Source::Config(path),
        });
    }
    Ok(Asked {
        backend: DEFAULT_BACKEND,
        from: Source::Default,
    })
}

impl Asked {
    /// The backend that runs. `unotify` where the kernel lacks something
    /// it needs is a usage error with the reason; `auto` falls back to
    /// ptrace (and logs why).
    pub fn choose(&self) -> Result<tracer::Chosen, UsageError> {
        self.backend.choose().map_err(|why| match self.from {
            Source::Flag => UsageError(format!("--backend {}: {why}", self.backend.name())),
            Source::Env => UsageError(format!("{ENV}={}: {why}", self.backend.name())),
            Source::Config(_) | Source::Default => UsageError(format!("{}: {why}", self.from)),
        })
    }
}

/// `appswitch backend`: what `trace` would run, and why, as key=value lines.
pub fn report(flag: Option<tracer::Backend>, config: &Config) -> Result<String, UsageError> {
    let asked = asked(flag, config)?;
    let chosen = asked.choose()?;
    let unotify = match tracer::unotify_support() {
        Ok(()) => "available".to_string(),
        Err(why) => format!("unavailable: {why}"),
    };
    Ok(format!(
        "backend={}\nasked={}\nfrom={}\nunotify={unotify}\n",
        chosen.name(),
        asked.backend.name(),
        asked.from,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        let mut c = Config::parse(text).unwrap();
        c.path = Some("/etc/x.toml".into());
        c
    }

    #[test]
    fn flag_then_env_then_config_then_default() {
        let none = Config::default();
        let conf = config("[trace]\nbackend = \"auto\"\n");
        let env = || Some(std::ffi::OsString::from("unotify"));
        let got = |f, e, c| asked_with(f, e, c).unwrap();
        assert_eq!(
            got(Some(tracer::Backend::Ptrace), env(), &conf),
            Asked {
                backend: tracer::Backend::Ptrace,
                from: Source::Flag
            }
        );
        assert_eq!(
            got(None, env(), &conf),
            Asked {
                backend: tracer::Backend::Unotify,
                from: Source::Env
            }
        );
        assert_eq!(
            got(None, Some("".into()), &conf),
            Asked {
                backend: tracer::Backend::Auto,
                from: Source::Config("/etc/x.toml".into())
            }
        );
        assert_eq!(
            got(None, None, &none),
            Asked {
                backend: DEFAULT_BACKEND,
                from: Source::Default
            }
        );
    }

    #[test]
    fn a_bad_environment_value_names_itself_and_the_valid_ones() {
        let e = asked_with(None, Some("strace".into()), &Config::default()).unwrap_err();
        assert_eq!(
            e.0,
            "APPSWITCH_BACKEND=strace: unknown backend 'strace': expected auto, unotify or ptrace"
        );
        // A flag wins over a bad environment: it is never read.
        assert!(asked_with(
            Some(tracer::Backend::Ptrace),
            Some("strace".into()),
            &Config::default()
        )
        .is_ok());
    }
}
