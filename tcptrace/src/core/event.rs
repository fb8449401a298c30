//! Typed records, decoded from the kernel's raw events.

use std::{fmt, net::IpAddr};

use crate::core::state::TcpState;

/// The socket's address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Inet,
    Inet6,
}

impl Family {
    pub fn name(self) -> &'static str {
        match self {
            Self::Inet => "inet",
            Self::Inet6 => "inet6",
        }
    }
}

/// A task's command name as the kernel keeps it (at most 16 bytes), held inline: decoding a
/// transition allocates nothing. Bytes that are not UTF-8 read as `?`. Ordered as its bytes
/// (NUL-padded), which is the order of the names.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Comm {
    bytes: [u8; 16],
    len: u8,
}

impl Comm {
    /// From the kernel's NUL-padded bytes.
    pub fn from_raw(raw: &[u8]) -> Self {
        let end = raw
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(raw.len())
            .min(16);
        let mut bytes = [0u8; 16];
        bytes[..end].copy_from_slice(&raw[..end]);
        if std::str::from_utf8(&bytes[..end]).is_err() {
            for b in &mut bytes[..end] {
                if !b.is_ascii() {
                    *b = b'?';
                }
            }
        }
        Self {
            bytes,
            len: end as u8,
        }
    }

    pub fn as_str(&self) -> &str {
        // Valid by construction: UTF-8 checked, or made ASCII.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The name as one integer (its NUL-padded bytes), for keys compared and hashed in a
    /// word or two; [`Self::from_bits`] gives it back.
    pub fn to_bits(&self) -> u128 {
        u128::from_le_bytes(self.bytes)
    }

    pub fn from_bits(bits: u128) -> Self {
        Self::from_raw(&bits.to_le_bytes())
    }
}

impl From<&str> for Comm {
    fn from(text: &str) -> Self {
        let mut end = text.len().min(16);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Self::from_raw(&text.as_bytes()[..end])
    }
}

impl PartialEq<str> for Comm {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Comm {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// What a transition's owner stands for, when it is not one process for certain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OwnerKind {
    /// The process of the socket's own syscalls, the one that listened on its listener, or the
    /// one process found holding the socket (or its listener) when tracing started.
    #[default]
    Process,
    /// The lowest pid of the N processes found holding the socket's listener when tracing
    /// started (a pre-forked server, an `SO_REUSEPORT` group): which of them accepted the
    /// socket is known once that one makes a syscall on it, and shown from then on.
    ListenerHolders(u32),
    /// The lowest pid of the N processes found holding the socket itself when tracing started
    /// (a socket shared across fork()).
    Holders(u32),
}

impl OwnerKind {
    /// How many processes the owner stands for, when more than one.
    pub fn holders(self) -> Option<u32> {
        match self {
            Self::Process => None,
            Self::ListenerHolders(n) | Self::Holders(n) => Some(n),
        }
    }

    /// The JSON name of the kind; `None` for [`Self::Process`], which is not marked.
    pub fn name(self) -> Option<&'static str> {
        match self {
            Self::Process => None,
            Self::ListenerHolders(_) => Some("listener_holders"),
            Self::Holders(_) => Some("holders"),
        }
    }

    /// The kind for an owner found among `holders` processes holding the socket (`listener`:
    /// holding its listener).
    pub fn of_holders(holders: u32, listener: bool) -> Self {
        match (holders, listener) {
            (0 | 1, _) => Self::Process,
            (n, true) => Self::ListenerHolders(n),
            (n, false) => Self::Holders(n),
        }
    }
}

/// One TCP state transition of one socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Kernel monotonic time of the transition.
    pub ts_ns: u64,
    /// Kernel address of the socket.
    pub sk: u64,
    /// Owner's process id; `None` when the kernel could not attribute the socket.
    pub pid: Option<u32>,
    /// Owner's command name (empty when unknown).
    pub comm: Comm,
    /// Whether `pid` stands for several processes (and which).
    pub owner_kind: OwnerKind,
    /// The kernel's socket cookie, 0 when none was assigned yet: joins a socket that predates
    /// tracing to the owner the start-up census found for it.
    pub cookie: u64,
    pub family: Family,
    pub laddr: IpAddr,
    pub lport: u16,
    pub raddr: IpAddr,
    pub rport: u16,
    pub from: TcpState,
    pub to: TcpState,
    /// Time the socket spent in `from`; `None` when the socket was first seen in it.
    pub time_in_from_ns: Option<u64>,
    /// Inode of the socket's network namespace (as in `/proc/PID/ns/net`); 0 when unknown.
    pub netns: u32,
    /// The socket existed before it was first seen (before tracing, or forgotten by a full
    /// per-socket table).
    pub first_seen_midlife: bool,
    /// →CLOSE: what the kernel knew of the socket as it closed; `None` for other transitions
    /// and in recordings made before the probe read it.
    pub close: Option<CloseDetails>,
}

/// What the kernel knew of a socket at its →CLOSE (see `tcptrace_ebpf::Event`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CloseDetails {
    /// `sk_err`: the error reported to the owner, 0 when none.
    pub err: u8,
    /// `sk_err_soft`: the last soft error (an ICMP error), 0 when none.
    pub err_soft: u8,
    /// Retransmission timeouts in a row (SYN retransmissions in SYN_SENT).
    pub retransmits: u8,
    /// Keepalive or zero-window probes unanswered.
    pub probes_out: u8,
    /// The owner had closed the socket (`SOCK_DEAD`): an orphan, ended by a timer.
    pub orphan: bool,
    /// `SO_KEEPALIVE` was on.
    pub keepalive: bool,
    /// `TCP_USER_TIMEOUT` was set.
    pub user_timeout: bool,
}

#[cfg(test)]
impl Transition {
    /// A transition of socket `sk` on IPv4 loopback, with nothing else known (no ports, no
    /// owner, no time): what the tests' fixtures start from and override.
    pub(crate) fn fixture(sk: u64, ts_ns: u64, from: TcpState, to: TcpState) -> Self {
        Self {
            ts_ns,
            sk,
            pid: None,
            comm: Comm::default(),
            owner_kind: OwnerKind::Process,
            cookie: 0,
            family: Family::Inet,
            laddr: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            lport: 0,
            raddr: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            rport: 0,
            from,
            to,
            time_in_from_ns: None,
            netns: 0,
            first_seen_midlife: false,
            close: None,
        }
    }
}

#[cfg(test)]
impl Signal {
    /// A signal on socket `sk` in namespace 0, with nothing else known (no state, no reason):
    /// what the tests' fixtures start from and override.
    pub(crate) fn fixture(sk: u64, ts_ns: u64, kind: SignalKind) -> Self {
        Self {
            ts_ns,
            sk,
            kind,
            state: None,
            netns: 0,
            reset_reason: None,
        }
    }
}

/// A TCP event that is not a state change but explains one: why a connect failed, why an
/// established connection closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignalKind {
    /// `tcp:tcp_receive_reset`: a RST arrived on the socket.
    ResetReceived,
    /// `tcp:tcp_send_reset`: the kernel sent a RST on the socket.
    ResetSent,
    /// `tcp:tcp_retransmit_skb`: a segment was retransmitted (in SYN_SENT: a SYN).
    Retransmit,
    /// `tcp:tcp_retransmit_synack`: a request socket (half-open passive connection)
    /// retransmitted its SYN-ACK. `sk` is the listener.
    SynAckRetransmit,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signal {
    pub ts_ns: u64,
    pub sk: u64,
    pub kind: SignalKind,
    /// The socket's state when it happened, where the tracepoint says.
    pub state: Option<TcpState>,
    pub netns: u32,
    /// A reset sent: the kernel's `enum sk_rst_reason`, where the tracepoint carries it (Linux
    /// 6.10 and later); its name is in the probe's `ResetReasons`.
    pub reset_reason: Option<u16>,
}

/// What befell a request socket or a connection attempt, told by the packet the kernel dropped
/// for it (`skb:kfree_skb`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fate {
    /// A reset killed a request socket: SYN_RECV → LISTEN on RST (TcpExt EmbryonicRsts).
    EmbryonicReset,
    /// The final ACK of a handshake found the accept queue full: no child (part of TcpExt
    /// ListenOverflows).
    ListenOverflow,
    /// A SYN to a port nothing listens on: the server's side of a refused connect.
    ClosedPort,
}

impl Fate {
    pub const ALL: [Fate; 3] = [Self::EmbryonicReset, Self::ListenOverflow, Self::ClosedPort];
    pub const COUNT: usize = Self::ALL.len();

    /// The name in text and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::EmbryonicReset => "embryonic_reset",
            Self::ListenOverflow => "listen_overflow",
            Self::ClosedPort => "closed_port",
        }
    }

    /// From the kernel side's [`tcptrace_ebpf::fate`] value.
    pub fn from_raw(raw: u16) -> Option<Self> {
        use tcptrace_ebpf::fate;
        match raw {
            fate::EMBRYONIC_RESET => Some(Self::EmbryonicReset),
            fate::LISTEN_OVERFLOW => Some(Self::ListenOverflow),
            fate::CLOSED_PORT => Some(Self::ClosedPort),
            _ => None,
        }
    }
}

/// A received TCP segment the kernel dropped for one of the [`Fate`]s, seen from this host:
/// local is where the packet went (the listener's address and port), remote where it came from
/// (the peer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketDrop {
    pub ts_ns: u64,
    pub fate: Fate,
    pub family: Family,
    pub laddr: IpAddr,
    pub lport: u16,
    pub raddr: IpAddr,
    pub rport: u16,
    pub netns: u32,
    /// The segment's TCP flags byte.
    pub tcp_flags: u8,
    /// The kernel's own drop reason (`enum skb_drop_reason`, whose values vary by version).
    pub reason: u32,
    /// The listener's owner, from the listener map; `None` for a closed port or when unknown.
    pub pid: Option<u32>,
    pub comm: Comm,
}

/// What the kernel side can send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Transition(Transition),
    Signal(Signal),
    Drop(PacketDrop),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_kinds_mark_several_holders_only() {
        assert_eq!(OwnerKind::of_holders(0, true), OwnerKind::Process);
        assert_eq!(OwnerKind::of_holders(1, false), OwnerKind::Process);
        assert_eq!(
            OwnerKind::of_holders(4, true),
            OwnerKind::ListenerHolders(4)
        );
        assert_eq!(OwnerKind::of_holders(2, false), OwnerKind::Holders(2));
        assert_eq!(OwnerKind::Process.holders(), None);
        assert_eq!(OwnerKind::ListenerHolders(4).holders(), Some(4));
        assert_eq!(OwnerKind::Holders(2).name(), Some("holders"));
    }

    #[test]
    fn comm_from_kernel_bytes() {
        assert_eq!(Comm::from_raw(b"nginx\0\0\0garbage"), "nginx");
        assert_eq!(Comm::from_raw(b"full-sixteen-chr"), "full-sixteen-chr");
        assert_eq!(Comm::from_raw(&[0xff, b'a', 0]), "?a");
        assert!(Comm::from_raw(&[0; 16]).is_empty());
        assert_eq!(Comm::from("a-name-longer-than-sixteen"), "a-name-longer-th");
        assert_eq!(format!("{:<6}|", Comm::from("sh")), "sh    |");
    }
}
