//! Cluster mode: each daemon publishes its own services (static and traced)
//! under `<prefix>nodes/<node>` on an etcd lease it keeps alive, and watches
//! `<prefix>nodes/` to keep a copy of every other node's. Decisions stay
//! local: the copy is merged into the daemon's route table, which tracers
//! get pushed as before.
//!
//! One thread runs a single-threaded tokio runtime (etcd-client is async);
//! the rest of the daemon stays on plain threads. When etcd cannot be
//! reached, the daemon keeps its last copy, says so in ctl and stats, and
//! starts a new session (new lease, publish, full read, watch) as soon as
//! etcd answers again.

use crate::config::ClusterConfig;
use crate::services::routes::{Origin, RouteTable};
use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{Client, ConnectOptions, EventType, GetOptions, PutOptions, WatchOptions};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// What one node publishes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node: String,
    pub address: IpAddr,
    pub table: RouteTable,
}

/// What the cluster side needs from the daemon's state.
pub trait Sink: Send + 'static {
    /// The other nodes' records, whole (after a read or a watch event).
    fn remote(&self, nodes: BTreeMap<String, NodeRecord>);
    /// Connected to etcd, or not (with why).
    fn status(&self, status: Status);
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Connecting,
    Connected,
    Unreachable { since: SystemTime, why: String },
}

impl Status {
    pub fn render(&self) -> String {
        match self {
            Status::Connecting => "connecting".into(),
            Status::Connected => "connected".into(),
            Status::Unreachable { since, why } => format!(
                "unreachable since {} ({why}): serving the last copy",
                humantime::format_rfc3339_seconds(*since)
            ),
        }
    }
}

/// The running cluster side: publish through it.
pub struct Cluster {
    publish: watch::Sender<Option<NodeRecord>>,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub node: String,
    pub address: IpAddr,
    pub endpoints: Vec<String>,
}

/// Time allowed for one etcd request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Wait between sessions when etcd is unreachable.
const RETRY: Duration = Duration::from_millis(500);

/// Where every node's key lives: `<prefix>nodes/`.
fn nodes_prefix(prefix: &str) -> String {
    format!("{prefix}nodes/")
}

/// The node's name: configured, else the hostname.
pub fn node_name(c: &ClusterConfig) -> Result<String> {
    if !c.node.is_empty() {
        return Ok(c.node.clone());
    }
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .context("reading the hostname for [cluster] node")?;
    let h = h.trim();
    if h.is_empty() {
        bail!("no hostname: set [cluster] node");
    }
    Ok(h.to_string())
}

/// The address other hosts reach this one at.
pub fn node_address(c: &ClusterConfig) -> Result<IpAddr> {
    if !c.address.is_empty() {
        return c.address.parse().with_context(|| {
            format!(
                "[cluster] address = {:?}: expected an IP address",
                c.address
            )
        });
    }
    let found = nix::ifaddrs::getifaddrs()
        .context("getifaddrs")?
        .filter(|i| c.interface.is_empty() || i.interface_name == c.interface)
        .filter_map(|i| Some(i.address?.as_sockaddr_in()?.ip()))
        .find(|ip| !c.interface.is_empty() || !ip.is_loopback())
        .map(IpAddr::V4);
    found.ok_or_else(|| match c.interface.as_str() {
        "" => {
            anyhow!("no non-loopback IPv4 address for [cluster] address: set address or interface")
        }
        i => anyhow!("[cluster] interface {i:?} has no IPv4 address"),
    })
}

impl Cluster {
    /// Start the cluster thread. `sink` gets the other nodes' records and
    /// the connection status.
    pub fn start(c: &ClusterConfig, sink: impl Sink) -> Result<Cluster> {
        if c.ttl == 0 {
            bail!("[cluster] ttl must be at least 1 second");
        }
        let node = node_name(c)?;
        if node.contains('/') {
            bail!("[cluster] node {node:?}: a node name cannot contain '/'");
        }
        let address = node_address(c)?;
        let (publish, rx) = watch::channel(None);
        let (stop, stop_rx) = watch::channel(false);
        let cfg = c.clone();
        let me = node.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the cluster runtime")?;
        let thread = std::thread::Builder::new()
            .name("appswitch-cluster".into())
            .spawn(move || rt.block_on(run(cfg, me, rx, stop_rx, sink)))
            .context("starting the cluster thread")?;
        Ok(Cluster {
            publish,
            stop,
            thread: Some(thread),
            node,
            address,
            endpoints: c.etcd.clone(),
        })
    }

    /// Publish this node's table (the latest one wins; sent when it changes).
    pub fn publish(&self, table: RouteTable) {
        let rec = NodeRecord {
            node: self.node.clone(),
            address: self.address,
            table,
        };
        // Only a change is written to etcd.
        self.publish.send_if_modified(|cur| {
            if cur.as_ref() == Some(&rec) {
                false
            } else {
                *cur = Some(rec);
                true
            }
        });
    }

    /// Revoke the lease (our services vanish from the others at once) and stop.
    pub fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn run(
    c: ClusterConfig,
    node: String,
    mut publish: watch::Receiver<Option<NodeRecord>>,
    mut stop: watch::Receiver<bool>,
    sink: impl Sink,
) {
    let mut remote: BTreeMap<String, NodeRecord> = BTreeMap::new();
    let mut down_since = None;
    sink.status(Status::Connecting);
    loop {
        let r = session(
            &c,
            &node,
            &mut publish,
            &mut stop,
            &sink,
            &mut remote,
            &mut down_since,
        )
        .await;
        if *stop.borrow() {
            return;
        }
        let why = match r {
            Ok(()) => "session ended".to_string(),
            Err(e) => format!("{e:#}"),
        };
        let since = *down_since.get_or_insert_with(SystemTime::now);
        log::warn!("cluster: etcd: {why}; retrying");
        sink.status(Status::Unreachable { since, why });
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = stop.changed() => return,
        }
    }
}

async fn timed<T, F>(what: &str, f: F) -> Result<T>
where
    F: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
{
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(r) => r.with_context(|| what.to_string()),
        Err(_) => bail!("{what}: no answer in {REQUEST_TIMEOUT:?}"),
    }
}

/// A node's record from its key (under `nodes`, the nodes prefix) and value.
fn parse_record(nodes: &str, key: &str, value: &[u8]) -> Option<NodeRecord> {
    let node = key.strip_prefix(nodes)?;
    let mut rec: NodeRecord = serde_json::from_slice(value)
        .map_err(|e| log::warn!("cluster: {key}: unreadable record: {e}"))
        .ok()?;
    // The key names the node, whatever the record says.
    rec.node = node.to_string();
    for r in &mut rec.table.routes {
        for b in &mut r.backends {
            b.origin = Origin::Remote {
                node: node.to_string(),
            };
        }
    }
    Some(rec)
}

/// One connection to etcd: lease, publish, read everything, then follow.
async fn session(
    c: &ClusterConfig,
    node: &str,
    publish: &mut watch::Receiver<Option<NodeRecord>>,
    stop: &mut watch::Receiver<bool>,
    sink: &impl Sink,
    remote: &mut BTreeMap<String, NodeRecord>,
    down_since: &mut Option<SystemTime>,
) -> Result<()> {
    let opts = ConnectOptions::new()
        .with_connect_timeout(REQUEST_TIMEOUT)
        .with_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(Duration::from_secs(1), REQUEST_TIMEOUT);
    let mut client = timed("connecting", Client::connect(c.etcd.clone(), Some(opts))).await?;
    let ttl = c.ttl as i64;
    let lease = timed("granting a lease", client.lease_grant(ttl, None))
        .await?
        .id();
    let (mut keeper, mut alive) =
        timed("keeping the lease alive", client.lease_keep_alive(lease)).await?;
    let prefix = nodes_prefix(&c.prefix);
    let key = format!("{prefix}{node}");
    let put = |client: &mut Client, rec: Option<NodeRecord>| {
        let mut client = client.clone();
        let key = key.clone();
        async move {
            let Some(rec) = rec else { return Ok(()) };
            let v = serde_json::to_vec(&rec)?;
            timed(
                "publishing",
                client.put(key, v, Some(PutOptions::new().with_lease(lease))),
            )
            .await
            .map(|_| ())
        }
    };
    let current = publish.borrow_and_update().clone();
    put(&mut client, current).await?;
    let all = timed(
        "reading the cluster's services",
        client.get(prefix.clone(), Some(GetOptions::new().with_prefix())),
    )
    .await?;
    let revision = all.header().map_or(0, |h| h.revision());
    remote.clear();
    for kv in all.kvs() {
        let Ok(k) = kv.key_str() else { continue };
        if let Some(rec) = parse_record(&prefix, k, kv.value()) {
            if rec.node != node {
                remote.insert(rec.node.clone(), rec);
            }
        }
    }
    sink.remote(remote.clone());
    let mut events = timed(
        "watching",
        client.watch(
            prefix.clone(),
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(revision + 1),
            ),
        ),
    )
    .await?;
    sink.status(Status::Connected);
    *down_since = None;
    log::info!(
        "cluster: connected as {node}; {} other node(s)",
        remote.len()
    );
    let mut tick = tokio::time::interval(Duration::from_millis((c.ttl * 1000 / 3).max(200)));
    loop {
        tokio::select! {
            _ = stop.changed() => {
                let _ = timed("revoking the lease", client.lease_revoke(lease)).await;
                return Ok(());
            }
            _ = tick.tick() => {
                timed("keeping the lease alive", keeper.keep_alive()).await?;
                match tokio::time::timeout(REQUEST_TIMEOUT, alive.message()).await {
                    Ok(Ok(Some(r))) if r.ttl() > 0 => {}
                    Ok(Ok(Some(_))) => bail!("the lease expired"),
                    Ok(Ok(None)) => bail!("the lease stream ended"),
                    Ok(Err(e)) => return Err(e).context("keeping the lease alive"),
                    Err(_) => bail!("keeping the lease alive: no answer in {REQUEST_TIMEOUT:?}"),
                }
            }
            r = publish.changed() => {
                if r.is_err() {
                    return Ok(());
                }
                let rec = publish.borrow_and_update().clone();
                put(&mut client, rec).await?;
            }
            m = events.message() => {
                let Some(resp) = m.context("watching")? else {
                    bail!("the watch ended");
                };
                if resp.canceled() {
                    bail!("the watch was cancelled");
                }
                let mut changed = false;
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let Ok(k) = kv.key_str() else { continue };
                    let Some(name) = k.strip_prefix(&prefix) else { continue };
                    if name == node {
                        continue;
                    }
                    match ev.event_type() {
                        EventType::Put => {
                            if let Some(rec) = parse_record(&prefix, k, kv.value()) {
                                remote.insert(rec.node.clone(), rec);
                                changed = true;
                            }
                        }
                        EventType::Delete => {
                            log::info!("cluster: node {name} left (lease expired or revoked)");
                            changed |= remote.remove(name).is_some();
                        }
                    }
                }
                if changed {
                    sink.remote(remote.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_address_from_config_or_interface() {
        let c = |address: &str, interface: &str| ClusterConfig {
            address: address.into(),
            interface: interface.into(),
            ..Default::default()
        };
        assert_eq!(
            node_address(&c("10.9.0.1", "")).unwrap(),
            "10.9.0.1".parse::<IpAddr>().unwrap()
        );
        assert!(node_address(&c("nope", "")).is_err());
        assert_eq!(
            node_address(&c("", "lo")).unwrap(),
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert!(node_address(&c("", "no-such-if0")).is_err());
    }
}
