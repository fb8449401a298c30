//! Why an abnormal →CLOSE happened: from what the kernel knew of the socket as it closed (its
//! error, its timers' counts, whether it was an orphan: `CloseDetails`), and from the resets and
//! retransmissions seen on the same socket. Pure: [`SignalMemo::verdict`] decides.
//!
//! The stream hands a wake-up's signals before its transitions, while the kernel may have traced
//! them in either order (a reset sent by `tcp_disconnect()` comes right *after* the →CLOSE,
//! net/ipv4/tcp.c). So signals are matched by the state the tracepoint saw and by time, not by
//! arrival order.
//!
//! What the kernel sets before the →CLOSE (net/ipv4/tcp_input.c, tcp_timer.c, Linux 6.1 to
//! 6.18): `tcp_reset()` sets `sk_err` to ECONNREFUSED in SYN_SENT, EPIPE in CLOSE_WAIT and
//! ECONNRESET elsewhere, then closes; `tcp_write_err()` (the retransmission, SYN-retry,
//! zero-window-probe and keepalive timers giving up) sets `sk_soft_err` or else ETIMEDOUT; the
//! keepalive timer sends a reset just before (reason TCP_KEEPALIVE_TIMEOUT since 6.10). An
//! application's close() of a SYN_SENT socket closes it with no error at all (and is not counted
//! in TcpAttemptFails, which counts only the kernel's `tcp_done()`).

use crate::core::{
    event::{CloseDetails, Signal, SignalKind},
    reset_reason::ResetReasons,
    state::TcpState,
};

const EPIPE: u8 = 32;
const ECONNRESET: u8 = 104;
const ETIMEDOUT: u8 = 110;
const ECONNREFUSED: u8 = 111;

/// The reset reason of the keepalive timer (Linux 6.10 and later), in tcptrace's spelling.
const KEEPALIVE_REASON: &str = "tcp_keepalive_timeout";
/// The reset reason of the orphaned FIN_WAIT2 timer (tcp_keepalive_timer, Linux 6.10 and later).
const FIN_WAIT2_REASON: &str = "tcp_state";

/// The cause of an abnormal close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Cause {
    /// The connect was refused: a reset (nothing listens) or an ICMP port unreachable.
    Refused = 0,
    ResetReceived = 1,
    /// We aborted: SO_LINGER 0, close() with unread data, an out-of-memory orphan.
    ResetSent = 2,
    /// A timer gave up: see [`Timer`].
    Timeout = 3,
    /// The keepalive probes went unanswered.
    KeepaliveTimeout = 4,
    /// The application closed its socket while the connect was in progress.
    ConnectAbandoned = 5,
    /// Nothing above was seen (the cause tracepoints are not attached, or the kernel reported
    /// an error of another kind).
    Other = 6,
}

impl Cause {
    pub const COUNT: usize = 7;
    pub const ALL: [Cause; Self::COUNT] = [
        Self::Refused,
        Self::ResetReceived,
        Self::ResetSent,
        Self::Timeout,
        Self::KeepaliveTimeout,
        Self::ConnectAbandoned,
        Self::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::ResetReceived => "reset_received",
            Self::ResetSent => "reset_sent",
            Self::Timeout => "timeout",
            Self::KeepaliveTimeout => "keepalive_timeout",
            Self::ConnectAbandoned => "connect_abandoned",
            Self::Other => "other",
        }
    }
}

/// Which timer gave up, for a [`Cause::Timeout`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// SYN_SENT: the SYN retransmissions ran out (tcp_syn_retries, TCP_SYNCNT).
    SynRetries,
    /// The data retransmissions ran out (tcp_retries2).
    Retransmissions,
    /// TCP_USER_TIMEOUT expired with data (or a SYN) unacknowledged.
    UserTimeout,
    /// An orphan's retransmissions ran out (tcp_orphan_retries).
    OrphanRetries,
    /// The peer kept its window closed past the zero-window probes (tcp_retries2).
    ZeroWindowProbes,
    /// An orphan waited in FIN_WAIT2 past tcp_fin_timeout.
    FinWait2,
}

impl Timer {
    pub const ALL: [Timer; 6] = [
        Self::SynRetries,
        Self::Retransmissions,
        Self::UserTimeout,
        Self::OrphanRetries,
        Self::ZeroWindowProbes,
        Self::FinWait2,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::SynRetries => "syn_retries",
            Self::Retransmissions => "retransmissions",
            Self::UserTimeout => "user_timeout",
            Self::OrphanRetries => "orphan_retries",
            Self::ZeroWindowProbes => "zero_window_probes",
            Self::FinWait2 => "fin_wait2_timeout",
        }
    }
}

/// The verdict on one abnormal close.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Verdict {
    pub cause: Cause,
    /// For [`Cause::Timeout`].
    pub timer: Option<Timer>,
    /// For [`Cause::ResetSent`]: the reset's reason, where the kernel reported one.
    pub reset_reason: Option<u16>,
    /// Retransmissions made in the closing state: the kernel's count where it was read, else
    /// the retransmissions seen.
    pub retransmits: u32,
}

impl Verdict {
    fn of(cause: Cause, retransmits: u32) -> Self {
        Self {
            cause,
            timer: None,
            reset_reason: None,
            retransmits,
        }
    }

    /// The verdict of a reset sent after its close (tcp_disconnect()): `reason` its reason.
    pub fn reset_sent(reason: Option<u16>) -> Self {
        Self {
            reset_reason: reason,
            ..Self::of(Cause::ResetSent, 0)
        }
    }
}

/// The signals seen on one socket (or one socket address not yet tracked), compactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignalMemo {
    /// Time of the last reset received; 0: none.
    reset_received_ns: u64,
    reset_sent_ns: u64,
    /// The reason of the last reset sent, where the kernel reported one.
    reset_sent_reason: Option<u16>,
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
            SignalKind::ResetSent => {
                self.reset_sent_ns = signal.ts_ns.max(1);
                self.reset_sent_reason = signal.reset_reason;
            }
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
            self.reset_sent_reason = None;
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
        if other.reset_sent_ns >= self.reset_sent_ns && other.reset_sent_ns != 0 {
            self.reset_sent_ns = other.reset_sent_ns;
            self.reset_sent_reason = other.reset_sent_reason;
        }
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

    /// The cause of `from → CLOSE`, and the retransmissions made in `from`, from the signals
    /// alone: what a recording made before the probe read the close details tells.
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

    /// The verdict on `from → CLOSE`: from the kernel's close details where the probe read
    /// them, else from the signals alone. `reasons` names the reset reasons.
    pub fn verdict(
        &self,
        from: TcpState,
        close: Option<&CloseDetails>,
        reasons: &ResetReasons,
    ) -> Verdict {
        let Some(close) = close else {
            let (cause, retransmits) = self.cause(from);
            let reset_reason = (cause == Cause::ResetSent)
                .then_some(self.reset_sent_reason)
                .flatten();
            return Verdict {
                reset_reason,
                ..Verdict::of(cause, retransmits)
            };
        };
        let retransmits = u32::from(close.retransmits);
        let reason_name = self.reset_sent_reason.and_then(|r| reasons.name(r));
        let reset_sent = self.reset_sent_ns != 0;
        match close.err {
            ECONNREFUSED => Verdict::of(Cause::Refused, retransmits),
            ECONNRESET | EPIPE => Verdict::of(Cause::ResetReceived, retransmits),
            0 if self.reset_received_ns != 0 => Verdict::of(
                if from == TcpState::SynSent {
                    Cause::Refused
                } else {
                    Cause::ResetReceived
                },
                retransmits,
            ),
            // Nothing failed in the kernel: the owner closed (or shut down) a connect in
            // progress. No reset follows a SYN_SENT close (tcp_need_reset()).
            0 if from == TcpState::SynSent => Verdict::of(Cause::ConnectAbandoned, retransmits),
            // tcp_keepalive_timer(): an orphan past tcp_fin_timeout gets a reset and is done.
            0 if from == TcpState::FinWait2
                && close.orphan
                && reset_sent
                && (self.reset_sent_reason.is_none() || reason_name == Some(FIN_WAIT2_REASON)) =>
            {
                Verdict {
                    timer: Some(Timer::FinWait2),
                    ..Verdict::of(Cause::Timeout, retransmits)
                }
            }
            0 if reset_sent => Verdict {
                reset_reason: self.reset_sent_reason,
                ..Verdict::of(Cause::ResetSent, retransmits)
            },
            // No error and no reset yet: one may follow (tcp_disconnect()), else `other`.
            0 => Verdict::of(Cause::Other, retransmits),
            err if err == ETIMEDOUT || err == close.err_soft => {
                // The keepalive timer sends its reset just before giving up; no other timer
                // does (tcp_write_timeout() and tcp_probe_timer() only close).
                let keepalive = reset_sent
                    && match self.reset_sent_reason {
                        Some(_) => reason_name == Some(KEEPALIVE_REASON),
                        None => close.probes_out > 0,
                    };
                if keepalive {
                    return Verdict::of(Cause::KeepaliveTimeout, retransmits);
                }
                Verdict {
                    timer: Some(timer(from, close)),
                    ..Verdict::of(Cause::Timeout, retransmits)
                }
            }
            _ => Verdict::of(Cause::Other, retransmits),
        }
    }
}

/// Which timer gave up a socket that closed with ETIMEDOUT (or its soft error) and no reset.
fn timer(from: TcpState, close: &CloseDetails) -> Timer {
    if matches!(from, TcpState::SynSent | TcpState::SynRecv) {
        // tcp_write_timeout(): the SYN retries, unless TCP_USER_TIMEOUT bounds them first.
        return if close.user_timeout {
            Timer::UserTimeout
        } else {
            Timer::SynRetries
        };
    }
    if close.user_timeout {
        Timer::UserTimeout
    } else if close.probes_out > 0 && close.retransmits == 0 {
        // tcp_probe_timer(): probes are sent only with nothing in flight to retransmit.
        Timer::ZeroWindowProbes
    } else if close.orphan {
        Timer::OrphanRetries
    } else {
        Timer::Retransmissions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(ts_ns: u64, kind: SignalKind, state: Option<TcpState>) -> Signal {
        Signal {
            state,
            ..Signal::fixture(1, ts_ns, kind)
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

    /// Reasons named as Linux 6.18 names them (only those the verdicts look at).
    fn reasons() -> ResetReasons {
        let mut names = vec![String::new(); 16];
        names[12] = "tcp_abort_on_linger".into();
        names[13] = "tcp_abort_on_memory".into();
        names[14] = FIN_WAIT2_REASON.into();
        names[15] = KEEPALIVE_REASON.into();
        ResetReasons::from_names(names)
    }

    fn closed(err: u8, retransmits: u8, probes_out: u8) -> CloseDetails {
        CloseDetails {
            err,
            retransmits,
            probes_out,
            ..CloseDetails::default()
        }
    }

    fn reset_sent(memo: &mut SignalMemo, state: TcpState, reason: Option<u16>) {
        memo.record(
            &Signal {
                reset_reason: reason,
                ..signal(5, SignalKind::ResetSent, Some(state))
            },
            None,
        );
    }

    fn verdict(memo: &SignalMemo, from: TcpState, close: CloseDetails) -> Verdict {
        memo.verdict(from, Some(&close), &reasons())
    }

    fn timeout(timer: Timer, retransmits: u32) -> Verdict {
        Verdict {
            timer: Some(timer),
            ..Verdict::of(Cause::Timeout, retransmits)
        }
    }

    #[test]
    fn the_kernel_s_error_tells_refused_reset_and_timeout_apart() {
        let none = SignalMemo::default();
        use TcpState::*;
        assert_eq!(
            verdict(&none, SynSent, closed(ECONNREFUSED, 0, 0)),
            Verdict::of(Cause::Refused, 0)
        );
        assert_eq!(
            verdict(&none, Established, closed(ECONNRESET, 0, 0)),
            Verdict::of(Cause::ResetReceived, 0)
        );
        // tcp_reset() in CLOSE_WAIT reports EPIPE.
        assert_eq!(
            verdict(&none, CloseWait, closed(EPIPE, 0, 0)).cause,
            Cause::ResetReceived
        );
        assert_eq!(
            verdict(&none, SynSent, closed(ETIMEDOUT, 2, 0)),
            timeout(Timer::SynRetries, 2)
        );
        assert_eq!(
            verdict(&none, Established, closed(ETIMEDOUT, 5, 0)),
            timeout(Timer::Retransmissions, 5)
        );
    }

    #[test]
    fn a_timeout_names_its_timer() {
        use TcpState::*;
        let none = SignalMemo::default();
        let with = |f: fn(&mut CloseDetails)| {
            let mut close = closed(ETIMEDOUT, 3, 0);
            f(&mut close);
            close
        };
        assert_eq!(
            verdict(&none, Established, with(|c| c.user_timeout = true)),
            timeout(Timer::UserTimeout, 3)
        );
        assert_eq!(
            verdict(&none, SynSent, with(|c| c.user_timeout = true)),
            timeout(Timer::UserTimeout, 3)
        );
        assert_eq!(
            verdict(&none, LastAck, with(|c| c.orphan = true)),
            timeout(Timer::OrphanRetries, 3)
        );
        // Zero-window probes: probes out, nothing retransmitted, no reset.
        assert_eq!(
            verdict(&none, Established, closed(ETIMEDOUT, 0, 4)),
            timeout(Timer::ZeroWindowProbes, 0)
        );
        // A soft error (an ICMP error the retries outlived) reported in place of ETIMEDOUT.
        let soft = CloseDetails {
            err_soft: 113,
            ..closed(113, 2, 0)
        };
        assert_eq!(verdict(&none, SynSent, soft), timeout(Timer::SynRetries, 2));
        // A hard error of another kind is no timeout.
        assert_eq!(
            verdict(&none, SynSent, closed(113, 0, 0)),
            Verdict::of(Cause::Other, 0)
        );
    }

    #[test]
    fn keepalive_is_the_timeout_after_the_keepalive_timer_s_reset() {
        use TcpState::*;
        let mut memo = SignalMemo::default();
        // Linux 6.10 and later name the reason.
        reset_sent(&mut memo, Established, Some(15));
        assert_eq!(
            verdict(&memo, Established, closed(ETIMEDOUT, 0, 1)),
            Verdict::of(Cause::KeepaliveTimeout, 0)
        );
        // Before, the reset and the probes out say it.
        let mut memo = SignalMemo::default();
        reset_sent(&mut memo, Established, None);
        assert_eq!(
            verdict(&memo, Established, closed(ETIMEDOUT, 0, 1)).cause,
            Cause::KeepaliveTimeout
        );
        // No reset: the zero-window probes gave up.
        assert_eq!(
            verdict(&SignalMemo::default(), Established, closed(ETIMEDOUT, 0, 1)).timer,
            Some(Timer::ZeroWindowProbes)
        );
        // A reset of another reason is not the keepalive timer's.
        let mut memo = SignalMemo::default();
        reset_sent(&mut memo, Established, Some(12));
        assert_eq!(
            verdict(&memo, Established, closed(ETIMEDOUT, 0, 1)).cause,
            Cause::Timeout
        );
    }

    #[test]
    fn an_application_closing_a_connect_in_progress_abandons_it() {
        use TcpState::*;
        let none = SignalMemo::default();
        assert_eq!(
            verdict(&none, SynSent, closed(0, 1, 0)),
            Verdict::of(Cause::ConnectAbandoned, 1)
        );
        // A reset received first is still a refusal (the error may come after).
        let mut memo = SignalMemo::default();
        memo.record(&signal(5, SignalKind::ResetReceived, Some(SynSent)), None);
        assert_eq!(
            verdict(&memo, SynSent, closed(0, 0, 0)).cause,
            Cause::Refused
        );
        // Without close details (an older recording) nothing tells it from a timeout but the
        // retransmissions: as before.
        let mut memo = SignalMemo::default();
        memo.record(&signal(5, SignalKind::Retransmit, Some(SynSent)), None);
        assert_eq!(
            memo.verdict(SynSent, None, &reasons()),
            Verdict::of(Cause::Timeout, 1)
        );
    }

    #[test]
    fn resets_sent_keep_their_reason_and_an_orphan_s_fin_wait2_reset_is_its_timer() {
        use TcpState::*;
        let mut memo = SignalMemo::default();
        reset_sent(&mut memo, Established, Some(12));
        assert_eq!(
            verdict(&memo, Established, closed(0, 0, 0)),
            Verdict {
                reset_reason: Some(12),
                ..Verdict::of(Cause::ResetSent, 0)
            }
        );
        // tcp_keepalive_timer() on an orphan in FIN_WAIT2 past tcp_fin_timeout.
        let orphan = CloseDetails {
            orphan: true,
            ..closed(0, 0, 0)
        };
        let mut memo = SignalMemo::default();
        reset_sent(&mut memo, FinWait2, Some(14));
        assert_eq!(
            verdict(&memo, FinWait2, orphan),
            timeout(Timer::FinWait2, 0)
        );
        let mut memo = SignalMemo::default();
        reset_sent(&mut memo, FinWait2, None);
        assert_eq!(
            verdict(&memo, FinWait2, orphan),
            timeout(Timer::FinWait2, 0)
        );
        // Out of memory is a reset sent, whatever the state; so is a reason without a name.
        let mut memo = SignalMemo::default();
        reset_sent(&mut memo, FinWait2, Some(13));
        assert_eq!(verdict(&memo, FinWait2, orphan).cause, Cause::ResetSent);
        let mut unnamed = SignalMemo::default();
        reset_sent(&mut unnamed, FinWait2, Some(3));
        assert_eq!(verdict(&unnamed, FinWait2, orphan).cause, Cause::ResetSent);
        // Signals alone keep the reason too.
        assert_eq!(
            memo.verdict(FinWait2, None, &reasons()).reset_reason,
            Some(13)
        );
        // No error and no reset yet: one may follow the close.
        assert_eq!(
            verdict(&SignalMemo::default(), Established, closed(0, 0, 0)).cause,
            Cause::Other
        );
    }

    #[test]
    fn every_cause_and_timer_has_its_own_name() {
        let causes: std::collections::HashSet<_> = Cause::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(causes.len(), Cause::COUNT);
        let timers: std::collections::HashSet<_> = Timer::ALL.iter().map(|t| t.name()).collect();
        assert_eq!(timers.len(), Timer::ALL.len());
        for (i, cause) in Cause::ALL.iter().enumerate() {
            assert_eq!(*cause as usize, i);
        }
        for (i, timer) in Timer::ALL.iter().enumerate() {
            assert_eq!(*timer as usize, i);
        }
    }
}
