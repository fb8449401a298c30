//! The aggregator fed synthetic event sequences, as the kernel emits them.

use super::{fed::Fed, *};
use TcpState::*;

const MS: u64 = 1_000_000;
const NETNS: u32 = 4026531840;

/// Builds one socket's transitions with times in state derived from the timestamps, as
/// `lifecycle` derives them.
struct Life {
    sk: u64,
    last_ns: Option<u64>,
    netns: u32,
}

impl Life {
    fn new(sk: u64) -> Self {
        Self {
            sk,
            last_ns: None,
            netns: NETNS,
        }
    }

    fn go(&mut self, agg: &mut Fed, ts_ns: u64, from: TcpState, to: TcpState) {
        self.close(agg, ts_ns, from, to, None);
    }

    /// A transition with the close details the probe read (→CLOSE only).
    fn close(
        &mut self,
        agg: &mut Fed,
        ts_ns: u64,
        from: TcpState,
        to: TcpState,
        close: Option<crate::core::event::CloseDetails>,
    ) {
        let t = Transition {
            close,
            pid: Some(1),
            comm: "test".into(),
            lport: 1000,
            rport: 2000,
            time_in_from_ns: self.last_ns.map(|last| ts_ns - last),
            netns: self.netns,
            ..Transition::fixture(self.sk, ts_ns, from, to)
        };
        self.last_ns = Some(ts_ns);
        agg.feed_transition(&t);
    }
}

fn signal(sk: u64, ts_ns: u64, kind: SignalKind, state: TcpState) -> Signal {
    Signal {
        state: Some(state),
        netns: NETNS,
        ..Signal::fixture(sk, ts_ns, kind)
    }
}

fn aggregator() -> Fed {
    let mut agg = Fed::with(Config {
        own_netns: NETNS,
        ..Config::default()
    });
    agg.start(0);
    agg
}

fn row(snap: &Snapshot, side: Side, from: TcpState, to: TcpState, abnormal: bool) -> &RowSnapshot {
    snap.rows
        .iter()
        .find(|r| r.side == side && r.from == from && r.to == to && r.abnormal == abnormal)
        .unwrap_or_else(|| {
            panic!(
                "no {side:?} {from}->{to} abnormal={abnormal} in {:#?}",
                snap.rows
            )
        })
}

fn rows_of(snap: &Snapshot) -> Vec<(Side, TcpState, TcpState, bool, u64)> {
    snap.rows
        .iter()
        .map(|r| (r.side, r.from, r.to, r.abnormal, r.count))
        .collect()
}

/// A client that closes first: its path through FIN_WAIT2 ends in an inferred TIME_WAIT.
fn client_active_close(agg: &mut Fed, sk: u64, t0: u64, hold_ms: u64) {
    let mut c = Life::new(sk);
    c.go(agg, t0, Close, SynSent);
    c.go(agg, t0 + MS / 10, SynSent, Established);
    c.go(agg, t0 + MS / 10 + hold_ms * MS, Established, FinWait1);
    c.go(
        agg,
        t0 + MS / 10 + hold_ms * MS + 50_000,
        FinWait1,
        FinWait2,
    );
    c.go(agg, t0 + MS / 10 + hold_ms * MS + 60_000, FinWait2, Close);
}

/// The accepted child of the same connection: passive close after holding CLOSE_WAIT.
fn server_passive_close(agg: &mut Fed, sk: u64, t0: u64, hold_ms: u64) {
    let mut s = Life::new(sk);
    s.go(agg, t0, Listen, SynRecv);
    s.go(agg, t0 + 7_000, SynRecv, Established);
    s.go(agg, t0 + 10 * MS, Established, CloseWait);
    s.go(agg, t0 + 10 * MS + hold_ms * MS, CloseWait, LastAck);
    s.go(agg, t0 + 10 * MS + hold_ms * MS + 80_000, LastAck, Close);
}

#[test]
fn client_path_with_time_wait_inferred() {
    let mut agg = aggregator();
    for i in 0..10 {
        client_active_close(&mut agg, 100 + i, i * 1000 * MS, 200);
    }
    let snap = agg.snapshot(20_000 * MS);
    assert_eq!(
        rows_of(&snap),
        [
            (Side::Client, Close, SynSent, false, 10),
            (Side::Client, SynSent, Established, false, 10),
            (Side::Client, Established, FinWait1, false, 10),
            (Side::Client, FinWait1, FinWait2, false, 10),
            (Side::Client, FinWait2, TimeWait, false, 10),
        ]
    );
    let tw = row(&snap, Side::Client, FinWait2, TimeWait, false);
    assert!(tw.inferred && !tw.abnormal && tw.causes.is_empty());
    let est = row(&snap, Side::Client, Established, FinWait1, false);
    let p50 = est.time.stats.unwrap().p50;
    assert!(p50.abs_diff(200 * MS) <= 200 * MS / 1000, "{p50}");
    // Born in CLOSE: no time in it.
    let birth = row(&snap, Side::Client, Close, SynSent, false);
    assert_eq!((birth.untimed, birth.time.samples), (10, 0));
    assert_eq!(snap.signatures.len(), 1);
    assert_eq!(
        snap.signatures[0].path,
        "SYN_SENT->ESTABLISHED->FIN_WAIT1->FIN_WAIT2->TIME_WAIT"
    );
    assert_eq!(snap.signatures[0].count, 10);
    assert!(snap.signatures[0].complete);
    let life = snap.signatures[0].lifetime.stats.unwrap();
    let expected = MS / 10 + 200 * MS + 60_000;
    assert!(life.p50.abs_diff(expected) <= expected / 100, "{life:?}");
    assert_eq!(snap.sockets.tracked, 0, "closed sockets are dropped");
}

#[test]
fn simultaneous_close_through_closing() {
    let mut agg = aggregator();
    let mut c = Life::new(5);
    c.go(&mut agg, 0, Close, SynSent);
    c.go(&mut agg, MS, SynSent, Established);
    c.go(&mut agg, 2 * MS, Established, FinWait1);
    c.go(&mut agg, 3 * MS, FinWait1, Closing);
    c.go(&mut agg, 4 * MS, Closing, Close);
    let snap = agg.snapshot(5 * MS);
    let tw = row(&snap, Side::Client, Closing, TimeWait, false);
    assert!(tw.inferred);
    assert_eq!(
        snap.signatures[0].path,
        "SYN_SENT->ESTABLISHED->FIN_WAIT1->CLOSING->TIME_WAIT"
    );
}

#[test]
fn server_path_passive_close_and_listener() {
    let mut agg = aggregator();
    let mut listener = Life::new(1);
    listener.go(&mut agg, 0, Close, Listen);
    for i in 0..3 {
        server_passive_close(&mut agg, 200 + i, (1 + i) * 1000 * MS, 100);
    }
    listener.go(&mut agg, 10_000 * MS, Listen, Close);
    let snap = agg.snapshot(10_000 * MS);
    assert_eq!(
        rows_of(&snap),
        [
            (Side::Server, Listen, SynRecv, false, 3),
            (Side::Server, SynRecv, Established, false, 3),
            (Side::Server, Established, CloseWait, false, 3),
            (Side::Server, CloseWait, LastAck, false, 3),
            (Side::Server, LastAck, Close, false, 3),
            (Side::Listener, Close, Listen, false, 1),
            (Side::Listener, Listen, Close, false, 1),
        ]
    );
    let cw = row(&snap, Side::Server, CloseWait, LastAck, false)
        .time
        .stats
        .unwrap();
    assert!(cw.p50.abs_diff(100 * MS) <= 100 * MS / 1000);
    // The child is born leaving LISTEN: its time there is the listener's, not its own.
    assert_eq!(row(&snap, Side::Server, Listen, SynRecv, false).untimed, 3);
    let listen = row(&snap, Side::Listener, Listen, Close, false)
        .time
        .stats
        .unwrap();
    assert!(listen.max.abs_diff(10_000 * MS) * 1000 <= 10_000 * MS);
    let paths: Vec<_> = snap
        .signatures
        .iter()
        .map(|s| (s.path.as_str(), s.count))
        .collect();
    assert_eq!(
        paths,
        [
            ("SYN_RECV->ESTABLISHED->CLOSE_WAIT->LAST_ACK->CLOSE", 3),
            ("LISTEN->CLOSE", 1)
        ]
    );
}

#[test]
fn server_closing_first_stays_on_the_server_path() {
    let mut agg = aggregator();
    let mut s = Life::new(7);
    s.go(&mut agg, 0, Listen, SynRecv);
    s.go(&mut agg, 10_000, SynRecv, Established);
    s.go(&mut agg, 5 * MS, Established, FinWait1);
    s.go(&mut agg, 6 * MS, FinWait1, FinWait2);
    s.go(&mut agg, 7 * MS, FinWait2, Close);
    let snap = agg.snapshot(8 * MS);
    assert!(
        snap.rows
            .iter()
            .all(|r| r.side == Side::Server && !r.abnormal)
    );
    assert!(row(&snap, Side::Server, FinWait2, TimeWait, false).inferred);
}

#[test]
fn refused_connect_is_abnormal_with_cause() {
    let mut agg = aggregator();
    // As the stream hands them: the wake-up's signals first, then its transitions.
    agg.feed_signal(&signal(9, 2_000, SignalKind::ResetReceived, SynSent));
    let mut c = Life::new(9);
    c.go(&mut agg, 1_000, Close, SynSent);
    c.go(&mut agg, 2_100, SynSent, Close);
    agg.end_batch();
    let snap = agg.snapshot(MS);
    let r = row(&snap, Side::Client, SynSent, Close, true);
    assert_eq!(r.count, 1);
    assert_eq!(r.causes, [(Cause::Refused, 1)]);
    assert!(r.retransmits.is_empty());
    assert_eq!(snap.signatures[0].path, "SYN_SENT->CLOSE");
}

#[test]
fn syn_timeout_counts_the_syn_retransmissions() {
    let mut agg = aggregator();
    let mut c = Life::new(9);
    c.go(&mut agg, 0, Close, SynSent);
    agg.end_batch();
    for (i, ts) in [1_000 * MS, 3_000 * MS].into_iter().enumerate() {
        agg.feed_signal(&signal(9, ts, SignalKind::Retransmit, SynSent));
        agg.end_batch();
        assert_eq!(agg.snapshot(ts).sockets.tracked, 1, "retransmit {i}");
    }
    c.go(&mut agg, 7_000 * MS, SynSent, Close);
    let snap = agg.snapshot(8_000 * MS);
    let r = row(&snap, Side::Client, SynSent, Close, true);
    assert_eq!(r.causes, [(Cause::Timeout, 1)]);
    assert_eq!(r.retransmits, [(2, 1)]);
    let t = r.time.stats.unwrap();
    assert!(t.max.abs_diff(7_000 * MS) <= 7 * MS);
}

#[test]
fn established_resets_received_and_sent() {
    let mut agg = aggregator();
    for (sk, kind, state) in [
        (1, SignalKind::ResetReceived, Established),
        // tcp_disconnect() sends its reset after setting CLOSE.
        (2, SignalKind::ResetSent, Close),
    ] {
        let mut c = Life::new(sk);
        c.go(&mut agg, 0, Close, SynSent);
        c.go(&mut agg, MS, SynSent, Established);
        agg.end_batch();
        agg.feed_signal(&signal(sk, 50 * MS, kind, state));
        c.go(&mut agg, 50 * MS, Established, Close);
        agg.end_batch();
    }
    let mut quiet = Life::new(3);
    quiet.go(&mut agg, 0, Close, SynSent);
    quiet.go(&mut agg, MS, SynSent, Established);
    for ts in [10, 20, 40] {
        agg.feed_signal(&signal(3, ts * MS, SignalKind::Retransmit, Established));
    }
    quiet.go(&mut agg, 60 * MS, Established, Close);
    let snap = agg.snapshot(100 * MS);
    let r = row(&snap, Side::Client, Established, Close, true);
    assert_eq!(r.count, 3);
    assert_eq!(
        r.causes,
        [
            (Cause::ResetReceived, 1),
            (Cause::ResetSent, 1),
            (Cause::Timeout, 1)
        ]
    );
    assert_eq!(r.retransmits, [(3, 1)]);
}

#[test]
fn reset_in_fin_wait2_is_no_time_wait() {
    let mut agg = aggregator();
    let mut c = Life::new(4);
    c.go(&mut agg, 0, Close, SynSent);
    c.go(&mut agg, MS, SynSent, Established);
    c.go(&mut agg, 2 * MS, Established, FinWait1);
    c.go(&mut agg, 3 * MS, FinWait1, FinWait2);
    agg.feed_signal(&signal(4, 4 * MS, SignalKind::ResetReceived, FinWait2));
    c.go(&mut agg, 4 * MS, FinWait2, Close);
    let snap = agg.snapshot(5 * MS);
    let r = row(&snap, Side::Client, FinWait2, Close, true);
    assert_eq!(r.causes, [(Cause::ResetReceived, 1)]);
    assert!(!snap.rows.iter().any(|r| r.to == TimeWait));
    assert_eq!(
        snap.signatures[0].path,
        "SYN_SENT->ESTABLISHED->FIN_WAIT1->FIN_WAIT2->CLOSE"
    );
}

#[test]
fn last_ack_without_the_final_ack() {
    let mut agg = aggregator();
    let mut s = Life::new(6);
    s.go(&mut agg, 0, Listen, SynRecv);
    s.go(&mut agg, 1_000, SynRecv, Established);
    s.go(&mut agg, MS, Established, CloseWait);
    s.go(&mut agg, 2 * MS, CloseWait, LastAck);
    agg.feed_signal(&signal(6, 3 * MS, SignalKind::ResetReceived, LastAck));
    s.go(&mut agg, 3 * MS, LastAck, Close);
    let snap = agg.snapshot(4 * MS);
    assert_eq!(row(&snap, Side::Server, LastAck, Close, true).count, 1);
    assert!(!snap.rows.iter().any(|r| r.from == LastAck && !r.abnormal));
}

#[test]
fn every_abnormal_close_is_placed() {
    let mut agg = aggregator();
    let lives: [&[(TcpState, TcpState)]; 5] = [
        &[(Listen, SynRecv), (SynRecv, Close)],
        &[
            (Close, SynSent),
            (SynSent, Established),
            (Established, FinWait1),
            (FinWait1, Close),
        ],
        &[
            (Listen, SynRecv),
            (SynRecv, Established),
            (Established, CloseWait),
            (CloseWait, Close),
        ],
        &[(Close, SynSent), (SynSent, Close)],
        &[
            (Close, SynSent),
            (SynSent, Established),
            (Established, Close),
        ],
    ];
    for (sk, life) in lives.iter().enumerate() {
        let mut l = Life::new(sk as u64 + 1);
        for (i, (from, to)) in life.iter().enumerate() {
            l.go(&mut agg, (i as u64 + 1) * MS, *from, *to);
        }
    }
    let snap = agg.snapshot(10 * MS);
    let abnormal: Vec<_> = snap
        .rows
        .iter()
        .filter(|r| r.abnormal)
        .map(|r| (r.side, r.from, r.to, r.causes.clone()))
        .collect();
    assert_eq!(
        abnormal,
        [
            (Side::Client, SynSent, Close, vec![(Cause::Other, 1)]),
            (Side::Client, Established, Close, vec![(Cause::Other, 1)]),
            (Side::Client, FinWait1, Close, vec![(Cause::Other, 1)]),
            (Side::Server, SynRecv, Close, vec![(Cause::Other, 1)]),
            (Side::Server, CloseWait, Close, vec![(Cause::Other, 1)]),
        ]
    );
    assert_eq!(snap.sockets.tracked, 0);
}

#[test]
fn address_reuse_starts_a_new_socket() {
    let mut agg = aggregator();
    let mut first = Life::new(42);
    first.go(&mut agg, 0, Close, SynSent);
    first.go(&mut agg, MS, SynSent, Established);
    // Its close was lost; the kernel reuses the memory for a new connection.
    let mut second = Life::new(42);
    second.go(&mut agg, 100 * MS, Close, SynSent);
    second.go(&mut agg, 101 * MS, SynSent, Established);
    second.go(&mut agg, 102 * MS, Established, FinWait1);
    second.go(&mut agg, 103 * MS, FinWait1, FinWait2);
    second.go(&mut agg, 104 * MS, FinWait2, Close);
    let snap = agg.snapshot(200 * MS);
    assert_eq!(snap.sockets.replaced_unclosed, 1);
    assert_eq!(snap.sockets.tracked, 0);
    assert_eq!(snap.sockets.gaps, 0);
    assert_eq!(snap.signatures[0].count, 1);
    let life = snap.signatures[0].lifetime.stats.unwrap();
    assert!(
        life.max.abs_diff(4 * MS) <= 4 * MS / 100,
        "{life:?}: lifetime of the second only"
    );

    // A closed socket's address reused: nothing special, two lives.
    let mut agg = aggregator();
    client_active_close(&mut agg, 7, 0, 1);
    client_active_close(&mut agg, 7, 10 * MS, 1);
    let snap = agg.snapshot(20 * MS);
    assert_eq!(snap.sockets.replaced_unclosed, 0);
    assert_eq!(snap.signatures[0].count, 2);
}

#[test]
fn signals_of_a_previous_life_do_not_explain_the_next() {
    let mut agg = aggregator();
    // A reset for a socket that is not tracked (filtered out, or its close was seen already).
    agg.feed_signal(&signal(8, 5 * MS, SignalKind::ResetReceived, Established));
    let mut c = Life::new(8);
    c.go(&mut agg, 10 * MS, Close, SynSent);
    c.go(&mut agg, 11 * MS, SynSent, Close);
    let snap = agg.snapshot(20 * MS);
    assert_eq!(
        row(&snap, Side::Client, SynSent, Close, true).causes,
        [(Cause::Other, 1)]
    );
}

#[test]
fn pending_signals_are_dropped_at_the_end_of_the_batch() {
    let mut agg = aggregator();
    agg.feed_signal(&signal(8, 5 * MS, SignalKind::ResetReceived, SynSent));
    agg.end_batch();
    let mut c = Life::new(8);
    c.go(&mut agg, 4 * MS, Close, SynSent);
    c.go(&mut agg, 6 * MS, SynSent, Close);
    let snap = agg.snapshot(20 * MS);
    assert_eq!(
        row(&snap, Side::Client, SynSent, Close, true).causes,
        [(Cause::Other, 1)]
    );
}

#[test]
fn sockets_first_seen_midlife_are_counted_not_guessed() {
    let mut agg = aggregator();
    // Its first transition leaves ESTABLISHED: it existed before tracing, and no time is known
    // for its first state.
    let mut old = Life::new(11);
    old.go(&mut agg, 5 * MS, Established, CloseWait);
    old.go(&mut agg, 6 * MS, CloseWait, LastAck);
    old.go(&mut agg, 7 * MS, LastAck, Close);
    let snap = agg.snapshot(10 * MS);
    assert_eq!(snap.sockets.first_seen_midlife, 1);
    assert!(snap.rows.iter().all(|r| r.side == Side::Unknown));
    let first = row(&snap, Side::Unknown, Established, CloseWait, false);
    assert_eq!((first.untimed, first.time.samples), (1, 0));
    assert_eq!(
        snap.signatures[0].path,
        "…->ESTABLISHED->CLOSE_WAIT->LAST_ACK->CLOSE"
    );
    assert!(!snap.signatures[0].complete);
    assert_eq!(
        snap.signatures[0].lifetime.samples, 0,
        "its lifetime is unknown"
    );
}

#[test]
fn lost_transitions_leave_a_gap() {
    let mut agg = aggregator();
    let mut c = Life::new(3);
    c.go(&mut agg, 0, Close, SynSent);
    c.go(&mut agg, MS, SynSent, Established);
    // ESTABLISHED→FIN_WAIT1 lost.
    c.go(&mut agg, 3 * MS, FinWait1, FinWait2);
    c.go(&mut agg, 4 * MS, FinWait2, Close);
    let snap = agg.snapshot(5 * MS);
    assert_eq!(snap.sockets.gaps, 1);
    assert_eq!(
        snap.signatures[0].path,
        "SYN_SENT->ESTABLISHED->…->FIN_WAIT1->FIN_WAIT2->TIME_WAIT"
    );
}

#[test]
fn eviction_at_the_cap() {
    let mut agg = Fed::new(
        2,
        Config {
            own_netns: NETNS,
            ..Config::default()
        },
    );
    agg.start(0);
    let mut lives: Vec<Life> = (1..=3).map(Life::new).collect();
    for (i, l) in lives.iter_mut().enumerate() {
        l.go(&mut agg, i as u64 * MS, Close, SynSent);
    }
    // Socket 1, the oldest, was evicted: its next transition is that of a stranger.
    lives[0].go(&mut agg, 10 * MS, SynSent, Established);
    let snap = agg.snapshot(20 * MS);
    assert_eq!(
        snap.sockets.forgotten, 2,
        "1 at the third socket, 2 when 1 came back"
    );
    assert_eq!(snap.sockets.tracked, 2);
    assert_eq!(snap.sockets.max, 2);
    assert_eq!(snap.sockets.first_seen_midlife, 1);
    assert_eq!(
        row(&snap, Side::Unknown, SynSent, Established, false).count,
        1
    );
}

#[test]
fn rates_and_interval_deltas() {
    let mut agg = aggregator();
    client_active_close(&mut agg, 1, 0, 1);
    let first = agg.snapshot(1_000 * MS);
    assert_eq!(first.interval_transitions, 5);
    assert!((first.events_per_s - 5.0).abs() < 1e-9);
    client_active_close(&mut agg, 2, 1_100 * MS, 1);
    client_active_close(&mut agg, 3, 1_200 * MS, 1);
    let second = agg.snapshot(3_000 * MS);
    assert_eq!(second.elapsed_ns, 3_000 * MS);
    assert_eq!(second.interval_ns, 2_000 * MS);
    let r = row(&second, Side::Client, SynSent, Established, false);
    assert_eq!((r.count, r.interval_count), (3, 2));
    assert!((r.rate_per_s - 1.0).abs() < 1e-9);
    let third = agg.snapshot(4_000 * MS);
    assert_eq!(
        row(&third, Side::Client, SynSent, Established, false).interval_count,
        0
    );
}

fn counters(active: u64, passive: u64, resets: u64) -> TcpCounters {
    TcpCounters {
        active_opens: active,
        passive_opens: passive,
        estab_resets: resets,
        embryonic_rsts: 100,
        listen_overflows: 10,
        ..TcpCounters::default()
    }
}

#[test]
fn kernel_witness_agrees_or_differs() {
    let mut agg = aggregator();
    agg.feed_kernel_counters(counters(1000, 500, 20));
    client_active_close(&mut agg, 1, 0, 1);
    server_passive_close(&mut agg, 2, 0, 1);
    let mut r = Life::new(3);
    r.go(&mut agg, 0, Close, SynSent);
    r.go(&mut agg, MS, SynSent, Established);
    r.go(&mut agg, 2 * MS, Established, Close);
    // Another namespace's connection: the kernel counters of ours never see it.
    let mut other = Life::new(4);
    other.netns = 7;
    other.go(&mut agg, 0, Close, SynSent);
    agg.feed_kernel_counters(counters(1002, 501, 21));
    let snap = agg.snapshot(10 * MS);
    let w = snap.witness.unwrap();
    assert!(w.comparable);
    assert_eq!(w.netns_unknown, 0);
    let diffs: Vec<_> = w
        .rows
        .iter()
        .map(|r| (r.counter, r.kernel, r.seen, r.difference()))
        .collect();
    assert_eq!(
        diffs,
        [
            ("TcpActiveOpens", 2, 2, 0),
            ("TcpPassiveOpens", 1, 1, 0),
            ("TcpEstabResets", 1, 1, 0)
        ]
    );
    // A lost CLOSE→SYN_SENT shows as a difference.
    agg.feed_kernel_counters(counters(1003, 501, 21));
    let w = agg.snapshot(20 * MS).witness.unwrap();
    assert_eq!(w.rows[0].difference(), 1);
}

#[test]
fn request_sockets_from_counter_deltas() {
    let mut agg = aggregator();
    let mut snap = agg.snapshot(MS);
    assert!(snap.request_sockets.is_none() && snap.witness.is_none());
    agg.feed_kernel_counters(counters(0, 0, 0));
    let mut later = counters(0, 0, 0);
    later.embryonic_rsts += 3;
    later.listen_overflows += 2;
    agg.feed_kernel_counters(later);
    agg.feed_signal(&Signal {
        netns: NETNS,
        ..Signal::fixture(99, 1, SignalKind::SynAckRetransmit)
    });
    snap = agg.snapshot(2 * MS);
    let rs = snap.request_sockets.unwrap();
    assert_eq!(rs.total.embryonic_rsts, 3);
    assert_eq!(rs.interval.embryonic_rsts, 3);
    assert_eq!(rs.total.listen_overflows, 2);
    assert_eq!(rs.synack_retransmits, 1);
    agg.feed_kernel_counters(later);
    let rs = agg.snapshot(3 * MS).request_sockets.unwrap();
    assert_eq!(
        (rs.total.embryonic_rsts, rs.interval.embryonic_rsts),
        (3, 0)
    );
    assert_eq!(rs.synack_retransmits_interval, 0);
}

#[test]
fn filtered_streams_are_not_compared() {
    let mut agg = Aggregator::new(Config {
        filtered: true,
        ..Config::default()
    });
    agg.feed_kernel_counters(counters(0, 0, 0));
    assert!(!agg.snapshot(0).witness.unwrap().comparable);
}

#[test]
fn unknown_namespaces_are_assumed_ours_and_said() {
    let mut agg = aggregator();
    agg.feed_kernel_counters(counters(0, 0, 0));
    let mut c = Life::new(1);
    c.netns = 0;
    c.go(&mut agg, 0, Close, SynSent);
    agg.feed_kernel_counters(counters(1, 0, 0));
    let w = agg.snapshot(MS).witness.unwrap();
    assert_eq!(w.netns_unknown, 1);
    assert_eq!(w.rows[0].difference(), 0);
}

#[test]
fn a_reset_sent_right_after_the_close_is_its_cause() {
    // SO_LINGER 0: tcp_disconnect sets CLOSE, then sends the RST; the kernel traces them in
    // that order.
    let mut agg = aggregator();
    let mut s = Life::new(5);
    s.go(&mut agg, 0, Close, SynSent);
    s.go(&mut agg, MS, SynSent, Established);
    s.go(&mut agg, 2 * MS, Established, Close);
    agg.feed_signal(&signal(5, 2 * MS, SignalKind::ResetSent, Close));
    // A second abnormal close with nothing after it, settled at the end of the wake-up.
    let mut t = Life::new(6);
    t.go(&mut agg, 0, Close, SynSent);
    t.go(&mut agg, MS, SynSent, Established);
    t.go(&mut agg, 3 * MS, Established, Close);
    agg.end_batch();
    // A reset after the wake-up ended no longer explains anything.
    agg.feed_signal(&signal(6, 4 * MS, SignalKind::ResetSent, Close));
    let snap = agg.snapshot(10 * MS);
    assert_eq!(
        row(&snap, Side::Client, Established, Close, true).causes,
        [(Cause::ResetSent, 1), (Cause::Other, 1)]
    );
}

#[test]
fn a_close_awaiting_its_reset_does_not_take_the_next_socket_s() {
    // Within one wake-up: an abnormal close whose cause is still unknown, then two refused
    // connects at the same (reused) socket address, their resets handed before and after the
    // birth, as the port fill may reorder them.
    let mut agg = aggregator();
    let mut aborted = Life::new(7);
    aborted.go(&mut agg, 0, Close, SynSent);
    aborted.go(&mut agg, MS, SynSent, Established);
    aborted.go(&mut agg, 2 * MS, Established, Close);
    let mut first = Life::new(7);
    first.go(&mut agg, 3 * MS, Close, SynSent);
    agg.feed_signal(&signal(7, 4 * MS, SignalKind::ResetReceived, SynSent));
    first.go(&mut agg, 4 * MS, SynSent, Close);
    agg.feed_signal(&signal(7, 6 * MS, SignalKind::ResetReceived, SynSent));
    let mut second = Life::new(7);
    second.go(&mut agg, 5 * MS, Close, SynSent);
    second.go(&mut agg, 6 * MS, SynSent, Close);
    // A reset sent by a newer, live socket at the address explains no earlier close either.
    let mut live = Life::new(7);
    live.go(&mut agg, 7 * MS, Close, SynSent);
    live.go(&mut agg, 8 * MS, SynSent, Established);
    agg.feed_signal(&signal(7, 9 * MS, SignalKind::ResetSent, Established));
    live.go(&mut agg, 9 * MS, Established, Close);
    agg.end_batch();
    let snap = agg.snapshot(10 * MS);
    assert_eq!(
        row(&snap, Side::Client, SynSent, Close, true).causes,
        [(Cause::Refused, 2)]
    );
    assert_eq!(
        row(&snap, Side::Client, Established, Close, true).causes,
        [(Cause::ResetSent, 1), (Cause::Other, 1)]
    );
}

/// Close details as the probe reads them: the kernel's error and its timers' counts.
fn details(err: u8, retransmits: u8, probes_out: u8) -> Option<crate::core::event::CloseDetails> {
    Some(crate::core::event::CloseDetails {
        err,
        retransmits,
        probes_out,
        ..Default::default()
    })
}

fn reset_sent_with(sk: u64, ts_ns: u64, state: TcpState, reason: u16) -> Signal {
    Signal {
        reset_reason: Some(reason),
        ..signal(sk, ts_ns, SignalKind::ResetSent, state)
    }
}

#[test]
fn close_details_tell_the_causes_with_their_timers_and_reasons() {
    let mut agg = aggregator();
    let mut names = vec![String::new(); 16];
    names[14] = "tcp_state".into();
    names[15] = "tcp_keepalive_timeout".into();
    agg.agg
        .set_reset_reasons(crate::core::reset_reason::ResetReasons::from_names(names));
    // The kernel gave up on the SYN retries: ETIMEDOUT after two.
    let mut syn = Life::new(1);
    syn.go(&mut agg, 0, Close, SynSent);
    syn.close(&mut agg, 3_000 * MS, SynSent, Close, details(110, 2, 0));
    // The application closed a connect in progress: no error.
    let mut abandoned = Life::new(2);
    abandoned.go(&mut agg, 0, Close, SynSent);
    abandoned.close(&mut agg, 200 * MS, SynSent, Close, details(0, 0, 0));
    // Keepalive: the timer's reset, then the close with ETIMEDOUT.
    let mut idle = Life::new(3);
    idle.go(&mut agg, 0, Close, SynSent);
    idle.go(&mut agg, MS, SynSent, Established);
    agg.feed_signal(&reset_sent_with(3, 2_000 * MS, Established, 15));
    idle.close(&mut agg, 2_000 * MS, Established, Close, details(110, 0, 1));
    // SO_LINGER 0: the close, then its reset with its reason.
    let mut aborted = Life::new(4);
    aborted.go(&mut agg, 0, Close, SynSent);
    aborted.go(&mut agg, MS, SynSent, Established);
    aborted.close(&mut agg, 5 * MS, Established, Close, details(0, 0, 0));
    agg.feed_signal(&reset_sent_with(4, 5 * MS, Close, 14));
    agg.end_batch();
    let snap = agg.snapshot(4_000 * MS);

    let syn_sent = row(&snap, Side::Client, SynSent, Close, true);
    assert_eq!(
        syn_sent.causes,
        [(Cause::Timeout, 1), (Cause::ConnectAbandoned, 1)]
    );
    assert_eq!(syn_sent.timers, [(Timer::SynRetries, 1)]);
    // The kernel's own count of the SYN retransmissions, though no retransmit signal came.
    assert_eq!(syn_sent.retransmits, [(2, 1)]);
    let established = row(&snap, Side::Client, Established, Close, true);
    assert_eq!(
        established.causes,
        [(Cause::ResetSent, 1), (Cause::KeepaliveTimeout, 1)]
    );
    assert!(established.timers.is_empty());
    assert_eq!(established.reset_reasons, [("tcp_state".to_owned(), 1)]);
}

#[test]
fn a_close_the_kernel_reports_an_error_for_is_abnormal_in_any_state() {
    // LAST_ACK -> CLOSE is the normal end, unless the FIN retransmissions ran out.
    let mut agg = aggregator();
    let mut orderly = Life::new(1);
    orderly.go(&mut agg, 0, Listen, SynRecv);
    orderly.go(&mut agg, MS, SynRecv, Established);
    orderly.go(&mut agg, 2 * MS, Established, CloseWait);
    orderly.go(&mut agg, 3 * MS, CloseWait, LastAck);
    orderly.close(&mut agg, 4 * MS, LastAck, Close, details(0, 0, 0));
    let mut given_up = Life::new(2);
    given_up.go(&mut agg, 0, Listen, SynRecv);
    given_up.go(&mut agg, MS, SynRecv, Established);
    given_up.go(&mut agg, 2 * MS, Established, CloseWait);
    given_up.go(&mut agg, 3 * MS, CloseWait, LastAck);
    given_up.close(
        &mut agg,
        900 * MS,
        LastAck,
        Close,
        Some(crate::core::event::CloseDetails {
            orphan: true,
            ..details(110, 4, 0).unwrap()
        }),
    );
    // A reason the kernel did not name is shown by its value.
    let mut odd = Life::new(3);
    odd.go(&mut agg, 0, Close, SynSent);
    odd.go(&mut agg, MS, SynSent, Established);
    odd.close(&mut agg, 2 * MS, Established, Close, details(0, 0, 0));
    agg.feed_signal(&reset_sent_with(3, 2 * MS, Close, 42));
    agg.end_batch();
    let snap = agg.snapshot(MS * 1_000);
    assert_eq!(row(&snap, Side::Server, LastAck, Close, false).count, 1);
    let abnormal = row(&snap, Side::Server, LastAck, Close, true);
    assert_eq!(abnormal.causes, [(Cause::Timeout, 1)]);
    assert_eq!(abnormal.timers, [(Timer::OrphanRetries, 1)]);
    assert_eq!(abnormal.retransmits, [(4, 1)]);
    assert_eq!(
        row(&snap, Side::Client, Established, Close, true).reset_reasons,
        [("reason_42".to_owned(), 1)]
    );
}

#[test]
fn exemplars_carry_the_socket_and_a_cause_learnt_after_the_close() {
    let mut agg = aggregator();
    let mut c = Life::new(2);
    c.go(&mut agg, 0, Close, SynSent);
    c.go(&mut agg, MS, SynSent, Established);
    agg.end_batch();
    c.go(&mut agg, 50 * MS, Established, Close);
    // tcp_disconnect() traces its reset right after the close, in the same wake-up.
    agg.feed_signal(&signal(2, 50 * MS, SignalKind::ResetSent, Close));
    agg.end_batch();
    let snap = agg.snapshot(100 * MS);
    let r = row(&snap, Side::Client, Established, Close, true);
    let slowest = &r.exemplars.slowest;
    assert_eq!(slowest.len(), 1);
    let e = &slowest[0];
    assert_eq!(
        (e.lport, e.rport, e.pid, e.netns),
        (1000, 2000, Some(1), NETNS)
    );
    assert_eq!(e.comm, "test");
    assert_eq!(e.time_in_from_ns, Some(49 * MS));
    assert_eq!(e.cause, Some(Cause::ResetSent));
    assert_eq!(r.exemplars.recent, r.exemplars.slowest);
    // A birth has no time in CLOSE: a recent exemplar, none among the slowest.
    let birth = row(&snap, Side::Client, Close, SynSent, false);
    assert!(birth.exemplars.slowest.is_empty());
    assert_eq!(birth.exemplars.recent.len(), 1);
}

#[test]
fn breakdowns_per_transition_and_over_all_sum_to_the_counts() {
    use crate::aggregate::breakdowns::{BreakdownKey, BreakdownKind};
    let mut agg = Fed::with(Config {
        own_netns: NETNS,
        breakdowns: true,
        ..Config::default()
    });
    agg.start(0);
    client_active_close(&mut agg, 1, 0, 5);
    server_passive_close(&mut agg, 2, 0, 5);
    let snap = agg.snapshot(100 * MS);
    // Kept only when asked for: nothing to show, nothing counted.
    let mut plain = aggregator();
    client_active_close(&mut plain, 1, 0, 5);
    let plain = plain.snapshot(100 * MS);
    assert!(plain.rows.iter().all(|r| r.breakdowns.is_empty()));
    for r in &snap.rows {
        for b in &r.breakdowns {
            assert_eq!(b.total(), r.count, "{:?} {:?}", r.from, b.kind);
        }
    }
    let all = snap.breakdown(BreakdownKind::Port).unwrap();
    assert_eq!(all.total(), snap.transitions);
    // The client path's service port is the remote one, the server's the local one.
    let client = row(&snap, Side::Client, SynSent, Established, false);
    let port = client.breakdown(BreakdownKind::Port).unwrap();
    assert_eq!(port.top[0].0, BreakdownKey::Port(2000));
    let server = row(&snap, Side::Server, SynRecv, Established, false);
    let port = server.breakdown(BreakdownKind::Port).unwrap();
    assert_eq!(port.top[0].0, BreakdownKey::Port(1000));
}
