//! The exposition of a known aggregation, in each format.

use std::{collections::HashMap, sync::Arc};

use prometheus_client::{encoding::prometheus_protobuf, registry::Registry};

use super::{
    CensusFacts, Exposition, ListenerQueue, Published, collector::ExpositionCollector, encode,
    namespaces::NamespaceLabels, negotiate::Format,
};
use crate::{
    aggregate::{Config, fed::Fed},
    census::{self, Context, tests::population},
    core::{event::Transition, state::TcpState},
};

/// Three client connections (SYN_SENT for 1 ms, 2 ms and 3 s), one of them refused.
fn exposition() -> Exposition {
    use TcpState::*;
    let mut fed = Fed::with(Config {
        buckets: true,
        ..Config::default()
    });
    fed.start(0);
    let mut ts = 1_000;
    for (sk, time_ns, to) in [
        (1, 1_000_000, Established),
        (2, 2_000_000, Established),
        (3, 3_000_000_000, Close),
    ] {
        let t = |ts, from, to, time| Transition {
            lport: 40_000 + sk as u16,
            rport: 80,
            netns: 7,
            time_in_from_ns: time,
            ..Transition::fixture(sk, ts, from, to)
        };
        fed.feed_transition(&t(ts, Close, SynSent, None));
        ts += time_ns;
        fed.feed_transition(&t(ts, SynSent, to, Some(time_ns)));
    }
    fed.end_batch();
    let snapshot = fed.agg.snapshot(ts);
    let mut labels = NamespaceLabels::new(100, u64::MAX);
    let namespaces = labels.export(&snapshot.namespaces, &HashMap::new(), ts);
    let sockets = population();
    let census = census::count(&sockets, None, &Context::default(), None);
    Exposition {
        stream: Some(Arc::new(Published {
            snapshot,
            programs_attached: 7,
        })),
        census: Some(Arc::new(CensusFacts {
            census,
            listeners: vec![ListenerQueue {
                port: 80,
                queued: 3,
                backlog: 4,
            }],
            port_range: None,
        })),
        census_age: Some(std::time::Duration::from_millis(250)),
        namespaces,
        labelled_ports: vec![80],
        max_processes: 20,
        version: "9.9.9",
        connections_refused: 0,
    }
}

fn text(format: Format) -> String {
    String::from_utf8(encode(format, Arc::new(exposition())).unwrap()).unwrap()
}

#[test]
fn prometheus_text_has_every_count_typed_and_labelled() {
    let out = text(Format::Text);
    for line in [
        "# TYPE tcptrace_transitions_total counter",
        "tcptrace_transitions_total{from=\"close\",to=\"syn_sent\",path=\"client\"} 3",
        "tcptrace_transitions_total{from=\"syn_sent\",to=\"established\",path=\"client\"} 2",
        "tcptrace_transitions_total{from=\"syn_sent\",to=\"close\",path=\"client\"} 1",
        "tcptrace_abnormal_closes_total{path=\"client\",from=\"syn_sent\",cause=\"other\"} 1",
        "tcptrace_abnormal_closes_total{path=\"client\",from=\"syn_sent\",cause=\"refused\"} 0",
        "# TYPE tcptrace_time_in_state_seconds histogram",
        "tcptrace_time_in_state_seconds_bucket{from=\"syn_sent\",to=\"established\",path=\"client\",le=\"0.001\"} 1",
        "tcptrace_time_in_state_seconds_bucket{from=\"syn_sent\",to=\"established\",path=\"client\",le=\"0.01\"} 2",
        "tcptrace_time_in_state_seconds_bucket{from=\"syn_sent\",to=\"close\",path=\"client\",le=\"1\"} 0",
        "tcptrace_time_in_state_seconds_bucket{from=\"syn_sent\",to=\"close\",path=\"client\",le=\"3\"} 1",
        "tcptrace_time_in_state_seconds_count{from=\"syn_sent\",to=\"established\",path=\"client\"} 2",
        "tcptrace_time_in_state_seconds_sum{from=\"syn_sent\",to=\"established\",path=\"client\"} 0.003",
        "tcptrace_netns_transitions_total{netns=\"7\"} 6",
        "tcptrace_netns_transitions_total{netns=\"other\"} 0",
        "tcptrace_sockets{state=\"close_wait\"} 2",
        "# TYPE tcptrace_census_age_seconds gauge",
        "tcptrace_census_age_seconds 0.25",
        "tcptrace_sockets{state=\"syn_recv\"} 1",
        "tcptrace_sockets{state=\"closing\"} 0",
        "tcptrace_close_wait_sockets{comm=\"-\"} 2",
        "tcptrace_listen_queue_fill_max_ratio 0.75",
        "tcptrace_listen_queue_length{port=\"80\"} 3",
        "tcptrace_programs_attached 7",
        "tcptrace_build_info{version=\"9.9.9\"} 1",
    ] {
        assert!(
            out.lines().any(|l| l == line || l == format!("{line}.0")),
            "missing {line:?} in\n{out}"
        );
    }
    // Every sample's family is typed.
    let typed: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    for sample in out.lines().filter(|l| !l.starts_with('#')) {
        let name = sample.split(['{', ' ']).next().unwrap();
        assert!(
            typed.iter().any(|t| name == *t
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(t))),
            "{sample} has no TYPE"
        );
    }
}

#[test]
fn openmetrics_ends_with_eof() {
    let out = text(Format::OpenMetrics);
    assert!(out.ends_with("# EOF\n"), "{out}");
    assert!(out.contains("# UNIT tcptrace_time_in_state_seconds seconds"));
}

#[test]
fn protobuf_carries_native_buckets_beside_the_classic_ones() {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ExpositionCollector(Arc::new(exposition()))));
    let families = prometheus_protobuf::encode(&registry).unwrap();
    let family = families
        .iter()
        .find(|f| f.name == "tcptrace_time_in_state_seconds")
        .unwrap();
    let established = family
        .metric
        .iter()
        .find(|m| m.label.iter().any(|l| l.value == "established"))
        .unwrap();
    let h = established.histogram.as_ref().unwrap();
    assert_eq!(h.sample_count, 2);
    assert_eq!(h.schema, 3);
    assert_eq!(h.bucket.len(), 20);
    // 1 ms and 2 ms: buckets ceil(8 log2 0.001) = -79 and -71, 8 apart: two spans of one.
    let spans: Vec<(i32, u32)> = h
        .positive_span
        .iter()
        .map(|s| (s.offset, s.length))
        .collect();
    assert_eq!(spans, [(-79, 1), (7, 1)]);
    assert_eq!(h.positive_delta, [1, 0]);
    // The same in the bytes of the wire.
    let bytes = encode(Format::Protobuf, Arc::new(exposition())).unwrap();
    assert!(bytes.len() > 100);
}
