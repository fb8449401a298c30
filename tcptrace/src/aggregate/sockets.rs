//! Per-socket state, bounded: an entry is dropped when its socket closes, and past the cap the
//! oldest entry (by first sight) is evicted and counted.

use std::{
    collections::{HashMap, VecDeque},
    hash::{BuildHasherDefault, Hasher},
};

use super::{causes::SignalMemo, paths::Side, signatures::PathKey};
use crate::core::state::TcpState;

/// Default cap on tracked sockets.
pub const DEFAULT_MAX_SOCKETS: usize = 1_000_000;

/// A multiplicative hash for `u64` keys. Socket addresses come from the kernel, not from an
/// adversary, so SipHash's flood resistance buys nothing and costs a third of the hot path.
#[derive(Default, Clone, Copy)]
pub struct U64Hasher(u64);

impl Hasher for U64Hasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // Fold the high half in: slab addresses differ in their middle bits.
        let x = (n ^ (n >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 32);
    }
}

pub type FastHash = BuildHasherDefault<U64Hasher>;

/// What is known of one live socket.
#[derive(Clone, Copy, Debug)]
pub struct Socket {
    /// Order of first sight, for eviction.
    seq: u64,
    /// When the socket was born; `None` when first seen mid-life.
    pub born_ns: Option<u64>,
    pub state: TcpState,
    pub side: Side,
    pub path: PathKey,
    pub signals: SignalMemo,
}

impl Socket {
    pub fn new(born_ns: Option<u64>, state: TcpState, side: Side, path: PathKey) -> Self {
        Self {
            seq: 0,
            born_ns,
            state,
            side,
            path,
            signals: SignalMemo::default(),
        }
    }
}

pub struct Sockets {
    map: HashMap<u64, Socket, FastHash>,
    /// `(sk, seq)` in order of first sight; entries of closed sockets are skipped lazily.
    order: VecDeque<(u64, u64)>,
    next_seq: u64,
    max: usize,
    evicted: u64,
}

impl Sockets {
    pub fn new(max: usize) -> Self {
        Self {
            map: HashMap::default(),
            order: VecDeque::new(),
            next_seq: 0,
            max: max.max(1),
            evicted: 0,
        }
    }

    pub fn get_mut(&mut self, sk: u64) -> Option<&mut Socket> {
        self.map.get_mut(&sk)
    }

    /// Tracks a new socket (replacing any at the same address), evicting the oldest at the cap.
    pub fn insert(&mut self, sk: u64, mut socket: Socket) -> &mut Socket {
        if !self.map.contains_key(&sk) {
            while self.map.len() >= self.max {
                let Some((old_sk, old_seq)) = self.order.pop_front() else {
                    break;
                };
                if self.map.get(&old_sk).is_some_and(|s| s.seq == old_seq) {
                    self.map.remove(&old_sk);
                    self.evicted += 1;
                }
            }
        }
        socket.seq = self.next_seq;
        self.next_seq += 1;
        self.order.push_back((sk, socket.seq));
        // Closed sockets leave stale entries behind a long-lived one at the front; sweep them
        // when they outnumber the live ones, which keeps this amortized O(1).
        if self.order.len() > 2 * self.map.len() + 1024 {
            let map = &self.map;
            self.order
                .retain(|(sk, seq)| sk_is_live(map, *sk, *seq) || *seq == socket.seq);
        }
        let slot = self.map.entry(sk).or_insert(socket);
        *slot = socket;
        slot
    }

    pub fn remove(&mut self, sk: u64) -> Option<Socket> {
        self.map.remove(&sk)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Sockets evicted at the cap so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

fn sk_is_live(map: &HashMap<u64, Socket, FastHash>, sk: u64, seq: u64) -> bool {
    map.get(&sk).is_some_and(|s| s.seq == seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socket() -> Socket {
        Socket::new(
            Some(1),
            TcpState::SynSent,
            Side::Client,
            PathKey::born(TcpState::SynSent),
        )
    }

    #[test]
    fn evicts_the_oldest_at_the_cap() {
        let mut sockets = Sockets::new(2);
        sockets.insert(1, socket());
        sockets.insert(2, socket());
        sockets.insert(3, socket());
        assert_eq!(sockets.len(), 2);
        assert_eq!(sockets.evicted(), 1);
        assert!(sockets.get_mut(1).is_none());
        assert!(sockets.get_mut(2).is_some() && sockets.get_mut(3).is_some());
    }

    #[test]
    fn closed_sockets_are_not_evicted_twice() {
        let mut sockets = Sockets::new(2);
        sockets.insert(1, socket());
        sockets.insert(2, socket());
        sockets.remove(1);
        sockets.insert(3, socket());
        assert_eq!(sockets.evicted(), 0);
        sockets.insert(4, socket());
        assert_eq!(sockets.evicted(), 1);
        assert!(sockets.get_mut(2).is_none());
    }

    #[test]
    fn replacing_an_address_is_not_an_eviction() {
        let mut sockets = Sockets::new(1);
        sockets.insert(1, socket());
        sockets.insert(1, socket());
        assert_eq!(sockets.evicted(), 0);
        assert_eq!(sockets.len(), 1);
        // The stale order entry of the first life does not evict the second.
        sockets.insert(2, socket());
        assert_eq!(sockets.evicted(), 1);
        assert_eq!(sockets.len(), 1);
    }

    #[test]
    fn order_queue_stays_bounded_under_churn() {
        let mut sockets = Sockets::new(10);
        sockets.insert(0, socket()); // long-lived, at the front
        for sk in 1..100_000 {
            sockets.insert(sk, socket());
            sockets.remove(sk);
        }
        assert!(
            sockets.order.len() <= 2 * sockets.len() + 1025,
            "{}",
            sockets.order.len()
        );
        assert!(sockets.get_mut(0).is_some());
        assert_eq!(sockets.evicted(), 0);
    }

    #[test]
    fn hasher_spreads_aligned_addresses() {
        use std::hash::BuildHasher;
        let build = FastHash::default();
        let mut low_bits = std::collections::HashSet::new();
        for i in 0..1024u64 {
            low_bits.insert(build.hash_one(0xffff_8880_0000_0000 + i * 2048) & 0x3ff);
        }
        assert!(low_bits.len() > 500, "{}", low_bits.len());
    }
}
