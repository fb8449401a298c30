//! Counts per state kept current from the transition stream between two snapshots, checked
//! against the next snapshot; and how long CLOSE_WAIT sockets have been there. Pure: snapshots
//! and transitions in, with the times they were taken at; no clock is read here.
//!
//! What the stream can see: the tracepoint `sock:inet_sock_set_state` fires for full sockets
//! only. Linux never reports TIME_WAIT through it: a closing socket goes FIN_WAIT2 -> CLOSE or
//! CLOSING -> CLOSE when a timewait socket takes its place (net/ipv4/tcp_minisocks.c,
//! tcp_time_wait), and that socket's expiry is invisible. Half-open passive connections live
//! as request sockets (NEW_SYN_RECV), which never change state through `tcp_set_state`
//! either. So TIME_WAIT, SYN_RECV and the timewait sockets that inet_diag reports in their
//! FIN_WAIT2 sub-state come from snapshots only, and so does CLOSE: a socket that enters it
//! leaves the kernel's hash tables, which is what a snapshot lists.

use std::collections::VecDeque;

use crate::{
    census::counts::{Counts, SHOWN},
    core::{
        event::Transition,
        state::{Side, TcpState},
    },
    os::diag::{SocketEntry, Timer},
};

/// States whose counts come from snapshots only (see the module documentation).
pub const SNAPSHOT_ONLY: [TcpState; 3] = [TcpState::SynRecv, TcpState::TimeWait, TcpState::Close];

/// True when the stream keeps the state's count of full sockets current.
pub fn streamed(state: TcpState) -> bool {
    !matches!(
        state,
        TcpState::SynRecv | TcpState::NewSynRecv | TcpState::TimeWait | TcpState::Close
    )
}

/// True when the snapshot entry is a full socket in a state the stream follows. Timewait
/// sockets carry timer 3 whatever their sub-state (net/ipv4/inet_diag.c,
/// inet_twsk_diag_fill); full sockets never do.
fn followed(socket: &SocketEntry) -> bool {
    streamed(socket.state) && socket.timer != Timer::TimeWait
}

/// A snapshot split into what the stream follows and what only snapshots show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub streamed: Counts,
    pub snapshot_only: Counts,
}

impl Split {
    pub fn of(sockets: &[SocketEntry]) -> Self {
        let mut split = Self::default();
        for socket in sockets {
            if followed(socket) {
                split.streamed.add(socket.state);
            } else {
                split.snapshot_only.add(socket.state);
            }
        }
        split
    }
}

/// Signed changes per shown state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Delta([i64; SHOWN.len()]);

fn index(state: TcpState) -> Option<usize> {
    SHOWN.iter().position(|s| *s == state)
}

impl Delta {
    /// A transition's effect on the counts of full sockets the stream follows: `from` loses
    /// one and `to` gains one, except where the socket is not counted there. LISTEN ->
    /// SYN_RECV is a child socket's birth: the listener stays.
    fn apply(&mut self, t: &Transition) {
        let birth = Side::of_birth(t.from, t.to).is_some();
        if streamed(t.from)
            && !birth
            && let Some(i) = index(t.from)
        {
            self.0[i] -= 1;
        }
        if streamed(t.to)
            && let Some(i) = index(t.to)
        {
            self.0[i] += 1;
        }
    }

    fn get(&self, state: TcpState) -> i64 {
        index(state).map_or(0, |i| self.0[i])
    }
}

/// One state of a check: what the stream predicted against what the snapshot found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateCheck {
    pub state: TcpState,
    /// The previous snapshot plus the transitions since; may be negative when transitions
    /// were lost.
    pub stream: i64,
    pub snapshot: u64,
}

impl StateCheck {
    /// Stream minus snapshot: 0 when they agree.
    pub fn difference(&self) -> i64 {
        self.stream - self.snapshot as i64
    }
}

/// The stream's counts against one snapshot, once every transition before it has arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Start of the snapshot's dump (kernel monotonic time).
    pub at_ns: u64,
    /// Every state the stream follows, in kernel order.
    pub states: Vec<StateCheck>,
    /// Transitions applied between the previous snapshot and this one.
    pub transitions: u64,
    /// Transitions that happened while the snapshot was taken: the snapshot may show them or
    /// not, so a count they touch may differ by them.
    pub during_snapshot: u64,
    /// Transitions the kernel lost over the window (ring buffer full, runs skipped).
    pub lost: u64,
}

impl Check {
    pub fn agrees(&self) -> bool {
        self.states.iter().all(|s| s.difference() == 0)
    }
}

/// A snapshot waiting for the transitions that happened before it.
#[derive(Debug)]
struct Pending {
    /// Start of the previous snapshot's dump: the window is `[from_ns, at_ns)`.
    from_ns: u64,
    at_ns: u64,
    end_ns: u64,
    predicted: Delta,
    snapshot: Counts,
    transitions: u64,
    during_snapshot: u64,
    lost_before: u64,
}

/// The live counts: the last snapshot plus the transitions since.
#[derive(Debug, Default)]
pub struct LiveCensus {
    based: bool,
    base_ns: u64,
    base_end_ns: u64,
    base: Split,
    since: Delta,
    transitions_since: u64,
    lost_at_base: u64,
    pending: VecDeque<Pending>,
    /// The states shown (`--state`); empty: all.
    shown: Vec<TcpState>,
    /// Transitions that arrived after the check of their window was given.
    pub late: u64,
}

impl LiveCensus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts only these states (as netstat names them): the snapshots are selected the same
    /// way. A transition into or out of another state still moves the shown one.
    pub fn only(states: &[TcpState]) -> Self {
        Self {
            shown: states.to_vec(),
            ..Self::default()
        }
    }

    fn is_shown(&self, state: TcpState) -> bool {
        self.shown.is_empty() || self.shown.contains(&state)
    }

    /// A new snapshot, dumped between `start_ns` and `end_ns`; `lost` is the kernel's count of
    /// lost transitions so far. From now on, the counts are this snapshot plus the transitions
    /// after `start_ns`; the previous counts wait for their check in [`Self::settle`].
    pub fn rebase(&mut self, split: Split, start_ns: u64, end_ns: u64, lost: u64) {
        if self.based {
            let mut predicted = Delta::default();
            for (i, state) in SHOWN.iter().enumerate() {
                predicted.0[i] = self.base.streamed.get(*state) as i64 + self.since.get(*state);
            }
            self.pending.push_back(Pending {
                from_ns: self.base_ns,
                at_ns: start_ns,
                end_ns,
                predicted,
                snapshot: split.streamed,
                transitions: self.transitions_since,
                during_snapshot: 0,
                lost_before: self.lost_at_base,
            });
        }
        self.based = true;
        self.base_ns = start_ns;
        self.base_end_ns = end_ns;
        self.base = split;
        self.since = Delta::default();
        self.transitions_since = 0;
        self.lost_at_base = lost;
    }

    /// One transition of the stream, in this namespace and selection. Transitions arrive
    /// late (the ring buffer is drained every few tens of milliseconds, a transition with a
    /// zero port waits for its socket's next one), so each goes to the window its time falls in.
    pub fn apply(&mut self, t: &Transition) {
        if !self.based {
            return;
        }
        if t.ts_ns >= self.base_ns {
            self.since.apply(t);
            self.transitions_since += 1;
            if t.ts_ns <= self.base_end_ns
                && let Some(p) = self.pending.back_mut()
                && p.at_ns == self.base_ns
            {
                p.during_snapshot += 1;
            }
            return;
        }
        match self
            .pending
            .iter_mut()
            .find(|p| (p.from_ns..p.at_ns).contains(&t.ts_ns))
        {
            Some(p) => {
                p.predicted.apply(t);
                p.transitions += 1;
            }
            None => self.late += 1,
        }
    }

    /// The checks of the snapshots taken at least `settle_ns` before `now_ns`: by then every
    /// transition before them has arrived. `lost` is the kernel's count so far.
    pub fn settle(&mut self, now_ns: u64, settle_ns: u64, lost: u64) -> Vec<Check> {
        let mut checks = Vec::new();
        while let Some(p) = self.pending.front() {
            if p.end_ns.saturating_add(settle_ns) > now_ns {
                break;
            }
            let p = self.pending.pop_front().expect("just seen");
            checks.push(Check {
                at_ns: p.at_ns,
                states: SHOWN
                    .iter()
                    .filter(|s| streamed(**s) && self.is_shown(**s))
                    .map(|s| StateCheck {
                        state: *s,
                        stream: p.predicted.get(*s),
                        snapshot: p.snapshot.get(*s),
                    })
                    .collect(),
                transitions: p.transitions,
                during_snapshot: p.during_snapshot,
                lost: lost.saturating_sub(p.lost_before),
            });
        }
        checks
    }

    /// The counts now: the streamed states from the last snapshot and the transitions since,
    /// the others as the last snapshot found them.
    pub fn counts(&self) -> Counts {
        let mut counts = self.base.snapshot_only;
        for state in SHOWN.into_iter().filter(|s| self.is_shown(*s)) {
            let n = self.base.streamed.get(state) as i64 + self.since.get(state);
            counts.add_n(state, n.max(0) as u64);
        }
        counts
    }

    /// Transitions applied since the last snapshot.
    pub fn transitions_since(&self) -> u64 {
        self.transitions_since
    }

    /// Start of the last snapshot's dump.
    pub fn base_ns(&self) -> u64 {
        self.base_ns
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::{
        census::{
            close_wait::{CloseWaitAges, Since},
            tests::sock,
        },
        core::event::Family,
    };

    const S: u64 = 1_000_000_000;

    fn tr(ts_ns: u64, from: TcpState, to: TcpState, lport: u16, rport: u16) -> Transition {
        let sk = (u64::from(lport) << 16) | u64::from(rport);
        Transition {
            pid: Some(1),
            comm: "t".into(),
            laddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            lport,
            raddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)),
            rport,
            ..Transition::fixture(sk, ts_ns, from, to)
        }
    }

    fn sockets(states: &[(TcpState, u16)]) -> Vec<SocketEntry> {
        states
            .iter()
            .map(|(state, port)| {
                sock(
                    *state,
                    &format!("10.0.0.1:{port}"),
                    &format!("10.0.0.9:{}", 40000 + port),
                    u32::from(*port),
                )
            })
            .collect()
    }

    fn check_of(check: &Check, state: TcpState) -> (i64, u64) {
        let s = check.states.iter().find(|s| s.state == state).unwrap();
        (s.stream, s.snapshot)
    }

    #[test]
    fn time_wait_request_and_timewait_sockets_are_snapshot_only() {
        use TcpState::*;
        let mut all = sockets(&[(Established, 1), (TimeWait, 2), (NewSynRecv, 3), (Close, 4)]);
        let mut timewait_fin_wait2 = sock(FinWait2, "10.0.0.1:5", "10.0.0.9:5", 0);
        timewait_fin_wait2.timer = Timer::TimeWait;
        all.push(timewait_fin_wait2);
        all.push(sock(FinWait2, "10.0.0.1:6", "10.0.0.9:6", 0));
        let split = Split::of(&all);
        let nonzero =
            |c: &Counts| -> Vec<(TcpState, u64)> { c.iter().filter(|(_, n)| *n > 0).collect() };
        assert_eq!(nonzero(&split.streamed), [(Established, 1), (FinWait2, 1)]);
        assert_eq!(
            nonzero(&split.snapshot_only),
            [(SynRecv, 1), (FinWait2, 1), (TimeWait, 1), (Close, 1)]
        );
    }

    #[test]
    fn transitions_keep_the_counts_current_and_agree_with_the_next_snapshot() {
        use TcpState::*;
        let mut live = LiveCensus::new();
        let first = sockets(&[(Listen, 80), (Established, 1), (Established, 2)]);
        live.rebase(Split::of(&first), 10 * S, 10 * S + 1000, 0);
        // A client connects and is accepted (the listener stays), one connection is closed
        // by its peer, another closes first and hands over to a timewait socket.
        for t in [
            tr(11 * S, Close, SynSent, 3, 80),
            tr(11 * S + 1, Listen, SynRecv, 80, 3),
            tr(11 * S + 2, SynRecv, Established, 80, 3),
            tr(11 * S + 3, SynSent, Established, 3, 80),
            tr(11 * S + 4, Established, CloseWait, 1, 40001),
            tr(11 * S + 5, Established, FinWait1, 2, 40002),
            tr(11 * S + 6, FinWait1, FinWait2, 2, 40002),
            tr(11 * S + 7, FinWait2, Close, 2, 40002),
        ] {
            live.apply(&t);
        }
        assert_eq!(live.transitions_since(), 8);
        let counts = live.counts();
        assert_eq!(counts.get(Established), 2);
        assert_eq!(counts.get(CloseWait), 1);
        assert_eq!(counts.get(Listen), 1);
        assert_eq!(counts.get(FinWait2), 0);
        assert_eq!(counts.get(Close), 0);

        let mut second = sockets(&[(Listen, 80), (CloseWait, 1), (TimeWait, 2)]);
        second.push(sock(Established, "10.0.0.1:3", "10.0.0.1:80", 7));
        second.push(sock(Established, "10.0.0.1:80", "10.0.0.1:3", 8));
        live.rebase(Split::of(&second), 12 * S, 12 * S + 1000, 0);
        // Not settled yet: a transition before the snapshot may still be on its way.
        assert!(live.settle(12 * S + 1000, S / 2, 0).is_empty());
        let checks = live.settle(12 * S + S, S / 2, 0);
        assert_eq!(checks.len(), 1);
        let check = &checks[0];
        assert!(check.agrees(), "{check:#?}");
        assert_eq!(check.at_ns, 12 * S);
        assert_eq!(check.transitions, 8);
        assert_eq!(check_of(check, Established), (2, 2));
        assert_eq!(check_of(check, CloseWait), (1, 1));
        assert!(check.states.iter().all(|s| streamed(s.state)));
        // The new base shows TIME_WAIT from the snapshot.
        assert_eq!(live.counts().get(TimeWait), 1);
        assert_eq!(live.transitions_since(), 0);
    }

    #[test]
    fn late_transitions_go_to_their_window_and_lost_ones_show_as_differences() {
        use TcpState::*;
        let mut live = LiveCensus::new();
        live.rebase(
            Split::of(&sockets(&[(Established, 1), (Established, 2)])),
            10 * S,
            10 * S + 10,
            5,
        );
        live.apply(&tr(11 * S, Established, CloseWait, 1, 40001));
        live.rebase(
            Split::of(&sockets(&[(CloseWait, 1), (CloseWait, 2)])),
            12 * S,
            12 * S + 10,
            5,
        );
        // Arrives after the snapshot, happened before it: counted for the check only.
        live.apply(&tr(12 * S - 1, Established, CloseWait, 2, 40002));
        // During the dump: it may or may not be in the snapshot.
        live.apply(&tr(12 * S + 5, CloseWait, LastAck, 1, 40001));
        assert_eq!(live.counts().get(CloseWait), 1);
        assert_eq!(live.counts().get(LastAck), 1);
        let check = live.settle(13 * S, S / 2, 5).remove(0);
        assert!(check.agrees(), "{check:#?}");
        assert_eq!(check.transitions, 2);
        assert_eq!(check.during_snapshot, 1);

        // A lost transition: the check says by how much, and the loss.
        live.rebase(
            Split::of(&sockets(&[(LastAck, 1), (Established, 3)])),
            14 * S,
            14 * S + 10,
            6,
        );
        let check = live.settle(15 * S, S / 2, 6).remove(0);
        assert!(!check.agrees());
        assert_eq!(check_of(&check, CloseWait), (1, 0));
        assert_eq!(check_of(&check, Established), (0, 1));
        assert_eq!(check.lost, 1);
        // Older than every window still waiting: ignored, counted.
        live.apply(&tr(S, Established, CloseWait, 9, 9));
        assert_eq!(live.late, 1);
    }

    #[test]
    fn with_a_state_selection_other_states_are_not_counted() {
        use TcpState::*;
        let mut live = LiveCensus::only(&[CloseWait]);
        live.rebase(Split::of(&sockets(&[(CloseWait, 1)])), S, S, 0);
        live.apply(&tr(2 * S, Established, CloseWait, 2, 40002));
        live.apply(&tr(2 * S, Close, Listen, 80, 0));
        assert_eq!(live.counts().get(CloseWait), 2);
        assert_eq!(live.counts().total(), 2);
        live.rebase(
            Split::of(&sockets(&[(CloseWait, 1), (CloseWait, 2)])),
            3 * S,
            3 * S,
            0,
        );
        let check = live.settle(4 * S, S / 2, 0).remove(0);
        assert_eq!(check.states.len(), 1);
        assert!(check.agrees());
    }

    #[test]
    fn transitions_before_the_first_snapshot_are_ignored() {
        let mut live = LiveCensus::new();
        live.apply(&tr(S, TcpState::Close, TcpState::Listen, 80, 0));
        live.rebase(Split::default(), 2 * S, 2 * S, 0);
        assert_eq!(live.counts().total(), 0);
    }

    #[test]
    fn close_wait_sockets_are_timed_from_their_transition_or_the_first_snapshot() {
        use TcpState::*;
        let mut ages = CloseWaitAges::default();
        let first = sockets(&[(CloseWait, 1), (Established, 2), (Established, 3)]);
        ages.snapshot(&first, 10 * S);
        assert_eq!(
            ages.get(&first[0]),
            Some(Since {
                ns: 10 * S,
                exact: false
            })
        );
        ages.apply(&tr(11 * S, Established, CloseWait, 2, 40002));
        ages.apply(&tr(11 * S, Established, CloseWait, 3, 40003));
        ages.apply(&tr(12 * S, CloseWait, LastAck, 3, 40003));
        let second = sockets(&[(CloseWait, 1), (CloseWait, 2), (CloseWait, 4)]);
        ages.snapshot(&second, 13 * S);
        assert_eq!(
            ages.get(&second[1]),
            Some(Since {
                ns: 11 * S,
                exact: true
            })
        );
        // Seen in a snapshot before its transition arrived: at least since the snapshot,
        // then exact once the transition comes.
        assert_eq!(
            ages.get(&second[2]),
            Some(Since {
                ns: 13 * S,
                exact: false
            })
        );
        ages.apply(&tr(13 * S - 5, Established, CloseWait, 4, 40004));
        assert!(ages.get(&second[2]).unwrap().exact);
        assert_eq!(ages.len(), 3);
        // A socket gone from a snapshot whose leaving transition was lost is forgotten.
        ages.snapshot(&second[1..], 14 * S);
        assert_eq!(ages.get(&second[0]), None);
        assert_eq!(ages.len(), 2);
    }

    #[test]
    fn ipv4_mapped_addresses_match_and_the_map_is_bounded() {
        let mut ages = CloseWaitAges::with_capacity(1);
        let mut t = tr(S, TcpState::Established, TcpState::CloseWait, 80, 5000);
        t.family = Family::Inet6;
        t.laddr = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped());
        t.raddr = IpAddr::V6(Ipv4Addr::new(10, 0, 0, 9).to_ipv6_mapped());
        ages.apply(&t);
        let socket = sock(TcpState::CloseWait, "10.0.0.1:80", "10.0.0.9:5000", 1);
        assert_eq!(ages.get(&socket).map(|s| s.ns), Some(S));
        let mut other = tr(S, TcpState::Established, TcpState::CloseWait, 81, 5000);
        other.laddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
        ages.apply(&other);
        assert_eq!(ages.len(), 1);
        assert_eq!(ages.untimed, 1);
    }
}
