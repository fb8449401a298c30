//! Per network namespace counts: container hosts want to know which namespace churns or fails.

use std::collections::HashMap;

use crate::core::{event::Transition, hash::FastHash, state::TcpState};

/// Namespaces followed one by one; the rest are summed into one row.
pub const MAX_NAMESPACES: usize = 4096;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NamespaceCounts {
    pub transitions: u64,
    pub active_opens: u64,
    pub passive_opens: u64,
    pub abnormal: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceRow {
    /// The namespace inode; 0 when the kernel could not read it.
    pub netns: u32,
    /// This is tcptrace's own namespace.
    pub own: bool,
    pub counts: NamespaceCounts,
    /// Transitions since the previous snapshot.
    pub interval_transitions: u64,
}

/// Every namespace seen, busiest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespacesSnapshot {
    pub rows: Vec<NamespaceRow>,
    /// Namespaces beyond [`MAX_NAMESPACES`]: how many, and their counts summed.
    pub other_namespaces: u64,
    pub other: NamespaceCounts,
}

#[derive(Debug, Default)]
pub struct Namespaces {
    by_inode: HashMap<u32, (NamespaceCounts, u64), FastHash>,
    /// Namespaces beyond [`MAX_NAMESPACES`], summed; `other_namespaces` counts their
    /// transitions' arrivals, not distinct namespaces (that would need the set kept).
    other: NamespaceCounts,
    other_namespaces: u64,
}

impl Namespaces {
    pub fn record(&mut self, t: &Transition, abnormal: bool) {
        let counts = if let Some((counts, _)) = self.by_inode.get_mut(&t.netns) {
            counts
        } else if self.by_inode.len() < MAX_NAMESPACES {
            &mut self.by_inode.entry(t.netns).or_default().0
        } else {
            self.other_namespaces += 1;
            &mut self.other
        };
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

    /// Rows, busiest first; also starts the next interval.
    pub fn snapshot(&mut self, own_netns: u32) -> NamespacesSnapshot {
        let mut rows: Vec<NamespaceRow> = self
            .by_inode
            .iter_mut()
            .map(|(netns, (counts, at_snapshot))| {
                let row = NamespaceRow {
                    netns: *netns,
                    own: *netns == own_netns && own_netns != 0,
                    counts: *counts,
                    interval_transitions: counts.transitions - *at_snapshot,
                };
                *at_snapshot = counts.transitions;
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

    #[test]
    fn namespaces_past_the_cap_are_summed() {
        let mut ns = Namespaces::default();
        for netns in 0..(MAX_NAMESPACES as u32 + 3) {
            ns.record(&t(netns + 1, TcpState::Close, TcpState::SynSent), false);
        }
        let snap = ns.snapshot(0);
        assert_eq!(snap.rows.len(), MAX_NAMESPACES);
        assert_eq!(snap.other.transitions, 3);
        assert_eq!(snap.other_namespaces, 3);
    }
}
