//! `tcptrace transitions --json`: one object per interval (JSON Lines), the last one with
//! `"final": true`. Counts are cumulative since the start; `interval_count` beside them.

use std::{
    collections::BTreeMap,
    io::{self, Write},
};

use serde::Serialize;

use crate::{
    aggregate::{
        fates::{FateCounts, FatesSnapshot},
        histogram::{HistogramSummary, TimeStats},
        snapshot::Snapshot,
    },
    core::clock::WallClock,
    render::transitions::text::{request_rows, verdict},
};

#[derive(Serialize)]
struct Interval<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "final")]
    is_final: bool,
    /// When the snapshot was taken, RFC 3339 UTC.
    time: String,
    elapsed_ns: u64,
    interval_ns: u64,
    events: u64,
    events_interval: u64,
    events_per_s: f64,
    signals: u64,
    lost_events: u64,
    ring_buffer_full: u64,
    skipped_by_kernel: u64,
    invalid_records: u64,
    sockets: Sockets,
    transitions: Vec<Row<'a>>,
    paths: Vec<Path<'a>>,
    paths_other: u64,
    request_sockets: Option<Vec<Counted>>,
    /// `null` when `skb:kfree_skb` is not traced (it could not attach, or a replay).
    request_socket_fates: Option<Fates>,
    kernel_check: Option<Check>,
    namespaces: Vec<Namespace>,
}

/// A count per fate, named as `Fate::name` says.
#[derive(Serialize)]
struct FateCountsJson {
    embryonic_reset: u64,
    listen_overflow: u64,
    closed_port: u64,
}

impl From<&FateCounts> for FateCountsJson {
    fn from(c: &FateCounts) -> Self {
        Self {
            embryonic_reset: c[0],
            listen_overflow: c[1],
            closed_port: c[2],
        }
    }
}

#[derive(Serialize)]
struct Fates {
    listeners: Vec<ListenerFatesJson>,
    other_listeners: FateCountsJson,
    /// In tcptrace's own namespace: what its kernel counters (`request_sockets`) count.
    own_namespace: FateCountsJson,
    total: FateCountsJson,
}

#[derive(Serialize)]
struct ListenerFatesJson {
    netns: u32,
    own: bool,
    /// `null` when its packets came to several local addresses.
    local: Option<String>,
    port: u16,
    pid: Option<u32>,
    comm: Option<String>,
    count: FateCountsJson,
    interval_count: FateCountsJson,
    peers: Vec<PeerFates>,
    other_peers: FateCountsJson,
}

#[derive(Serialize)]
struct PeerFates {
    addr: String,
    count: FateCountsJson,
}

fn fates(f: &FatesSnapshot) -> Fates {
    Fates {
        listeners: f
            .listeners
            .iter()
            .map(|l| ListenerFatesJson {
                netns: l.netns,
                own: l.own,
                local: l.laddr.map(|a| a.to_string()),
                port: l.port,
                pid: l.pid,
                comm: l.pid.map(|_| l.comm.to_string()),
                count: (&l.counts).into(),
                interval_count: (&l.interval).into(),
                peers: l
                    .peers
                    .iter()
                    .map(|(addr, counts)| PeerFates {
                        addr: addr.to_string(),
                        count: counts.into(),
                    })
                    .collect(),
                other_peers: (&l.other_peers).into(),
            })
            .collect(),
        other_listeners: (&f.other_listeners).into(),
        own_namespace: (&f.own_namespace).into(),
        total: (&f.total).into(),
    }
}

#[derive(Serialize)]
struct Namespace {
    /// The inode, as in `readlink /proc/PID/ns/net`; 0 when unknown, -1 for the ones past
    /// the cap, summed.
    netns: i64,
    own: bool,
    transitions: u64,
    interval_transitions: u64,
    active_opens: u64,
    passive_opens: u64,
    abnormal: u64,
}

#[derive(Serialize)]
struct Sockets {
    tracked: u64,
    max: u64,
    forgotten: u64,
    first_seen_midlife: u64,
    replaced_unclosed: u64,
    gaps: u64,
    signals_unmatched: u64,
}

#[derive(Serialize)]
struct Times {
    min: u64,
    p50: u64,
    p90: u64,
    p99: u64,
    max: u64,
    mean: u64,
}

impl From<&TimeStats> for Times {
    fn from(s: &TimeStats) -> Self {
        Self {
            min: s.min,
            p50: s.p50,
            p90: s.p90,
            p99: s.p99,
            max: s.max,
            mean: s.mean,
        }
    }
}

#[derive(Serialize)]
struct Bucket {
    lo_us: u64,
    hi_us: u64,
    count: u64,
}

fn buckets(h: &HistogramSummary) -> Vec<Bucket> {
    h.log2
        .iter()
        .map(|b| Bucket {
            lo_us: b.lo_us,
            hi_us: b.hi_us,
            count: b.count,
        })
        .collect()
}

#[derive(Serialize)]
struct Row<'a> {
    from: &'static str,
    to: &'static str,
    path: &'static str,
    abnormal: bool,
    /// `to` is TIME_WAIT, inferred from a →CLOSE.
    inferred: bool,
    unusual: bool,
    count: u64,
    interval_count: u64,
    rate_per_s: f64,
    /// Transitions without a time in the from-state (socket first seen in it).
    untimed: u64,
    cause: BTreeMap<&'static str, u64>,
    /// Of the timeouts, per timer that gave up (`syn_retries`, …), where the kernel told.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    timers: BTreeMap<&'static str, u64>,
    /// Of the resets sent, per reason the kernel reported (`tcp_abort_on_linger`, …).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    reset_reasons: BTreeMap<&'a str, u64>,
    /// Abnormal closes per number of retransmissions made in the from-state.
    retransmits: BTreeMap<String, u64>,
    time_in_from_ns: Option<Times>,
    histogram: Vec<Bucket>,
}

#[derive(Serialize)]
struct Path<'a> {
    path: &'a str,
    complete: bool,
    count: u64,
    lifetime_ns: Option<Times>,
    histogram: Vec<Bucket>,
}

#[derive(Serialize)]
struct Counted {
    name: &'static str,
    count: u64,
    interval_count: u64,
}

#[derive(Serialize)]
struct Check {
    comparable: bool,
    netns_unknown: u64,
    rows: Vec<CheckRow>,
}

#[derive(Serialize)]
struct CheckRow {
    counter: &'static str,
    transitions: &'static str,
    kernel: u64,
    seen: u64,
    difference: i64,
    verdict: String,
}

/// One interval's object, on one line.
/// One interval's object; `clock` gives its wall-clock `time`.
pub fn interval(
    out: &mut impl Write,
    snap: &Snapshot,
    is_final: bool,
    clock: &WallClock,
) -> io::Result<()> {
    let namespaces = snap
        .namespaces
        .rows
        .iter()
        .map(|r| Namespace {
            netns: i64::from(r.netns),
            own: r.own,
            transitions: r.counts.transitions,
            interval_transitions: r.interval_transitions,
            active_opens: r.counts.active_opens,
            passive_opens: r.counts.passive_opens,
            abnormal: r.counts.abnormal,
        })
        .chain((snap.namespaces.other.transitions > 0).then(|| {
            let o = &snap.namespaces.other;
            Namespace {
                netns: -1,
                own: false,
                transitions: o.transitions,
                interval_transitions: 0,
                active_opens: o.active_opens,
                passive_opens: o.passive_opens,
                abnormal: o.abnormal,
            }
        }))
        .collect();
    let object = Interval {
        kind: "interval",
        is_final,
        time: clock.rfc3339(snap.at_ns),
        elapsed_ns: snap.elapsed_ns,
        interval_ns: snap.interval_ns,
        events: snap.transitions,
        events_interval: snap.interval_transitions,
        events_per_s: round(snap.events_per_s),
        signals: snap.signals,
        lost_events: snap.losses.lost_events(),
        ring_buffer_full: snap.losses.kernel.ringbuf_full,
        skipped_by_kernel: snap.losses.kernel.skipped_by_kernel,
        invalid_records: snap.losses.invalid_records,
        sockets: Sockets {
            tracked: snap.sockets.tracked,
            max: snap.sockets.max,
            forgotten: snap.sockets.forgotten,
            first_seen_midlife: snap.sockets.first_seen_midlife,
            replaced_unclosed: snap.sockets.replaced_unclosed,
            gaps: snap.sockets.gaps,
            signals_unmatched: snap.sockets.signals_unmatched,
        },
        transitions: snap
            .rows
            .iter()
            .map(|r| Row {
                from: r.from.name(),
                to: r.to.name(),
                path: r.side.name(),
                abnormal: r.abnormal,
                inferred: r.inferred,
                unusual: r.unusual,
                count: r.count,
                interval_count: r.interval_count,
                rate_per_s: round(r.rate_per_s),
                untimed: r.untimed,
                cause: r.causes.iter().map(|(c, n)| (c.name(), *n)).collect(),
                timers: r.timers.iter().map(|(t, n)| (t.name(), *n)).collect(),
                reset_reasons: r
                    .reset_reasons
                    .iter()
                    .map(|(reason, n)| (reason.as_str(), *n))
                    .collect(),
                retransmits: r
                    .retransmits
                    .iter()
                    .map(|(k, n)| (k.to_string(), *n))
                    .collect(),
                time_in_from_ns: r.time.stats.as_ref().map(Times::from),
                histogram: buckets(&r.time),
            })
            .collect(),
        paths: snap
            .signatures
            .iter()
            .map(|s| Path {
                path: &s.path,
                complete: s.complete,
                count: s.count,
                lifetime_ns: s.lifetime.stats.as_ref().map(Times::from),
                histogram: buckets(&s.lifetime),
            })
            .collect(),
        paths_other: snap.signatures_other,
        request_sockets: snap.request_sockets.as_ref().map(|rs| {
            request_rows(rs)
                .into_iter()
                .map(|(name, count, interval_count)| Counted {
                    name,
                    count,
                    interval_count,
                })
                .collect()
        }),
        request_socket_fates: snap.fates.as_ref().map(fates),
        namespaces,
        kernel_check: snap.witness.as_ref().map(|w| Check {
            comparable: w.comparable,
            netns_unknown: w.netns_unknown,
            rows: w
                .rows
                .iter()
                .map(|r| CheckRow {
                    counter: r.counter,
                    transitions: r.stream,
                    kernel: r.kernel,
                    seen: r.seen,
                    difference: r.difference(),
                    verdict: if w.comparable {
                        verdict(r.difference())
                    } else {
                        "not comparable".to_owned()
                    },
                })
                .collect(),
        }),
    };
    serde_json::to_writer(&mut *out, &object)?;
    out.write_all(b"\n")
}

/// Rates to three decimals: enough to read, and stable across platforms in golden files.
fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}
