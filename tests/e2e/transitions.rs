//! `tcptrace transitions --json` against real connections on loopback, each test filtered to
//! its own ports. The last JSON object (`"final": true`) is read after Ctrl-C.

use serde_json::Value;

use std::process::Command;

use crate::support::{AS_NOBODY, Finished, Peer, Tracer, privileged, tcptrace_bin};

/// Connections per scripted run.
const CONNECTIONS: usize = 3;
/// Hold times long enough to stand out from scheduling noise on a loaded 2-core machine.
const CLIENT_HOLD_MS: f64 = 300.0;
const CLOSE_WAIT_HOLD_MS: f64 = 200.0;
/// How late a sleeping peer may wake and act.
const SLACK_MS: f64 = 250.0;

fn start(filter: &str, port: u16) -> Tracer {
    Tracer::start(&[
        "transitions",
        "--json",
        "--interval",
        "0.2",
        filter,
        &port.to_string(),
    ])
}

/// The row `from -> to` (normal or abnormal) of an interval object.
pub(crate) fn row<'a>(
    object: &'a Value,
    from: &str,
    to: &str,
    abnormal: bool,
) -> Option<&'a Value> {
    object["transitions"]
        .as_array()?
        .iter()
        .find(|r| r["from"] == from && r["to"] == to && r["abnormal"] == abnormal)
}

pub(crate) fn count(object: &Value, from: &str, to: &str, abnormal: bool) -> u64 {
    row(object, from, to, abnormal).map_or(0, |r| r["count"].as_u64().unwrap())
}

/// Waits until the latest interval shows `from -> to` at least `n` times.
pub(crate) fn wait_for(tracer: &Tracer, from: &str, to: &str, abnormal: bool, n: u64) {
    tracer.wait_json(&format!("{n} x {from}->{to}"), |lines| {
        lines
            .last()
            .is_some_and(|last| count(last, from, to, abnormal) >= n)
    });
}

/// Stops the tracer and returns its final object, checking the exit and the stream's shape.
pub(crate) fn finish(tracer: Tracer) -> Value {
    let Finished {
        status,
        stdout,
        stderr,
    } = tracer.stop();
    assert!(status.success(), "{stderr}");
    let objects: Vec<Value> = stdout
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l}: {e}")))
        .collect();
    let (last, earlier) = objects.split_last().expect("at least the final object");
    assert_eq!(last["final"], true, "{last}");
    assert!(earlier.iter().all(|o| o["final"] == false));
    assert_eq!(last["ring_buffer_full"], 0, "{stderr}");
    assert_eq!(last["skipped_by_kernel"], 0, "{stderr}");
    last.clone()
}

fn p50_ms(row: &Value) -> f64 {
    row["time_in_from_ns"]["p50"].as_u64().expect("a p50") as f64 / 1e6
}

fn assert_held(row: &Value, hold_ms: f64) {
    let ms = p50_ms(row);
    assert!(
        ms >= hold_ms - 1.0 && ms <= hold_ms + SLACK_MS,
        "{} -> {}: p50 {ms} ms, expected {hold_ms} ms (+{SLACK_MS})",
        row["from"],
        row["to"]
    );
}

/// `CONNECTIONS` connections, the client closing first after `CLIENT_HOLD_MS` and the server
/// holding CLOSE_WAIT for `CLOSE_WAIT_HOLD_MS`.
fn scripted_connections(server: &mut Peer, client: &mut Peer, port: u16) {
    for _ in 0..CONNECTIONS {
        client.port(&format!("connect 127.0.0.1 {port}"));
        server.cmd("accept");
        client.cmd(&format!("sleep {CLIENT_HOLD_MS}"));
        client.cmd("close");
        server.cmd("wait-eof");
        server.cmd(&format!("sleep {CLOSE_WAIT_HOLD_MS}"));
        server.cmd("close");
    }
}

#[test]
fn client_path_counts_and_hold_times() {
    if !privileged("client_path_counts_and_hold_times") {
        return;
    }
    let mut server = Peer::spawn();
    let port = server.port("listen 127.0.0.1");
    let tracer = start("--rport", port);
    let mut client = Peer::spawn();
    scripted_connections(&mut server, &mut client, port);
    wait_for(&tracer, "FIN_WAIT2", "TIME_WAIT", false, CONNECTIONS as u64);
    let last = finish(tracer);

    let n = CONNECTIONS as u64;
    let rows: Vec<(String, u64)> = last["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["path"], "client", "{r}");
            assert_eq!(r["abnormal"], false, "{r}");
            (
                format!(
                    "{}->{}",
                    r["from"].as_str().unwrap(),
                    r["to"].as_str().unwrap()
                ),
                r["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("CLOSE->SYN_SENT".to_owned(), n),
            ("SYN_SENT->ESTABLISHED".to_owned(), n),
            ("ESTABLISHED->FIN_WAIT1".to_owned(), n),
            ("FIN_WAIT1->FIN_WAIT2".to_owned(), n),
            ("FIN_WAIT2->TIME_WAIT".to_owned(), n),
        ]
    );
    assert_eq!(
        row(&last, "FIN_WAIT2", "TIME_WAIT", false).unwrap()["inferred"],
        true
    );
    assert_held(
        row(&last, "ESTABLISHED", "FIN_WAIT1", false).unwrap(),
        CLIENT_HOLD_MS,
    );
    // The handshake on loopback takes well under the hold times.
    assert!(p50_ms(row(&last, "SYN_SENT", "ESTABLISHED", false).unwrap()) < 100.0);
    let paths = last["paths"].as_array().unwrap();
    assert_eq!(paths.len(), 1, "{paths:?}");
    assert_eq!(
        paths[0]["path"],
        "SYN_SENT->ESTABLISHED->FIN_WAIT1->FIN_WAIT2->TIME_WAIT"
    );
    assert_eq!(paths[0]["count"], n);
    assert_eq!(last["sockets"]["tracked"], 0);
    // Filtered: the kernel's counters (which see everything) are not compared.
    assert_eq!(last["kernel_check"]["comparable"], false);
}

#[test]
fn server_path_counts_hold_times_and_a_listener_seen_mid_life() {
    if !privileged("server_path_counts_hold_times_and_a_listener_seen_mid_life") {
        return;
    }
    let mut server = Peer::spawn();
    let port = server.port("listen 127.0.0.1");
    // The listener exists before tracing: its LISTEN -> CLOSE is that of a socket first seen
    // mid-life.
    let tracer = start("--lport", port);
    let mut client = Peer::spawn();
    scripted_connections(&mut server, &mut client, port);
    server.cmd("close-listener");
    wait_for(&tracer, "LISTEN", "CLOSE", false, 1);
    wait_for(&tracer, "LAST_ACK", "CLOSE", false, CONNECTIONS as u64);
    let last = finish(tracer);

    let n = CONNECTIONS as u64;
    for (from, to) in [
        ("LISTEN", "SYN_RECV"),
        ("SYN_RECV", "ESTABLISHED"),
        ("ESTABLISHED", "CLOSE_WAIT"),
        ("CLOSE_WAIT", "LAST_ACK"),
        ("LAST_ACK", "CLOSE"),
    ] {
        let r = row(&last, from, to, false).unwrap_or_else(|| panic!("no {from}->{to}: {last}"));
        assert_eq!(r["count"], n, "{r}");
        assert_eq!(r["path"], "server", "{r}");
    }
    assert_held(
        row(&last, "CLOSE_WAIT", "LAST_ACK", false).unwrap(),
        CLOSE_WAIT_HOLD_MS,
    );
    let listener = row(&last, "LISTEN", "CLOSE", false).unwrap();
    assert_eq!(listener["path"], "unknown");
    assert_eq!(listener["count"], 1);
    assert_eq!(last["sockets"]["first_seen_midlife"], 1);
    assert!(
        last["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["abnormal"] == false)
    );
}

#[test]
fn refused_connect_is_abnormal_and_refused() {
    if !privileged("refused_connect_is_abnormal_and_refused") {
        return;
    }
    // A port that was just free: listen, learn it, stop listening.
    let mut probe = Peer::spawn();
    let port = probe.port("listen 127.0.0.1");
    probe.cmd("close-listener");

    let tracer = start("--rport", port);
    let mut client = Peer::spawn();
    let err = client
        .try_cmd(&format!("connect 127.0.0.1 {port}"))
        .unwrap_err();
    assert!(err.contains("refused"), "{err}");
    wait_for(&tracer, "SYN_SENT", "CLOSE", true, 1);
    let last = finish(tracer);
    let r = row(&last, "SYN_SENT", "CLOSE", true).unwrap();
    assert_eq!(r["path"], "client");
    assert_eq!(r["count"], 1);
    assert_eq!(count(&last, "CLOSE", "SYN_SENT", false), 1);
    // The reset that refused it comes from tcp:tcp_receive_reset.
    assert_eq!(r["cause"]["refused"], 1, "{r}");
    assert_eq!(last["paths"][0]["path"], "SYN_SENT->CLOSE");
}

#[test]
fn reset_in_established_is_abnormal_with_its_cause() {
    if !privileged("reset_in_established_is_abnormal_with_its_cause") {
        return;
    }
    let mut server = Peer::spawn();
    let port = server.port("listen 127.0.0.1");
    let tracer = start("--lport", port);
    let mut client = Peer::spawn();
    client.port(&format!("connect 127.0.0.1 {port}"));
    server.cmd("accept");
    client.cmd("linger0");
    client.cmd("close");
    wait_for(&tracer, "ESTABLISHED", "CLOSE", true, 1);
    let last = finish(tracer);
    let r = row(&last, "ESTABLISHED", "CLOSE", true).unwrap();
    assert_eq!(r["path"], "server");
    assert_eq!(r["count"], 1);
    assert_eq!(last["paths"][0]["path"], "SYN_RECV->ESTABLISHED->CLOSE");
    // The server received the client's reset (tcp:tcp_receive_reset).
    assert_eq!(r["cause"]["reset_received"], 1, "{r}");
}

#[test]
fn a_hangup_ends_with_the_summary_like_ctrl_c() {
    if !privileged("a_hangup_ends_with_the_summary_like_ctrl_c") {
        return;
    }
    // An ssh session that drops sends SIGHUP.
    let tracer = Tracer::start(&["transitions", "--lport", "1"]);
    let finished = tracer.stop_with(libc::SIGHUP);
    assert!(
        finished.status.success(),
        "{:?}: {}",
        finished.status,
        finished.stderr
    );
    crate::support::assert_empty_summary(&finished);
    let text = finished.stdout.join("\n");
    assert!(text.starts_with("tcptrace transitions: "), "{text}");
    // Not a terminal and no --interval: the summary only, once.
    assert_eq!(text.matches("tcptrace transitions: ").count(), 1, "{text}");
}

#[test]
fn duration_ends_with_a_text_summary() {
    if !privileged("duration_ends_with_a_text_summary") {
        return;
    }
    let tracer = Tracer::start(&["transitions", "--duration", "0.5", "--lport", "1"]);
    let finished = tracer.wait();
    crate::support::assert_empty_summary(&finished);
    let text = finished.stdout.join("\n");
    assert!(text.starts_with("tcptrace transitions: "), "{text}");
    // The header says what was lost, in the one format of a loss line.
    assert!(text.contains(" 0 transitions, 0 lost\n"), "{text}");
    assert!(text.contains("KERNEL AS WITNESS"), "{text}");
    assert!(
        text.contains("not comparable: transitions are filtered"),
        "{text}"
    );
}

/// Whether two times agree: two probes stamp the same transition each with its own clock
/// read, and interrupts may run between their programs (BPF tracing programs run with
/// migration disabled, not preemption), so times in state differ by up to microseconds.
/// Under emulation every program runs tens of times slower and so does the gap between the two
/// reads: the kernel matrix's TCG guests set `TCPTRACE_E2E_CLOCK_SLACK_US`.
fn close_in_time(a: u64, b: u64) -> bool {
    let slack_ns = std::env::var("TCPTRACE_E2E_CLOCK_SLACK_US")
        .ok()
        .and_then(|us| us.parse::<u64>().ok())
        .map_or(50_000, |us| us * 1_000);
    a.abs_diff(b) <= slack_ns || a.abs_diff(b) as f64 <= a.max(b) as f64 * 0.05
}

#[test]
fn a_replayed_recording_gives_the_live_counts_causes_and_percentiles() {
    if !privileged("a_replayed_recording_gives_the_live_counts_causes_and_percentiles") {
        return;
    }
    let mut server = Peer::spawn();
    let port = server.port("listen 127.0.0.1");
    let file = std::env::temp_dir().join(format!("tcptrace-e2e-{}.tcptrace", std::process::id()));
    let file_arg = file.to_str().unwrap().to_owned();
    let live = start("--lport", port);
    let recorder = Tracer::start(&[
        "record",
        "--output",
        &file_arg,
        "--lport",
        &port.to_string(),
    ]);
    let mut client = Peer::spawn();
    scripted_connections(&mut server, &mut client, port);
    // One connection the client resets: the server's abnormal close, with its cause.
    client.port(&format!("connect 127.0.0.1 {port}"));
    server.cmd("accept");
    client.cmd("linger0");
    client.cmd("close");
    wait_for(&live, "ESTABLISHED", "CLOSE", true, 1);
    wait_for(&live, "LAST_ACK", "CLOSE", false, CONNECTIONS as u64);
    let recorded = recorder.stop();
    assert!(recorded.status.success(), "{}", recorded.stderr);
    let live = finish(live);

    // Replayed without privileges: no probe is loaded.
    let replay = Command::new("setpriv")
        .args(AS_NOBODY)
        .arg(tcptrace_bin())
        .args(["transitions", "--replay", &file_arg, "--json", "--lport"])
        .arg(port.to_string())
        .output()
        .expect("run the replay");
    let _ = std::fs::remove_file(&file);
    let stderr = String::from_utf8_lossy(&replay.stderr);
    assert!(replay.status.success(), "{stderr}");
    let replayed: Value = serde_json::from_str(
        String::from_utf8_lossy(&replay.stdout)
            .lines()
            .last()
            .expect("a final object"),
    )
    .unwrap();
    assert_eq!(replayed["final"], true);
    let rows = |object: &Value| object["transitions"].as_array().unwrap().clone();
    let (live_rows, replayed_rows) = (rows(&live), rows(&replayed));
    assert_eq!(
        live_rows.len(),
        replayed_rows.len(),
        "{live_rows:?}\n{replayed_rows:?}"
    );
    assert!(live_rows.len() >= 6, "{live_rows:?}");
    for (l, r) in live_rows.iter().zip(&replayed_rows) {
        for key in [
            "path",
            "from",
            "to",
            "abnormal",
            "count",
            "cause",
            "retransmits",
        ] {
            assert_eq!(l[key], r[key], "{key} of {l} vs {r}");
        }
        for p in ["min", "p50", "p90", "p99", "max"] {
            let (a, b) = (&l["time_in_from_ns"][p], &r["time_in_from_ns"][p]);
            match (a.as_u64(), b.as_u64()) {
                (Some(a), Some(b)) => assert!(close_in_time(a, b), "{p}: {l} vs {r}"),
                _ => assert_eq!(a, b, "{p}: {l} vs {r}"),
            }
        }
    }
    assert_eq!(
        row(&replayed, "ESTABLISHED", "CLOSE", true).unwrap()["cause"]["reset_received"],
        1
    );
    assert_eq!(live["events"], replayed["events"]);
}
