//! Static services, as written to /appswitch/services:
//! `add NAME VIP:PORT -> BACKEND[,BACKEND...] [lb=roundrobin|random|leastconn] [labels=k=v,...]`
//! and `del NAME`. Rendered one per line; saved with the policy.

use crate::policy::ParseError;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lb {
    #[default]
    RoundRobin,
    Random,
    LeastConn,
}

impl Lb {
    pub fn parse(s: &str) -> Option<Lb> {
        match s {
            "roundrobin" => Some(Lb::RoundRobin),
            "random" => Some(Lb::Random),
            "leastconn" => Some(Lb::LeastConn),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Lb::RoundRobin => "roundrobin",
            Lb::Random => "random",
            Lb::LeastConn => "leastconn",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub vip: SocketAddr,
    pub backends: Vec<SocketAddr>,
    pub lb: Lb,
    pub labels: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceTable {
    services: BTreeMap<String, Service>,
}

/// Labels as written on the command line and in files: `k=v[,k=v...]`.
pub fn parse_labels(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(format!("'{p}': expected KEY=VALUE")),
        })
        .collect()
}

/// Labels as written in files: `k=v,k=v`, or `-` for none.
pub fn labels_text(labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return "-".into();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn err(line: usize, col: usize, token: &str, msg: &str) -> ParseError {
    ParseError::new(line, col, token, msg)
}

/// Words of a line with their 1-based columns.
fn words(line: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in line
        .char_indices()
        .chain(std::iter::once((line.len(), ' ')))
    {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((line[..s].chars().count() + 1, &line[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    out
}

/// A service name: a DNS label (letters, digits, -; starting with a letter).
pub fn valid_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl ServiceTable {
    /// Apply one write (several lines), all or nothing.
    pub fn apply(&mut self, text: &str) -> Result<(), ParseError> {
        let mut next = self.clone();
        next.apply_in_place(text, 0)?;
        *self = next;
        Ok(())
    }

    /// Apply lines to this table as they come; lines are numbered from
    /// `first + 1`. On an error the table is left part-way (callers apply
    /// to a copy they drop on error).
    pub fn apply_in_place(&mut self, text: &str, first: usize) -> Result<(), ParseError> {
        let next = self;
        for (i, line) in text.lines().enumerate() {
            let n = first + i + 1;
            let w = words(line.split('#').next().unwrap_or(""));
            let Some(&(col, verb)) = w.first() else {
                continue;
            };
            match verb {
                "del" => {
                    let (c, name) = *w
                        .get(1)
                        .ok_or_else(|| err(n, line.len() + 1, "", "expected del NAME"))?;
                    if next.services.remove(name).is_none() {
                        return Err(err(n, c, name, "no service with this name"));
                    }
                    if let Some(&(c, t)) = w.get(2) {
                        return Err(err(n, c, t, "unexpected text after del NAME"));
                    }
                }
                "add" => {
                    let (name, svc) = parse_add(n, line, &w)?;
                    next.services.insert(name, svc);
                }
                _ => return Err(err(n, col, verb, "expected add or del")),
            }
        }
        Ok(())
    }

    /// The text that `apply` turns back into this table.
    pub fn save_text(&self) -> String {
        let mut s = String::new();
        for (name, v) in &self.services {
            let backends: Vec<String> = v.backends.iter().map(|b| b.to_string()).collect();
            let _ = write!(
                s,
                "add {name} {} -> {} lb={}",
                v.vip,
                backends.join(","),
                v.lb.name()
            );
            if !v.labels.is_empty() {
                let _ = write!(s, " labels={}", labels_text(&v.labels));
            }
            s.push('\n');
        }
        s
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Service)> {
        self.services.iter()
    }

    pub fn get(&self, name: &str) -> Option<&Service> {
        self.services.get(name)
    }
}

fn parse_add(n: usize, line: &str, w: &[(usize, &str)]) -> Result<(String, Service), ParseError> {
    let end = line.chars().count() + 1;
    let (c, name) = *w
        .get(1)
        .ok_or_else(|| err(n, end, "", "expected add NAME VIP:PORT -> BACKEND[,...]"))?;
    if !valid_name(name) {
        return Err(err(
            n,
            c,
            name,
            "expected a service name (letters, digits, -; starting with a letter)",
        ));
    }
    let (c, vip) = *w
        .get(2)
        .ok_or_else(|| err(n, end, "", "expected the service address VIP:PORT"))?;
    let vip: SocketAddr = vip.parse().map_err(|_| {
        err(
            n,
            c,
            vip,
            "expected the service address as IP:PORT or [IPv6]:PORT",
        )
    })?;
    match w.get(3) {
        Some((_, "->")) => {}
        Some(&(c, t)) => return Err(err(n, c, t, "expected -> before the backends")),
        None => return Err(err(n, end, "", "expected -> BACKEND[,...]")),
    }
    let (c, list) = *w
        .get(4)
        .ok_or_else(|| err(n, end, "", "expected BACKEND[,...] after ->"))?;
    let backends = list
        .split(',')
        .map(|b| b.parse::<SocketAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| err(n, c, list, "expected backends as IP:PORT[,IP:PORT...]"))?;
    let mut svc = Service {
        vip,
        backends,
        lb: Lb::RoundRobin,
        labels: Vec::new(),
    };
    for &(c, t) in &w[5..] {
        if let Some(v) = t.strip_prefix("lb=") {
            svc.lb = Lb::parse(v)
                .ok_or_else(|| err(n, c, t, "expected lb=roundrobin, lb=random or lb=leastconn"))?;
        } else if let Some(v) = t.strip_prefix("labels=") {
            svc.labels = parse_labels(v)
                .map_err(|_| err(n, c, t, "expected labels=KEY=VALUE[,KEY=VALUE...]"))?;
        } else {
            return Err(err(n, c, t, "expected lb= or labels="));
        }
    }
    Ok((name.to_string(), svc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_render_save_del() {
        let mut t = ServiceTable::default();
        t.apply("add web 10.1.0.1:80 -> 127.0.0.1:8080,127.0.0.1:8081 lb=roundrobin\n")
            .unwrap();
        assert_eq!(
            t.save_text(),
            "add web 10.1.0.1:80 -> 127.0.0.1:8080,127.0.0.1:8081 lb=roundrobin\n"
        );
        let mut back = ServiceTable::default();
        back.apply(&t.save_text()).unwrap();
        assert_eq!(back, t);
        let e = t
            .apply("add db 10.1.0.2:5432 -> 127.0.0.1:5432\ndel nosuch\n")
            .unwrap_err();
        assert_eq!((e.line, e.token.as_str()), (2, "nosuch"));
        assert_eq!(t.len(), 1, "all or nothing");
        let e = t.apply("add x 10.1.0.3 -> 1.2.3.4:1").unwrap_err();
        assert_eq!((e.col, e.token.as_str()), (7, "10.1.0.3"));
        t.apply("del web").unwrap();
        assert!(t.is_empty());
    }
}
