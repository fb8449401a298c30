//! Owners of sockets that predate tracing: servers and connections set up before tcptrace
//! starts, whose transitions must carry the process holding them (the start-up census).

use std::{
    io::{BufRead, BufReader},
    process::{Child, ChildStdout, Command, Stdio},
};

use serde_json::Value;

use crate::{
    support::{Netns, Peer, Tracer, find, path_of, privileged, socket, tcptrace_bin, wait_until},
    transitions::{finish, wait_for},
};

/// The server path of one accepted connection closed by the client first.
const SERVER_PATH: [&str; 5] = [
    "LISTEN->SYN_RECV",
    "SYN_RECV->ESTABLISHED",
    "ESTABLISHED->CLOSE_WAIT",
    "CLOSE_WAIT->LAST_ACK",
    "LAST_ACK->CLOSE",
];

/// A plain Python server: it listens on loopback, prints its port, accepts one connection,
/// reads it to its end, closes it and exits.
const PYTHON_SERVER: &str = "
import socket, sys
listener = socket.socket()
listener.bind(('127.0.0.1', 0))
listener.listen(8)
print(listener.getsockname()[1], flush=True)
connection, _ = listener.accept()
while connection.recv(4096):
    pass
connection.close()
";

/// A pre-forked server: the master listens, prints its port, forks WORKERS workers that each
/// accept one connection, print `accepted PID`, read it to its end and close it; the master
/// waits for the first worker to finish, then ends the others. Every process gives up after
/// 30 s whatever happens.
const PREFORKED_SERVER: &str = "
import os, signal, socket, sys
WORKERS = 2
signal.alarm(30)
listener = socket.socket()
listener.bind(('127.0.0.1', 0))
listener.listen(8)
workers = []
for _ in range(WORKERS):
    pid = os.fork()
    if pid == 0:
        connection, _ = listener.accept()
        print('accepted', os.getpid(), flush=True)
        while connection.recv(4096):
            pass
        connection.close()
        os._exit(0)
    workers.append(pid)
print(listener.getsockname()[1], *workers, flush=True)
os.wait()
for pid in workers:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
";

/// A `python3 -c` process whose stdout is read line by line.
struct Python {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Python {
    fn spawn(program: &str) -> Self {
        let mut child = Command::new("python3")
            .args(["-c", program])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn python3");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self { child, stdout }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line's words, as numbers.
    fn numbers(&mut self) -> Vec<u32> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from python3");
        line.split_whitespace()
            .filter_map(|word| word.parse().ok())
            .collect()
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }
}

impl Drop for Python {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_python_server_that_predates_tracing_owns_every_transition_of_its_connections() {
    if !privileged("a_python_server_that_predates_tracing_owns_every_transition_of_its_connections")
    {
        return;
    }
    let mut server = Python::spawn(PYTHON_SERVER);
    let port = server.numbers()[0] as u16;
    let tracer = Tracer::start(&["trace", "--json", "--lport", &port.to_string()]);
    let mut client = Peer::spawn();
    let cport = client.port(&format!("connect 127.0.0.1 {port}"));
    client.cmd("close");
    let server_side = socket(port, cport);
    let lines = tracer.wait_json("the server side to close", |lines| {
        path_of(lines, &server_side).len() == SERVER_PATH.len()
    });
    wait_until("the server to exit", || server.exited().then_some(()));
    assert_eq!(path_of(&lines, &server_side), SERVER_PATH);
    for line in lines.iter().filter(|l| server_side(l)) {
        assert_eq!(line["pid"], server.pid(), "{line}");
        assert_eq!(line["comm"], "python3", "{line}");
        assert!(line.get("owner_kind").is_none(), "{line}");
    }
    assert!(
        tracer.stderr().contains("start-up census: "),
        "{}",
        tracer.stderr()
    );
    assert!(tracer.stop().status.success());
}

#[test]
fn transitions_pid_shows_the_whole_server_path_of_a_server_that_predates_tracing() {
    if !privileged("transitions_pid_shows_the_whole_server_path_of_a_server_that_predates_tracing")
    {
        return;
    }
    let mut server = Peer::spawn();
    let port = server.port("listen 127.0.0.1");
    // Without the census, the child's first three transitions would carry no owner, and the
    // selection would start at the server's close.
    let tracer = Tracer::start(&[
        "transitions",
        "--json",
        "--interval",
        "0.2",
        "--pid",
        &server.pid().to_string(),
        "--lport",
        &port.to_string(),
    ]);
    let mut client = Peer::spawn();
    client.port(&format!("connect 127.0.0.1 {port}"));
    server.cmd("accept");
    client.cmd("close");
    server.cmd("wait-eof");
    server.cmd("close");
    wait_for(&tracer, "LAST_ACK", "CLOSE", false, 1);
    let last = finish(tracer);
    let rows: Vec<String> = last["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["path"], "server", "{r}");
            assert_eq!(r["count"], 1, "{r}");
            format!(
                "{}->{}",
                r["from"].as_str().unwrap(),
                r["to"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(rows, SERVER_PATH, "{last}");
}

#[test]
fn a_connection_established_before_tracing_closes_with_its_owners() {
    if !privileged("a_connection_established_before_tracing_closes_with_its_owners") {
        return;
    }
    let mut server = Peer::spawn();
    let mut client = Peer::spawn();
    let port = server.port("listen 127.0.0.1");
    let cport = client.port(&format!("connect 127.0.0.1 {port}"));
    server.cmd("accept");
    let tracer = Tracer::start(&["trace", "--json"]);
    client.cmd("close");
    server.cmd("wait-eof");
    server.cmd("close");
    let (client_side, server_side) = (socket(cport, port), socket(port, cport));
    let lines = tracer.wait_json("both sides to close", |lines| {
        path_of(lines, &server_side)
            .last()
            .is_some_and(|t| t == "LAST_ACK->CLOSE")
            && path_of(lines, &client_side)
                .last()
                .is_some_and(|t| t == "FIN_WAIT2->CLOSE")
    });
    assert!(tracer.stop().status.success());
    assert_eq!(
        path_of(&lines, &server_side),
        [
            "ESTABLISHED->CLOSE_WAIT",
            "CLOSE_WAIT->LAST_ACK",
            "LAST_ACK->CLOSE"
        ]
    );
    // The peer's FIN arrives in softirq: the server is known from the census alone.
    let fin = find(&lines, &server_side, "ESTABLISHED", "CLOSE_WAIT");
    assert_eq!(fin["pid"], server.pid(), "{fin}");
    assert_eq!(fin["first_seen"], true, "{fin}");
    for line in lines.iter().filter(|l| server_side(l)) {
        assert_eq!(line["pid"], server.pid(), "{line}");
    }
    for line in lines.iter().filter(|l| client_side(l)) {
        assert_eq!(line["pid"], client.pid(), "{line}");
    }
}

#[test]
fn children_of_a_preforked_listener_show_its_holders_then_the_worker_that_accepted() {
    if !privileged(
        "children_of_a_preforked_listener_show_its_holders_then_the_worker_that_accepted",
    ) {
        return;
    }
    let mut server = Python::spawn(PREFORKED_SERVER);
    let started = server.numbers();
    let (port, workers) = (started[0] as u16, &started[1..]);
    let lowest = workers.iter().copied().chain([server.pid()]).min().unwrap();
    let tracer = Tracer::start(&["trace", "--json", "--lport", &port.to_string()]);
    let mut client = Peer::spawn();
    let cport = client.port(&format!("connect 127.0.0.1 {port}"));
    let accepted = server.numbers();
    let worker = *accepted.last().expect("accepted PID");
    assert!(workers.contains(&worker), "{accepted:?} {workers:?}");
    client.cmd("close");
    let server_side = socket(port, cport);
    let lines = tracer.wait_json("the server side to close", |lines| {
        path_of(lines, &server_side).len() == SERVER_PATH.len()
    });
    assert!(tracer.stop().status.success());
    assert_eq!(path_of(&lines, &server_side), SERVER_PATH);
    let of_server: Vec<&Value> = lines.iter().filter(|l| server_side(l)).collect();
    // Until the worker's close: the listener's three holders, the lowest pid for them.
    for line in &of_server[..3] {
        assert_eq!(line["pid"], lowest, "{line}");
        assert_eq!(line["owner_kind"], "listener_holders", "{line}");
        assert_eq!(line["holders"], 3, "{line}");
    }
    // From its close on: the worker, unmarked.
    for line in &of_server[3..] {
        assert_eq!(line["pid"], worker, "{line}");
        assert!(line.get("owner_kind").is_none(), "{line}");
    }
}

#[test]
fn children_of_a_listener_that_predates_tracing_in_another_namespace_inherit_its_owner() {
    if !privileged(
        "children_of_a_listener_that_predates_tracing_in_another_namespace_inherit_its_owner",
    ) {
        return;
    }
    let netns = Netns::new("predating_listener_netns");
    let inode: u64 = netns
        .inode()
        .trim_start_matches("net:[")
        .trim_end_matches(']')
        .parse()
        .unwrap();
    let mut server = Peer::spawn_in(&netns);
    let port = server.port("listen 127.0.0.1");
    // Traced from tcptrace's own namespace: the census enters the test's.
    let tracer = Tracer::start(&["trace", "--json", "--lport", &port.to_string()]);
    let mut client = Peer::spawn_in(&netns);
    let cport = client.port(&format!("connect 127.0.0.1 {port}"));
    server.cmd("accept");
    let server_side = socket(port, cport);
    let lines = tracer.wait_json("the child's handshake", |lines| {
        path_of(lines, &server_side).len() >= 2
    });
    assert!(tracer.stop().status.success());
    for line in lines.iter().filter(|l| server_side(l)) {
        assert_eq!(line["netns"], inode, "{line}");
        assert_eq!(line["pid"], server.pid(), "{line}");
    }
}

#[test]
fn a_recording_keeps_the_census_owners_for_its_replay() {
    if !privileged("a_recording_keeps_the_census_owners_for_its_replay") {
        return;
    }
    let mut server = Peer::spawn();
    let mut client = Peer::spawn();
    let port = server.port("listen 127.0.0.1");
    let cport = client.port(&format!("connect 127.0.0.1 {port}"));
    server.cmd("accept");
    let file =
        std::env::temp_dir().join(format!("tcptrace-owners-{}.tcptrace", std::process::id()));
    let recorder = Tracer::start(&[
        "record",
        "--output",
        file.to_str().unwrap(),
        "--lport",
        &port.to_string(),
    ]);
    client.cmd("close");
    server.cmd("wait-eof");
    server.cmd("close");
    // The recorder prints nothing until it ends: its last transition is in the file once the
    // kernel says the socket is gone.
    wait_until("the server side to close", || {
        let (sport, dport) = (format!(":{port}"), format!(":{cport}"));
        let ss = Command::new("ss")
            .args(["-tanH", "sport", "=", &sport, "and", "dport", "=", &dport])
            .output()
            .unwrap();
        String::from_utf8_lossy(&ss.stdout)
            .trim()
            .is_empty()
            .then_some(())
    });
    let finished = recorder.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    let replay = Command::new(tcptrace_bin())
        .args(["trace", "--json", "--replay", file.to_str().unwrap()])
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(replay.status.success(), "{replay:?}");
    let lines: Vec<Value> = String::from_utf8_lossy(&replay.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let server_side = socket(port, cport);
    assert_eq!(
        path_of(&lines, &server_side),
        [
            "ESTABLISHED->CLOSE_WAIT",
            "CLOSE_WAIT->LAST_ACK",
            "LAST_ACK->CLOSE"
        ]
    );
    let fin = find(&lines, &server_side, "ESTABLISHED", "CLOSE_WAIT");
    assert_eq!(fin["pid"], server.pid(), "{fin}");
}
