//! Counts per state kept current from the transition stream between two snapshots, and each
//! snapshot checked against what the stream allows. Pure: snapshots and transitions in, with the
//! times they were taken at; no clock is read here.
//!
//! What the stream can see: the tracepoint `sock:inet_sock_set_state` fires for full sockets
//! only. Half-open passive connections live as request sockets (NEW_SYN_RECV), which never
//! change state through `tcp_set_state`, so SYN_RECV comes from snapshots only (a full child's
//! few microseconds in SYN_RECV included), and so does CLOSE: a socket that enters it leaves the
//! kernel's hash tables, which is what a snapshot lists. Linux never reports TIME_WAIT through
//! the tracepoint either, but it reports the hand-over to a timewait socket (FIN_WAIT2 -> CLOSE,
//! CLOSING -> CLOSE), so timewait sockets are counted from the last snapshot plus the hand-overs
//! since, less those past their lifetime (`census::timewait`).
//!
//! # What "agrees" means
//!
//! Each snapshot after the first is checked against the previous one and the transitions of
//! this namespace and selection between them, once every transition before the snapshot's end
//! has arrived ([`LiveCensus::settle`]). A dump is not instantaneous: a socket that moved while
//! a snapshot was dumped may be listed in any state it had meanwhile (`census::reconcile`). So
//! the stream allows each state a range of counts, one number when no socket moved during
//! either dump. A check **agrees** when all of these hold:
//! - no transition was lost by the kernel over the window (the ring buffer full, runs skipped;
//!   counted machine-wide), and none of a socket's transitions starts elsewhere than where its
//!   previous one ended (a gap: one missed in between): else the check is **unverified**,
//!   whatever the counts;
//! - every state the stream follows (ESTABLISHED, SYN_SENT, FIN_WAIT1, FIN_WAIT2 of full
//!   sockets, CLOSE_WAIT, LAST_ACK, LISTEN, CLOSING) has a count within its range;
//! - every timewait socket the snapshot lists, TIME_WAIT or FIN_WAIT2, was listed by the
//!   previous snapshot or handed over since, by its addresses. Fewer is no disagreement: a
//!   timewait socket ends unseen, by its timer or earlier (a reset, a SYN, a reuse). This is
//!   the TIME_WAIT row of a check; it counts every timewait socket, FIN_WAIT2 ones included.
//!
//! A state outside its range **differs by** the distance to the range: negative when the
//! snapshot has more than the stream allows (a transition into it was missed), positive when
//! fewer. The check is not made (**unchecked**) when a window holds more than
//! [`MAX_WINDOW_STEPS`] transitions.

use std::collections::{HashSet, VecDeque};

use crate::{
    census::{
        close_wait::{Tuple, tuple},
        counts::{Counts, SHOWN},
        reconcile::{self, Dump, Listed, Places, Step},
        timewait_sockets::{self, Listing, Timewaits},
    },
    core::{
        event::Transition,
        state::{Side, TcpState},
    },
    os::diag::SocketEntry,
};

/// States whose counts come from snapshots only (see the module documentation).
pub const SNAPSHOT_ONLY: [TcpState; 2] = [TcpState::SynRecv, TcpState::Close];

/// Transitions kept for one window's check, at most: a window past it is not checked.
pub const MAX_WINDOW_STEPS: usize = 1 << 20;

/// True when the stream keeps the state's count of full sockets current.
pub fn streamed(state: TcpState) -> bool {
    !matches!(
        state,
        TcpState::SynRecv | TcpState::NewSynRecv | TcpState::TimeWait | TcpState::Close
    )
}

/// A snapshot split into the full sockets the stream follows, the timewait sockets, and what
/// only snapshots show.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Split {
    pub streamed: Counts,
    /// The full sockets counted in `streamed`, by their addresses.
    pub places: Places,
    pub timewait: Listing,
    pub snapshot_only: Counts,
}

impl Split {
    pub fn of(sockets: &[SocketEntry]) -> Self {
        let mut split = Self {
            timewait: timewait_sockets::listing(sockets),
            ..Self::default()
        };
        for socket in sockets.iter().filter(|s| !timewait_sockets::is_timewait(s)) {
            if streamed(socket.state) {
                split.streamed.add(socket.state);
                if let Some(i) = index(socket.state) {
                    let identity = reconcile::identity(&tuple(socket.local, socket.remote));
                    reconcile::place(&mut split.places, identity, i as u8);
                }
            } else {
                split.snapshot_only.add(socket.state);
            }
        }
        split
    }
}

fn index(state: TcpState) -> Option<usize> {
    SHOWN.iter().position(|s| *s == state)
}

/// Signed changes per shown state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Delta([i64; SHOWN.len()]);

impl Delta {
    fn apply(&mut self, step: &Step) {
        if let Some(i) = step.from {
            self.0[usize::from(i)] -= 1;
        }
        if let Some(i) = step.to {
            self.0[usize::from(i)] += 1;
        }
    }

    fn get(&self, state: TcpState) -> i64 {
        index(state).map_or(0, |i| self.0[i])
    }
}

/// One state of a check: the range the stream allows against what the snapshot found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateCheck {
    pub state: TcpState,
    pub snapshot: u64,
    /// The range the stream allows; may be negative when transitions were lost.
    pub min: i64,
    pub max: i64,
    /// Sockets the snapshot lists that the stream cannot account for (timewait sockets).
    pub unexplained: u64,
}

impl StateCheck {
    /// The count the stream allows nearest to the snapshot's.
    pub fn stream(&self) -> i64 {
        let n = self.snapshot as i64;
        let over = (n - self.max).max(self.unexplained as i64);
        if over > 0 { n - over } else { n.max(self.min) }
    }

    /// Stream minus snapshot: 0 when they agree.
    pub fn difference(&self) -> i64 {
        self.stream() - self.snapshot as i64
    }
}

/// The stream against one snapshot, once every transition before it has arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// Start of the snapshot's dump (kernel monotonic time).
    pub at_ns: u64,
    /// Every state checked, in kernel order; empty when unchecked.
    pub states: Vec<StateCheck>,
    /// Transitions from the start of the previous snapshot's dump to the start of this one's.
    pub transitions: u64,
    /// Transitions that happened while this snapshot was dumped: it may show them or not.
    pub during_snapshot: u64,
    /// Sockets that moved while a snapshot was dumped and could not be looked up in it: their
    /// counts are ranges.
    pub uncertain: u64,
    /// Sockets that moved while a snapshot was dumped, listed in a state the stream never gave
    /// them then.
    pub conflicting: u64,
    /// Sockets that moved while a snapshot was dumped, found in it in a state the stream gave
    /// them then.
    pub resolved: u64,
    /// Transitions that do not start where their socket's previous one ended: one in between
    /// was missed, though the kernel counted no loss.
    pub gaps: u64,
    /// Possible hand-overs to a timewait socket (FIN_WAIT2/CLOSING -> CLOSE) in the window.
    pub handovers: u64,
    /// Transitions the kernel lost over the window (ring buffer full, runs skipped).
    pub lost: u64,
    /// More than [`MAX_WINDOW_STEPS`] transitions: not checked.
    pub unchecked: bool,
}

impl Check {
    /// True when the snapshot agrees with the stream (see the module documentation).
    pub fn agrees(&self) -> bool {
        self.verified() && self.states.iter().all(|s| s.difference() == 0)
    }

    /// True when the stream is known complete over the window: a count within its range then
    /// agrees; else nothing can be said of it.
    pub fn verified(&self) -> bool {
        self.lost == 0 && self.gaps == 0 && !self.unchecked
    }
}

/// The snapshot a window ends with.
#[derive(Debug)]
struct Next {
    dump: Dump,
    counts: Counts,
    places: Places,
    timewait: Listing,
}

/// The transitions between two snapshots: from the start of the previous one's dump (less the
/// margin) to the end of the next one's.
#[derive(Debug)]
struct Window {
    previous: Dump,
    before: [i64; SHOWN.len()],
    previous_places: Places,
    previous_timewait: Listing,
    lost_before: u64,
    next: Option<Next>,
    steps: Vec<Step>,
    handovers: Vec<(u64, Tuple)>,
    /// Transitions not kept past [`MAX_WINDOW_STEPS`].
    dropped: u64,
}

impl Window {
    fn new(previous: Dump, split: &Split, lost_before: u64) -> Self {
        let mut before = [0; SHOWN.len()];
        for (n, (_, count)) in before.iter_mut().zip(split.streamed.iter()) {
            *n = count as i64;
        }
        Self {
            previous,
            before,
            previous_places: split.places.clone(),
            previous_timewait: split.timewait.clone(),
            lost_before,
            next: None,
            steps: Vec::new(),
            handovers: Vec::new(),
            dropped: 0,
        }
    }

    fn spans(&self, ts_ns: u64) -> bool {
        ts_ns >= self.previous.from_ns()
            && self.next.as_ref().is_none_or(|n| ts_ns <= n.dump.end_ns)
    }

    fn push(&mut self, step: Step, handover: Option<Tuple>) {
        if self.steps.len() >= MAX_WINDOW_STEPS {
            self.dropped += 1;
            return;
        }
        self.steps.push(step);
        if let Some(key) = handover {
            self.handovers.push((step.ts_ns, key));
        }
    }

    fn check(
        mut self,
        counted: impl Fn(TcpState) -> bool,
        timewait_checked: bool,
        lost: u64,
    ) -> Check {
        let next = self.next.take().expect("a window is checked once closed");
        let transitions = self
            .steps
            .iter()
            .filter(|s| (self.previous.start_ns..next.dump.start_ns).contains(&s.ts_ns))
            .count() as u64
            + self.dropped;
        let during_snapshot = self
            .steps
            .iter()
            .filter(|s| next.dump.overlaps(s.ts_ns))
            .count() as u64;
        let handovers: HashSet<Tuple> = self.handovers.iter().map(|(_, key)| *key).collect();
        let mut check = Check {
            at_ns: next.dump.start_ns,
            states: Vec::new(),
            transitions,
            during_snapshot,
            uncertain: 0,
            conflicting: 0,
            resolved: 0,
            gaps: 0,
            handovers: handovers.len() as u64,
            lost: lost.saturating_sub(self.lost_before),
            unchecked: self.dropped > 0,
        };
        if check.unchecked {
            return check;
        }
        let bounds = reconcile::bounds(
            &self.before,
            Listed {
                dump: self.previous,
                places: &self.previous_places,
            },
            Listed {
                dump: next.dump,
                places: &next.places,
            },
            &mut self.steps,
        );
        check.uncertain = bounds.uncertain;
        check.conflicting = bounds.conflicting;
        check.resolved = bounds.resolved;
        check.gaps = bounds.gaps;
        for (i, state) in SHOWN.iter().enumerate() {
            if counted(*state) {
                check.states.push(StateCheck {
                    state: *state,
                    snapshot: next.counts.get(*state),
                    min: bounds.min[i],
                    max: bounds.max[i],
                    unexplained: 0,
                });
            } else if *state == TcpState::TimeWait && timewait_checked {
                let tw =
                    timewait_sockets::check(&self.previous_timewait, &handovers, &next.timewait);
                check.states.push(StateCheck {
                    state: *state,
                    snapshot: tw.listed,
                    min: 0,
                    max: tw.possible as i64,
                    unexplained: tw.unexplained,
                });
            }
        }
        check
    }
}

/// The last snapshot: the base of the live counts.
#[derive(Debug)]
struct Base {
    dump: Dump,
    streamed: Counts,
    snapshot_only: Counts,
}

/// The live counts (the last snapshot plus the transitions since), and the windows between
/// snapshots waiting for their check.
#[derive(Debug, Default)]
pub struct LiveCensus {
    base: Option<Base>,
    since: Delta,
    transitions_since: u64,
    timewaits: Timewaits,
    /// The window after the last snapshot.
    open: Option<Window>,
    /// Windows closed by a snapshot, waiting for their last transitions.
    pending: VecDeque<Window>,
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

    /// Counted from the stream: followed, and shown.
    fn counted(&self, state: TcpState) -> bool {
        streamed(state) && self.is_shown(state)
    }

    /// Timewait sockets are checked when both of their sub-states are shown: one listed in
    /// FIN_WAIT2 by a snapshot may be in TIME_WAIT by the next.
    fn timewait_checked(&self) -> bool {
        self.is_shown(TcpState::TimeWait) && self.is_shown(TcpState::FinWait2)
    }

    fn step(&self, t: &Transition) -> Step {
        // LISTEN -> SYN_RECV is a child socket's birth: the listener stays.
        let birth = Side::of_birth(t.from, t.to).is_some();
        let slot = |state: TcpState| {
            self.counted(state)
                .then(|| index(state).map(|i| i as u8))
                .flatten()
        };
        Step {
            sk: t.sk,
            ts_ns: t.ts_ns,
            identity: reconcile::identity(&timewait_sockets::transition_tuple(t)),
            from: if birth { None } else { slot(t.from) },
            to: slot(t.to),
            birth,
        }
    }

    /// A new snapshot, dumped between `start_ns` and `end_ns`; `lost` is the kernel's count of
    /// lost transitions so far. From now on, the counts are this snapshot plus the transitions
    /// after `start_ns`; the window it closes waits for its check in [`Self::settle`].
    pub fn rebase(&mut self, split: Split, start_ns: u64, end_ns: u64, lost: u64) {
        let dump = Dump { start_ns, end_ns };
        let mut open = Window::new(dump, &split, lost);
        self.timewaits
            .snapshot(&split.timewait, start_ns, dump.from_ns());
        if let Some(mut closed) = self.open.take() {
            // Transitions already here that the new window spans too (it starts before the
            // dump by the margin).
            open.steps
                .extend(closed.steps.iter().filter(|s| s.ts_ns >= dump.from_ns()));
            open.handovers.extend(
                closed
                    .handovers
                    .iter()
                    .filter(|(ts, _)| *ts >= dump.from_ns()),
            );
            closed.next = Some(Next {
                dump,
                counts: split.streamed,
                places: split.places,
                timewait: split.timewait,
            });
            self.pending.push_back(closed);
        }
        self.since = Delta::default();
        self.transitions_since = 0;
        for step in open.steps.iter().filter(|s| s.ts_ns >= start_ns) {
            self.since.apply(step);
            self.transitions_since += 1;
        }
        self.open = Some(open);
        self.base = Some(Base {
            dump,
            streamed: split.streamed,
            snapshot_only: split.snapshot_only,
        });
    }

    /// One transition of the stream, in this namespace and selection. Transitions arrive
    /// late (the ring buffer is drained every few tens of milliseconds, a transition with a
    /// zero port waits for its socket's next one), so each goes to every window its time falls
    /// in.
    pub fn apply(&mut self, t: &Transition) {
        let Some(base) = &self.base else {
            return;
        };
        let (base_start, base_from) = (base.dump.start_ns, base.dump.from_ns());
        let step = self.step(t);
        let handover =
            timewait_sockets::is_handover(t).then(|| timewait_sockets::transition_tuple(t));
        let mut placed = false;
        for window in self.pending.iter_mut().chain(self.open.iter_mut()) {
            if window.spans(t.ts_ns) {
                window.push(step, handover);
                placed = true;
            }
        }
        if !placed {
            self.late += 1;
        }
        if t.ts_ns >= base_start {
            self.since.apply(&step);
            self.transitions_since += 1;
        }
        if t.ts_ns >= base_from {
            self.timewaits.apply(t);
        }
    }

    /// The checks of the snapshots whose dump ended at least `settle_ns` before `now_ns`: by
    /// then every transition before them has arrived. `lost` is the kernel's count so far.
    pub fn settle(&mut self, now_ns: u64, settle_ns: u64, lost: u64) -> Vec<Check> {
        let mut checks = Vec::new();
        while let Some(window) = self.pending.front() {
            let end_ns = window.next.as_ref().map_or(u64::MAX, |n| n.dump.end_ns);
            if end_ns.saturating_add(settle_ns) > now_ns {
                break;
            }
            let window = self.pending.pop_front().expect("just seen");
            let timewait_checked = self.timewait_checked();
            checks.push(window.check(|s| self.counted(s), timewait_checked, lost));
        }
        checks
    }

    /// The counts at `now_ns`: the followed states from the last snapshot and the transitions
    /// since, timewait sockets from the last snapshot and the hand-overs since less those past
    /// their lifetime, the others as the last snapshot found them.
    pub fn counts(&self, now_ns: u64) -> Counts {
        let Some(base) = &self.base else {
            return Counts::default();
        };
        let mut counts = base.snapshot_only;
        for state in SHOWN.into_iter().filter(|s| self.counted(*s)) {
            let n = base.streamed.get(state) as i64 + self.since.get(state);
            counts.add_n(state, n.max(0) as u64);
        }
        let (time_wait, fin_wait2) = self.timewaits.counts(now_ns);
        if self.is_shown(TcpState::TimeWait) {
            counts.add_n(TcpState::TimeWait, time_wait);
        }
        if self.is_shown(TcpState::FinWait2) {
            counts.add_n(TcpState::FinWait2, fin_wait2);
        }
        counts
    }

    /// Transitions applied since the last snapshot.
    pub fn transitions_since(&self) -> u64 {
        self.transitions_since
    }

    /// Start of the last snapshot's dump.
    pub fn base_ns(&self) -> u64 {
        self.base.as_ref().map_or(0, |b| b.dump.start_ns)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    use super::*;
    use crate::{
        census::{
            close_wait::{CloseWaitAges, Since},
            tests::sock,
            timewait_sockets::TIMEWAIT_LEN_NS,
        },
        core::event::Family,
        os::diag::Timer,
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
        (s.stream(), s.snapshot)
    }

    #[test]
    fn request_sockets_are_snapshot_only_and_timewait_sockets_apart() {
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
        assert_eq!(nonzero(&split.snapshot_only), [(SynRecv, 1), (Close, 1)]);
        let mut timewait: Vec<TcpState> = split.timewait.values().map(|l| l.state).collect();
        timewait.sort_by_key(|s| *s as u8);
        assert_eq!(timewait, [FinWait2, TimeWait]);
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
        let counts = live.counts(11 * S + 8);
        assert_eq!(counts.get(Established), 2);
        assert_eq!(counts.get(CloseWait), 1);
        assert_eq!(counts.get(Listen), 1);
        assert_eq!(counts.get(FinWait2), 0);
        assert_eq!(counts.get(Close), 0);
        // Handed over to a timewait socket: there for 60 s, unseen.
        assert_eq!(counts.get(TimeWait), 1);
        assert_eq!(counts.total(), 5);
        assert_eq!(live.counts(11 * S + 7 + TIMEWAIT_LEN_NS).get(TimeWait), 0);

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
        // The timewait socket the snapshot lists is the one handed over.
        assert_eq!(check_of(check, TimeWait), (1, 1));
        assert_eq!(check.handovers, 1);
        assert!(
            check
                .states
                .iter()
                .all(|s| streamed(s.state) || s.state == TimeWait)
        );
        assert_eq!(live.counts(12 * S).get(TimeWait), 1);
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
        assert_eq!(live.counts(12 * S + 10).get(CloseWait), 1);
        assert_eq!(live.counts(12 * S + 10).get(LastAck), 1);
        let check = live.settle(13 * S, S / 2, 5).remove(0);
        assert!(check.agrees(), "{check:#?}");
        assert_eq!(check.transitions, 2);
        // Both near the dump: the one stamped just before it may have been stored after.
        // Neither can be looked up (these have no local address in the snapshot's terms).
        assert_eq!(check.during_snapshot, 2);
        assert_eq!(check.resolved + check.uncertain, 2);

        // A lost transition: the check says by how much, and the loss.
        live.rebase(
            Split::of(&sockets(&[(LastAck, 1), (Established, 3)])),
            14 * S,
            14 * S + 10,
            6,
        );
        let check = live.settle(15 * S, S / 2, 6).remove(0);
        assert!(!check.agrees());
        assert!(!check.verified());
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
        assert_eq!(live.counts(2 * S).get(CloseWait), 2);
        assert_eq!(live.counts(2 * S).total(), 2);
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
        assert_eq!(live.counts(2 * S).total(), 0);
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

    /// A storm on a simulated kernel: each connection's ten transitions within 6 ms, one
    /// every 10 ms, and snapshots that read each socket once at its own moment of the dump.
    struct Storm {
        /// What the kernel did.
        transitions: Vec<Transition>,
        /// Transitions the stream misses: `(sk, from, to)`.
        missed: Vec<(u64, TcpState, TcpState)>,
    }

    const MS: u64 = 1_000_000;

    impl Storm {
        fn new(connections: u64, from_ns: u64) -> Self {
            use TcpState::*;
            let mut transitions = vec![tr(from_ns - S, Close, Listen, 80, 0)];
            for i in 0..connections {
                let t0 = from_ns + i * 10 * MS;
                let port = 30000 + i as u16;
                let client = |ts, from, to| Transition {
                    sk: 1000 + i,
                    ..tr(ts, from, to, port, 80)
                };
                let server = |ts, from, to| Transition {
                    sk: 5000 + i,
                    ..tr(ts, from, to, 80, port)
                };
                transitions.extend([
                    client(t0, Close, SynSent),
                    server(t0 + MS, Listen, SynRecv),
                    server(t0 + MS + 1, SynRecv, Established),
                    client(t0 + MS + 2, SynSent, Established),
                    client(t0 + 3 * MS, Established, FinWait1),
                    server(t0 + 3 * MS + 1, Established, CloseWait),
                    client(t0 + 3 * MS + 2, FinWait1, FinWait2),
                    server(t0 + 4 * MS, CloseWait, LastAck),
                    server(t0 + 5 * MS, LastAck, Close),
                    // The server's FIN: the client hands over to a timewait socket.
                    client(t0 + 6 * MS, FinWait2, Close),
                ]);
            }
            Self {
                transitions,
                missed: Vec::new(),
            }
        }

        fn streamed(&self) -> impl Iterator<Item = &Transition> {
            self.transitions
                .iter()
                .filter(|t| !self.missed.contains(&(t.sk, t.from, t.to)))
        }

        /// What a dump over `[start, end]` lists: each socket as it was when the dump read
        /// it, at a moment of its own; timewait sockets from their hand-over on.
        fn dump(&self, start: u64, end: u64) -> Vec<SocketEntry> {
            let mut sockets = Vec::new();
            let mut sks: Vec<u64> = self.transitions.iter().map(|t| t.sk).collect();
            sks.sort_unstable();
            sks.dedup();
            for sk in sks {
                let read_at = start + (sk * 7919) % (end - start);
                let Some(last) = self
                    .transitions
                    .iter()
                    .rfind(|t| t.sk == sk && t.ts_ns <= read_at)
                else {
                    continue;
                };
                let local = SocketAddr::new(last.laddr, last.lport);
                let remote = SocketAddr::new(last.raddr, last.rport);
                if last.to != TcpState::Close {
                    sockets.push(sock(last.to, &local.to_string(), &remote.to_string(), 1));
                } else if timewait_sockets::is_handover(last) {
                    let mut tw = sock(
                        TcpState::TimeWait,
                        &local.to_string(),
                        &remote.to_string(),
                        0,
                    );
                    tw.timer = Timer::TimeWait;
                    tw.expires_ms = ((last.ts_ns + TIMEWAIT_LEN_NS - read_at) / MS) as u32;
                    sockets.push(tw);
                }
            }
            sockets
        }

        /// Two snapshots over the storm, every transition streamed (in shuffled order, as
        /// they come from several CPUs), and the check of the second.
        fn check(&self, dumps: [(u64, u64); 2]) -> Check {
            let mut live = LiveCensus::new();
            let [(s0, e0), (s1, e1)] = dumps;
            live.rebase(Split::of(&self.dump(s0, e0)), s0, e0, 0);
            let mut order: Vec<&Transition> =
                self.streamed().filter(|t| t.ts_ns >= s0 - S).collect();
            order.sort_by_key(|t| (t.sk * 31 + t.ts_ns / MS) % 97);
            let (before, after): (Vec<_>, Vec<_>) = order.into_iter().partition(|t| t.ts_ns < s1);
            for t in before {
                live.apply(t);
            }
            live.rebase(Split::of(&self.dump(s1, e1)), s1, e1, 0);
            for t in after {
                live.apply(t);
            }
            let mut checks = live.settle(e1 + S, S / 2, 0);
            assert_eq!(checks.len(), 1);
            checks.remove(0)
        }
    }

    /// Snapshots of 50 ms while connections come and go every 10 ms: a few sockets move during
    /// each dump.
    const STORM_DUMPS: [(u64, u64); 2] = [
        (10 * S + 3 * MS, 10 * S + 53 * MS),
        (12 * S + 7 * MS, 12 * S + 57 * MS),
    ];

    #[test]
    fn a_storm_that_moves_sockets_during_both_dumps_agrees() {
        let storm = Storm::new(250, 10 * S);
        let check = storm.check(STORM_DUMPS);
        assert!(check.agrees(), "{check:#?}");
        assert!(check.resolved >= 10, "{check:#?}");
        assert_eq!((check.uncertain, check.conflicting, check.gaps), (0, 0, 0));
        assert!(check.during_snapshot >= 20, "{check:#?}");
        let (stream, listed) = check_of(&check, TcpState::TimeWait);
        assert!(listed > 150, "{check:#?}");
        assert_eq!(stream, listed as i64);
        // The former check, the previous snapshot plus the transitions since its start against
        // the next one, does not.
        let sloppy = storm.sloppy(STORM_DUMPS);
        assert!(sloppy != 0, "{sloppy}");
    }

    impl Storm {
        /// The sum of |differences| of the check that ignored the dumps' duration.
        fn sloppy(&self, dumps: [(u64, u64); 2]) -> i64 {
            let [(s0, e0), (s1, e1)] = dumps;
            let first = Split::of(&self.dump(s0, e0));
            let second = Split::of(&self.dump(s1, e1));
            let mut delta = Delta::default();
            let live = LiveCensus::new();
            for t in self
                .transitions
                .iter()
                .filter(|t| (s0..s1).contains(&t.ts_ns))
            {
                delta.apply(&live.step(t));
            }
            SHOWN
                .iter()
                .filter(|s| streamed(**s))
                .map(|s| {
                    (first.streamed.get(*s) as i64 + delta.get(*s) - second.streamed.get(*s) as i64)
                        .abs()
                })
                .sum()
        }
    }

    #[test]
    fn a_missing_transition_shows_though_the_kernel_lost_none() {
        use TcpState::*;
        let differing = |check: &Check| -> Vec<(TcpState, i64)> {
            check
                .states
                .iter()
                .filter(|s| s.difference() != 0)
                .map(|s| (s.state, s.difference()))
                .collect()
        };
        // A connection up since before the first snapshot, closed by its client at 11 s; the
        // stream misses the client's ESTABLISHED -> FIN_WAIT1: it takes the client out of
        // FIN_WAIT1, never entered, and keeps it ESTABLISHED.
        let mut storm = Storm::new(250, 10 * S);
        let client = |ts, from, to| Transition {
            sk: 9000,
            ..tr(ts, from, to, 40000, 80)
        };
        let server = |ts, from, to| Transition {
            sk: 9001,
            ..tr(ts, from, to, 80, 40000)
        };
        storm.transitions.extend([
            client(5 * S, Close, SynSent),
            server(5 * S + 1, Listen, SynRecv),
            server(5 * S + 2, SynRecv, Established),
            client(5 * S + 3, SynSent, Established),
            client(11 * S + 5, Established, FinWait1),
            server(11 * S + 6, Established, CloseWait),
            client(11 * S + 7, FinWait1, FinWait2),
        ]);
        let check = storm.check(STORM_DUMPS);
        assert!(check.agrees(), "{check:#?}");
        storm.missed.push((9000, Established, FinWait1));
        let check = storm.check(STORM_DUMPS);
        assert!(!check.agrees(), "{check:#?}");
        assert_eq!((check.lost, check.gaps), (0, 0));
        assert_eq!(differing(&check), [(Established, 1), (FinWait1, -1)]);

        // A hand-over missed: the client stays in FIN_WAIT2, its timewait socket unexplained.
        let mut storm = Storm::new(250, 10 * S);
        storm.missed.push((1100, FinWait2, Close));
        let check = storm.check(STORM_DUMPS);
        assert!(!check.agrees(), "{check:#?}");
        assert_eq!(differing(&check), [(FinWait2, 1), (TimeWait, -1)]);

        // Missed inside a connection that came and went between the snapshots: the counts
        // cannot tell, the socket's transitions skip a state.
        let mut storm = Storm::new(250, 10 * S);
        storm.missed.push((1100, Established, FinWait1));
        let check = storm.check(STORM_DUMPS);
        assert!(differing(&check).is_empty(), "{check:#?}");
        assert_eq!(check.gaps, 1);
        assert!(!check.verified());
        assert!(!check.agrees());
    }

    #[test]
    fn with_transitions_lost_a_check_is_never_an_agreement() {
        let storm = Storm::new(50, 10 * S);
        let mut live = LiveCensus::new();
        let [(s0, e0), (s1, e1)] = STORM_DUMPS;
        live.rebase(Split::of(&storm.dump(s0, e0)), s0, e0, 3);
        for t in storm.streamed() {
            live.apply(t);
        }
        live.rebase(Split::of(&storm.dump(s1, e1)), s1, e1, 4);
        let check = live.settle(e1 + S, S / 2, 4).remove(0);
        assert!(
            check.states.iter().all(|s| s.difference() == 0),
            "{check:#?}"
        );
        assert_eq!(check.lost, 1);
        assert!(!check.verified());
        assert!(!check.agrees());
    }
}
