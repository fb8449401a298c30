//! The fates of request sockets and connection attempts by listener and peer (`transitions
//! --json`'s `request_socket_fates`, from `skb:kfree_skb`), each made on demand in a network
//! namespace of the test, whose own kernel counters count exactly the test's workload.

use serde_json::Value;

use std::process::Command;

use crate::{
    support::{Netns, Peer, Tracer, privileged, tcptrace_bin, wait_until},
    transitions::finish,
    transitions_netns::{kernel_counter, request_row, start_in},
};

const LO: &str = "127.0.0.1";

/// The fates breakdown of a JSON object; fails when the probe could not trace it.
fn fates(object: &Value) -> &Value {
    let fates = &object["request_socket_fates"];
    assert!(fates.is_object(), "no request_socket_fates in {object}");
    fates
}

/// The row of the listener on `port` (in any namespace), if there is one.
fn listener(object: &Value, port: u16) -> Option<&Value> {
    fates(object)["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["port"] == port)
}

/// A fate's count on the listener of `port`: 0 without a row.
fn on_port(object: &Value, port: u16, fate: &str) -> u64 {
    listener(object, port).map_or(0, |l| l["count"][fate].as_u64().unwrap())
}

/// A fate's count over everything seen.
fn total(object: &Value, fate: &str) -> u64 {
    fates(object)["total"][fate].as_u64().unwrap()
}

/// The peers of a listener's row, as (address, that fate's count).
fn peers(row: &Value, fate: &str) -> Vec<(String, u64)> {
    row["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["addr"].as_str().unwrap().to_owned(),
                p["count"][fate].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Bare SYNs from a raw socket: the server's SYN-ACKs are answered by the kernel with resets
/// (the raw socket's ports belong to no socket), which kill the request sockets.
#[test]
fn embryonic_resets_are_attributed_to_the_listener_and_the_peer_exactly() {
    if !privileged("embryonic_resets_are_attributed_to_the_listener_and_the_peer_exactly") {
        return;
    }
    const SYNS: u64 = 4;
    let netns = Netns::new("fates embryonic");
    let mut server = Peer::spawn_in(&netns);
    let port = server.port(&format!("listen {LO}"));
    let server_pid = server.cmd("pid");
    let tracer = start_in(&netns, &["--netns", &netns.inode()]);

    let sent = netns.output(
        env!("CARGO_BIN_EXE_raw-syn"),
        &[LO, &port.to_string(), &SYNS.to_string()],
    );
    assert_eq!(sent.lines().count() as u64, SYNS, "raw-syn: {sent}");
    tracer.wait_json(&format!("{SYNS} embryonic resets on :{port}"), |lines| {
        lines.last().is_some_and(|last| {
            request_row(last, "EmbryonicRsts") >= SYNS
                && on_port(last, port, "embryonic_reset") >= SYNS
        })
    });
    let last = finish(tracer);
    let kernel = request_row(&last, "EmbryonicRsts");
    assert_eq!(kernel, SYNS, "{last}");
    // Exact against the namespace's counter, all on the listener's port, from the one peer.
    assert_eq!(
        fates(&last)["own_namespace"]["embryonic_reset"],
        kernel,
        "{last}"
    );
    let row = listener(&last, port).unwrap();
    assert_eq!(row["count"]["embryonic_reset"], SYNS, "{row}");
    assert_eq!(row["local"], LO, "{row}");
    assert_eq!(row["own"], true, "{row}");
    assert_eq!(
        peers(row, "embryonic_reset"),
        [(LO.to_owned(), SYNS)],
        "{row}"
    );
    // The listener's owner, from the listener map (its listen() came before the probe: the
    // start-up census seeded it).
    assert_eq!(row["pid"].to_string(), server_pid, "{row}");
    // The SYN-ACKs that the kernel refused on the raw socket's ports are not SYNs: no closed
    // port, no overflow.
    assert_eq!(total(&last, "closed_port"), 0, "{last}");
    assert_eq!(total(&last, "listen_overflow"), 0, "{last}");
}

/// Connects to ports nothing listens on, over IPv4 and IPv6: each SYN is dropped as NO_SOCKET
/// and answered with a reset, which the namespace's Tcp OutRsts counts.
#[test]
fn syns_to_closed_ports_are_counted_per_port_exactly() {
    if !privileged("syns_to_closed_ports_are_counted_per_port_exactly") {
        return;
    }
    const V4_PORT: u16 = 9;
    const V4_TRIES: u64 = 3;
    const V6_PORT: u16 = 13;
    const V6_TRIES: u64 = 2;
    let netns = Netns::new("fates closed port");
    let resets_before = kernel_counter(&netns, "Tcp", "OutRsts");
    let tracer = start_in(&netns, &["--netns", &netns.inode()]);

    let mut client = Peer::spawn_in(&netns);
    for (addr, port, tries) in [(LO, V4_PORT, V4_TRIES), ("::1", V6_PORT, V6_TRIES)] {
        for _ in 0..tries {
            let err = client
                .try_cmd(&format!("connect {addr} {port}"))
                .unwrap_err();
            assert!(err.contains("refused"), "{err}");
        }
    }
    tracer.wait_json("every refused SYN", |lines| {
        lines.last().is_some_and(|last| {
            on_port(last, V4_PORT, "closed_port") >= V4_TRIES
                && on_port(last, V6_PORT, "closed_port") >= V6_TRIES
        })
    });
    let last = finish(tracer);
    let resets = kernel_counter(&netns, "Tcp", "OutRsts") - resets_before;
    assert_eq!(resets, V4_TRIES + V6_TRIES, "the kernel's resets");
    let v4 = listener(&last, V4_PORT).unwrap();
    assert_eq!(v4["count"]["closed_port"], V4_TRIES, "{v4}");
    assert_eq!(v4["local"], LO, "{v4}");
    assert_eq!(peers(v4, "closed_port"), [(LO.to_owned(), V4_TRIES)]);
    // Nothing listens there: no owner.
    assert_eq!(v4["pid"], Value::Null, "{v4}");
    let v6 = listener(&last, V6_PORT).unwrap();
    assert_eq!(v6["count"]["closed_port"], V6_TRIES, "{v6}");
    assert_eq!(v6["local"], "::1", "{v6}");
    assert_eq!(peers(v6, "closed_port"), [("::1".to_owned(), V6_TRIES)]);
    // One reset per refused SYN, and nothing else dropped for a fate.
    assert_eq!(
        fates(&last)["own_namespace"]["closed_port"],
        resets,
        "{last}"
    );
    assert_eq!(total(&last, "embryonic_reset"), 0, "{last}");
    assert_eq!(total(&last, "listen_overflow"), 0, "{last}");
}

/// Listen overflows of the kind that drops a packet: two handshakes wait with their final
/// ACKs dropped by nft while three more fill the accept queue (backlog 2: three children);
/// when the request sockets retransmit their SYN-ACKs, the clients' ACKs find the queue full
/// and the kernel drops them, counting ListenOverflows, once per retransmission that finds the
/// queue full (how many depends on how fast the machine filled it: the comparison is with the
/// kernel's count). Closing the listener then ends the request sockets, and with them the
/// overflows, so that the two counts can be compared at rest.
#[test]
fn listen_overflows_are_attributed_to_the_listener_exactly() {
    if !privileged("listen_overflows_are_attributed_to_the_listener_exactly") {
        return;
    }
    const WAITING: u64 = 2;
    const FILLING: u64 = 3;
    let netns = Netns::new("fates overflow");
    // Retransmissions after 1, 3 and 7 s: time enough to fill the queue, even emulated.
    netns.sysctl("net.ipv4.tcp_synack_retries", "3");
    let mut server = Peer::spawn_in(&netns);
    let port = server.port(&format!("listen {LO}"));
    server.cmd("backlog 2");
    let overflows = || kernel_counter(&netns, "TcpExt", "ListenOverflows");
    let before = overflows();
    let tracer = start_in(&netns, &["--netns", &netns.inode()]);

    netns.drop_inbound(port, "ack");
    let mut clients: Vec<Peer> = (0..WAITING + FILLING)
        .map(|_| Peer::spawn_in(&netns))
        .collect();
    let (waiting, filling) = clients.split_at_mut(WAITING as usize);
    for client in waiting {
        client.port(&format!("connect {LO} {port}"));
    }
    netns.stop_dropping();
    for client in filling {
        client.port(&format!("connect {LO} {port}"));
    }
    wait_until("an overflow of each waiting handshake", || {
        (overflows() - before >= WAITING).then_some(())
    });
    server.cmd("close-listener");
    let kernel = overflows() - before;
    tracer.wait_json(&format!("{kernel} listen overflows on :{port}"), |lines| {
        lines
            .last()
            .is_some_and(|last| on_port(last, port, "listen_overflow") >= kernel)
    });
    let last = finish(tracer);
    assert_eq!(
        overflows() - before,
        kernel,
        "overflows after the listener closed"
    );
    assert_eq!(request_row(&last, "ListenOverflows"), kernel, "{last}");
    let row = listener(&last, port).unwrap();
    assert_eq!(row["count"]["listen_overflow"], kernel, "{row}");
    assert_eq!(
        peers(row, "listen_overflow"),
        [(LO.to_owned(), kernel)],
        "{row}"
    );
    assert_eq!(
        fates(&last)["own_namespace"]["listen_overflow"],
        kernel,
        "{last}"
    );
    assert_eq!(total(&last, "embryonic_reset"), 0, "{last}");
    assert_eq!(total(&last, "closed_port"), 0, "{last}");
}

/// A recording carries the dropped packets and says it traced them: its replay attributes the
/// embryonic resets as the live command did.
#[test]
fn a_recording_replays_the_fates_by_listener() {
    if !privileged("a_recording_replays_the_fates_by_listener") {
        return;
    }
    const SYNS: u64 = 3;
    let netns = Netns::new("fates record");
    let mut server = Peer::spawn_in(&netns);
    let port = server.port(&format!("listen {LO}"));
    let before = kernel_counter(&netns, "TcpExt", "EmbryonicRsts");
    let file = std::env::temp_dir().join(format!(
        "tcptrace-fates-{}-{port}.tcptrace",
        std::process::id()
    ));
    let recorder = Tracer::start_in(&netns, &["record", "--output", file.to_str().unwrap()]);
    netns.output(
        env!("CARGO_BIN_EXE_raw-syn"),
        &[LO, &port.to_string(), &SYNS.to_string()],
    );
    // The kernel counts each one just before it drops the reset: the records follow at once,
    // and the recorder drains the ring buffer when it stops.
    wait_until("the namespace's embryonic resets", || {
        (kernel_counter(&netns, "TcpExt", "EmbryonicRsts") - before >= SYNS).then_some(())
    });
    let finished = recorder.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    let replay = Command::new(tcptrace_bin())
        .args(["transitions", "--json", "--replay", file.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(replay.status.success(), "{replay:?}");
    let stdout = String::from_utf8_lossy(&replay.stdout);
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(request_row(&last, "EmbryonicRsts"), SYNS, "{last}");
    assert_eq!(on_port(&last, port, "embryonic_reset"), SYNS, "{last}");
    assert_eq!(
        fates(&last)["own_namespace"]["embryonic_reset"],
        SYNS,
        "{last}"
    );
}
