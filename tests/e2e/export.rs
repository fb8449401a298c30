//! `tcptrace export` scraped by a real Prometheus (Debian's package): a known workload runs in
//! a network namespace of the test, the exporter counts that namespace only (`--netns`), and
//! Prometheus's HTTP API must return the workload's exact counts and a time in state within
//! the buckets' resolution, with classic buckets and, in a second run, native ones. promtool
//! checks the text formats and the alerting rules; hostile HTTP clients leave it serving.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use crate::support::{
    Netns, Peer, Tracer, privileged,
    prometheus::{LO, Options, Place, Prometheus, free_port, tool},
    wait_until,
};

/// Client connections of the workload, each held ESTABLISHED for [`HOLD_MS`].
const CONNECTIONS: u64 = 4;
const HOLD_MS: u64 = 300;

fn get(port: u16, path: &str, accept: Option<&str>) -> (u16, Vec<u8>) {
    Place::host().get(port, path, accept)
}

/// The workload, in `netns`: [`CONNECTIONS`] connections the client closes first after
/// [`HOLD_MS`] in ESTABLISHED, and one connect refused.
pub(crate) fn workload(netns: &Netns) {
    let mut server = Peer::spawn_in(netns);
    let mut client = Peer::spawn_in(netns);
    let port = server.port(&format!("listen {LO}"));
    for _ in 0..CONNECTIONS {
        client.cmd(&format!("connect {LO} {port}"));
        server.cmd("accept");
        client.cmd(&format!("sleep {HOLD_MS}"));
        client.cmd("close");
        server.cmd("wait-eof");
        server.cmd("close");
    }
    // A port bound and released again: nothing listens there in this namespace of the test's
    // own. The second listen closes the first listener.
    let closed = server.port(&format!("listen {LO}"));
    server.cmd("close-listener");
    assert!(client.try_cmd(&format!("connect {LO} {closed}")).is_err());
}

/// The series Prometheus must hold once the workload's transitions arrived.
pub(crate) fn expected() -> Vec<(&'static str, u64)> {
    vec![
        (
            r#"tcptrace_transitions_total{from="close",to="syn_sent",path="client"}"#,
            CONNECTIONS + 1,
        ),
        (
            r#"tcptrace_transitions_total{from="syn_sent",to="established",path="client"}"#,
            CONNECTIONS,
        ),
        (
            r#"tcptrace_transitions_total{from="established",to="fin_wait1",path="client"}"#,
            CONNECTIONS,
        ),
        (
            r#"tcptrace_transitions_total{from="fin_wait2",to="time_wait",path="client"}"#,
            CONNECTIONS,
        ),
        (
            r#"tcptrace_transitions_total{from="listen",to="syn_recv",path="server"}"#,
            CONNECTIONS,
        ),
        (
            r#"tcptrace_transitions_total{from="established",to="close_wait",path="server"}"#,
            CONNECTIONS,
        ),
        (
            r#"tcptrace_transitions_total{from="last_ack",to="close",path="server"}"#,
            CONNECTIONS,
        ),
        (
            r#"tcptrace_transitions_total{from="close",to="listen",path="listener"}"#,
            2,
        ),
        (
            r#"tcptrace_transitions_total{from="listen",to="close",path="listener"}"#,
            2,
        ),
        (
            r#"tcptrace_abnormal_closes_total{path="client",from="syn_sent",cause="refused"}"#,
            1,
        ),
        (
            r#"tcptrace_abnormal_closes_total{path="client",from="syn_sent",cause="other"}"#,
            0,
        ),
    ]
}

/// Waits until Prometheus holds every series of `all` with its count.
pub(crate) fn wait_for_counts(prometheus: &Prometheus, all: &[(&str, u64)]) {
    wait_until("Prometheus to hold the workload's counts", || {
        all.iter()
            .all(|(series, n)| prometheus.scalar(series) == Some(*n as f64))
            .then_some(())
    });
}

const HELD: &str = r#"{from="established",to="fin_wait1",path="client"}"#;

/// Runs the exporter on the workload's namespace and Prometheus on it; checks the counts and
/// the hold time; returns what the checks of `check` need.
fn scraped(native: bool, check: impl FnOnce(&Prometheus, u16)) {
    let Some(binary) = tool("prometheus") else {
        return;
    };
    let netns = Netns::new("export");
    let inode = netns.inode();
    let port = free_port();
    let listen = format!("{LO}:{port}");
    let exporter = Tracer::start(&["export", "--listen", &listen, "--netns", &inode]);
    let prometheus = Prometheus::start(
        &binary,
        port,
        Options {
            native,
            ..Options::default()
        },
    );
    prometheus.wait_ready();
    workload(&netns);
    let all = expected();
    wait_for_counts(&prometheus, &all);
    // Exact, and staying so: nothing else is counted in that namespace.
    for (series, n) in &all {
        assert_eq!(prometheus.scalar(series), Some(*n as f64), "{series}");
    }
    let count = prometheus
        .scalar(&format!("tcptrace_time_in_state_seconds_count{HELD}"))
        .or_else(|| {
            prometheus.scalar(&format!(
                "histogram_count(tcptrace_time_in_state_seconds{HELD})"
            ))
        })
        .expect("a count of the hold time");
    assert_eq!(count, CONNECTIONS as f64);
    let hold = HOLD_MS as f64 / 1e3;
    if native {
        let stored = prometheus.query(&format!("tcptrace_time_in_state_seconds{HELD}"));
        assert!(
            stored.first().is_some_and(|s| s.get("histogram").is_some()),
            "not stored as a native histogram: {stored:?}"
        );
        let mean = prometheus
            .scalar(&format!(
                "histogram_sum(tcptrace_time_in_state_seconds{HELD}) / histogram_count(tcptrace_time_in_state_seconds{HELD})"
            ))
            .unwrap();
        // The client's commands take a few milliseconds on top of the sleep.
        assert!((hold..hold + 0.1).contains(&mean), "mean hold {mean}");
        let median = prometheus
            .scalar(&format!(
                "histogram_quantile(0.5, tcptrace_time_in_state_seconds{HELD})"
            ))
            .unwrap();
        // Schema 3: buckets 9 % wide.
        assert!(
            (median - mean).abs() <= 0.1 * mean,
            "median {median} against mean {mean}"
        );
    } else {
        let mean = prometheus
            .scalar(&format!(
                "tcptrace_time_in_state_seconds_sum{HELD} / tcptrace_time_in_state_seconds_count{HELD}"
            ))
            .unwrap();
        assert!((hold..hold + 0.1).contains(&mean), "mean hold {mean}");
        let median = prometheus
            .scalar(&format!(
                "histogram_quantile(0.5, tcptrace_time_in_state_seconds_bucket{HELD})"
            ))
            .unwrap();
        // Every hold falls in the (0.2 s, 0.5 s] bucket: interpolation gives its middle.
        assert!((0.2..=0.5).contains(&median), "median {median}");
        assert!((median - 0.35).abs() < 1e-9, "median {median}");
    }
    check(&prometheus, port);
    let finished = exporter.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    assert!(
        finished.stderr.lines().any(|l| l.ends_with(" 0 lost")),
        "{}",
        finished.stderr
    );
}

#[test]
fn prometheus_scrapes_exact_counts_with_classic_buckets() {
    if !privileged("prometheus_scrapes_exact_counts_with_classic_buckets") {
        return;
    }
    scraped(false, |_, port| {
        let Some(promtool) = tool("promtool") else {
            return;
        };
        for accept in [
            None,
            Some("application/openmetrics-text;version=1.0.0"),
            Some("text/plain;version=0.0.4"),
        ] {
            let (status, body) = get(port, "/metrics", accept);
            assert_eq!(status, 200);
            let mut check = Command::new(&promtool)
                .args(["check", "metrics"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            check.stdin.take().unwrap().write_all(&body).unwrap();
            let out = check.wait_with_output().unwrap();
            let report = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            // Lint findings are advice (promtool exits 3 for them); errors fail.
            assert!(
                out.status.success() || out.status.code() == Some(3),
                "{accept:?}: {report}"
            );
            assert!(!report.contains("error"), "{accept:?}: {report}");
        }
    });
}

#[test]
fn prometheus_stores_native_histograms_from_protobuf() {
    if !privileged("prometheus_stores_native_histograms_from_protobuf") {
        return;
    }
    scraped(true, |prometheus, _| {
        // Scraped as protobuf: the format that carries native histograms.
        let scrapes = prometheus.scalar("scrape_samples_scraped{job=\"tcptrace\"}");
        assert!(scrapes.is_some_and(|n| n > 0.0));
    });
}

#[test]
fn alerting_rules_pass_promtool() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tcptrace/dist/prometheus");
    for args in [
        &["check", "rules", "tcptrace-alerts.yml"][..],
        &["test", "rules", "tcptrace-alerts.test.yml"],
    ] {
        let out = Command::new(&promtool)
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn hostile_clients_leave_the_exporter_serving() {
    if !privileged("hostile_clients_leave_the_exporter_serving") {
        return;
    }
    let port = free_port();
    let listen = format!("{LO}:{port}");
    let exporter = Tracer::start(&["export", "--listen", &listen, "--lport", "1"]);
    wait_until("the exporter's health", || {
        (get(port, "/healthz", None).0 == 200).then_some(())
    });
    // A thousand idle connections, a byte-a-second client and garbage.
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect((LO, port)).expect("an idle connection"))
        .collect();
    let slow = thread::spawn(move || {
        let mut stream = TcpStream::connect((LO, port)).unwrap();
        let start = Instant::now();
        for byte in b"GET /metrics HTTP/1.1\r\n".iter().take(8) {
            if stream.write_all(&[*byte]).is_err() {
                // Cut off by the header timeout: what a slow client gets.
                return start.elapsed();
            }
            thread::sleep(Duration::from_secs(1));
        }
        start.elapsed()
    });
    let mut garbage = TcpStream::connect((LO, port)).unwrap();
    garbage
        .write_all(b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    garbage
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = garbage.read_to_end(&mut answer);
    assert!(
        answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // Still serving, while all of them are open.
    let start = Instant::now();
    let (status, body) = get(port, "/metrics", None);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("tcptrace_programs_attached"));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(get(port, "/nowhere", None).0, 404);
    let slow = slow.join().unwrap();
    assert!(
        slow < Duration::from_secs(8),
        "the slow client lasted {slow:?}"
    );
    drop(idle);
    let finished = exporter.stop();
    assert!(finished.status.success(), "{}", finished.stderr);
    assert!(
        finished.stderr.lines().any(|l| l.ends_with(" 0 lost")),
        "{}",
        finished.stderr
    );
}

#[test]
fn bad_listen_addresses_are_one_line_and_exit_2() {
    let taken = std::net::TcpListener::bind((LO, 0)).unwrap();
    let port = taken.local_addr().unwrap().port();
    for (listen, expected) in [
        ("nonsense".to_owned(), "not an address and port"),
        (format!("{LO}:{port}"), "cannot listen on"),
        ("192.0.2.1:10427".to_owned(), "cannot listen on"),
    ] {
        let out = Command::new(crate::support::tcptrace_bin())
            .args(["export", "--listen", &listen])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{listen}: {stderr}");
        assert!(stderr.contains(expected), "{listen}: {stderr}");
        if expected == "cannot listen on" {
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
        }
    }
}
