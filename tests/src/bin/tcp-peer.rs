//! A scripted TCP peer for the end-to-end tests: one process per side of a connection, so that
//! each side has its own pid. Reads one command per line on stdin, answers one line on stdout
//! (`ok [value]` or `error <reason>`).
//!
//! Commands: `listen ADDR [PORT]` (port 0 unless given; answers the port), `backlog N` (listen()
//! again with backlog N: Linux then takes the new bound), `accept` (answers the peer's port),
//! `connect ADDR PORT` (answers the local port), `connect-nowait ADDR PORT` (a non-blocking
//! connect left in progress; answers the local port), `linger0`, `keepalive IDLE_S [INTVL_S CNT]`,
//! `user-timeout MS`, `close`, `shutdown-write`, `wait-eof`, `send N`, `sleep MS`,
//! `close-listener`, `pid`, `exit`;
//! for accept queues: `listen-backlog ADDR N` (IPv4, listen(N); answers the port),
//! `connect-held ADDR PORT` (a non-blocking connect kept beside the others, given 300 ms to
//! complete; answers `PORT established` or `PORT pending`), `close-pending` (closes the held
//! connects that had not completed, so they send no more SYNs; answers how many) and
//! `close-held` (closes every held one; answers how many).

use std::{
    io::{self, BufRead, Read, Write},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd, FromRawFd},
    thread,
    time::Duration,
};

/// Connections of `connect-held`, and whether each had completed.
type Held = Vec<(TcpStream, bool)>;

fn main() {
    let mut listener: Option<TcpListener> = None;
    let mut stream: Option<TcpStream> = None;
    let mut held: Held = Vec::new();
    let stdout = io::stdout();
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match handle(&words, &mut listener, &mut stream, &mut held) {
            Ok(Some(value)) => format!("ok {value}"),
            Ok(None) => "ok".to_owned(),
            Err(err) => format!("error {err}"),
        };
        let mut out = stdout.lock();
        if writeln!(out, "{answer}")
            .and_then(|()| out.flush())
            .is_err()
        {
            break;
        }
        if words.first() == Some(&"exit") {
            break;
        }
    }
}

fn handle(
    words: &[&str],
    listener: &mut Option<TcpListener>,
    stream: &mut Option<TcpStream>,
    held: &mut Held,
) -> Result<Option<String>, String> {
    let err = |e: io::Error| e.kind().to_string().replace(' ', "_");
    let arg = |i: usize| words.get(i).copied().ok_or("missing argument".to_owned());
    let conn = |stream: &mut Option<TcpStream>| -> Result<(), String> {
        stream
            .as_ref()
            .map(|_| ())
            .ok_or("no connection".to_owned())
    };
    match words.first().copied().unwrap_or("") {
        "pid" => Ok(Some(std::process::id().to_string())),
        "listen" => {
            let addr: IpAddr = arg(1)?.parse().map_err(|_| "bad address")?;
            let port: u16 = match words.get(2) {
                Some(port) => port.parse().map_err(|_| "bad port")?,
                None => 0,
            };
            let l = TcpListener::bind(SocketAddr::new(addr, port)).map_err(err)?;
            let port = l.local_addr().map_err(err)?.port();
            *listener = Some(l);
            Ok(Some(port.to_string()))
        }
        "backlog" => {
            let l = listener.as_ref().ok_or("no listener")?;
            let backlog: libc::c_int = arg(1)?.parse().map_err(|_| "bad backlog")?;
            // SAFETY: listen(2) on the listener's open fd.
            if unsafe { libc::listen(l.as_raw_fd(), backlog) } != 0 {
                return Err(io::Error::last_os_error().to_string());
            }
            Ok(None)
        }
        "accept" => {
            let l = listener.as_ref().ok_or("no listener")?;
            let (s, peer) = l.accept().map_err(err)?;
            *stream = Some(s);
            Ok(Some(peer.port().to_string()))
        }
        "connect" => {
            let addr: IpAddr = arg(1)?.parse().map_err(|_| "bad address")?;
            let port: u16 = arg(2)?.parse().map_err(|_| "bad port")?;
            let s =
                TcpStream::connect_timeout(&SocketAddr::new(addr, port), Duration::from_secs(10))
                    .map_err(err)?;
            let local = s.local_addr().map_err(err)?.port();
            *stream = Some(s);
            Ok(Some(local.to_string()))
        }
        "connect-nowait" => {
            let addr: Ipv4Addr = arg(1)?.parse().map_err(|_| "bad IPv4 address")?;
            let port: u16 = arg(2)?.parse().map_err(|_| "bad port")?;
            let s = connect_nowait(addr, port)?;
            let local = s.local_addr().map_err(err)?.port();
            *stream = Some(s);
            Ok(Some(local.to_string()))
        }
        "user-timeout" => {
            conn(stream)?;
            let ms: libc::c_uint = arg(1)?.parse().map_err(|_| "bad milliseconds")?;
            setsockopt(
                stream.as_ref().unwrap(),
                libc::IPPROTO_TCP,
                libc::TCP_USER_TIMEOUT,
                &ms,
            )?;
            Ok(None)
        }
        "linger0" => {
            conn(stream)?;
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            setsockopt(
                stream.as_ref().unwrap(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                &linger,
            )?;
            Ok(None)
        }
        "keepalive" => {
            conn(stream)?;
            let idle: libc::c_int = arg(1)?.parse().map_err(|_| "bad seconds")?;
            let s = stream.as_ref().unwrap();
            setsockopt(s, libc::SOL_SOCKET, libc::SO_KEEPALIVE, &1 as &libc::c_int)?;
            setsockopt(s, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, &idle)?;
            if let (Some(intvl), Some(cnt)) = (words.get(2), words.get(3)) {
                let intvl: libc::c_int = intvl.parse().map_err(|_| "bad seconds")?;
                let cnt: libc::c_int = cnt.parse().map_err(|_| "bad count")?;
                setsockopt(s, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, &intvl)?;
                setsockopt(s, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, &cnt)?;
            }
            Ok(None)
        }
        "send" => {
            conn(stream)?;
            let n: usize = arg(1)?.parse().map_err(|_| "bad size")?;
            stream
                .as_mut()
                .unwrap()
                .write_all(&vec![b'x'; n])
                .map_err(err)?;
            Ok(None)
        }
        "shutdown-write" => {
            conn(stream)?;
            stream
                .as_ref()
                .unwrap()
                .shutdown(std::net::Shutdown::Write)
                .map_err(err)?;
            Ok(None)
        }
        "wait-eof" => {
            conn(stream)?;
            let mut buf = [0u8; 4096];
            loop {
                match stream.as_mut().unwrap().read(&mut buf) {
                    Ok(0) => return Ok(None),
                    Ok(_) => {}
                    Err(e) => return Err(err(e)),
                }
            }
        }
        "close" => {
            conn(stream)?;
            *stream = None;
            Ok(None)
        }
        "listen-backlog" => {
            let addr: Ipv4Addr = arg(1)?.parse().map_err(|_| "bad IPv4 address")?;
            let backlog: libc::c_int = arg(2)?.parse().map_err(|_| "bad backlog")?;
            let l = listen_with_backlog(addr, backlog).map_err(err)?;
            let port = l.local_addr().map_err(err)?.port();
            *listener = Some(l);
            Ok(Some(port.to_string()))
        }
        "connect-held" => {
            let addr: Ipv4Addr = arg(1)?.parse().map_err(|_| "bad IPv4 address")?;
            let port: u16 = arg(2)?.parse().map_err(|_| "bad port")?;
            let (s, established) = connect_nonblocking(addr, port).map_err(err)?;
            let local = s.local_addr().map_err(err)?.port();
            held.push((s, established));
            let how = if established {
                "established"
            } else {
                "pending"
            };
            Ok(Some(format!("{local} {how}")))
        }
        "close-pending" => {
            let before = held.len();
            held.retain(|(_, established)| *established);
            Ok(Some((before - held.len()).to_string()))
        }
        "close-held" => {
            let n = held.len();
            held.clear();
            Ok(Some(n.to_string()))
        }
        "close-listener" => {
            *listener = None;
            Ok(None)
        }
        "sleep" => {
            let ms: u64 = arg(1)?.parse().map_err(|_| "bad milliseconds")?;
            thread::sleep(Duration::from_millis(ms));
            Ok(None)
        }
        "exit" => Ok(None),
        other => Err(format!("unknown command `{other}`")),
    }
}

/// A listener of `addr` on a port of the kernel's choice, with listen()'s backlog as given
/// (std's is fixed).
fn listen_with_backlog(addr: Ipv4Addr, backlog: libc::c_int) -> io::Result<TcpListener> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a socket we own; the listener closes it from here on.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    let sin = sockaddr_in(addr, 0);
    // SAFETY: a valid sockaddr_in of the length passed, an open socket.
    let rc = unsafe {
        libc::bind(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    // SAFETY: listen(2) on the open socket.
    if rc != 0 || unsafe { libc::listen(fd, backlog) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(listener)
}

/// A non-blocking connect, given 300 ms to complete; the stream and whether it did.
fn connect_nonblocking(addr: Ipv4Addr, port: u16) -> io::Result<(TcpStream, bool)> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a socket we own; the stream closes it from here on.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let sin = sockaddr_in(addr, port);
    // SAFETY: a valid sockaddr_in of the length passed, an open socket.
    let rc = unsafe {
        libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, 300) };
    let established = ready == 1 && stream.take_error()?.is_none() && stream.peer_addr().is_ok();
    Ok((stream, established))
}

/// A TCP socket whose connect to `addr:port` was started without waiting: it stays in
/// SYN_SENT until answered, given up or closed.
fn connect_nowait(addr: Ipv4Addr, port: u16) -> Result<TcpStream, String> {
    let os_err = || io::Error::last_os_error().to_string();
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(os_err());
    }
    // SAFETY: `fd` is a socket we own; the stream closes it from here on.
    let stream = unsafe { TcpStream::from_raw_fd(fd) };
    let sin = sockaddr_in(addr, port);
    // SAFETY: a valid sockaddr_in of the length passed, an open socket.
    let rc = unsafe {
        libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if rc != 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINPROGRESS) {
        return Err(os_err());
    }
    Ok(stream)
}

fn sockaddr_in(addr: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(addr.octets()),
        },
        sin_zero: [0; 8],
    }
}

fn setsockopt<T>(
    s: &TcpStream,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> Result<(), String> {
    // SAFETY: `value` points to a live `T` of the size passed; the fd is open.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error().to_string())
    }
}
