//! Harness of the end-to-end tests: the real tcptrace binary, real sockets in separate
//! processes, and waits on conditions with deadlines (never sleeps as synchronization).

#![allow(
    dead_code,
    reason = "each test module uses a different part of the harness"
)]

use std::{
    env,
    io::{BufRead, BufReader, Read, Write},
    path::PathBuf,
    process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, MutexGuard},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod pki;
pub mod prometheus;

/// How long any awaited condition may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);
/// Output lines a timed-out wait shows.
const TIMEOUT_LINES: usize = 60;

/// Serializes probe start-up against the test that unmounts tracefs: no other test may find it
/// gone (tcptrace does not need it, but that test alone should prove so).
static START_LOCK: Mutex<()> = Mutex::new(());

pub fn start_lock() -> MutexGuard<'static, ()> {
    START_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// True when privileged tests can run. Without root they skip loudly, except in CI, where
/// skipping would hide a broken set-up: there they fail.
pub fn privileged(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("{test}: end-to-end tests must run as root in CI");
    }
    eprintln!("SKIPPED {test}: needs root to load the BPF probe (run `cargo xtask test` as root)");
    false
}

/// The tcptrace binary under test: `TCPTRACE_BIN` (set by `cargo xtask test`), else the
/// workspace's release build.
pub fn tcptrace_bin() -> PathBuf {
    if let Some(path) = env::var_os("TCPTRACE_BIN") {
        return PathBuf::from(path);
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/tcptrace");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo xtask test`",
        path.display()
    );
    path
}

/// Polls `check` until it returns `Some`, or fails the test after [`DEADLINE`].
pub fn wait_until<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    wait_until_or(what, check, String::new)
}

/// [`wait_until`], failing with what `context` says of the state it gave up in.
fn wait_until_or<T>(
    what: &str,
    mut check: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}{}",
            context()
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// A running `tcptrace` whose stdout and stderr are collected as they come.
pub struct Tracer {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    /// The threads reading stdout and stderr; each ends at its pipe's end of file.
    readers: [JoinHandle<()>; 2],
}

/// What a stopped tracer left.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: String,
}

fn collect_lines(
    reader: impl Read + Send + 'static,
    sink: Arc<Mutex<Vec<String>>>,
) -> JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    })
}

impl Tracer {
    /// Starts `tcptrace ARGS -v` and waits until its probe is attached.
    pub fn start(args: &[&str]) -> Self {
        Self::start_command(Command::new(tcptrace_bin()), args)
    }

    /// Starts `tcptrace ARGS -v` inside a network namespace (`ip netns exec` execs it: the pid
    /// is tcptrace's, so [`Tracer::stop`] reaches it), where it reads that namespace's counters.
    pub fn start_in(netns: &Netns, args: &[&str]) -> Self {
        Self::start_command(netns.command(tcptrace_bin()), args)
    }

    /// Starts `COMMAND ARGS -v`, where the command runs tcptrace (e.g. through `setpriv`).
    pub fn start_command(mut command: Command, args: &[&str]) -> Self {
        let _guard = start_lock();
        let mut child = command
            .args(args)
            .arg("-v")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tcptrace");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stdout_reader = collect_lines(child.stdout.take().unwrap(), stdout.clone());
        let stderr = Arc::new(Mutex::new(String::new()));
        let err_sink = stderr.clone();
        let mut err_pipe = child.stderr.take().unwrap();
        let stderr_reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                err_sink
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut tracer = Self {
            child,
            stdout,
            stderr,
            readers: [stdout_reader, stderr_reader],
        };
        wait_until("the probe to attach", || {
            if let Ok(Some(status)) = tracer.child.try_wait() {
                panic!(
                    "tcptrace exited ({status}) before attaching: {}",
                    tracer.stderr.lock().unwrap()
                );
            }
            tracer
                .stderr
                .lock()
                .unwrap()
                .contains("probe attached")
                .then_some(())
        });
        tracer
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Output lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Output lines so far, parsed as JSON.
    pub fn json(&self) -> Vec<Value> {
        self.lines()
            .iter()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line}: {e}"))
            })
            .collect()
    }

    /// Waits until `check` accepts the JSON output so far; returns that output. On a timeout
    /// the failure shows the tracer's stderr and its last lines.
    pub fn wait_json(&self, what: &str, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        wait_until_or(
            what,
            || {
                let json = self.json();
                check(&json).then_some(json)
            },
            || {
                let lines = self.lines();
                let last = &lines[lines.len().saturating_sub(TIMEOUT_LINES)..];
                format!(
                    "\ntcptrace's stderr:\n{}\nits last {} of {} lines:\n{}",
                    self.stderr.lock().unwrap(),
                    last.len(),
                    lines.len(),
                    last.join("\n")
                )
            },
        )
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit.
    pub fn stop(self) -> Finished {
        self.stop_with(libc::SIGINT)
    }

    /// Sends `signal` and waits for the exit.
    pub fn stop_with(self, signal: libc::c_int) -> Finished {
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        self.wait()
    }

    /// Waits for the tracer to exit by itself (e.g. `--duration`).
    pub fn wait(mut self) -> Finished {
        let status = wait_until("tcptrace to exit", || self.child.try_wait().unwrap());
        // Its output is whole only once both readers have reached the end of their pipes.
        wait_until("tcptrace's stdout and stderr to close", || {
            self.readers
                .iter()
                .all(JoinHandle::is_finished)
                .then_some(())
        });
        Finished {
            status,
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr.lock().unwrap().clone(),
        }
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `tcp-peer` process: one side of a connection with its own pid.
pub struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    pub fn spawn() -> Self {
        Self::start(Command::new(env!("CARGO_BIN_EXE_tcp-peer")))
    }

    /// A peer inside a network namespace (`ip netns exec` execs it: the pid is the peer's).
    pub fn spawn_in(netns: &Netns) -> Self {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &netns.name])
            .arg(env!("CARGO_BIN_EXE_tcp-peer"));
        Self::start(command)
    }

    fn start(mut command: Command) -> Self {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn tcp-peer");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a command; `Ok(value)` or `Err(reason)`.
    pub fn try_cmd(&mut self, command: &str) -> Result<String, String> {
        writeln!(self.stdin, "{command}").expect("write to tcp-peer");
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read from tcp-peer");
        let line = line.trim_end();
        if let Some(value) = line.strip_prefix("ok") {
            Ok(value.trim().to_owned())
        } else {
            Err(line.strip_prefix("error ").unwrap_or(line).to_owned())
        }
    }

    /// Sends a command that must succeed.
    pub fn cmd(&mut self, command: &str) -> String {
        self.try_cmd(command)
            .unwrap_or_else(|err| panic!("tcp-peer `{command}` failed: {err}"))
    }

    pub fn port(&mut self, command: &str) -> u16 {
        self.cmd(command).parse().expect("a port")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `from->to` transitions of the JSON lines that match `keep`, in order.
pub fn path_of(lines: &[Value], keep: impl Fn(&Value) -> bool) -> Vec<String> {
    lines
        .iter()
        .filter(|line| line["type"] == "transition" && keep(line))
        .map(|line| {
            format!(
                "{}->{}",
                line["from"].as_str().unwrap(),
                line["to"].as_str().unwrap()
            )
        })
        .collect()
}

/// Lines of one socket, identified by its local and remote ports.
pub fn socket(lport: u16, rport: u16) -> impl Fn(&Value) -> bool {
    move |line| line["lport"] == lport && line["rport"] == rport
}

/// The first line of a socket with this transition.
pub fn find<'a>(
    lines: &'a [Value],
    keep: &dyn Fn(&Value) -> bool,
    from: &str,
    to: &str,
) -> &'a Value {
    lines
        .iter()
        .find(|line| keep(line) && line["from"] == from && line["to"] == to)
        .unwrap_or_else(|| panic!("no {from}->{to} among {lines:#?}"))
}

/// Milliseconds in the from-state of a line.
pub fn ms_in_from(line: &Value) -> f64 {
    line["time_in_from_ns"].as_u64().expect("a time in state") as f64 / 1e6
}

/// A network namespace of one test, with loopback up; deleted on drop, even when the test fails.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(test: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("tcptrace-test-{}-{n}", std::process::id());
        run_ok(Command::new("ip").args(["netns", "add", &name]), test);
        // From here on the guard exists, so a failure below still deletes the namespace.
        let netns = Self { name };
        run_ok(
            Command::new("ip").args(["-n", &netns.name, "link", "set", "lo", "up"]),
            test,
        );
        netns
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }

    /// Runs a command inside the namespace; its stdout, or a failed test.
    pub fn output(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> String {
        let mut command = self.command(program);
        command.args(args);
        run_ok(&mut command, &self.name)
    }

    /// The namespace's inode in the form `net:[INODE]`, as `--netns` accepts it.
    pub fn inode(&self) -> String {
        self.output("readlink", &["/proc/self/ns/net"])
            .trim()
            .to_owned()
    }

    /// Sets a sysctl of this namespace (`net.*` sysctls are per namespace) and checks it took.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.output("sysctl", &["-w", &format!("{key}={value}")]);
        let now = self.output("sysctl", &["-n", key]);
        assert_eq!(now.trim(), value, "{key} in {}", self.name);
    }

    /// Drops the inbound segments to `port` whose only handshake flag is `flag` ("syn": bare
    /// SYNs, so connects to it time out; "ack": ACKs, so its handshakes never complete and
    /// stay request sockets).
    pub fn drop_inbound(&self, port: u16, flag: &str) {
        assert!(matches!(flag, "syn" | "ack"), "{flag}");
        self.nft(&format!(
            "table inet tcptrace_drop {{
                chain input {{
                    type filter hook input priority 0; policy accept;
                    tcp dport {port} tcp flags & (syn | ack) == {flag} drop
                }}
            }}"
        ));
    }

    /// Removes what [`Self::drop_inbound`] added: segments pass again.
    pub fn stop_dropping(&self) {
        self.output("nft", &["delete", "table", "inet", "tcptrace_drop"]);
    }

    /// Loads an nftables ruleset into the namespace (nft reads it from stdin).
    pub fn nft(&self, ruleset: &str) {
        assert!(
            Command::new("nft").arg("--version").output().is_ok(),
            "`nft` is missing: install nftables (`cargo xtask setup` does as root)"
        );
        let mut child = self
            .command("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nft");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ruleset.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft -f failed: {}\n{ruleset}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

fn run_ok(command: &mut Command, what: &str) -> String {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {command:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `setpriv` arguments that run the rest of its command line as nobody, without capabilities.
pub const AS_NOBODY: [&str; 4] = [
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all",
];

/// The `M` of tcptrace's last `N transitions, M lost, …` summary line: every event the kernel
/// side could not deliver, to a full ring buffer or skipped by the kernel.
pub fn events_lost(stderr: &str) -> Option<u64> {
    stderr.lines().rev().find_map(|line| {
        let mut parts = line.split(", ");
        parts.next()?.strip_suffix(" transitions")?;
        parts.next()?.strip_suffix(" lost")?.parse().ok()
    })
}

/// A tracer that saw nothing (filtered to an unused port) ended with its summary line and no
/// event lost.
pub fn assert_empty_summary(finished: &Finished) {
    assert!(finished.status.success(), "{}", finished.stderr);
    assert!(
        finished.stderr.contains("\n0 transitions, ")
            || finished.stderr.starts_with("0 transitions, "),
        "{}",
        finished.stderr
    );
    assert_eq!(
        events_lost(&finished.stderr),
        Some(0),
        "{}",
        finished.stderr
    );
}

/// Seconds since the Unix epoch of an RFC 3339 UTC time as tcptrace writes it
/// (`2026-12-01T11:42:03.123456Z`), or `None` when it is not one.
pub fn rfc3339_unix_seconds(time: &str) -> Option<i64> {
    let b = time.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let text = time.get(range)?;
        text.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| text.parse().ok())?
    };
    let well_formed = b.len() == 27
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[26] == b'Z';
    if !well_formed {
        return None;
    }
    digits(20..26)?;
    let (y, m, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    // Days from the civil date (Howard Hinnant's algorithm), months counted from March.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + digits(11..13)? * 3600 + digits(14..16)? * 60 + digits(17..19)?)
}

/// Asserts that a JSON line's `time` is a well-formed RFC 3339 UTC time within a minute of
/// this machine's clock.
pub fn assert_recent_time(line: &Value) {
    let time = line["time"].as_str().unwrap_or_default();
    let seconds = rfc3339_unix_seconds(time).unwrap_or_else(|| panic!("time of {line}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((seconds - now).abs() < 60, "{time} is not now: {line}");
}

#[test]
fn rfc3339_times_are_read_back() {
    assert_eq!(rfc3339_unix_seconds("1970-01-01T00:00:00.000000Z"), Some(0));
    assert_eq!(
        rfc3339_unix_seconds("2023-11-14T22:13:21.500000Z"),
        Some(1_700_000_001)
    );
    assert_eq!(
        rfc3339_unix_seconds("2024-02-29T12:00:00.000001Z"),
        Some(1_709_208_000)
    );
    assert_eq!(rfc3339_unix_seconds("2023-11-14 22:13:21.500000Z"), None);
    assert_eq!(rfc3339_unix_seconds("2023-11-14T22:13:21Z"), None);
}
