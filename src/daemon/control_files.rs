//! The /appswitch tree: which files exist, who may write them, and what
//! reading and writing them does (controlfs::Provider over the daemon State).

use super::state::{lock, State};
use controlfs::{Attr, Errno, Kind, Provider, StreamHub};
use std::sync::{Arc, Mutex, MutexGuard};

pub struct Files {
    pub state: Arc<Mutex<State>>,
    events: Arc<StreamHub>,
}

const ROOT_FILES: &[(&str, Kind, u16)] = &[
    ("policy", Kind::File, 0o644),
    ("services", Kind::File, 0o644),
    ("connections", Kind::File, 0o444),
    ("stats", Kind::File, 0o444),
    ("metrics", Kind::File, 0o444),
    ("events", Kind::Stream, 0o444),
    ("errors", Kind::File, 0o444),
    ("ctl", Kind::File, 0o644),
    ("apps", Kind::Dir, 0o555),
];
const APP_FILES: &[(&str, u16)] = &[
    ("info", 0o444),
    ("connections", 0o444),
    ("policy", 0o444),
    ("ctl", 0o644),
];

fn attr(kind: Kind, perm: u16) -> Attr {
    Attr {
        kind,
        perm,
        uid: 0,
        gid: 0,
    }
}

impl Files {
    pub fn new(state: Arc<Mutex<State>>) -> Files {
        let events = lock(&state).events.clone();
        Files { state, events }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// "apps/ID[/FILE]" -> (ID, FILE)
    fn app_path<'a>(&self, path: &'a str) -> Option<(u32, Option<&'a str>)> {
        let rest = path.strip_prefix("apps/")?;
        let (id, file) = match rest.split_once('/') {
            Some((id, f)) => (id, Some(f)),
            None => (rest, None),
        };
        let id: u32 = id.parse().ok()?;
        self.state().apps.contains_key(&id).then_some((id, file))
    }
}

impl Provider for Files {
    fn attr(&self, path: &str) -> Option<Attr> {
        if path.is_empty() {
            return Some(attr(Kind::Dir, 0o555));
        }
        if let Some((_, k, p)) = ROOT_FILES.iter().find(|(n, _, _)| *n == path) {
            return Some(attr(*k, *p));
        }
        match self.app_path(path)? {
            (_, None) => Some(attr(Kind::Dir, 0o555)),
            (_, Some(f)) => APP_FILES
                .iter()
                .find(|(n, _)| *n == f)
                .map(|(_, p)| attr(Kind::File, *p)),
        }
    }

    fn list(&self, path: &str) -> Vec<String> {
        match path {
            "" => ROOT_FILES.iter().map(|(n, _, _)| n.to_string()).collect(),
            "apps" => self.state().apps.keys().map(|k| k.to_string()).collect(),
            p if self.app_path(p).is_some() => {
                APP_FILES.iter().map(|(n, _)| n.to_string()).collect()
            }
            _ => Vec::new(),
        }
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, Errno> {
        // The kernel is asked about the connections without the lock held
        // (a sock_diag dump of a busy host takes tens of milliseconds; the
        // lock serves every tracer, DNS and the other files).
        let ask = || {
            let q = self.state().conn_query();
            q.ask()
        };
        let mut s = self.state();
        let text = match path {
            "policy" => s.render_policy(),
            "services" => s.render_services(),
            "connections" | "stats" | "metrics" => {
                drop(s);
                let kernel = ask();
                let mut s = self.state();
                match path {
                    "connections" => s.render_connections(None, kernel),
                    "stats" => s.render_stats(kernel),
                    _ => s.render_metrics(kernel),
                }
            }
            "errors" => s.render_errors(),
            "ctl" => s.render_ctl(),
            _ => {
                drop(s);
                let (id, file) = self.app_path(path).ok_or(Errno::ENOENT)?;
                let kernel = (file == Some("connections")).then(ask);
                let mut s = self.state();
                match (file, kernel) {
                    (Some("connections"), Some(k)) => s.render_connections(Some(id), k),
                    (Some("info"), _) => s.render_app_info(id).ok_or(Errno::ENOENT)?,
                    (Some("policy"), _) => s.render_app_policy(id).ok_or(Errno::ENOENT)?,
                    (Some("ctl"), _) => s.render_app_ctl(id).ok_or(Errno::ENOENT)?,
                    _ => return Err(Errno::EISDIR),
                }
            }
        };
        Ok(text.into_bytes())
    }

    fn write(&self, path: &str, data: &[u8]) -> Result<(), Errno> {
        match path {
            // (policy and services gather their writes: write_part below.)
            "ctl" => self.state().write_ctl(data),
            _ => match self.app_path(path) {
                Some((id, Some("ctl"))) => self.state().write_app_ctl(id, data),
                _ => Err(Errno::EACCES),
            },
        }
    }

    /// Sizes of the small files, so `tail -f policy` sees no truncation
    /// while nothing changes (connections, whose rendering asks the kernel,
    /// stay 0).
    fn size(&self, path: &str) -> Option<u64> {
        let s = self.state();
        let text = match path {
            "policy" => s.render_policy(),
            "errors" => s.render_errors(),
            _ => return None,
        };
        Some(text.len() as u64)
    }

    fn gathers(&self, path: &str) -> bool {
        matches!(path, "policy" | "services")
    }

    fn write_part(&self, path: &str, open: u64, data: &[u8]) -> Result<(), Errno> {
        self.state().write_part(path, open, data)
    }

    fn commit(&self, path: &str, open: u64, last: bool) -> Result<(), Errno> {
        self.state().commit(path, open, last)
    }

    fn refused(&self, path: &str, len: usize, errno: Errno) {
        self.state().refused_write(path, len, errno);
    }

    fn stream(&self, path: &str) -> Option<Arc<StreamHub>> {
        (path == "events").then(|| self.events.clone())
    }
}
