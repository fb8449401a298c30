//! Timewait sockets between snapshots: those the last snapshot listed, plus those the stream saw
//! handed over since, less those past their lifetime. Pure: snapshots and transitions in, with
//! their times; no clock is read here.
//!
//! A closing socket hands over to a timewait socket in net/ipv4/tcp_minisocks.c, tcp_time_wait:
//! the timewait socket takes the full socket's place in the hash table, then the full socket
//! goes FIN_WAIT2 -> CLOSE or CLOSING -> CLOSE, the only trace the stream has of it. The
//! timewait socket is in TIME_WAIT for TCP_TIMEWAIT_LEN (60 s, a constant of the kernel), or in
//! FIN_WAIT2 (an orphan still waiting for the peer's FIN, tcp_fin_timeout at most, after which
//! the FIN, if it comes, gives it its 60 s of TIME_WAIT). It ends without any transition: by its
//! timer, or earlier when a reset or a new SYN arrives for it, or when a new connection reuses
//! its addresses (`tcp_tw_reuse`). And not every FIN_WAIT2/CLOSING -> CLOSE is a hand-over: a
//! reset or a timeout ends those sockets too, and a full table (`tcp_max_tw_buckets`) refuses
//! the timewait socket.

use std::collections::{HashMap, HashSet};

use crate::{
    census::close_wait::{Tuple, tuple},
    core::{event::Transition, state::TcpState},
    os::diag::{SocketEntry, Timer},
};

/// TCP_TIMEWAIT_LEN (include/net/tcp.h): how long a timewait socket stays in TIME_WAIT.
pub const TIMEWAIT_LEN_NS: u64 = 60_000_000_000;

/// True when the transition may have handed its socket over to a timewait socket.
pub fn is_handover(t: &Transition) -> bool {
    t.to == TcpState::Close && matches!(t.from, TcpState::FinWait2 | TcpState::Closing)
}

/// True when a snapshot entry is a timewait socket: they carry timer 3 whatever their sub-state
/// (net/ipv4/inet_diag.c, inet_twsk_diag_fill); full sockets never do.
pub fn is_timewait(socket: &SocketEntry) -> bool {
    socket.timer == Timer::TimeWait || socket.state == TcpState::TimeWait
}

pub fn transition_tuple(t: &Transition) -> Tuple {
    (
        t.laddr.to_canonical(),
        t.lport,
        t.raddr.to_canonical(),
        t.rport,
    )
}

/// A timewait socket a snapshot listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listed {
    /// TIME_WAIT, or FIN_WAIT2 for an orphan still waiting for the peer's FIN.
    pub state: TcpState,
    /// Until its timer fires.
    pub expires_ms: u32,
}

/// The timewait sockets of one snapshot, by their addresses.
pub type Listing = HashMap<Tuple, Listed>;

pub fn listing(sockets: &[SocketEntry]) -> Listing {
    sockets
        .iter()
        .filter(|s| is_timewait(s))
        .map(|s| {
            let listed = Listed {
                state: s.state,
                expires_ms: s.expires_ms,
            };
            (tuple(s.local, s.remote), listed)
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Expected {
    /// When the stream last knew it: the snapshot's start, or the hand-over.
    since_ns: u64,
    /// When its timer fires, as far as the stream knows.
    ends_ns: u64,
    state: TcpState,
}

/// The timewait sockets the stream expects now, by their addresses.
#[derive(Debug, Default)]
pub struct Timewaits {
    expected: HashMap<Tuple, Expected>,
}

impl Timewaits {
    /// A snapshot whose dump started at `start_ns`: its timewait sockets are the ones expected,
    /// with the hand-overs from `handovers_from_ns` on that it does not list (the dump may have
    /// passed their place before they came).
    pub fn snapshot(&mut self, listing: &Listing, start_ns: u64, handovers_from_ns: u64) {
        self.expected
            .retain(|key, e| e.since_ns >= handovers_from_ns && !listing.contains_key(key));
        for (key, listed) in listing {
            self.expected.insert(
                *key,
                Expected {
                    since_ns: start_ns,
                    // Overdue (0): listed all the same, until its timer runs.
                    ends_ns: start_ns + u64::from(listed.expires_ms.max(1)) * 1_000_000,
                    state: listed.state,
                },
            );
        }
    }

    /// A transition at or after the last snapshot's dump: a hand-over adds its timewait socket;
    /// any later transition at the same addresses is a new socket that took its place.
    pub fn apply(&mut self, t: &Transition) {
        let key = transition_tuple(t);
        if is_handover(t) {
            self.expected.entry(key).or_insert(Expected {
                since_ns: t.ts_ns,
                ends_ns: t.ts_ns + TIMEWAIT_LEN_NS,
                state: TcpState::TimeWait,
            });
        } else if self
            .expected
            .get(&key)
            .is_some_and(|e| t.ts_ns > e.since_ns)
        {
            self.expected.remove(&key);
        }
    }

    /// How many are expected at `now_ns`, in TIME_WAIT and in FIN_WAIT2.
    pub fn counts(&self, now_ns: u64) -> (u64, u64) {
        self.expected
            .values()
            .filter(|e| e.ends_ns > now_ns)
            .fold((0, 0), |(tw, fw2), e| match e.state {
                TcpState::FinWait2 => (tw, fw2 + 1),
                _ => (tw + 1, fw2),
            })
    }
}

/// The check of the timewait sockets of a snapshot against the previous one and the hand-overs
/// the stream saw in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimewaitCheck {
    /// Timewait sockets the new snapshot lists.
    pub listed: u64,
    /// Those the stream allows: the previous snapshot's and the hand-overs'.
    pub possible: u64,
    /// Listed, and neither in the previous snapshot nor handed over: a transition missed.
    pub unexplained: u64,
    pub handovers: u64,
}

pub fn check(previous: &Listing, handovers: &HashSet<Tuple>, next: &Listing) -> TimewaitCheck {
    let possible = previous.len() as u64
        + handovers
            .iter()
            .filter(|k| !previous.contains_key(*k))
            .count() as u64;
    let unexplained = next
        .keys()
        .filter(|k| !previous.contains_key(*k) && !handovers.contains(*k))
        .count() as u64;
    TimewaitCheck {
        listed: next.len() as u64,
        possible,
        unexplained,
        handovers: handovers.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::census::tests::sock;

    const S: u64 = 1_000_000_000;

    fn timewait(state: TcpState, port: u16, expires_ms: u32) -> SocketEntry {
        let mut s = sock(state, &format!("10.0.0.1:{port}"), "10.0.0.9:80", 0);
        s.timer = Timer::TimeWait;
        s.expires_ms = expires_ms;
        s
    }

    fn handover(ts_ns: u64, port: u16) -> Transition {
        Transition {
            laddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            lport: port,
            raddr: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)),
            rport: 80,
            ..Transition::fixture(u64::from(port), ts_ns, TcpState::FinWait2, TcpState::Close)
        }
    }

    #[test]
    fn listed_plus_handed_over_less_expired_and_replaced() {
        let mut tw = Timewaits::default();
        let first = listing(&[
            timewait(TcpState::TimeWait, 1, 30_000),
            timewait(TcpState::FinWait2, 2, 5_000),
        ]);
        tw.snapshot(&first, 10 * S, 10 * S);
        assert_eq!(tw.counts(10 * S), (1, 1));
        tw.apply(&handover(11 * S, 3));
        tw.apply(&handover(11 * S, 4));
        assert_eq!(tw.counts(12 * S), (3, 1));
        // FIN_WAIT2 timer run out; the first one's 30 s later.
        assert_eq!(tw.counts(16 * S), (3, 0));
        assert_eq!(tw.counts(41 * S), (2, 0));
        // A new connection from port 3: its timewait socket was reused.
        let mut reuse = handover(13 * S, 3);
        reuse.from = TcpState::Close;
        reuse.to = TcpState::SynSent;
        tw.apply(&reuse);
        assert_eq!(tw.counts(14 * S), (2, 1));
        // The hand-over's 60 s.
        assert_eq!(tw.counts(11 * S + TIMEWAIT_LEN_NS), (0, 0));

        // The next snapshot lists 1 and 4; a hand-over during its dump may still come.
        tw.apply(&handover(20 * S + 1, 5));
        let second = listing(&[
            timewait(TcpState::TimeWait, 1, 20_000),
            timewait(TcpState::TimeWait, 4, 50_000),
        ]);
        tw.snapshot(&second, 20 * S, 20 * S - 1);
        assert_eq!(tw.counts(20 * S), (3, 0));
    }

    #[test]
    fn a_listed_timewait_socket_must_come_from_the_previous_snapshot_or_a_handover() {
        let previous = listing(&[timewait(TcpState::FinWait2, 1, 5_000)]);
        let handovers: HashSet<Tuple> = [transition_tuple(&handover(S, 2))].into();
        // 1 went on to TIME_WAIT (the FIN came), 2 was handed over, 3 is unaccounted for.
        let next = listing(&[
            timewait(TcpState::TimeWait, 1, 60_000),
            timewait(TcpState::TimeWait, 2, 60_000),
        ]);
        let c = check(&previous, &handovers, &next);
        assert_eq!((c.listed, c.possible, c.unexplained), (2, 2, 0));
        let mut next = next;
        next.extend(listing(&[timewait(TcpState::TimeWait, 3, 60_000)]));
        let c = check(&previous, &handovers, &next);
        assert_eq!((c.listed, c.possible, c.unexplained), (3, 2, 1));
        // Ended early (a reset in TIME_WAIT): fewer is no disagreement.
        let c = check(&previous, &handovers, &Listing::new());
        assert_eq!((c.listed, c.unexplained), (0, 0));
    }
}
