//! The aggregation core of `tcptrace transitions`: fed typed transitions, signals and kernel
//! counters, it keeps per-transition counts and time-in-state histograms, each transition placed
//! on its path, the causes of abnormal closes, path signatures, and the kernel's own view to
//! check against. Pure: no clock, no file, no BPF; time comes in as arguments.

pub mod breakdowns;
pub mod causes;
pub mod exemplars;
pub mod fates;
#[cfg(test)]
pub(crate) mod fed;
pub mod histogram;
pub mod namespaces;
pub mod paths;
pub mod signatures;
pub mod snapshot;

use std::collections::HashMap;

use self::{
    breakdowns::{Breakdowns, MAX_KEYS_PER_ROW, Merged},
    causes::{Cause, SignalMemo, Timer, Verdict},
    exemplars::{DEFAULT_EXEMPLARS, Exemplar, Exemplars},
    fates::Fates,
    histogram::TimeHistogram,
    namespaces::Namespaces,
    paths::{is_diagram_edge, place},
    signatures::{PathKey, Signatures},
    snapshot::{
        RETRANSMIT_SLOTS, RequestSockets, RowSnapshot, Snapshot, SocketStats, WitnessCheck,
        WitnessRow,
    },
};
use crate::core::{
    counters::TcpCounters,
    event::{PacketDrop, Signal, SignalKind, Transition},
    hash::FastHash,
    losses::Losses,
    reset_reason::ResetReasons,
    sockets::{Entry, TableStats},
    state::{Side, TcpState},
};

const STATES: usize = TcpState::ALL.len();
const ROWS: usize = Side::ALL.len() * STATES * STATES * 2;
/// Signals of sockets not tracked (yet) kept until the end of their wake-up.
const MAX_PENDING_SIGNALS: usize = 65_536;
/// Distinct path signatures with their own row.
const MAX_SIGNATURES: usize = 256;

#[derive(Clone, Debug)]
pub struct Config {
    /// tcptrace's own network namespace: the kernel counters are this one's.
    pub own_netns: u32,
    /// Transitions are filtered, so the kernel's counters (which are not) cannot be compared.
    pub filtered: bool,
    pub top_signatures: usize,
    /// Keys shown per breakdown; the rest are summed as "other".
    pub top_keys: usize,
    /// Exemplar sockets kept per transition, of each kind (slowest, most recent); 0: none.
    pub exemplars: usize,
    /// Count each transition by port, process, remote and namespace too (`--by`, the
    /// full-screen view); off, those tables are not kept: they cost a fifth of the pipeline.
    pub breakdowns: bool,
    /// Also count each time in state into fixed and exponential buckets (an exporter's
    /// histograms); off, the renderers' percentiles cost nothing more.
    pub buckets: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            own_netns: 0,
            filtered: false,
            top_signatures: 10,
            top_keys: 10,
            exemplars: DEFAULT_EXEMPLARS,
            breakdowns: false,
            buckets: false,
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Row {
    count: u64,
    count_at_snapshot: u64,
    /// Transitions whose time in the from-state is unknown (socket first seen in it).
    untimed: u64,
    histogram: Option<Box<TimeHistogram>>,
    causes: [u64; Cause::COUNT],
    /// Of the timeouts, per timer (when the kernel said which).
    timers: [u64; Timer::ALL.len()],
    /// Of the resets sent, per reason the kernel reported.
    reset_reasons: Vec<(u16, u64)>,
    /// Closes per number of retransmissions made in the from-state (last slot: that many or
    /// more).
    retransmits: [u64; RETRANSMIT_SLOTS],
    /// Boxed: most of the rows never see a transition.
    detail: Option<Box<RowDetail>>,
}

/// What a row keeps of the sockets behind its count.
#[derive(Clone, Debug, Default)]
struct RowDetail {
    exemplars: Exemplars,
    breakdowns: Breakdowns,
}

impl Row {
    fn count_cause(&mut self, verdict: &Verdict) {
        self.causes[verdict.cause as usize] += 1;
        if let Some(timer) = verdict.timer {
            self.timers[timer as usize] += 1;
        }
        if let Some(reason) = verdict.reset_reason {
            match self.reset_reasons.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, n)) => *n += 1,
                None => self.reset_reasons.push((reason, 1)),
            }
        }
    }
}

/// What the aggregation keeps in each socket's entry of the stream's table: the path it took
/// so far and the signals seen on it. `None` until one of its transitions reaches the
/// aggregation.
pub type SocketState = Option<Followed>;

#[derive(Clone, Copy, Debug, Default)]
pub struct Followed {
    path: PathKey,
    signals: SignalMemo,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Witness {
    active_opens: u64,
    passive_opens: u64,
    estab_resets: u64,
    /// Of the above, transitions whose namespace the kernel did not report.
    netns_unknown: u64,
}

pub struct Aggregator {
    config: Config,
    rows: Vec<Row>,
    /// Signals of sockets not tracked yet: a reset may reach a socket first seen mid-life
    /// before its first transition.
    pending: HashMap<u64, SignalMemo, FastHash>,
    /// Abnormal closes with no cause seen yet, by socket → row: the kernel traces the RST
    /// that `tcp_disconnect` sends (SO_LINGER 0, unread data) right *after* the →CLOSE. Settled
    /// by that signal, or as `other` at the end of the wake-up.
    /// With the time of the close, which names its exemplar.
    undetermined: HashMap<u64, (usize, u64), FastHash>,
    /// The names of the kernel's reset reasons.
    reset_reasons: ResetReasons,
    namespaces: Namespaces,
    /// `None` unless the program on `skb:kfree_skb` is attached.
    fates: Option<Fates>,
    signatures: Signatures,
    witness: Witness,
    kernel_first: Option<TcpCounters>,
    kernel_last: Option<TcpCounters>,
    kernel_at_snapshot: Option<TcpCounters>,
    synack_retransmits: u64,
    synack_at_snapshot: u64,
    losses: Losses,
    table: TableStats,
    transitions: u64,
    transitions_at_snapshot: u64,
    signals: u64,
    signals_unmatched: u64,
    first_seen_midlife: u64,
    gaps: u64,
    start_ns: Option<u64>,
    last_snapshot_ns: Option<u64>,
}

fn row_index(side: Side, from: TcpState, to: TcpState, abnormal: bool) -> usize {
    (((side as usize * STATES) + (from as usize - 1)) * STATES + (to as usize - 1)) * 2
        + usize::from(abnormal)
}

fn row_key(index: usize) -> (Side, TcpState, TcpState, bool) {
    let abnormal = index % 2 == 1;
    let rest = index / 2;
    let to = TcpState::ALL[rest % STATES];
    let from = TcpState::ALL[(rest / STATES) % STATES];
    let side = Side::ALL[rest / (STATES * STATES)];
    (side, from, to, abnormal)
}

/// The order in which states are met along the diagram's paths, for rows a reader can follow.
fn flow_rank(state: TcpState) -> u8 {
    use TcpState::*;
    match state {
        Close => 0,
        Listen => 1,
        SynSent => 2,
        SynRecv => 3,
        NewSynRecv => 4,
        Established => 5,
        FinWait1 => 6,
        FinWait2 => 7,
        Closing => 8,
        TimeWait => 9,
        CloseWait => 10,
        LastAck => 11,
    }
}

impl Aggregator {
    pub fn new(config: Config) -> Self {
        Self {
            rows: vec![Row::default(); ROWS],
            pending: HashMap::default(),
            undetermined: HashMap::default(),
            reset_reasons: ResetReasons::default(),
            namespaces: Namespaces::default(),
            fates: None,
            signatures: Signatures::new(MAX_SIGNATURES),
            witness: Witness::default(),
            kernel_first: None,
            kernel_last: None,
            kernel_at_snapshot: None,
            synack_retransmits: 0,
            synack_at_snapshot: 0,
            losses: Losses::default(),
            table: TableStats::default(),
            transitions: 0,
            transitions_at_snapshot: 0,
            signals: 0,
            signals_unmatched: 0,
            first_seen_midlife: 0,
            gaps: 0,
            start_ns: None,
            last_snapshot_ns: None,
            config,
        }
    }

    /// The namespace whose kernel counters are read, known once tracing starts; `filtered`:
    /// the stream is filtered, so the counters (which are not) cannot be compared.
    pub fn set_own_netns(&mut self, own_netns: u32, filtered: bool) {
        self.config.own_netns = own_netns;
        self.config.filtered = filtered;
    }

    /// The names of the traced kernel's reset reasons, for the reasons that resets carry.
    pub fn set_reset_reasons(&mut self, reasons: ResetReasons) {
        self.reset_reasons = reasons;
    }

    /// The packets dropped for request sockets' fates and closed ports are traced: from now on
    /// the snapshot has their breakdown (else it says it has none).
    pub fn trace_fates(&mut self) {
        self.fates.get_or_insert_with(Fates::default);
    }

    /// A packet dropped for a request socket's fate or a closed port.
    pub fn feed_drop(&mut self, drop: &PacketDrop) {
        let own = drop.netns == 0 || drop.netns == self.config.own_netns;
        if let Some(fates) = &mut self.fates {
            fates.record(drop, own);
        }
    }

    /// Starts the clock of rates and elapsed time.
    pub fn start(&mut self, now_ns: u64) {
        self.start_ns = Some(now_ns);
        self.last_snapshot_ns = Some(now_ns);
    }

    fn in_own_netns(&mut self, netns: u32) -> bool {
        if netns == 0 {
            // Not reported by the kernel: assumed ours, and said so beside the check.
            self.witness.netns_unknown += 1;
            true
        } else {
            netns == self.config.own_netns
        }
    }

    fn count_witness(&mut self, t: &Transition) {
        use TcpState::*;
        match (t.from, t.to) {
            (Close, SynSent) if self.in_own_netns(t.netns) => self.witness.active_opens += 1,
            (Listen, SynRecv) if self.in_own_netns(t.netns) => self.witness.passive_opens += 1,
            (Established | CloseWait, Close) if self.in_own_netns(t.netns) => {
                self.witness.estab_resets += 1
            }
            _ => {}
        }
    }

    /// One transition that passed the filter, with its socket's entry in the stream's table
    /// (which says how and when the socket was born).
    pub fn feed_transition(&mut self, t: &Transition, socket: &mut Entry<SocketState>) {
        self.transitions += 1;
        self.count_witness(t);
        if t.first_seen_midlife {
            self.first_seen_midlife += 1;
        }
        let pending = if self.pending.is_empty() {
            None
        } else {
            self.pending.remove(&t.sk)
        };
        let birth = Side::of_birth(t.from, t.to);
        if birth.is_some()
            && let Some((index, _)) = self.undetermined.remove(&t.sk)
        {
            // A new socket at the address: the earlier close's reset will not come any more
            // (it is sent right after the close, before the memory can be reused).
            self.rows[index].causes[Cause::Other as usize] += 1;
        }
        let (side, born_ns, gap) = (socket.side(), socket.born_ns(), socket.gap());
        let followed = socket.ext.get_or_insert_with(Followed::default);
        match birth {
            Some(_) => {
                // Signals seen at the address before the birth stay: they may be this
                // socket's (forgotten below if older than the birth).
                followed.path = PathKey::born(t.to);
            }
            None if followed.path == PathKey::default() => {
                // The first of its transitions the aggregation sees, and not its birth: what
                // came before is not known.
                followed.path = PathKey::midlife(t.from);
            }
            None if gap => {
                self.gaps += 1;
                followed.path.push_gap(t.from);
            }
            None => {}
        }
        let socket = followed;
        if let Some(memo) = pending {
            socket.signals.merge(&memo);
        }
        if birth.is_some() {
            socket.signals.forget_before(t.ts_ns);
        }

        // A close the kernel reported an error for is abnormal whatever the state (a LAST_ACK
        // whose FIN retransmissions ran out, say), as one after a reset is.
        let kernel_error = t.close.is_some_and(|close| close.err != 0);
        let placement = place(t.from, t.to, socket.signals.reset_seen() || kernel_error);
        self.namespaces.record(t, placement.abnormal);
        let buckets = self.config.buckets;
        let row = &mut self.rows[row_index(side, t.from, placement.to, placement.abnormal)];
        row.count += 1;
        let detail = row.detail.get_or_insert_with(Box::default);
        if self.config.breakdowns {
            detail
                .breakdowns
                .record(side, t, placement.abnormal, MAX_KEYS_PER_ROW);
        }
        match t.time_in_from_ns {
            Some(ns) => row
                .histogram
                .get_or_insert_with(|| {
                    Box::new(if buckets {
                        TimeHistogram::with_buckets(3)
                    } else {
                        TimeHistogram::new(3)
                    })
                })
                .record(ns),
            None => row.untimed += 1,
        }
        let mut exemplar_cause = None;
        if placement.abnormal {
            let verdict = socket
                .signals
                .verdict(t.from, t.close.as_ref(), &self.reset_reasons);
            let retransmits = verdict.retransmits;
            exemplar_cause = Some(verdict.cause);
            row.retransmits[(retransmits as usize).min(RETRANSMIT_SLOTS - 1)] += 1;
            if verdict.cause == Cause::Other && t.to == TcpState::Close {
                let index = row_index(side, t.from, placement.to, placement.abnormal);
                if let Some((earlier, _)) = self.undetermined.insert(t.sk, (index, t.ts_ns)) {
                    self.rows[earlier].causes[Cause::Other as usize] += 1;
                }
            } else {
                row.count_cause(&verdict);
            }
        }
        if self.config.exemplars > 0
            && let Some(detail) =
                &mut self.rows[row_index(side, t.from, placement.to, placement.abnormal)].detail
        {
            detail
                .exemplars
                .record(Exemplar::of(t, exemplar_cause), self.config.exemplars);
        }
        if birth.is_none() {
            socket.path.push(placement.to);
        }
        if t.to == TcpState::Close {
            let lifetime = born_ns.map(|born| t.ts_ns.saturating_sub(born));
            self.signatures.record(socket.path, lifetime);
        }
    }

    /// A reset or retransmission, with its socket's entry when the stream's table has one.
    pub fn feed_signal(&mut self, signal: &Signal, socket: Option<&mut Entry<SocketState>>) {
        self.signals += 1;
        if signal.kind == SignalKind::SynAckRetransmit {
            // Its socket is the listener; the request socket itself is never tracked. Counted
            // in the namespace the kernel counters describe.
            if signal.netns == 0 || signal.netns == self.config.own_netns {
                self.synack_retransmits += 1;
            }
            return;
        }
        // Only a reset sent from CLOSE comes after its close (tcp_disconnect() sets CLOSE, then
        // sends it). A received reset is traced before tcp_done() closes the socket, and a reset
        // sent from any other state belongs to a newer socket at the same address: neither
        // explains an earlier close.
        if signal.kind == SignalKind::ResetSent
            && signal.state.is_none_or(|state| state == TcpState::Close)
            && let Some((index, close_ns)) = self.undetermined.remove(&signal.sk)
        {
            let row = &mut self.rows[index];
            row.count_cause(&Verdict::reset_sent(signal.reset_reason));
            if let Some(detail) = &mut row.detail {
                detail
                    .exemplars
                    .settle(signal.sk, close_ns, Cause::ResetSent);
            }
            return;
        }
        if let Some(socket) = socket
            && let state = socket.state()
            && let Some(followed) = &mut socket.ext
        {
            followed.signals.record(signal, Some(state));
        } else if self.pending.len() < MAX_PENDING_SIGNALS || self.pending.contains_key(&signal.sk)
        {
            self.pending
                .entry(signal.sk)
                .or_default()
                .record(signal, None);
        } else {
            self.signals_unmatched += 1;
        }
    }

    /// The wake-up's transitions were all fed: signals still pending concern sockets that are
    /// not tracked (filtered out, or closed before).
    pub fn end_batch(&mut self) {
        self.pending.clear();
        self.settle_undetermined();
    }

    /// Abnormal closes still without a cause get none: `other`.
    fn settle_undetermined(&mut self) {
        for (_, (index, _)) in self.undetermined.drain() {
            self.rows[index].causes[Cause::Other as usize] += 1;
        }
    }

    /// A reading of the kernel counters; the first one is the baseline of the window.
    pub fn feed_kernel_counters(&mut self, counters: TcpCounters) {
        if self.kernel_first.is_none() {
            self.kernel_first = Some(counters);
            self.kernel_at_snapshot = Some(counters);
        }
        self.kernel_last = Some(counters);
    }

    /// What the stream lost so far, and its table's counts.
    pub fn set_stream(&mut self, losses: Losses, table: TableStats) {
        self.losses = losses;
        self.table = table;
    }

    /// The state as of `now_ns`; also starts the next interval.
    pub fn snapshot(&mut self, now_ns: u64) -> Snapshot {
        self.settle_undetermined();
        let start = *self.start_ns.get_or_insert(now_ns);
        let last = self.last_snapshot_ns.replace(now_ns).unwrap_or(start);
        let interval_ns = now_ns.saturating_sub(last);
        let interval_s = interval_ns as f64 / 1e9;
        let rate = |delta: u64| {
            if interval_ns == 0 {
                0.0
            } else {
                delta as f64 / interval_s
            }
        };
        let elapsed_ns = now_ns.saturating_sub(start);
        let run_rate = |count: u64| {
            if elapsed_ns == 0 {
                0.0
            } else {
                count as f64 / (elapsed_ns as f64 / 1e9)
            }
        };

        let mut rows = Vec::new();
        let mut all_breakdowns = Merged::default();
        for (index, row) in self.rows.iter_mut().enumerate() {
            if row.count == 0 {
                continue;
            }
            let (side, from, to, abnormal) = row_key(index);
            let delta = row.count - row.count_at_snapshot;
            row.count_at_snapshot = row.count;
            let (exemplars, breakdowns) = match &mut row.detail {
                Some(detail) => (
                    detail.exemplars.snapshot(),
                    if self.config.breakdowns {
                        detail
                            .breakdowns
                            .snapshot(self.config.top_keys, &mut all_breakdowns)
                    } else {
                        Vec::new()
                    },
                ),
                None => Default::default(),
            };
            rows.push(RowSnapshot {
                side,
                from,
                to,
                abnormal,
                inferred: to == TcpState::TimeWait,
                unusual: !abnormal && !is_diagram_edge(from, to) && to != TcpState::TimeWait,
                count: row.count,
                interval_count: delta,
                rate_per_s: rate(delta),
                run_rate_per_s: run_rate(row.count),
                untimed: row.untimed,
                time: row
                    .histogram
                    .as_ref()
                    .map(|h| h.summary())
                    .unwrap_or_default(),
                causes: if abnormal {
                    Cause::ALL
                        .iter()
                        .filter(|c| row.causes[**c as usize] > 0)
                        .map(|c| (*c, row.causes[*c as usize]))
                        .collect()
                } else {
                    Vec::new()
                },
                timers: Timer::ALL
                    .iter()
                    .filter(|t| row.timers[**t as usize] > 0)
                    .map(|t| (*t, row.timers[*t as usize]))
                    .collect(),
                reset_reasons: {
                    let mut reasons: Vec<(String, u64)> = row
                        .reset_reasons
                        .iter()
                        .map(|(reason, n)| {
                            let name = self
                                .reset_reasons
                                .name(*reason)
                                .map_or_else(|| format!("reason_{reason}"), str::to_owned);
                            (name, *n)
                        })
                        .collect();
                    reasons.sort();
                    reasons
                },
                retransmits: if abnormal {
                    row.retransmits
                        .iter()
                        .enumerate()
                        .filter(|(n, count)| *n > 0 && **count > 0)
                        .map(|(n, count)| (n as u32, *count))
                        .collect()
                } else {
                    Vec::new()
                },
                exemplars,
                breakdowns,
            });
        }

        rows.sort_by_key(|r| (r.abnormal, r.side, flow_rank(r.from), flow_rank(r.to)));

        let request_sockets = self.kernel_last.map(|now| {
            let first = self.kernel_first.unwrap_or(now);
            let total = now.since(&first);
            let interval = now.since(&self.kernel_at_snapshot.unwrap_or(first));
            RequestSockets {
                total,
                interval,
                synack_retransmits: self.synack_retransmits,
                synack_retransmits_interval: self.synack_retransmits - self.synack_at_snapshot,
            }
        });
        self.kernel_at_snapshot = self.kernel_last;
        self.synack_at_snapshot = self.synack_retransmits;

        let witness = self.kernel_first.zip(self.kernel_last).map(|(first, now)| {
            let k = now.since(&first);
            let w = self.witness;
            WitnessCheck {
                comparable: !self.config.filtered,
                netns_unknown: w.netns_unknown,
                rows: vec![
                    WitnessRow {
                        counter: "TcpActiveOpens",
                        stream: "CLOSE->SYN_SENT",
                        kernel: k.active_opens,
                        seen: w.active_opens,
                    },
                    WitnessRow {
                        counter: "TcpPassiveOpens",
                        stream: "LISTEN->SYN_RECV",
                        kernel: k.passive_opens,
                        seen: w.passive_opens,
                    },
                    WitnessRow {
                        counter: "TcpEstabResets",
                        stream: "ESTABLISHED->CLOSE + CLOSE_WAIT->CLOSE",
                        kernel: k.estab_resets,
                        seen: w.estab_resets,
                    },
                ],
            }
        });

        let interval_transitions = self.transitions - self.transitions_at_snapshot;
        self.transitions_at_snapshot = self.transitions;
        Snapshot {
            at_ns: now_ns,
            elapsed_ns: now_ns.saturating_sub(start),
            interval_ns,
            transitions: self.transitions,
            interval_transitions,
            events_per_s: rate(interval_transitions),
            run_events_per_s: run_rate(self.transitions),
            signals: self.signals,
            losses: self.losses,
            sockets: SocketStats {
                tracked: self.table.tracked,
                max: self.table.max,
                forgotten: self.table.forgotten,
                first_seen_midlife: self.first_seen_midlife,
                replaced_unclosed: self.table.replaced_unclosed,
                gaps: self.gaps,
                signals_unmatched: self.signals_unmatched,
            },
            rows,
            signatures: self.signatures.top(self.config.top_signatures),
            signatures_other: self.signatures.other(),
            request_sockets,
            witness,
            namespaces: self.namespaces.snapshot(self.config.own_netns),
            fates: self
                .fates
                .as_mut()
                .map(|fates| fates.snapshot(self.config.own_netns)),
            breakdowns: if self.config.breakdowns {
                all_breakdowns.finish(self.config.top_keys)
            } else {
                Vec::new()
            },
        }
    }
}

#[cfg(test)]
mod tests;
