//! How long CLOSE_WAIT sockets have been there: timed from the transition that put them there
//! when tracing saw it; otherwise at least as long as the kernel says it has been since the
//! last ACK arrived (`tcp_info`), and at least since the first snapshot that listed them.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, SocketAddr},
};

use crate::{
    core::{event::Transition, state::TcpState},
    os::diag::SocketEntry,
};

/// A socket's addresses, as both the stream and inet_diag give them. IPv4-mapped IPv6
/// addresses are made IPv4 so that both sides agree whatever the socket's family.
pub type Tuple = (IpAddr, u16, IpAddr, u16);

pub fn tuple(local: SocketAddr, remote: SocketAddr) -> Tuple {
    (
        local.ip().to_canonical(),
        local.port(),
        remote.ip().to_canonical(),
        remote.port(),
    )
}

fn transition_tuple(t: &Transition) -> Tuple {
    (
        t.laddr.to_canonical(),
        t.lport,
        t.raddr.to_canonical(),
        t.rport,
    )
}

/// When a socket entered CLOSE_WAIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Since {
    /// Kernel monotonic time.
    pub ns: u64,
    /// False when the socket was first seen in a snapshot, already in CLOSE_WAIT: it entered
    /// at `ns` or earlier (before tracing started, or its transition was lost).
    pub exact: bool,
}

/// Where a CLOSE_WAIT socket's age comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AgeSource {
    /// The stream saw it enter CLOSE_WAIT: exact.
    Stream,
    /// `tcpi_last_ack_recv`: the peer's FIN is an ACK that set it, and any later segment only
    /// moves it closer, so the socket has been in CLOSE_WAIT at least that long (to within a
    /// jiffy, 1 to 10 ms).
    Kernel,
    /// Listed by a first snapshot while tracing, already in CLOSE_WAIT: at least since then.
    FirstSnapshot,
}

impl AgeSource {
    pub fn name(self) -> &'static str {
        match self {
            Self::Stream => "stream",
            Self::Kernel => "kernel",
            Self::FirstSnapshot => "first_snapshot",
        }
    }

    /// True when the age is exact, false when it is a lower bound.
    pub fn exact(self) -> bool {
        self == Self::Stream
    }
}

/// How long a CLOSE_WAIT socket of a snapshot taken at `now_ns` has been in the state, and how
/// that is known: from the stream when it saw the transition (`ages`, when tracing), else the
/// larger of the two lower bounds, the kernel's and the first snapshot's. `None` when neither
/// the stream nor `tcp_info` tells.
pub fn age_of(
    socket: &SocketEntry,
    ages: Option<(&CloseWaitAges, u64)>,
) -> Option<(u64, AgeSource)> {
    let kernel = socket
        .info
        .and_then(|info| info.last_ack_recv_ms)
        .map(|ms| u64::from(ms) * 1_000_000);
    let seen = ages.and_then(|(ages, now_ns)| ages.get(socket).map(|s| (s, now_ns)));
    match (seen, kernel) {
        (Some((since, now_ns)), _) if since.exact => {
            Some((now_ns.saturating_sub(since.ns), AgeSource::Stream))
        }
        (Some((since, now_ns)), kernel) => {
            let first_seen = now_ns.saturating_sub(since.ns);
            Some(match kernel {
                Some(kernel) if kernel >= first_seen => (kernel, AgeSource::Kernel),
                _ => (first_seen, AgeSource::FirstSnapshot),
            })
        }
        (None, kernel) => kernel.map(|kernel| (kernel, AgeSource::Kernel)),
    }
}

/// Sockets followed at once; past it, new CLOSE_WAIT sockets are counted, not timed.
pub const MAX_CLOSE_WAIT: usize = 262_144;

/// When each CLOSE_WAIT socket entered the state, by its addresses.
#[derive(Debug)]
pub struct CloseWaitAges {
    since: HashMap<Tuple, Since>,
    capacity: usize,
    /// CLOSE_WAIT sockets not timed because the map was full.
    pub untimed: u64,
}

impl Default for CloseWaitAges {
    fn default() -> Self {
        Self::with_capacity(MAX_CLOSE_WAIT)
    }
}

impl CloseWaitAges {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            since: HashMap::new(),
            capacity,
            untimed: 0,
        }
    }

    fn insert(&mut self, key: Tuple, since: Since) {
        if self.since.len() >= self.capacity && !self.since.contains_key(&key) {
            self.untimed += 1;
            return;
        }
        self.since.insert(key, since);
    }

    pub fn apply(&mut self, t: &Transition) {
        if t.to == TcpState::CloseWait {
            self.insert(
                transition_tuple(t),
                Since {
                    ns: t.ts_ns,
                    exact: true,
                },
            );
        } else if t.from == TcpState::CloseWait {
            self.since.remove(&transition_tuple(t));
        }
    }

    /// A snapshot whose dump started at `start_ns`: CLOSE_WAIT sockets not known yet are
    /// timed from it (at least), and sockets known from before it that it no longer lists
    /// are forgotten (their leaving transition was lost, or has not arrived yet).
    pub fn snapshot(&mut self, sockets: &[SocketEntry], start_ns: u64) {
        let listed: HashSet<Tuple> = sockets
            .iter()
            .filter(|s| s.state == TcpState::CloseWait)
            .map(|s| tuple(s.local, s.remote))
            .collect();
        self.since
            .retain(|key, since| since.ns >= start_ns || listed.contains(key));
        for key in listed {
            if !self.since.contains_key(&key) {
                self.insert(
                    key,
                    Since {
                        ns: start_ns,
                        exact: false,
                    },
                );
            }
        }
    }

    pub fn get(&self, socket: &SocketEntry) -> Option<Since> {
        self.since.get(&tuple(socket.local, socket.remote)).copied()
    }

    pub fn len(&self) -> usize {
        self.since.len()
    }

    pub fn is_empty(&self) -> bool {
        self.since.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{census::tests::sock, os::diag::parse::TcpInfoCounters};

    const S: u64 = 1_000_000_000;

    fn close_wait(last_ack_recv_ms: Option<u32>, rport: u16) -> SocketEntry {
        SocketEntry {
            info: Some(TcpInfoCounters {
                last_ack_recv_ms,
                ..TcpInfoCounters::default()
            }),
            ..sock(
                TcpState::CloseWait,
                "10.0.0.1:80",
                &format!("10.0.0.9:{rport}"),
                3,
            )
        }
    }

    #[test]
    fn the_stream_is_exact_and_otherwise_the_larger_lower_bound_wins() {
        // Without tracing: the kernel's bound, or nothing.
        assert_eq!(
            age_of(&close_wait(Some(312_000), 1), None),
            Some((312 * S, AgeSource::Kernel))
        );
        assert_eq!(age_of(&close_wait(None, 1), None), None);
        assert_eq!(
            age_of(
                &sock(TcpState::CloseWait, "10.0.0.1:80", "10.0.0.9:1", 3),
                None
            ),
            None
        );

        let mut ages = CloseWaitAges::default();
        let (old, young, seen) = (
            close_wait(Some(90_000), 1),
            close_wait(Some(2_000), 2),
            close_wait(Some(5), 3),
        );
        ages.snapshot(&[old.clone(), young.clone()], 100 * S);
        ages.apply(&Transition {
            laddr: "10.0.0.1".parse().unwrap(),
            lport: 80,
            raddr: "10.0.0.9".parse().unwrap(),
            rport: 3,
            ..Transition::fixture(1, 105 * S, TcpState::Established, TcpState::CloseWait)
        });
        let at = Some((&ages, 110 * S));
        // Older than the first snapshot by the kernel's account.
        assert_eq!(age_of(&old, at), Some((90 * S, AgeSource::Kernel)));
        // The kernel saw an ACK since: the first snapshot's bound is the larger.
        assert_eq!(age_of(&young, at), Some((10 * S, AgeSource::FirstSnapshot)));
        // Seen entering: exact, whatever the kernel's bound.
        assert_eq!(age_of(&seen, at), Some((5 * S, AgeSource::Stream)));
        assert!(AgeSource::Stream.exact() && !AgeSource::Kernel.exact());
    }
}
