//! `tcptrace export` scraped by a real Prometheus (Debian's package): a known workload runs in
//! a network namespace of the test, the exporter counts that namespace only (`--netns`), and
//! Prometheus's HTTP API must return the workload's exact counts and a time in state within
//! the buckets' resolution, with classic buckets and, in a second run, native ones. promtool
//! checks the text formats and the alerting rules; hostile HTTP clients leave it serving.

use std::{
    fs,
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{Netns, Peer, Tracer, privileged, wait_until};

const LO: &str = "127.0.0.1";
/// Client connections of the workload, each held ESTABLISHED for [`HOLD_MS`].
const CONNECTIONS: u64 = 4;
const HOLD_MS: u64 = 300;

fn tool(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from("/usr/bin").join(name);
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{name} is missing: `cargo xtask test` installs Debian's prometheus package"
    );
    eprintln!("SKIPPED: {name} is missing (apt-get install prometheus)");
    None
}

/// A free loopback port, unique to this test process (other suites run beside it).
fn free_port() -> u16 {
    std::net::TcpListener::bind((LO, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.0 GET on loopback: status and body.
fn get(port: u16, path: &str, accept: Option<&str>) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect((LO, port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {LO}\r\n{accept}\r\n").unwrap();
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read the response");
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&response[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, response[head_end + 4..].to_vec())
}

struct Prometheus {
    child: Child,
    port: u16,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tcptrace-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl Prometheus {
    fn start(binary: &Path, exporter: u16, native: bool) -> Self {
        let dir = TempDir::new(if native { "prom-native" } else { "prom" });
        let port = free_port();
        let config = dir.0.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s}}\n\
                 scrape_configs:\n  - job_name: tcptrace\n    static_configs:\n      - targets: ['{LO}:{exporter}']\n"
            ),
        )
        .unwrap();
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address={LO}:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if native {
            command.arg("--enable-feature=native-histograms");
        }
        let child = command.spawn().expect("start prometheus");
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// The result vector of an instant query.
    fn query(&self, promql: &str) -> Vec<Value> {
        self.try_query(promql)
            .unwrap_or_else(|body| panic!("{promql}: {body}"))
    }

    /// The result vector, or the body of a refusal (503 while Prometheus starts).
    fn try_query(&self, promql: &str) -> Result<Vec<Value>, String> {
        let encoded: String = promql
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let (status, body) = get(self.port, &format!("/api/v1/query?query={encoded}"), None);
        if status != 200 {
            return Err(String::from_utf8_lossy(&body).into_owned());
        }
        let value: Value = serde_json::from_slice(&body).map_err(|err| err.to_string())?;
        Ok(value["data"]["result"].as_array().unwrap().clone())
    }

    /// The single sample of an instant query, once there is one.
    fn scalar(&self, promql: &str) -> Option<f64> {
        let result = self.query(promql);
        let sample = result.first()?;
        sample["value"][1].as_str()?.parse().ok()
    }

    fn wait_ready(&self) {
        wait_until("Prometheus to scrape the exporter", || {
            TcpStream::connect((LO, self.port)).ok()?;
            let up = self.try_query("up{job=\"tcptrace\"}").ok()?;
            (up.first()?["value"][1].as_str()? == "1").then_some(())
        });
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The workload, in `netns`: [`CONNECTIONS`] connections the client closes first after
/// [`HOLD_MS`] in ESTABLISHED, and one connect refused.
fn workload(netns: &Netns) {
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
fn expected() -> Vec<(&'static str, u64)> {
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
    let prometheus = Prometheus::start(&binary, port, native);
    prometheus.wait_ready();
    workload(&netns);
    let all = expected();
    wait_until("Prometheus to hold the workload's counts", || {
        all.iter()
            .all(|(series, n)| prometheus.scalar(series) == Some(*n as f64))
            .then_some(())
    });
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
