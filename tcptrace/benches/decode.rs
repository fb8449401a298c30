//! Decoding throughput on a synthetic stream shaped like a connection storm's: both sides of
//! short loopback connections, a quarter IPv6, every record as the kernel writes it.
//! `cargo bench -p tcptrace` (no root); `cargo xtask bench` reports it as events per second.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tcptrace::{
    aggregate::{Aggregator, Config, SocketState},
    core::{
        decode::{decode, encode},
        event::Record,
        pipeline::{Output, Pipeline, PipelineConfig},
    },
};
use tcptrace_ebpf::{Event, kind};

/// Records per iteration: about what one ring-buffer wake-up delivers under a storm.
const EVENTS: usize = 8192;

/// (old, new) kernel states of one connection with an orderly close, both sides, and whether
/// the step is the server's (the accepted child) rather than the client's.
const CONNECTION: [(u16, u16, bool); 10] = [
    (7, 2, false), // CLOSE → SYN_SENT
    (2, 1, false), // SYN_SENT → ESTABLISHED
    (10, 3, true), // LISTEN → SYN_RECV
    (3, 1, true),  // SYN_RECV → ESTABLISHED
    (1, 4, false), // ESTABLISHED → FIN_WAIT1
    (1, 8, true),  // ESTABLISHED → CLOSE_WAIT
    (4, 5, false), // FIN_WAIT1 → FIN_WAIT2
    (8, 9, true),  // CLOSE_WAIT → LAST_ACK
    (5, 7, false), // FIN_WAIT2 → CLOSE
    (9, 7, true),  // LAST_ACK → CLOSE
];

/// Socket addresses recycle as the kernel's slab does, so the socket table stays small.
const SOCKET_SLOTS: u64 = 4096;

fn stream() -> Vec<[u8; size_of::<Event>()]> {
    let mut comm = [0u8; 16];
    comm[..9].copy_from_slice(b"tcp-storm");
    (0..EVENTS)
        .map(|i| {
            let (oldstate, newstate, server) = CONNECTION[i % CONNECTION.len()];
            let connection = (i / CONNECTION.len()) as u64;
            let ipv6 = connection % 4 == 3;
            let mut addr = [0u8; 16];
            if ipv6 {
                addr[15] = 1; // ::1
            } else {
                addr[..4].copy_from_slice(&[127, 0, 0, 1]);
            }
            let event = Event {
                ts_ns: 1_000_000 + i as u64 * 1_000,
                skaddr: 0xffff_8880_0000_0000
                    + (connection % SOCKET_SLOTS) * 0x1000
                    + u64::from(server) * 0x800,
                saddr: addr,
                daddr: addr,
                comm,
                tgid: 4242,
                netns: 4_026_531_840,
                sport: if server {
                    8080
                } else {
                    32_768 + (connection % 28_000) as u16
                },
                dport: if server {
                    32_768 + (connection % 28_000) as u16
                } else {
                    8080
                },
                family: if ipv6 { 10 } else { 2 },
                kind: kind::TRANSITION,
                oldstate,
                newstate,
                // As the probe fills them: read at every →CLOSE (an orderly one: no error).
                close_flags: if newstate == 7 {
                    tcptrace_ebpf::close::DETAILS
                } else {
                    0
                },
                ..Event::empty()
            };
            encode(&event)
        })
        .collect()
}

fn decode_stream(c: &mut Criterion) {
    let records = stream();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("synthetic_stream", |b| {
        b.iter(|| {
            let mut transitions = 0u64;
            for record in &records {
                if let Ok(Record::Transition(t)) = decode(black_box(record)) {
                    transitions += u64::from(t.lport);
                }
            }
            transitions
        })
    });
    group.finish();
}

/// The userspace hot path of `tcptrace transitions`: decode, the per-socket times and owners,
/// the port fill, and the aggregation into per-transition histograms, paths and signatures.
fn decode_and_aggregate(c: &mut Criterion) {
    let records = stream();
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.bench_function("decode_fill_aggregate", |b| {
        // The same Pipeline the live loop and the replay run.
        let mut aggregator = Aggregator::new(Config::default());
        let mut pipeline = Pipeline::<SocketState>::new(PipelineConfig::default());
        b.iter(|| {
            for record in &records {
                pipeline.push_bytes(black_box(record), &mut |output| match output {
                    Output::Transition(t, socket) => aggregator.feed_transition(t, socket),
                    Output::Signal(s, socket) => aggregator.feed_signal(s, socket),
                    Output::Drop(d) => aggregator.feed_drop(d),
                });
            }
            aggregator.end_batch();
        })
    });
    group.finish();
}

criterion_group!(benches, decode_stream, decode_and_aggregate);
criterion_main!(benches);
