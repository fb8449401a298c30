//! Typed records, decoded from the kernel's raw events.

use std::net::IpAddr;

use crate::state::TcpState;

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
    pub comm: String,
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
    /// The socket existed before it was first seen (before tracing, or evicted from the
    /// kernel's per-socket map).
    pub first_seen_midlife: bool,
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
}

/// What the kernel side can send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Transition(Transition),
    Signal(Signal),
}
