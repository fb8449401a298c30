//! The snapshot benchmark: a crowd of 100,000+ TCP sockets in a network namespace of its own,
//! then `tcptrace states`/`sockets` against `ss` and `netstat` side by side, wall time per run,
//! and the start-up census of the tracing commands there, as tcptrace times it. Not a test:
//! numbers to read, with a check that every tool saw the same sockets.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    run::{build, is_root, workspace_root},
    setup::status,
};

struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

struct Crowd(Child);

impl Drop for Crowd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn in_ns(ns: &str, program: &str, args: &[&str]) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", ns, program]).args(args);
    command
}

/// Runs once; the wall time and the number of stdout lines.
fn timed(ns: &str, program: &str, args: &[&str]) -> anyhow::Result<(Duration, usize)> {
    let start = Instant::now();
    let out = in_ns(ns, program, args)
        .stderr(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    let elapsed = start.elapsed();
    if !out.status.success() {
        bail!("{program} {args:?} failed ({})", out.status);
    }
    Ok((
        elapsed,
        out.stdout
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
    ))
}

/// The start-up census of a tracing command in the crowd's namespace (and every other one a
/// process is in), as tcptrace times it itself: its `-v` line ends `in X ms`. Each run loads the
/// probe; only the census is timed.
fn census(ns: &str, tcptrace: &str, runs: usize) -> anyhow::Result<()> {
    let mut times = Vec::with_capacity(runs);
    let mut line = String::new();
    for _ in 0..runs {
        let out = in_ns(ns, tcptrace, &["trace", "--duration", "0.1", "-v"])
            .stdout(Stdio::null())
            .output()
            .context("cannot run tcptrace trace")?;
        if !out.status.success() {
            bail!(
                "tcptrace trace failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let Some(found) = stderr.lines().find(|l| l.contains("start-up census: ")) else {
            bail!("tcptrace trace -v printed no census line: {stderr}");
        };
        let ms: f64 = found
            .rsplit_once(" in ")
            .and_then(|(_, ms)| ms.strip_suffix(" ms"))
            .and_then(|ms| ms.parse().ok())
            .with_context(|| format!("no time in `{found}`"))?;
        times.push(ms);
        line = found.to_owned();
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{:<32} {:>10.1} {:>10.1}",
        "start-up census (trace -v)",
        times[0],
        times[times.len() / 2]
    );
    eprintln!("xtask: {}", line.trim());
    Ok(())
}

pub fn run(pairs: usize, time_wait: usize, runs: usize) -> anyhow::Result<ExitCode> {
    if !is_root() {
        bail!("the benchmark creates a network namespace: run it as root");
    }
    build()?;
    let root = workspace_root();
    status(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "tcptrace-tests",
        "--bin",
        "tcp-crowd",
    ]))?;
    let tcptrace = root.join("target/release/tcptrace");
    let crowd_bin = root.join("target/release/tcp-crowd");

    let ns = Namespace(format!("tcptrace-bench-{}", std::process::id()));
    status(Command::new("ip").args(["netns", "add", &ns.0]))?;
    status(Command::new("ip").args(["-n", &ns.0, "link", "set", "lo", "up"]))?;
    // Room for the TIME_WAIT sockets: a wide ephemeral range and enough timewait buckets.
    status(&mut in_ns(
        &ns.0,
        "sysctl",
        &["-qw", "net.ipv4.ip_local_port_range=1024 65535"],
    ))?;
    status(&mut in_ns(
        &ns.0,
        "sysctl",
        &["-qw", "net.ipv4.tcp_max_tw_buckets=1048576"],
    ))?;

    eprintln!("xtask: making {pairs} established pairs and {time_wait} TIME_WAIT sockets");
    let mut child = in_ns(
        &ns.0,
        crowd_bin.to_str().context("path")?,
        &[&pairs.to_string(), &time_wait.to_string()],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .context("cannot start tcp-crowd")?;
    let stdout = child.stdout.take().context("tcp-crowd stdout")?;
    // Held until the end: dropping it ends the crowd.
    let _crowd = Crowd(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if line.trim() != "ready" {
        bail!("tcp-crowd did not get ready");
    }

    let tcptrace = tcptrace.to_str().context("path")?;
    // `tcptrace sockets` always resolves owners, so it compares with the `-p` variants.
    let cases: [(&str, &str, &[&str]); 10] = [
        ("tcptrace states", tcptrace, &["states"]),
        ("ss -tan", "ss", &["-tan"]),
        ("netstat -tan", "netstat", &["-tan"]),
        ("tcptrace sockets", tcptrace, &["sockets"]),
        ("ss -tanp", "ss", &["-tanp"]),
        ("netstat -tanp", "netstat", &["-tanp"]),
        ("tcptrace sockets -o", tcptrace, &["sockets", "-o"]),
        ("ss -tanpo", "ss", &["-tanpo"]),
        ("netstat -tanpo", "netstat", &["-tanpo"]),
        ("ip netns exec true (overhead)", "true", &[]),
    ];
    let mut listed = Vec::new();
    println!(
        "{:<32} {:>10} {:>10} {:>10}",
        "command", "min ms", "median ms", "lines"
    );
    for (name, program, args) in cases {
        let mut times = Vec::with_capacity(runs);
        let mut lines = 0;
        for _ in 0..runs {
            let (time, n) = timed(&ns.0, program, args)?;
            times.push(time);
            lines = n;
        }
        // Sockets listed: one header line for tcptrace and ss, two for netstat.
        let header = match program {
            "netstat" => 2,
            "true" => lines,
            _ if name == "tcptrace states" => lines,
            _ => 1,
        };
        if lines > header {
            listed.push((name, lines - header));
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "{name:<32} {:>10.1} {:>10.1} {lines:>10}",
            ms(times[0]),
            ms(times[times.len() / 2])
        );
    }
    census(&ns.0, tcptrace, runs)?;
    if listed.windows(2).any(|w| w[0].1 != w[1].1) {
        eprintln!("xtask: the tools listed different numbers of sockets: {listed:?}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
