//! `tcptrace transitions --json` run inside a network namespace of the test: per-namespace
//! sysctls and nft rules make timeouts and half-open handshakes happen on demand, and the
//! namespace's own kernel counters (which tcptrace reads where it runs) count exactly the test's
//! workload, so they can be compared with the stream without tolerance.

use std::{collections::BTreeMap, time::Instant};

use serde_json::Value;

use crate::{
    support::{Netns, Peer, Tracer, privileged},
    transitions::{count, finish, row, wait_for},
};

const LO: &str = "127.0.0.1";

/// Starts `tcptrace transitions --json` inside `netns` and waits for its first interval: the
/// kernel's counters are first read when the probe is attached, so from then on the namespace's
/// counters and the stream cover the same window.
pub(crate) fn start_in(netns: &Netns, filters: &[&str]) -> Tracer {
    let mut args = vec!["transitions", "--json", "--interval", "0.2"];
    args.extend_from_slice(filters);
    let tracer = Tracer::start_in(netns, &args);
    tracer.wait_json("the first interval", |lines| !lines.is_empty());
    tracer
}

/// A counter of the namespace: `section` is `Tcp` (/proc/net/snmp) or `TcpExt` (/proc/net/netstat).
pub(crate) fn kernel_counter(netns: &Netns, section: &str, name: &str) -> u64 {
    let file = if section == "Tcp" {
        "/proc/net/snmp"
    } else {
        "/proc/net/netstat"
    };
    let text = netns.output("cat", &[file]);
    let prefix = format!("{section}:");
    let mut lines = text.lines().filter_map(|line| line.strip_prefix(&prefix));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no {section} {name} in {file}"))
        .1
        .parse()
        .unwrap()
}

/// The count of the request-socket row named after the kernel counter or tracepoint `source`
/// (as in `SYN_RECV -> LISTEN on RST (EmbryonicRsts)`).
pub(crate) fn request_row(object: &Value, source: &str) -> u64 {
    let suffix = format!("({source})");
    object["request_sockets"]
        .as_array()
        .unwrap_or_else(|| panic!("no request_sockets in {object}"))
        .iter()
        .find(|r| r["name"].as_str().unwrap().ends_with(&suffix))
        .unwrap_or_else(|| panic!("no request-socket row {suffix} in {object}"))["count"]
        .as_u64()
        .unwrap()
}

/// Every `from -> to` row (all paths, abnormal or not), summed: counts and causes.
pub(crate) fn total(object: &Value, from: &str, to: &str) -> (u64, BTreeMap<String, u64>) {
    let mut n = 0;
    let mut causes = BTreeMap::new();
    for r in object["transitions"].as_array().unwrap() {
        if r["from"] == from && r["to"] == to {
            n += r["count"].as_u64().unwrap();
            for (cause, k) in r["cause"].as_object().unwrap() {
                *causes.entry(cause.clone()).or_default() += k.as_u64().unwrap();
            }
        }
    }
    (n, causes)
}

pub(crate) fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

/// `net.ipv4.tcp_syn_retries = 1` and SYNs dropped by nft: the connect times out after the
/// initial RTO and one doubling (1 s + 2 s), with one SYN retransmission, and no reset.
#[test]
fn syn_timeout_in_a_namespace_is_abnormal_timeout_with_its_retransmissions() {
    if !privileged("syn_timeout_in_a_namespace_is_abnormal_timeout_with_its_retransmissions") {
        return;
    }
    const PORT: u16 = 4242;
    let netns = Netns::new("syn timeout");
    netns.sysctl("net.ipv4.tcp_syn_retries", "1");
    netns.drop_inbound(PORT, "syn");
    let retrans_before = kernel_counter(&netns, "TcpExt", "TCPSynRetrans");
    let tracer = start_in(&netns, &["--netns", &netns.inode()]);

    let mut client = Peer::spawn_in(&netns);
    let started = Instant::now();
    let err = client.try_cmd(&format!("connect {LO} {PORT}")).unwrap_err();
    let waited = started.elapsed().as_secs_f64();
    assert!(err.contains("timed_out"), "{err}");
    // 1 s + 2 s of retransmission timeouts (the peer's own connect timeout is 10 s).
    assert!(
        (2.9..6.0).contains(&waited),
        "connect failed after {waited} s"
    );
    let retransmissions = kernel_counter(&netns, "TcpExt", "TCPSynRetrans") - retrans_before;
    assert!(retransmissions >= 1, "the kernel retransmitted no SYN");

    wait_for(&tracer, "SYN_SENT", "CLOSE", true, 1);
    let last = finish(tracer);
    let r = row(&last, "SYN_SENT", "CLOSE", true).unwrap_or_else(|| panic!("{last}"));
    assert_eq!(r["path"], "client", "{r}");
    assert_eq!(r["count"], 1, "{r}");
    assert_eq!(count(&last, "CLOSE", "SYN_SENT", false), 1, "{last}");
    // No reset came: a timeout, nothing else.
    assert_eq!(r["cause"], serde_json::json!({"timeout": 1}), "{r}");
    // One socket closed after as many retransmissions as the kernel counted.
    assert_eq!(
        r["retransmits"],
        serde_json::json!({ retransmissions.to_string(): 1 }),
        "{r}"
    );
    assert_eq!(
        request_row(&last, "TCPSynRetrans"),
        retransmissions,
        "{last}"
    );
    let ms = r["time_in_from_ns"]["p50"].as_u64().unwrap() as f64 / 1e6;
    assert!(
        (2900.0..4000.0).contains(&ms),
        "SYN_SENT lasted {ms} ms, expected about 3000 ms"
    );
    assert_eq!(last["paths"][0]["path"], "SYN_SENT->CLOSE", "{last}");
}

/// Bare SYNs from a raw socket: the server's SYN-ACKs are answered by the kernel with resets,
/// which kill the request sockets (embryonic resets). No full socket is ever created.
#[test]
fn embryonic_resets_in_a_namespace_are_counted_exactly() {
    if !privileged("embryonic_resets_in_a_namespace_are_counted_exactly") {
        return;
    }
    const SYNS: u64 = 3;
    let netns = Netns::new("embryonic resets");
    let mut server = Peer::spawn_in(&netns);
    let port = server.port(&format!("listen {LO}"));
    let tracer = start_in(&netns, &["--netns", &netns.inode()]);

    let sent = netns.output(
        env!("CARGO_BIN_EXE_raw-syn"),
        &[LO, &port.to_string(), &SYNS.to_string()],
    );
    assert_eq!(sent.lines().count() as u64, SYNS, "raw-syn: {sent}");
    tracer.wait_json(&format!("{SYNS} embryonic resets"), |lines| {
        lines
            .last()
            .is_some_and(|last| request_row(last, "EmbryonicRsts") >= SYNS)
    });
    let last = finish(tracer);
    assert_eq!(request_row(&last, "EmbryonicRsts"), SYNS, "{last}");
    // Request sockets never pass through inet_sock_set_state: no child, no transition.
    assert_eq!(count(&last, "LISTEN", "SYN_RECV", false), 0, "{last}");
    assert_eq!(last["transitions"], serde_json::json!([]), "{last}");
    assert_eq!(request_row(&last, "TCPSynRetrans"), 0, "{last}");
}

/// The final ACK of the handshake is dropped and `net.ipv4.tcp_synack_retries = 1`: the
/// request socket retransmits its SYN-ACK once, then expires.
#[test]
fn synack_retransmits_in_a_namespace_are_counted() {
    if !privileged("synack_retransmits_in_a_namespace_are_counted") {
        return;
    }
    let netns = Netns::new("synack retransmits");
    netns.sysctl("net.ipv4.tcp_synack_retries", "1");
    let mut server = Peer::spawn_in(&netns);
    let port = server.port(&format!("listen {LO}"));
    netns.drop_inbound(port, "ack");
    let retrans_before = kernel_counter(&netns, "TcpExt", "TCPSynRetrans");
    let tracer = start_in(&netns, &["--netns", &netns.inode()]);

    // The client sent the final ACK: it is ESTABLISHED, the server never learns it.
    let mut client = Peer::spawn_in(&netns);
    client.port(&format!("connect {LO} {port}"));
    tracer.wait_json("a SYN-ACK retransmit", |lines| {
        lines.last().is_some_and(|last| {
            request_row(last, "tcp_retransmit_synack") >= 1
                && request_row(last, "TCPSynRetrans") >= 1
        })
    });
    let last = finish(tracer);
    let retransmissions = kernel_counter(&netns, "TcpExt", "TCPSynRetrans") - retrans_before;
    // One retransmit, then the request expires: the tracepoint and the counter agree.
    assert_eq!(retransmissions, 1);
    assert_eq!(request_row(&last, "tcp_retransmit_synack"), 1, "{last}");
    assert_eq!(request_row(&last, "TCPSynRetrans"), 1, "{last}");
    // The server never created a child.
    assert_eq!(count(&last, "LISTEN", "SYN_RECV", false), 0, "{last}");
    assert_eq!(count(&last, "CLOSE", "SYN_SENT", false), 1, "{last}");
    assert_eq!(count(&last, "SYN_SENT", "ESTABLISHED", false), 1, "{last}");
}

/// A known workload in a fresh namespace: the namespace's own `Tcp:` counters and the stream
/// must agree exactly, and both must equal what the workload did.
#[test]
fn kernel_counters_agree_exactly_with_a_known_workload_in_a_namespace() {
    if !privileged("kernel_counters_agree_exactly_with_a_known_workload_in_a_namespace") {
        return;
    }
    const ORDERLY: u64 = 20;
    const RESETS: u64 = 3;
    const REFUSED: u64 = 2;
    // Nothing listens on it in a fresh namespace.
    const CLOSED_PORT: u16 = 9;
    let netns = Netns::new("kernel witness");
    let mut server = Peer::spawn_in(&netns);
    let port = server.port(&format!("listen {LO}"));
    let mut client = Peer::spawn_in(&netns);
    // Unfiltered, so that the check is comparable: it counts the transitions of tcptrace's own
    // namespace only. The rows of the second tracer hold this namespace's transitions only.
    let witness = start_in(&netns, &[]);
    let rows = start_in(&netns, &["--netns", &netns.inode()]);

    // Orderly: the client closes first, the server after reading the end of the stream.
    for _ in 0..ORDERLY {
        client.port(&format!("connect {LO} {port}"));
        server.cmd("accept");
        client.cmd("close");
        server.cmd("wait-eof");
        server.cmd("close");
    }
    // Resets: the client aborts (SO_LINGER 0), the server reads the reset before closing, so
    // that it never sends a FIN of its own.
    for _ in 0..RESETS {
        client.port(&format!("connect {LO} {port}"));
        server.cmd("accept");
        client.cmd("linger0");
        client.cmd("close");
        let err = server.try_cmd("wait-eof").unwrap_err();
        assert!(err.contains("reset"), "{err}");
        server.cmd("close");
    }
    for _ in 0..REFUSED {
        let err = client
            .try_cmd(&format!("connect {LO} {CLOSED_PORT}"))
            .unwrap_err();
        assert!(err.contains("refused"), "{err}");
    }

    let active = ORDERLY + RESETS + REFUSED;
    let passive = ORDERLY + RESETS;
    // Both sides of each aborted connection leave ESTABLISHED for CLOSE.
    let estab_resets = 2 * RESETS;
    let expected_seen = [active, passive, estab_resets];
    wait_for(&rows, "FIN_WAIT2", "TIME_WAIT", false, ORDERLY);
    wait_for(&rows, "LAST_ACK", "CLOSE", false, ORDERLY);
    wait_for(&rows, "SYN_SENT", "CLOSE", true, REFUSED);
    rows.wait_json("every reset", |lines| {
        lines
            .last()
            .is_some_and(|last| total(last, "ESTABLISHED", "CLOSE").0 >= estab_resets)
    });
    witness.wait_json("the stream's side of the check", |lines| {
        lines.last().is_some_and(|last| {
            let seen: Vec<u64> = last["kernel_check"]["rows"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["seen"].as_u64().unwrap())
                .collect();
            seen.iter().zip(expected_seen).all(|(s, e)| *s >= e)
        })
    });
    let rows = finish(rows);
    let witness = finish(witness);

    // The check, from the unfiltered tracer: exact, and equal to the workload.
    let check = &witness["kernel_check"];
    assert_eq!(check["comparable"], true, "{check}");
    assert_eq!(check["netns_unknown"], 0, "{check}");
    let check_rows: Vec<(String, u64, u64, String)> = check["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["counter"].as_str().unwrap().to_owned(),
                r["kernel"].as_u64().unwrap(),
                r["seen"].as_u64().unwrap(),
                r["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let agrees = |counter: &str, n: u64| (counter.to_owned(), n, n, "agrees".to_owned());
    assert_eq!(
        check_rows,
        [
            agrees("TcpActiveOpens", active),
            agrees("TcpPassiveOpens", passive),
            agrees("TcpEstabResets", estab_resets),
        ]
    );

    // The unfiltered tracer's per-namespace breakdown has this namespace, marked as its own,
    // with the workload's opens.
    let own: Vec<&serde_json::Value> = witness["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|ns| ns["own"] == true)
        .collect();
    assert_eq!(own.len(), 1, "{}", witness["namespaces"]);
    assert_eq!(own[0]["active_opens"], active, "{}", own[0]);
    assert_eq!(own[0]["passive_opens"], passive, "{}", own[0]);

    // The rows of this namespace: every transition of the workload, exactly.
    let n = |from: &str, to: &str, abnormal: bool| count(&rows, from, to, abnormal);
    assert_eq!(n("CLOSE", "SYN_SENT", false), active, "{rows}");
    assert_eq!(n("LISTEN", "SYN_RECV", false), passive, "{rows}");
    assert_eq!(n("SYN_SENT", "ESTABLISHED", false), passive, "{rows}");
    assert_eq!(n("SYN_RECV", "ESTABLISHED", false), passive, "{rows}");
    for (from, to) in [
        ("ESTABLISHED", "FIN_WAIT1"),
        ("FIN_WAIT1", "FIN_WAIT2"),
        ("FIN_WAIT2", "TIME_WAIT"),
        ("ESTABLISHED", "CLOSE_WAIT"),
        ("CLOSE_WAIT", "LAST_ACK"),
        ("LAST_ACK", "CLOSE"),
    ] {
        assert_eq!(n(from, to, false), ORDERLY, "{from}->{to}: {rows}");
    }
    let refused = row(&rows, "SYN_SENT", "CLOSE", true).unwrap_or_else(|| panic!("{rows}"));
    assert_eq!(refused["count"], REFUSED, "{refused}");
    assert_eq!(refused["cause"], serde_json::json!({"refused": REFUSED}));
    // The client sent each reset, the server received it.
    assert_eq!(
        total(&rows, "ESTABLISHED", "CLOSE"),
        (
            estab_resets,
            map(&[("reset_received", RESETS), ("reset_sent", RESETS)])
        ),
        "{rows}"
    );
    assert_eq!(total(&rows, "CLOSE_WAIT", "CLOSE").0, 0, "{rows}");
}
