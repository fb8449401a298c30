//! Request-socket fates through a real Prometheus, exactly: `tcptrace export` runs inside a
//! network namespace of the test (`ip netns exec`), so the kernel counters it exports are
//! that namespace's own; Prometheus runs there too and scrapes it on the namespace's
//! loopback. Bare SYNs from a raw socket make embryonic resets, a listen(1) queue that is
//! never accepted makes overflows and drops; Prometheus's API must return, for every fate,
//! what the namespace's /proc/net/netstat says changed since the exporter started.

use crate::support::{
    Netns, Peer, Tracer, privileged,
    prometheus::{LO, Options, Prometheus, tool},
    wait_until,
};

/// Bare SYNs sent: one embryonic reset each.
const SYNS: u64 = 3;

/// Each fate counted from a TcpExt counter, by the counter's name.
const FATES: [(&str, &str); 7] = [
    ("embryonic_reset", "EmbryonicRsts"),
    ("listen_overflow", "ListenOverflows"),
    ("listen_drop", "ListenDrops"),
    ("request_queue_full_drop", "TCPReqQFullDrop"),
    ("request_queue_full_syn_cookie", "TCPReqQFullDoCookies"),
    ("syn_cookie_sent", "SyncookiesSent"),
    ("syn_retransmit", "TCPSynRetrans"),
];

/// The namespace's TcpExt counters named in [`FATES`], in that order.
fn tcp_ext(netns: &Netns) -> Vec<u64> {
    let netstat = netns.output("cat", &["/proc/net/netstat"]);
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    let names: Vec<&str> = names.split_whitespace().collect();
    let values: Vec<&str> = values.split_whitespace().collect();
    FATES
        .iter()
        .map(|(_, counter)| {
            let at = names
                .iter()
                .position(|n| n == counter)
                .unwrap_or_else(|| panic!("no TcpExt {counter}"));
            values[at].parse().unwrap()
        })
        .collect()
}

fn fates_in_prometheus(prometheus: &Prometheus) -> Vec<Option<u64>> {
    FATES
        .iter()
        .map(|(fate, _)| {
            prometheus
                .scalar(&format!(
                    "tcptrace_request_socket_events_total{{fate=\"{fate}\"}}"
                ))
                .map(|v| v as u64)
        })
        .collect()
}

#[test]
fn request_socket_fates_reach_prometheus_exactly() {
    if !privileged("request_socket_fates_reach_prometheus_exactly") {
        return;
    }
    let Some(binary) = tool("prometheus") else {
        return;
    };
    let netns = Netns::new("export-fates");
    let before = tcp_ext(&netns);
    // The default --listen, loopback port 10427, is the namespace's own.
    let exporter = Tracer::start_in(&netns, &["export", "--netns", &netns.inode()]);
    let prometheus = Prometheus::start(
        &binary,
        10427,
        Options {
            netns: Some(&netns),
            ..Options::default()
        },
    );
    prometheus.wait_ready();

    // Embryonic resets: the SYN-ACKs to the raw socket's ports are answered with resets.
    let mut server = Peer::spawn_in(&netns);
    let port = server.port(&format!("listen {LO}"));
    let sent = netns.output(
        env!("CARGO_BIN_EXE_raw-syn"),
        &[LO, &port.to_string(), &SYNS.to_string()],
    );
    assert_eq!(sent.lines().count() as u64, SYNS, "raw-syn: {sent}");
    // Overflows: listen(1) and no accept; two children fill the queue, then SYNs are dropped.
    let mut full = Peer::spawn_in(&netns);
    let full_port = full.port(&format!("listen-backlog {LO} 1"));
    let mut client = Peer::spawn_in(&netns);
    let mut pending = 0;
    for _ in 0..5 {
        let answer = client.cmd(&format!("connect-held {LO} {full_port}"));
        pending += u64::from(answer.ends_with(" pending"));
    }
    assert_eq!(pending, 3);
    // No SYN retransmitted any more: the counters stand still from here.
    assert_eq!(client.cmd("close-pending"), "3");

    let changed = |now: &[u64]| -> Vec<u64> {
        now.iter()
            .zip(&before)
            .map(|(now, was)| now - was)
            .collect()
    };
    let (kernel, exported) = wait_until("Prometheus to hold the namespace's counters", || {
        let kernel = changed(&tcp_ext(&netns));
        let exported = fates_in_prometheus(&prometheus);
        (exported.iter().zip(&kernel).all(|(e, k)| *e == Some(*k))).then_some((kernel, exported))
    });
    // And staying so: the namespace holds nothing else.
    assert_eq!(changed(&tcp_ext(&netns)), kernel);
    let at = |counter: &str| FATES.iter().position(|(_, c)| *c == counter).unwrap();
    eprintln!(
        "fates: {:?}",
        FATES.iter().zip(&exported).collect::<Vec<_>>()
    );
    assert_eq!(kernel[at("EmbryonicRsts")], SYNS);
    // Each dropped SYN counts once (a retransmitted one again): at least the three connects.
    assert!(kernel[at("ListenOverflows")] >= pending, "{kernel:?}");
    assert!(kernel[at("ListenDrops")] >= kernel[at("ListenOverflows")]);
    // No SYN flood here: neither cookies nor a full request queue.
    assert_eq!(kernel[at("SyncookiesSent")], 0);
    assert_eq!(kernel[at("TCPReqQFullDrop")], 0);
    // SYN-ACK retransmits come from a tracepoint; the kernel counts them in TCPSynRetrans.
    let synack = prometheus
        .scalar("tcptrace_request_socket_events_total{fate=\"synack_retransmit\"}")
        .unwrap() as u64;
    assert!(synack <= kernel[at("TCPSynRetrans")], "{synack}");
    drop(prometheus);
    let finished = exporter.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
}
