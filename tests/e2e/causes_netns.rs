//! The causes of abnormal closes, each made to happen in a network namespace of its own (nft
//! rules drop what must go unanswered, per-namespace sysctls shorten the timers), checked
//! against `tcptrace transitions --json` and against the namespace's own kernel counters where
//! they witness the cause: TcpAttemptFails counts the connects the kernel failed (not those the
//! application abandoned), TCPAbortOnTimeout the timers that gave up, TCPKeepAlive the probes.

use std::time::Instant;

use serde_json::{Value, json};

use crate::{
    support::{Netns, Peer, privileged},
    transitions::{finish, wait_for},
    transitions_netns::{kernel_counter, start_in, total},
};

const LO: &str = "127.0.0.1";

/// The abnormal row `from -> to` of path `path` (`client`, `server`).
fn abnormal_row<'a>(object: &'a Value, path: &str, from: &str, to: &str) -> &'a Value {
    object["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["path"] == path && r["from"] == from && r["to"] == to && r["abnormal"] == true)
        .unwrap_or_else(|| panic!("no abnormal {path} {from}->{to} in {object}"))
}

/// The namespace's counters named, read at once.
fn counters(netns: &Netns, names: &[(&str, &str)]) -> Vec<u64> {
    names
        .iter()
        .map(|(section, name)| kernel_counter(netns, section, name))
        .collect()
}

/// How much each counter grew since `before`.
fn grown(netns: &Netns, names: &[(&str, &str)], before: &[u64]) -> Vec<u64> {
    counters(netns, names)
        .iter()
        .zip(before)
        .map(|(now, then)| now - then)
        .collect()
}

/// Drops every segment from local port `port` (the server's answers, ACKs and probes alike),
/// so that the client's retransmissions and probes go unanswered.
fn drop_from_port(netns: &Netns, port: u16) {
    netns.nft(&format!(
        "table inet tcptrace_causes {{
            chain output {{
                type filter hook output priority 0; policy accept;
                tcp sport {port} drop
            }}
        }}"
    ));
}

/// An established connection from a client to a server of the namespace, accepted.
fn connected(netns: &Netns, port: u16) -> (Peer, Peer) {
    let mut server = Peer::spawn_in(netns);
    server.cmd(&format!("listen {LO} {port}"));
    let mut client = Peer::spawn_in(netns);
    client.cmd(&format!("connect {LO} {port}"));
    server.cmd("accept");
    (client, server)
}

/// SYN to a port nothing listens on: the kernel answers with a reset, the connect fails with
/// ECONNREFUSED, and the kernel counts a failed attempt.
#[test]
fn a_connect_to_a_closed_port_is_refused() {
    if !privileged("a_connect_to_a_closed_port_is_refused") {
        return;
    }
    const PORT: u16 = 4301;
    let netns = Netns::new("cause refused");
    let witnesses = [("Tcp", "AttemptFails"), ("Tcp", "OutRsts")];
    let tracer = start_in(&netns, &["--netns", &netns.inode()]);
    let before = counters(&netns, &witnesses);

    let mut client = Peer::spawn_in(&netns);
    let err = client.try_cmd(&format!("connect {LO} {PORT}")).unwrap_err();
    assert!(err.contains("refused"), "{err}");

    wait_for(&tracer, "SYN_SENT", "CLOSE", true, 1);
    let last = finish(tracer);
    assert_eq!(grown(&netns, &witnesses, &before), [1, 1]);
    let r = abnormal_row(&last, "client", "SYN_SENT", "CLOSE");
    assert_eq!(r["count"], 1, "{r}");
    assert_eq!(r["cause"], json!({"refused": 1}), "{r}");
    assert!(r.get("timers").is_none(), "{r}");
    assert_eq!(r["retransmits"], json!({}), "{r}");
}

/// One side aborts an established connection with SO_LINGER 0: it sends a reset (the kernel
/// names its reason on Linux 6.10 and later), the other side receives it.
fn abort(test: &str, port: u16, client_aborts: bool) {
    if !privileged(test) {
        return;
    }
    let netns = Netns::new(test);
    let witnesses = [("Tcp", "EstabResets"), ("TcpExt", "TCPAbortOnData")];
    let tracer = start_in(&netns, &["--netns", &netns.inode()]);
    let before = counters(&netns, &witnesses);
    let (mut client, mut server) = connected(&netns, port);
    let (aborter, other) = if client_aborts {
        (&mut client, &mut server)
    } else {
        (&mut server, &mut client)
    };
    aborter.cmd("linger0");
    aborter.cmd("close");
    let err = other.try_cmd("wait-eof").unwrap_err();
    assert!(err.contains("reset"), "{err}");

    tracer.wait_json("both sides' closes", |lines| {
        lines
            .last()
            .is_some_and(|last| total(last, "ESTABLISHED", "CLOSE").0 >= 2)
    });
    let last = finish(tracer);
    // Both sides left ESTABLISHED for CLOSE; the aborting close is counted as an abort on data.
    assert_eq!(grown(&netns, &witnesses, &before), [2, 1]);
    let (aborting, receiving) = if client_aborts {
        ("client", "server")
    } else {
        ("server", "client")
    };
    let sent = abnormal_row(&last, aborting, "ESTABLISHED", "CLOSE");
    assert_eq!(sent["cause"], json!({"reset_sent": 1}), "{sent}");
    let received = abnormal_row(&last, receiving, "ESTABLISHED", "CLOSE");
    assert_eq!(
        received["cause"],
        json!({"reset_received": 1}),
        "{received}"
    );
    // tcp_disconnect() sends it with the reason of a zero-linger abort where the kernel names
    // reasons (Linux 6.10 and later); before, no reason is claimed.
    if reasons_reported() {
        assert_eq!(sent["reset_reasons"], json!({"tcp_state": 1}), "{sent}");
    } else {
        assert!(sent.get("reset_reasons").is_none(), "{sent}");
    }
}

/// Whether the running kernel's `tcp:tcp_send_reset` carries the reset's reason: Linux 6.10
/// and later.
fn reasons_reported() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut numbers = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<u32>().ok());
    (numbers.next().unwrap(), numbers.next().unwrap()) >= (6, 10)
}

#[test]
fn a_client_aborting_with_linger_0_sends_a_reset_the_server_receives() {
    abort(
        "a_client_aborting_with_linger_0_sends_a_reset_the_server_receives",
        4302,
        true,
    );
}

#[test]
fn a_server_aborting_with_linger_0_sends_a_reset_the_client_receives() {
    abort(
        "a_server_aborting_with_linger_0_sends_a_reset_the_client_receives",
        4303,
        false,
    );
}

/// SYNs dropped, `tcp_syn_retries = 1`: the kernel gives up after one SYN retransmission and
/// counts a failed attempt; the cause is a timeout of the SYN retries.
#[test]
fn the_kernel_giving_up_on_syn_retries_is_a_timeout_of_syn_retries() {
    if !privileged("the_kernel_giving_up_on_syn_retries_is_a_timeout_of_syn_retries") {
        return;
    }
    const PORT: u16 = 4304;
    let netns = Netns::new("cause syn retries");
    netns.sysctl("net.ipv4.tcp_syn_retries", "1");
    netns.drop_inbound(PORT, "syn");
    let witnesses = [
        ("Tcp", "AttemptFails"),
        ("TcpExt", "TCPAbortOnTimeout"),
        ("TcpExt", "TCPSynRetrans"),
    ];
    let tracer = start_in(&netns, &["--netns", &netns.inode()]);
    let before = counters(&netns, &witnesses);

    let mut client = Peer::spawn_in(&netns);
    let err = client.try_cmd(&format!("connect {LO} {PORT}")).unwrap_err();
    assert!(err.contains("timed_out"), "{err}");

    wait_for(&tracer, "SYN_SENT", "CLOSE", true, 1);
    let last = finish(tracer);
    let grown = grown(&netns, &witnesses, &before);
    assert_eq!(
        grown[..2],
        [1, 1],
        "AttemptFails, TCPAbortOnTimeout: {grown:?}"
    );
    // One retransmission, or more since Linux 6.5 (tcp_syn_linear_timeouts lets the time, not
    // the count, end a SYN_SENT): as many as the kernel counted.
    let retransmissions = grown[2];
    assert!(retransmissions >= 1, "{grown:?}");
    let r = abnormal_row(&last, "client", "SYN_SENT", "CLOSE");
    assert_eq!(r["cause"], json!({"timeout": 1}), "{r}");
    assert_eq!(r["timers"], json!({"syn_retries": 1}), "{r}");
    assert_eq!(
        r["retransmits"],
        json!({ retransmissions.to_string(): 1 }),
        "{r}"
    );
}

/// SYNs dropped, and the application closes its socket while the connect is in progress: no
/// error in the kernel, no failed attempt counted, no timer gave up.
#[test]
fn an_application_closing_a_connect_in_progress_abandons_it() {
    if !privileged("an_application_closing_a_connect_in_progress_abandons_it") {
        return;
    }
    const PORT: u16 = 4305;
    let netns = Netns::new("cause abandoned");
    netns.drop_inbound(PORT, "syn");
    let witnesses = [
        ("Tcp", "AttemptFails"),
        ("TcpExt", "TCPAbortOnTimeout"),
        ("Tcp", "ActiveOpens"),
    ];
    let tracer = start_in(&netns, &["--netns", &netns.inode()]);
    let before = counters(&netns, &witnesses);

    let mut client = Peer::spawn_in(&netns);
    client.cmd(&format!("connect-nowait {LO} {PORT}"));
    // Shorter than the first retransmission timeout (1 s): the SYN is never retransmitted.
    client.cmd("sleep 200");
    client.cmd("close");

    wait_for(&tracer, "SYN_SENT", "CLOSE", true, 1);
    let last = finish(tracer);
    assert_eq!(grown(&netns, &witnesses, &before), [0, 0, 1]);
    let r = abnormal_row(&last, "client", "SYN_SENT", "CLOSE");
    assert_eq!(r["count"], 1, "{r}");
    assert_eq!(r["cause"], json!({"connect_abandoned": 1}), "{r}");
    assert_eq!(r["retransmits"], json!({}), "{r}");
}

/// An established client whose data goes unacknowledged (the server's segments dropped) until
/// the kernel gives up: after tcp_retries2 = 1, or after a TCP_USER_TIMEOUT of 800 ms.
fn retransmissions_run_out(test: &str, port: u16, user_timeout: bool) {
    if !privileged(test) {
        return;
    }
    let netns = Netns::new(test);
    if !user_timeout {
        // About 600 ms of retransmissions (3 x TCP_RTO_MIN) before giving up.
        netns.sysctl("net.ipv4.tcp_retries2", "1");
    }
    let witnesses = [
        ("TcpExt", "TCPAbortOnTimeout"),
        ("Tcp", "RetransSegs"),
        ("TcpExt", "TCPLossProbes"),
    ];
    let tracer = start_in(&netns, &["--netns", &netns.inode()]);
    let (mut client, _server) = connected(&netns, port);
    if user_timeout {
        client.cmd("user-timeout 800");
    }
    drop_from_port(&netns, port);
    let before = counters(&netns, &witnesses);
    let started = Instant::now();
    // One small segment: one retransmitted segment per retransmission timeout.
    client.cmd("send 100");

    wait_for(&tracer, "ESTABLISHED", "CLOSE", true, 1);
    let waited = started.elapsed().as_secs_f64();
    assert!(waited < 10.0, "the kernel gave up after {waited} s");
    let last = finish(tracer);
    let grown = grown(&netns, &witnesses, &before);
    assert_eq!(
        grown[0], 1,
        "TCPAbortOnTimeout, RetransSegs, TCPLossProbes: {grown:?}"
    );
    // Retransmitted segments but the tail-loss probes, which are no retransmission timeout.
    let retransmissions = grown[1] - grown[2];
    assert!(retransmissions >= 1, "{grown:?}");
    let r = abnormal_row(&last, "client", "ESTABLISHED", "CLOSE");
    assert_eq!(r["cause"], json!({"timeout": 1}), "{r}");
    let timer = if user_timeout {
        "user_timeout"
    } else {
        "retransmissions"
    };
    assert_eq!(r["timers"], json!({ timer: 1 }), "{r}");
    // The kernel's own count of retransmission timeouts, one segment retransmitted at each.
    assert_eq!(
        r["retransmits"],
        json!({ retransmissions.to_string(): 1 }),
        "{r}"
    );
}

#[test]
fn unacknowledged_data_past_tcp_retries2_is_a_timeout_of_retransmissions() {
    retransmissions_run_out(
        "unacknowledged_data_past_tcp_retries2_is_a_timeout_of_retransmissions",
        4306,
        false,
    );
}

#[test]
fn unacknowledged_data_past_tcp_user_timeout_is_a_timeout_of_the_user_timeout() {
    retransmissions_run_out(
        "unacknowledged_data_past_tcp_user_timeout_is_a_timeout_of_the_user_timeout",
        4307,
        true,
    );
}

/// An idle client with keepalive after 1 s, one probe 1 s apart, whose probe goes unanswered
/// (the server's segments dropped): the kernel sends a reset and gives up. Not a reset sent
/// by the application, not a retransmission timeout: a keepalive timeout.
#[test]
fn unanswered_keepalive_probes_are_a_keepalive_timeout() {
    if !privileged("unanswered_keepalive_probes_are_a_keepalive_timeout") {
        return;
    }
    const PORT: u16 = 4308;
    let netns = Netns::new("cause keepalive");
    let witnesses = [
        ("TcpExt", "TCPKeepAlive"),
        ("TcpExt", "TCPAbortOnTimeout"),
        ("Tcp", "OutRsts"),
    ];
    let tracer = start_in(&netns, &["--netns", &netns.inode()]);
    let (mut client, _server) = connected(&netns, PORT);
    drop_from_port(&netns, PORT);
    let before = counters(&netns, &witnesses);
    client.cmd("keepalive 1 1 1");

    wait_for(&tracer, "ESTABLISHED", "CLOSE", true, 1);
    let last = finish(tracer);
    // One probe, then the reset and the abort.
    assert_eq!(grown(&netns, &witnesses, &before), [1, 1, 1]);
    let r = abnormal_row(&last, "client", "ESTABLISHED", "CLOSE");
    assert_eq!(r["count"], 1, "{r}");
    assert_eq!(r["cause"], json!({"keepalive_timeout": 1}), "{r}");
    assert!(r.get("timers").is_none(), "{r}");
    assert!(r.get("reset_reasons").is_none(), "{r}");
}
