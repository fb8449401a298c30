//! Golden tests of `tcptrace states`' findings, text and JSON: a synthetic server through the
//! real census and renderers, compared byte for byte with `testdata/`. Three snapshots: one
//! alone (counters since boot), then two of a watch (counters between snapshots), with every
//! kind of finding. After an intended change of the output, `UPDATE_GOLDEN=1 cargo test -p
//! tcptrace golden` rewrites the files; review the diff.

use std::collections::HashMap;

use crate::{
    census::{Census, Context, KernelView, close_wait::CloseWaitAges, count, tests::sock},
    core::{counters::ListenCounters, event::Transition, state::TcpState},
    os::{
        diag::{SocketEntry, parse::TcpInfoCounters},
        owners::{Owner, Owners},
        sysctl::{PortRange, TcpSysctls},
    },
    render::states::{frame::Frame, json::json_line, text::text},
};

const S: u64 = 1_000_000_000;

/// A CLOSE_WAIT socket whose last ACK arrived `ms` before the snapshot.
fn close_wait(local: &str, remote: &str, inode: u32, ms: u32) -> SocketEntry {
    SocketEntry {
        info: Some(TcpInfoCounters {
            last_ack_recv_ms: Some(ms),
            last_data_recv_ms: Some(ms + 50),
            ..TcpInfoCounters::default()
        }),
        ..sock(TcpState::CloseWait, local, remote, inode)
    }
}

fn owners() -> Owners {
    let owner = |pid, comm: &str| Owner {
        pid,
        comm: comm.to_owned(),
    };
    Owners::from_map(HashMap::from([
        (
            1,
            vec![
                owner(812, "nginx"),
                owner(813, "nginx"),
                owner(814, "nginx"),
            ],
        ),
        (2, vec![owner(900, "api")]),
        (10, vec![owner(2001, "app")]),
        (11, vec![owner(2001, "app")]),
        (20, vec![owner(2002, "web")]),
        (21, vec![owner(2002, "web")]),
    ]))
}

/// The server: a web listener whose accept queue is full (3 of a backlog of 2), an API
/// listener, an application leaking CLOSE_WAIT sockets and a web server closing its own
/// promptly, a socket whose holder was not found, TIME_WAIT sockets towards a database, a
/// half-open connection. `drained`: the web listener has caught up.
fn sockets(drained: bool) -> Vec<SocketEntry> {
    use TcpState::*;
    let mut sockets = vec![
        SocketEntry {
            recv_q: if drained { 0 } else { 3 },
            send_q: 2,
            ..sock(Listen, "0.0.0.0:80", "0.0.0.0:0", 1)
        },
        SocketEntry {
            send_q: 4096,
            ..sock(Listen, "127.0.0.1:9000", "0.0.0.0:0", 2)
        },
        close_wait("10.0.0.1:9000", "10.0.0.7:41000", 10, 312_000),
        close_wait("10.0.0.1:9000", "10.0.0.7:41001", 11, 5_000),
        close_wait("10.0.0.1:80", "10.0.0.8:42000", 20, 6),
        close_wait("10.0.0.1:80", "10.0.0.8:42001", 21, 2),
        close_wait("10.0.0.1:9000", "10.0.0.7:41002", 77, 70_000),
        sock(NewSynRecv, "10.0.0.1:80", "10.0.0.3:43000", 0),
    ];
    if !drained {
        sockets.extend([
            sock(Established, "10.0.0.1:80", "10.0.0.9:40000", 0),
            sock(Established, "10.0.0.1:80", "10.0.0.9:40001", 0),
            close_wait("10.0.0.1:80", "10.0.0.9:40002", 0, 4_000),
        ]);
    }
    for port in 40_000..40_006 {
        sockets.push(sock(
            TimeWait,
            &format!("10.0.0.1:{port}"),
            "10.0.0.5:5432",
            0,
        ));
    }
    sockets
}

fn kernel(at_s: u64, overflows: u64, sent: u64, syncookies: u8, tw_reuse: u8) -> KernelView {
    KernelView {
        netns: Some(4026531840),
        at_ns: at_s * S,
        counters: Some(ListenCounters {
            listen_overflows: overflows,
            listen_drops: overflows + 1,
            syncookies_sent: sent,
            syncookies_recv: sent - sent / 4,
            syncookies_failed: 2,
            req_q_full_do_cookies: sent,
            req_q_full_drop: 0,
        }),
        sysctls: TcpSysctls {
            syncookies: Some(syncookies),
            tw_reuse: Some(tw_reuse),
            tw_reuse_delay_ms: Some(1000),
            timestamps: Some(1),
        },
    }
}

/// The three snapshots, each with the one before it.
fn fixture() -> Vec<(Census, Option<Census>)> {
    let owners = owners();
    let ctx = |kernel, ages| Context {
        owners: Some(&owners),
        port_range: Some(PortRange {
            low: 40000,
            high: 40009,
        }),
        close_wait_ages: ages,
        sees_every_process: true,
        kernel: Some(kernel),
        ..Context::default()
    };
    // `tcptrace states`: counters since boot, ages from the kernel.
    let alone = count(
        &sockets(false),
        None,
        &ctx(kernel(100, 12, 40, 1, 0), None),
        None,
    );

    // `tcptrace states --watch`, tracing: the web server's sockets were seen entering
    // CLOSE_WAIT; between the two snapshots, overflows and cookies.
    let mut ages = CloseWaitAges::default();
    ages.snapshot(&sockets(false), 100 * S);
    for rport in [42000, 42001] {
        ages.apply(&Transition {
            laddr: "10.0.0.1".parse().unwrap(),
            lport: 80,
            raddr: "10.0.0.8".parse().unwrap(),
            rport,
            ..Transition::fixture(
                1,
                101 * S + u64::from(rport - 42000) * S / 2,
                TcpState::Established,
                TcpState::CloseWait,
            )
        });
    }
    let watched = count(
        &sockets(false),
        None,
        &ctx(kernel(102, 15, 45, 1, 1), Some((&ages, 102 * S))),
        Some(&alone),
    );
    // The queue drained; overflows still came in between, and cookies with
    // tcp_syncookies = 2, which sends them for every SYN.
    let drained = count(
        &sockets(true),
        None,
        &ctx(kernel(104, 17, 49, 2, 2), Some((&ages, 104 * S))),
        Some(&watched),
    );
    vec![
        (alone.clone(), None),
        (watched.clone(), Some(alone)),
        (drained, Some(watched)),
    ]
}

fn golden(name: &str, actual: &str) {
    crate::render::golden_file::check("src/render/states/testdata", name, actual);
}

fn frame<'a>(census: &'a Census, previous: Option<&'a Census>) -> Frame<'a> {
    Frame {
        census,
        previous,
        by: None,
        interrupted: false,
        live: None,
    }
}

#[test]
fn golden_findings_text() {
    let mut out = Vec::new();
    for (i, (census, previous)) in fixture().iter().enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        text(&mut out, &frame(census, previous.as_ref())).unwrap();
    }
    golden("findings.txt", &String::from_utf8(out).unwrap());
}

#[test]
fn golden_findings_json() {
    let mut out = Vec::new();
    let frames = fixture();
    for (census, previous) in &frames {
        json_line(&mut out, &frame(census, previous.as_ref())).unwrap();
    }
    let text = String::from_utf8(out).unwrap();
    golden("findings.jsonl", &text);

    // Beyond the bytes: what a consumer reads.
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kind = |line: &serde_json::Value, kind: &str| -> Vec<serde_json::Value> {
        line["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == kind)
            .cloned()
            .collect()
    };
    let queue = &kind(&lines[0], "accept_queue")[0];
    assert_eq!(
        (queue["queue"].as_u64(), queue["backlog"].as_u64()),
        (Some(3), Some(2))
    );
    assert_eq!(queue["full"], true);
    assert_eq!(queue["risk"], true);
    assert_eq!(queue["holders"][0]["pid"], 812);
    assert_eq!(queue["counters"]["window"], "boot");
    assert_eq!(queue["counters"]["listen_overflows"], 12);
    assert_eq!(
        kind(&lines[1], "accept_queue")[0]["counters"]["listen_overflows"],
        3
    );
    assert_eq!(
        kind(&lines[1], "accept_queue")[0]["counters"]["window_s"],
        2.0
    );
    let close_wait = kind(&lines[0], "close_wait");
    let not_accepted = close_wait
        .iter()
        .find(|f| f["holder"] == "not_accepted")
        .unwrap();
    assert_eq!(not_accepted["listener"], "0.0.0.0:80");
    assert_eq!(not_accepted["holders"][0]["comm"], "nginx");
    assert!(!not_accepted["text"].as_str().unwrap().contains("root"));
    let app = close_wait.iter().find(|f| f["pid"] == 2001).unwrap();
    assert_eq!(app["risk"], true);
    assert_eq!(app["age"]["old"], 1);
    assert_eq!(app["age"]["oldest_source"], "kernel");
    assert_eq!(app["age"]["oldest_s"], 312.0);
    let web = kind(&lines[1], "close_wait")
        .into_iter()
        .find(|f| f["pid"] == 2002)
        .unwrap();
    assert_eq!(web["risk"], false);
    assert_eq!(web["age"]["oldest_source"], "stream");
    assert_eq!(kind(&lines[2], "listen_overflows")[0]["risk"], true);
    let cookies: Vec<_> = lines
        .iter()
        .map(|l| kind(l, "syn_cookies")[0].clone())
        .collect();
    assert_eq!(
        cookies
            .iter()
            .map(|c| c["risk"].as_bool().unwrap())
            .collect::<Vec<_>>(),
        [false, true, false]
    );
    assert_eq!(cookies[2]["tcp_syncookies"], 2);
    let time_wait: Vec<_> = lines
        .iter()
        .map(|l| kind(l, "time_wait_ports")[0].clone())
        .collect();
    assert_eq!(
        time_wait
            .iter()
            .map(|t| (
                t["tcp_tw_reuse"].as_u64().unwrap(),
                t["risk"].as_bool().unwrap()
            ))
            .collect::<Vec<_>>(),
        [(0, true), (1, false), (2, true)]
    );
    assert_eq!(lines[0]["netns"], 4026531840u64);
}
