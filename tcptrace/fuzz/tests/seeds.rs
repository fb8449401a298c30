//! The seed maker: rewrites the committed seed corpora in `seeds/<target>/` from real data of
//! the machine it runs on (how each seed is made: README.md). `#[ignore]`d: it needs root, a
//! kernel with BTF and the kernel program built, and it replaces committed files. Run it by
//! hand when an input format changes:
//!
//!     cargo test --manifest-path tcptrace/fuzz/Cargo.toml --test seeds -- --ignored

use std::{
    collections::{BTreeSet, HashMap},
    fs,
    io::{self, Read as _, Write as _},
    net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use tcptrace::{
    core::{decode::encode, state::TcpState},
    kernel::btf::{Btf, read_kernel_btf},
    os::diag::{
        ALL_STATES, DumpRequest,
        netlink::request_bytes,
        parse::{ParseError, SocketEntry, parse_batch},
    },
};
use tcptrace_ebpf::{COMM_LEN, Event, close, flags, kind, names};

/// Replaces the seeds of one target by `files` (name, bytes).
fn write_seeds(target: &str, files: &[(String, Vec<u8>)]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("seeds")
        .join(target);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in files {
        // Seeds stay small: libFuzzer's default input size limit is the largest seed's, and
        // every input of a run is parsed whole.
        assert!(bytes.len() <= 12 * 1024, "{name}: {} bytes", bytes.len());
        fs::write(dir.join(name), bytes).unwrap();
    }
    eprintln!("{}: {} seeds", dir.display(), files.len());
}

// ---------------------------------------------------------------------------------------------
// Ring-buffer records

const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;
/// The initial network namespace's inode number on Linux.
const INIT_NETNS: u32 = 4026531840;

fn comm(name: &str) -> [u8; COMM_LEN] {
    let mut comm = [0; COMM_LEN];
    comm[..name.len()].copy_from_slice(name.as_bytes());
    comm
}

fn v4(addr: Ipv4Addr) -> [u8; 16] {
    let mut bytes = [0; 16];
    bytes[..4].copy_from_slice(&addr.octets());
    bytes
}

/// One side of a connection as the transition program fills an event for it.
#[derive(Clone, Copy)]
struct Side {
    sk: u64,
    family: u16,
    local: ([u8; 16], u16),
    remote: ([u8; 16], u16),
    owner: Option<(u32, &'static str)>,
}

impl Side {
    fn transition(self, ts_ns: u64, from: TcpState, to: TcpState) -> Event {
        Event {
            ts_ns,
            skaddr: self.sk,
            saddr: self.local.0,
            daddr: self.remote.0,
            comm: comm(self.owner.map_or("", |(_, comm)| comm)),
            tgid: self.owner.map_or(0, |(tgid, _)| tgid),
            netns: INIT_NETNS,
            sport: self.local.1,
            dport: self.remote.1,
            family: self.family,
            kind: kind::TRANSITION,
            flags: if self.owner.is_some() {
                0
            } else {
                flags::OWNER_UNKNOWN
            },
            oldstate: from as u16,
            newstate: to as u16,
            // The close details are read at every →CLOSE: an orderly one has no error.
            close_flags: if to == TcpState::Close {
                close::DETAILS
            } else {
                0
            },
            ..Event::empty()
        }
    }

    /// A →CLOSE with the kernel's error, timer counts and close flags.
    fn closed(self, ts_ns: u64, from: TcpState, err: u8, counts: (u8, u8), bits: u8) -> Event {
        Event {
            sk_err: err,
            retransmits: counts.0,
            probes_out: counts.1,
            close_flags: close::DETAILS | bits,
            ..self.transition(ts_ns, from, TcpState::Close)
        }
    }

    /// In softirq the program does not know the owner (tgid 0, empty comm, the flag set).
    fn in_softirq(self) -> Self {
        Self {
            owner: None,
            ..self
        }
    }
}

/// A signal as the signal programs emit it: socket, namespace and state only.
fn signal(ts_ns: u64, sk: u64, kind: u8, state: u16) -> Event {
    Event {
        ts_ns,
        skaddr: sk,
        netns: INIT_NETNS,
        kind,
        flags: flags::OWNER_UNKNOWN,
        oldstate: state,
        ..Event::empty()
    }
}

/// A reset sent with its reason, as the program reads it on Linux 6.10 and later.
fn reset_with_reason(ts_ns: u64, sk: u64, state: u16, reason: u16) -> Event {
    Event {
        close_flags: close::RESET_REASON,
        reset_reason: reason,
        ..signal(ts_ns, sk, kind::RESET_SENT, state)
    }
}

/// A packet dropped for a fate, as the program on `skb:kfree_skb` fills its record: local is
/// the packet's destination (the listener), remote its source (the peer).
fn dropped(
    ts_ns: u64,
    fate: u16,
    family: u16,
    local: ([u8; 16], u16),
    remote: ([u8; 16], u16),
    tcp_flags: u8,
    owner: Option<(u32, &str)>,
) -> Event {
    Event {
        ts_ns,
        saddr: local.0,
        daddr: remote.0,
        comm: comm(owner.map_or("", |(_, comm)| comm)),
        tgid: owner.map_or(0, |(tgid, _)| tgid),
        netns: INIT_NETNS,
        sport: local.1,
        dport: remote.1,
        family,
        kind: kind::DROP,
        flags: if owner.is_some() {
            0
        } else {
            flags::OWNER_UNKNOWN
        },
        oldstate: u16::from(tcp_flags),
        newstate: fate,
        // SKB_DROP_REASON_NOT_SPECIFIED, NO_SOCKET and TCP_LISTEN_OVERFLOW on 6.18.
        holders: match fate {
            tcptrace_ebpf::fate::CLOSED_PORT => 3,
            tcptrace_ebpf::fate::LISTEN_OVERFLOW => 40,
            _ => 2,
        },
        ..Event::empty()
    }
}

fn decode_seeds() -> Vec<(String, Vec<u8>)> {
    use TcpState::*;
    let lo = Ipv4Addr::LOCALHOST;
    let listener = Side {
        sk: 0xffff_8881_0a3c_0000,
        family: AF_INET,
        local: (v4(lo), 8080),
        remote: ([0; 16], 0),
        owner: Some((1187, "nginx")),
    };
    let client = Side {
        sk: 0xffff_8881_0a3c_1a40,
        family: AF_INET,
        local: (v4(lo), 41_876),
        remote: (v4(lo), 8080),
        owner: Some((4242, "curl")),
    };
    let child = Side {
        sk: 0xffff_8881_0a3c_3480,
        local: (v4(lo), 8080),
        remote: (v4(lo), 41_876),
        owner: Some((1187, "nginx")),
        ..listener
    };
    // One loopback connection, client closing first, in the order the kernel reports it
    // (TOOLCHAIN.md §6): the handshake's server side and the ACKs run in softirq.
    let t = 1_844_674_407_370_955u64;
    let mut events = vec![
        (
            "v4-listener-close-listen",
            listener.transition(t, Close, Listen),
        ),
        (
            "v4-client-close-syn_sent",
            client.transition(t + 61_000, Close, SynSent),
        ),
        (
            "v4-client-syn_sent-established",
            client.transition(t + 118_000, SynSent, Established),
        ),
        (
            "v4-child-listen-syn_recv",
            child.in_softirq().transition(t + 131_000, Listen, SynRecv),
        ),
        (
            "v4-child-syn_recv-established",
            child
                .in_softirq()
                .transition(t + 140_000, SynRecv, Established),
        ),
        (
            "v4-client-established-fin_wait1",
            client.transition(t + 2_310_000, Established, FinWait1),
        ),
        (
            "v4-child-established-close_wait",
            child
                .in_softirq()
                .transition(t + 2_341_000, Established, CloseWait),
        ),
        (
            "v4-client-fin_wait1-fin_wait2",
            client
                .in_softirq()
                .transition(t + 2_352_000, FinWait1, FinWait2),
        ),
        (
            "v4-child-close_wait-last_ack",
            child.transition(t + 2_904_000, CloseWait, LastAck),
        ),
        (
            "v4-client-fin_wait2-close",
            client
                .in_softirq()
                .transition(t + 2_937_000, FinWait2, Close),
        ),
        (
            "v4-child-last_ack-close",
            child.in_softirq().transition(t + 2_940_000, LastAck, Close),
        ),
        (
            "v4-listener-listen-close",
            listener.transition(t + 9_000_000, Listen, Close),
        ),
    ];
    // IPv6 on ::1, and an IPv4 peer of a dual-stack listener (addresses IPv4-mapped).
    let v6_client = Side {
        sk: 0xffff_8881_2b77_0000,
        family: AF_INET6,
        local: (Ipv6Addr::LOCALHOST.octets(), 50_112),
        remote: (Ipv6Addr::LOCALHOST.octets(), 443),
        owner: Some((5120, "wget")),
    };
    let mapped = |addr: Ipv4Addr| addr.to_ipv6_mapped().octets();
    let mapped_child = Side {
        sk: 0xffff_8881_2b77_5d00,
        family: AF_INET6,
        local: (mapped(lo), 8443),
        remote: (mapped(Ipv4Addr::new(127, 0, 0, 2)), 39_000),
        owner: None,
    };
    let u = t + 20_000_000;
    events.extend([
        (
            "v6-client-close-syn_sent",
            v6_client.transition(u, Close, SynSent),
        ),
        (
            "v6-client-syn_sent-established",
            v6_client.transition(u + 90_000, SynSent, Established),
        ),
        (
            "v6-client-established-fin_wait1",
            v6_client.transition(u + 700_000, Established, FinWait1),
        ),
        (
            "v4mapped-child-listen-syn_recv",
            mapped_child.transition(u + 1_000_000, Listen, SynRecv),
        ),
    ]);
    // A child of a listener that predates tracing, held by five processes (the owner is the
    // lowest pid of them), and a socket that predates tracing, with the cookie inet_diag gave
    // it at start.
    let mut held_child = child.transition(u + 2_000_000, Listen, SynRecv);
    held_child.holders = 5;
    let mut predating = Side {
        sk: 0xffff_8881_2b77_8a00,
        remote: (v4(lo), 52_000),
        ..child
    }
    .in_softirq()
    .transition(u + 3_000_000, Established, CloseWait);
    predating.cookie = 0x4_d2f1;
    events.extend([
        ("v4-child-listen-syn_recv-listener-holders", held_child),
        ("v4-predating-established-close_wait", predating),
    ]);
    // The signals, with the state the socket was in.
    let s = t + 30_000_000;
    events.extend([
        (
            "signal-reset-received-syn_sent",
            signal(s, client.sk, kind::RESET_RECEIVED, SynSent as u16),
        ),
        (
            "signal-reset-sent-established",
            signal(s + 10_000, child.sk, kind::RESET_SENT, Established as u16),
        ),
        (
            "signal-retransmit-syn_sent",
            signal(
                s + 1_020_000_000,
                client.sk,
                kind::RETRANSMIT,
                SynSent as u16,
            ),
        ),
        (
            "signal-retransmit-synack-listen",
            signal(
                s + 1_030_000_000,
                listener.sk,
                kind::RETRANSMIT_SYNACK,
                Listen as u16,
            ),
        ),
    ]);
    // The closes of the causes, with the kernel's facts (Linux 6.18's reset reasons).
    events.extend([
        (
            "v4-client-syn_sent-close-refused",
            client.closed(s + 1_040_000_000, SynSent, 111, (0, 0), 0),
        ),
        (
            "v4-client-syn_sent-close-syn-retries",
            client.closed(s + 1_050_000_000, SynSent, 110, (2, 0), 0),
        ),
        (
            "v4-client-syn_sent-close-abandoned",
            client.closed(s + 1_060_000_000, SynSent, 0, (0, 0), 0),
        ),
        (
            "v4-client-established-close-user-timeout",
            client.closed(
                s + 1_070_000_000,
                Established,
                110,
                (3, 0),
                close::USER_TIMEOUT,
            ),
        ),
        (
            "signal-reset-sent-keepalive-reason",
            reset_with_reason(s + 1_080_000_000, client.sk, Established as u16, 15),
        ),
        (
            "v4-client-established-close-keepalive",
            client.closed(
                s + 1_080_000_001,
                Established,
                110,
                (0, 1),
                close::KEEPALIVE,
            ),
        ),
        (
            "v4-child-last_ack-close-orphan-retries",
            child.closed(s + 1_090_000_000, LastAck, 110, (4, 0), close::ORPHAN),
        ),
    ]);
    // Packets dropped for request sockets' fates and closed ports.
    let d = s + 2_000_000_000;
    let v6_lo = Ipv6Addr::LOCALHOST.octets();
    events.extend([
        (
            "drop-embryonic-reset-v4-listener-owner",
            dropped(
                d,
                tcptrace_ebpf::fate::EMBRYONIC_RESET,
                AF_INET,
                (v4(lo), 8080),
                (v4(lo), 23_551),
                0x04,
                Some((4242, "python3")),
            ),
        ),
        (
            "drop-listen-overflow-v4",
            dropped(
                d + 1_000,
                tcptrace_ebpf::fate::LISTEN_OVERFLOW,
                AF_INET,
                (v4(lo), 8080),
                (v4(lo), 41_000),
                0x10,
                None,
            ),
        ),
        (
            "drop-closed-port-v6",
            dropped(
                d + 2_000,
                tcptrace_ebpf::fate::CLOSED_PORT,
                AF_INET6,
                (v6_lo, 13),
                (v6_lo, 52_000),
                0x02,
                None,
            ),
        ),
    ]);
    let mut seeds: Vec<(String, Vec<u8>)> = events
        .into_iter()
        .map(|(name, event)| (name.to_owned(), encode(&event).to_vec()))
        .collect();
    // A newer kernel side may append fields: the decoder accepts longer records.
    let mut longer = encode(&client.transition(t, Close, SynSent)).to_vec();
    longer.extend([0x5a; 8]);
    seeds.push(("v4-longer-record".to_owned(), longer));
    seeds
}

#[test]
#[ignore = "rewrites the committed seeds"]
fn make_decode_seeds() {
    let seeds = decode_seeds();
    for (name, bytes) in &seeds {
        assert!(tcptrace::core::decode::decode(bytes).is_ok(), "{name}");
    }
    write_seeds("decode", &seeds);
}

// ---------------------------------------------------------------------------------------------
// NETLINK_SOCK_DIAG dumps

fn check(ret: libc::c_int, what: &str) -> libc::c_int {
    assert!(ret >= 0, "{what}: {}", io::Error::last_os_error());
    ret
}

/// Brings up `lo` of the current network namespace (a new one has it down).
fn loopback_up() {
    // SAFETY: a plain socket for the ioctls, owned at once.
    let fd = unsafe {
        OwnedFd::from_raw_fd(check(
            libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0),
            "socket",
        ))
    };
    // SAFETY: ifreq is plain data; the name fits with its NUL.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write the ifreq passed, live for the call.
    unsafe {
        check(
            libc::ioctl(fd.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req),
            "SIOCGIFFLAGS",
        );
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        check(
            libc::ioctl(fd.as_raw_fd(), libc::SIOCSIFFLAGS, &req),
            "SIOCSIFFLAGS",
        );
    }
}

/// A listener with an accept queue of one connection, so that the next client's SYN is dropped
/// and it stays in SYN_SENT (std's `TcpListener::bind` asks for a backlog of 128).
fn tiny_listener() -> TcpListener {
    // SAFETY: socket(2), bind(2), listen(2) on a descriptor owned at once; the address is live
    // for the call with the length passed.
    unsafe {
        let fd = OwnedFd::from_raw_fd(check(
            libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0),
            "socket",
        ));
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(Ipv4Addr::LOCALHOST).to_be();
        check(
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as libc::socklen_t,
            ),
            "bind",
        );
        check(libc::listen(fd.as_raw_fd(), 0), "listen");
        TcpListener::from(fd)
    }
}

/// A client whose connect is left in progress.
fn connecting(to: SocketAddr) -> OwnedFd {
    let SocketAddr::V4(to) = to else {
        panic!("IPv4 only")
    };
    // SAFETY: as in `tiny_listener`; EINPROGRESS is the expected outcome of the connect.
    unsafe {
        let fd = OwnedFd::from_raw_fd(check(
            libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            ),
            "socket",
        ));
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_port = to.port().to_be();
        addr.sin_addr.s_addr = u32::from(*to.ip()).to_be();
        let ret = libc::connect(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        let err = io::Error::last_os_error();
        assert!(
            ret < 0 && err.raw_os_error() == Some(libc::EINPROGRESS),
            "{err}"
        );
        fd
    }
}

fn diag_socket() -> OwnedFd {
    // SAFETY: socket(2) with constant arguments, owned at once.
    unsafe {
        OwnedFd::from_raw_fd(check(
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            ),
            "socket(NETLINK_SOCK_DIAG)",
        ))
    }
}

/// Sends one dump request and returns the reply's receive buffers, byte for byte.
fn dump_raw(fd: &OwnedFd, request: &[u8]) -> Vec<Vec<u8>> {
    // SAFETY: sockaddr_nl is plain data; all zero is the kernel's address. The buffers are
    // live for the calls, with the lengths passed.
    unsafe {
        let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        let sent = libc::sendto(
            fd.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        );
        assert_eq!(
            sent,
            request.len() as isize,
            "{}",
            io::Error::last_os_error()
        );
        let mut buffers = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0);
            assert!(n > 0, "recv: {}", io::Error::last_os_error());
            let reply = buf[..n as usize].to_vec();
            let end = match parse_batch(&reply, &mut Vec::new()) {
                Ok(batch) => batch.done,
                Err(ParseError::Kernel(_)) => true,
                Err(err) => panic!("{err}"),
            };
            buffers.push(reply);
            if end {
                return buffers;
            }
        }
    }
}

fn sockets(fd: &OwnedFd, family: u8) -> Vec<SocketEntry> {
    let mut out = Vec::new();
    for reply in dump_raw(
        fd,
        &request_bytes(
            DumpRequest {
                family,
                tcp_info: false,
                states: ALL_STATES,
            },
            1,
        ),
    ) {
        parse_batch(&reply, &mut out).unwrap();
    }
    out
}

/// Sockets in most states a dump shows, on loopback. Held open while the dumps are taken.
struct Zoo {
    _keep: (Vec<TcpListener>, Vec<TcpStream>, Vec<OwnedFd>),
}

fn zoo() -> Zoo {
    let mut listeners = Vec::new();
    let mut streams = Vec::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let at = listener.local_addr().unwrap();
    let pair = || {
        let client = TcpStream::connect(at).unwrap();
        let (server, _) = listener.accept().unwrap();
        (client, server)
    };
    // ESTABLISHED, with unread bytes in the server's queue and keepalive on the client.
    let (client, server) = pair();
    (&client).write_all(b"not read yet").unwrap();
    // SAFETY: setsockopt with a live c_int of the length passed.
    unsafe {
        let on: libc::c_int = 1;
        check(
            libc::setsockopt(
                client.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_KEEPALIVE,
                (&on as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            ),
            "SO_KEEPALIVE",
        );
    }
    streams.extend([client, server]);
    // FIN_WAIT2 (client) and CLOSE_WAIT (server).
    let (client, server) = pair();
    client.shutdown(Shutdown::Write).unwrap();
    streams.extend([client, server]);
    // TIME_WAIT: the client closes first, then the server.
    let (client, mut server) = pair();
    drop(client);
    let mut rest = Vec::new();
    server.read_to_end(&mut rest).unwrap();
    drop(server);
    listeners.push(listener);
    // SYN_SENT: a listener whose accept queue is full drops the next SYN.
    let full = tiny_listener();
    let full_at = full.local_addr().unwrap();
    let queued = TcpStream::connect(full_at).unwrap();
    let syn_sent = connecting(full_at);
    listeners.push(full);
    streams.push(queued);
    // IPv6: an ESTABLISHED pair on ::1, and an IPv4 client of a dual-stack listener.
    let v6 = TcpListener::bind("[::1]:0").unwrap();
    let client = TcpStream::connect(v6.local_addr().unwrap()).unwrap();
    let (server, _) = v6.accept().unwrap();
    streams.extend([client, server]);
    listeners.push(v6);
    let dual = TcpListener::bind("[::]:0").unwrap();
    let port = dual.local_addr().unwrap().port();
    let client = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    let (server, _) = dual.accept().unwrap();
    streams.extend([client, server]);
    listeners.push(dual);
    Zoo {
        _keep: (listeners, streams, vec![syn_sent]),
    }
}

fn diag_seeds() -> Vec<(String, Vec<u8>)> {
    // SAFETY: unshare(2) of this thread's network namespace: the dumps then hold the sockets
    // made here only, whatever else runs on the machine.
    check(
        unsafe { libc::unshare(libc::CLONE_NEWNET) },
        "unshare(CLONE_NEWNET) (run as root)",
    );
    loopback_up();
    let _zoo = zoo();
    let diag = diag_socket();
    // The closes run on; wait for the states they end in.
    let wanted = [
        TcpState::Listen,
        TcpState::Established,
        TcpState::SynSent,
        TcpState::FinWait2,
        TcpState::CloseWait,
        TcpState::TimeWait,
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen: BTreeSet<u16> = sockets(&diag, libc::AF_INET as u8)
            .iter()
            .map(|entry| entry.state as u16)
            .collect();
        if wanted.iter().all(|state| seen.contains(&(*state as u16))) {
            break;
        }
        assert!(Instant::now() < deadline, "states seen: {seen:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut seeds = Vec::new();
    let mut seq = 10;
    for (family, name) in [(libc::AF_INET, "inet"), (libc::AF_INET6, "inet6")] {
        for tcp_info in [false, true] {
            seq += 1;
            let request = request_bytes(
                DumpRequest {
                    family: family as u8,
                    tcp_info,
                    states: ALL_STATES,
                },
                seq,
            );
            let info = if tcp_info { "-tcp_info" } else { "" };
            for (i, reply) in dump_raw(&diag, &request).into_iter().enumerate() {
                seeds.push((format!("dump-{name}{info}-{i}"), reply));
            }
        }
    }
    // A refused request: no address family 99, so the kernel answers NLMSG_ERROR (-EINVAL)
    // with the request echoed.
    let refused = request_bytes(
        DumpRequest {
            family: 99,
            tcp_info: false,
            states: ALL_STATES,
        },
        seq + 1,
    );
    for (i, reply) in dump_raw(&diag, &refused).into_iter().enumerate() {
        seeds.push((format!("error-einval-{i}"), reply));
    }
    seeds
}

#[test]
#[ignore = "needs root; rewrites the committed seeds"]
fn make_diag_seeds() {
    // In a thread of its own: the network namespace it enters is the thread's.
    let seeds = std::thread::spawn(diag_seeds).join().unwrap();
    write_seeds("diag", &seeds);
}

// ---------------------------------------------------------------------------------------------
// BTF

const BTF_MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

fn le32(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().unwrap())
}

/// One type record of a BTF blob, as read.
struct RawType {
    name: String,
    kind: u32,
    kind_flag: bool,
    size_or_type: u32,
    /// Its trailer's words (members, array, enumerators...).
    trailer: Vec<u32>,
}

impl RawType {
    /// (name offset, type id, offset) of each member of a struct or union.
    fn members(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        self.trailer.chunks(3).map(|m| (m[0], m[1], m[2]))
    }
}

fn c_string(strings: &[u8], offset: u32) -> String {
    let rest = &strings[offset as usize..];
    let end = rest.iter().position(|&b| b == 0).unwrap();
    String::from_utf8(rest[..end].to_vec()).unwrap()
}

/// Every type of a little-endian BTF blob, index 0 being void, and its string section.
fn read_btf(data: &[u8]) -> (Vec<RawType>, Vec<u8>) {
    assert_eq!(u16::from_le_bytes([data[0], data[1]]), BTF_MAGIC);
    let hdr = le32(data, 4) as usize;
    let types = &data[hdr + le32(data, 8) as usize..][..le32(data, 12) as usize];
    let strings = data[hdr + le32(data, 16) as usize..][..le32(data, 20) as usize].to_vec();
    let mut all = vec![RawType {
        name: String::new(),
        kind: 0,
        kind_flag: false,
        size_or_type: 0,
        trailer: Vec::new(),
    }];
    let mut at = 0;
    while at < types.len() {
        let info = le32(types, at + 4);
        let vlen = (info & 0xffff) as usize;
        let kind = (info >> 24) & 0x1f;
        let words = match kind {
            KIND_INT | KIND_VAR | KIND_DECL_TAG => 1,
            KIND_ARRAY => 3,
            KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => vlen * 3,
            KIND_ENUM | KIND_FUNC_PROTO => vlen * 2,
            _ => 0,
        };
        all.push(RawType {
            name: c_string(&strings, le32(types, at)),
            kind,
            kind_flag: info >> 31 == 1,
            size_or_type: le32(types, at + 8),
            trailer: (0..words).map(|i| le32(types, at + 12 + 4 * i)).collect(),
        });
        at += 12 + 4 * words;
    }
    (all, strings)
}

/// Writes types (index 0, void, not written) as a BTF blob; `names` gives each type's name and
/// `member_name` each member's, as strings to put in the new string section.
struct BtfWriter {
    types: Vec<u8>,
    strings: Vec<u8>,
    offsets: HashMap<String, u32>,
}

impl BtfWriter {
    fn new() -> Self {
        Self {
            types: Vec::new(),
            strings: vec![0],
            offsets: HashMap::new(),
        }
    }

    fn string(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        if let Some(&at) = self.offsets.get(s) {
            return at;
        }
        let at = self.strings.len() as u32;
        self.strings.extend(s.as_bytes());
        self.strings.push(0);
        self.offsets.insert(s.to_owned(), at);
        at
    }

    fn word(&mut self, word: u32) {
        self.types.extend(word.to_le_bytes());
    }

    fn record(&mut self, name: &str, kind: u32, kind_flag: bool, vlen: usize, size_or_type: u32) {
        let name = self.string(name);
        self.word(name);
        self.word(u32::from(kind_flag) << 31 | kind << 24 | vlen as u32);
        self.word(size_or_type);
    }

    fn finish(self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(BTF_MAGIC.to_le_bytes());
        out.extend([1, 0]); // version 1, no flags
        for word in [
            24,
            0,
            self.types.len() as u32,
            self.types.len() as u32,
            self.strings.len() as u32,
        ] {
            out.extend(word.to_le_bytes());
        }
        out.extend(self.types);
        out.extend(self.strings);
        out
    }
}

/// The members `Btf::sock_layout` reads, on their paths from `struct sock`, `inet_sock` and
/// `net` (tcptrace/src/btf.rs).
const WANTED_MEMBERS: &[&str] = &[
    "__sk_common",
    "sk_protocol",
    "skc_family",
    "skc_state",
    "skc_num",
    "skc_dport",
    "skc_rcv_saddr",
    "skc_daddr",
    "skc_v6_rcv_saddr",
    "skc_v6_daddr",
    "skc_cookie",
    "skc_net",
    "net",
    "sk",
    "inet_sport",
    "ns",
    "inum",
    "sk_err",
    "sk_err_soft",
    "skc_flags",
    "icsk_inet",
    "icsk_retransmits",
    "icsk_probes_out",
    "icsk_user_timeout",
];
/// Structs kept whole in the subset's graph: a pointer to one of them keeps its target.
const ROOTS: &[&str] = &[
    "sock",
    "sock_common",
    "inet_sock",
    "inet_connection_sock",
    "net",
    "ns_common",
];
/// Enums kept with their enumerators: the ones `sock_layout` and the reset reasons read.
const ENUMS: &[&str] = &["sock_flags", "sk_rst_reason"];

/// A real piece of the kernel's BTF: the structs `sock_layout` walks, each with only the members
/// on its paths (and the anonymous members that lead to them), at their real offsets and with
/// their real sizes and member types, plus the tracepoints' `btf_trace_*` typedefs.
struct Subset<'a> {
    all: &'a [RawType],
    strings: &'a [u8],
    kept: BTreeSet<u32>,
}

impl Subset<'_> {
    fn is_alias(kind: u32) -> bool {
        matches!(
            kind,
            KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG
        )
    }

    fn resolve(&self, mut id: u32) -> u32 {
        while Self::is_alias(self.all[id as usize].kind) {
            id = self.all[id as usize].size_or_type;
        }
        id
    }

    fn member_name(&self, name_off: u32) -> String {
        c_string(self.strings, name_off)
    }

    /// Whether a member of a struct is kept: it is on a wanted path, or anonymous and leads to
    /// one.
    fn keeps_member(&self, name_off: u32, type_id: u32) -> bool {
        let name = self.member_name(name_off);
        if name.is_empty() {
            let inner = &self.all[self.resolve(type_id) as usize];
            matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                && inner
                    .members()
                    .any(|(name_off, type_id, _)| self.keeps_member(name_off, type_id))
        } else {
            WANTED_MEMBERS.contains(&name.as_str())
        }
    }

    fn points_to_root(&self, target: u32) -> bool {
        let target = &self.all[self.resolve(target) as usize];
        target.kind == KIND_STRUCT && ROOTS.contains(&target.name.as_str())
    }

    fn keep(&mut self, id: u32) {
        if id == 0 || !self.kept.insert(id) {
            return;
        }
        let ty = &self.all[id as usize];
        match ty.kind {
            KIND_STRUCT | KIND_UNION => {
                let members: Vec<u32> = ty
                    .members()
                    .filter(|&(name_off, type_id, _)| self.keeps_member(name_off, type_id))
                    .map(|(_, type_id, _)| type_id)
                    .collect();
                for type_id in members {
                    self.keep(type_id);
                }
            }
            KIND_PTR if self.points_to_root(ty.size_or_type) => self.keep(ty.size_or_type),
            // The tracepoints' prototypes: their parameter count is read, not their types.
            KIND_PTR
                if self.all[self.resolve(ty.size_or_type) as usize].kind == KIND_FUNC_PROTO =>
            {
                self.keep(ty.size_or_type)
            }
            KIND_ARRAY => {
                let (elem, index) = (ty.trailer[0], ty.trailer[1]);
                self.keep(elem);
                self.keep(index);
            }
            kind if Self::is_alias(kind) => self.keep(ty.size_or_type),
            _ => {}
        }
    }

    fn write(&self) -> Vec<u8> {
        // New ids in the old order, from 1.
        let ids: HashMap<u32, u32> = self
            .kept
            .iter()
            .zip(1..)
            .map(|(&old, new)| (old, new))
            .collect();
        let id = |old: u32| ids.get(&old).copied().unwrap_or(0);
        let mut w = BtfWriter::new();
        for &old in &self.kept {
            let ty = &self.all[old as usize];
            match ty.kind {
                KIND_STRUCT | KIND_UNION => {
                    let members: Vec<(u32, u32, u32)> = ty
                        .members()
                        .filter(|&(name_off, type_id, _)| self.keeps_member(name_off, type_id))
                        .collect();
                    w.record(
                        &ty.name,
                        ty.kind,
                        ty.kind_flag,
                        members.len(),
                        ty.size_or_type,
                    );
                    for (name_off, type_id, offset) in members {
                        let name = w.string(&self.member_name(name_off));
                        w.word(name);
                        w.word(id(type_id));
                        w.word(offset);
                    }
                }
                KIND_INT => {
                    w.record(&ty.name, KIND_INT, false, 0, ty.size_or_type);
                    w.word(ty.trailer[0]);
                }
                KIND_ARRAY => {
                    w.record("", KIND_ARRAY, false, 0, 0);
                    w.word(id(ty.trailer[0]));
                    w.word(id(ty.trailer[1]));
                    w.word(ty.trailer[2]);
                }
                // Only the enums read keep their enumerators; the others, their name and size.
                KIND_ENUM | KIND_ENUM64 if ENUMS.contains(&ty.name.as_str()) => {
                    let stride = if ty.kind == KIND_ENUM { 2 } else { 3 };
                    w.record(
                        &ty.name,
                        ty.kind,
                        ty.kind_flag,
                        ty.trailer.len() / stride,
                        ty.size_or_type,
                    );
                    for value in ty.trailer.chunks(stride) {
                        let name = w.string(&c_string(self.strings, value[0]));
                        w.word(name);
                        for word in &value[1..] {
                            w.word(*word);
                        }
                    }
                }
                KIND_ENUM | KIND_ENUM64 => {
                    w.record(&ty.name, ty.kind, ty.kind_flag, 0, ty.size_or_type)
                }
                // Parameters unnamed and of type void: only their count is read.
                KIND_FUNC_PROTO => {
                    let params = ty.trailer.len() / 2;
                    w.record("", KIND_FUNC_PROTO, false, params, 0);
                    for _ in 0..params {
                        w.word(0);
                        w.word(0);
                    }
                }
                // A pointer to a type left out points to void.
                KIND_PTR => w.record("", KIND_PTR, false, 0, id(ty.size_or_type)),
                kind if Self::is_alias(kind) => {
                    w.record(&ty.name, kind, false, 0, id(ty.size_or_type))
                }
                kind => panic!("type {old} of kind {kind} reached"),
            }
        }
        w.finish()
    }
}

fn vmlinux_subset() -> Vec<u8> {
    let data = fs::read("/sys/kernel/btf/vmlinux").expect("the kernel's BTF");
    let (all, strings) = read_btf(&data);
    let mut subset = Subset {
        all: &all,
        strings: &strings,
        kept: BTreeSet::new(),
    };
    for root in ROOTS {
        // The first struct of the name, as Btf::parse indexes them.
        let id = all
            .iter()
            .position(|ty| ty.kind == KIND_STRUCT && ty.name == *root)
            .unwrap_or_else(|| panic!("no struct {root}"));
        subset.keep(id as u32);
    }
    for name in ENUMS {
        if let Some(id) = all
            .iter()
            .position(|ty| matches!(ty.kind, KIND_ENUM | KIND_ENUM64) && ty.name == *name)
        {
            subset.keep(id as u32);
        }
    }
    for tracepoint in std::iter::once(names::PROGRAM).chain(names::SIGNAL_PROGRAMS) {
        let name = format!("btf_trace_{tracepoint}");
        let id = all
            .iter()
            .position(|ty| ty.kind == KIND_TYPEDEF && ty.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        subset.keep(id as u32);
    }
    subset.write()
}

/// A struct sock in the shape of older kernels (4.x): `sk_protocol` a bitfield of a struct with
/// the kind flag set, the address pair in an anonymous struct of an anonymous union, qualifiers
/// and typedefs on the way, and one record of each kind the reader must step over.
fn synthetic() -> Vec<u8> {
    let mut w = BtfWriter::new();
    let mut next = 0u32;
    let mut id = || {
        next += 1;
        next
    };
    // [1] unsigned char, [2] unsigned short, [3] unsigned int, [4] __u16, [5] volatile u8
    let (uchar, ushort, uint, u16_t, vol_uchar) = (id(), id(), id(), id(), id());
    w.record("unsigned char", KIND_INT, false, 0, 1);
    w.word(8);
    w.record("unsigned short", KIND_INT, false, 0, 2);
    w.word(16);
    w.record("unsigned int", KIND_INT, false, 0, 4);
    w.word(32);
    w.record("__u16", KIND_TYPEDEF, false, 0, ushort);
    w.record("", KIND_VOLATILE, false, 0, uchar);
    // [6] __be32 (const typedef chain), [7] __be16
    let (be32, be16) = (id(), id());
    w.record("__be32", KIND_TYPEDEF, false, 0, uint);
    w.record("__be16", KIND_TYPEDEF, false, 0, ushort);
    // [8] u8[16], [9] struct in6_addr { u8 s6_addr[16] }
    let (u8x16, in6_addr) = (id(), id());
    w.record("", KIND_ARRAY, false, 0, 0);
    for word in [uchar, uint, 16] {
        w.word(word);
    }
    w.record("in6_addr", KIND_STRUCT, false, 1, 16);
    for word in [w.string("s6_addr"), u8x16, 0] {
        w.word(word);
    }
    // [10] struct ns_common { ...; unsigned int inum @16 }, [11] struct net { ...; ns @120 }
    let (ns_common, net) = (id(), id());
    w.record("ns_common", KIND_STRUCT, false, 2, 24);
    for word in [w.string("stashed"), uint, 0, w.string("inum"), uint, 128] {
        w.word(word);
    }
    w.record("net", KIND_STRUCT, false, 2, 4096);
    for word in [w.string("passive"), uint, 0, w.string("ns"), ns_common, 960] {
        w.word(word);
    }
    // [12] struct net *, [13] possible_net_t's struct, [14] possible_net_t
    let (net_ptr, possible, possible_t) = (id(), id(), id());
    w.record("", KIND_PTR, false, 0, net);
    w.record("", KIND_STRUCT, false, 1, 8);
    for word in [w.string("net"), net_ptr, 0] {
        w.word(word);
    }
    w.record("possible_net_t", KIND_TYPEDEF, false, 0, possible);
    // [15] struct { __be32 skc_daddr; __be32 skc_rcv_saddr; }, [16] union { u64 addrpair; [15] }
    let (pair, pair_union) = (id(), id());
    w.record("", KIND_STRUCT, false, 2, 8);
    for word in [
        w.string("skc_daddr"),
        be32,
        0,
        w.string("skc_rcv_saddr"),
        be32,
        32,
    ] {
        w.word(word);
    }
    w.record("", KIND_UNION, false, 2, 8);
    for word in [w.string("skc_addrpair"), uint, 0, 0, pair, 0] {
        w.word(word);
    }
    // [17] struct { __be16 skc_dport; __u16 skc_num; }, [18] union of it
    let (ports, ports_union) = (id(), id());
    w.record("", KIND_STRUCT, false, 2, 4);
    for word in [
        w.string("skc_dport"),
        be16,
        0,
        w.string("skc_num"),
        u16_t,
        16,
    ] {
        w.word(word);
    }
    w.record("", KIND_UNION, false, 2, 4);
    for word in [w.string("skc_portpair"), uint, 0, 0, ports, 0] {
        w.word(word);
    }
    // [19] struct sock_common
    let sock_common = id();
    let members = [
        ("", pair_union, 0),
        ("", ports_union, 96),
        ("skc_family", ushort, 128),
        ("skc_state", vol_uchar, 144),
        ("skc_net", possible_t, 384),
        ("skc_v6_daddr", in6_addr, 448),
        ("skc_v6_rcv_saddr", in6_addr, 576),
        ("skc_flags", uint, 768),
    ];
    w.record("sock_common", KIND_STRUCT, false, members.len(), 136);
    for (name, type_id, bits) in members {
        for word in [w.string(name), type_id, bits] {
            w.word(word);
        }
    }
    // [20] struct sock: bitfields, so the kind flag is set and each offset carries the
    // bitfield's size in its top 8 bits (0 for a plain member).
    let sock = id();
    let members = [
        ("__sk_common", sock_common, 0),
        ("sk_padding", uint, 1 << 24 | 2944),
        ("sk_userlocks", uint, 4 << 24 | 2948),
        ("sk_protocol", uint, 8 << 24 | 2952),
        ("sk_type", uint, 16 << 24 | 2960),
        ("sk_err", uint, 2976),
        ("sk_err_soft", uint, 3008),
    ];
    w.record("sock", KIND_STRUCT, true, members.len(), 760);
    for (name, type_id, bits) in members {
        for word in [w.string(name), type_id, bits] {
            w.word(word);
        }
    }
    // [21] struct inet_sock { struct sock sk; ...; __be16 inet_sport @782 }
    let inet_sock = id();
    w.record("inet_sock", KIND_STRUCT, false, 2, 864);
    for word in [
        w.string("sk"),
        sock,
        0,
        w.string("inet_sport"),
        be16,
        782 * 8,
    ] {
        w.word(word);
    }
    // [22] enum, [23] func proto (sock *), [24] its pointer, then each tracepoint's typedef.
    let (_enum, proto, proto_ptr) = (id(), id(), id());
    w.record("", KIND_ENUM, false, 2, 4);
    for word in [w.string("TCP_ESTABLISHED"), 1, w.string("TCP_SYN_SENT"), 2] {
        w.word(word);
    }
    let sock_ptr = proto_ptr + 1;
    w.record("", KIND_FUNC_PROTO, false, 2, 0);
    for word in [0, 0, 0, sock_ptr] {
        w.word(word);
    }
    w.record("", KIND_PTR, false, 0, proto);
    // [25] struct sock *
    let _ = id();
    w.record("", KIND_PTR, false, 0, sock);
    for tracepoint in std::iter::once(names::PROGRAM).chain(names::SIGNAL_PROGRAMS) {
        let _ = id();
        w.record(
            &format!("btf_trace_{tracepoint}"),
            KIND_TYPEDEF,
            false,
            0,
            proto_ptr,
        );
    }
    // A function, a variable and its data section, as an object file's BTF has them.
    let func = id();
    w.record("tcptrace_probe", KIND_FUNC, false, 1, proto);
    let var = id();
    w.record("SOCK_LAYOUT", KIND_VAR, false, 0, uint);
    w.word(1); // global
    let _ = id();
    w.record(".rodata", KIND_DATASEC, false, 1, 4);
    for word in [var, 0, 4] {
        w.word(word);
    }
    let _ = id();
    w.record("kernel", KIND_DECL_TAG, false, 0, func);
    w.word(u32::MAX); // tags the function itself
    // struct inet_connection_sock { struct inet_sock icsk_inet; ... }: the close details.
    let _ = id();
    let members = [
        ("icsk_inet", inet_sock, 0),
        ("icsk_retransmits", uchar, 1000 * 8),
        ("icsk_probes_out", uchar, 1004 * 8),
        ("icsk_user_timeout", uint, 1200 * 8),
    ];
    w.record(
        "inet_connection_sock",
        KIND_STRUCT,
        false,
        members.len(),
        1400,
    );
    for (name, type_id, bits) in members {
        for word in [w.string(name), type_id, bits] {
            w.word(word);
        }
    }
    w.finish()
}

/// The `.BTF` section of the kernel program as bpf-linker wrote it: BTF made by another producer
/// than the kernel's pahole, with the kinds of an object file (functions, variables, sections).
fn ebpf_object_btf() -> Option<Vec<u8>> {
    // The object that the latest build of tcptrace in this crate's target directory embedded:
    // target/[TRIPLE/]PROFILE/build/tcptrace-HASH/out/tcptrace-probe.
    let children = |dir: &Path| -> Vec<PathBuf> {
        fs::read_dir(dir)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    };
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    let profiles = children(&target)
        .into_iter()
        .flat_map(|dir| std::iter::once(dir.clone()).chain(children(&dir)));
    let object = profiles
        .flat_map(|profile| children(&profile.join("build")))
        .filter(|build| {
            build
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("tcptrace-"))
        })
        .map(|build| build.join("out/tcptrace-probe"))
        .filter(|object| object.is_file())
        .max_by_key(|object| fs::metadata(object).and_then(|m| m.modified()).ok())?;
    let elf = fs::read(&object).ok()?;
    let le64 = |at: usize| u64::from_le_bytes(elf[at..at + 8].try_into().unwrap()) as usize;
    let le16 = |at: usize| usize::from(u16::from_le_bytes([elf[at], elf[at + 1]]));
    let (shoff, shentsize, shnum, shstrndx) = (le64(0x28), le16(0x3a), le16(0x3c), le16(0x3e));
    let section = |i: usize| {
        let at = shoff + i * shentsize;
        (le32(&elf, at), le64(at + 24), le64(at + 32))
    };
    let (_, names_at, _) = section(shstrndx);
    (0..shnum).map(section).find_map(|(name, at, size)| {
        (c_string(&elf[names_at..], name) == ".BTF").then(|| elf[at..at + size].to_vec())
    })
}

#[test]
#[ignore = "needs the kernel's BTF; rewrites the committed seeds"]
fn make_btf_seeds() {
    let kernel = read_kernel_btf().expect("the kernel's BTF");
    let subset = vmlinux_subset();
    // The subset answers as the whole: same layout, same tracepoints.
    let parsed = Btf::parse(&subset).expect("the subset is BTF");
    assert_eq!(parsed.sock_layout(), kernel.sock_layout());
    for tracepoint in std::iter::once(names::PROGRAM).chain(names::SIGNAL_PROGRAMS) {
        assert!(parsed.has_tracepoint(tracepoint), "{tracepoint}");
    }
    let synthetic = synthetic();
    let parsed = Btf::parse(&synthetic).expect("the synthetic blob is BTF");
    let layout = parsed
        .sock_layout()
        .expect("every field in the synthetic blob");
    assert_eq!(
        (
            layout.daddr,
            layout.rcv_saddr,
            layout.dport,
            layout.num,
            layout.protocol
        ),
        (0, 4, 12, 14, 369)
    );
    assert_eq!((layout.net, layout.net_inum), (48, 136));
    assert_eq!(
        (layout.sk_err, layout.sk_flags, layout.icsk_probes_out),
        (372, 96, 1004)
    );
    // No reason argument in this tracepoint's prototype (two parameters).
    assert_eq!(layout.reset_reason_arg, 0);
    let mut seeds = vec![
        ("vmlinux-sock-subset".to_owned(), subset),
        ("synthetic-sock-4x".to_owned(), synthetic),
    ];
    match ebpf_object_btf() {
        Some(btf) => {
            assert!(Btf::parse(&btf).is_some());
            seeds.push(("ebpf-object".to_owned(), btf));
        }
        None => panic!("no kernel program under target/: build this crate first"),
    }
    write_seeds("btf", &seeds);
}
