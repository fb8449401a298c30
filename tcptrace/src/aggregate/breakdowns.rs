//! Who makes the transitions: counts by service port, by process, by remote address and by
//! network namespace, per transition, and over all of them (their sum, made at the snapshot:
//! a transition is counted once). Bounded: the first [`MAX_KEYS_PER_ROW`] distinct keys of a
//! transition are counted one by one, later ones are summed as "other"; a snapshot shows the
//! top K and sums the rest into "other" too.

use std::{collections::HashMap, fmt, hash::Hash, net::IpAddr};

use crate::core::{
    event::{Comm, Transition},
    hash::FastHash,
    state::Side,
};

/// Distinct keys counted one by one per transition and per kind.
pub const MAX_KEYS_PER_ROW: usize = 1024;

/// What a breakdown groups by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum BreakdownKind {
    /// The service port: the local port on the server path, of listeners and of sockets first
    /// seen mid-life, the remote port on the client path (as `states --by port`).
    Port,
    /// The owning process (pid/comm; `-` when the kernel could not attribute the socket).
    Process,
    /// The remote address.
    Remote,
    /// The network namespace (its inode).
    Netns,
}

impl BreakdownKind {
    pub const ALL: [BreakdownKind; 4] = [Self::Port, Self::Process, Self::Remote, Self::Netns];

    pub fn name(self) -> &'static str {
        match self {
            Self::Port => "port",
            Self::Process => "process",
            Self::Remote => "remote",
            Self::Netns => "netns",
        }
    }

    /// What a table's key column is titled.
    pub fn title(self) -> &'static str {
        match self {
            Self::Port => "SERVICE PORT",
            Self::Process => "PROCESS",
            Self::Remote => "REMOTE ADDRESS",
            Self::Netns => "NETWORK NAMESPACE",
        }
    }

    /// The next kind, for a key that cycles through them.
    pub fn next(self) -> Self {
        let i = Self::ALL.iter().position(|k| *k == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }
}

/// One key of a breakdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BreakdownKey {
    Port(u16),
    Process { pid: Option<u32>, comm: Comm },
    Remote(IpAddr),
    Netns(u32),
}

impl BreakdownKey {
    pub fn of(kind: BreakdownKind, side: Side, t: &Transition) -> Self {
        match kind {
            BreakdownKind::Port if side == Side::Client => Self::Port(t.rport),
            BreakdownKind::Port => Self::Port(t.lport),
            BreakdownKind::Process => Self::Process {
                pid: t.pid,
                comm: t.comm,
            },
            BreakdownKind::Remote => Self::Remote(t.raddr),
            BreakdownKind::Netns => Self::Netns(t.netns),
        }
    }
}

impl fmt::Display for BreakdownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self {
            Self::Port(port) => port.to_string(),
            Self::Process { pid: None, .. } => "-".to_owned(),
            Self::Process {
                pid: Some(pid),
                comm,
            } => format!("{pid}/{comm}"),
            Self::Remote(addr) if addr.is_unspecified() => "-".to_owned(),
            Self::Remote(addr) => addr.to_string(),
            Self::Netns(0) => "unknown".to_owned(),
            Self::Netns(inode) => inode.to_string(),
        };
        f.pad(&label)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyCounts {
    pub count: u64,
    /// Since the previous snapshot.
    pub interval_count: u64,
    pub abnormal: u64,
}

impl KeyCounts {
    fn add(&mut self, other: &KeyCounts) {
        self.count += other.count;
        self.interval_count += other.interval_count;
        self.abnormal += other.abnormal;
    }
}

/// One breakdown as a snapshot shows it: the top keys, busiest first, and the rest summed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakdownSnapshot {
    pub kind: BreakdownKind,
    pub top: Vec<(BreakdownKey, KeyCounts)>,
    /// Keys beyond the top ones, and those past the bound of distinct keys: how many distinct
    /// keys (those past the bound not told apart: counted as one), and their counts summed.
    pub other_keys: u64,
    pub other: KeyCounts,
}

impl BreakdownSnapshot {
    pub fn total(&self) -> u64 {
        self.top.iter().map(|(_, c)| c.count).sum::<u64>() + self.other.count
    }
}

/// The counts of one kind. On the hot path: a transition costs one comparison when its key is
/// the previous one's (a busy service, one peer), one lookup in a fast-hashed index otherwise.
#[derive(Clone, Debug)]
struct Tally<K> {
    /// Keys in order of first sight, with their counts and the count at the previous snapshot.
    keys: Vec<(K, KeyCounts, u64)>,
    index: HashMap<K, usize, FastHash>,
    /// The last key counted and its place in `keys`.
    last: Option<(K, usize)>,
    overflow: (KeyCounts, u64),
}

impl<K> Default for Tally<K> {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            index: HashMap::default(),
            last: None,
            overflow: (KeyCounts::default(), 0),
        }
    }
}

impl<K: Copy + Eq + Hash> Tally<K> {
    fn record(&mut self, key: K, abnormal: bool, max_keys: usize) {
        let slot = match self.last {
            Some((last, slot)) if last == key => Some(slot),
            _ => match self.index.get(&key) {
                Some(slot) => Some(*slot),
                None if self.keys.len() < max_keys => {
                    self.keys.push((key, KeyCounts::default(), 0));
                    self.index.insert(key, self.keys.len() - 1);
                    Some(self.keys.len() - 1)
                }
                None => None,
            },
        };
        let counts = match slot {
            Some(slot) => {
                self.last = Some((key, slot));
                &mut self.keys[slot].1
            }
            None => &mut self.overflow.0,
        };
        counts.count += 1;
        counts.abnormal += u64::from(abnormal);
    }

    /// Also adds every key's counts to `all`.
    fn snapshot(
        &mut self,
        kind: BreakdownKind,
        top: usize,
        label: impl Fn(K) -> BreakdownKey,
        all: &mut MergedKind,
    ) -> BreakdownSnapshot {
        let rows: Vec<(BreakdownKey, KeyCounts)> = self
            .keys
            .iter_mut()
            .map(|(key, counts, at_snapshot)| {
                counts.interval_count = counts.count - *at_snapshot;
                *at_snapshot = counts.count;
                (label(*key), *counts)
            })
            .collect();
        for (key, counts) in &rows {
            all.keys.entry(*key).or_default().add(counts);
        }
        let (overflow, at_snapshot) = &mut self.overflow;
        let overflow = (overflow.count > 0).then(|| {
            overflow.interval_count = overflow.count - *at_snapshot;
            *at_snapshot = overflow.count;
            all.overflow.add(overflow);
            all.overflowed = true;
            *overflow
        });
        top_and_other(kind, rows, top, overflow)
    }
}

/// The `top` busiest keys, the rest (and `overflow`, the keys past the bound) as other.
fn top_and_other(
    kind: BreakdownKind,
    mut rows: Vec<(BreakdownKey, KeyCounts)>,
    top: usize,
    overflow: Option<KeyCounts>,
) -> BreakdownSnapshot {
    rows.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.cmp(&b.0)));
    let mut other = KeyCounts::default();
    let mut other_keys = 0;
    for (_, counts) in rows.iter().skip(top) {
        other.add(counts);
        other_keys += 1;
    }
    rows.truncate(top);
    if let Some(overflow) = overflow {
        other.add(&overflow);
        other_keys += 1;
    }
    BreakdownSnapshot {
        kind,
        top: rows,
        other_keys,
        other,
    }
}

/// One kind's counts over all transitions, summed from theirs at a snapshot.
#[derive(Clone, Debug, Default)]
pub struct MergedKind {
    keys: HashMap<BreakdownKey, KeyCounts>,
    overflow: KeyCounts,
    overflowed: bool,
}

/// Every kind's counts over all transitions, in [`BreakdownKind::ALL`]'s order.
#[derive(Clone, Debug, Default)]
pub struct Merged {
    kinds: [MergedKind; 4],
}

impl Merged {
    pub fn finish(self, top: usize) -> Vec<BreakdownSnapshot> {
        self.kinds
            .into_iter()
            .zip(BreakdownKind::ALL)
            .map(|(merged, kind)| {
                top_and_other(
                    kind,
                    merged.keys.into_iter().collect(),
                    top,
                    merged.overflowed.then_some(merged.overflow),
                )
            })
            .collect()
    }
}

/// No pid: the kernel could not attribute the socket (pids are below 2^22).
const NO_PID: u32 = u32::MAX;

/// An address as one integer: IPv6 as it is, IPv4 as IPv4-mapped IPv6, told apart by
/// [`remote_of`].
fn remote_key(addr: IpAddr) -> (bool, u128) {
    match addr {
        IpAddr::V4(v4) => (false, u128::from(v4.to_bits())),
        IpAddr::V6(v6) => (true, v6.to_bits()),
    }
}

fn remote_of((v6, bits): (bool, u128)) -> IpAddr {
    if v6 {
        IpAddr::V6(std::net::Ipv6Addr::from_bits(bits))
    } else {
        IpAddr::V4(std::net::Ipv4Addr::from_bits(bits as u32))
    }
}

/// The four breakdowns of one transition (or of all), each keyed by integers: compared and
/// hashed in a word or two.
#[derive(Clone, Debug, Default)]
pub struct Breakdowns {
    ports: Tally<u16>,
    /// pid (or [`NO_PID`]) and the comm's bits.
    processes: Tally<(u32, u128)>,
    remotes: Tally<(bool, u128)>,
    netns: Tally<u32>,
}

impl Breakdowns {
    pub fn record(&mut self, side: Side, t: &Transition, abnormal: bool, max_keys: usize) {
        let port = if side == Side::Client {
            t.rport
        } else {
            t.lport
        };
        self.ports.record(port, abnormal, max_keys);
        self.processes.record(
            (t.pid.unwrap_or(NO_PID), t.comm.to_bits()),
            abnormal,
            max_keys,
        );
        self.remotes.record(remote_key(t.raddr), abnormal, max_keys);
        self.netns.record(t.netns, abnormal, max_keys);
    }

    /// Every kind, in [`BreakdownKind::ALL`]'s order, `top` keys each, every key's counts also
    /// added to `all`; also starts the next interval.
    pub fn snapshot(&mut self, top: usize, all: &mut Merged) -> Vec<BreakdownSnapshot> {
        let [ports, processes, remotes, netns] = &mut all.kinds;
        vec![
            self.ports
                .snapshot(BreakdownKind::Port, top, BreakdownKey::Port, ports),
            self.processes.snapshot(
                BreakdownKind::Process,
                top,
                |(pid, comm)| BreakdownKey::Process {
                    pid: (pid != NO_PID).then_some(pid),
                    comm: Comm::from_bits(comm),
                },
                processes,
            ),
            self.remotes.snapshot(
                BreakdownKind::Remote,
                top,
                |key| BreakdownKey::Remote(remote_of(key)),
                remotes,
            ),
            self.netns
                .snapshot(BreakdownKind::Netns, top, BreakdownKey::Netns, netns),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::TcpState;

    fn t(lport: u16, rport: u16, pid: u32) -> Transition {
        Transition {
            lport,
            rport,
            pid: Some(pid),
            comm: "web".into(),
            netns: 7,
            ..Transition::fixture(1, 0, TcpState::Established, TcpState::Close)
        }
    }

    #[test]
    fn top_keys_busiest_first_with_the_rest_as_other() {
        let mut b = Breakdowns::default();
        for (port, n) in [(80, 5), (443, 9), (22, 1), (25, 1)] {
            for _ in 0..n {
                b.record(Side::Server, &t(port, 50000, 1), port == 22, 100);
            }
        }
        let snaps = b.snapshot(2, &mut Merged::default());
        let port = &snaps[0];
        assert_eq!(port.kind, BreakdownKind::Port);
        let top: Vec<_> = port
            .top
            .iter()
            .map(|(k, c)| (k.to_string(), c.count))
            .collect();
        assert_eq!(top, [("443".into(), 9), ("80".into(), 5)]);
        assert_eq!(
            (port.other_keys, port.other.count, port.other.abnormal),
            (2, 2, 1)
        );
        assert_eq!(port.total(), 16);
        let process = &snaps[1];
        assert_eq!(process.top[0].0.to_string(), "1/web");
        assert_eq!(snaps[3].top[0].0, BreakdownKey::Netns(7));
    }

    #[test]
    fn the_client_path_is_broken_down_by_the_remote_port() {
        let mut b = Breakdowns::default();
        b.record(Side::Client, &t(40001, 443, 1), false, 100);
        assert_eq!(
            b.snapshot(5, &mut Merged::default())[0].top[0].0,
            BreakdownKey::Port(443)
        );
    }

    #[test]
    fn keys_past_the_bound_are_summed_and_intervals_restart() {
        let mut b = Breakdowns::default();
        for port in 0..10 {
            b.record(Side::Server, &t(port, 1, 1), false, 4);
        }
        let port = &b.snapshot(10, &mut Merged::default())[0];
        assert_eq!(port.top.len(), 4);
        assert_eq!((port.other_keys, port.other.count), (1, 6));
        assert_eq!(b.ports.keys.len(), 4, "bounded");
        assert_eq!(b.ports.index.len(), 4, "bounded");
        b.record(Side::Server, &t(0, 1, 1), false, 4);
        let port = &b.snapshot(10, &mut Merged::default())[0];
        let zero = port
            .top
            .iter()
            .find(|(k, _)| *k == BreakdownKey::Port(0))
            .unwrap();
        assert_eq!((zero.1.count, zero.1.interval_count), (2, 1));
        assert_eq!(port.other.interval_count, 0);
    }

    #[test]
    fn keys_round_trip_through_their_integers() {
        let mut b = Breakdowns::default();
        let mut v6 = t(80, 1, 1);
        v6.raddr = "2001:db8::7".parse().unwrap();
        v6.pid = None;
        v6.comm = "a-sixteen-bytes!".into();
        b.record(Side::Server, &v6, false, 100);
        b.record(Side::Server, &t(80, 1, 7), false, 100);
        let snaps = b.snapshot(10, &mut Merged::default());
        let labels =
            |i: usize| -> Vec<String> { snaps[i].top.iter().map(|(k, _)| k.to_string()).collect() };
        assert_eq!(labels(1), ["-", "7/web"]);
        assert_eq!(labels(2), ["127.0.0.1", "2001:db8::7"]);
        assert_eq!(
            snaps[1].top[0].0,
            BreakdownKey::Process {
                pid: None,
                comm: "a-sixteen-bytes!".into()
            }
        );
    }

    #[test]
    fn kinds_cycle() {
        let mut kind = BreakdownKind::Port;
        for _ in 0..4 {
            kind = kind.next();
        }
        assert_eq!(kind, BreakdownKind::Port);
    }
}
