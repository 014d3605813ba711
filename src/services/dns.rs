//! The daemon's DNS responder: service names (NAME and NAME.<domain>) are
//! answered with their virtual IPs; other names are forwarded, as received,
//! to the upstream resolvers and their answer relayed back. UDP and TCP on
//! the same address: a forwarded answer too large for UDP arrives truncated,
//! and the client's retry over TCP is forwarded over TCP.
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
    /// The service name a query name stands for: `web` for `web`, `web.` and
    /// `web.<domain>.`; "" for the domain itself; other names unchanged.
    fn ours<'a>(&self, qname: &'a str) -> &'a str {
        let q = qname.strip_suffix('.').unwrap_or(qname);
        let d = self.domain.trim_matches('.');
        if !d.is_empty() {
            if let Some(head) = q.strip_suffix(d) {
                if head.is_empty() {
                    return "";
                }
                if let Some(h) = head.strip_suffix('.') {
                    return h;
                }
            }
        }
        q
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
        let name = self.ours(&qname);
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

/// One DNS-over-TCP message: a 2-byte big-endian length, then the bytes.
fn read_frame(r: &mut impl std::io::Read) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len).ok()?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    r.read_exact(&mut msg).ok()?;
    Some(msg)
}

fn write_frame(w: &mut impl std::io::Write, msg: &[u8]) -> Option<()> {
    let len = u16::try_from(msg.len()).ok()?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(msg);
    w.write_all(&out).ok()
}

/// Send `query` over TCP to each upstream in turn; the first answer wins.
fn forward_tcp(query: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    upstream.iter().find_map(|up| {
        let mut s = std::net::TcpStream::connect_timeout(up, FORWARD_TIMEOUT).ok()?;
        let _ = s.set_read_timeout(Some(FORWARD_TIMEOUT));
        let _ = s.set_write_timeout(Some(FORWARD_TIMEOUT));
        write_frame(&mut s, query)?;
        read_frame(&mut s).filter(|a| a.len() >= 2 && a[..2] == query[..2])
    })
}

/// One TCP client: length-prefixed queries, answered in order.
fn serve_tcp_client(mut conn: std::net::TcpStream, responder: &Responder, names: &dyn Names) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    // A client may send several queries on one connection; a bounded number.
    for _ in 0..64 {
        let Some(query) = read_frame(&mut conn) else {
            return;
        };
        let reply = match responder.answer(&query, names) {
            Answer::Reply(r) => Some(r),
            Answer::Drop => return,
            Answer::Forward => {
                forward_tcp(&query, &responder.upstream).or_else(|| Responder::servfail(&query))
            }
        };
        if reply.and_then(|r| write_frame(&mut conn, &r)).is_none() {
            return;
        }
    }
}

/// Serve on `listen` (UDP and TCP, same address) in background threads.
/// Returns the address served (with the port, if `listen` asked for 0).
pub fn serve(
    listen: SocketAddr,
    responder: Responder,
    names: Arc<dyn Names>,
) -> std::io::Result<SocketAddr> {
    let sock = Arc::new(UdpSocket::bind(listen)?);
    let served = sock.local_addr()?;
    let tcp = std::net::TcpListener::bind(served)?;
    let responder = Arc::new(responder);
    let inflight = Arc::new(AtomicUsize::new(0));
    {
        let (responder, names, inflight) = (responder.clone(), names.clone(), inflight.clone());
        std::thread::Builder::new()
            .name("appswitch-dns-tcp".into())
            .spawn(move || {
                for conn in tcp.incoming().flatten() {
                    // Shares the bound on concurrent work with forwarding.
                    if inflight.fetch_add(1, Ordering::AcqRel) >= MAX_FORWARDS {
                        inflight.fetch_sub(1, Ordering::AcqRel);
                        continue;
                    }
                    let (responder, names, counter) =
                        (responder.clone(), names.clone(), inflight.clone());
                    let done = inflight.clone();
                    let spawned = std::thread::Builder::new()
                        .name("appswitch-dns-conn".into())
                        .spawn(move || {
                            serve_tcp_client(conn, &responder, names.as_ref());
                            done.fetch_sub(1, Ordering::AcqRel);
                        });
                    if spawned.is_err() {
                        counter.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            })?;
    }
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
    Ok(served)
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

    /// A fake upstream on 127.0.0.1 (UDP and TCP, one port) answering every
    /// query with 192.0.2.1, for `n` queries of each kind.
    fn upstream(n: usize) -> SocketAddr {
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = u.local_addr().unwrap();
        let t = std::net::TcpListener::bind(addr).unwrap();
        let answer = |q: &[u8]| {
            let m = Message::from_vec(q).unwrap();
            let mut r = Message::response(m.metadata.id, OpCode::Query);
            r.add_query(m.queries[0].clone());
            r.add_answer(Record::from_rdata(
                m.queries[0].name.clone(),
                60,
                RData::A(A("192.0.2.1".parse().unwrap())),
            ));
            r.to_vec().unwrap()
        };
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            for _ in 0..n {
                let (k, from) = u.recv_from(&mut buf).unwrap();
                u.send_to(&answer(&buf[..k]), from).unwrap();
            }
        });
        std::thread::spawn(move || {
            for _ in 0..n {
                let (mut c, _) = t.accept().unwrap();
                let q = read_frame(&mut c).unwrap();
                write_frame(&mut c, &answer(&q)).unwrap();
            }
        });
        addr
    }

    fn ask_udp(server: SocketAddr, q: &[u8]) -> Message {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.send_to(q, server).unwrap();
        let mut buf = [0u8; 4096];
        let n = s.recv(&mut buf).unwrap();
        Message::from_vec(&buf[..n]).unwrap()
    }

    fn ask_tcp(server: SocketAddr, q: &[u8]) -> Message {
        let mut c = std::net::TcpStream::connect(server).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write_frame(&mut c, q).unwrap();
        Message::from_vec(&read_frame(&mut c).unwrap()).unwrap()
    }

    #[test]
    fn serves_and_forwards_over_udp_and_tcp() {
        let up = upstream(1);
        let server = serve(
            "127.0.0.1:0".parse().unwrap(),
            Responder {
                domain: "appswitch.internal".into(),
                upstream: vec![up],
            },
            Arc::new(Fixed),
        )
        .unwrap();
        let a = |m: &Message| m.answers.first().map(|r| r.data.clone());
        let web = RData::A(A("10.1.0.1".parse().unwrap()));
        let other = RData::A(A("192.0.2.1".parse().unwrap()));
        assert_eq!(
            a(&ask_udp(server, &query("web", RecordType::A))),
            Some(web.clone())
        );
        assert_eq!(a(&ask_tcp(server, &query("web", RecordType::A))), Some(web));
        let m = ask_udp(server, &query("example.org.", RecordType::A));
        assert_eq!((m.metadata.id, a(&m)), (0x1234, Some(other.clone())));
        let m = ask_tcp(server, &query("example.org.", RecordType::A));
        assert_eq!((m.metadata.id, a(&m)), (0x1234, Some(other)));
    }
}
