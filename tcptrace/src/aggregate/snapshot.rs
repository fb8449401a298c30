//! What `tcptrace transitions` shows, computed once per interval by the aggregator and handed
//! to the renderers: plain data, no behaviour beyond small derived values.

use super::{
    causes::{Cause, Timer},
    fates::FatesSnapshot,
    histogram::HistogramSummary,
    namespaces::NamespacesSnapshot,
    signatures::SignatureSnapshot,
};
use crate::core::{
    counters::TcpCounters,
    losses::Losses,
    state::{Side, TcpState},
};

/// Retransmission counts told apart per row; more are shown as this many.
pub const RETRANSMIT_SLOTS: usize = 16;

/// One row: one transition on one side, normal or abnormal.
#[derive(Clone, Debug, PartialEq)]
pub struct RowSnapshot {
    pub side: Side,
    pub from: TcpState,
    /// TIME_WAIT when `inferred`.
    pub to: TcpState,
    pub abnormal: bool,
    /// A FIN_WAIT2→CLOSE or CLOSING→CLOSE shown as entering TIME_WAIT.
    pub inferred: bool,
    /// Not an edge of the TCP state diagram (e.g. after lost events).
    pub unusual: bool,
    pub count: u64,
    pub interval_count: u64,
    /// Over the last interval.
    pub rate_per_s: f64,
    /// Over the whole run.
    pub run_rate_per_s: f64,
    pub untimed: u64,
    pub time: HistogramSummary,
    /// Abnormal rows: closes per cause (causes with none left out).
    pub causes: Vec<(Cause, u64)>,
    /// Of the timeouts, closes per timer that gave up, where the kernel told which.
    pub timers: Vec<(Timer, u64)>,
    /// Of the resets sent, closes per reset reason the kernel reported (Linux 6.10 and later).
    pub reset_reasons: Vec<(String, u64)>,
    /// Abnormal rows: closes per number of retransmissions in the from-state (≥ 1).
    pub retransmits: Vec<(u32, u64)>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketStats {
    pub tracked: u64,
    pub max: u64,
    /// Forgotten at `--max-sockets` while alive: their close, if any, is counted without a
    /// path.
    pub forgotten: u64,
    pub first_seen_midlife: u64,
    /// Sockets replaced by a new one at the same address before their close was seen.
    pub replaced_unclosed: u64,
    /// Transitions that did not leave the state the socket was last seen in.
    pub gaps: u64,
    /// Signals dropped because too many sockets were pending.
    pub signals_unmatched: u64,
}

/// The fate of request sockets (half-open passive connections), from kernel counters: counted,
/// without latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestSockets {
    pub total: TcpCounters,
    pub interval: TcpCounters,
    pub synack_retransmits: u64,
    pub synack_retransmits_interval: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessRow {
    pub counter: &'static str,
    pub stream: &'static str,
    pub kernel: u64,
    pub seen: u64,
}

impl WitnessRow {
    /// Kernel minus stream.
    pub fn difference(&self) -> i64 {
        self.kernel as i64 - self.seen as i64
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessCheck {
    /// False when transitions were filtered: the kernel counts them all.
    pub comparable: bool,
    /// Counted transitions whose namespace was not reported (assumed tcptrace's own).
    pub netns_unknown: u64,
    pub rows: Vec<WitnessRow>,
}

/// Everything a renderer shows, computed once per interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// Kernel time the snapshot was taken at.
    pub at_ns: u64,
    pub elapsed_ns: u64,
    pub interval_ns: u64,
    pub transitions: u64,
    pub interval_transitions: u64,
    /// Over the last interval.
    pub events_per_s: f64,
    /// Over the whole run.
    pub run_events_per_s: f64,
    pub signals: u64,
    pub losses: Losses,
    pub sockets: SocketStats,
    /// Normal rows, then abnormal ones; each by side, then along the diagram.
    pub rows: Vec<RowSnapshot>,
    pub signatures: Vec<SignatureSnapshot>,
    pub signatures_other: u64,
    /// `None` until the kernel counters were read.
    pub request_sockets: Option<RequestSockets>,
    pub witness: Option<WitnessCheck>,
    /// Per network namespace, busiest first.
    pub namespaces: NamespacesSnapshot,
    /// Request-socket fates and SYNs to closed ports by listener, from dropped packets;
    /// `None` when `skb:kfree_skb` is not traced.
    pub fates: Option<FatesSnapshot>,
}

impl Snapshot {
    /// The same, with every rate over the whole run rather than the last interval: what a
    /// summary shows.
    pub fn over_the_run(&self) -> Snapshot {
        let mut whole = self.clone();
        whole.events_per_s = whole.run_events_per_s;
        for row in &mut whole.rows {
            row.rate_per_s = row.run_rate_per_s;
        }
        whole
    }
}
