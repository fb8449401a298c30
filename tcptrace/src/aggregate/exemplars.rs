//! Example sockets of one transition: the slowest (longest in the from-state) and the most
//! recent, so that an abnormal or slow row answers "which connections?". Bounded: `N` of each
//! per transition, whatever the traffic.

use std::net::IpAddr;

use super::causes::Cause;
use crate::core::event::{Comm, Transition};

/// Exemplars kept of each kind per transition by default.
pub const DEFAULT_EXEMPLARS: usize = 3;
/// The most that `--exemplars` accepts: beyond, a summary is no longer read.
pub const MAX_EXEMPLARS: usize = 100;

/// One socket as it made the transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exemplar {
    /// Kernel time of the transition.
    pub ts_ns: u64,
    /// Kernel address of the socket: matches a cause settled after the close.
    pub sk: u64,
    pub laddr: IpAddr,
    pub lport: u16,
    pub raddr: IpAddr,
    pub rport: u16,
    pub pid: Option<u32>,
    pub comm: Comm,
    pub netns: u32,
    /// `None` when the socket was first seen in the from-state.
    pub time_in_from_ns: Option<u64>,
    /// Abnormal transitions: why.
    pub cause: Option<Cause>,
}

impl Exemplar {
    pub fn of(t: &Transition, cause: Option<Cause>) -> Self {
        Self {
            ts_ns: t.ts_ns,
            sk: t.sk,
            laddr: t.laddr,
            lport: t.lport,
            raddr: t.raddr,
            rport: t.rport,
            pid: t.pid,
            comm: t.comm,
            netns: t.netns,
            time_in_from_ns: t.time_in_from_ns,
            cause,
        }
    }
}

/// What a snapshot shows of a transition's exemplars.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExemplarsSnapshot {
    /// Longest time in the from-state first.
    pub slowest: Vec<Exemplar>,
    /// Newest first.
    pub recent: Vec<Exemplar>,
}

#[derive(Clone, Debug, Default)]
pub struct Exemplars {
    /// Unordered; at most `limit`. The shortest is replaced by a longer one.
    slowest: Vec<Exemplar>,
    /// A ring of at most `limit`; `next` is the oldest once full.
    recent: Vec<Exemplar>,
    next: usize,
}

impl Exemplars {
    pub fn record(&mut self, exemplar: Exemplar, limit: usize) {
        if limit == 0 {
            return;
        }
        if self.recent.len() < limit {
            self.recent.push(exemplar);
        } else {
            self.recent[self.next] = exemplar;
            self.next = (self.next + 1) % limit;
        }
        let Some(time) = exemplar.time_in_from_ns else {
            return;
        };
        if self.slowest.len() < limit {
            self.slowest.push(exemplar);
            return;
        }
        // Strictly longer: among equals the first seen stays, so the choice is repeatable.
        let (shortest, shortest_time) = self
            .slowest
            .iter()
            .enumerate()
            .map(|(i, e)| (i, e.time_in_from_ns.unwrap_or(0)))
            .min_by_key(|(i, time)| (*time, std::cmp::Reverse(*i)))
            .expect("limit > 0");
        if time > shortest_time {
            self.slowest[shortest] = exemplar;
        }
    }

    /// A cause learnt after the transition (a reset sent right after the close).
    pub fn settle(&mut self, sk: u64, ts_ns: u64, cause: Cause) {
        for e in self.slowest.iter_mut().chain(self.recent.iter_mut()) {
            if e.sk == sk && e.ts_ns == ts_ns {
                e.cause = Some(cause);
            }
        }
    }

    pub fn snapshot(&self) -> ExemplarsSnapshot {
        let mut slowest = self.slowest.clone();
        slowest.sort_by_key(|e| (std::cmp::Reverse(e.time_in_from_ns), e.ts_ns));
        let mut recent = self.recent.clone();
        recent.sort_by_key(|e| std::cmp::Reverse(e.ts_ns));
        ExemplarsSnapshot { slowest, recent }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::TcpState;

    fn exemplar(sk: u64, ts_ns: u64, time: Option<u64>) -> Exemplar {
        let mut t = Transition::fixture(sk, ts_ns, TcpState::Established, TcpState::Close);
        t.time_in_from_ns = time;
        t.lport = 80;
        Exemplar::of(&t, None)
    }

    #[test]
    fn keeps_the_slowest_and_the_most_recent_within_the_limit() {
        let mut ex = Exemplars::default();
        for (i, time) in [5, 50, 1, 70, 20, 60].into_iter().enumerate() {
            ex.record(exemplar(i as u64, 100 + i as u64, Some(time)), 3);
        }
        ex.record(exemplar(9, 200, None), 3);
        let snap = ex.snapshot();
        let times: Vec<_> = snap.slowest.iter().map(|e| e.time_in_from_ns).collect();
        assert_eq!(times, [Some(70), Some(60), Some(50)]);
        let recent: Vec<_> = snap.recent.iter().map(|e| e.ts_ns).collect();
        assert_eq!(recent, [200, 105, 104]);
        assert_eq!(ex.slowest.len() + ex.recent.len(), 6, "bounded");
    }

    #[test]
    fn equal_times_keep_the_first_seen() {
        let mut ex = Exemplars::default();
        for i in 0..5 {
            ex.record(exemplar(i, i, Some(10)), 2);
        }
        let sks: Vec<_> = ex.snapshot().slowest.iter().map(|e| e.sk).collect();
        assert_eq!(sks, [0, 1]);
    }

    #[test]
    fn a_late_cause_reaches_the_exemplar_of_that_transition_only() {
        let mut ex = Exemplars::default();
        ex.record(exemplar(1, 10, Some(3)), 3);
        ex.record(exemplar(1, 20, Some(4)), 3);
        ex.settle(1, 20, Cause::ResetSent);
        let snap = ex.snapshot();
        assert_eq!(snap.recent[0].cause, Some(Cause::ResetSent));
        assert_eq!(snap.recent[1].cause, None);
    }

    #[test]
    fn zero_keeps_nothing() {
        let mut ex = Exemplars::default();
        ex.record(exemplar(1, 10, Some(3)), 0);
        assert_eq!(ex.snapshot(), ExemplarsSnapshot::default());
    }
}
