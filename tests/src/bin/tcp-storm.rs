//! A connection storm on loopback, for `cargo xtask bench`: a fixed number of short TCP
//! connections between client threads and a server in this same process, then one JSON line on
//! stdout with what was done.
//!
//! Each connection sends one byte, the close mode, then closes in one of four ways, in turn:
//!
//! | mode | what happens                                    | transitions (client + server) |
//! | ---- | ----------------------------------------------- | ----------------------------- |
//! | `c`  | the client closes first, the server follows     | 5 + 5                         |
//! | `s`  | the server closes first, the client follows     | 5 + 5                         |
//! | `r`  | the client resets (SO_LINGER 0)                 | 3 + 3                         |
//! | `R`  | the server resets (SO_LINGER 0)                 | 3 + 3                         |
//!
//! plus the listener's own CLOSE→LISTEN and LISTEN→CLOSE. An orderly close is 5 transitions on
//! each side whichever way it goes (FIN_WAIT1→FIN_WAIT2→CLOSE, CLOSE_WAIT→LAST_ACK→CLOSE, or
//! FIN_WAIT1→CLOSING→CLOSE when both sides close at once).
//!
//! TIME_WAIT and ephemeral ports: the side that closes first keeps a timewait socket for 60 s.
//! When it is the server, the timewait socket holds the server's port, not a client ephemeral
//! port, so half of the orderly closes cost no ephemeral port at all; resets leave no timewait
//! socket. The client-first closes rely on `net.ipv4.tcp_tw_reuse` (default 2: reuse on
//! loopback) to reuse timewait ports after a second; with it at 0, a long storm runs out of
//! the ~28,000 ephemeral ports and the storm reports failed connections.
//!
//! Usage: `tcp-storm [--connections N] [--threads T] [--rate CONN_PER_S] [--port P] [--ipv6]
//! [--timeout SECS]`. Exits 1 when a connection failed or the timeout struck, after printing.

use std::{
    io::{self, Read, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::json;

/// The close modes, taken in turn by connection index.
const MIX: [Mode; 4] = [
    Mode::ClientFirst,
    Mode::ServerFirst,
    Mode::ClientReset,
    Mode::ServerReset,
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    ClientFirst,
    ServerFirst,
    ClientReset,
    ServerReset,
}

impl Mode {
    fn byte(self) -> u8 {
        match self {
            Self::ClientFirst => b'c',
            Self::ServerFirst => b's',
            Self::ClientReset => b'r',
            Self::ServerReset => b'R',
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        MIX.into_iter().find(|mode| mode.byte() == byte)
    }

    /// State transitions of both sockets of one connection (see the module's table).
    fn transitions(self) -> u64 {
        match self {
            Self::ClientFirst | Self::ServerFirst => 10,
            Self::ClientReset | Self::ServerReset => 6,
        }
    }

    /// Transitions of the server's (accepted) socket alone.
    fn server_transitions(self) -> u64 {
        self.transitions() / 2
    }

    fn name(self) -> &'static str {
        match self {
            Self::ClientFirst => "client_close",
            Self::ServerFirst => "server_close",
            Self::ClientReset => "client_reset",
            Self::ServerReset => "server_reset",
        }
    }
}

/// The listener's CLOSE→LISTEN and LISTEN→CLOSE.
const LISTENER_TRANSITIONS: u64 = 2;

struct Options {
    connections: u64,
    threads: usize,
    /// Connections per second over all threads; `None`: as fast as possible.
    rate: Option<f64>,
    port: u16,
    ipv6: bool,
    timeout: Duration,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        connections: 10_000,
        threads: 4,
        rate: None,
        port: 0,
        ipv6: false,
        timeout: Duration::from_secs(120),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--ipv6" {
            options.ipv6 = true;
            continue;
        }
        if ![
            "--connections",
            "--threads",
            "--rate",
            "--port",
            "--timeout",
        ]
        .contains(&flag.as_str())
        {
            return Err(format!("unknown flag {flag}"));
        }
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = || format!("bad value for {flag}: `{value}`");
        match flag.as_str() {
            "--connections" => options.connections = value.parse().map_err(|_| bad())?,
            "--threads" => {
                options.threads = value.parse().ok().filter(|t| *t > 0).ok_or_else(bad)?
            }
            "--rate" => {
                let rate: f64 = value.parse().map_err(|_| bad())?;
                if !(rate.is_finite() && rate >= 0.0) {
                    return Err(bad());
                }
                // 0 means as fast as possible, like no --rate.
                options.rate = (rate > 0.0).then_some(rate);
            }
            "--port" => options.port = value.parse().map_err(|_| bad())?,
            _ => {
                let secs: f64 = value.parse().map_err(|_| bad())?;
                options.timeout = Duration::try_from_secs_f64(secs)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(bad)?;
            }
        }
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(options) => options,
        Err(err) => {
            eprintln!("tcp-storm: {err}");
            return ExitCode::from(2);
        }
    };
    match storm(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            eprintln!("tcp-storm: {err}");
            ExitCode::FAILURE
        }
    }
}

/// What the client threads did.
#[derive(Default)]
struct Tally {
    done: [AtomicU64; 4],
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Tally {
    fn fail(&self, err: io::Error) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        first.get_or_insert_with(|| err.to_string());
    }
}

/// Runs the storm and prints its report; `Ok(false)` when it fell short.
fn storm(options: &Options) -> io::Result<bool> {
    let ip = if options.ipv6 {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    let listener = TcpListener::bind(SocketAddr::new(ip, options.port))?;
    // std listens with a backlog of 128; a storm that outruns the acceptor would overflow it
    // and turn connections into retransmissions. Listening again only raises the backlog
    // (capped by net.core.somaxconn).
    // SAFETY: listen(2) on a socket we own.
    if unsafe { libc::listen(listener.as_raw_fd(), 4096) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let addr = listener.local_addr()?;
    let start = Instant::now();
    let deadline = start + options.timeout;

    let accepted = Arc::new(AtomicU64::new(0));
    let (to_workers, from_acceptor) = mpsc::channel::<TcpStream>();
    let from_acceptor = Arc::new(Mutex::new(from_acceptor));
    let acceptor = {
        let listener = listener.try_clone()?;
        let accepted = accepted.clone();
        thread::spawn(move || {
            // Ends when the main thread shuts the listener down (accept fails).
            while let Ok((stream, _)) = listener.accept() {
                accepted.fetch_add(1, Ordering::Relaxed);
                if to_workers.send(stream).is_err() {
                    break;
                }
            }
        })
    };
    let workers: Vec<_> = (0..options.threads)
        .map(|_| {
            let from_acceptor = from_acceptor.clone();
            thread::spawn(move || {
                loop {
                    let next = from_acceptor
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .recv();
                    let Ok(stream) = next else { break };
                    serve(stream, deadline);
                }
            })
        })
        .collect();

    let next = Arc::new(AtomicU64::new(0));
    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..options.threads)
        .map(|_| {
            let (next, tally) = (next.clone(), tally.clone());
            let (total, rate) = (options.connections, options.rate);
            thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total || Instant::now() >= deadline {
                        break;
                    }
                    if let Some(rate) = rate {
                        // Connection i is due at i / rate: a global schedule, so a late thread
                        // catches up instead of lowering the rate.
                        let due = start + Duration::from_secs_f64(i as f64 / rate);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            thread::sleep(wait);
                        }
                    }
                    let slot = (i % MIX.len() as u64) as usize;
                    match connect(addr, MIX[slot], deadline) {
                        Ok(()) => {
                            tally.done[slot].fetch_add(1, Ordering::Relaxed);
                        }
                        Err(err) => tally.fail(err),
                    }
                }
            })
        })
        .collect();
    for client in clients {
        let _ = client.join();
    }
    let done: Vec<u64> = tally
        .done
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .collect();
    let connected: u64 = done.iter().sum();
    // Connections in the accept queue at shutdown would be reset by the kernel instead of
    // closed by the server: wait until the acceptor has taken every completed one.
    while accepted.load(Ordering::Relaxed) < connected && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    // Wakes the acceptor blocked in accept(2): LISTEN→CLOSE happens here.
    // SAFETY: shutdown(2) on a socket we own.
    unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR) };
    let _ = acceptor.join();
    for worker in workers {
        let _ = worker.join();
    }
    let elapsed = start.elapsed().as_secs_f64();

    let failed = tally.failed.load(Ordering::Relaxed);
    let timed_out = connected + failed < options.connections;
    let expected: u64 = MIX
        .iter()
        .zip(&done)
        .map(|(mode, n)| mode.transitions() * n)
        .sum::<u64>()
        + LISTENER_TRANSITIONS;
    let expected_server: u64 = MIX
        .iter()
        .zip(&done)
        .map(|(mode, n)| mode.server_transitions() * n)
        .sum::<u64>()
        + LISTENER_TRANSITIONS;
    let by_mode: serde_json::Map<String, serde_json::Value> = MIX
        .iter()
        .zip(&done)
        .map(|(mode, n)| (mode.name().to_owned(), json!(n)))
        .collect();
    let first_error = tally
        .first_error
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    let report = json!({
        "connections": connected,
        "failed": failed,
        "timed_out": timed_out,
        "first_error": first_error,
        "elapsed_s": elapsed,
        "conn_per_s": connected as f64 / elapsed,
        "address": addr.ip().to_string(),
        "port": addr.port(),
        "threads": options.threads,
        "rate": options.rate,
        "by_mode": by_mode,
        "expected_transitions": expected,
        "expected_server_transitions": expected_server,
    });
    println!("{report}");
    Ok(failed == 0 && !timed_out)
}

/// One client connection: connect, send the mode, close as the mode says.
fn connect(addr: SocketAddr, mode: Mode, deadline: Instant) -> io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.write_all(&[mode.byte()])?;
    match mode {
        Mode::ClientFirst => {}
        Mode::ClientReset => linger0(&stream)?,
        Mode::ServerFirst | Mode::ServerReset => {
            stream.set_read_timeout(Some(remaining(deadline)))?;
            match read_to_end(&mut stream) {
                Ok(()) => {}
                Err(err) if mode == Mode::ServerReset => {
                    if err.kind() != io::ErrorKind::ConnectionReset {
                        return Err(err);
                    }
                }
                Err(err) => return Err(err),
            }
        }
    }
    drop(stream);
    Ok(())
}

/// The server's side of one connection. Errors end the connection: the client tallies.
fn serve(mut stream: TcpStream, deadline: Instant) {
    let _ = stream.set_read_timeout(Some(remaining(deadline)));
    let mut byte = [0u8; 1];
    let mode = match stream.read(&mut byte) {
        Ok(1) => Mode::from_byte(byte[0]),
        _ => None,
    };
    match mode {
        // Wait for the client's FIN (or RST) so that the client closes first.
        Some(Mode::ClientFirst | Mode::ClientReset) => {
            let _ = read_to_end(&mut stream);
        }
        Some(Mode::ServerReset) => {
            let _ = linger0(&stream);
        }
        Some(Mode::ServerFirst) | None => {}
    }
}

fn remaining(deadline: Instant) -> Duration {
    // A zero read timeout would mean "none": keep at least a millisecond.
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

fn read_to_end(stream: &mut TcpStream) -> io::Result<()> {
    let mut buf = [0u8; 64];
    loop {
        if stream.read(&mut buf)? == 0 {
            return Ok(());
        }
    }
}

/// SO_LINGER with a zero timeout: close(2) sends a RST instead of a FIN.
fn linger0(stream: &TcpStream) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` is a live `struct linger` of the size passed; the fd is open.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
