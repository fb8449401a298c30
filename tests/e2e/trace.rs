//! `tcptrace trace --json` against real connections.

use crate::support::{
    Netns, Peer, Tracer, events_lost, find, ms_in_from, path_of, privileged, socket,
};

/// Hold times long enough to stand out from scheduling noise on a loaded 2-core machine.
const CLIENT_HOLD_MS: f64 = 300.0;
const CLOSE_WAIT_HOLD_MS: f64 = 200.0;
/// How late a sleeping peer may wake and act.
const SLACK_MS: f64 = 250.0;

fn assert_held(line: &serde_json::Value, hold_ms: f64) {
    let ms = ms_in_from(line);
    assert!(
        ms >= hold_ms - 1.0 && ms <= hold_ms + SLACK_MS,
        "{} -> {}: {ms} ms in {}, expected {hold_ms} ms (+{SLACK_MS})",
        line["from"],
        line["to"],
        line["from"]
    );
}

/// A full lifecycle, the client closing first after a known time and the server holding
/// CLOSE_WAIT for a known time: exact transitions, times and owners on both sides.
fn lifecycle(addr: &str, family: &str) {
    let tracer = Tracer::start(&["trace", "--json"]);
    let mut server = Peer::spawn();
    let mut client = Peer::spawn();
    let port = server.port(&format!("listen {addr}"));
    let cport = client.port(&format!("connect {addr} {port}"));
    assert_eq!(server.port("accept"), cport);
    client.cmd(&format!("sleep {CLIENT_HOLD_MS}"));
    client.cmd("close");
    server.cmd("wait-eof");
    server.cmd(&format!("sleep {CLOSE_WAIT_HOLD_MS}"));
    server.cmd("close");
    server.cmd("close-listener");

    let client_side = socket(cport, port);
    let server_side = socket(port, cport);
    let listener = |line: &serde_json::Value| line["lport"] == port && line["rport"] == 0;
    let lines = tracer.wait_json("both sides and the listener to close", |lines| {
        path_of(lines, &client_side)
            .last()
            .is_some_and(|t| t == "FIN_WAIT2->CLOSE")
            && path_of(lines, &server_side)
                .last()
                .is_some_and(|t| t == "LAST_ACK->CLOSE")
            && path_of(lines, listener)
                .last()
                .is_some_and(|t| t == "LISTEN->CLOSE")
    });
    let finished = tracer.stop();
    assert!(finished.status.success(), "{}", finished.stderr);

    assert_eq!(
        path_of(&lines, &client_side),
        [
            "CLOSE->SYN_SENT",
            "SYN_SENT->ESTABLISHED",
            "ESTABLISHED->FIN_WAIT1",
            "FIN_WAIT1->FIN_WAIT2",
            "FIN_WAIT2->CLOSE"
        ]
    );
    assert_eq!(
        path_of(&lines, &server_side),
        [
            "LISTEN->SYN_RECV",
            "SYN_RECV->ESTABLISHED",
            "ESTABLISHED->CLOSE_WAIT",
            "CLOSE_WAIT->LAST_ACK",
            "LAST_ACK->CLOSE"
        ]
    );
    assert_eq!(
        path_of(&lines, listener),
        ["CLOSE->LISTEN", "LISTEN->CLOSE"]
    );

    for line in lines.iter().filter(|l| client_side(l)) {
        crate::support::assert_recent_time(line);
        assert_eq!(line["pid"], client.pid(), "client owner: {line}");
        assert_eq!(line["comm"], "tcp-peer");
        assert_eq!(line["family"], family);
        assert_eq!(line["laddr"], addr);
        assert_eq!(line["raddr"], addr);
    }
    for line in lines.iter().filter(|l| server_side(l) || listener(l)) {
        assert_eq!(line["pid"], server.pid(), "server owner: {line}");
    }
    assert_held(
        find(&lines, &client_side, "ESTABLISHED", "FIN_WAIT1"),
        CLIENT_HOLD_MS,
    );
    assert_held(
        find(&lines, &server_side, "CLOSE_WAIT", "LAST_ACK"),
        CLOSE_WAIT_HOLD_MS,
    );
    // Sockets born while tracing have no time in their first state.
    assert!(find(&lines, &client_side, "CLOSE", "SYN_SENT")["time_in_from_ns"].is_null());
    assert!(find(&lines, &server_side, "LISTEN", "SYN_RECV")["time_in_from_ns"].is_null());
    // The handshake on loopback takes well under the hold times.
    assert!(ms_in_from(find(&lines, &client_side, "SYN_SENT", "ESTABLISHED")) < 100.0);
    assert_eq!(
        events_lost(&finished.stderr),
        Some(0),
        "{}",
        finished.stderr
    );
}

#[test]
fn ipv4_lifecycle_with_times_and_owners() {
    if privileged("ipv4_lifecycle_with_times_and_owners") {
        lifecycle("127.0.0.1", "inet");
    }
}

#[test]
fn ipv6_lifecycle_with_times_and_owners() {
    if privileged("ipv6_lifecycle_with_times_and_owners") {
        lifecycle("::1", "inet6");
    }
}

#[test]
fn reset_by_linger_zero() {
    if !privileged("reset_by_linger_zero") {
        return;
    }
    let tracer = Tracer::start(&["trace", "--json"]);
    let mut server = Peer::spawn();
    let mut client = Peer::spawn();
    let port = server.port("listen 127.0.0.1");
    let cport = client.port(&format!("connect 127.0.0.1 {port}"));
    server.cmd("accept");
    client.cmd("linger0");
    client.cmd("close");
    let (client_side, server_side) = (socket(cport, port), socket(port, cport));
    let lines = tracer.wait_json("both sides to close", |lines| {
        path_of(lines, &client_side)
            .last()
            .is_some_and(|t| t.ends_with("->CLOSE"))
            && path_of(lines, &server_side)
                .last()
                .is_some_and(|t| t.ends_with("->CLOSE"))
    });
    assert_eq!(
        path_of(&lines, &client_side),
        [
            "CLOSE->SYN_SENT",
            "SYN_SENT->ESTABLISHED",
            "ESTABLISHED->CLOSE"
        ]
    );
    assert_eq!(
        path_of(&lines, &server_side),
        [
            "LISTEN->SYN_RECV",
            "SYN_RECV->ESTABLISHED",
            "ESTABLISHED->CLOSE"
        ]
    );
    // The server received the RST in softirq, yet the transition is its own.
    assert_eq!(
        find(&lines, &server_side, "ESTABLISHED", "CLOSE")["pid"],
        server.pid()
    );
}

#[test]
fn refused_connect() {
    if !privileged("refused_connect") {
        return;
    }
    // A port that was just free: listen, learn it, stop listening.
    let mut probe = Peer::spawn();
    let port = probe.port("listen 127.0.0.1");
    probe.cmd("close-listener");

    let tracer = Tracer::start(&["trace", "--json", "--rport", &port.to_string()]);
    let mut client = Peer::spawn();
    let err = client
        .try_cmd(&format!("connect 127.0.0.1 {port}"))
        .unwrap_err();
    assert!(err.contains("refused"), "{err}");
    let lines = tracer.wait_json("the refused connect", |lines| {
        path_of(lines, |l| l["rport"] == port).len() >= 2
    });
    assert_eq!(
        path_of(&lines, |l| l["rport"] == port),
        ["CLOSE->SYN_SENT", "SYN_SENT->CLOSE"]
    );
    // The local port, unknown when SYN_SENT is entered, is filled in from the next transition.
    let lport = &lines[1]["lport"];
    assert_ne!(*lport, 0);
    assert_eq!(lines[0]["lport"], *lport);
    assert_eq!(lines[0]["pid"], client.pid());
    // The close carries the kernel's error; the opening transition has no close.
    assert!(lines[0].get("close").is_none(), "{}", lines[0]);
    assert_eq!(
        lines[1]["close"],
        serde_json::json!({
            "error": "ECONNREFUSED",
            "soft_error": null,
            "retransmits": 0,
            "probes_out": 0,
            "orphan": false,
            "keepalive": false,
            "user_timeout": false
        }),
        "{}",
        lines[1]
    );
}

#[test]
fn port_filters_select_each_side() {
    if !privileged("port_filters_select_each_side") {
        return;
    }
    let mut server = Peer::spawn();
    let port = server.port("listen 127.0.0.1");
    let local = Tracer::start(&["trace", "--json", "--lport", &port.to_string()]);
    let remote = Tracer::start(&["trace", "--json", "--rport", &port.to_string()]);
    let mut client = Peer::spawn();
    let cport = client.port(&format!("connect 127.0.0.1 {port}"));
    server.cmd("accept");
    client.cmd("close");
    server.cmd("wait-eof");
    server.cmd("close");

    let local_lines = local.wait_json("the server side", |lines| {
        path_of(lines, socket(port, cport))
            .last()
            .is_some_and(|t| t == "LAST_ACK->CLOSE")
    });
    let remote_lines = remote.wait_json("the client side", |lines| {
        path_of(lines, socket(cport, port))
            .last()
            .is_some_and(|t| t == "FIN_WAIT2->CLOSE")
    });
    // Stop both, so that every line they would ever print is in.
    let local_all = local.stop().stdout;
    let remote_all = remote.stop().stdout;
    assert!(local_lines.len() >= 5 && remote_lines.len() >= 5);
    for line in &local_all {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(line["lport"], port, "--lport let through {line}");
    }
    for line in &remote_all {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(line["rport"], port, "--rport let through {line}");
    }
}

#[test]
fn duration_ends_the_trace_with_a_summary() {
    if !privileged("duration_ends_the_trace_with_a_summary") {
        return;
    }
    let tracer = Tracer::start(&["trace", "--duration", "0.5", "--lport", "1"]);
    let finished = tracer.wait();
    crate::support::assert_empty_summary(&finished);
    // The text table starts with its header.
    assert!(
        finished.stdout[0].starts_with("  PID COMM "),
        "{:?}",
        finished.stdout
    );
}

#[test]
fn children_inherit_their_own_namespace_s_listener() {
    if !privileged("children_inherit_their_own_namespace_s_listener") {
        return;
    }
    // Two namespaces, a listener on the same port in each, owned by different processes: the
    // accepted children must each inherit their own listener's owner.
    const PORT: u16 = 5999;
    let (a, b) = (
        Netns::new("children_inherit_a"),
        Netns::new("children_inherit_b"),
    );
    let tracer = Tracer::start(&["trace", "--json", "--lport", &PORT.to_string()]);
    // Both listen before either accepts: a listener keyed by port alone would be overwritten.
    let mut servers: Vec<(String, Peer)> = [&a, &b]
        .into_iter()
        .map(|ns| {
            let mut server = Peer::spawn_in(ns);
            assert_eq!(server.port(&format!("listen 127.0.0.1 {PORT}")), PORT);
            (ns.inode(), server)
        })
        .collect();
    let mut clients = Vec::new();
    for (ns, (_, server)) in [&a, &b].into_iter().zip(&mut servers) {
        let mut client = Peer::spawn_in(ns);
        client.cmd(&format!("connect 127.0.0.1 {PORT}"));
        server.cmd("accept");
        clients.push(client);
    }
    let lines = tracer.wait_json("both children", |lines| {
        path_of(lines, |l| l["from"] == "LISTEN" && l["to"] == "SYN_RECV").len() == 2
    });
    for (inode, server) in &servers {
        let netns: u64 = inode
            .trim_start_matches("net:[")
            .trim_end_matches(']')
            .parse()
            .unwrap();
        let child = lines
            .iter()
            .find(|l| l["from"] == "LISTEN" && l["to"] == "SYN_RECV" && l["netns"] == netns)
            .unwrap_or_else(|| panic!("no child in {inode}: {lines:#?}"));
        assert_eq!(child["pid"], server.pid(), "{child}");
    }
}
