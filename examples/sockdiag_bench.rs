//! Socket-table dump latency: `sockdiag_bench [CONNS]` opens CONNS (default
//! 10,000) loopback TCP connections, then times `sockdiag::dump()` five times
//! and prints the median as `sockets=N dump_ms=X`, N being the number of
//! sockets the dump returned (2*CONNS + the listener + whatever else is open).
//!
//! The client ends live in a child process (this program re-run with
//! SOCKDIAG_BENCH_CHILD set), the accepted ends here, so each process needs
//! only CONNS fds: 2*CONNS may exceed a hard RLIMIT_NOFILE that cannot be
//! raised without CAP_SYS_RESOURCE. The soft limit is raised as far as needed.

use appswitch::sockdiag;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::Instant;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const CHILD_ENV: &str = "SOCKDIAG_BENCH_CHILD";

/// Raises the soft RLIMIT_NOFILE to `want` (and the hard one if allowed).
fn raise_nofile(want: u64) -> Res<()> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    if rl.rlim_cur >= want {
        return Ok(());
    }
    let old_max = rl.rlim_max;
    rl.rlim_cur = want;
    rl.rlim_max = rl.rlim_max.max(want);
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("cannot raise RLIMIT_NOFILE to {want} (hard {old_max}): {e}").into());
    }
    Ok(())
}

fn inode_of(fd: &impl AsRawFd) -> u64 {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat only writes into `st`.
    if unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) } != 0 {
        return 0;
    }
    // SAFETY: fstat succeeded, so it filled the struct.
    unsafe { st.assume_init() }.st_ino
}

/// Child: connects `conns` times, prints each socket's inode and then "ready",
/// and keeps the sockets open until its stdin closes.
fn child(spec: &str) -> Res<()> {
    let (addr, conns) = spec.split_once(',').ok_or("bad child spec")?;
    let (addr, conns): (SocketAddr, usize) = (addr.parse()?, conns.parse()?);
    raise_nofile(conns as u64 + 64)?;
    let mut socks = Vec::with_capacity(conns);
    for _ in 0..conns {
        socks.push(TcpStream::connect(addr)?);
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for s in &socks {
        writeln!(out, "{}", inode_of(s))?;
    }
    writeln!(out, "ready")?;
    out.flush()?;
    drop(out);
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    Ok(())
}

fn main() -> Res<()> {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        return child(&spec);
    }
    let conns: usize = match std::env::args().nth(1) {
        Some(a) => a.parse()?,
        None => 10_000,
    };
    raise_nofile(conns as u64 + 64)?;

    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let t = Instant::now();
    let mut kid = Command::new(std::env::current_exe()?)
        .env(CHILD_ENV, format!("{},{conns}", listener.local_addr()?))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    // Accept while the child connects, so the backlog (somaxconn) never fills.
    let mut socks = Vec::with_capacity(conns);
    for _ in 0..conns {
        socks.push(listener.accept()?.0);
    }
    let mut ours: HashSet<u64> = socks.iter().map(inode_of).collect();
    ours.insert(inode_of(&listener));
    let kid_out = BufReader::new(kid.stdout.take().ok_or("no child stdout")?);
    let mut ready = false;
    for line in kid_out.lines() {
        let line = line?;
        if line == "ready" {
            ready = true;
            break;
        }
        ours.insert(line.parse()?);
    }
    if !ready || ours.len() != 2 * conns + 1 {
        return Err(format!("child failed; have {} inodes", ours.len()).into());
    }
    eprintln!(
        "opened {conns} connections in {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    let mut times = Vec::new();
    let mut total = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let all = sockdiag::dump()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
        total = all.len();
        let seen = ours.iter().filter(|i| all.contains_key(i)).count();
        if seen != ours.len() {
            return Err(format!("dump saw {seen} of our {} sockets", ours.len()).into());
        }
    }
    // Reset rather than close, so no TIME_WAIT entries linger in the kernel's
    // hash table (dump() skips them, but the kernel still walks them) to slow
    // down the next run.
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    for s in &socks {
        // SAFETY: setsockopt reads a correctly sized linger struct.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
    }
    drop(socks);
    drop(kid.stdin.take()); // lets the child exit
    kid.wait()?;
    times.sort_by(f64::total_cmp);
    eprintln!(
        "dump_ms min={:.2} max={:.2} (5 runs)",
        times[0],
        times[times.len() - 1]
    );
    println!("sockets={total} dump_ms={:.2}", times[times.len() / 2]);
    Ok(())
}
