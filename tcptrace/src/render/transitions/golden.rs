//! Golden tests of `tcptrace transitions`' text and JSON: a fixed event stream through the real
//! aggregator and renderers, compared byte for byte with `testdata/`. After an intended change
//! of the output, `UPDATE_GOLDEN=1 cargo test -p tcptrace golden` rewrites the files; review
//! the diff.

use crate::{
    aggregate::{Config, breakdowns::BreakdownKind, fed::Fed, snapshot::Snapshot},
    core::{
        clock::WallClock,
        counters::TcpCounters,
        event::{CloseDetails, Comm, Family, Fate, PacketDrop, Signal, SignalKind, Transition},
        losses::{KernelCounters, Losses},
        reset_reason::ResetReasons,
        state::TcpState::{self, *},
    },
    render::transitions::{json, text},
};

const MS: u64 = 1_000_000;
const NETNS: u32 = 4026531840;

fn transition(sk: u64, ts_ns: u64, from: TcpState, to: TcpState, time: Option<u64>) -> Transition {
    Transition {
        pid: Some(4242),
        comm: "fixture".into(),
        lport: 8080,
        rport: 40000,
        time_in_from_ns: time,
        netns: NETNS,
        ..Transition::fixture(sk, ts_ns, from, to)
    }
}

/// Feeds one socket's life: `(from, to, ms after the previous transition)`.
fn life(agg: &mut Fed, sk: u64, start_ns: u64, steps: &[(TcpState, TcpState, f64)]) {
    let mut ts = start_ns;
    for (i, (from, to, ms)) in steps.iter().enumerate() {
        let step = (ms * MS as f64) as u64;
        ts += step;
        agg.feed_transition(&transition(sk, ts, *from, *to, (i > 0).then_some(step)));
    }
}

fn signal(sk: u64, ts_ns: u64, kind: SignalKind, state: TcpState) -> Signal {
    Signal {
        state: Some(state),
        netns: NETNS,
        ..Signal::fixture(sk, ts_ns, kind)
    }
}

fn counters(active: u64, passive: u64, resets: u64, embryonic: u64) -> TcpCounters {
    TcpCounters {
        active_opens: active,
        passive_opens: passive,
        estab_resets: resets,
        embryonic_rsts: embryonic,
        listen_overflows: 1,
        syn_retrans: 40,
        ..TcpCounters::default()
    }
}

/// A packet dropped for `fate`, to `port` of this host from `peer`.
fn dropped(
    fate: Fate,
    netns: u32,
    port: u16,
    peer: &str,
    owner: Option<(u32, &str)>,
) -> PacketDrop {
    PacketDrop {
        ts_ns: 1_500 * MS,
        fate,
        family: Family::Inet,
        laddr: "10.0.0.1".parse().unwrap(),
        lport: port,
        raddr: peer.parse().unwrap(),
        rport: 40123,
        netns,
        tcp_flags: 0x04,
        reason: 2,
        pid: owner.map(|(pid, _)| pid),
        comm: owner.map_or(Comm::default(), |(_, comm)| comm.into()),
    }
}

/// Two intervals of a small web server and its clients, with one refused connect, one reset,
/// one socket that predates tracing and one lost event; the snapshots after each. In the
/// second, the request sockets' fates by listener: an embryonic reset of the server's (the
/// kernel counts it too), SYNs to a closed port, one in another namespace.
fn fixture() -> (Snapshot, Snapshot) {
    let mut agg = Fed::with(Config {
        own_netns: NETNS,
        breakdowns: true,
        ..Config::default()
    });
    agg.start(0);
    let mut reasons = vec![String::new(); 16];
    reasons[14] = "tcp_state".into();
    reasons[15] = "tcp_keepalive_timeout".into();
    agg.agg.set_reset_reasons(ResetReasons::from_names(reasons));
    agg.trace_fates();
    agg.feed_kernel_counters(counters(1000, 2000, 30, 5));
    life(&mut agg, 1, 0, &[(Close, Listen, 0.0)]);
    for i in 0..20u64 {
        let t0 = 10 * MS + i * 40 * MS;
        let hold = 5.0 + i as f64 * 3.0;
        life(
            &mut agg,
            100 + i,
            t0,
            &[
                (Close, SynSent, 0.0),
                (SynSent, Established, 0.04),
                (Established, FinWait1, hold),
                (FinWait1, FinWait2, 0.05),
                (FinWait2, Close, 0.01),
            ],
        );
        life(
            &mut agg,
            200 + i,
            t0 + 40_000,
            &[
                (Listen, SynRecv, 0.0),
                (SynRecv, Established, 0.008),
                (Established, CloseWait, hold),
                (CloseWait, LastAck, 1.5),
                (LastAck, Close, 0.03),
            ],
        );
    }
    agg.end_batch();
    agg.feed_kernel_counters(counters(1020, 2020, 30, 7));
    agg.set_losses(Losses::default());
    let first = agg.snapshot(1_000 * MS);

    // A refused connect: the wake-up's reset arrives before its transitions.
    agg.feed_signal(&signal(
        300,
        1_100 * MS + 20_000,
        SignalKind::ResetReceived,
        SynSent,
    ));
    life(
        &mut agg,
        300,
        1_100 * MS,
        &[(Close, SynSent, 0.0), (SynSent, Close, 0.02)],
    );
    agg.end_batch();
    // A connect that timed out after two SYN retransmissions.
    life(&mut agg, 301, 1_100 * MS, &[(Close, SynSent, 0.0)]);
    agg.feed_signal(&signal(301, 1_200 * MS, SignalKind::Retransmit, SynSent));
    agg.feed_signal(&signal(301, 1_400 * MS, SignalKind::Retransmit, SynSent));
    agg.feed_transition(&transition(301, 1_800 * MS, SynSent, Close, Some(700 * MS)));
    // A server child reset by its peer while established.
    life(
        &mut agg,
        302,
        1_100 * MS,
        &[(Listen, SynRecv, 0.0), (SynRecv, Established, 0.01)],
    );
    agg.feed_signal(&signal(
        302,
        1_600 * MS,
        SignalKind::ResetReceived,
        Established,
    ));
    agg.feed_transition(&transition(
        302,
        1_600 * MS,
        Established,
        Close,
        Some(500 * MS),
    ));
    // A connection older than tracing, closing passively.
    life(
        &mut agg,
        303,
        1_300 * MS,
        &[
            (Established, CloseWait, 0.0),
            (CloseWait, LastAck, 3000.0),
            (LastAck, Close, 0.05),
        ],
    );
    // A client whose ESTABLISHED→FIN_WAIT1 was lost.
    life(
        &mut agg,
        304,
        1_100 * MS,
        &[(Close, SynSent, 0.0), (SynSent, Established, 0.05)],
    );
    agg.feed_transition(&transition(304, 1_900 * MS, FinWait1, FinWait2, Some(MS)));
    agg.feed_transition(&transition(
        304,
        1_900 * MS + 10_000,
        FinWait2,
        Close,
        Some(10_000),
    ));
    let server = Some((4242, "fixture"));
    agg.feed_drop(&dropped(
        Fate::EmbryonicReset,
        NETNS,
        8080,
        "10.0.0.9",
        server,
    ));
    agg.feed_drop(&dropped(
        Fate::ListenOverflow,
        NETNS,
        8080,
        "10.0.0.8",
        server,
    ));
    for _ in 0..2 {
        agg.feed_drop(&dropped(Fate::ClosedPort, NETNS, 9, "10.0.0.7", None));
    }
    agg.feed_drop(&dropped(Fate::ClosedPort, 4026532000, 22, "10.0.0.6", None));
    agg.feed_transition(&transition(1, 1_950 * MS, Listen, Close, Some(1_950 * MS)));
    // Closes with the kernel's close details: a connect the application abandoned, a
    // connect whose SYN retries ran out, an idle client whose keepalive probe went unanswered,
    // a client whose data retransmissions ran out, and one that aborted (SO_LINGER 0), its
    // reset traced right after the close with the reason Linux 6.10+ gives it.
    let details = |err, retransmits, probes_out| {
        Some(CloseDetails {
            err,
            retransmits,
            probes_out,
            ..CloseDetails::default()
        })
    };
    let close = |agg: &mut Fed, sk, ts_ns, from, close, time| {
        agg.feed_transition(&Transition {
            close,
            ..transition(sk, ts_ns, from, Close, Some(time))
        });
    };
    life(&mut agg, 310, 1_500 * MS, &[(Close, SynSent, 0.0)]);
    close(
        &mut agg,
        310,
        1_700 * MS,
        SynSent,
        details(0, 0, 0),
        200 * MS,
    );
    life(&mut agg, 311, 1_000 * MS, &[(Close, SynSent, 0.0)]);
    close(
        &mut agg,
        311,
        1_900 * MS,
        SynSent,
        details(110, 1, 0),
        900 * MS,
    );
    for (sk, err, retransmits, probes_out, reason) in [
        (312, 110, 0, 1, Some(15)),
        (313, 110, 5, 0, None),
        (314, 0, 0, 0, Some(14)),
    ] {
        life(
            &mut agg,
            sk,
            1_000 * MS,
            &[(Close, SynSent, 0.0), (SynSent, Established, 0.05)],
        );
        if err != 0
            && let Some(reason) = reason
        {
            agg.feed_signal(&Signal {
                reset_reason: Some(reason),
                ..signal(sk, 1_800 * MS, SignalKind::ResetSent, Established)
            });
        }
        close(
            &mut agg,
            sk,
            1_800 * MS,
            Established,
            details(err, retransmits, probes_out),
            800 * MS,
        );
        if err == 0 {
            agg.feed_signal(&Signal {
                reset_reason: reason,
                ..signal(sk, 1_800 * MS, SignalKind::ResetSent, Close)
            });
        }
    }
    agg.end_batch();
    // One listen overflow dropped its ACK (seen above), one refused a SYN (not seen).
    agg.feed_kernel_counters(TcpCounters {
        listen_overflows: 3,
        ..counters(1028, 2022, 34, 8)
    });
    agg.set_losses(Losses {
        kernel: KernelCounters {
            ringbuf_full: 1,
            ..KernelCounters::default()
        },
        ..Losses::default()
    });
    let second = agg.snapshot(2_000 * MS);
    (first, second)
}

fn golden(name: &str, actual: &str) {
    crate::render::golden_file::check("src/render/transitions/testdata", name, actual);
}

#[test]
fn golden_text_interval_and_summary() {
    let (first, second) = fixture();
    let mut out = Vec::new();
    text::interval(&mut out, &first, None).unwrap();
    golden("transitions_interval.txt", &String::from_utf8(out).unwrap());
    let mut out = Vec::new();
    text::summary(&mut out, &second, None).unwrap();
    golden("transitions_summary.txt", &String::from_utf8(out).unwrap());
}

#[test]
fn golden_breakdown_by_process() {
    let (_, second) = fixture();
    let mut out = Vec::new();
    text::summary(&mut out, &second, Some(BreakdownKind::Process)).unwrap();
    golden(
        "transitions_summary_by_process.txt",
        &String::from_utf8(out).unwrap(),
    );
    let mut out = Vec::new();
    json::interval(
        &mut out,
        &second,
        true,
        &WallClock::default(),
        Some(BreakdownKind::Process),
    )
    .unwrap();
    let object: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(object["breakdown"]["by"], "process");
    assert_eq!(object["breakdown"]["top"][0]["key"], "4242/fixture");
    assert_eq!(object["breakdown"]["top"][0]["count"], object["events"]);
}

#[test]
fn golden_json_lines() {
    let (first, second) = fixture();
    let mut out = Vec::new();
    json::interval(&mut out, &first, false, &WallClock::default(), None).unwrap();
    json::interval(&mut out, &second, true, &WallClock::default(), None).unwrap();
    let text = String::from_utf8(out).unwrap();
    golden("transitions.jsonl", &text);

    // Beyond the bytes: the documented keys, as a consumer reads them.
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0]["final"], false);
    assert_eq!(lines[1]["final"], true);
    assert_eq!(lines[1]["lost_events"], 1);
    let refused = lines[1]["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["from"] == "SYN_SENT" && t["to"] == "CLOSE")
        .unwrap();
    assert_eq!(refused["abnormal"], true);
    assert_eq!(refused["path"], "client");
    assert_eq!(refused["cause"]["refused"], 1);
    // One told by its retransmissions alone (no close details), one by the kernel's error.
    assert_eq!(refused["cause"]["timeout"], 2);
    assert_eq!(refused["retransmits"]["2"], 1);
    assert_eq!(refused["cause"]["connect_abandoned"], 1);
    assert_eq!(refused["timers"], serde_json::json!({"syn_retries": 1}));
    let established = lines[1]["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["path"] == "client" && t["from"] == "ESTABLISHED" && t["to"] == "CLOSE")
        .unwrap();
    assert_eq!(
        established["cause"],
        serde_json::json!({"keepalive_timeout": 1, "reset_sent": 1, "timeout": 1})
    );
    assert_eq!(
        established["timers"],
        serde_json::json!({"retransmissions": 1})
    );
    assert_eq!(
        established["reset_reasons"],
        serde_json::json!({"tcp_state": 1})
    );
    for key in ["min", "p50", "p90", "p99", "max", "mean"] {
        assert!(refused["time_in_from_ns"][key].is_u64(), "{key}");
    }
    assert!(refused["histogram"].as_array().unwrap().len() > 1);
    // The slowest three of its four sockets, slowest first, each with its own cause.
    let slowest = refused["exemplars"]["slowest"].as_array().unwrap();
    assert_eq!(slowest.len(), 3);
    assert_eq!(slowest[0]["cause"], "timeout");
    assert_eq!(slowest[1]["cause"], "timeout");
    assert_eq!(slowest[2]["cause"], "connect_abandoned");
    assert_eq!(slowest[0]["local_port"], 8080);
    assert!(lines[1].get("breakdown").is_none(), "only with --by");
    assert!(lines[1]["paths"].as_array().unwrap().len() > 3);
    assert_eq!(lines[1]["request_sockets"][0]["count"], 3);
    assert_eq!(lines[1]["kernel_check"]["rows"][0]["verdict"], "agrees");
    // The fixture's kernel saw one passive open more than the stream.
    assert_eq!(
        lines[1]["kernel_check"]["rows"][1]["verdict"],
        "differs by +1"
    );
}
