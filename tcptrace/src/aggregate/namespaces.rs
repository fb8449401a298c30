//! Per network namespace counts: container hosts want to know which namespace churns or fails.

use std::collections::HashMap;

use crate::core::{event::Transition, hash::FastHash, state::TcpState};

/// Namespaces followed one by one. Past it, those idle the longest are forgotten (summed into
/// one row), so that a host churning through short-lived namespaces keeps telling new ones
/// apart.
pub const MAX_NAMESPACES: usize = 4096;

/// A full table forgets down to this many at once: one pass per [`MAX_NAMESPACES`] / 8 new
/// namespaces, not one per namespace.
const KEPT_AFTER_FORGETTING: usize = MAX_NAMESPACES - MAX_NAMESPACES / 8;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NamespaceCounts {
    pub transitions: u64,
    pub active_opens: u64,
    pub passive_opens: u64,
    pub abnormal: u64,
}

impl NamespaceCounts {
    pub fn add(&mut self, other: &Self) {
        self.transitions += other.transitions;
        self.active_opens += other.active_opens;
        self.passive_opens += other.passive_opens;
        self.abnormal += other.abnormal;
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceRow {
    /// The namespace inode; 0 when the kernel could not read it.
    pub netns: u32,
    /// When this row began: its first transition's time. A namespace forgotten and seen again
    /// (or an inode the kernel reused for a new namespace) starts a new row, counted from zero.
    pub since_ns: u64,
    /// This is tcptrace's own namespace.
    pub own: bool,
    pub counts: NamespaceCounts,
    /// Transitions since the previous snapshot.
    pub interval_transitions: u64,
}

/// Every namespace followed, busiest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespacesSnapshot {
    pub rows: Vec<NamespaceRow>,
    /// Namespaces forgotten to keep the table within [`MAX_NAMESPACES`]: how many times one
    /// was, and what they had counted, summed.
    pub other_namespaces: u64,
    pub other: NamespaceCounts,
}

#[derive(Debug)]
struct Entry {
    counts: NamespaceCounts,
    /// `counts.transitions` at the previous snapshot.
    at_snapshot: u64,
    since_ns: u64,
    last_ns: u64,
}

#[derive(Debug, Default)]
pub struct Namespaces {
    by_inode: HashMap<u32, Entry, FastHash>,
    other: NamespaceCounts,
    other_namespaces: u64,
}

impl Namespaces {
    pub fn record(&mut self, t: &Transition, abnormal: bool) {
        if !self.by_inode.contains_key(&t.netns) && self.by_inode.len() >= MAX_NAMESPACES {
            self.forget_idlest();
        }
        let entry = self.by_inode.entry(t.netns).or_insert(Entry {
            counts: NamespaceCounts::default(),
            at_snapshot: 0,
            since_ns: t.ts_ns,
            last_ns: t.ts_ns,
        });
        entry.last_ns = entry.last_ns.max(t.ts_ns);
        let counts = &mut entry.counts;
        counts.transitions += 1;
        match (t.from, t.to) {
            (TcpState::Close, TcpState::SynSent) => counts.active_opens += 1,
            (TcpState::Listen, TcpState::SynRecv) => counts.passive_opens += 1,
            _ => {}
        }
        if abnormal {
            counts.abnormal += 1;
        }
    }

    /// Forgets the namespaces whose last transition is the oldest, down to
    /// [`KEPT_AFTER_FORGETTING`]; what they counted stays in the sums.
    fn forget_idlest(&mut self) {
        let mut by_age: Vec<(u64, u32)> = self
            .by_inode
            .iter()
            .map(|(netns, entry)| (entry.last_ns, *netns))
            .collect();
        let forget = by_age.len().saturating_sub(KEPT_AFTER_FORGETTING);
        by_age.select_nth_unstable(forget.saturating_sub(1));
        for (_, netns) in &by_age[..forget] {
            if let Some(entry) = self.by_inode.remove(netns) {
                self.other.add(&entry.counts);
                self.other_namespaces += 1;
            }
        }
    }

    /// Rows, busiest first; also starts the next interval.
    pub fn snapshot(&mut self, own_netns: u32) -> NamespacesSnapshot {
        let mut rows: Vec<NamespaceRow> = self
            .by_inode
            .iter_mut()
            .map(|(netns, entry)| {
                let row = NamespaceRow {
                    netns: *netns,
                    since_ns: entry.since_ns,
                    own: *netns == own_netns && own_netns != 0,
                    counts: entry.counts,
                    interval_transitions: entry.counts.transitions - entry.at_snapshot,
                };
                entry.at_snapshot = entry.counts.transitions;
                row
            })
            .collect();
        rows.sort_by(|a, b| {
            b.counts
                .transitions
                .cmp(&a.counts.transitions)
                .then(a.netns.cmp(&b.netns))
        });
        NamespacesSnapshot {
            rows,
            other_namespaces: self.other_namespaces,
            other: self.other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(netns: u32, from: TcpState, to: TcpState) -> Transition {
        Transition {
            lport: 1,
            rport: 2,
            netns,
            ..Transition::fixture(1, 0, from, to)
        }
    }

    #[test]
    fn counts_per_namespace_busiest_first_with_interval_deltas() {
        use TcpState::*;
        let mut ns = Namespaces::default();
        ns.record(&t(7, Close, SynSent), false);
        ns.record(&t(9, Listen, SynRecv), false);
        ns.record(&t(9, Established, Close), true);
        let snap = ns.snapshot(9);
        let rows = snap.rows;
        assert_eq!(snap.other, NamespaceCounts::default());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].netns, 9);
        assert!(rows[0].own);
        assert_eq!(
            rows[0].counts,
            NamespaceCounts {
                transitions: 2,
                active_opens: 0,
                passive_opens: 1,
                abnormal: 1
            }
        );
        assert_eq!(rows[0].interval_transitions, 2);
        assert_eq!((rows[1].netns, rows[1].counts.active_opens), (7, 1));
        ns.record(&t(7, SynSent, Established), false);
        let rows = ns.snapshot(9).rows;
        let seven = rows.iter().find(|r| r.netns == 7).unwrap();
        assert_eq!(
            (seven.counts.transitions, seven.interval_transitions),
            (2, 1)
        );
    }

    fn at(netns: u32, ts_ns: u64) -> Transition {
        Transition {
            ts_ns,
            ..t(netns, TcpState::Close, TcpState::SynSent)
        }
    }

    #[test]
    fn a_full_table_forgets_the_idlest_namespaces_and_keeps_their_counts() {
        let mut ns = Namespaces::default();
        let n = MAX_NAMESPACES as u32;
        // Namespace 1 is the busiest but idle since the start; the others came later.
        for _ in 0..5 {
            ns.record(&at(1, 1), false);
        }
        for netns in 2..=n {
            ns.record(&at(netns, u64::from(netns) * 10), false);
        }
        ns.record(&at(3, u64::from(n) * 10 + 1), false);
        assert_eq!(ns.snapshot(0).rows.len(), MAX_NAMESPACES);
        // One more: the idlest eighth goes, namespace 1 first; 3 was active again.
        ns.record(&at(n + 1, u64::from(n) * 10 + 2), false);
        let snap = ns.snapshot(0);
        assert_eq!(snap.rows.len(), KEPT_AFTER_FORGETTING + 1);
        assert_eq!(
            snap.other_namespaces,
            (MAX_NAMESPACES - KEPT_AFTER_FORGETTING) as u64
        );
        assert!(snap.rows.iter().all(|r| r.netns != 1 && r.netns != 2));
        assert!(snap.rows.iter().any(|r| r.netns == 3));
        assert!(snap.rows.iter().any(|r| r.netns == n + 1));
        // Nothing counted is lost: every transition is in a row or in the sum.
        let total: u64 =
            snap.rows.iter().map(|r| r.counts.transitions).sum::<u64>() + snap.other.transitions;
        assert_eq!(total, 5 + u64::from(n - 1) + 1 + 1);
        // Seen again, a forgotten namespace starts a new row.
        ns.record(&at(1, u64::from(n) * 10 + 3), false);
        let row = ns
            .snapshot(0)
            .rows
            .into_iter()
            .find(|r| r.netns == 1)
            .unwrap();
        assert_eq!(
            (row.counts.transitions, row.since_ns),
            (1, u64::from(n) * 10 + 3)
        );
    }
}
