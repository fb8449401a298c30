//! How long CLOSE_WAIT sockets have been there: timed from the transition that put them there
//! when tracing saw it, from the first snapshot that listed them otherwise.

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
