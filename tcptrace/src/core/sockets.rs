//! The one per-socket table: what each live socket carries from one transition to the next —
//! how and when it was born, when it entered its current state, who owns it — plus whatever
//! the command that consumes the stream keeps per socket (`X`: nothing for `trace`, the path
//! and the signals for `transitions`).
//!
//! The kernel side keeps nothing per socket (a per-socket map cost more than the rest of the
//! probe); userspace sees every transition of a socket, in kernel order, so the time in the old
//! state is the difference of two timestamps taken by the kernel. A birth
//! ([`Side::of_birth`]) starts a socket afresh; its →CLOSE ends it; past `--max-sockets` the
//! oldest is forgotten, and counted.
//!
//! A socket that predates tracing is first seen mid-life, often in softirq, where the kernel
//! side cannot name its owner: the owner the start-up census found for it ([`SocketSeed`],
//! keyed by the socket's cookie) stands in until the socket's own syscalls say otherwise.

use std::collections::{HashMap, VecDeque};

use crate::core::{
    event::{Comm, OwnerKind, Transition},
    hash::FastHash,
    seed::{Holders, SocketSeed},
    state::{Side, TcpState},
};

/// Default bound of the table: a million live sockets.
pub const DEFAULT_MAX_SOCKETS: usize = 1_000_000;

/// What the table knows of one live socket.
#[derive(Clone, Copy, Debug)]
pub struct Entry<X> {
    /// Order of first sight, for eviction.
    seq: u64,
    /// When the socket was born; meaningless when first seen mid-life (`side` is
    /// [`Side::Unknown`]): not an `Option`, which would cost the entry 8 bytes.
    born_ns: u64,
    side: Side,
    entered_ns: u64,
    /// The state its last transition entered.
    state: TcpState,
    /// Its last transition left another state than `state`: transitions were lost between.
    gap: bool,
    pid: Option<u32>,
    comm: Comm,
    owner_kind: OwnerKind,
    /// One of its transitions passed the owner filter (`--pid`, `--comm`): all the later ones
    /// are shown, whoever owns it then.
    selected: bool,
    /// What the consumer keeps for this socket; `X::default()` at first sight.
    pub ext: X,
}

impl<X: Default> Entry<X> {
    fn first_sight(t: &Transition, birth: Option<Side>) -> Self {
        Self {
            seq: 0,
            born_ns: t.ts_ns,
            side: birth.unwrap_or(Side::Unknown),
            entered_ns: t.ts_ns,
            state: t.to,
            gap: false,
            pid: t.pid,
            comm: t.comm,
            owner_kind: t.owner_kind,
            selected: false,
            ext: X::default(),
        }
    }
}

impl<X> Entry<X> {
    /// When the socket was born; `None` when it was first seen mid-life.
    pub fn born_ns(&self) -> Option<u64> {
        (self.side != Side::Unknown).then_some(self.born_ns)
    }

    /// How it was opened ([`Side::Unknown`] when first seen mid-life).
    pub fn side(&self) -> Side {
        self.side
    }

    /// The state its last transition entered.
    pub fn state(&self) -> TcpState {
        self.state
    }

    /// Whether its last transition left a state it was never seen entering.
    pub fn gap(&self) -> bool {
        self.gap
    }

    /// Whether a transition of it passed the owner filter (see [`Self::select`]).
    pub fn selected(&self) -> bool {
        self.selected
    }

    /// Keeps the socket selected until it closes: a birth at its address starts unselected.
    pub fn select(&mut self) {
        self.selected = true;
    }
}

/// Whether the table keeps following a socket after a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Follow {
    Keep,
    /// None of its transitions will be shown (its ports fail the filter): let it go now, since
    /// the kernel's filter drops its →CLOSE.
    Forget,
}

/// Counts of the table, for the outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    pub tracked: u64,
    pub max: u64,
    /// Live sockets forgotten at the bound: their later transitions are first seen again.
    pub forgotten: u64,
    /// Births at the address of a socket whose →CLOSE was never seen (lost, or forgotten by
    /// the filter).
    pub replaced_unclosed: u64,
}

#[derive(Debug)]
pub struct SocketTable<X> {
    map: HashMap<u64, Entry<X>, FastHash>,
    /// Owners of sockets that predate tracing, by cookie, until the socket is first seen.
    seeds: HashMap<u64, Holders, FastHash>,
    /// `(sk, seq)` in order of first sight; entries of closed sockets are skipped lazily.
    order: VecDeque<(u64, u64)>,
    next_seq: u64,
    max: usize,
    forgotten: u64,
    replaced_unclosed: u64,
}

impl<X: Default> Default for SocketTable<X> {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SOCKETS)
    }
}

impl<X: Default> SocketTable<X> {
    pub fn new(max: usize) -> Self {
        Self {
            map: HashMap::default(),
            seeds: HashMap::default(),
            order: VecDeque::new(),
            next_seq: 0,
            max: max.max(1),
            forgotten: 0,
            replaced_unclosed: 0,
        }
    }

    /// Takes the owner the start-up census found for a socket that predates tracing, for its
    /// transitions that the kernel side cannot attribute.
    pub fn seed(&mut self, seed: SocketSeed) {
        if seed.cookie != 0 {
            self.seeds.insert(seed.cookie, seed.holders);
        }
    }

    /// Fills in the time in the old state, the owner when the event lacks it, and whether the
    /// socket was first seen mid-life; hands the transition and the socket's entry to `then`
    /// (also at →CLOSE, before the entry goes); then keeps the socket until its →CLOSE, unless
    /// `then` says to forget it.
    pub fn apply(
        &mut self,
        t: &mut Transition,
        then: impl FnOnce(&Transition, &mut Entry<X>) -> Follow,
    ) {
        let birth = Side::of_birth(t.from, t.to);
        let closes = t.to == TcpState::Close;
        // A seed is taken at the socket's first transition seen, whether it names the owner or
        // the table does from then on. A birth never takes one: cookies are not reused.
        let seed = match birth {
            None if t.cookie != 0 && !self.seeds.is_empty() => self.seeds.remove(&t.cookie),
            _ => None,
        };
        let forget = match self.map.get_mut(&t.sk) {
            Some(entry) if birth.is_none() => {
                // A lost event in between (a full ring buffer) would have the socket leave a
                // state it never entered: its time is unknown then, never the sum of two.
                entry.gap = entry.state != t.from;
                t.time_in_from_ns = (!entry.gap).then(|| t.ts_ns.saturating_sub(entry.entered_ns));
                t.first_seen_midlife = false;
                if entry.pid.is_none() {
                    // Seen before the census asked for its cookie, unattributed since.
                    seeded(t, seed);
                }
                if t.pid.is_some() {
                    // A syscall of the owner: the freshest word on who owns it.
                    entry.pid = t.pid;
                    entry.comm = t.comm;
                    entry.owner_kind = t.owner_kind;
                } else {
                    t.pid = entry.pid;
                    t.comm = entry.comm;
                    t.owner_kind = entry.owner_kind;
                }
                entry.entered_ns = t.ts_ns;
                entry.state = t.to;
                then(t, entry) == Follow::Forget
            }
            Some(entry) => {
                // A birth at a known address: the old socket's close was never seen. The new
                // one starts afresh, and takes the old one's place in the eviction order.
                self.replaced_unclosed += 1;
                t.time_in_from_ns = None;
                t.first_seen_midlife = false;
                let ext = std::mem::take(&mut entry.ext);
                *entry = Entry {
                    seq: self.next_seq,
                    ext,
                    ..Entry::first_sight(t, birth)
                };
                self.order.push_back((t.sk, self.next_seq));
                self.next_seq += 1;
                then(t, entry) == Follow::Forget
            }
            None => {
                t.time_in_from_ns = None;
                t.first_seen_midlife = birth.is_none();
                seeded(t, seed);
                let mut entry = Entry::first_sight(t, birth);
                if closes {
                    // Its last transition: nothing to remember.
                    then(t, &mut entry);
                    return;
                }
                let entry = self.insert(t.sk, entry);
                then(t, entry) == Follow::Forget
            }
        };
        if closes || forget {
            self.map.remove(&t.sk);
        }
    }

    /// Starts following a socket, forgetting the oldest at the bound.
    fn insert(&mut self, sk: u64, mut entry: Entry<X>) -> &mut Entry<X> {
        while self.map.len() >= self.max {
            let Some((old_sk, old_seq)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&old_sk).is_some_and(|e| e.seq == old_seq) {
                self.map.remove(&old_sk);
                self.forgotten += 1;
            }
        }
        entry.seq = self.next_seq;
        self.next_seq += 1;
        self.order.push_back((sk, entry.seq));
        // Closed sockets leave stale entries behind a long-lived one at the front; sweep them
        // when they outnumber the live ones, which keeps this amortized O(1).
        if self.order.len() > 2 * self.map.len() + 1024 {
            let map = &self.map;
            let keep = entry.seq;
            self.order
                .retain(|(sk, seq)| *seq == keep || map.get(sk).is_some_and(|e| e.seq == *seq));
        }
        self.map.entry(sk).insert_entry(entry).into_mut()
    }
}

/// Names the owner of a transition that the kernel side could not attribute after the seed of
/// its socket, if any.
fn seeded(t: &mut Transition, seed: Option<Holders>) {
    if let Some(holders) = seed
        && t.pid.is_none()
    {
        t.pid = Some(holders.pid);
        t.comm = holders.comm;
        t.owner_kind = holders.kind();
    }
}

impl<X> SocketTable<X> {
    /// The entry of a live socket.
    pub fn get_mut(&mut self, sk: u64) -> Option<&mut Entry<X>> {
        self.map.get_mut(&sk)
    }

    /// Sockets alive now, as far as the transitions tell.
    pub fn tracked(&self) -> usize {
        self.map.len()
    }

    /// Seeds not taken yet: sockets of the census not seen since.
    pub fn seeds_waiting(&self) -> usize {
        self.seeds.len()
    }

    pub fn stats(&self) -> TableStats {
        TableStats {
            tracked: self.map.len() as u64,
            max: self.max as u64,
            forgotten: self.forgotten,
            replaced_unclosed: self.replaced_unclosed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transition(sk: u64, ts_ns: u64, from: TcpState, to: TcpState) -> Transition {
        Transition {
            lport: 40000,
            rport: 80,
            ..Transition::fixture(sk, ts_ns, from, to)
        }
    }

    fn owned(mut t: Transition, pid: u32, comm: &str) -> Transition {
        t.pid = Some(pid);
        t.comm = Comm::from_raw(comm.as_bytes());
        t
    }

    fn apply(table: &mut SocketTable<()>, t: &mut Transition) {
        table.apply(t, |_, _| Follow::Keep);
    }

    #[test]
    fn times_and_owners_follow_the_socket_until_it_closes() {
        use TcpState::*;
        let mut table = SocketTable::default();
        let mut steps = [
            owned(transition(1, 100, Close, SynSent), 7, "curl"),
            transition(1, 150, SynSent, Established),
            owned(transition(1, 1_150, Established, FinWait1), 7, "curl"),
            transition(1, 1_200, FinWait1, FinWait2),
            transition(1, 1_210, FinWait2, Close),
        ];
        for step in &mut steps {
            apply(&mut table, step);
        }
        let times: Vec<_> = steps.iter().map(|t| t.time_in_from_ns).collect();
        assert_eq!(times, [None, Some(50), Some(1_000), Some(50), Some(10)]);
        assert!(steps.iter().all(|t| t.pid == Some(7) && t.comm == "curl"));
        assert!(steps.iter().all(|t| !t.first_seen_midlife));
        assert_eq!(table.tracked(), 0);
    }

    #[test]
    fn after_a_lost_transition_the_time_is_unknown_not_summed() {
        use TcpState::*;
        let mut table = SocketTable::default();
        apply(&mut table, &mut transition(5, 100, Close, SynSent));
        // SYN_SENT → ESTABLISHED was lost.
        let mut next = transition(5, 1_000, Established, FinWait1);
        let mut gap = false;
        table.apply(&mut next, |_, entry| {
            gap = entry.gap();
            Follow::Keep
        });
        assert_eq!(next.time_in_from_ns, None);
        assert!(gap);
        let mut after = transition(5, 1_100, FinWait1, FinWait2);
        apply(&mut table, &mut after);
        assert_eq!(after.time_in_from_ns, Some(100));
    }

    #[test]
    fn a_socket_first_seen_mid_life_has_no_time_and_no_owner_yet() {
        use TcpState::*;
        let mut table = SocketTable::default();
        let mut first = transition(2, 100, Established, CloseWait);
        let mut side = None;
        table.apply(&mut first, |_, entry| {
            side = Some((entry.side(), entry.born_ns()));
            Follow::Keep
        });
        assert!(first.first_seen_midlife);
        assert_eq!((first.time_in_from_ns, first.pid), (None, None));
        assert_eq!(side, Some((Side::Unknown, None)));
        // Its owner's close names it from then on.
        let mut close = owned(transition(2, 400, CloseWait, LastAck), 9, "nginx");
        apply(&mut table, &mut close);
        assert_eq!(close.time_in_from_ns, Some(300));
        assert!(!close.first_seen_midlife);
        let mut last = transition(2, 450, LastAck, Close);
        apply(&mut table, &mut last);
        assert_eq!((last.pid, last.time_in_from_ns), (Some(9), Some(50)));
        // Closing a socket never seen before tracks nothing.
        apply(&mut table, &mut transition(3, 500, FinWait2, Close));
        assert_eq!(table.tracked(), 0);
    }

    fn seed(table: &mut SocketTable<()>, cookie: u64, pid: u32, comm: &str, count: u32) {
        table.seed(SocketSeed {
            cookie,
            holders: Holders {
                pid,
                comm: comm.into(),
                count,
            },
        });
    }

    fn with_cookie(mut t: Transition, cookie: u64) -> Transition {
        t.cookie = cookie;
        t
    }

    #[test]
    fn a_socket_that_predates_tracing_takes_its_census_owner_until_its_own_syscalls() {
        use TcpState::*;
        let mut table = SocketTable::default();
        seed(&mut table, 77, 9, "python3", 1);
        seed(&mut table, 78, 12, "nginx", 3);
        // The peer's FIN, in softirq: the census's owner.
        let mut fin = with_cookie(transition(2, 100, Established, CloseWait), 77);
        apply(&mut table, &mut fin);
        assert_eq!((fin.pid, fin.comm.as_str()), (Some(9), "python3"));
        assert_eq!(fin.owner_kind, OwnerKind::Process);
        assert!(fin.first_seen_midlife);
        assert_eq!(table.seeds_waiting(), 1);
        // Its close, by a process that got it since: that one from then on.
        let mut close = owned(
            with_cookie(transition(2, 200, CloseWait, LastAck), 77),
            10,
            "child",
        );
        apply(&mut table, &mut close);
        let mut last = with_cookie(transition(2, 210, LastAck, Close), 77);
        apply(&mut table, &mut last);
        assert_eq!((last.pid, last.time_in_from_ns), (Some(10), Some(10)));
        // Several holders are marked; an unknown cookie or none names nobody.
        let mut shared = with_cookie(transition(3, 300, FinWait1, FinWait2), 78);
        apply(&mut table, &mut shared);
        assert_eq!(
            (shared.pid, shared.owner_kind),
            (Some(12), OwnerKind::Holders(3))
        );
        let mut stranger = with_cookie(transition(4, 300, Established, CloseWait), 79);
        apply(&mut table, &mut stranger);
        let mut uncookied = transition(5, 300, Established, CloseWait);
        apply(&mut table, &mut uncookied);
        assert_eq!((stranger.pid, uncookied.pid), (None, None));
        assert_eq!(table.seeds_waiting(), 0);
    }

    #[test]
    fn a_seed_names_a_socket_seen_before_the_census_and_never_a_birth() {
        use TcpState::*;
        let mut table = SocketTable::default();
        // Seen between the probe's attach and the census: no cookie yet, no owner.
        apply(&mut table, &mut transition(2, 100, Established, CloseWait));
        seed(&mut table, 77, 9, "python3", 1);
        let mut later = with_cookie(transition(2, 400, CloseWait, LastAck), 77);
        apply(&mut table, &mut later);
        assert_eq!((later.pid, later.time_in_from_ns), (Some(9), Some(300)));
        // A birth with a cookie (asked for by something else) leaves the seed alone.
        seed(&mut table, 80, 9, "python3", 1);
        let mut born = with_cookie(transition(6, 500, Listen, SynRecv), 80);
        apply(&mut table, &mut born);
        assert_eq!(born.pid, None);
        assert_eq!(table.seeds_waiting(), 1);
    }

    #[test]
    fn an_entry_stays_within_a_cache_line() {
        assert!(size_of::<Entry<()>>() <= 64, "{}", size_of::<Entry<()>>());
    }

    #[test]
    fn a_birth_at_a_known_address_starts_afresh() {
        use TcpState::*;
        let mut table = SocketTable::default();
        apply(
            &mut table,
            &mut owned(transition(4, 100, Close, SynSent), 7, "old"),
        );
        // The connect failed; the same socket connects again.
        apply(&mut table, &mut transition(4, 200, SynSent, Close));
        let mut again = owned(transition(4, 300, Close, SynSent), 8, "new");
        apply(&mut table, &mut again);
        assert_eq!(again.time_in_from_ns, None);
        let mut child = transition(4, 900, Listen, SynRecv);
        let mut seen = None;
        table.apply(&mut child, |_, entry| {
            seen = Some((entry.side(), entry.born_ns()));
            Follow::Keep
        });
        assert_eq!((child.time_in_from_ns, child.pid), (None, None));
        assert!(!child.first_seen_midlife);
        assert_eq!(seen, Some((Side::Server, Some(900))));
        // The connect at 300 never closed: its address was taken by the child.
        assert_eq!(table.stats().replaced_unclosed, 1);
    }

    #[test]
    fn a_forgotten_socket_leaves_and_a_newer_one_at_its_address_is_followed() {
        use TcpState::*;
        let mut table = SocketTable::default();
        table.apply(&mut transition(6, 100, Close, SynSent), |_, _| {
            Follow::Forget
        });
        assert_eq!(table.tracked(), 0);
        apply(&mut table, &mut transition(6, 200, Close, SynSent));
        apply(&mut table, &mut transition(6, 300, SynSent, Close));
        apply(&mut table, &mut transition(6, 400, Close, SynSent));
        assert_eq!(table.tracked(), 1);
        let mut next = transition(6, 450, SynSent, Established);
        apply(&mut table, &mut next);
        assert_eq!(next.time_in_from_ns, Some(50));
    }

    #[test]
    fn a_full_table_forgets_the_oldest_socket_and_says_so() {
        use TcpState::*;
        let mut table = SocketTable::new(1);
        apply(&mut table, &mut transition(1, 100, Close, SynSent));
        apply(&mut table, &mut transition(2, 100, Close, SynSent));
        assert_eq!((table.tracked(), table.stats().forgotten), (1, 1));
        // The newest is followed; the forgotten one is first seen again.
        let mut newest = transition(2, 250, SynSent, Established);
        apply(&mut table, &mut newest);
        assert_eq!(newest.time_in_from_ns, Some(150));
        let mut forgotten = transition(1, 300, SynSent, Established);
        apply(&mut table, &mut forgotten);
        assert!(forgotten.first_seen_midlife);
        assert_eq!(table.stats().forgotten, 2);
    }

    fn open(table: &mut SocketTable<()>, sk: u64) {
        apply(
            table,
            &mut transition(sk, sk, TcpState::Close, TcpState::SynSent),
        );
    }

    fn close(table: &mut SocketTable<()>, sk: u64) {
        apply(
            table,
            &mut transition(sk, sk, TcpState::SynSent, TcpState::Close),
        );
    }

    #[test]
    fn evicts_the_oldest_at_the_cap() {
        let mut table = SocketTable::new(2);
        open(&mut table, 1);
        open(&mut table, 2);
        open(&mut table, 3);
        assert_eq!(table.tracked(), 2);
        assert_eq!(table.stats().forgotten, 1);
        assert!(table.get_mut(1).is_none());
        assert!(table.get_mut(2).is_some() && table.get_mut(3).is_some());
    }

    #[test]
    fn closed_sockets_are_not_evicted_twice() {
        let mut table = SocketTable::new(2);
        open(&mut table, 1);
        open(&mut table, 2);
        close(&mut table, 1);
        open(&mut table, 3);
        assert_eq!(table.stats().forgotten, 0);
        open(&mut table, 4);
        assert_eq!(table.stats().forgotten, 1);
        assert!(table.get_mut(2).is_none());
    }

    #[test]
    fn replacing_an_address_is_not_an_eviction() {
        let mut table = SocketTable::new(1);
        open(&mut table, 1);
        open(&mut table, 1);
        assert_eq!(table.stats().forgotten, 0);
        assert_eq!(table.tracked(), 1);
        // The stale order entry of the first life does not evict the second.
        open(&mut table, 2);
        assert_eq!(table.stats().forgotten, 1);
        assert_eq!(table.tracked(), 1);
    }

    #[test]
    fn order_queue_stays_bounded_under_churn() {
        let mut table = SocketTable::new(10);
        open(&mut table, 0); // long-lived, at the front
        for sk in 1..100_000 {
            open(&mut table, sk);
            close(&mut table, sk);
        }
        assert!(
            table.order.len() <= 2 * table.tracked() + 1025,
            "{}",
            table.order.len()
        );
        assert!(table.get_mut(0).is_some());
        assert_eq!(table.stats().forgotten, 0);
    }
}
