//! A real Prometheus (Debian's package) started by a test, scraping `tcptrace export`, and
//! the plain HTTP/1.0 client the tests ask it and the exporter with: on the test's own
//! loopback, or inside a network namespace of the test when the exporter runs there.

use std::{
    fs,
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::Duration,
};

use serde_json::Value;

use super::{Netns, wait_until};

pub const LO: &str = "127.0.0.1";

/// `/usr/bin/NAME`, or a loud skip outside CI (a failure in CI, where `cargo xtask test`
/// installs it).
pub fn tool(name: &str) -> Option<PathBuf> {
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
pub fn free_port() -> u16 {
    std::net::TcpListener::bind((LO, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where a test's HTTP requests go from: the test's own network namespace, or one of its
/// namespaces (by name).
#[derive(Clone, Debug, Default)]
pub struct Place(Option<String>);

impl Place {
    pub fn host() -> Self {
        Self(None)
    }

    pub fn inside(netns: &Netns) -> Self {
        Self(Some(netns.name.clone()))
    }

    /// Connects from here. Inside a namespace, the socket is made by a thread that entered
    /// it (setns applies to the calling thread only) and that ends right after: the socket
    /// stays in that namespace wherever it is used.
    pub fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let Some(name) = &self.0 else {
            return TcpStream::connect(addr);
        };
        let path = format!("/var/run/netns/{name}");
        thread::scope(|scope| {
            scope
                .spawn(|| {
                    let file = fs::File::open(&path)?;
                    // SAFETY: setns(2) on a valid descriptor, from a thread of this scope
                    // alone: no other code runs on it afterwards.
                    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    TcpStream::connect(addr)
                })
                .join()
                .expect("the connecting thread")
        })
    }

    /// One HTTP/1.0 GET on loopback: status and body.
    pub fn get(&self, port: u16, path: &str, accept: Option<&str>) -> (u16, Vec<u8>) {
        self.request(
            port,
            path,
            &accept.map_or(String::new(), |a| format!("Accept: {a}\r\n")),
        )
    }

    /// One HTTP/1.0 GET with extra header lines (each ending in CRLF).
    pub fn request(&self, port: u16, path: &str, headers: &str) -> (u16, Vec<u8>) {
        let mut stream = self
            .connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {LO}\r\n{headers}\r\n").unwrap();
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
}

/// A test's directory under the temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
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

/// How a Prometheus of a test runs.
#[derive(Default)]
pub struct Options<'a> {
    /// `--enable-feature=native-histograms`: it then asks for the protobuf format.
    pub native: bool,
    /// The namespace it runs in (the exporter's), or the test's own.
    pub netns: Option<&'a Netns>,
    /// The scrape job's settings after `job_name` (YAML, indented by four spaces), e.g. a
    /// scheme, TLS and basic auth; its `static_configs` are added.
    pub job: &'a str,
    /// Files written beside the configuration first (a CA certificate, a password).
    pub files: &'a [(&'a str, &'a [u8])],
    /// More scrape jobs, as items of `scrape_configs` (YAML, indented by two spaces).
    pub more_jobs: &'a str,
}

pub struct Prometheus {
    child: Child,
    pub port: u16,
    place: Place,
    pub dir: TempDir,
}

impl Prometheus {
    /// Prometheus scraping the exporter on loopback `exporter` every second, as job
    /// `tcptrace`.
    pub fn start(binary: &Path, exporter: u16, options: Options<'_>) -> Self {
        let tag = format!(
            "prom-{exporter}{}",
            if options.native { "-native" } else { "" }
        );
        let dir = TempDir::new(&tag);
        for (name, content) in options.files {
            fs::write(dir.0.join(name), content).unwrap();
        }
        // Inside a namespace of the test its own ports (one per kind, so that both run side by
        // side); on the host, one nobody holds.
        let port = match options.netns {
            Some(_) => 9090 + u16::from(options.native),
            None => free_port(),
        };
        let config = dir.0.join("prometheus.yml");
        fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, scrape_timeout: 900ms, evaluation_interval: 1s}}\n\
                 scrape_configs:\n  - job_name: tcptrace\n{job}    static_configs:\n      - targets: ['{LO}:{exporter}']\n{more}",
                job = options.job,
                more = options.more_jobs,
            ),
        )
        .unwrap();
        let mut command = match options.netns {
            Some(netns) => netns.command(binary),
            None => Command::new(binary),
        };
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address={LO}:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if options.native {
            command.arg("--enable-feature=native-histograms");
        }
        let child = command.spawn().expect("start prometheus");
        Self {
            child,
            port,
            place: options.netns.map_or_else(Place::host, Place::inside),
            dir,
        }
    }

    /// The result vector of an instant query.
    pub fn query(&self, promql: &str) -> Vec<Value> {
        self.try_query(promql)
            .unwrap_or_else(|body| panic!("{promql}: {body}"))
    }

    /// The result vector, or the body of a refusal (503 while Prometheus starts).
    pub fn try_query(&self, promql: &str) -> Result<Vec<Value>, String> {
        self.api(&format!("/api/v1/query?query={}", url_encode(promql)))
    }

    /// The result vector of an instant query evaluated at `time` (Unix seconds).
    pub fn query_at(&self, promql: &str, time: f64) -> Vec<Value> {
        self.api(&format!(
            "/api/v1/query?query={}&time={time:.3}",
            url_encode(promql)
        ))
        .unwrap_or_else(|body| panic!("{promql}: {body}"))
    }

    /// The values of `label` over the series that match `selector`.
    pub fn label_values(&self, label: &str, selector: &str) -> Vec<String> {
        self.api(&format!(
            "/api/v1/label/{label}/values?match[]={}",
            url_encode(selector)
        ))
        .unwrap_or_else(|body| panic!("{label} of {selector}: {body}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
    }

    /// The `data` of an API call (a vector's `result`, or the whole array), or the body of a
    /// refusal.
    fn api(&self, path: &str) -> Result<Vec<Value>, String> {
        let (status, body) = self.place.get(self.port, path, None);
        if status != 200 {
            return Err(String::from_utf8_lossy(&body).into_owned());
        }
        let value: Value = serde_json::from_slice(&body).map_err(|err| err.to_string())?;
        let data = &value["data"];
        Ok(data
            .get("result")
            .unwrap_or(data)
            .as_array()
            .ok_or_else(|| value.to_string())?
            .clone())
    }

    /// The single sample of an instant query, once there is one.
    pub fn scalar(&self, promql: &str) -> Option<f64> {
        let result = self.query(promql);
        let sample = result.first()?;
        sample["value"][1].as_str()?.parse().ok()
    }

    /// The targets of the scrape job as Prometheus's API lists them.
    pub fn targets(&self) -> Value {
        let (status, body) = self.place.get(self.port, "/api/v1/targets", None);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    pub fn wait_ready(&self) {
        wait_until("Prometheus to scrape the exporter", || {
            self.place
                .connect(SocketAddr::from(([127, 0, 0, 1], self.port)))
                .ok()?;
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

/// Percent-encoding of a query parameter (RFC 3986 unreserved characters kept).
pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
