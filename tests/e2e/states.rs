//! `tcptrace states` and `tcptrace sockets` against a known population of sockets, crafted in a
//! network namespace of the test: exact counts, equality with `ss`, owners and timers.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
};

use serde_json::Value;

use crate::support::{AS_NOBODY, Netns, Peer, privileged, start_lock, tcptrace_bin, wait_until};

const LO: &str = "127.0.0.1";

fn tcptrace_in(netns: &Netns, args: &[&str]) -> String {
    netns.output(tcptrace_bin(), args)
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line}: {e}")))
        .collect()
}

/// Non-zero counts per state of `tcptrace states --json`.
fn state_counts(value: &Value) -> BTreeMap<String, u64> {
    value["states"]
        .as_object()
        .expect("states")
        .iter()
        .map(|(state, n)| (state.clone(), n.as_u64().unwrap()))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Counts per state of `ss -tan` in the namespace, with netstat's names.
fn ss_counts(netns: &Netns) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for line in netns.output("ss", &["-tan"]).lines().skip(1) {
        let Some(state) = line.split_whitespace().next() else {
            continue;
        };
        let name = match state {
            "ESTAB" => "ESTABLISHED".to_owned(),
            "UNCONN" => "CLOSE".to_owned(),
            other => other.replace('-', "_"),
        };
        // ss writes FIN-WAIT-1/2; netstat FIN_WAIT1/2.
        let name = name.replace("FIN_WAIT_", "FIN_WAIT");
        *counts.entry(name).or_default() += 1;
    }
    counts
}

/// Drops the final ACK of handshakes to `port`, so its connections stay request sockets.
fn hold_in_syn_recv(netns: &Netns, port: u16) {
    netns.drop_inbound(port, "ack");
}

/// A population with known counts: every kind of socket operators ask about.
#[test]
fn exact_counts_per_state_equal_ss_and_owners_are_the_right_pids() {
    if !privileged("states: exact counts") {
        return;
    }
    const IDLE_LISTENERS: usize = 2;
    const ESTABLISHED_PAIRS: usize = 3;
    const CLOSE_WAIT: usize = 2;
    const TIME_WAIT: usize = 3;
    const SYN_RECV: usize = 2;
    let netns = Netns::new("states");
    let mut peers: Vec<Peer> = Vec::new();
    let spawn = |peers: &mut Vec<Peer>| {
        peers.push(Peer::spawn_in(&netns));
        peers.len() - 1
    };
    // A server and a client peer, connected and accepted: their indices.
    let connected = |peers: &mut Vec<Peer>| {
        let (s, c) = (spawn(peers), spawn(peers));
        let port = peers[s].port(&format!("listen {LO}"));
        peers[c].cmd(&format!("connect {LO} {port}"));
        peers[s].cmd("accept");
        (s, c)
    };

    for _ in 0..IDLE_LISTENERS {
        let i = spawn(&mut peers);
        peers[i].cmd(&format!("listen {LO}"));
    }
    // (server pid, client pid) of each established pair.
    let mut established = Vec::new();
    for _ in 0..ESTABLISHED_PAIRS {
        let (s, c) = connected(&mut peers);
        established.push((peers[s].cmd("pid"), peers[c].cmd("pid")));
    }
    // The client closes, the server never does: CLOSE_WAIT on the server, an orphaned
    // FIN_WAIT2 on the client.
    let mut close_wait_pids = Vec::new();
    for _ in 0..CLOSE_WAIT {
        let (s, c) = connected(&mut peers);
        peers[c].cmd("close");
        peers[s].cmd("wait-eof");
        close_wait_pids.push(peers[s].cmd("pid"));
    }
    // The client closes first, then the server: TIME_WAIT on the client.
    for _ in 0..TIME_WAIT {
        let (s, c) = connected(&mut peers);
        peers[c].cmd("close");
        peers[s].cmd("wait-eof");
        peers[s].cmd("close");
    }
    // Handshakes whose final ACK is dropped: request sockets on the server; the clients,
    // which sent that ACK, are ESTABLISHED.
    let s = spawn(&mut peers);
    let syn_port = peers[s].port(&format!("listen {LO}"));
    hold_in_syn_recv(&netns, syn_port);
    for _ in 0..SYN_RECV {
        let c = spawn(&mut peers);
        peers[c].cmd(&format!("connect {LO} {syn_port}"));
    }

    let listeners = IDLE_LISTENERS + ESTABLISHED_PAIRS + CLOSE_WAIT + TIME_WAIT + 1;
    let expected: BTreeMap<String, u64> = [
        ("LISTEN", listeners),
        ("ESTABLISHED", 2 * ESTABLISHED_PAIRS + SYN_RECV),
        ("CLOSE_WAIT", CLOSE_WAIT),
        ("FIN_WAIT2", CLOSE_WAIT),
        ("TIME_WAIT", TIME_WAIT),
        ("SYN_RECV", SYN_RECV),
    ]
    .into_iter()
    .map(|(state, n)| (state.to_owned(), n as u64))
    .collect();
    let snapshot = wait_until("the population to settle", || {
        let value = json_lines(&tcptrace_in(&netns, &["states", "--json"])).remove(0);
        (state_counts(&value) == expected).then_some(value)
    });
    assert_eq!(ss_counts(&netns), expected, "ss -tan disagrees");
    let total: u64 = expected.values().sum();
    assert_eq!(snapshot["total"], total);

    // The text table says the same.
    let text = tcptrace_in(&netns, &["states"]);
    for (state, n) in &expected {
        assert!(
            text.lines().any(|line| {
                let words: Vec<_> = line.split_whitespace().collect();
                words == [state.as_str(), &n.to_string()]
            }),
            "no `{state} {n}` row in\n{text}"
        );
    }

    // Findings: each CLOSE_WAIT holder by pid, and the half-open connections of the port.
    let close_wait: Vec<(String, u64)> = snapshot["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "close_wait")
        .map(|f| (f["pid"].to_string(), f["count"].as_u64().unwrap()))
        .collect();
    let mut expected_holders: Vec<(String, u64)> =
        close_wait_pids.iter().map(|pid| (pid.clone(), 1)).collect();
    expected_holders.sort();
    let mut holders = close_wait.clone();
    holders.sort();
    assert_eq!(holders, expected_holders);
    assert!(
        snapshot["findings"].as_array().unwrap().iter().any(|f| {
            f["kind"] == "syn_recv" && f["lport"] == syn_port && f["count"] == SYN_RECV as u64
        }),
        "{snapshot:#}"
    );
    assert!(text.contains(&format!(
        "SYN_RECV: {SYN_RECV} half-open connections on port {syn_port}"
    )));

    // --by process: every socket with a file is attributed to the peer that holds it.
    let by_process = json_lines(&tcptrace_in(
        &netns,
        &["states", "--by", "process", "--json"],
    ))
    .remove(0);
    let groups: BTreeMap<String, BTreeMap<String, u64>> = by_process["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            let states = g["states"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(s, n)| (s.clone(), n.as_u64().unwrap()))
                .collect();
            (g["key"].as_str().unwrap().to_owned(), states)
        })
        .collect();
    let states = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
        pairs.iter().map(|(s, n)| (s.to_string(), *n)).collect()
    };
    for (server, client) in &established {
        assert_eq!(
            groups[&format!("{server}/tcp-peer")],
            states(&[("LISTEN", 1), ("ESTABLISHED", 1)])
        );
        assert_eq!(
            groups[&format!("{client}/tcp-peer")],
            states(&[("ESTABLISHED", 1)])
        );
    }
    for server in &close_wait_pids {
        assert_eq!(
            groups[&format!("{server}/tcp-peer")],
            states(&[("LISTEN", 1), ("CLOSE_WAIT", 1)])
        );
    }
    // Sockets without a file (timewait and request sockets) have no owner.
    assert_eq!(
        groups["-"],
        states(&[
            ("SYN_RECV", SYN_RECV as u64),
            ("FIN_WAIT2", CLOSE_WAIT as u64),
            ("TIME_WAIT", TIME_WAIT as u64)
        ])
    );

    // `sockets --state` lists the same CLOSE_WAIT sockets with their pids.
    let listed = json_lines(&tcptrace_in(
        &netns,
        &["sockets", "--state", "CLOSE_WAIT", "--json"],
    ));
    listed.iter().for_each(crate::support::assert_recent_time);
    let mut pids: Vec<String> = listed.iter().map(|s| s["pid"].to_string()).collect();
    pids.sort();
    let mut want = close_wait_pids.clone();
    want.sort();
    assert_eq!(pids, want);

    // --watch: one snapshot per interval, the later ones with the change since the last.
    let frames = json_lines(&tcptrace_in(
        &netns,
        &["states", "--watch", "0.2", "--count", "2", "--json"],
    ));
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0]["changes"], Value::Null);
    assert_eq!(state_counts(&frames[1]), expected);
    assert!(
        frames[1]["changes"]
            .as_object()
            .unwrap()
            .values()
            .all(|change| change == 0),
        "{:#}",
        frames[1]
    );
}

/// `KIND (SECONDS/RETRANSMITS/PROBES)` of a netstat timer column, parsed back.
fn parse_timer(line: &str) -> (String, f64, u64, u64) {
    let open = line
        .rfind(" (")
        .unwrap_or_else(|| panic!("no timer in {line}"));
    let kind = line[..open].rsplit(' ').next().unwrap().to_owned();
    let inner = line[open + 2..]
        .strip_suffix(')')
        .expect("closing parenthesis");
    let parts: Vec<&str> = inner.split('/').collect();
    assert_eq!(parts.len(), 3, "{line}");
    let (secs, frac) = parts[0].split_once('.').expect("seconds with a fraction");
    assert!(
        frac.len() == 2 && secs.chars().chain(frac.chars()).all(|c| c.is_ascii_digit()),
        "seconds with two decimals, as netstat prints them: {line}"
    );
    (
        kind,
        parts[0].parse().unwrap(),
        parts[1].parse().unwrap(),
        parts[2].parse().unwrap(),
    )
}

/// The line of `sockets -o` for one local port.
fn timer_line(netns: &Netns, lport: u16) -> String {
    let text = tcptrace_in(netns, &["sockets", "-o", "--lport", &lport.to_string()]);
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(lines.len(), 1, "{text}");
    lines[0].to_owned()
}

#[test]
fn timers_read_like_netstat() {
    if !privileged("sockets: timers") {
        return;
    }
    let netns = Netns::new("timers");

    // Keepalive after 600 s of idleness.
    let mut server = Peer::spawn_in(&netns);
    let mut client = Peer::spawn_in(&netns);
    let port = server.port(&format!("listen {LO}"));
    let cport = client.port(&format!("connect {LO} {port}"));
    server.cmd("accept");
    client.cmd("keepalive 600");
    let (kind, secs, retransmits, probes) = parse_timer(&timer_line(&netns, cport));
    assert_eq!(kind, "keepalive");
    assert!((590.0..=600.0).contains(&secs), "{secs}");
    assert_eq!((retransmits, probes), (0, 0));

    // Unacknowledged data to a peer whose packets are dropped: the retransmission timer with
    // a growing count.
    let mut server2 = Peer::spawn_in(&netns);
    let mut client2 = Peer::spawn_in(&netns);
    let port2 = server2.port(&format!("listen {LO}"));
    let cport2 = client2.port(&format!("connect {LO} {port2}"));
    server2.cmd("accept");
    netns.nft(&format!(
        "table inet tcptrace_drop {{
            chain input {{
                type filter hook input priority 0; policy accept;
                tcp dport {port2} drop
            }}
        }}"
    ));
    client2.cmd("send 1000");
    let (secs, retransmits, probes) = wait_until("a retransmission", || {
        let (kind, secs, retransmits, probes) = parse_timer(&timer_line(&netns, cport2));
        (kind == "on" && retransmits > 0).then_some((secs, retransmits, probes))
    });
    assert!(secs <= 120.0, "{secs}");
    assert!(retransmits > 0);
    assert_eq!(probes, 0);
    let json = json_lines(&tcptrace_in(
        &netns,
        &["sockets", "--json", "--lport", &cport2.to_string()],
    ));
    assert_eq!(json[0]["timer"]["kind"], "on");
    assert!(json[0]["timer"]["retransmits"].as_u64().unwrap() > 0);
    assert!(json[0]["send_q"].as_u64().unwrap() > 0, "{:#}", json[0]);

    // TIME_WAIT: at most 60 s left.
    let mut server3 = Peer::spawn_in(&netns);
    let mut client3 = Peer::spawn_in(&netns);
    let port3 = server3.port(&format!("listen {LO}"));
    let cport3 = client3.port(&format!("connect {LO} {port3}"));
    server3.cmd("accept");
    client3.cmd("close");
    server3.cmd("wait-eof");
    server3.cmd("close");
    let line = wait_until("TIME_WAIT", || {
        let line = timer_line(&netns, cport3);
        line.contains("TIME_WAIT").then_some(line)
    });
    let (kind, secs, retransmits, probes) = parse_timer(&line);
    assert_eq!(kind, "timewait");
    assert!(secs > 0.0 && secs <= 60.0, "{secs}");
    assert_eq!((retransmits, probes), (0, 0));
}

#[test]
fn explain_and_bad_states_fail_with_one_line() {
    let run = |args: &[&str]| {
        let out = Command::new(tcptrace_bin()).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, _) = run(&["explain", "CLOSE_WAIT"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("The application does not close"),
        "{stdout}"
    );
    // Several at once, as the usage shows, each in turn.
    let (code, stdout, stderr) = run(&[
        "explain",
        "CLOSE_WAIT",
        "LAST_ACK",
        "FIN_WAIT2",
        "->",
        "CLOSE",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let first = stdout.find("CLOSE_WAIT  (").expect("CLOSE_WAIT explained");
    let second = stdout.find("LAST_ACK  (").expect("LAST_ACK explained");
    let third = stdout
        .find("FIN_WAIT2 -> CLOSE")
        .expect("the transition explained");
    assert!(first < second && second < third, "{stdout}");
    let (code, _, stderr) = run(&["explain", "SYN_WAIT"]);
    assert_eq!(code, Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("tcptrace: unknown TCP state `SYN_WAIT`"),
        "{stderr}"
    );
    let (code, _, stderr) = run(&["explain", "LISTEN->TIME_WAIT"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("is not a transition"), "{stderr}");
    let (code, _, stderr) = run(&["sockets", "--state", "BOGUS"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("unknown TCP state `BOGUS`"), "{stderr}");
}

/// `CLOCK_MONOTONIC`, the clock of tcptrace's `snapshot_ns`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// tcptrace running in a namespace, its stdout lines and stderr collected as they come.
struct Watching {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Watching {
    fn start(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tcptrace");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stdout = child.stdout.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let mut pipe = child.stderr.take().unwrap();
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            *sink.lock().unwrap() = text;
        });
        Self {
            child,
            lines,
            stderr,
        }
    }

    fn frames(&self) -> Vec<Value> {
        json_lines(&self.lines.lock().unwrap().join("\n"))
    }

    /// Waits for `frames` frames, stops the watch with SIGINT as a user would, and returns
    /// those frames (not one that came after) and stderr.
    fn stop_after(mut self, frames: usize) -> (Vec<Value>, String) {
        wait_until("the frames", || {
            (self.frames().len() >= frames).then_some(())
        });
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let (mut got, stderr) = self.finish(frames);
        got.truncate(frames);
        (got, stderr)
    }

    /// Waits for the exit (`--count`); the frames and stderr.
    fn finish(&mut self, frames: usize) -> (Vec<Value>, String) {
        let status = wait_until("tcptrace to exit", || self.child.try_wait().unwrap());
        assert!(
            status.success(),
            "{status}: {}",
            self.stderr.lock().unwrap()
        );
        let frames = wait_until("every frame", || {
            let got = self.frames();
            (got.len() >= frames).then_some(got)
        });
        // The stderr reader drops its handle once the pipe closes, right after the exit.
        let stderr = wait_until("stderr", || {
            (Arc::strong_count(&self.stderr) == 1).then(|| self.stderr.lock().unwrap().clone())
        });
        (frames, stderr)
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A connection whose client closes and whose server never does: the server's socket stays in
/// CLOSE_WAIT. Returns the server (who holds it) and the client.
fn close_wait_pair(netns: &Netns) -> (Peer, Peer) {
    let mut server = Peer::spawn_in(netns);
    let mut client = Peer::spawn_in(netns);
    let port = server.port(&format!("listen {LO}"));
    client.cmd(&format!("connect {LO} {port}"));
    server.cmd("accept");
    client.cmd("close");
    server.cmd("wait-eof");
    (server, client)
}

fn close_wait_finding<'a>(frame: &'a Value, pid: &str) -> &'a Value {
    frame["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "close_wait" && f["pid"].as_u64() == pid.parse().ok())
        .unwrap_or_else(|| panic!("no CLOSE_WAIT finding for {pid} in {frame:#}"))
}

#[test]
fn watch_keeps_counts_live_checks_them_and_times_close_wait() {
    if !privileged("states: live watch") {
        return;
    }
    // Windows after the last of the test's own transitions: the last snapshot then comes more
    // than two seconds after them (the age check below). How many windows the activity itself
    // spans depends on the machine (seconds under emulation), so the watch runs until then.
    const FRAMES_AFTER: usize = 3;
    let netns = Netns::new("watch");
    // Held since before tracing starts.
    let (mut early, _early_client) = close_wait_pair(&netns);
    let early_pid = early.cmd("pid");

    let mut command = netns.command(tcptrace_bin());
    command.args(["states", "--watch", "1", "--count", "1000", "--json"]);
    let watching = {
        let _guard = start_lock();
        let watching = Watching::start(command);
        wait_until("the first snapshot", || {
            (!watching.frames().is_empty()).then_some(())
        });
        watching
    };

    // Enters CLOSE_WAIT while tracing, between these two times.
    let before_close = monotonic_ns();
    let (mut late, _late_client) = close_wait_pair(&netns);
    let entered_by = monotonic_ns();
    let late_pid = late.cmd("pid");
    // More movement: a pair that stays up, one that closes both ways (TIME_WAIT).
    let mut server = Peer::spawn_in(&netns);
    let mut client = Peer::spawn_in(&netns);
    let port = server.port(&format!("listen {LO}"));
    client.cmd(&format!("connect {LO} {port}"));
    server.cmd("accept");
    let (mut gone, _gone_client) = close_wait_pair(&netns);
    gone.cmd("close");

    let frames_wanted = watching.frames().len() + FRAMES_AFTER;
    let (frames, stderr) = watching.stop_after(frames_wanted);
    assert_eq!(frames.len(), frames_wanted, "{frames:#?}");
    assert!(
        !stderr.contains("snapshots only"),
        "the probe did not load: {stderr}"
    );
    let first = &frames[0];
    assert_eq!(first["live"]["check"], Value::Null, "{first:#}");
    let snapshot_only: Vec<&str> = first["live"]["snapshot_only"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(snapshot_only, ["SYN_RECV", "CLOSE"]);

    // Every later snapshot checks the counts the stream kept since the previous one.
    let mut transitions = 0;
    let mut checked = 0;
    for frame in &frames[1..] {
        let check = &frame["live"]["check"];
        transitions += check["transitions"].as_u64().unwrap();
        if check["lost"] != 0 {
            // The kernel counts the runs it skips machine-wide, whatever namespace they were
            // in: a parallel test's traffic can make a window unverifiable. Said, not asserted.
            eprintln!("a window with lost transitions is not checked: {check:#}");
            continue;
        }
        checked += 1;
        // FIN_WAIT2: full sockets; TIME_WAIT: every timewait socket, accounted by hand-overs.
        for state in [
            "ESTABLISHED",
            "CLOSE_WAIT",
            "LISTEN",
            "FIN_WAIT2",
            "TIME_WAIT",
        ] {
            assert_eq!(
                check["states"][state]["difference"], 0,
                "{state} differs: {frame:#}"
            );
        }
        for state in ["ESTABLISHED", "CLOSE_WAIT", "LISTEN"] {
            assert_eq!(
                check["states"][state]["snapshot"], frame["states"][state],
                "{frame:#}"
            );
        }
        assert_eq!(check["agrees"], true, "{check:#}");
        assert!(check["states"]["SYN_RECV"].is_null(), "{check:#}");
    }
    assert!(
        checked >= 2,
        "only {checked} windows without losses: {frames:#?}"
    );
    // Three connections made (five transitions each, listeners included), two closed.
    assert!(transitions >= 20, "{transitions} transitions: {frames:#?}");

    let last = &frames[frames_wanted - 1];
    assert_eq!(last["states"]["CLOSE_WAIT"], 2, "{last:#}");
    assert_eq!(last["states"]["TIME_WAIT"], 1, "{last:#}");
    let snapshot_ns = last["live"]["snapshot_ns"].as_u64().unwrap();
    let first_ns = first["live"]["snapshot_ns"].as_u64().unwrap();
    let seconds = |ns: u64| ns as f64 / 1e9;
    // Already there when tracing started: a lower bound, the kernel's (the time since the
    // last ACK, its FIN, which came before the first snapshot), so more than the time since
    // that snapshot.
    let age = &close_wait_finding(last, &early_pid)["age"];
    assert_eq!(age["oldest_exact"], false, "{age:#}");
    assert_eq!(age["oldest_source"], "kernel", "{age:#}");
    let oldest = age["oldest_s"].as_f64().unwrap();
    assert!(
        oldest >= seconds(snapshot_ns - first_ns),
        "{oldest} {age:#}"
    );
    // Entered while tracing: timed from its transition, as long as it has been held.
    let age = &close_wait_finding(last, &late_pid)["age"];
    assert_eq!(age["oldest_exact"], true, "{age:#}");
    assert_eq!(age["timed"], 1);
    let oldest = age["oldest_s"].as_f64().unwrap();
    let held_at_least = seconds(snapshot_ns - entered_by);
    let held_at_most = seconds(snapshot_ns - before_close);
    assert!(
        oldest >= held_at_least - 1e-6 && oldest <= held_at_most + 1e-6,
        "{oldest} not in [{held_at_least}, {held_at_most}]"
    );
    assert!(held_at_least > 2.0, "{held_at_least}");
}

#[test]
fn watch_without_privileges_shows_snapshots_and_says_so() {
    if !privileged("states: watch without privileges") {
        return;
    }
    let netns = Netns::new("watch-unprivileged");
    let (_server, _client) = close_wait_pair(&netns);
    // As nobody, without capabilities: the probe cannot load, inet_diag still answers.
    let mut command = netns.command("setpriv");
    command
        .args(AS_NOBODY)
        .arg(tcptrace_bin())
        .args(["states", "--watch", "0.2", "--count", "2", "--json"]);
    let out = command.output().expect("run setpriv");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("snapshots only"), "{stderr}");
    assert!(stderr.contains("root"), "{stderr}");
    let frames = json_lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(frames.len(), 2);
    for frame in &frames {
        assert_eq!(frame["live"], Value::Null);
        assert_eq!(frame["states"]["CLOSE_WAIT"], 1);
        let finding = frame["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["kind"] == "close_wait")
            .unwrap();
        // No stream, but the kernel's lower bound; the holder is hidden from nobody.
        assert_eq!(finding["age"]["oldest_source"], "kernel", "{finding:#}");
        assert_eq!(finding["age"]["timed"], 1);
        assert_eq!(finding["holder"], "unknown");
        assert!(finding["text"].as_str().unwrap().contains("run as root"));
    }
}

/// Runs `tcp-storm` in the namespace to its end; its report.
fn storm(netns: &Netns, args: &[&str]) -> Value {
    let out = netns.output(env!("CARGO_BIN_EXE_tcp-storm"), args);
    let report: Value = serde_json::from_str(out.trim()).expect("the storm's report");
    assert_eq!(report["failed"], 0, "{report:#}");
    report
}

/// The checks of a watch's frames after the first, split into those over windows where the
/// kernel lost no transition and the others.
fn checks(frames: &[Value]) -> (Vec<&Value>, Vec<&Value>) {
    frames[1..]
        .iter()
        .map(|frame| &frame["live"]["check"])
        .partition(|check| check["lost"] == 0)
}

fn verdicts(check: &Value) -> Vec<(String, String)> {
    check["states"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(state, c)| (state.clone(), c["verdict"].as_str().unwrap().to_owned()))
        .collect()
}

#[test]
fn watch_agrees_under_a_storm_when_nothing_is_lost() {
    if !privileged("states: live watch under a storm") {
        return;
    }
    // Snapshots every 0.3 s while 4,000 connections come and go at 2,000 a second, half of
    // them leaving a timewait socket: sockets move during every dump.
    // Frames are drawn once their check settles (half a second after the snapshot): enough
    // of them after the storm that the last snapshot comes after its end.
    const FRAMES_AFTER: usize = 5;
    let netns = Netns::new("watch-storm");
    let mut command = netns.command(tcptrace_bin());
    command.args(["states", "--watch", "0.3", "--count", "1000", "--json"]);
    let watching = {
        let _guard = start_lock();
        let watching = Watching::start(command);
        wait_until("the first snapshot", || {
            (!watching.frames().is_empty()).then_some(())
        });
        watching
    };
    let report = storm(
        &netns,
        &[
            "--connections",
            "4000",
            "--rate",
            "2000",
            "--threads",
            "4",
            "--port",
            "47321",
        ],
    );
    let frames_wanted = watching.frames().len() + FRAMES_AFTER;
    let (frames, stderr) = watching.stop_after(frames_wanted);
    assert!(
        !stderr.contains("snapshots only"),
        "the probe did not load: {stderr}"
    );
    let (complete, lossy) = checks(&frames);
    for check in &lossy {
        // Losses are counted machine-wide (runs skipped under a parallel test's load): such a
        // window cannot be verified, and must say so.
        eprintln!("a window with lost transitions: {check:#}");
        assert_eq!(check["agrees"], false, "{check:#}");
        assert_eq!(check["verified"], false, "{check:#}");
    }
    for check in &complete {
        assert_eq!(check["agrees"], true, "{check:#}");
        assert_eq!(check["gaps"], 0, "{check:#}");
        for (state, verdict) in verdicts(check) {
            assert_eq!(verdict, "agrees", "{state}: {check:#}");
        }
    }
    let sum = |checks: &[&Value], key: &str| -> u64 {
        checks.iter().map(|c| c[key].as_u64().unwrap()).sum()
    };
    let moved = |c: &&Value| {
        let m = &c["moved_during_snapshots"];
        m["resolved"].as_u64().unwrap() + m["uncertain"].as_u64().unwrap()
    };
    // The storm ran through the checked windows: its transitions, its hand-overs, sockets
    // moving during the dumps, timewait sockets listed.
    let expected = report["expected_transitions"].as_u64().unwrap();
    assert!(
        complete.len() >= 3,
        "only {} windows without losses: {frames:#?}",
        complete.len()
    );
    let seen = sum(&complete, "transitions");
    let moved_total: u64 = complete.iter().map(moved).sum();
    eprintln!(
        "{} windows checked, {} with losses; {seen} transitions of {expected} expected, {} \
         during dumps, {moved_total} sockets moved during dumps, {} hand-overs",
        complete.len(),
        lossy.len(),
        sum(&complete, "during_snapshot"),
        sum(&complete, "handovers"),
    );
    if lossy.is_empty() {
        assert!(seen >= expected, "{seen} < {expected}: {report:#}");
    }
    assert!(sum(&complete, "handovers") >= 500, "{frames:#?}");
    assert!(moved_total > 0, "{frames:#?}");
    assert!(sum(&complete, "during_snapshot") > 0, "{frames:#?}");
    let listed_timewait = complete
        .iter()
        .map(|c| c["states"]["TIME_WAIT"]["snapshot"].as_u64().unwrap())
        .max();
    assert!(listed_timewait > Some(500), "{frames:#?}");
}

#[test]
fn watch_does_not_claim_agreement_when_the_ring_buffer_overflows() {
    if !privileged("states: live watch with lost transitions") {
        return;
    }
    let netns = Netns::new("watch-overflow");
    let mut command = netns.command(tcptrace_bin());
    command.args(["states", "--watch", "0.3", "--count", "1000", "--json"]);
    let watching = {
        let _guard = start_lock();
        let watching = Watching::start(command);
        wait_until("the first snapshot", || {
            (!watching.frames().is_empty()).then_some(())
        });
        watching
    };
    // Stopped, tcptrace drains nothing: 8,000 connections (80,000 transitions and more) fill
    // the ring buffer (4 MiB, about 43,000 events), and the kernel loses the rest.
    let pid = watching.child.id() as i32;
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let stopped = watching.frames().len();
    storm(
        &netns,
        &["--connections", "8000", "--threads", "4", "--port", "47322"],
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let (frames, stderr) = watching.stop_after(stopped + 3);
    assert!(
        !stderr.contains("snapshots only"),
        "the probe did not load: {stderr}"
    );
    let (_, lossy) = checks(&frames);
    assert!(!lossy.is_empty(), "no window lost transitions: {frames:#?}");
    for check in &lossy {
        assert_eq!(check["agrees"], false, "{check:#}");
        for (state, verdict) in verdicts(check) {
            assert_ne!(verdict, "agrees", "{state}: {check:#}");
        }
    }
    // The hand-overs lost leave timewait sockets the stream cannot account for.
    let unexplained: u64 = lossy
        .iter()
        .map(|c| c["states"]["TIME_WAIT"]["unexplained"].as_u64().unwrap())
        .sum();
    eprintln!(
        "{} windows with losses: {} lost, {unexplained} timewait sockets unexplained",
        lossy.len(),
        lossy
            .iter()
            .map(|c| c["lost"].as_u64().unwrap())
            .sum::<u64>()
    );
    assert!(unexplained > 0, "{lossy:#?}");
    assert!(
        lossy
            .iter()
            .any(|c| c["states"]["TIME_WAIT"]["verdict"] == "differs"),
        "{lossy:#?}"
    );
}
