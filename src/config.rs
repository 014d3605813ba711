//! configs/appswitch.toml: what it holds and where it is read from.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Apply verdicts.
    #[default]
    Enforce,
    /// Let everything through; record what would have been refused.
    Monitor,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    #[default]
    Allow,
    Deny,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub default: DefaultAction,
    pub mode: Mode,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DaemonConfig {
    /// UNIX socket the daemon listens on and tracers connect to.
    pub socket: PathBuf,
    /// Where the daemon mounts the control filesystem.
    pub mount: PathBuf,
    /// Where policy and static services are saved.
    pub state_dir: PathBuf,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket: PathBuf::from("/run/appswitch/appswitch.sock"),
            mount: PathBuf::from("/appswitch"),
            state_dir: PathBuf::from("/var/lib/appswitch"),
        }
    }
}

/// Traced services (trace --ip).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServicesConfig {
    /// The address a traced service's real socket is bound to (port chosen
    /// by the kernel); clients are sent there.
    pub bind: std::net::IpAddr,
    /// "LO-HI": real ports come from this range instead ("": the kernel's choice).
    pub ports: String,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        ServicesConfig {
            bind: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            ports: String::new(),
        }
    }
}

impl ServicesConfig {
    /// The configured port range, if any.
    pub fn port_range(&self) -> Result<Option<(u16, u16)>> {
        if self.ports.is_empty() {
            return Ok(None);
        }
        let bad = || {
            anyhow::anyhow!(
                "[services] ports = {:?}: expected LO-HI, e.g. \"40000-40999\"",
                self.ports
            )
        };
        let (lo, hi) = self.ports.split_once('-').ok_or_else(bad)?;
        let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
        let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
        if lo == 0 || hi < lo {
            return Err(bad());
        }
        Ok(Some((lo, hi)))
    }
}

/// The daemon's DNS responder.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Where it listens (UDP); "" turns it off. Port 53: resolv.conf has no port.
    pub listen: String,
    /// Names answered: NAME and NAME.<domain>.
    pub domain: String,
    /// Where other names are forwarded: IP[:PORT] entries, or "host" for the
    /// nameservers of /etc/resolv.conf when the daemon starts.
    pub upstream: Vec<String>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: "127.0.77.53:53".into(),
            domain: "appswitch.internal".into(),
            upstream: vec!["host".into()],
        }
    }
}

/// Cluster mode: one service table across hosts, kept in etcd.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// etcd endpoints (http://HOST:PORT); empty: no cluster.
    pub etcd: Vec<String>,
    /// Key prefix; this daemon writes `<prefix>nodes/<node>`.
    pub prefix: String,
    /// Lease TTL in seconds: a silent daemon's services vanish after this.
    pub ttl: u64,
    /// This host's name in the cluster ("": the hostname).
    pub node: String,
    /// The address other hosts reach this one at ("": from `interface`).
    pub address: String,
    /// Take the address from this interface ("": the first non-loopback IPv4).
    pub interface: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            etcd: Vec::new(),
            prefix: "/appswitch/".into(),
            ttl: 5,
            node: String::new(),
            address: String::new(),
            interface: String::new(),
        }
    }
}

/// The interception backend `appswitch trace` runs when neither --backend
/// nor $APPSWITCH_BACKEND nor `[trace] backend` says (configs/appswitch.toml
/// lists the same value: a test ties them).
pub const DEFAULT_BACKEND: tracer::Backend = tracer::Backend::Auto;

/// The backend names a user may give (`tracer::Backend::parse` also takes
/// `user-notification` for unotify).
pub const BACKEND_NAMES: &str = "auto, unotify or ptrace";

/// A backend name, or why it is not one (naming the value and the valid ones).
pub fn parse_backend(s: &str) -> std::result::Result<tracer::Backend, String> {
    tracer::Backend::parse(s)
        .ok_or_else(|| format!("unknown backend '{s}': expected {BACKEND_NAMES}"))
}

/// `appswitch trace`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceConfig {
    /// The interception backend (None: not set here).
    #[serde(deserialize_with = "backend_value")]
    pub backend: Option<tracer::Backend>,
    /// Run every traced program isolated (`trace --isolate`) unless
    /// `--no-isolate` says otherwise.
    pub isolate: bool,
}

fn backend_value<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<tracer::Backend>, D::Error> {
    let s = String::deserialize(d)?;
    parse_backend(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub policy: PolicyConfig,
    pub trace: TraceConfig,
    pub daemon: DaemonConfig,
    pub services: ServicesConfig,
    pub dns: DnsConfig,
    pub cluster: ClusterConfig,
    /// The file this was read from (None: the built-in defaults).
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

pub const SYSTEM_PATH: &str = "/etc/appswitch/appswitch.toml";

impl Config {
    /// Read the configuration: `explicit`, else $APPSWITCH_CONFIG, else the
    /// system file if it exists, else the defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        let path = match (explicit, std::env::var_os("APPSWITCH_CONFIG")) {
            (Some(p), _) => Some(p.to_path_buf()),
            (None, Some(p)) => Some(PathBuf::from(p)),
            (None, None) => Some(PathBuf::from(SYSTEM_PATH)).filter(|p| p.exists()),
        };
        match path {
            None => Ok(Config::default()),
            Some(p) => {
                let text = std::fs::read_to_string(&p)
                    .with_context(|| format!("reading config {}", p.display()))?;
                let mut c =
                    Config::parse(&text).with_context(|| format!("config {}", p.display()))?;
                c.path = Some(p);
                Ok(c)
            }
        }
    }

    pub fn parse(text: &str) -> Result<Config> {
        Ok(toml::from_str(text)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_is_the_default() {
        let shipped = include_str!("../configs/appswitch.toml");
        let c = Config::parse(shipped).unwrap();
        assert_eq!(c.policy.default, DefaultAction::Allow);
        assert_eq!(c.policy.mode, Mode::Enforce);
        assert_eq!(c.trace.backend, Some(DEFAULT_BACKEND));
        let d = DaemonConfig::default();
        assert_eq!(c.daemon.socket, d.socket);
        assert_eq!(c.daemon.mount, d.mount);
        assert_eq!(c.daemon.state_dir, d.state_dir);
        assert_eq!(c.services.bind, ServicesConfig::default().bind);
        assert_eq!(c.services.port_range().unwrap(), None);
        let mut r = ServicesConfig {
            ports: "40000-40009".into(),
            ..Default::default()
        };
        assert_eq!(r.port_range().unwrap(), Some((40000, 40009)));
        r.ports = "9-1".into();
        assert!(r.port_range().is_err());
        let cl = ClusterConfig::default();
        assert_eq!(
            (
                c.cluster.etcd,
                c.cluster.prefix,
                c.cluster.ttl,
                c.cluster.node
            ),
            (cl.etcd, cl.prefix, cl.ttl, cl.node)
        );
        assert_eq!(
            (c.cluster.address, c.cluster.interface),
            (cl.address, cl.interface)
        );
        let dns = DnsConfig::default();
        assert_eq!(
            (c.dns.listen, c.dns.domain, c.dns.upstream),
            (dns.listen, dns.domain, dns.upstream)
        );
    }

    #[test]
    fn trace_backend_is_read_and_a_bad_one_is_named() {
        let c = Config::parse("[trace]\nbackend = \"auto\"\n").unwrap();
        assert_eq!(c.trace.backend, Some(tracer::Backend::Auto));
        assert_eq!(Config::parse("").unwrap().trace.backend, None);
        let e = Config::parse("[trace]\nbackend = \"strace\"\n").unwrap_err();
        let e = format!("{e:#}");
        assert!(
            e.contains("'strace'") && e.contains("auto, unotify or ptrace"),
            "{e}"
        );
        assert!(parse_backend("bogus").is_err());
        assert_eq!(parse_backend("ptrace"), Ok(tracer::Backend::Ptrace));
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = Config::parse("[policy]\ndefualt = \"deny\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("defualt"), "{e:#}");
    }
}
