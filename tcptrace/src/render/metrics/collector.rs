//! The metrics, built from an [`Exposition`] at scrape time by a prometheus-client
//! [`Collector`]: every series typed, base units, counters ending in `_total`, state label
//! values lowercase as node_exporter's `node_tcp_connection_states` has them. The families
//! follow the snapshot's own types (`Cause::ALL`, the census's states, the losses), so that a
//! new cause or state shows up here without a change.

use std::{collections::BTreeMap, sync::Arc};

use prometheus_client::{
    collector::Collector,
    encoding::{
        DescriptorEncoder, EncodeMetric, MetricEncoder, NativeHistogram, NativeHistogramBuckets,
    },
    metrics::{MetricType, counter::ConstCounter, exemplar::Exemplar, gauge::ConstGauge},
    registry::Unit,
};

use super::{
    exposition::{Exposition, ListenerQueue},
    namespaces::OTHER,
};
use crate::{
    aggregate::{
        causes::Cause,
        histogram::{Buckets, EDGES_NS, EXPONENTIAL_SCHEMA},
        namespaces::NamespaceCounts,
        snapshot::{RequestSockets, RowSnapshot},
    },
    census::{Finding, Holder, counts::SHOWN},
    core::{losses::Losses, state::TcpState},
};

/// A state as a label value: netstat's name in lowercase, as node_exporter writes it
/// (`time_wait`, `close_wait`, `syn_recv`).
pub fn state_label(state: TcpState) -> String {
    state.name().to_ascii_lowercase()
}

type Labels = Vec<(&'static str, String)>;
type NoExemplars = std::collections::HashMap<usize, Exemplar<Labels, f64>>;

/// Builds every family from the exposition it holds.
#[derive(Debug)]
pub struct ExpositionCollector(pub Arc<Exposition>);

fn counter_family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge_family(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    series: impl IntoIterator<Item = (Labels, f64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn transition_labels(row: &RowSnapshot) -> Labels {
    vec![
        ("from", state_label(row.from)),
        ("to", state_label(row.to)),
        ("path", row.side.name().to_owned()),
    ]
}

/// Native buckets as spans and deltas, the wire form of Prometheus's sparse buckets.
fn spans_and_deltas(buckets: &[(i32, u64)]) -> (Vec<(i32, u32)>, Vec<i64>) {
    let mut spans: Vec<(i32, u32)> = Vec::new();
    let mut deltas = Vec::with_capacity(buckets.len());
    let mut previous_index: Option<i32> = None;
    let mut previous_count = 0i64;
    for (index, count) in buckets {
        match previous_index {
            Some(previous) if *index == previous + 1 => {
                spans.last_mut().expect("a span is open").1 += 1;
            }
            Some(previous) => spans.push((index - previous - 1, 1)),
            None => spans.push((*index, 1)),
        }
        deltas.push(*count as i64 - previous_count);
        previous_count = *count as i64;
        previous_index = Some(*index);
    }
    (spans, deltas)
}

fn encode_histogram(
    family: &mut MetricEncoder<'_>,
    labels: &Labels,
    samples: u64,
    buckets: &Buckets,
) -> Result<(), std::fmt::Error> {
    let fixed: Vec<(f64, u64)> = EDGES_NS
        .iter()
        .map(|edge| *edge as f64 / 1e9)
        .chain([f64::INFINITY])
        .zip(buckets.fixed)
        .collect();
    let (spans, deltas) = spans_and_deltas(&buckets.exponential);
    let native = NativeHistogram {
        schema: EXPONENTIAL_SCHEMA,
        // Only a zero time falls here: the shortest time measured is a nanosecond.
        zero_threshold: 0.0,
        zero_count: buckets.zero,
        negative: NativeHistogramBuckets {
            spans: &[],
            deltas: &[],
        },
        positive: NativeHistogramBuckets {
            spans: &spans,
            deltas: &deltas,
        },
        created: None,
    };
    family
        .encode_family(labels)?
        .encode_histogram_with_native::<Labels>(
            buckets.sum_ns as f64 / 1e9,
            samples,
            &fixed,
            None::<&NoExemplars>,
            native,
        )
}

/// The request-socket fates, by label value, from the kernel's counters.
pub fn fates(request: &RequestSockets) -> [(&'static str, u64); 8] {
    let t = &request.total;
    [
        ("embryonic_reset", t.embryonic_rsts),
        ("listen_overflow", t.listen_overflows),
        ("listen_drop", t.listen_drops),
        ("request_queue_full_drop", t.req_q_full_drop),
        ("request_queue_full_syn_cookie", t.req_q_full_do_cookies),
        ("syn_cookie_sent", t.syncookies_sent),
        ("synack_retransmit", request.synack_retransmits),
        ("syn_retransmit", t.syn_retrans),
    ]
}

/// Every way a transition went missing, by label value.
pub fn losses(losses: &Losses) -> [(&'static str, u64); 3] {
    [
        ("ring_buffer_full", losses.kernel.ringbuf_full),
        ("skipped_by_kernel", losses.kernel.skipped_by_kernel),
        ("invalid_record", losses.invalid_records),
    ]
}

fn netns_series(e: &Exposition, value: fn(&NamespaceCounts) -> u64) -> Vec<(Labels, u64)> {
    e.namespaces
        .rows
        .iter()
        .map(|row| (vec![("netns", row.netns.to_string())], value(&row.counts)))
        .chain([(
            vec![("netns", OTHER.to_owned())],
            value(&e.namespaces.other),
        )])
        .collect()
}

impl ExpositionCollector {
    fn stream(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let e = &self.0;
        gauge_family(
            encoder,
            "tcptrace_programs_attached",
            "BPF programs of the probe attached to their tracepoints (0: not attached).",
            None,
            [(
                Vec::new(),
                f64::from(e.stream.as_ref().map_or(0, |p| p.programs_attached)),
            )],
        )?;
        let Some(published) = &e.stream else {
            return Ok(());
        };
        let snap = &published.snapshot;
        // Rows are unique per (path, from, to): an abnormal close keeps `to` = close, an
        // inferred TIME_WAIT shows as `to` = time_wait. Summing keeps that an invariant.
        let mut transitions: BTreeMap<Vec<(&'static str, String)>, u64> = BTreeMap::new();
        for row in &snap.rows {
            *transitions.entry(transition_labels(row)).or_default() += row.count;
        }
        counter_family(
            encoder,
            "tcptrace_transitions",
            "TCP state transitions, by from-state, to-state (time_wait: inferred, Linux reports \
             the hand-over to a timewait socket as close) and path (client: active open, \
             server: accepted, listener, unknown: first seen mid-life).",
            transitions,
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "tcptrace_time_in_state",
                "Time spent in the from-state, per transition (classic and native buckets).",
                Some(&Unit::Seconds),
                MetricType::Histogram,
            )?;
            let mut seen = std::collections::HashSet::new();
            for row in snap.rows.iter().filter(|row| row.time.samples > 0) {
                let labels = transition_labels(row);
                // The same labels twice would be two series of one name; rows are unique
                // (see above), and a duplicate is left out rather than exposed twice.
                if seen.insert(labels.clone()) {
                    encode_histogram(&mut family, &labels, row.time.samples, &row.time.buckets)?;
                }
            }
        }
        counter_family(
            encoder,
            "tcptrace_abnormal_closes",
            "Abnormal closes, by path, from-state and cause (refused, reset_received, \
             reset_sent, timeout, keepalive_timeout, connect_abandoned, other).",
            snap.rows.iter().filter(|row| row.abnormal).flat_map(|row| {
                Cause::ALL.iter().map(move |cause| {
                    let count = row
                        .causes
                        .iter()
                        .find(|(c, _)| c == cause)
                        .map_or(0, |(_, n)| *n);
                    (
                        vec![
                            ("path", row.side.name().to_owned()),
                            ("from", state_label(row.from)),
                            ("cause", cause.name().to_owned()),
                        ],
                        count,
                    )
                })
            }),
        )?;
        if let Some(request) = &snap.request_sockets {
            counter_family(
                encoder,
                "tcptrace_request_socket_events",
                "Fates of request sockets (half-open passive connections), from the kernel's \
                 TcpExt counters of tcptrace's network namespace since the exporter started, \
                 and SYN-ACK retransmits from tcp:tcp_retransmit_synack.",
                fates(request)
                    .into_iter()
                    .map(|(fate, n)| (vec![("fate", fate.to_owned())], n)),
            )?;
        }
        counter_family(
            encoder,
            "tcptrace_lost_events",
            "Transitions that never reached tcptrace, by reason.",
            losses(&snap.losses)
                .into_iter()
                .map(|(reason, n)| (vec![("reason", reason.to_owned())], n)),
        )?;
        counter_family(
            encoder,
            "tcptrace_sockets_forgotten",
            "Live sockets the per-socket table forgot (it was full): their later transitions \
             lack a time in state and a path.",
            [(Vec::new(), snap.losses.sockets_forgotten)],
        )?;
        gauge_family(
            encoder,
            "tcptrace_tracked_sockets",
            "Sockets followed by the per-socket table now.",
            None,
            [(Vec::new(), snap.sockets.tracked as f64)],
        )?;
        counter_family(
            encoder,
            "tcptrace_netns_transitions",
            "Transitions per network namespace (inode; 'other': past the namespace limit).",
            netns_series(e, |c| c.transitions),
        )?;
        counter_family(
            encoder,
            "tcptrace_netns_active_opens",
            "CLOSE -> SYN_SENT per network namespace.",
            netns_series(e, |c| c.active_opens),
        )?;
        counter_family(
            encoder,
            "tcptrace_netns_passive_opens",
            "LISTEN -> SYN_RECV per network namespace.",
            netns_series(e, |c| c.passive_opens),
        )?;
        counter_family(
            encoder,
            "tcptrace_netns_abnormal_closes",
            "Abnormal closes per network namespace.",
            netns_series(e, |c| c.abnormal),
        )?;
        gauge_family(
            encoder,
            "tcptrace_netns_overflow_namespaces",
            "Network namespaces counted under netns=\"other\" because the limit was reached.",
            None,
            [(Vec::new(), e.namespaces.overflowed as f64)],
        )?;
        gauge_family(
            encoder,
            "tcptrace_netns_info",
            "One series per labelled network namespace with a process in it: the pod UID and \
             container ID from that process's cgroup (empty when not in one).",
            None,
            e.namespaces.rows.iter().filter_map(|row| {
                let placement = row.placement.as_ref()?;
                Some((
                    vec![
                        ("netns", row.netns.to_string()),
                        ("pod_uid", placement.pod_uid.clone().unwrap_or_default()),
                        (
                            "container_id",
                            placement.container_id.clone().unwrap_or_default(),
                        ),
                    ],
                    1.0,
                ))
            }),
        )
    }

    fn census(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let e = &self.0;
        gauge_family(
            encoder,
            "tcptrace_census_up",
            "1 when this scrape has a socket census: its own, or the last to finish when its \
             own outlasted half the scrape timeout.",
            None,
            [(Vec::new(), if e.census.is_some() { 1.0 } else { 0.0 })],
        )?;
        let Some(facts) = &e.census else {
            return Ok(());
        };
        gauge_family(
            encoder,
            "tcptrace_census_age",
            "How long before this scrape its socket census began.",
            Some(&Unit::Seconds),
            e.census_age.map(|age| (Vec::new(), age.as_secs_f64())),
        )?;
        gauge_family(
            encoder,
            "tcptrace_sockets",
            "TCP sockets per state in tcptrace's network namespace (inet_diag, at the scrape; \
             request sockets counted as syn_recv), every state present.",
            None,
            SHOWN.iter().map(|state| {
                (
                    vec![("state", state_label(*state))],
                    facts.census.total.get(*state) as f64,
                )
            }),
        )?;
        // CLOSE_WAIT per process name: pids are left out (a label per pid is a series per
        // restart), and past the limit names are summed.
        let mut per_comm: BTreeMap<String, (u64, Option<u64>)> = BTreeMap::new();
        let mut close_wait: Vec<(String, u64, Option<u64>)> = Vec::new();
        for finding in &facts.census.findings {
            if let Finding::CloseWait {
                holder, count, age, ..
            } = finding
            {
                let comm = match holder {
                    Holder::Process { comm, .. } => comm.clone(),
                    _ => "-".to_owned(),
                };
                close_wait.push((comm, *count, age.map(|a| a.oldest_ns)));
            }
        }
        close_wait.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut distinct = 0;
        for (comm, count, oldest) in close_wait {
            let key = if per_comm.contains_key(&comm) {
                comm
            } else if distinct < e.max_processes {
                distinct += 1;
                comm
            } else {
                OTHER.to_owned()
            };
            let entry = per_comm.entry(key).or_default();
            entry.0 += count;
            if let Some(oldest) = oldest {
                entry.1 = Some(entry.1.map_or(oldest, |o| o.max(oldest)));
            }
        }
        gauge_family(
            encoder,
            "tcptrace_close_wait_sockets",
            "CLOSE_WAIT sockets per process name (the peer closed, the process never did).",
            None,
            per_comm
                .iter()
                .map(|(comm, (count, _))| (vec![("comm", comm.clone())], *count as f64)),
        )?;
        gauge_family(
            encoder,
            "tcptrace_close_wait_oldest",
            "Age of the oldest CLOSE_WAIT socket per process name, at least: timed from the \
             first scrape that listed it.",
            Some(&Unit::Seconds),
            per_comm.iter().filter_map(|(comm, (_, oldest))| {
                Some((vec![("comm", comm.clone())], (*oldest)? as f64 / 1e9))
            }),
        )?;
        let fill = |q: &ListenerQueue| {
            if q.backlog == 0 {
                0.0
            } else {
                f64::from(q.queued) / f64::from(q.backlog)
            }
        };
        gauge_family(
            encoder,
            "tcptrace_listen_queue_fill_max_ratio",
            "The fullest accept queue of any listener, as a fraction of its backlog (1: full, \
             new connections overflow).",
            None,
            [(
                Vec::new(),
                facts.listeners.iter().map(fill).fold(0.0, f64::max),
            )],
        )?;
        let labelled = || {
            facts
                .listeners
                .iter()
                .filter(|q| e.labelled_ports.contains(&q.port))
        };
        gauge_family(
            encoder,
            "tcptrace_listen_queue_length",
            "Connections waiting for accept() per listening port given to --port-label.",
            None,
            labelled().map(|q| (vec![("port", q.port.to_string())], f64::from(q.queued))),
        )?;
        gauge_family(
            encoder,
            "tcptrace_listen_queue_capacity",
            "Accept queue capacity (backlog) per listening port given to --port-label.",
            None,
            labelled().map(|q| (vec![("port", q.port.to_string())], f64::from(q.backlog))),
        )?;
        let busiest = facts.census.findings.iter().find_map(|f| match f {
            Finding::TimeWaitPorts { count, .. } => Some(*count),
            _ => None,
        });
        gauge_family(
            encoder,
            "tcptrace_ephemeral_ports_busiest_destination",
            "Ephemeral ports held by TIME_WAIT sockets toward the busiest destination (one \
             local address, one remote address and port).",
            None,
            [(Vec::new(), busiest.unwrap_or(0) as f64)],
        )?;
        if let Some(range) = facts.port_range {
            gauge_family(
                encoder,
                "tcptrace_ephemeral_ports_range_size",
                "Ports in net.ipv4.ip_local_port_range.",
                None,
                [(Vec::new(), f64::from(range.size()))],
            )?;
        }
        Ok(())
    }
}

impl Collector for ExpositionCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        gauge_family(
            &mut encoder,
            "tcptrace_build_info",
            "tcptrace's version; always 1.",
            None,
            [(vec![("version", self.0.version.to_owned())], 1.0)],
        )?;
        self.stream(&mut encoder)?;
        self.census(&mut encoder)?;
        counter_family(
            &mut encoder,
            "tcptrace_http_connections_refused",
            "HTTP connections turned away because --max-connections were open.",
            [(Vec::new(), self.0.connections_refused)],
        )
    }
}
