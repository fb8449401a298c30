//! Which network namespaces get a label value of their own: a bounded set, so that a host
//! that churns through thousands of short-lived namespaces (pods, CI jobs) cannot blow up the
//! series count. The first `limit` namespaces seen each get their own value and keep it; the
//! rest are counted under `other`, and stay there. A labelled namespace with no process left
//! in it and no transition for `ttl` is retired: its series go away, and what it had counted
//! stays out of `other`, so that every counter only ever grows.

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
    counts: NamespaceCounts,
    last_active_ns: u64,
}

/// The assignment of namespaces to label values, kept across scrapes.
#[derive(Debug)]
pub struct NamespaceLabels {
    limit: usize,
    ttl_ns: u64,
    labelled: HashMap<u32, Labelled>,
    /// Inodes past the limit, or retired: never labelled again. Bounded by the aggregation's
    /// own limit on the namespaces it tells apart.
    unlabelled: HashSet<u32>,
    overflowed: u64,
    retired: u64,
    /// What the retired namespaces had counted when they were retired.
    retired_counts: NamespaceCounts,
}

fn add(a: &mut NamespaceCounts, b: &NamespaceCounts) {
    a.transitions += b.transitions;
    a.active_opens += b.active_opens;
    a.passive_opens += b.passive_opens;
    a.abnormal += b.abnormal;
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
            unlabelled: HashSet::new(),
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
            add(&mut total, &row.counts);
            if let Some(labelled) = self.labelled.get_mut(&row.netns) {
                if labelled.counts != row.counts {
                    labelled.counts = row.counts;
                    labelled.last_active_ns = now_ns;
                }
            } else if self.unlabelled.contains(&row.netns) {
            } else if self.labelled.len() < self.limit {
                self.labelled.insert(
                    row.netns,
                    Labelled {
                        counts: row.counts,
                        last_active_ns: now_ns,
                    },
                );
            } else {
                self.unlabelled.insert(row.netns);
                self.overflowed += 1;
            }
        }
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
            add(&mut self.retired_counts, &labelled.counts);
            self.unlabelled.insert(netns);
            self.retired += 1;
        }
        let mut labelled_sum = self.retired_counts;
        let mut rows: Vec<NamespaceSeries> = self
            .labelled
            .iter()
            .map(|(netns, labelled)| {
                add(&mut labelled_sum, &labelled.counts);
                NamespaceSeries {
                    netns: *netns,
                    counts: labelled.counts,
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
