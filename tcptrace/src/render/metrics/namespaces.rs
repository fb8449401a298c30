//! Which network namespaces get a label value of their own: a bounded set, so that a host
//! that churns through thousands of short-lived namespaces (pods, CI jobs) cannot blow up the
//! series count. The first `limit` namespaces seen each get their own value and keep it; the
//! rest are counted under `other`, and stay there. A labelled namespace with no process left
//! in it and no transition for `ttl` is retired: its series go away, its slot goes to the next
//! namespace seen, and what it had counted stays out of `other`, so that every counter only
//! ever grows. The aggregation may forget an idle namespace and start it again from zero (its
//! table is bounded too): a labelled one then carries on from what it had counted.

use std::collections::{HashMap, HashSet};

use crate::{
    aggregate::namespaces::{NamespaceCounts, NamespacesSnapshot},
    core::cgroup::Placement,
};

/// The label value of the namespaces past the limit.
pub const OTHER: &str = "other";

/// One labelled namespace, as exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceSeries {
    pub netns: u32,
    pub counts: NamespaceCounts,
    /// Its pod and container, from the cgroup of a process in it; `None`: no process now.
    pub placement: Option<Placement>,
}

/// What a scrape exports per namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespacesExport {
    /// Labelled namespaces, by inode.
    pub rows: Vec<NamespaceSeries>,
    /// Every namespace not labelled now, summed (retired ones from their retirement on).
    pub other: NamespaceCounts,
    /// Namespaces counted under `other` because the limit was reached.
    pub overflowed: u64,
    /// Namespaces retired after their TTL.
    pub retired: u64,
}

#[derive(Debug)]
struct Labelled {
    /// What the aggregation's earlier rows of this namespace had counted.
    base: NamespaceCounts,
    /// Its current row: when it began, and what it counts.
    since_ns: u64,
    counts: NamespaceCounts,
    last_active_ns: u64,
}

impl Labelled {
    fn total(&self) -> NamespaceCounts {
        let mut total = self.base;
        total.add(&self.counts);
        total
    }
}

/// The assignment of namespaces to label values, kept across scrapes.
#[derive(Debug)]
pub struct NamespaceLabels {
    limit: usize,
    ttl_ns: u64,
    labelled: HashMap<u32, Labelled>,
    /// Rows past the limit, or of retired namespaces (by inode, with when the row began): never
    /// labelled. Only rows the aggregation still has are kept: bounded by its own limit.
    unlabelled: HashMap<u32, u64>,
    overflowed: u64,
    retired: u64,
    /// What the retired namespaces had counted when they were retired.
    retired_counts: NamespaceCounts,
}

fn sub(a: &NamespaceCounts, b: &NamespaceCounts) -> NamespaceCounts {
    NamespaceCounts {
        transitions: a.transitions.saturating_sub(b.transitions),
        active_opens: a.active_opens.saturating_sub(b.active_opens),
        passive_opens: a.passive_opens.saturating_sub(b.passive_opens),
        abnormal: a.abnormal.saturating_sub(b.abnormal),
    }
}

impl NamespaceLabels {
    pub fn new(limit: usize, ttl_ns: u64) -> Self {
        Self {
            limit,
            ttl_ns,
            labelled: HashMap::new(),
            unlabelled: HashMap::new(),
            overflowed: 0,
            retired: 0,
            retired_counts: NamespaceCounts::default(),
        }
    }

    /// The series of one scrape at `now_ns`, from the aggregation's counts and the namespaces
    /// that have a process now (with where that process sits).
    pub fn export(
        &mut self,
        snapshot: &NamespacesSnapshot,
        alive: &HashMap<u32, Placement>,
        now_ns: u64,
    ) -> NamespacesExport {
        let mut total = snapshot.other;
        for row in &snapshot.rows {
            total.add(&row.counts);
            if let Some(labelled) = self.labelled.get_mut(&row.netns) {
                if labelled.since_ns != row.since_ns {
                    // A new row of a labelled namespace: what the old one counted carries on.
                    labelled.base.add(&labelled.counts);
                    labelled.since_ns = row.since_ns;
                    labelled.counts = NamespaceCounts::default();
                }
                if labelled.counts != row.counts {
                    labelled.counts = row.counts;
                    labelled.last_active_ns = now_ns;
                }
            } else if self.unlabelled.get(&row.netns) == Some(&row.since_ns) {
            } else if self.labelled.len() < self.limit {
                self.unlabelled.remove(&row.netns);
                self.labelled.insert(
                    row.netns,
                    Labelled {
                        base: NamespaceCounts::default(),
                        since_ns: row.since_ns,
                        counts: row.counts,
                        last_active_ns: now_ns,
                    },
                );
            } else {
                self.unlabelled.insert(row.netns, row.since_ns);
                self.overflowed += 1;
            }
        }
        // Rows the aggregation forgot need no memory of being unlabelled.
        let rows: HashSet<u32> = snapshot.rows.iter().map(|row| row.netns).collect();
        self.unlabelled.retain(|netns, _| rows.contains(netns));
        for (netns, labelled) in &mut self.labelled {
            if alive.contains_key(netns) {
                labelled.last_active_ns = now_ns;
            }
        }
        let ttl_ns = self.ttl_ns;
        let expired: Vec<u32> = self
            .labelled
            .iter()
            .filter(|(_, l)| now_ns.saturating_sub(l.last_active_ns) > ttl_ns)
            .map(|(netns, _)| *netns)
            .collect();
        for netns in expired {
            let labelled = self.labelled.remove(&netns).expect("listed above");
            self.retired_counts.add(&labelled.total());
            if rows.contains(&netns) {
                self.unlabelled.insert(netns, labelled.since_ns);
            }
            self.retired += 1;
        }
        let mut labelled_sum = self.retired_counts;
        let mut rows: Vec<NamespaceSeries> = self
            .labelled
            .iter()
            .map(|(netns, labelled)| {
                let counts = labelled.total();
                labelled_sum.add(&counts);
                NamespaceSeries {
                    netns: *netns,
                    counts,
                    placement: alive.get(netns).cloned(),
                }
            })
            .collect();
        rows.sort_by_key(|row| row.netns);
        NamespacesExport {
            rows,
            other: sub(&total, &labelled_sum),
            overflowed: self.overflowed,
            retired: self.retired,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aggregate::namespaces::NamespaceRow;

    fn counts(transitions: u64) -> NamespaceCounts {
        NamespaceCounts {
            transitions,
            active_opens: transitions / 2,
            passive_opens: 0,
            abnormal: 0,
        }
    }

    fn snapshot(rows: &[(u32, u64)]) -> NamespacesSnapshot {
        NamespacesSnapshot {
            rows: rows
                .iter()
                .map(|(netns, n)| NamespaceRow {
                    netns: *netns,
                    since_ns: 0,
                    own: false,
                    counts: counts(*n),
                    interval_transitions: 0,
                })
                .collect(),
            other_namespaces: 0,
            other: NamespaceCounts::default(),
        }
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn past_the_limit_namespaces_are_summed_and_stay_there() {
        let mut labels = NamespaceLabels::new(2, 300 * S);
        let none = HashMap::new();
        let out = labels.export(&snapshot(&[(1, 10), (2, 20), (3, 30), (4, 4)]), &none, 0);
        assert_eq!(out.rows.iter().map(|r| r.netns).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(out.other.transitions, 34);
        assert_eq!(out.overflowed, 2);
        // Busier later, namespace 3 still does not take a label.
        let out = labels.export(&snapshot(&[(1, 10), (2, 20), (3, 90), (4, 4)]), &none, S);
        assert_eq!(out.rows.len(), 2);
        assert_eq!(out.other.transitions, 94);
    }

    #[test]
    fn idle_namespaces_without_processes_retire_and_counters_never_fall() {
        let mut labels = NamespaceLabels::new(2, 60 * S);
        let mut alive = HashMap::new();
        alive.insert(
            2,
            Placement {
                pod_uid: Some("u".into()),
                container_id: None,
            },
        );
        let snap = snapshot(&[(1, 10), (2, 20), (3, 5)]);
        let out = labels.export(&snap, &alive, 0);
        assert_eq!(
            out.rows[1].placement.as_ref().unwrap().pod_uid.as_deref(),
            Some("u")
        );
        assert_eq!(out.rows[0].placement, None);
        // Namespace 1 has no process and no new transition: retired after the TTL; 2 has one.
        let out = labels.export(&snap, &alive, 61 * S);
        assert_eq!(out.rows.iter().map(|r| r.netns).collect::<Vec<_>>(), [2]);
        assert_eq!(out.retired, 1);
        assert_eq!(out.other.transitions, 5);
        // Its inode coming back (reused) counts under other, growing from there.
        let out = labels.export(&snapshot(&[(1, 13), (2, 20), (3, 5)]), &alive, 62 * S);
        assert_eq!(out.other.transitions, 8);
        assert_eq!(out.rows.len(), 1);
        // A free slot goes to a namespace not seen before.
        let out = labels.export(
            &snapshot(&[(1, 13), (2, 20), (3, 5), (7, 1)]),
            &alive,
            63 * S,
        );
        assert_eq!(out.rows.iter().map(|r| r.netns).collect::<Vec<_>>(), [2, 7]);
        assert_eq!(out.other.transitions, 8);
    }

    #[test]
    fn a_row_started_again_carries_on_and_forgotten_rows_free_their_inode() {
        let mut labels = NamespaceLabels::new(1, 60 * S);
        let none = HashMap::new();
        labels.export(&snapshot(&[(1, 10), (2, 5)]), &none, 0);
        // The aggregation forgot namespace 1 and saw it again: a new row, from zero.
        let mut again = snapshot(&[(1, 3), (2, 5)]);
        again.rows[0].since_ns = 40 * S;
        again.other.transitions = 10;
        let out = labels.export(&again, &none, 41 * S);
        assert_eq!(out.rows[0].counts.transitions, 13);
        assert_eq!(out.other.transitions, 5);
        // Namespace 2 (past the limit) forgotten too, then seen again while 1 holds the only
        // label: still under other, once more counted as an overflow.
        let mut later = snapshot(&[(1, 3), (2, 1)]);
        later.rows[0].since_ns = 40 * S;
        later.rows[1].since_ns = 50 * S;
        later.other.transitions = 15;
        let out = labels.export(&later, &none, 51 * S);
        assert_eq!(out.rows[0].counts.transitions, 13);
        assert_eq!(out.other.transitions, 6);
        assert_eq!(out.overflowed, 2);
        // Idle past the TTL, namespace 1 retires; its slot goes to the next new row.
        let out = labels.export(&later, &none, 102 * S);
        assert!(out.rows.is_empty());
        assert_eq!(out.other.transitions, 6);
        let mut next = later.clone();
        next.rows.push(NamespaceRow {
            netns: 9,
            since_ns: 103 * S,
            counts: counts(2),
            ..NamespaceRow::default()
        });
        let out = labels.export(&next, &none, 103 * S);
        assert_eq!(out.rows.iter().map(|r| r.netns).collect::<Vec<_>>(), [9]);
        assert_eq!(out.other.transitions, 6);
    }

    #[test]
    fn activity_keeps_a_namespace_labelled() {
        let mut labels = NamespaceLabels::new(5, 60 * S);
        let none = HashMap::new();
        labels.export(&snapshot(&[(1, 1)]), &none, 0);
        labels.export(&snapshot(&[(1, 2)]), &none, 50 * S);
        let out = labels.export(&snapshot(&[(1, 2)]), &none, 100 * S);
        assert_eq!(out.rows.len(), 1);
        let out = labels.export(&snapshot(&[(1, 2)]), &none, 111 * S);
        assert!(out.rows.is_empty());
    }
}
