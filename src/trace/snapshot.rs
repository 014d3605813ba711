//! The policy a tracer decides with, swappable while the program runs: the
//! trace's own rules (--policy) first, then the daemon's global rules.

use crate::config::Mode;
use crate::policy::table::PolicyTable;
use crate::policy::{AddrMatch, Host, Policy, Ports, Rule};
use crate::services::routes::RouteTable;
use crate::services::static_table::ServiceTable;
use ipnet::IpNet;
use std::sync::{Arc, RwLock};

/// Where a rule came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The trace's --policy file.
    File,
    /// The daemon's /appswitch/policy.
    Daemon,
}

/// One evaluable version of the policy.
pub struct Snapshot {
    pub policy: Policy,
    /// (source, ID) of each rule by position.
    pub ids: Vec<(Source, u32)>,
    pub mode: Mode,
    pub version: u64,
}

impl Snapshot {
    /// The trace's own rules, then the global ones; service names resolved
    /// against the static `services`, then the names of traced services in
    /// `routes` (an unknown name matches nothing).
    pub fn combine(
        local: &PolicyTable,
        global: Option<&PolicyTable>,
        services: &ServiceTable,
        routes: &RouteTable,
        mode: Mode,
        version: u64,
    ) -> Snapshot {
        let mut rules = Vec::new();
        let mut ids = Vec::new();
        for (id, r) in local.entries() {
            rules.push(resolve(r, services, routes));
            ids.push((Source::File, *id));
        }
        for (id, r) in global.map(|g| g.entries()).unwrap_or_default() {
            rules.push(resolve(r, services, routes));
            ids.push((Source::Daemon, *id));
        }
        // Either side's `default deny` holds: a trace's strict policy stays strict under a daemon.
        let default_deny = local.default_deny() || global.is_some_and(|g| g.default_deny());
        Snapshot {
            policy: Policy::new(rules, default_deny),
            ids,
            mode,
            version,
        }
    }
}

/// Whether a rule names a service (its meaning then follows the service table).
pub fn names_service(r: &Rule) -> bool {
    matches!(
        &r.addr,
        Some(AddrMatch {
            host: Host::Service(_),
            ..
        })
    )
}

/// A rule naming a service matches its virtual address: a static service's
/// port unless the rule gives its own ports; a traced service's virtual IP
/// on the rule's ports (all by default).
fn resolve(r: &Rule, services: &ServiceTable, routes: &RouteTable) -> Rule {
    let Some(AddrMatch {
        host: Host::Service(name),
        ports,
    }) = &r.addr
    else {
        return r.clone();
    };
    let (ip, ports) = match (services.get(name), routes.lookup(name).first()) {
        (Some(svc), _) => {
            let p = if ports.is_all() {
                Ports {
                    lo: svc.vip.port(),
                    hi: svc.vip.port(),
                }
            } else {
                *ports
            };
            (svc.vip.ip(), p)
        }
        (None, Some(ip)) => (*ip, *ports),
        (None, None) => return r.clone(),
    };
    let mut out = r.clone();
    out.addr = Some(AddrMatch {
        host: Host::Net(IpNet::from(ip)),
        ports,
    });
    out
}

/// The current snapshot; readers take an Arc, writers swap it.
pub struct LivePolicy {
    current: RwLock<Arc<Snapshot>>,
}

impl LivePolicy {
    pub fn new(s: Snapshot) -> Arc<LivePolicy> {
        Arc::new(LivePolicy {
            current: RwLock::new(Arc::new(s)),
        })
    }

    pub fn get(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn set(&self, s: Snapshot) {
        match self.current.write() {
            Ok(mut g) => *g = Arc::new(s),
            Err(p) => *p.into_inner() = Arc::new(s),
        }
    }
}

/// What the daemon says about the network: the service routes (swapped
/// whole, like the policy) and the resolv.conf for the program's DNS.
#[derive(Default)]
pub struct LiveNet {
    /// The routes, and how many tables came before them (positions in one
    /// table mean nothing in another).
    routes: RwLock<(Arc<RouteTable>, u64)>,
    pub resolv_conf: std::sync::Mutex<Option<std::path::PathBuf>>,
    /// Where the daemon wants traced services to listen.
    pub bind: std::sync::Mutex<Option<std::net::IpAddr>>,
    /// Someone reads the daemon's event stream (tracers send event lines only then).
    pub events_wanted: Arc<std::sync::atomic::AtomicBool>,
    /// The daemon's network namespace inode (0: unknown).
    pub netns: std::sync::atomic::AtomicU64,
    /// The daemon's last policy push (global table, static services, mode,
    /// version): rules naming services are resolved again when routes change.
    pub last_policy: std::sync::Mutex<Option<(PolicyTable, ServiceTable, Mode, u64)>>,
    /// Why the daemon refused this trace, if it did.
    pub refused: std::sync::Mutex<Option<String>>,
    /// The daemon's balancing table, mapped (services::shared).
    shared: RwLock<Option<Arc<crate::services::shared::SharedTable>>>,
}

impl LiveNet {
    pub fn new() -> Arc<LiveNet> {
        Arc::new(LiveNet::default())
    }

    pub fn routes(&self) -> Arc<RouteTable> {
        self.routes_numbered().0
    }

    /// The routes and their table's number.
    pub fn routes_numbered(&self) -> (Arc<RouteTable>, u64) {
        match self.routes.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn shared(&self) -> Option<Arc<crate::services::shared::SharedTable>> {
        match self.shared.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn set_shared(&self, t: Option<Arc<crate::services::shared::SharedTable>>) {
        match self.shared.write() {
            Ok(mut g) => *g = t,
            Err(p) => *p.into_inner() = t,
        }
    }

    pub fn set_routes(&self, t: RouteTable) {
        let mut g = match self.routes.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = (Arc::new(t), g.1 + 1);
    }
}
