//! TCP states as the kernel numbers them (include/net/tcp_states.h), named as netstat prints them.

use std::fmt;

/// A kernel TCP state. Values outside the kernel's range are rejected at decode time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpState {
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait1 = 4,
    FinWait2 = 5,
    TimeWait = 6,
    Close = 7,
    CloseWait = 8,
    LastAck = 9,
    Listen = 10,
    Closing = 11,
    NewSynRecv = 12,
}

impl TcpState {
    /// Every state, in kernel order.
    pub const ALL: [TcpState; 12] = [
        Self::Established,
        Self::SynSent,
        Self::SynRecv,
        Self::FinWait1,
        Self::FinWait2,
        Self::TimeWait,
        Self::Close,
        Self::CloseWait,
        Self::LastAck,
        Self::Listen,
        Self::Closing,
        Self::NewSynRecv,
    ];

    /// The state for a raw kernel value, if it is one.
    pub fn from_raw(raw: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|state| *state as u16 == raw)
    }

    /// The name netstat prints.
    pub fn name(self) -> &'static str {
        match self {
            Self::Established => "ESTABLISHED",
            Self::SynSent => "SYN_SENT",
            Self::SynRecv => "SYN_RECV",
            Self::FinWait1 => "FIN_WAIT1",
            Self::FinWait2 => "FIN_WAIT2",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
            Self::CloseWait => "CLOSE_WAIT",
            Self::LastAck => "LAST_ACK",
            Self::Listen => "LISTEN",
            Self::Closing => "CLOSING",
            Self::NewSynRecv => "NEW_SYN_RECV",
        }
    }
}

/// How a socket was opened: the side of the diagram its transitions belong to. Close
/// transitions stay with the open side: a server that closes first shows
/// ESTABLISHED→FIN_WAIT1 on the server path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Side {
    /// Active open: CLOSE→SYN_SENT.
    Client = 0,
    /// Passive open: LISTEN→SYN_RECV (the accepted child).
    Server = 1,
    /// CLOSE→LISTEN→CLOSE.
    Listener = 2,
    /// First seen mid-life: how it was opened is not known, and not guessed.
    Unknown = 3,
}

impl Side {
    pub const ALL: [Side; 4] = [Self::Client, Self::Server, Self::Listener, Self::Unknown];

    pub fn name(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
            Self::Listener => "listener",
            Self::Unknown => "unknown",
        }
    }

    /// The one rule for a socket's birth: the side a transition opens, if it is the first
    /// transition of a new socket (which may sit at the address of an older one).
    pub fn of_birth(from: TcpState, to: TcpState) -> Option<Side> {
        match (from, to) {
            (TcpState::Close, TcpState::SynSent) => Some(Self::Client),
            (TcpState::Close, TcpState::Listen) => Some(Self::Listener),
            // The child is cloned from its listener and so "leaves" LISTEN.
            (TcpState::Listen, TcpState::SynRecv) => Some(Self::Server),
            _ => None,
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn births() {
        assert_eq!(
            Side::of_birth(TcpState::Close, TcpState::SynSent),
            Some(Side::Client)
        );
        assert_eq!(
            Side::of_birth(TcpState::Listen, TcpState::SynRecv),
            Some(Side::Server)
        );
        assert_eq!(
            Side::of_birth(TcpState::Close, TcpState::Listen),
            Some(Side::Listener)
        );
        assert_eq!(
            Side::of_birth(TcpState::SynSent, TcpState::Established),
            None
        );
        assert_eq!(Side::of_birth(TcpState::Listen, TcpState::Close), None);
    }

    #[test]
    fn raw_values_match_the_kernel() {
        assert_eq!(TcpState::from_raw(1), Some(TcpState::Established));
        assert_eq!(TcpState::from_raw(7), Some(TcpState::Close));
        assert_eq!(TcpState::from_raw(10), Some(TcpState::Listen));
        assert_eq!(TcpState::from_raw(12), Some(TcpState::NewSynRecv));
        assert_eq!(TcpState::from_raw(0), None);
        assert_eq!(TcpState::from_raw(13), None);
        assert_eq!(TcpState::from_raw(u16::MAX), None);
    }

    #[test]
    fn names_are_netstat_names() {
        let names: Vec<_> = TcpState::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "ESTABLISHED",
                "SYN_SENT",
                "SYN_RECV",
                "FIN_WAIT1",
                "FIN_WAIT2",
                "TIME_WAIT",
                "CLOSE",
                "CLOSE_WAIT",
                "LAST_ACK",
                "LISTEN",
                "CLOSING",
                "NEW_SYN_RECV"
            ]
        );
    }

    #[test]
    fn display_pads() {
        assert_eq!(format!("{:<12}|", TcpState::Close), "CLOSE       |");
    }
}
