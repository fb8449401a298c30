//! Pure decoding of NETLINK_SOCK_DIAG dump replies: bytes in, typed [`SocketEntry`]s out.
//!
//! The layouts are the kernel's stable UAPI (include/uapi/linux/netlink.h, inet_diag.h, tcp.h):
//! fixed-size headers in native byte order, ports and addresses in network order. Every length
//! is checked before it is used, so a short or corrupt reply is an error, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

use crate::core::{event::Family, state::TcpState};

/// `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
/// The kernel sets this on a dump message when the table changed while it was being dumped.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// `SOCK_DIAG_BY_FAMILY`: the type of requests and of each socket's reply.
pub const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `TCPDIAG_GETSOCK`: the request type of inet_diag's first interface, which the kernel still
/// serves (net/ipv4/inet_diag.c, `inet_diag_rcv_msg_compat`), and the type of its replies:
/// the same `inet_diag_msg`, of both address families in one walk of the socket tables.
pub const TCPDIAG_GETSOCK: u16 = 18;
/// `struct inet_diag_msg`.
pub const INET_DIAG_MSG_LEN: usize = 72;
/// `INET_DIAG_INFO`: the attribute carrying `struct tcp_info` (full sockets only).
pub const INET_DIAG_INFO: u16 = 2;

/// Which timer is pending, as inet_diag's `idiag_timer` (and /proc/net/tcp's `tr`) numbers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// 0: no timer pending.
    Off,
    /// 1: retransmission (also RTO of a request socket, tail loss probe, reordering timeout).
    On,
    /// 2: keepalive (the socket's `sk_timer`).
    Keepalive,
    /// 3: TIME_WAIT expiry.
    TimeWait,
    /// 4: zero-window probe.
    Probe,
    /// Any other value a future kernel might report.
    Unknown(u8),
}

impl Timer {
    pub fn from_raw(raw: u8) -> Self {
        match raw {
            0 => Self::Off,
            1 => Self::On,
            2 => Self::Keepalive,
            3 => Self::TimeWait,
            4 => Self::Probe,
            other => Self::Unknown(other),
        }
    }

    /// netstat's word for the timer.
    pub fn name(self) -> String {
        match self {
            Self::Off => "off".into(),
            Self::On => "on".into(),
            Self::Keepalive => "keepalive".into(),
            Self::TimeWait => "timewait".into(),
            Self::Probe => "probe".into(),
            Self::Unknown(raw) => format!("unkn-{raw}"),
        }
    }
}

/// What tcptrace reads of `struct tcp_info`: the two counters netstat prints after the
/// expiry, `icsk_retransmits` and `icsk_probes_out`, and how long ago the last ACK and data
/// arrived.
///
/// inet_diag's own `idiag_retrans` holds one or the other counter depending on the timer
/// (net/ipv4/inet_diag.c, inet_sk_diag_fill), so both are read from `tcp_info` when the kernel
/// sent it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpInfoCounters {
    pub retransmits: u8,
    pub probes: u8,
    /// `tcpi_last_ack_recv`: ms since the last ACK was processed (`tcp_rcv_tstamp`, set by
    /// `tcp_ack()` for every segment that is not an old ACK, a FIN included), in jiffies
    /// rounded to ms. For a CLOSE_WAIT socket, a lower bound of the time since the peer's FIN:
    /// the FIN set it, and any later segment only moves it closer.
    pub last_ack_recv_ms: Option<u32>,
    /// `tcpi_last_data_recv`: ms since data last arrived (`icsk_ack.lrcvtime`, or the
    /// connection's start). For a CLOSE_WAIT socket, an upper bound of the time since the
    /// peer's FIN: no data can follow a FIN.
    pub last_data_recv_ms: Option<u32>,
}

/// `tcpi_last_data_recv` and `tcpi_last_ack_recv`: their offsets in `struct tcp_info`
/// (include/uapi/linux/tcp.h, unchanged since 2.6: eight u8 fields, then u32s).
const TCPI_LAST_DATA_RECV: usize = 52;
const TCPI_LAST_ACK_RECV: usize = 56;

/// One socket of a dump.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketEntry {
    pub family: Family,
    pub state: TcpState,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Bytes received and not read yet; for a listener, connections waiting for accept().
    pub recv_q: u32,
    /// Bytes sent and not acknowledged yet; for a listener, its backlog limit.
    pub send_q: u32,
    pub timer: Timer,
    /// Milliseconds until the timer fires (0 when it is off or overdue).
    pub expires_ms: u32,
    /// `idiag_retrans`: retransmissions for [`Timer::On`], probes sent for keepalive and
    /// zero-window probe timers.
    pub retrans: u8,
    /// From `tcp_info`, when requested and the socket is a full socket.
    pub info: Option<TcpInfoCounters>,
    pub uid: u32,
    /// Socket inode (0 for TIME_WAIT and request sockets, which have no file).
    pub inode: u32,
    /// The kernel's socket cookie: a stable id of the socket while it lives.
    pub cookie: u64,
}

impl SocketEntry {
    /// The state as netstat shows it: request sockets (NEW_SYN_RECV) count as SYN_RECV.
    pub fn shown_state(&self) -> TcpState {
        match self.state {
            TcpState::NewSynRecv => TcpState::SynRecv,
            state => state,
        }
    }

    /// netstat's retransmission count: `icsk_retransmits` of a full socket, the SYN-ACK
    /// retransmissions of a request socket, 0 for TIME_WAIT.
    pub fn retransmits(&self) -> u8 {
        match (self.info, self.timer) {
            (Some(info), _) => info.retransmits,
            (None, Timer::On) => self.retrans,
            (None, _) => 0,
        }
    }

    /// netstat's third number: keepalive or zero-window probes sent so far.
    pub fn probes(&self) -> u8 {
        match (self.info, self.timer) {
            (Some(info), _) => info.probes,
            (None, Timer::Keepalive | Timer::Probe) => self.retrans,
            (None, _) => 0,
        }
    }
}

#[derive(Debug, Error)]
pub enum ParseError {
    #[error("truncated netlink message ({len} bytes left, header says {claimed})")]
    Truncated { len: usize, claimed: usize },
    #[error("sock_diag message of {0} bytes, shorter than inet_diag_msg")]
    ShortDiagMsg(usize),
    #[error("the kernel refused the socket dump: {0}")]
    Kernel(std::io::Error),
    #[error("unexpected netlink message type {0}")]
    UnexpectedType(u16),
}

/// What one receive buffer held besides sockets.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// The dump is complete (NLMSG_DONE seen).
    pub done: bool,
    /// The kernel flagged the dump as interrupted by concurrent changes.
    pub interrupted: bool,
    /// Messages of unknown address families, skipped.
    pub skipped: usize,
}

fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([buf[at], buf[at + 1]])
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Decodes every netlink message of one receive buffer, appending sockets to `out`.
pub fn parse_batch(mut buf: &[u8], out: &mut Vec<SocketEntry>) -> Result<Batch, ParseError> {
    let mut batch = Batch::default();
    while buf.len() >= NLMSG_HDRLEN {
        let len = u32_at(buf, 0) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(ParseError::Truncated {
                len: buf.len(),
                claimed: len,
            });
        }
        let kind = u16_at(buf, 4);
        let flags = u16_at(buf, 6);
        let payload = &buf[NLMSG_HDRLEN..len];
        batch.interrupted |= flags & NLM_F_DUMP_INTR != 0;
        match kind {
            NLMSG_DONE => {
                batch.done = true;
                return Ok(batch);
            }
            NLMSG_ERROR => {
                // struct nlmsgerr: a negative errno, then the offending request. i32::MIN has
                // no negation, and is no errno either.
                let errno = if payload.len() >= 4 {
                    (u32_at(payload, 0) as i32)
                        .checked_neg()
                        .unwrap_or(libc::EPROTO)
                } else {
                    libc::EPROTO
                };
                return Err(ParseError::Kernel(std::io::Error::from_raw_os_error(errno)));
            }
            SOCK_DIAG_BY_FAMILY | TCPDIAG_GETSOCK => match parse_socket(payload)? {
                Some(entry) => out.push(entry),
                None => batch.skipped += 1,
            },
            other => return Err(ParseError::UnexpectedType(other)),
        }
        buf = &buf[align4(len).min(buf.len())..];
    }
    if !buf.is_empty() {
        return Err(ParseError::Truncated {
            len: buf.len(),
            claimed: NLMSG_HDRLEN,
        });
    }
    Ok(batch)
}

/// Decodes one `inet_diag_msg` and its attributes; `None` for a family or state we do not know.
pub fn parse_socket(msg: &[u8]) -> Result<Option<SocketEntry>, ParseError> {
    if msg.len() < INET_DIAG_MSG_LEN {
        return Err(ParseError::ShortDiagMsg(msg.len()));
    }
    let family = match i32::from(msg[0]) {
        libc::AF_INET => Family::Inet,
        libc::AF_INET6 => Family::Inet6,
        _ => return Ok(None),
    };
    let Some(state) = TcpState::from_raw(u16::from(msg[1])) else {
        return Ok(None);
    };
    // inet_diag_sockid: ports and addresses are big-endian; an IPv4 address uses the first
    // 4 of its 16 bytes.
    let sport = u16::from_be_bytes([msg[4], msg[5]]);
    let dport = u16::from_be_bytes([msg[6], msg[7]]);
    let addr = |at: usize| -> IpAddr {
        match family {
            Family::Inet => IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(&msg[at..at + 4]).expect("4"),
            )),
            Family::Inet6 => IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&msg[at..at + 16]).expect("16"),
            )),
        }
    };
    let cookie = u64::from(u32_at(msg, 44)) | (u64::from(u32_at(msg, 48)) << 32);
    let mut entry = SocketEntry {
        family,
        state,
        local: SocketAddr::new(addr(8), sport),
        remote: SocketAddr::new(addr(24), dport),
        timer: Timer::from_raw(msg[2]),
        retrans: msg[3],
        expires_ms: u32_at(msg, 52),
        recv_q: u32_at(msg, 56),
        send_q: u32_at(msg, 60),
        uid: u32_at(msg, 64),
        inode: u32_at(msg, 68),
        cookie,
        info: None,
    };
    // Attributes (struct nlattr: u16 len, u16 type, 4-byte aligned) follow the fixed part.
    let mut attrs = &msg[INET_DIAG_MSG_LEN..];
    while attrs.len() >= 4 {
        let len = usize::from(u16_at(attrs, 0));
        let kind = u16_at(attrs, 2) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return Err(ParseError::Truncated {
                len: attrs.len(),
                claimed: len,
            });
        }
        // tcp_info begins with u8 state, ca_state, retransmits, probes: stable since 2.6.
        if kind == INET_DIAG_INFO && len >= 4 + 4 {
            let info = &attrs[4..len];
            let field = |at: usize| (info.len() >= at + 4).then(|| u32_at(info, at));
            entry.info = Some(TcpInfoCounters {
                retransmits: info[2],
                probes: info[3],
                last_ack_recv_ms: field(TCPI_LAST_ACK_RECV),
                last_data_recv_ms: field(TCPI_LAST_DATA_RECV),
            });
        }
        attrs = &attrs[align4(len).min(attrs.len())..];
    }
    Ok(Some(entry))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A synthetic `inet_diag_msg`, built field by field the way the kernel lays it out.
    #[derive(Clone)]
    pub struct RawMsg {
        pub family: u8,
        pub state: u8,
        pub timer: u8,
        pub retrans: u8,
        pub sport: u16,
        pub dport: u16,
        pub src: [u8; 16],
        pub dst: [u8; 16],
        pub cookie: u64,
        pub expires: u32,
        pub rqueue: u32,
        pub wqueue: u32,
        pub uid: u32,
        pub inode: u32,
        /// (retransmits, probes) of a tcp_info attribute.
        pub info: Option<(u8, u8)>,
        /// (last_data_recv, last_ack_recv) of that attribute, in ms.
        pub info_ages_ms: (u32, u32),
    }

    impl Default for RawMsg {
        fn default() -> Self {
            let mut src = [0; 16];
            src[..4].copy_from_slice(&[127, 0, 0, 1]);
            let mut dst = [0; 16];
            dst[..4].copy_from_slice(&[10, 0, 0, 2]);
            Self {
                family: libc::AF_INET as u8,
                state: 1,
                timer: 0,
                retrans: 0,
                sport: 8080,
                dport: 51000,
                src,
                dst,
                cookie: 0x1122_3344_5566_7788,
                expires: 0,
                rqueue: 0,
                wqueue: 0,
                uid: 1000,
                inode: 4242,
                info: None,
                info_ages_ms: (0, 0),
            }
        }
    }

    impl RawMsg {
        pub fn payload(&self) -> Vec<u8> {
            let mut b = vec![self.family, self.state, self.timer, self.retrans];
            b.extend(self.sport.to_be_bytes());
            b.extend(self.dport.to_be_bytes());
            b.extend(self.src);
            b.extend(self.dst);
            b.extend(0u32.to_ne_bytes()); // interface
            b.extend((self.cookie as u32).to_ne_bytes());
            b.extend(((self.cookie >> 32) as u32).to_ne_bytes());
            for v in [self.expires, self.rqueue, self.wqueue, self.uid, self.inode] {
                b.extend(v.to_ne_bytes());
            }
            assert_eq!(b.len(), INET_DIAG_MSG_LEN);
            if let Some((retransmits, probes)) = self.info {
                // A tcp_info of the size 6.x kernels send (232 bytes); only its head matters.
                let mut info = vec![0u8; 232];
                info[0] = self.state;
                info[2] = retransmits;
                info[3] = probes;
                let (data, ack) = self.info_ages_ms;
                info[TCPI_LAST_DATA_RECV..][..4].copy_from_slice(&data.to_ne_bytes());
                info[TCPI_LAST_ACK_RECV..][..4].copy_from_slice(&ack.to_ne_bytes());
                b.extend(((4 + info.len()) as u16).to_ne_bytes());
                b.extend(INET_DIAG_INFO.to_ne_bytes());
                b.extend(info);
            }
            b
        }

        pub fn message(&self) -> Vec<u8> {
            nlmsg(SOCK_DIAG_BY_FAMILY, 0, &self.payload())
        }
    }

    pub fn nlmsg(kind: u16, flags: u16, payload: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + payload.len();
        let mut b = Vec::with_capacity(align4(len));
        b.extend((len as u32).to_ne_bytes());
        b.extend(kind.to_ne_bytes());
        b.extend(flags.to_ne_bytes());
        b.extend(7u32.to_ne_bytes());
        b.extend(0u32.to_ne_bytes());
        b.extend(payload);
        b.resize(align4(len), 0);
        b
    }

    pub fn done() -> Vec<u8> {
        nlmsg(NLMSG_DONE, 0x2, &0i32.to_ne_bytes())
    }

    #[test]
    fn an_ipv4_socket_decodes_field_by_field() {
        let raw = RawMsg {
            timer: 2,
            retrans: 0,
            expires: 576_470,
            rqueue: 3,
            wqueue: 17,
            ..RawMsg::default()
        };
        let mut out = Vec::new();
        let batch = parse_batch(&raw.message(), &mut out).unwrap();
        assert_eq!(batch, Batch::default());
        assert_eq!(
            out,
            [SocketEntry {
                family: Family::Inet,
                state: TcpState::Established,
                local: "127.0.0.1:8080".parse().unwrap(),
                remote: "10.0.0.2:51000".parse().unwrap(),
                recv_q: 3,
                send_q: 17,
                timer: Timer::Keepalive,
                expires_ms: 576_470,
                retrans: 0,
                info: None,
                uid: 1000,
                inode: 4242,
                cookie: 0x1122_3344_5566_7788,
            }]
        );
    }

    #[test]
    fn ipv6_addresses_and_tcp_info_counters() {
        let src: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let dst: Ipv6Addr = "::ffff:10.1.2.3".parse().unwrap();
        let raw = RawMsg {
            family: libc::AF_INET6 as u8,
            state: 4,
            timer: 1,
            retrans: 5,
            src: src.octets(),
            dst: dst.octets(),
            info: Some((5, 2)),
            info_ages_ms: (61_000, 4_500),
            ..RawMsg::default()
        };
        let mut out = Vec::new();
        parse_batch(&raw.message(), &mut out).unwrap();
        let e = &out[0];
        assert_eq!(e.family, Family::Inet6);
        assert_eq!(e.state, TcpState::FinWait1);
        assert_eq!(e.local, SocketAddr::new(src.into(), 8080));
        assert_eq!(e.remote, SocketAddr::new(dst.into(), 51000));
        assert_eq!(
            e.info,
            Some(TcpInfoCounters {
                retransmits: 5,
                probes: 2,
                last_ack_recv_ms: Some(4_500),
                last_data_recv_ms: Some(61_000),
            })
        );
        assert_eq!((e.retransmits(), e.probes()), (5, 2));
    }

    #[test]
    fn a_tcp_info_too_short_for_the_times_has_none() {
        // The attribute of an old kernel could end before the times: the counters remain.
        let mut payload = RawMsg::default().payload();
        payload.extend(12u16.to_ne_bytes());
        payload.extend(INET_DIAG_INFO.to_ne_bytes());
        payload.extend([1u8, 0, 3, 4, 0, 0, 0, 0]);
        let entry = parse_socket(&payload).unwrap().unwrap();
        assert_eq!(
            entry.info,
            Some(TcpInfoCounters {
                retransmits: 3,
                probes: 4,
                last_ack_recv_ms: None,
                last_data_recv_ms: None,
            })
        );
    }

    #[test]
    fn counters_without_tcp_info_follow_the_kernel_overloading() {
        let entry = |timer: u8, retrans: u8| {
            parse_socket(
                &RawMsg {
                    timer,
                    retrans,
                    ..RawMsg::default()
                }
                .payload(),
            )
            .unwrap()
            .unwrap()
        };
        // Retransmission timer: idiag_retrans counts retransmissions.
        let on = entry(1, 3);
        assert_eq!((on.retransmits(), on.probes()), (3, 0));
        // Keepalive and zero-window probe timers: it counts probes.
        let ka = entry(2, 4);
        assert_eq!((ka.retransmits(), ka.probes()), (0, 4));
        let probe = entry(4, 1);
        assert_eq!((probe.retransmits(), probe.probes()), (0, 1));
        assert_eq!(entry(9, 0).timer, Timer::Unknown(9));
    }

    #[test]
    fn request_sockets_show_as_syn_recv() {
        let raw = RawMsg {
            state: 12,
            inode: 0,
            ..RawMsg::default()
        };
        let e = parse_socket(&raw.payload()).unwrap().unwrap();
        assert_eq!(e.state, TcpState::NewSynRecv);
        assert_eq!(e.shown_state(), TcpState::SynRecv);
    }

    #[test]
    fn several_messages_then_done() {
        let mut buf = Vec::new();
        for port in [1u16, 2, 3] {
            buf.extend(
                RawMsg {
                    sport: port,
                    info: Some((0, 0)),
                    ..RawMsg::default()
                }
                .message(),
            );
        }
        buf.extend(done());
        // Anything after DONE belongs to no one and is ignored.
        buf.extend(RawMsg::default().message());
        let mut out = Vec::new();
        let batch = parse_batch(&buf, &mut out).unwrap();
        assert!(batch.done);
        let ports: Vec<u16> = out.iter().map(|e| e.local.port()).collect();
        assert_eq!(ports, [1, 2, 3]);
    }

    #[test]
    fn unknown_families_and_states_are_skipped_not_fatal() {
        let mut buf = RawMsg {
            family: 44,
            ..RawMsg::default()
        }
        .message();
        buf.extend(
            RawMsg {
                state: 0,
                ..RawMsg::default()
            }
            .message(),
        );
        let mut out = Vec::new();
        let batch = parse_batch(&buf, &mut out).unwrap();
        assert_eq!(batch.skipped, 2);
        assert!(out.is_empty());
    }

    #[test]
    fn interrupted_dumps_are_flagged() {
        let mut msg = RawMsg::default().message();
        msg[6..8].copy_from_slice(&NLM_F_DUMP_INTR.to_ne_bytes());
        let batch = parse_batch(&msg, &mut Vec::new()).unwrap();
        assert!(batch.interrupted);
    }

    #[test]
    fn kernel_errors_carry_the_errno() {
        let msg = nlmsg(NLMSG_ERROR, 0, &(-libc::EPERM).to_ne_bytes());
        match parse_batch(&msg, &mut Vec::new()) {
            Err(ParseError::Kernel(err)) => assert_eq!(err.raw_os_error(), Some(libc::EPERM)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_error_code_without_a_negation_is_a_protocol_error() {
        // Found by fuzzing: negating i32::MIN overflowed.
        let msg = nlmsg(NLMSG_ERROR, 0, &i32::MIN.to_ne_bytes());
        match parse_batch(&msg, &mut Vec::new()) {
            Err(ParseError::Kernel(err)) => assert_eq!(err.raw_os_error(), Some(libc::EPROTO)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn corrupt_input_is_an_error_never_a_panic() {
        let good = RawMsg {
            info: Some((1, 1)),
            ..RawMsg::default()
        }
        .message();
        // Every truncation and every single-byte corruption of the length fields.
        for cut in 0..good.len() {
            let _ = parse_batch(&good[..cut], &mut Vec::new());
        }
        for at in [0, 1, 2, 3, 88, 89] {
            for value in [0u8, 1, 3, 0x7f, 0xff] {
                let mut bad = good.clone();
                bad[at] = value;
                let _ = parse_batch(&bad, &mut Vec::new());
            }
        }
        assert!(matches!(
            parse_batch(&good[..20], &mut Vec::new()),
            Err(ParseError::Truncated { .. })
        ));
        let short = nlmsg(SOCK_DIAG_BY_FAMILY, 0, &[0; 10]);
        assert_eq!(
            parse_batch(&short, &mut Vec::new())
                .unwrap_err()
                .to_string(),
            "sock_diag message of 10 bytes, shorter than inet_diag_msg"
        );
        assert!(matches!(
            parse_batch(&nlmsg(99, 0, &[]), &mut Vec::new()),
            Err(ParseError::UnexpectedType(99))
        ));
    }
}
