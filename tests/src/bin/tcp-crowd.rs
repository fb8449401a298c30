//! Makes a crowd of TCP sockets on loopback for the snapshot benchmark: `tcp-crowd PAIRS
//! TIME_WAIT` opens PAIRS established connections (two sockets each) and leaves TIME_WAIT
//! sockets by closing that many more connections client first, prints `ready`, and holds
//! everything until stdin closes. Meant to run inside a network namespace of its own.

use std::{
    io::{self, BufRead, Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    process::ExitCode,
};

/// Listening ports to spread connections over: each destination gives at most one
/// ephemeral range of client ports.
const LISTENERS: usize = 8;

fn main() -> ExitCode {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap_or(usize::MAX))
        .collect();
    let [pairs, time_wait] = args[..] else {
        eprintln!("usage: tcp-crowd PAIRS TIME_WAIT");
        return ExitCode::from(2);
    };
    if pairs == usize::MAX || time_wait == usize::MAX {
        eprintln!("tcp-crowd: the counts must be numbers");
        return ExitCode::from(2);
    }
    match crowd(pairs, time_wait) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tcp-crowd: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the soft descriptor limit to the hard one (raising the hard limit needs
/// CAP_SYS_RESOURCE, which containers often lack), and checks that `wanted` fit.
fn raise_fd_limit(wanted: u64) -> io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into a live rlimit struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads a live rlimit struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < wanted {
        return Err(io::Error::other(format!(
            "{wanted} descriptors needed, the limit is {}: ask for fewer pairs \
             (TIME_WAIT sockets need none)",
            limit.rlim_cur
        )));
    }
    Ok(())
}

fn crowd(pairs: usize, time_wait: usize) -> io::Result<()> {
    raise_fd_limit((2 * pairs + 64) as u64)?;
    let listeners: Vec<TcpListener> = (0..LISTENERS)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<io::Result<_>>()?;
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<io::Result<_>>()?;
    let mut held = Vec::with_capacity(2 * pairs);
    for i in 0..pairs {
        let client = TcpStream::connect(addrs[i % LISTENERS])?;
        let (server, _) = listeners[i % LISTENERS].accept()?;
        held.push(client);
        held.push(server);
    }
    let mut buf = [0u8; 16];
    for i in 0..time_wait {
        let client = TcpStream::connect(addrs[i % LISTENERS])?;
        let (mut server, _) = listeners[i % LISTENERS].accept()?;
        drop(client);
        // Wait for the client's FIN, then close: the client is left in TIME_WAIT.
        while server.read(&mut buf)? > 0 {}
    }
    println!("ready");
    io::stdout().flush()?;
    for line in io::stdin().lock().lines() {
        line?;
    }
    drop(held);
    Ok(())
}
