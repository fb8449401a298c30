//! Sockets per state, over the states a census shows.

use crate::core::state::TcpState;

/// The states a census shows, in kernel order; request sockets are counted as SYN_RECV.
pub const SHOWN: [TcpState; 11] = [
    TcpState::Established,
    TcpState::SynSent,
    TcpState::SynRecv,
    TcpState::FinWait1,
    TcpState::FinWait2,
    TcpState::TimeWait,
    TcpState::Close,
    TcpState::CloseWait,
    TcpState::LastAck,
    TcpState::Listen,
    TcpState::Closing,
];

/// Sockets per shown state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts([u64; SHOWN.len()]);

fn slot(state: TcpState) -> usize {
    let shown = match state {
        TcpState::NewSynRecv => TcpState::SynRecv,
        other => other,
    };
    // Kernel values 1..=11 map to slots 0..=10.
    shown as usize - 1
}

impl Counts {
    pub fn add(&mut self, state: TcpState) {
        self.0[slot(state)] += 1;
    }

    pub fn add_n(&mut self, state: TcpState, n: u64) {
        self.0[slot(state)] += n;
    }

    pub fn get(&self, state: TcpState) -> u64 {
        self.0[slot(state)]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(state, count)` for every shown state, in kernel order.
    pub fn iter(&self) -> impl Iterator<Item = (TcpState, u64)> + '_ {
        SHOWN.iter().map(|s| (*s, self.get(*s)))
    }
}
