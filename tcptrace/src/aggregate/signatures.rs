//! Path signatures: the whole path a socket took, counted when it closes, with a histogram of
//! the connection's lifetime. A path is packed into a `u64` (four bits per state) so that
//! following a socket allocates nothing.

use std::collections::HashMap;

use super::histogram::{HistogramSummary, TimeHistogram};
use crate::core::{hash::FastHash, state::TcpState};

/// Marks a part of the path that was not seen: before a socket first seen mid-life, or events
/// lost in between. Also ends a path too long to keep.
const GAP: u8 = 13;
/// States kept per path (four bits each).
const MAX_LEN: u32 = 16;

/// A path as the states a socket entered, in order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PathKey(u64);

impl PathKey {
    /// The path of a socket born into `state`.
    pub fn born(state: TcpState) -> Self {
        let mut key = Self(0);
        key.push(state);
        key
    }

    /// The path of a socket first seen leaving `from`: what came before is not known.
    pub fn midlife(from: TcpState) -> Self {
        let mut key = Self(0);
        key.push_raw(GAP);
        key.push(from);
        key
    }

    fn len(self) -> u32 {
        (64 - self.0.leading_zeros()).div_ceil(4)
    }

    fn push_raw(&mut self, item: u8) {
        let len = self.len();
        if len >= MAX_LEN {
            return;
        }
        // The last slot is kept for the mark that says the path went on.
        let item = if len == MAX_LEN - 1 { GAP } else { item };
        self.0 |= u64::from(item & 0xf) << (4 * len);
    }

    pub fn push(&mut self, state: TcpState) {
        self.push_raw(state as u8);
    }

    /// Events of this socket were missed before `state`.
    pub fn push_gap(&mut self, state: TcpState) {
        self.push_raw(GAP);
        self.push(state);
    }

    pub fn complete(self) -> bool {
        (0..self.len()).all(|i| (self.0 >> (4 * i)) & 0xf != u64::from(GAP))
    }

    /// `SYN_SENT->ESTABLISHED->…`
    pub fn render(self) -> String {
        let mut text = String::new();
        for i in 0..self.len() {
            let item = ((self.0 >> (4 * i)) & 0xf) as u16;
            if i > 0 {
                text.push_str("->");
            }
            match TcpState::from_raw(item) {
                Some(state) if item != u16::from(GAP) => text.push_str(state.name()),
                _ => text.push('…'),
            }
        }
        text
    }
}

#[derive(Clone, Debug)]
struct Entry {
    count: u64,
    /// Lifetimes of the sockets whose birth was seen.
    lifetime: TimeHistogram,
}

/// One signature, for renderers.
#[derive(Clone, Debug, PartialEq)]
pub struct SignatureSnapshot {
    pub path: String,
    /// The path was seen whole, from birth to close.
    pub complete: bool,
    pub count: u64,
    pub lifetime: HistogramSummary,
}

/// Counts per path, bounded: past `max_distinct` paths, new ones are only counted as "other".
pub struct Signatures {
    entries: HashMap<PathKey, Entry, FastHash>,
    max_distinct: usize,
    other: u64,
}

impl Signatures {
    pub fn new(max_distinct: usize) -> Self {
        Self {
            entries: HashMap::default(),
            max_distinct,
            other: 0,
        }
    }

    pub fn record(&mut self, path: PathKey, lifetime_ns: Option<u64>) {
        let full = self.entries.len() >= self.max_distinct;
        let entry = match self.entries.get_mut(&path) {
            Some(entry) => entry,
            None if full => {
                self.other += 1;
                return;
            }
            None => self.entries.entry(path).or_insert_with(|| Entry {
                count: 0,
                // Two digits: lifetimes are many and vary widely; 1 % is plenty.
                lifetime: TimeHistogram::new(2),
            }),
        };
        entry.count += 1;
        if let Some(ns) = lifetime_ns {
            entry.lifetime.record(ns);
        }
    }

    /// Paths over the cap, counted without their own row.
    pub fn other(&self) -> u64 {
        self.other
    }

    /// The `n` most frequent paths, most frequent first (ties by path, for stable output).
    pub fn top(&self, n: usize) -> Vec<SignatureSnapshot> {
        let mut all: Vec<(&PathKey, &Entry)> = self.entries.iter().collect();
        all.sort_by(|a, b| b.1.count.cmp(&a.1.count).then(a.0.0.cmp(&b.0.0)));
        all.into_iter()
            .take(n)
            .map(|(key, entry)| SignatureSnapshot {
                path: key.render(),
                complete: key.complete(),
                count: entry.count,
                lifetime: entry.lifetime.summary(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcpState::*;

    #[test]
    fn renders_the_states_entered() {
        let mut key = PathKey::born(SynSent);
        for s in [Established, FinWait1, FinWait2, TimeWait] {
            key.push(s);
        }
        assert_eq!(
            key.render(),
            "SYN_SENT->ESTABLISHED->FIN_WAIT1->FIN_WAIT2->TIME_WAIT"
        );
        assert!(key.complete());
    }

    #[test]
    fn midlife_and_gaps_are_marked() {
        let mut key = PathKey::midlife(Established);
        key.push(CloseWait);
        assert_eq!(key.render(), "…->ESTABLISHED->CLOSE_WAIT");
        assert!(!key.complete());
        let mut key = PathKey::born(SynSent);
        key.push_gap(FinWait2);
        assert_eq!(key.render(), "SYN_SENT->…->FIN_WAIT2");
    }

    #[test]
    fn long_paths_are_cut_with_a_mark() {
        let mut key = PathKey::born(SynSent);
        for _ in 0..40 {
            key.push(Established);
        }
        let text = key.render();
        assert_eq!(text.matches("->").count(), 15);
        assert!(text.ends_with("->…"), "{text}");
    }

    #[test]
    fn counts_with_lifetimes_and_caps() {
        let mut sigs = Signatures::new(2);
        let a = PathKey::born(SynSent);
        let b = PathKey::born(Listen);
        let c = PathKey::born(SynRecv);
        sigs.record(a, Some(1_000_000));
        sigs.record(a, Some(3_000_000));
        sigs.record(b, None);
        sigs.record(c, Some(1));
        let top = sigs.top(10);
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].path, "SYN_SENT");
        assert_eq!(top[0].count, 2);
        assert_eq!(top[0].lifetime.samples, 2);
        assert_eq!(top[1].count, 1);
        assert_eq!(top[1].lifetime.samples, 0);
        assert_eq!(sigs.other(), 1);
        assert_eq!(sigs.top(1).len(), 1);
    }
}
