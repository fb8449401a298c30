//! The fates of request sockets and connection attempts per listener (network namespace and
//! local port) and per peer address, from the packets the kernel dropped for them. Bounded:
//! past [`MAX_LISTENERS`] listeners and [`MAX_PEERS`] peers, what comes is counted as "other".

use std::{collections::HashMap, net::IpAddr};

use crate::core::{
    event::{Comm, Fate, PacketDrop},
    hash::FastHash,
};

/// Listeners (namespace, port) told apart; the others are counted together.
pub const MAX_LISTENERS: usize = 4_096;
/// (listener, peer address) pairs told apart, over all listeners; past it a listener's new
/// peers are counted as its other peers.
pub const MAX_PEERS: usize = 16_384;
/// Listeners and peers per listener that a snapshot shows, busiest first.
pub const TOP_LISTENERS: usize = 20;
pub const TOP_PEERS: usize = 3;

/// A count per [`Fate`], indexed by `Fate as usize`.
pub type FateCounts = [u64; Fate::COUNT];

fn total(counts: &FateCounts) -> u64 {
    counts.iter().sum()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct ListenerKey {
    netns: u32,
    port: u16,
}

#[derive(Clone, Debug, Default)]
struct Listener {
    /// The local address of its packets while they all had the same one; `None` once two
    /// differed (a wildcard listener reached at several addresses).
    laddr: Option<IpAddr>,
    mixed: bool,
    counts: FateCounts,
    at_snapshot: FateCounts,
    other_peers: FateCounts,
    pid: Option<u32>,
    comm: Comm,
}

/// One listener's row of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerFates {
    pub netns: u32,
    /// In tcptrace's own namespace (or one the kernel did not report).
    pub own: bool,
    pub port: u16,
    /// `None` when its packets came to several local addresses.
    pub laddr: Option<IpAddr>,
    pub counts: FateCounts,
    pub interval: FateCounts,
    /// The listener's owner when the listener map knew it (not for a closed port).
    pub pid: Option<u32>,
    pub comm: Comm,
    /// The busiest peers, then what the others sent together.
    pub peers: Vec<(IpAddr, FateCounts)>,
    pub other_peers: FateCounts,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FatesSnapshot {
    /// Busiest first.
    pub listeners: Vec<ListenerFates>,
    /// Listeners past [`TOP_LISTENERS`] or [`MAX_LISTENERS`], together.
    pub other_listeners: FateCounts,
    /// Everything seen in tcptrace's own namespace: what its kernel counters count.
    pub own_namespace: FateCounts,
    pub total: FateCounts,
}

#[derive(Debug, Default)]
pub struct Fates {
    listeners: HashMap<ListenerKey, Listener, FastHash>,
    peers: HashMap<(ListenerKey, IpAddr), FateCounts, FastHash>,
    /// Listeners past [`MAX_LISTENERS`].
    untracked: FateCounts,
    own_namespace: FateCounts,
    total: FateCounts,
}

impl Fates {
    /// One dropped packet; `own`: it is in tcptrace's own namespace.
    pub fn record(&mut self, drop: &PacketDrop, own: bool) {
        let fate = drop.fate as usize;
        self.total[fate] += 1;
        if own {
            self.own_namespace[fate] += 1;
        }
        let key = ListenerKey {
            netns: drop.netns,
            port: drop.lport,
        };
        if !self.listeners.contains_key(&key) && self.listeners.len() >= MAX_LISTENERS {
            self.untracked[fate] += 1;
            return;
        }
        let listener = self.listeners.entry(key).or_default();
        listener.counts[fate] += 1;
        if !listener.mixed {
            match listener.laddr {
                None => listener.laddr = Some(drop.laddr),
                Some(addr) if addr != drop.laddr => {
                    listener.laddr = None;
                    listener.mixed = true;
                }
                Some(_) => {}
            }
        }
        if drop.pid.is_some() {
            listener.pid = drop.pid;
            listener.comm = drop.comm;
        }
        let peer = (key, drop.raddr);
        if let Some(counts) = self.peers.get_mut(&peer) {
            counts[fate] += 1;
        } else if self.peers.len() < MAX_PEERS {
            self.peers.insert(peer, one(fate));
        } else {
            listener.other_peers[fate] += 1;
        }
    }

    /// The state now; starts the next interval. `own_netns` is tcptrace's namespace.
    pub fn snapshot(&mut self, own_netns: u32) -> FatesSnapshot {
        let mut peers_of: HashMap<ListenerKey, Vec<(IpAddr, FateCounts)>, FastHash> =
            HashMap::default();
        for ((key, addr), counts) in &self.peers {
            peers_of.entry(*key).or_default().push((*addr, *counts));
        }
        let mut listeners: Vec<ListenerFates> = self
            .listeners
            .iter_mut()
            .map(|(key, l)| {
                let mut peers = peers_of.remove(key).unwrap_or_default();
                peers.sort_by(|a, b| total(&b.1).cmp(&total(&a.1)).then(a.0.cmp(&b.0)));
                let mut other_peers = l.other_peers;
                for (_, counts) in peers.iter().skip(TOP_PEERS) {
                    add(&mut other_peers, counts);
                }
                peers.truncate(TOP_PEERS);
                let interval = std::array::from_fn(|i| l.counts[i] - l.at_snapshot[i]);
                l.at_snapshot = l.counts;
                ListenerFates {
                    netns: key.netns,
                    own: key.netns == 0 || key.netns == own_netns,
                    port: key.port,
                    laddr: l.laddr,
                    counts: l.counts,
                    interval,
                    pid: l.pid,
                    comm: l.comm,
                    peers,
                    other_peers,
                }
            })
            .collect();
        listeners.sort_by(|a, b| {
            total(&b.counts)
                .cmp(&total(&a.counts))
                .then((a.netns, a.port).cmp(&(b.netns, b.port)))
        });
        let mut other_listeners = self.untracked;
        for l in listeners.iter().skip(TOP_LISTENERS) {
            add(&mut other_listeners, &l.counts);
        }
        listeners.truncate(TOP_LISTENERS);
        FatesSnapshot {
            listeners,
            other_listeners,
            own_namespace: self.own_namespace,
            total: self.total,
        }
    }
}

fn one(fate: usize) -> FateCounts {
    let mut counts = FateCounts::default();
    counts[fate] = 1;
    counts
}

fn add(into: &mut FateCounts, counts: &FateCounts) {
    for (a, b) in into.iter_mut().zip(counts) {
        *a += b;
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::core::event::Family;

    fn drop(fate: Fate, netns: u32, port: u16, peer: [u8; 4]) -> PacketDrop {
        PacketDrop {
            ts_ns: 1,
            fate,
            family: Family::Inet,
            laddr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            lport: port,
            raddr: IpAddr::V4(Ipv4Addr::from(peer)),
            rport: 40000,
            netns,
            tcp_flags: 0x04,
            reason: 2,
            pid: None,
            comm: Comm::default(),
        }
    }

    #[test]
    fn counts_per_listener_and_peer_busiest_first() {
        let mut fates = Fates::default();
        for _ in 0..3 {
            fates.record(&drop(Fate::EmbryonicReset, 7, 80, [10, 0, 0, 1]), true);
        }
        fates.record(&drop(Fate::ListenOverflow, 7, 80, [10, 0, 0, 2]), true);
        fates.record(&drop(Fate::ClosedPort, 9, 9, [10, 0, 0, 3]), false);
        let snap = fates.snapshot(7);
        assert_eq!(snap.total, [3, 1, 1]);
        assert_eq!(snap.own_namespace, [3, 1, 0]);
        let first = &snap.listeners[0];
        assert_eq!((first.netns, first.port, first.own), (7, 80, true));
        assert_eq!(first.counts, [3, 1, 0]);
        assert_eq!(first.interval, [3, 1, 0]);
        assert_eq!(
            first.peers,
            [
                ("10.0.0.1".parse().unwrap(), [3, 0, 0]),
                ("10.0.0.2".parse().unwrap(), [0, 1, 0])
            ]
        );
        assert_eq!(first.laddr, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(!snap.listeners[1].own);
        // The next interval starts from here.
        fates.record(&drop(Fate::EmbryonicReset, 7, 80, [10, 0, 0, 1]), true);
        assert_eq!(fates.snapshot(7).listeners[0].interval, [1, 0, 0]);
    }

    #[test]
    fn peers_past_the_top_are_counted_together() {
        let mut fates = Fates::default();
        for peer in 1..=5u8 {
            for _ in 0..peer {
                fates.record(&drop(Fate::ClosedPort, 1, 22, [10, 0, 0, peer]), true);
            }
        }
        let l = &fates.snapshot(1).listeners[0];
        assert_eq!(l.peers.len(), TOP_PEERS);
        assert_eq!(l.peers[0], ("10.0.0.5".parse().unwrap(), [0, 0, 5]));
        // 1 + 2 from the two quietest peers.
        assert_eq!(l.other_peers, [0, 0, 3]);
    }

    #[test]
    fn memory_is_bounded_by_listeners_and_peers() {
        let mut fates = Fates::default();
        for port in 0..(MAX_LISTENERS as u32 + 10) {
            fates.record(&drop(Fate::ClosedPort, 1, port as u16, [10, 0, 0, 1]), true);
        }
        assert_eq!(fates.listeners.len(), MAX_LISTENERS);
        for i in 0..(MAX_PEERS as u32) {
            fates.record(&drop(Fate::ClosedPort, 1, 0, i.to_be_bytes()), true);
        }
        assert_eq!(fates.peers.len(), MAX_PEERS);
        let snap = fates.snapshot(1);
        assert_eq!(
            snap.total[Fate::ClosedPort as usize],
            (MAX_LISTENERS + 10 + MAX_PEERS) as u64
        );
        // Every packet is counted somewhere: the listeners shown, the others, together.
        let shown: u64 = snap.listeners.iter().map(|l| total(&l.counts)).sum();
        assert_eq!(shown + total(&snap.other_listeners), total(&snap.total));
        // The busiest listener lost its new peers to "other" once the table was full.
        let busiest = &snap.listeners[0];
        assert_eq!(busiest.port, 0);
        let peers: u64 = busiest.peers.iter().map(|p| total(&p.1)).sum();
        assert_eq!(peers + total(&busiest.other_peers), total(&busiest.counts));
        assert!(total(&busiest.other_peers) > 0);
    }

    #[test]
    fn a_listener_reached_at_several_addresses_has_none() {
        let mut fates = Fates::default();
        fates.record(&drop(Fate::ClosedPort, 1, 22, [10, 0, 0, 1]), true);
        let mut other = drop(Fate::ClosedPort, 1, 22, [10, 0, 0, 1]);
        other.laddr = "10.9.9.9".parse().unwrap();
        fates.record(&other, true);
        fates.record(&drop(Fate::ClosedPort, 1, 22, [10, 0, 0, 1]), true);
        assert_eq!(fates.snapshot(1).listeners[0].laddr, None);
    }
}
