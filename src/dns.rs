//! The daemon's DNS responder: service names (NAME and NAME.<domain>) are
//! answered with their virtual IPs; other names are forwarded, as received,
//! to the upstream resolvers and their answer relayed back. UDP only: the
//! answers it makes are small; a forwarded answer too large for UDP arrives
//! truncated, and the client's retry over TCP finds nothing (a known limit,
//! docs/SERVICES.md).
//!
//! Wire format: hickory-proto.

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// TTL of answers: short, since services come and go.
const TTL: u32 = 5;
/// Forwarded queries in flight at most; beyond, SERVFAIL at once.
const MAX_FORWARDS: usize = 64;
const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// Where names come from (the daemon's route table).
pub trait Names: Send + Sync + 'static {
    /// The virtual IPs of a service name (without the domain); empty: unknown.
    fn lookup(&self, name: &str) -> Vec<IpAddr>;
}

pub struct Responder {
    pub domain: String,
    pub upstream: Vec<SocketAddr>,
}

/// What to do with one query.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Not ours: forward the query as received.
    Forward,
    /// Unparseable: drop it.
    Drop,
}

impl Responder {
    /// The service name a query name stands for, if it is in our namespace:
    /// `web`, `web.` or `web.<domain>.`; the domain itself is ours too.
    fn ours<'a>(&self, qname: &'a str) -> Option<&'a str> {
        let q = qname.strip_suffix('.').unwrap_or(qname);
        let d = self.domain.trim_matches('.');
        if !d.is_empty() {
            if let Some(head) = q.strip_suffix(d) {
                if head.is_empty() {
                    return Some("");
                }
                if let Some(h) = head.strip_suffix('.') {
                    return Some(h);
                }
            }
        }
        Some(q)
    }

    pub fn answer(&self, query: &[u8], names: &dyn Names) -> Answer {
        let Ok(msg) = Message::from_vec(query) else {
            return Answer::Drop;
        };
        if msg.metadata.message_type != MessageType::Query {
            return Answer::Drop;
        }
        let mut resp = Message::response(msg.metadata.id, msg.metadata.op_code);
        resp.metadata.recursion_desired = msg.metadata.recursion_desired;
        resp.metadata.recursion_available = true;
        if msg.metadata.op_code != OpCode::Query || msg.queries.len() != 1 {
            resp.metadata.response_code = ResponseCode::NotImp;
            resp.add_queries(msg.queries.clone());
            return resp.to_vec().map_or(Answer::Drop, Answer::Reply);
        }
        let q = &msg.queries[0];
        let qname = q.name.to_ascii().to_ascii_lowercase();
        let Some(name) = self.ours(&qname) else {
            return Answer::Forward;
        };
        let in_domain = name != qname.trim_end_matches('.');
        let ips = if name.is_empty() || name.contains('.') {
            Vec::new()
        } else {
            names.lookup(name)
        };
        if ips.is_empty() {
            if !in_domain {
                return Answer::Forward;
            }
            // Our own domain: we know it has no such name.
            resp.metadata.authoritative = true;
            resp.metadata.response_code = if name.is_empty() {
                ResponseCode::NoError
            } else {
                ResponseCode::NXDomain
            };
            resp.add_query(q.clone());
            return resp.to_vec().map_or(Answer::Drop, Answer::Reply);
        }
        resp.metadata.authoritative = true;
        resp.add_query(q.clone());
        for ip in ips {
            let rdata = match (q.query_type, ip) {
                (RecordType::A | RecordType::ANY, IpAddr::V4(v4)) => RData::A(A(v4)),
                (RecordType::AAAA | RecordType::ANY, IpAddr::V6(v6)) => RData::AAAA(AAAA(v6)),
                // Known name, no record of this type: an empty NOERROR answer.
                _ => continue,
            };
            resp.add_answer(Record::from_rdata(q.name.clone(), TTL, rdata));
        }
        resp.to_vec().map_or(Answer::Drop, Answer::Reply)
    }

    /// SERVFAIL for a query that could not be forwarded.
    pub fn servfail(query: &[u8]) -> Option<Vec<u8>> {
        let msg = Message::from_vec(query).ok()?;
        let mut resp = Message::error_msg(
            msg.metadata.id,
            msg.metadata.op_code,
            ResponseCode::ServFail,
        );
        resp.metadata.recursion_desired = msg.metadata.recursion_desired;
        resp.metadata.recursion_available = true;
        resp.add_queries(msg.queries);
        resp.to_vec().ok()
    }
}

/// Send `query` to each upstream in turn; the first answer wins.
fn forward(query: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65_535];
    for up in upstream {
        let bind: SocketAddr = if up.is_ipv4() {
            "0.0.0.0:0".parse().ok()?
        } else {
            "[::]:0".parse().ok()?
        };
        let Ok(s) = UdpSocket::bind(bind) else {
            continue;
        };
        if s.connect(up).is_err() || s.set_read_timeout(Some(FORWARD_TIMEOUT)).is_err() {
            continue;
        }
        if s.send(query).is_err() {
            continue;
        }
        // Answers with another id are someone else's (or spoofed): keep waiting.
        for _ in 0..8 {
            match s.recv(&mut buf) {
                Ok(n) if n >= 2 && buf[..2] == query[..2] => return Some(buf[..n].to_vec()),
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    None
}

/// Serve on `listen` in background threads.
pub fn serve(
    listen: SocketAddr,
    responder: Responder,
    names: Arc<dyn Names>,
) -> std::io::Result<()> {
    let sock = Arc::new(UdpSocket::bind(listen)?);
    let responder = Arc::new(responder);
    let inflight = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("appswitch-dns".into())
        .spawn(move || {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let query = buf[..n].to_vec();
                match responder.answer(&query, names.as_ref()) {
                    Answer::Reply(r) => {
                        let _ = sock.send_to(&r, from);
                    }
                    Answer::Drop => {}
                    Answer::Forward => {
                        if responder.upstream.is_empty()
                            || inflight.fetch_add(1, Ordering::AcqRel) >= MAX_FORWARDS
                        {
                            if !responder.upstream.is_empty() {
                                inflight.fetch_sub(1, Ordering::AcqRel);
                            }
                            if let Some(r) = Responder::servfail(&query) {
                                let _ = sock.send_to(&r, from);
                            }
                            continue;
                        }
                        let (sock, responder, inflight) =
                            (sock.clone(), responder.clone(), inflight.clone());
                        let counter = inflight.clone();
                        let spawned = std::thread::Builder::new()
                            .name("appswitch-dns-fwd".into())
                            .spawn(move || {
                                let r = forward(&query, &responder.upstream)
                                    .or_else(|| Responder::servfail(&query));
                                if let Some(r) = r {
                                    let _ = sock.send_to(&r, from);
                                }
                                inflight.fetch_sub(1, Ordering::AcqRel);
                            });
                        if spawned.is_err() {
                            counter.fetch_sub(1, Ordering::AcqRel);
                        }
                    }
                }
            }
        })?;
    Ok(())
}

/// The nameservers and search domains of a resolv.conf text.
pub fn parse_resolv_conf(text: &str) -> (Vec<IpAddr>, Vec<String>) {
    let mut ns = Vec::new();
    let mut search = Vec::new();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        match w.next() {
            Some("nameserver") => {
                // A scoped IPv6 address (fe80::1%eth0) is dropped.
                if let Some(ip) = w.next().and_then(|a| a.parse().ok()) {
                    ns.push(ip);
                }
            }
            Some("search") | Some("domain") => {
                search = w.map(str::to_string).collect();
            }
            _ => {}
        }
    }
    (ns, search)
}

/// The resolv.conf a traced program sees: our responder, our domain first in
/// the search list, then the host's search domains.
pub fn resolv_conf(listen: IpAddr, domain: &str, host_search: &[String]) -> String {
    let mut search = vec![domain.trim_matches('.').to_string()];
    search.extend(host_search.iter().filter(|s| s.as_str() != domain).cloned());
    search.retain(|s| !s.is_empty());
    let mut s = format!(
        "# Generated by appswitch for traced programs (a private mount: the host's\n\
         # /etc/resolv.conf is untouched). Service names resolve here; others are\n\
         # forwarded to the host's resolvers.\nnameserver {listen}\n"
    );
    if !search.is_empty() {
        s.push_str(&format!("search {}\n", search.join(" ")));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use std::str::FromStr;

    struct Fixed;
    impl Names for Fixed {
        fn lookup(&self, name: &str) -> Vec<IpAddr> {
            if name == "web" {
                vec!["10.1.0.1".parse().unwrap()]
            } else {
                vec![]
            }
        }
    }

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_str(name).unwrap(), t));
        m.to_vec().unwrap()
    }

    fn reply(a: Answer) -> Message {
        match a {
            Answer::Reply(r) => Message::from_vec(&r).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn answers_names_in_and_out_of_the_domain() {
        let r = Responder {
            domain: "appswitch.internal".into(),
            upstream: vec![],
        };
        for name in [
            "web",
            "web.",
            "WEB.appswitch.internal.",
            "web.appswitch.internal",
        ] {
            let m = reply(r.answer(&query(name, RecordType::A), &Fixed));
            assert_eq!(m.metadata.id, 0x1234);
            assert_eq!(m.answers.len(), 1, "{name}");
            assert_eq!(m.answers[0].data, RData::A(A("10.1.0.1".parse().unwrap())));
        }
        // Known name, no IPv6 address: empty NOERROR (not NXDOMAIN, or
        // resolvers would give up on the A answer too).
        let m = reply(r.answer(&query("web", RecordType::AAAA), &Fixed));
        assert_eq!(
            (m.metadata.response_code, m.answers.len()),
            (ResponseCode::NoError, 0)
        );
        let m = reply(r.answer(&query("nosuch.appswitch.internal.", RecordType::A), &Fixed));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(
            r.answer(&query("nosuch", RecordType::A), &Fixed),
            Answer::Forward
        );
        assert_eq!(
            r.answer(&query("example.org.", RecordType::A), &Fixed),
            Answer::Forward
        );
        assert_eq!(r.answer(b"\x00\x01junk", &Fixed), Answer::Drop);
        let m = Message::from_vec(&Responder::servfail(&query("x.org", RecordType::A)).unwrap())
            .unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    }

    #[test]
    fn resolv_conf_round_trip() {
        let (ns, search) = parse_resolv_conf(
            "# c\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nsearch corp.example\n",
        );
        assert_eq!(ns, vec!["10.0.0.2".parse::<IpAddr>().unwrap()]);
        let text = resolv_conf(
            "127.0.77.53".parse().unwrap(),
            "appswitch.internal",
            &search,
        );
        let (ns, search) = parse_resolv_conf(&text);
        assert_eq!(ns, vec!["127.0.77.53".parse::<IpAddr>().unwrap()]);
        assert_eq!(search, vec!["appswitch.internal", "corp.example"]);
    }
}
