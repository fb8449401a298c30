//! What each socket carries from one transition to the next: when it entered its current state
//! and who owns it. The kernel side keeps nothing per socket (a per-socket map cost more than
//! the rest of the probe); userspace sees every transition of a socket, in kernel order, so the
//! time in the old state is the difference of two timestamps taken by the kernel.
//!
//! Applied to each decoded transition before anything else looks at it.

use std::collections::HashMap;

use crate::{
    aggregate::sockets::FastHash,
    core::{
        event::{Comm, Transition},
        state::TcpState,
    },
};

/// Default bound of the table: a million live sockets, ~120 MB when full.
pub const DEFAULT_MAX_SOCKETS: usize = 1 << 20;

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// When this socket was first seen: tells it from a later socket at the same address.
    first_ns: u64,
    entered_ns: u64,
    /// The state the socket's last transition entered.
    state: TcpState,
    pid: Option<u32>,
    comm: Comm,
}

/// The live sockets seen so far, by kernel address.
#[derive(Debug)]
pub struct Lifecycles {
    sockets: HashMap<u64, Entry, FastHash>,
    max_sockets: usize,
    untracked: u64,
}

impl Lifecycles {
    pub fn new(max_sockets: usize) -> Self {
        Self {
            sockets: HashMap::default(),
            max_sockets,
            untracked: 0,
        }
    }

    /// Fills in the time in the old state, the owner when the event lacks it, and whether the
    /// socket was first seen mid-life; then remembers the socket until its →CLOSE.
    pub fn apply(&mut self, t: &mut Transition) {
        // A birth starts afresh: a closed socket may connect or listen again.
        let born =
            t.from == TcpState::Close || (t.from == TcpState::Listen && t.to == TcpState::SynRecv);
        let known = if born {
            None
        } else {
            self.sockets.get_mut(&t.sk)
        };
        match known {
            Some(entry) => {
                // A lost event in between (a full ring buffer) would have the socket leave a
                // state it never entered: its time is unknown then, never the sum of two.
                t.time_in_from_ns =
                    (entry.state == t.from).then(|| t.ts_ns.saturating_sub(entry.entered_ns));
                t.first_seen_midlife = false;
                if t.pid.is_some() {
                    // A syscall of the owner: the freshest word on who owns it.
                    entry.pid = t.pid;
                    entry.comm = t.comm;
                } else {
                    t.pid = entry.pid;
                    t.comm = entry.comm;
                }
                if t.to == TcpState::Close {
                    self.sockets.remove(&t.sk);
                } else {
                    entry.entered_ns = t.ts_ns;
                    entry.state = t.to;
                }
            }
            None => {
                t.time_in_from_ns = None;
                t.first_seen_midlife = !born;
                if t.to == TcpState::Close {
                    self.sockets.remove(&t.sk);
                    return;
                }
                let entry = Entry {
                    first_ns: t.ts_ns,
                    entered_ns: t.ts_ns,
                    state: t.to,
                    pid: t.pid,
                    comm: t.comm,
                };
                if self.sockets.len() >= self.max_sockets && !self.sockets.contains_key(&t.sk) {
                    self.evict_one();
                }
                self.sockets.insert(t.sk, entry);
            }
        }
    }

    /// Makes room by forgetting an arbitrary socket: the table is full of more live sockets
    /// than its bound, or of sockets whose →CLOSE was lost. Either way the victim's next
    /// transition is first seen, without a time; the count says how often.
    fn evict_one(&mut self) {
        if let Some(&victim) = self.sockets.keys().next() {
            self.sockets.remove(&victim);
            self.untracked += 1;
        }
    }

    /// Stops following the socket first seen at `first_ns` (the timestamp of its first
    /// transition), if the address has not been taken by a newer socket since.
    pub fn forget(&mut self, sk: u64, first_ns: u64) {
        if self
            .sockets
            .get(&sk)
            .is_some_and(|entry| entry.first_ns == first_ns)
        {
            self.sockets.remove(&sk);
        }
    }

    /// Sockets alive now, as far as the transitions tell.
    pub fn tracked(&self) -> usize {
        self.sockets.len()
    }

    /// Sockets forgotten because the table was full: their later transitions lack a time in
    /// state and, outside their owner's syscalls, an owner.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }
}

impl Default for Lifecycles {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_SOCKETS)
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

    #[test]
    fn times_and_owners_follow_the_socket_until_it_closes() {
        use TcpState::*;
        let mut lifecycles = Lifecycles::default();
        let mut steps = [
            owned(transition(1, 100, Close, SynSent), 7, "curl"),
            transition(1, 150, SynSent, Established),
            owned(transition(1, 1_150, Established, FinWait1), 7, "curl"),
            transition(1, 1_200, FinWait1, FinWait2),
            transition(1, 1_210, FinWait2, Close),
        ];
        for step in &mut steps {
            lifecycles.apply(step);
        }
        let times: Vec<_> = steps.iter().map(|t| t.time_in_from_ns).collect();
        assert_eq!(times, [None, Some(50), Some(1_000), Some(50), Some(10)]);
        assert!(steps.iter().all(|t| t.pid == Some(7) && t.comm == "curl"));
        assert!(steps.iter().all(|t| !t.first_seen_midlife));
        assert_eq!(lifecycles.tracked(), 0);
    }

    #[test]
    fn after_a_lost_transition_the_time_is_unknown_not_summed() {
        use TcpState::*;
        let mut lifecycles = Lifecycles::default();
        lifecycles.apply(&mut transition(5, 100, Close, SynSent));
        // SYN_SENT → ESTABLISHED was lost.
        let mut next = transition(5, 1_000, Established, FinWait1);
        lifecycles.apply(&mut next);
        assert_eq!(next.time_in_from_ns, None);
        let mut after = transition(5, 1_100, FinWait1, FinWait2);
        lifecycles.apply(&mut after);
        assert_eq!(after.time_in_from_ns, Some(100));
    }

    #[test]
    fn a_socket_first_seen_mid_life_has_no_time_and_no_owner_yet() {
        use TcpState::*;
        let mut lifecycles = Lifecycles::default();
        let mut first = transition(2, 100, Established, CloseWait);
        lifecycles.apply(&mut first);
        assert!(first.first_seen_midlife);
        assert_eq!((first.time_in_from_ns, first.pid), (None, None));
        // Its owner's close names it from then on.
        let mut close = owned(transition(2, 400, CloseWait, LastAck), 9, "nginx");
        lifecycles.apply(&mut close);
        assert_eq!(close.time_in_from_ns, Some(300));
        assert!(!close.first_seen_midlife);
        let mut last = transition(2, 450, LastAck, Close);
        lifecycles.apply(&mut last);
        assert_eq!((last.pid, last.time_in_from_ns), (Some(9), Some(50)));
        // Closing a socket never seen before tracks nothing.
        lifecycles.apply(&mut transition(3, 500, FinWait2, Close));
        assert_eq!(lifecycles.tracked(), 0);
    }

    #[test]
    fn a_birth_at_a_known_address_starts_afresh() {
        use TcpState::*;
        let mut lifecycles = Lifecycles::default();
        lifecycles.apply(&mut owned(transition(4, 100, Close, SynSent), 7, "old"));
        // The connect failed; the same socket connects again.
        lifecycles.apply(&mut transition(4, 200, SynSent, Close));
        let mut again = owned(transition(4, 300, Close, SynSent), 8, "new");
        lifecycles.apply(&mut again);
        assert_eq!(again.time_in_from_ns, None);
        let mut child = transition(4, 900, Listen, SynRecv);
        lifecycles.apply(&mut child);
        assert_eq!((child.time_in_from_ns, child.pid), (None, None));
        assert!(!child.first_seen_midlife);
    }

    #[test]
    fn forgetting_a_socket_spares_a_newer_one_at_its_address() {
        use TcpState::*;
        let mut lifecycles = Lifecycles::default();
        lifecycles.apply(&mut transition(6, 100, Close, SynSent));
        lifecycles.forget(6, 100);
        assert_eq!(lifecycles.tracked(), 0);
        lifecycles.apply(&mut transition(6, 200, Close, SynSent));
        lifecycles.apply(&mut transition(6, 300, SynSent, Close));
        lifecycles.apply(&mut transition(6, 400, Close, SynSent));
        // The first connect's socket is long gone: the newest stays.
        lifecycles.forget(6, 200);
        assert_eq!(lifecycles.tracked(), 1);
    }

    #[test]
    fn a_full_table_forgets_a_socket_and_says_so() {
        use TcpState::*;
        let mut lifecycles = Lifecycles::new(1);
        lifecycles.apply(&mut transition(1, 100, Close, SynSent));
        lifecycles.apply(&mut transition(2, 100, Close, SynSent));
        assert_eq!((lifecycles.tracked(), lifecycles.untracked()), (1, 1));
        // The newest is followed; the forgotten one is first seen again.
        let mut newest = transition(2, 250, SynSent, Established);
        lifecycles.apply(&mut newest);
        assert_eq!(newest.time_in_from_ns, Some(150));
        let mut forgotten = transition(1, 300, SynSent, Established);
        lifecycles.apply(&mut forgotten);
        assert!(forgotten.first_seen_midlife);
        assert_eq!(lifecycles.untracked(), 2);
    }
}
