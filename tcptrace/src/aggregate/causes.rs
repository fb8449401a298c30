//! Why an abnormal →CLOSE happened, from the resets and retransmissions seen on the same socket.
//!
//! The stream hands a wake-up's signals before its transitions, while the kernel may have traced
//! them in either order (a reset sent by `tcp_disconnect()` comes right *after* the →CLOSE,
//! net/ipv4/tcp.c). So signals are matched by the state the tracepoint saw and by time, not by
//! arrival order.

use crate::core::{
    event::{Signal, SignalKind},
    state::TcpState,
};

/// The cause of an abnormal close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Cause {
    /// SYN_SENT→CLOSE after a reset: the connection was refused.
    Refused = 0,
    ResetReceived = 1,
    ResetSent = 2,
    /// No reset, after retransmissions in the closing state: the retries ran out.
    Timeout = 3,
    /// Neither a reset nor a retransmission was seen (the application gave up, or the cause
    /// tracepoints are not attached).
    Other = 4,
}

impl Cause {
    pub const COUNT: usize = 5;
    pub const ALL: [Cause; Self::COUNT] = [
        Self::Refused,
        Self::ResetReceived,
        Self::ResetSent,
        Self::Timeout,
        Self::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::ResetReceived => "reset_received",
            Self::ResetSent => "reset_sent",
            Self::Timeout => "timeout",
            Self::Other => "other",
        }
    }
}

/// The signals seen on one socket (or one socket address not yet tracked), compactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalMemo {
    /// Time of the last reset received; 0: none.
    reset_received_ns: u64,
    reset_sent_ns: u64,
    /// State of the retransmissions counted in `retransmits` (0: not known).
    retransmit_state: u8,
    retransmits: u32,
    /// Time of the first counted retransmission.
    retransmit_first_ns: u64,
}

impl SignalMemo {
    /// Records a reset or retransmission. `current` is the socket's state as tracked here, used
    /// when the tracepoint does not say.
    pub fn record(&mut self, signal: &Signal, current: Option<TcpState>) {
        match signal.kind {
            SignalKind::ResetReceived => self.reset_received_ns = signal.ts_ns.max(1),
            SignalKind::ResetSent => self.reset_sent_ns = signal.ts_ns.max(1),
            SignalKind::Retransmit => {
                let state = signal.state.or(current).map_or(0, |s| s as u8);
                if state != self.retransmit_state || self.retransmits == 0 {
                    self.retransmit_state = state;
                    self.retransmits = 0;
                    self.retransmit_first_ns = signal.ts_ns;
                }
                self.retransmits = self.retransmits.saturating_add(1);
            }
            // Concerns the listener's request sockets, not this socket's own fate.
            SignalKind::SynAckRetransmit => {}
        }
    }

    /// Forgets what happened before `ts_ns`: a new socket was born at a reused address.
    pub fn forget_before(&mut self, ts_ns: u64) {
        if self.reset_received_ns < ts_ns {
            self.reset_received_ns = 0;
        }
        if self.reset_sent_ns < ts_ns {
            self.reset_sent_ns = 0;
        }
        if self.retransmit_first_ns < ts_ns {
            self.retransmits = 0;
            self.retransmit_state = 0;
            self.retransmit_first_ns = 0;
        }
    }

    /// Adds what `other` saw (signals that arrived before the socket was tracked).
    pub fn merge(&mut self, other: &SignalMemo) {
        self.reset_received_ns = self.reset_received_ns.max(other.reset_received_ns);
        self.reset_sent_ns = self.reset_sent_ns.max(other.reset_sent_ns);
        if other.retransmits > 0 {
            if self.retransmits == 0 || self.retransmit_state == other.retransmit_state {
                self.retransmit_state = other.retransmit_state;
                self.retransmit_first_ns = if self.retransmits == 0 {
                    other.retransmit_first_ns
                } else {
                    self.retransmit_first_ns.min(other.retransmit_first_ns)
                };
                self.retransmits = self.retransmits.saturating_add(other.retransmits);
            } else {
                *self = SignalMemo {
                    retransmit_state: other.retransmit_state,
                    retransmits: other.retransmits,
                    retransmit_first_ns: other.retransmit_first_ns,
                    ..*self
                };
            }
        }
    }

    pub fn reset_seen(&self) -> bool {
        self.reset_received_ns != 0 || self.reset_sent_ns != 0
    }

    /// Retransmissions made while in `state` (SYN retransmissions for SYN_SENT).
    pub fn retransmits_in(&self, state: TcpState) -> u32 {
        if self.retransmit_state == state as u8 || self.retransmit_state == 0 {
            self.retransmits
        } else {
            0
        }
    }

    /// The cause of `from → CLOSE`, and the retransmissions made in `from`.
    pub fn cause(&self, from: TcpState) -> (Cause, u32) {
        let retransmits = self.retransmits_in(from);
        let cause = if self.reset_received_ns != 0 {
            if from == TcpState::SynSent {
                Cause::Refused
            } else {
                Cause::ResetReceived
            }
        } else if self.reset_sent_ns != 0 {
            Cause::ResetSent
        } else if retransmits > 0 {
            Cause::Timeout
        } else {
            Cause::Other
        };
        (cause, retransmits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(ts_ns: u64, kind: SignalKind, state: Option<TcpState>) -> Signal {
        Signal {
            ts_ns,
            sk: 1,
            kind,
            state,
            netns: 0,
        }
    }

    #[test]
    fn refused_is_a_reset_in_syn_sent() {
        let mut m = SignalMemo::default();
        m.record(
            &signal(5, SignalKind::ResetReceived, Some(TcpState::SynSent)),
            None,
        );
        assert_eq!(m.cause(TcpState::SynSent), (Cause::Refused, 0));
        assert_eq!(m.cause(TcpState::Established), (Cause::ResetReceived, 0));
    }

    #[test]
    fn timeout_counts_retransmits_of_the_closing_state() {
        let mut m = SignalMemo::default();
        let syn_sent = Some(TcpState::SynSent);
        for ts in 1..=3 {
            m.record(&signal(ts, SignalKind::Retransmit, syn_sent), None);
        }
        assert_eq!(m.cause(TcpState::SynSent), (Cause::Timeout, 3));
        // Retransmissions of another state do not explain this close.
        assert_eq!(m.cause(TcpState::Established), (Cause::Other, 0));
    }

    #[test]
    fn retransmits_restart_in_a_new_state() {
        let mut m = SignalMemo::default();
        m.record(
            &signal(1, SignalKind::Retransmit, Some(TcpState::SynSent)),
            None,
        );
        m.record(
            &signal(9, SignalKind::Retransmit, None),
            Some(TcpState::Established),
        );
        m.record(
            &signal(10, SignalKind::Retransmit, Some(TcpState::Established)),
            None,
        );
        assert_eq!(m.cause(TcpState::Established), (Cause::Timeout, 2));
    }

    #[test]
    fn reset_sent_after_the_close_still_counts() {
        let mut m = SignalMemo::default();
        m.record(
            &signal(5, SignalKind::ResetSent, Some(TcpState::Close)),
            None,
        );
        assert!(m.reset_seen());
        assert_eq!(m.cause(TcpState::Established), (Cause::ResetSent, 0));
    }

    #[test]
    fn received_beats_sent() {
        let mut m = SignalMemo::default();
        m.record(&signal(5, SignalKind::ResetSent, None), None);
        m.record(&signal(6, SignalKind::ResetReceived, None), None);
        assert_eq!(m.cause(TcpState::Established).0, Cause::ResetReceived);
    }

    #[test]
    fn nothing_seen_is_other() {
        assert_eq!(
            SignalMemo::default().cause(TcpState::SynSent),
            (Cause::Other, 0)
        );
        assert!(!SignalMemo::default().reset_seen());
    }

    #[test]
    fn older_signals_are_forgotten_on_reuse() {
        let mut m = SignalMemo::default();
        m.record(&signal(5, SignalKind::ResetReceived, None), None);
        m.record(
            &signal(6, SignalKind::Retransmit, Some(TcpState::SynSent)),
            None,
        );
        m.forget_before(10);
        assert_eq!(m, SignalMemo::default());
        m.record(&signal(12, SignalKind::ResetSent, None), None);
        m.forget_before(10);
        assert!(m.reset_seen());
    }

    #[test]
    fn merge_adds_pending_signals() {
        let mut pending = SignalMemo::default();
        pending.record(
            &signal(3, SignalKind::Retransmit, Some(TcpState::SynSent)),
            None,
        );
        pending.record(&signal(4, SignalKind::ResetReceived, None), None);
        let mut m = SignalMemo::default();
        m.record(
            &signal(2, SignalKind::Retransmit, Some(TcpState::SynSent)),
            None,
        );
        m.merge(&pending);
        assert_eq!(m.cause(TcpState::SynSent), (Cause::Refused, 2));
    }
}
