//! The findings of `tcptrace states` against what the test made the kernel do, in network
//! namespaces of the test: a full accept queue and its children, CLOSE_WAIT sockets on both
//! sides of the age threshold, SYN cookies, TIME_WAIT under each `tcp_tw_reuse`. The kernel's
//! own counters of the namespace are the reference.

use std::time::Instant;

use serde_json::Value;

use crate::support::{Netns, Peer, Tracer, privileged, tcptrace_bin, wait_until};

const LO: &str = "127.0.0.1";

fn states(netns: &Netns, args: &[&str]) -> String {
    let mut all = vec!["states"];
    all.extend(args);
    netns.output(tcptrace_bin(), &all)
}

fn states_json(netns: &Netns, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend(args);
    let out = states(netns, &all);
    serde_json::from_str(out.lines().next().expect("one line"))
        .unwrap_or_else(|e| panic!("bad JSON {out}: {e}"))
}

/// A `TcpExt` counter of the namespace, as the kernel has it now.
fn tcp_ext(netns: &Netns, name: &str) -> u64 {
    let netstat = netns.output("cat", &["/proc/net/netstat"]);
    let mut lines = netstat.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no TcpExt {name}"));
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

fn findings<'a>(frame: &'a Value, kind: &str) -> Vec<&'a Value> {
    frame["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == kind)
        .collect()
}

fn accept_queue(frame: &Value, port: u16) -> Option<&Value> {
    findings(frame, "accept_queue")
        .into_iter()
        .find(|f| f["lport"] == port)
}

/// The total of `counter` over the accept queue findings of `port` in later frames.
fn overflows_between(frames: &[Value], port: u16) -> u64 {
    frames
        .iter()
        .filter_map(|frame| accept_queue(frame, port))
        .map(|queue| {
            assert_eq!(queue["counters"]["window"], "snapshots", "{queue:#}");
            queue["counters"]["listen_overflows"].as_u64().unwrap()
        })
        .sum()
}

#[test]
fn a_full_accept_queue_its_overflows_and_its_children_not_yet_accepted() {
    if !privileged("findings: accept queue") {
        return;
    }
    let netns = Netns::new("findings-queue");
    // listen(1): the queue takes two children (full is "more than the backlog"), then the
    // kernel drops SYNs, one ListenOverflows each.
    let mut server = Peer::spawn_in(&netns);
    let server_pid = server.cmd("pid");
    let port = server.port(&format!("listen-backlog {LO} 1"));
    let mut client = Peer::spawn_in(&netns);
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        let answer = client.cmd(&format!("connect-held {LO} {port}"));
        outcomes.push(answer.split_whitespace().nth(1).unwrap().to_owned());
    }
    assert_eq!(
        outcomes,
        [
            "established",
            "established",
            "pending",
            "pending",
            "pending"
        ]
    );
    // No more SYNs: the counters stay where they are.
    assert_eq!(client.cmd("close-pending"), "3");
    let overflows = tcp_ext(&netns, "ListenOverflows");
    let drops = tcp_ext(&netns, "ListenDrops");
    assert!(overflows >= 3, "{overflows}");

    let frame = states_json(&netns, &[]);
    let queue = accept_queue(&frame, port).unwrap_or_else(|| panic!("{frame:#}"));
    assert_eq!(queue["queue"], 2, "{queue:#}");
    assert_eq!(queue["backlog"], 1);
    assert_eq!(queue["full"], true);
    assert_eq!(queue["risk"], true);
    assert_eq!(queue["holders"][0]["pid"].to_string(), server_pid);
    assert_eq!(queue["waiting"]["ESTABLISHED"], 2);
    assert_eq!(queue["counters"]["window"], "boot");
    assert_eq!(queue["counters"]["listen_overflows"], overflows);
    assert_eq!(queue["counters"]["listen_drops"], drops);
    let text = states(&netns, &[]);
    assert!(
        text.contains(&format!(
            "! LISTEN {LO}:{port} of {server_pid}/tcp-peer: accept queue 2/1, full"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("ListenOverflows {overflows}, ")),
        "{text}"
    );

    // The clients give up: their children, still in the queue, go CLOSE_WAIT. They are not
    // yet accepted by the listener's holder, whatever our privileges (we are root).
    assert_eq!(client.cmd("close-held"), "2");
    let frame = wait_until("the children in CLOSE_WAIT", || {
        let frame = states_json(&netns, &[]);
        (frame["states"]["CLOSE_WAIT"] == 2).then_some(frame)
    });
    let close_wait = findings(&frame, "close_wait");
    assert_eq!(close_wait.len(), 1, "{frame:#}");
    let children = close_wait[0];
    assert_eq!(children["holder"], "not_accepted");
    assert_eq!(children["count"], 2);
    assert_eq!(children["listener"], format!("{LO}:{port}"));
    assert_eq!(children["holders"][0]["pid"].to_string(), server_pid);
    assert_eq!(children["risk"], false);
    assert_eq!(
        accept_queue(&frame, port).unwrap()["waiting"]["CLOSE_WAIT"],
        2
    );
    let text = states(&netns, &[]);
    assert!(
        text.contains(&format!(
            "- CLOSE_WAIT: 2 connections not yet accepted by {server_pid}/tcp-peer"
        )),
        "{text}"
    );
    assert!(!text.contains("run as root"), "{text}");

    // --watch: between two snapshots, the overflows of that window. Two more connects while
    // the watch runs, then none: the windows add up to the kernel's change.
    let before = tcp_ext(&netns, "ListenOverflows");
    let watch = Tracer::start_in(&netns, &["states", "--watch", "1", "--json"]);
    watch.wait_json("the first snapshot", |frames| !frames.is_empty());
    for _ in 0..2 {
        let answer = client.cmd(&format!("connect-held {LO} {port}"));
        assert!(answer.ends_with(" pending"), "{answer}");
    }
    assert_eq!(client.cmd("close-pending"), "2");
    let after = tcp_ext(&netns, "ListenOverflows");
    assert!(after >= before + 2, "{before} -> {after}");
    // Snapshots taken once the counter stood still: two more frames.
    let seen = watch.json().len();
    watch.wait_json("two snapshots after the connects", |frames| {
        frames.len() >= seen + 2
    });
    let finished = watch.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    let frames: Vec<Value> = finished
        .stdout
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        accept_queue(&frames[0], port).unwrap()["counters"]["window"],
        "boot"
    );
    assert_eq!(overflows_between(&frames[1..], port), after - before);
}

/// A connection whose client closes and whose server never does; returns when the server's
/// socket is in CLOSE_WAIT, with the server, the client, and when the close began.
fn close_wait_pair(netns: &Netns) -> (Peer, Peer, Instant) {
    let mut server = Peer::spawn_in(netns);
    let mut client = Peer::spawn_in(netns);
    let port = server.port(&format!("listen {LO}"));
    client.cmd(&format!("connect {LO} {port}"));
    server.cmd("accept");
    let closing = Instant::now();
    client.cmd("close");
    server.cmd("wait-eof");
    (server, client, closing)
}

fn close_wait_of<'a>(frame: &'a Value, pid: &str) -> &'a Value {
    findings(frame, "close_wait")
        .into_iter()
        .find(|f| f["pid"].as_u64().map(|p| p.to_string()).as_deref() == Some(pid))
        .unwrap_or_else(|| panic!("no CLOSE_WAIT finding of {pid} in {frame:#}"))
}

#[test]
fn close_wait_is_a_leak_only_past_the_age_threshold() {
    if !privileged("findings: CLOSE_WAIT age") {
        return;
    }
    // Long enough that a socket made just before a query stays under it for the query's
    // duration, in the seconds of an emulated machine too.
    const THRESHOLD_S: f64 = 5.0;
    // The kernel counts the age in jiffies (HZ 100 at the coarsest).
    const JIFFY_S: f64 = 0.011;
    let netns = Netns::new("findings-close-wait");
    let (mut old, _old_client, old_closing) = close_wait_pair(&netns);
    let old_pid = old.cmd("pid");
    let flag = ["--close-wait-age", "5"];
    wait_until("the first socket to pass the threshold", || {
        let frame = states_json(&netns, &flag);
        (close_wait_of(&frame, &old_pid)["age"]["oldest_s"].as_f64()? >= THRESHOLD_S).then_some(())
    });
    let (mut young, _young_client, young_closing) = close_wait_pair(&netns);
    let young_pid = young.cmd("pid");

    let asked = Instant::now();
    let frame = states_json(&netns, &flag);
    let answered = Instant::now();
    let old_finding = close_wait_of(&frame, &old_pid);
    assert_eq!(old_finding["risk"], true, "{old_finding:#}");
    assert_eq!(old_finding["age"]["old"], 1);
    assert_eq!(old_finding["age"]["old_threshold_s"], THRESHOLD_S);
    // From the kernel, a lower bound that no traffic after the FIN lowered: the time since it.
    assert_eq!(old_finding["age"]["oldest_source"], "kernel");
    assert_eq!(old_finding["age"]["oldest_exact"], false);
    let age = old_finding["age"]["oldest_s"].as_f64().unwrap();
    let most = answered.duration_since(old_closing).as_secs_f64();
    assert!(
        age >= THRESHOLD_S && age <= most + JIFFY_S,
        "{age} not in [{THRESHOLD_S}, {most}]"
    );
    let young_finding = close_wait_of(&frame, &young_pid);
    assert_eq!(young_finding["risk"], false, "{young_finding:#}");
    assert_eq!(young_finding["age"]["old"], 0);
    let young_age = young_finding["age"]["oldest_s"].as_f64().unwrap();
    let young_most = answered.duration_since(young_closing).as_secs_f64();
    assert!(
        young_age <= young_most + JIFFY_S,
        "{young_age} > {young_most}"
    );
    assert!(asked.duration_since(old_closing) > asked.duration_since(young_closing));

    // The text, with a socket younger still (the first may have passed the threshold by now).
    let (mut younger, _younger_client, _) = close_wait_pair(&netns);
    let young_pid = younger.cmd("pid");
    let text = states(&netns, &flag);
    assert!(
        text.contains(&format!("! CLOSE_WAIT: {old_pid}/tcp-peer holds 1 socket")),
        "{text}"
    );
    assert!(text.contains("for 5 s or more: ≥ "), "{text}");
    assert!(
        text.contains(&format!(
            "- CLOSE_WAIT: {young_pid}/tcp-peer holds 1 socket"
        )),
        "{text}"
    );
    // The default threshold, a minute: neither is a leak yet.
    let frame = states_json(&netns, &[]);
    assert!(
        findings(&frame, "close_wait")
            .iter()
            .all(|f| f["risk"] == false && f["old_threshold_s"] == 60.0),
        "{frame:#}"
    );

    // --watch, tracing: a socket seen entering CLOSE_WAIT is timed by the stream, exactly;
    // the others by the kernel.
    let watch = Tracer::start_in(
        &netns,
        &[
            "states",
            "--watch",
            "0.5",
            "--close-wait-age",
            "5",
            "--json",
        ],
    );
    watch.wait_json("the first snapshot", |frames| !frames.is_empty());
    let (mut seen, _seen_client, _) = close_wait_pair(&netns);
    let seen_pid = seen.cmd("pid");
    let frames = watch.wait_json("a snapshot with the new socket", |frames| {
        frames.last().is_some_and(|frame| {
            findings(frame, "close_wait")
                .iter()
                .any(|f| f["pid"].as_u64().map(|p| p.to_string()) == Some(seen_pid.clone()))
        })
    });
    let last = frames.last().unwrap();
    let seen_finding = close_wait_of(last, &seen_pid);
    assert_eq!(
        seen_finding["age"]["oldest_source"], "stream",
        "{seen_finding:#}"
    );
    assert_eq!(seen_finding["risk"], false);
    let old_finding = close_wait_of(last, &old_pid);
    assert_eq!(
        old_finding["age"]["oldest_source"], "kernel",
        "{old_finding:#}"
    );
    assert_eq!(old_finding["risk"], true);
    let finished = watch.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
}

#[test]
fn syn_cookies_in_use_are_told_with_the_sysctl() {
    if !privileged("findings: SYN cookies") {
        return;
    }
    const CONNECTIONS: u64 = 3;
    let netns = Netns::new("findings-cookies");
    // 2: a cookie for every SYN, whether or not the SYN queue is full.
    netns.sysctl("net.ipv4.tcp_syncookies", "2");
    let mut server = Peer::spawn_in(&netns);
    let port = server.port(&format!("listen {LO}"));
    let mut clients: Vec<Peer> = (0..CONNECTIONS).map(|_| Peer::spawn_in(&netns)).collect();
    for client in &mut clients {
        client.cmd(&format!("connect {LO} {port}"));
        server.cmd("accept");
    }
    let sent = tcp_ext(&netns, "SyncookiesSent");
    let recv = tcp_ext(&netns, "SyncookiesRecv");
    assert_eq!(
        (sent, recv),
        (CONNECTIONS, CONNECTIONS),
        "the kernel's own count"
    );

    let frame = states_json(&netns, &[]);
    let cookies = findings(&frame, "syn_cookies");
    assert_eq!(cookies.len(), 1, "{frame:#}");
    let cookies = cookies[0];
    assert_eq!(cookies["tcp_syncookies"], 2);
    assert_eq!(cookies["counters"]["syncookies_sent"], sent);
    assert_eq!(cookies["counters"]["syncookies_recv"], recv);
    assert_eq!(cookies["counters"]["syncookies_failed"], 0);
    assert_eq!(cookies["counters"]["window"], "boot");
    assert_eq!(cookies["risk"], false);
    let text = states(&netns, &[]);
    assert!(
        text.contains(&format!(
            "- SYN cookies: {sent} sent, {recv} came back valid, 0 invalid since boot"
        )),
        "{text}"
    );
    assert!(
        text.contains("net.ipv4.tcp_syncookies = 2 sends them for every SYN"),
        "{text}"
    );

    // 1: cookies only for a full SYN queue, and none was.
    netns.sysctl("net.ipv4.tcp_syncookies", "1");
    let mut late = Peer::spawn_in(&netns);
    late.cmd(&format!("connect {LO} {port}"));
    assert_eq!(tcp_ext(&netns, "SyncookiesSent"), sent);
    let frame = states_json(&netns, &[]);
    let cookies = findings(&frame, "syn_cookies")[0];
    assert_eq!(cookies["tcp_syncookies"], 1);
    assert_eq!(cookies["counters"]["syncookies_sent"], sent);
}

/// Leaves `count` TIME_WAIT sockets from `addr`'s ephemeral ports towards one listener there.
fn time_wait_towards(netns: &Netns, addr: &str, count: usize) -> u16 {
    let mut server = Peer::spawn_in(netns);
    let mut client = Peer::spawn_in(netns);
    let port = server.port(&format!("listen {addr}"));
    for _ in 0..count {
        client.cmd(&format!("connect {addr} {port}"));
        server.cmd("accept");
        client.cmd("close");
        server.cmd("wait-eof");
        server.cmd("close");
    }
    port
}

fn time_wait_finding(netns: &Netns) -> Value {
    let frame = states_json(netns, &[]);
    let found = findings(&frame, "time_wait_ports");
    assert_eq!(found.len(), 1, "{frame:#}");
    found[0].clone()
}

#[test]
fn the_time_wait_finding_says_what_tw_reuse_does_for_its_ports() {
    if !privileged("findings: TIME_WAIT and tcp_tw_reuse") {
        return;
    }
    const TIME_WAIT: usize = 6;
    let netns = Netns::new("findings-time-wait");
    // Ten ephemeral ports, six held: a risk unless connect() may reuse them.
    netns.sysctl("net.ipv4.ip_local_port_range", "40000\t40009");
    // While they are made, no reuse: six distinct sockets.
    netns.sysctl("net.ipv4.tcp_tw_reuse", "0");
    let loopback_port = time_wait_towards(&netns, LO, TIME_WAIT);
    let frame = states_json(&netns, &["--state", "TIME_WAIT"]);
    assert_eq!(frame["states"]["TIME_WAIT"], TIME_WAIT as u64, "{frame:#}");

    let finding = time_wait_finding(&netns);
    assert_eq!(finding["rport"], loopback_port);
    assert_eq!(finding["count"], TIME_WAIT as u64);
    assert_eq!(finding["port_range"], serde_json::json!([40000, 40009]));
    assert_eq!(finding["tcp_tw_reuse"], 0);
    assert_eq!(finding["risk"], true);
    let text = states(&netns, &[]);
    assert!(
        text.contains("net.ipv4.tcp_tw_reuse = 0: connect() never reuses them"),
        "{text}"
    );
    assert!(text.contains("may fail (EADDRNOTAVAIL)"), "{text}");

    netns.sysctl("net.ipv4.tcp_tw_reuse", "1");
    let finding = time_wait_finding(&netns);
    assert_eq!(
        (
            finding["tcp_tw_reuse"].as_u64(),
            finding["reuse_applies"].as_bool()
        ),
        (Some(1), Some(true))
    );
    assert_eq!(finding["risk"], false, "{finding:#}");
    let text = states(&netns, &[]);
    assert!(
        text.contains("net.ipv4.tcp_tw_reuse = 1: connect() takes such a port over"),
        "{text}"
    );
    assert!(!text.contains("EADDRNOTAVAIL"), "{text}");

    // 2, loopback only: these are loopback connections.
    netns.sysctl("net.ipv4.tcp_tw_reuse", "2");
    let finding = time_wait_finding(&netns);
    assert_eq!(finding["loopback"], true);
    assert_eq!(finding["risk"], false, "{finding:#}");

    // The same towards an address that is not loopback: 2 does nothing for them.
    let other = Netns::new("findings-time-wait-2");
    other.sysctl("net.ipv4.ip_local_port_range", "40000\t40009");
    other.sysctl("net.ipv4.tcp_tw_reuse", "0");
    other.output("ip", &["addr", "add", "10.213.0.1/32", "dev", "lo"]);
    time_wait_towards(&other, "10.213.0.1", TIME_WAIT);
    other.sysctl("net.ipv4.tcp_tw_reuse", "2");
    let finding = time_wait_finding(&other);
    assert_eq!(finding["raddr"], "10.213.0.1");
    assert_eq!(
        (
            finding["loopback"].as_bool(),
            finding["reuse_applies"].as_bool()
        ),
        (Some(false), Some(false))
    );
    assert_eq!(finding["risk"], true, "{finding:#}");
    let text = states(&other, &[]);
    assert!(
        text.contains(
            "net.ipv4.tcp_tw_reuse = 2 reuses TIME_WAIT ports of loopback connections only"
        ),
        "{text}"
    );
}
