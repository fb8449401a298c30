//! The tracers under test: starting one, waiting until it is attached, stopping it once it has
//! caught up, and reading what it saw and what it cost from its own accounting.

use std::{
    fs::{self, File},
    io::Read,
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail, ensure};
use serde::Serialize;

use crate::run;

/// How long a tracer may take to attach, to catch up, or to exit.
const DEADLINE: Duration = Duration::from_secs(30);

const TCPSTATES: &str = "/usr/sbin/tcpstates";

/// Counts transitions in the kernel; `BEGIN` fires once every probe is attached, so its line
/// on stdout is the attach signal.
const BPFTRACE_PROGRAM: &str = r#"BEGIN { printf("attached\n"); }
tracepoint:sock:inet_sock_set_state { @[args->oldstate, args->newstate] = count(); }"#;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tracer {
    Transitions,
    /// `transitions` on a terminal: its full-screen view redrawn every second, in a
    /// pseudo-terminal of 200x60 whose output is read and discarded.
    TransitionsTui,
    Export,
    TraceJson,
    Tcpstates,
    Bpftrace,
}

impl Tracer {
    pub const ALL: [Tracer; 6] = [
        Self::Transitions,
        Self::TransitionsTui,
        Self::Export,
        Self::TraceJson,
        Self::Tcpstates,
        Self::Bpftrace,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Transitions => "tcptrace transitions",
            Self::TransitionsTui => "tcptrace transitions, TUI in a pty",
            Self::Export => "tcptrace export, scraped every second",
            Self::TraceJson => "tcptrace trace --json",
            Self::Tcpstates => "libbpf-tools tcpstates",
            Self::Bpftrace => "bpftrace, counting in the kernel",
        }
    }

    /// `Err(why)` when this tracer cannot run here.
    pub fn available(self) -> Result<(), String> {
        match self {
            Self::Transitions | Self::TransitionsTui => {
                let ok = Command::new(run::binary())
                    .args(["transitions", "--help"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success());
                ok.then_some(())
                    .ok_or_else(|| "this build of tcptrace has no `transitions` command".to_owned())
            }
            Self::Export => {
                let ok = Command::new(run::binary())
                    .args(["export", "--help"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success());
                ok.then_some(())
                    .ok_or_else(|| "this build of tcptrace has no `export` command".to_owned())
            }
            Self::TraceJson => Ok(()),
            Self::Tcpstates => {
                Path::new(TCPSTATES).exists().then_some(()).ok_or_else(|| {
                    format!("{TCPSTATES} is not installed (Debian package libbpf-tools)")
                })?;
                ensure_tracefs()
            }
            Self::Bpftrace => {
                Command::new("bpftrace")
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|status| status.success())
                    .then_some(())
                    .ok_or_else(|| {
                        "bpftrace is not installed (Debian package bpftrace)".to_owned()
                    })?;
                ensure_tracefs()
            }
        }
    }
}

/// The anchors attach to the classic tracepoint, found through tracefs (tcptrace does not need
/// it): mounts it where nobody did.
fn ensure_tracefs() -> Result<(), String> {
    const TRACEFS: &str = "/sys/kernel/tracing";
    if Path::new(TRACEFS).join("events").is_dir() {
        return Ok(());
    }
    eprintln!("xtask: mounting tracefs at {TRACEFS} for the anchors");
    let mounted = Command::new("mount")
        .args(["-t", "tracefs", "tracefs", TRACEFS])
        .status()
        .is_ok_and(|status| status.success());
    mounted
        .then_some(())
        .ok_or_else(|| format!("tracefs is not mounted and mounting it at {TRACEFS} failed"))
}

/// Where the tracer's stdout goes.
pub enum Output {
    /// /dev/null: what is measured is the tracer writing its output, not a reader.
    Null,
    /// A file, read once the tracer has exited.
    File(PathBuf),
}

/// A tracer that is attached and tracing.
pub struct Running {
    tracer: Tracer,
    child: Option<Child>,
    stdout_file: Option<PathBuf>,
    /// The pseudo-terminal's reader, for the full-screen view: drains it until the tracer
    /// closes its side.
    pty: Option<Collector>,
    stdout: Collector,
    stderr: Collector,
    /// CPU time (user + sys, clock ticks) the tracer had used when it was attached: start-up
    /// (BTF parsing, verification) is not part of the cost per event.
    ticks_at_attach: u64,
    /// The scrapes of `export`, while it runs.
    scraper: Option<Scraper>,
    /// The port `export` serves on.
    port: Option<u16>,
}

/// Scrapes `export` every second, as a Prometheus would (OpenMetrics asked for), from a
/// thread of its own; counts the scrapes that succeeded and those that did not.
struct Scraper {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<ScrapeCounts>,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct ScrapeCounts {
    pub ok: u64,
    pub failed: u64,
    /// The slowest scrape, milliseconds.
    pub slowest_ms: f64,
}

/// One GET of /metrics on loopback `port`: the time it took, when it answered 200.
pub fn scrape(port: u16, accept: &str) -> Option<Duration> {
    use std::io::Write as _;
    let started = Instant::now();
    let mut stream = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\n\r\n"
    )
    .ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let elapsed = started.elapsed();
    // `HTTP/1.0 200 OK`: the status after the version.
    (response.starts_with(b"HTTP/1.") && response.get(9..12) == Some(b"200")).then_some(elapsed)
}

/// The body of one GET of /metrics on loopback `port`, in Prometheus's text format.
pub fn metrics_body(port: u16) -> anyhow::Result<String> {
    use std::io::Write as _;
    let mut stream = std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("an HTTP response without a body")?;
    let status = head.lines().next().unwrap_or("no answer");
    ensure!(
        status.get(9..12) == Some("200"),
        "the scrape failed: {status}"
    );
    Ok(body.to_owned())
}

/// The samples a scrape serves, and the namespaces with a label value of their own in it
/// (`other` not counted).
pub fn served(port: u16) -> anyhow::Result<(usize, usize)> {
    let body = metrics_body(port)?;
    let samples = body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    let labelled = body
        .lines()
        .filter(|l| {
            l.starts_with("tcptrace_netns_transitions_total{netns=\"")
                && !l.contains("netns=\"other\"")
        })
        .count();
    Ok((samples, labelled))
}

/// What Prometheus 2.42 sends by default.
pub const OPENMETRICS: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";

impl Scraper {
    fn start(port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = thread::spawn(move || {
            let mut counts = ScrapeCounts::default();
            while !stopped.load(Ordering::Relaxed) {
                match scrape(port, OPENMETRICS) {
                    Some(took) => {
                        counts.ok += 1;
                        counts.slowest_ms = counts.slowest_ms.max(took.as_secs_f64() * 1e3);
                    }
                    None => counts.failed += 1,
                }
                // A second between scrapes, woken early by the stop.
                for _ in 0..10 {
                    if stopped.load(Ordering::Relaxed) {
                        break;
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            }
            counts
        });
        Self { stop, thread }
    }

    fn finish(self) -> ScrapeCounts {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}

/// A free loopback port for the exporter.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("cannot bind a loopback port for the exporter")?;
    Ok(listener.local_addr()?.port())
}

/// What a stopped tracer saw and cost.
#[derive(Clone, Debug, Serialize)]
pub struct Finished {
    /// Transitions the tracer reports it saw; `None` when it cannot say.
    pub observed: Option<u64>,
    /// Events the tracer reports it lost; `None` when it cannot lose any or cannot say.
    pub lost: Option<u64>,
    /// Runs of the tracer's BPF programs that the kernel skipped because the program was
    /// already running on that CPU (a softirq interrupting it), and that the tracer did not make
    /// up for: events lost before it could count them. The programs' `recursion_misses` in
    /// fdinfo, or for tcptrace the count it reports (it records the others with a second
    /// program).
    pub kernel_misses: u64,
    /// Transitions tcptrace's nested program recorded because the kernel skipped its main
    /// program for them (its `-v` log); `None` for the other tracers.
    pub nested_caught: Option<u64>,
    /// User + sys seconds from the moment it was attached to its exit.
    pub cpu_s: f64,
    /// Peak resident set size (VmHWM) once it has caught up, KiB.
    pub peak_rss_kib: u64,
    /// Resident set size (VmRSS) once it has caught up, KiB: what a long run keeps.
    pub rss_kib: u64,
    /// The scrapes of `export` during the run.
    pub scrapes: Option<ScrapeCounts>,
    /// Everything it wrote to stderr (its `-v` log for tcptrace).
    #[serde(skip)]
    pub stderr: String,
}

/// Text read from a pipe as it comes, so the tracer never blocks on a full pipe.
struct Collector {
    text: Arc<Mutex<String>>,
    thread: Option<JoinHandle<()>>,
}

impl Collector {
    fn none() -> Self {
        Self {
            text: Arc::default(),
            thread: None,
        }
    }

    fn spawn(mut pipe: impl Read + Send + 'static) -> Self {
        let text: Arc<Mutex<String>> = Arc::default();
        let sink = text.clone();
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                lock(&sink).push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Self {
            text,
            thread: Some(thread),
        }
    }

    /// Reads the pipe to its end and keeps nothing.
    fn discarding(mut pipe: impl Read + Send + 'static) -> Self {
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // A pty's reader gets EIO once the last writer is gone: the end.
            while matches!(pipe.read(&mut buf), Ok(n) if n > 0) {}
        });
        Self {
            text: Arc::default(),
            thread: Some(thread),
        }
    }

    fn contains(&self, needle: &str) -> bool {
        lock(&self.text).contains(needle)
    }

    /// Everything, once the writer has closed the pipe.
    fn finish(mut self) -> String {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        lock(&self.text).clone()
    }
}

fn lock(text: &Mutex<String>) -> std::sync::MutexGuard<'_, String> {
    text.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Running {
    /// Starts the tracer with `args` and waits until its probe is attached.
    pub fn start(tracer: Tracer, args: &[String], output: Output) -> anyhow::Result<Self> {
        let export_port = match tracer {
            Tracer::Export => Some(free_port()?),
            _ => None,
        };
        let mut cmd = match tracer {
            Tracer::Transitions | Tracer::TransitionsTui => {
                let mut cmd = Command::new(run::binary());
                cmd.arg("transitions").args(args).arg("-v");
                cmd
            }
            Tracer::Export => {
                let mut cmd = Command::new(run::binary());
                cmd.args(["export", "--listen"])
                    .arg(format!("127.0.0.1:{}", export_port.unwrap_or(0)))
                    .args(args)
                    .arg("-v");
                cmd
            }
            Tracer::TraceJson => {
                let mut cmd = Command::new(run::binary());
                cmd.args(["trace", "--json"]).args(args).arg("-v");
                cmd
            }
            Tracer::Tcpstates => {
                let mut cmd = Command::new(TCPSTATES);
                cmd.args(args);
                cmd
            }
            Tracer::Bpftrace => {
                let mut cmd = Command::new("bpftrace");
                cmd.args(args).args(["-e", BPFTRACE_PROGRAM]);
                cmd
            }
        };
        let mut pty = None;
        let stdout_file = match (&output, tracer) {
            (_, Tracer::TransitionsTui) => {
                let (master, slave) = open_pty(200, 60)?;
                cmd.stdin(slave.try_clone()?).stdout(slave);
                // Read and discarded as a terminal would show it: a full terminal would stall
                // the view (never the tracing), and the view would then cost less than it does.
                pty = Some(Collector::discarding(File::from(master)));
                None
            }
            // bpftrace's output is small (the attach line, then the map at exit): a pipe.
            (_, Tracer::Bpftrace) => {
                cmd.stdout(Stdio::piped());
                None
            }
            (Output::Null, _) => {
                cmd.stdout(Stdio::null());
                None
            }
            (Output::File(path), _) => {
                let file = File::create(path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                cmd.stdout(file);
                Some(path.clone())
            }
        };
        if pty.is_none() {
            cmd.stdin(Stdio::null());
        }
        let mut child = cmd
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", tracer.name()))?;
        // Its copies of the pty's slave: the reader must see the end when the tracer exits.
        drop(cmd);
        let stdout = child
            .stdout
            .take()
            .map_or_else(Collector::none, Collector::spawn);
        let stderr = child
            .stderr
            .take()
            .map_or_else(Collector::none, Collector::spawn);
        let pid = child.id();
        let mut running = Self {
            tracer,
            child: Some(child),
            stdout_file,
            pty,
            stdout,
            stderr,
            ticks_at_attach: 0,
            scraper: None,
            port: export_port,
        };
        let started = Instant::now();
        loop {
            if running.attached(pid) {
                break;
            }
            if let Some(child) = running.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                running.child = None;
                let stderr = std::mem::replace(&mut running.stderr, Collector::none()).finish();
                bail!(
                    "{} exited ({status}) before attaching: {}",
                    tracer.name(),
                    stderr.trim()
                );
            }
            if started.elapsed() > DEADLINE {
                bail!(
                    "{} did not attach within {} s",
                    tracer.name(),
                    DEADLINE.as_secs()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
        running.ticks_at_attach = cpu_ticks(pid)?;
        Ok(running)
    }

    /// Scrapes `export` every second until it is stopped.
    pub fn scrape_every_second(&mut self) {
        self.scraper = self.port.map(Scraper::start);
    }

    /// The tracer's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The port `export` serves on.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    fn attached(&self, pid: u32) -> bool {
        match self.tracer {
            // Logged once the program is attached (`-v`).
            Tracer::Transitions | Tracer::TransitionsTui | Tracer::Export | Tracer::TraceJson => {
                self.stderr.contains("probe attached")
            }
            Tracer::Bpftrace => self.stdout.contains("attached"),
            // tcpstates says nothing. It attaches its one tracepoint program (a perf event, plus
            // a BPF link where libbpf uses one), then opens its perf buffer (a perf event per
            // CPU): events before the buffer exists would be dropped uncounted, so wait for the
            // buffer, which comes after the attach.
            Tracer::Tcpstates => {
                let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
                perf_events(pid) > cpus
            }
        }
    }

    /// Waits until the tracer has caught up (it used no CPU for a while), stops it with
    /// SIGINT as a user would, and reads its accounting.
    pub fn stop(mut self) -> anyhow::Result<Finished> {
        let Some(child) = self.child.take() else {
            bail!("{} is not running", self.tracer.name());
        };
        let pid = child.id();
        // Scraped until the storm's end; then left to catch up, as the others.
        let scrapes = self.scraper.take().map(Scraper::finish);
        wait_idle(pid);
        let kernel_misses = recursion_misses(pid);
        // Not the rusage maxrss: a child started through vfork (posix_spawn) inherits the
        // parent's high-water mark at exec, so it would report at least xtask's own.
        let peak_rss_kib = status_kib(pid, "VmHWM")?;
        let rss_kib = status_kib(pid, "VmRSS")?;
        // SAFETY: kill(2) of our own child, not yet reaped.
        unsafe { libc::kill(pid as i32, libc::SIGINT) };
        let (status, usage) = reap(pid)?;
        let stdout = std::mem::replace(&mut self.stdout, Collector::none()).finish();
        let stderr = std::mem::replace(&mut self.stderr, Collector::none()).finish();
        if let Some(pty) = self.pty.take() {
            pty.finish();
        }
        let exited_well = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
            || libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGINT;
        if !exited_well {
            bail!(
                "{} failed (wait status {status:#x}): {}",
                self.tracer.name(),
                stderr.trim()
            );
        }
        let seconds = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        let cpu_total = seconds(usage.ru_utime) + seconds(usage.ru_stime);
        let cpu_s = (cpu_total - self.ticks_at_attach as f64 / clock_ticks_per_s()).max(0.0);
        let mut kernel_misses = kernel_misses;
        let nested_caught = match self.tracer {
            Tracer::Transitions | Tracer::TransitionsTui | Tracer::Export | Tracer::TraceJson => {
                nested_caught(&stderr)
            }
            Tracer::Tcpstates | Tracer::Bpftrace => None,
        };
        let (observed, lost) = match self.tracer {
            Tracer::Transitions | Tracer::TransitionsTui | Tracer::Export | Tracer::TraceJson => {
                let summary = tcptrace_summary(&stderr).with_context(|| {
                    format!(
                        "{} printed no `N transitions, M lost` line: {}",
                        self.tracer.name(),
                        stderr.trim()
                    )
                })?;
                kernel_misses = summary.skipped;
                (Some(summary.transitions), Some(summary.ring_full))
            }
            Tracer::Tcpstates => {
                let lines = match &self.stdout_file {
                    Some(path) => Some(count_lines(path)?.saturating_sub(1)), // the header
                    None => None,
                };
                (lines, Some(tcpstates_lost(&stderr)))
            }
            // Counted in a kernel map: nothing to lose.
            Tracer::Bpftrace => (Some(bpftrace_total(&stdout)), None),
        };
        Ok(Finished {
            observed,
            lost,
            kernel_misses,
            nested_caught,
            cpu_s,
            peak_rss_kib,
            rss_kib,
            scrapes,
            stderr,
        })
    }
}

impl Drop for Running {
    /// A tracer left behind by an error is killed, not leaked.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A pseudo-terminal of `cols` x `rows`: its master (read by us) and its slave (the tracer's
/// terminal).
fn open_pty(cols: u16, rows: u16) -> anyhow::Result<(std::os::fd::OwnedFd, std::os::fd::OwnedFd)> {
    use std::os::fd::{FromRawFd, OwnedFd};
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: openpty writes two descriptors into the given ints; the name buffer may be null,
    // the terminal settings too, and the window size is read only.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            &size,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot open a pseudo-terminal");
    }
    // SAFETY: both descriptors were just opened by openpty and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) })
}

/// A memory figure of a process (`VmHWM`, `VmRSS` in /proc/PID/status), KiB.
pub fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// How many perf events a process holds open.
fn perf_events(pid: u32) -> usize {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.filter_map(Result::ok)
        .filter(|fd| {
            fs::read_link(fd.path())
                .is_ok_and(|target| target.as_os_str() == "anon_inode:[perf_event]")
        })
        .count()
}

/// The sum of `recursion_misses` over the BPF programs a process holds (Linux 5.12 and later;
/// 0 before).
fn recursion_misses(pid: u32) -> u64 {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.filter_map(Result::ok)
        .filter(|fd| {
            fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == "anon_inode:bpf-prog")
        })
        .filter_map(|fd| {
            let info =
                fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.file_name().display()))
                    .ok()?;
            info.lines()
                .find_map(|line| line.strip_prefix("recursion_misses:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .sum()
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// utime + stime of a process, in clock ticks (/proc/PID/stat fields 14 and 15).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis,
    // where field 3 (the state) comes first.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    match (field(14), field(15)) {
        (Some(user), Some(sys)) => Ok(user + sys),
        _ => bail!("unexpected /proc/{pid}/stat: {stat}"),
    }
}

/// Waits until the tracer used no CPU for 300 ms (it has read everything the storm made), at
/// most [`DEADLINE`]: a tracer still busy then is stopped anyway and its backlog counts against
/// it.
fn wait_idle(pid: u32) {
    let started = Instant::now();
    let mut last = cpu_ticks(pid).ok();
    let mut quiet = 0;
    while quiet < 3 && started.elapsed() < DEADLINE {
        thread::sleep(Duration::from_millis(100));
        let now = cpu_ticks(pid).ok();
        quiet = if now == last { quiet + 1 } else { 0 };
        last = now;
    }
}

/// Waits for the child to exit and takes its resource usage; kills it past [`DEADLINE`].
fn reap(pid: u32) -> anyhow::Result<(libc::c_int, libc::rusage)> {
    let started = Instant::now();
    let mut killed = false;
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain old data; zeroed is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: wait4 on our own child with valid pointers.
        let rc = unsafe { libc::wait4(pid as i32, &mut status, libc::WNOHANG, &mut usage) };
        if rc == pid as i32 {
            return Ok((status, usage));
        }
        if rc < 0 {
            bail!("wait4({pid}): {}", std::io::Error::last_os_error());
        }
        if started.elapsed() > DEADLINE && !killed {
            eprintln!("xtask: tracer {pid} did not exit on SIGINT; killing it");
            // SAFETY: kill(2) of our own child, not yet reaped.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            killed = true;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn count_lines(path: &Path) -> anyhow::Result<u64> {
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(bytecount(&bytes, b'\n'))
}

fn bytecount(bytes: &[u8], byte: u8) -> u64 {
    bytes.iter().filter(|&&b| b == byte).count() as u64
}

/// tcptrace's last `N transitions, M lost[, R ring buffer full, K skipped by the kernel …]`
/// line: the transitions, the events lost to a full ring buffer, and the runs the kernel skipped
/// that tcptrace could not make up for (its own programs' `recursion_misses` count runs that its
/// nested program recorded instead).
pub fn tcptrace_summary(stderr: &str) -> Option<TcptraceSummary> {
    stderr.lines().rev().find_map(|line| {
        let mut parts = line.split(", ");
        let transitions = parts.next()?.strip_suffix(" transitions")?.parse().ok()?;
        let lost: u64 = parts.next()?.strip_suffix(" lost")?.parse().ok()?;
        let rest: Vec<&str> = parts.collect();
        let count = |suffix: &str| {
            rest.iter()
                .find_map(|part| part.split(" (").next()?.strip_suffix(suffix)?.parse().ok())
        };
        let ring_full = count(" ring buffer full").unwrap_or(lost);
        let skipped = count(" skipped by the kernel").unwrap_or(lost - ring_full);
        Some(TcptraceSummary {
            transitions,
            ring_full,
            skipped,
        })
    })
}

/// The N of tcptrace's `-v` log line `kernel: N transitions recorded by the nested program; …`
/// (tcptrace/src/stream/live.rs): how often the kernel skipped the main program and the nested
/// one recorded the transition instead.
pub fn nested_caught(stderr: &str) -> Option<u64> {
    stderr.lines().rev().find_map(|line| {
        let (head, _) = line.split_once(" transitions recorded by the nested program")?;
        head.rsplit(' ').next()?.parse().ok()
    })
}

/// What tcptrace's summary line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcptraceSummary {
    pub transitions: u64,
    pub ring_full: u64,
    pub skipped: u64,
}

/// libbpf-tools' perf-buffer loss lines: `lost N events on CPU #C`.
fn tcpstates_lost(stderr: &str) -> u64 {
    stderr
        .lines()
        .filter_map(|line| {
            line.strip_prefix("lost ")?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// The sum of bpftrace's map lines `@[OLD, NEW]: COUNT`.
fn bpftrace_total(stdout: &str) -> u64 {
    stdout
        .lines()
        .filter(|line| line.starts_with("@["))
        .filter_map(|line| line.rsplit_once("]: ")?.1.trim().parse::<u64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tcptrace_summaries() {
        let stderr = "[INFO] probe attached\ntcptrace: 3 events lost: the ring buffer was full\n\
                      1200 transitions, 3 lost, 2 invalid records\n";
        let summary = |transitions, ring_full, skipped| {
            Some(TcptraceSummary {
                transitions,
                ring_full,
                skipped,
            })
        };
        assert_eq!(tcptrace_summary(stderr), summary(1200, 3, 0));
        assert_eq!(tcptrace_summary("tcptrace: 3 events lost\n"), None);
        let split = "9 transitions, 5 lost, 1 ring buffer full, 4 skipped by the kernel (x)\n";
        assert_eq!(tcptrace_summary(split), summary(9, 1, 4));
        assert_eq!(
            tcptrace_summary("7 transitions, 0 lost\n"),
            summary(7, 0, 0)
        );
    }

    #[test]
    fn reads_the_nested_programs_count_from_the_verbose_log() {
        let stderr = "[INFO  tcptrace] probe attached\n\
                      [INFO  tcptrace::stream::live] kernel: 74 transitions recorded by the nested \
                      program; 0 ring buffer full, 0 skipped and not recorded\n\
                      320002 transitions, 0 lost\n";
        assert_eq!(nested_caught(stderr), Some(74));
        assert_eq!(nested_caught("320002 transitions, 0 lost\n"), None);
    }

    #[test]
    fn reads_tcpstates_losses() {
        let stderr = "lost 12 events on CPU #0\nlost 3 events on CPU #1\nsomething else\n";
        assert_eq!(tcpstates_lost(stderr), 15);
    }

    #[test]
    fn sums_bpftrace_maps() {
        let stdout = "Attaching 2 probes...\nattached\n\n\n@[7, 10]: 1\n@[2, 1]: 400\n";
        assert_eq!(bpftrace_total(stdout), 401);
    }
}
