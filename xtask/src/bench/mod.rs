//! `cargo xtask bench`: a connection storm on loopback, alone and under each tracer, in
//! interleaved rounds; what each tracer costs the storm and itself, and whether it kept up.
//! Also the smoke check CI runs, the memory run, the cost of the request-socket fates' program
//! (`--fates`), the exporter's scrapes (`--scrape`) and memory under namespace churn
//! (`--netns-churn`), and the criterion microbenchmark.

mod churn;
mod fates;
mod micro;
mod report;
mod scrape;
mod snapshot;
mod storm;
mod tracer;

use std::{
    fs,
    net::{Ipv4Addr, TcpListener},
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, bail, ensure};
use clap::Args;

use self::{
    report::{Report, RunResult},
    storm::{StormArgs, StormReport},
    tracer::{Output, Running, Tracer},
};
use crate::{
    run::{self, workspace_root},
    setup::status,
};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Correctness only: a few thousand connections under tcptrace; every transition seen,
    /// nothing lost. Quiet; CI runs it.
    #[arg(long, conflicts_with_all = ["memory", "micro"])]
    pub smoke: bool,
    /// 1,000,000 connections through tcptrace; peak memory.
    #[arg(long, conflicts_with = "micro")]
    pub memory: bool,
    /// Only the criterion microbenchmark of decoding (no root needed).
    #[arg(long)]
    pub micro: bool,
    /// The snapshot benchmark instead: 100,000+ sockets in a namespace of its own, `tcptrace
    /// states`/`sockets` against `ss` and `netstat`.
    #[arg(long, conflicts_with_all = ["smoke", "memory", "micro"])]
    pub snapshot: bool,
    /// Scrape latency of `tcptrace export` with 1 and with 100 network namespaces labelled.
    #[arg(long, conflicts_with_all = ["smoke", "memory", "micro", "snapshot", "fates"])]
    pub scrape: bool,
    /// Memory of `tcptrace export` under a churn of 10,000 short-lived network namespaces,
    /// scraped every second.
    #[arg(long, conflicts_with_all = ["smoke", "memory", "micro", "snapshot", "fates", "scrape"])]
    pub netns_churn: bool,
    /// The cost of the program on `skb:kfree_skb` (request-socket fates by listener): the storm
    /// and a SYN flood, alone and under `tcptrace transitions`, with the kernel timing the
    /// program (`kernel.bpf_stats_enabled=1` for the run).
    #[arg(long, conflicts_with_all = ["smoke", "memory", "micro", "snapshot"])]
    pub fates: bool,
    /// With --fates: SYNs of the SYN flood.
    #[arg(long, default_value_t = 200_000, requires = "fates", value_parser = clap::value_parser!(u64).range(1..=4_000_000_000))]
    pub syns: u64,
    /// With --snapshot: established connections (two sockets each).
    #[arg(long, default_value_t = 9_000, requires = "snapshot")]
    pub pairs: usize,
    /// With --snapshot: TIME_WAIT sockets.
    #[arg(long, default_value_t = 100_000, requires = "snapshot")]
    pub time_wait: usize,
    /// With --snapshot: runs of each command.
    #[arg(long, default_value_t = 5, requires = "snapshot", value_parser = clap::value_parser!(u64).range(1..100))]
    pub runs: u64,
    /// Rounds of the interleaved runs (medians are reported).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Connections per storm: ~8 s each here, long enough that the VM's noise (±10% between
    /// 2-second storms) averages out.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(4..=10_000_000))]
    pub connections: u64,
    /// Client threads of the storm (and as many server threads).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub threads: u32,
    /// Connections per second; as fast as possible when absent.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|rate| rate.is_finite() && *rate > 0.0)
        .ok_or_else(|| format!("`{text}` is not a positive number of connections per second"))
}

/// Connections of the smoke check: enough for every close mode many times over, quick.
const SMOKE_CONNECTIONS: u64 = 4_000;

/// Connections of the memory run.
const MEMORY_CONNECTIONS: u64 = 1_000_000;

pub fn output_dir() -> PathBuf {
    workspace_root().join("target/bench")
}

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    if args.micro {
        for result in micro::run()? {
            println!(
                "{}: {:.1} million events/s on one core",
                result.benchmark,
                result.events_per_s / 1e6
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !run::is_root() {
        bail!(
            "cargo xtask bench needs root: it loads BPF programs and reads other processes' \
             accounting (run it as root; `--micro` alone needs no root)"
        );
    }
    build()?;
    let dir = output_dir();
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if args.snapshot {
        return snapshot::run(args.pairs, args.time_wait, args.runs as usize);
    }
    if args.scrape {
        scrape::run()?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.netns_churn {
        churn::run()?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.fates {
        fates::run(args)?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.smoke {
        smoke(&dir)?;
    } else if args.memory {
        memory(args)?;
    } else {
        full(args)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Release builds of tcptrace and of the storm.
pub fn build() -> anyhow::Result<()> {
    status(Command::new("cargo").current_dir(workspace_root()).args([
        "build",
        "--quiet",
        "--release",
        "--package",
        "tcptrace",
        "--package",
        "tcptrace-tests",
        "--bins",
    ]))
}

/// The tracers this machine can run, saying why the others are left out.
fn available_tracers() -> Vec<Tracer> {
    Tracer::ALL
        .into_iter()
        .filter(|tracer| match tracer.available() {
            Ok(()) => true,
            Err(why) => {
                eprintln!("xtask: {}: skipped: {why}", tracer.name());
                false
            }
        })
        .collect()
}

/// One storm, under `tracer` when given.
fn run_once(
    tracer: Option<Tracer>,
    tracer_args: &[String],
    output: Output,
    storm: &StormArgs,
) -> anyhow::Result<(StormReport, Option<tracer::Finished>)> {
    let mut running = tracer
        .map(|tracer| Running::start(tracer, tracer_args, output))
        .transpose()?;
    if let Some(running) = running.as_mut() {
        running.scrape_every_second();
    }
    let report = storm::run(storm)?;
    let finished = running.map(Running::stop).transpose()?;
    Ok((report, finished))
}

fn full(args: &BenchArgs) -> anyhow::Result<()> {
    let tracers = available_tracers();
    let storm = StormArgs {
        connections: args.connections,
        threads: args.threads as usize,
        rate: args.rate,
        port: 0,
    };
    let tcpstates_out = scratch_file("tcpstates.out");
    let mut runs = Vec::new();
    for round in 1..=args.rounds {
        for tracer in std::iter::once(None).chain(tracers.iter().copied().map(Some)) {
            let output = match tracer {
                // tcpstates prints no count of its own: its lines are counted afterwards.
                Some(Tracer::Tcpstates) => Output::File(tcpstates_out.clone()),
                _ => Output::Null,
            };
            // One tracer misbehaving (e.g. not exiting on SIGINT under load) costs its run,
            // not the whole benchmark.
            let (report, finished) = match run_once(tracer, &[], output, &storm) {
                Ok(done) => done,
                Err(err) if tracer.is_some() => {
                    eprintln!(
                        "xtask: round {round}, {}: {err:#}; this run is left out",
                        label(tracer)
                    );
                    continue;
                }
                Err(err) => return Err(err),
            };
            if !report.complete() {
                bail!("round {round}, {}: {}", label(tracer), report.shortfall());
            }
            eprintln!(
                "xtask: round {round}/{}: {:<34} {:>9.0} conn/s",
                args.rounds,
                label(tracer),
                report.conn_per_s
            );
            if let Some(scrapes) = finished.as_ref().and_then(|f| f.scrapes) {
                eprintln!(
                    "xtask: round {round}: {} scrapes, {} failed, the slowest {:.1} ms",
                    scrapes.ok, scrapes.failed, scrapes.slowest_ms
                );
                if scrapes.failed > 0 {
                    bail!("round {round}, {}: a scrape failed", label(tracer));
                }
            }
            runs.push(RunResult::new(round, tracer, report, finished));
        }
    }
    let _ = fs::remove_file(&tcpstates_out);
    let micro = match micro::run() {
        Ok(micro) => Some(micro),
        Err(err) => {
            eprintln!("xtask: the microbenchmark failed: {err:#}");
            None
        }
    };
    let report = Report::new(args, &storm, runs, micro);
    let table = report.markdown();
    println!("{table}");
    let json_path = output_dir().join("bench.json");
    fs::write(&json_path, report.json()?)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    let md_path = output_dir().join("bench.md");
    fs::write(&md_path, &table).with_context(|| format!("cannot write {}", md_path.display()))?;
    eprintln!(
        "xtask: wrote {} and {}",
        md_path.display(),
        json_path.display()
    );
    Ok(())
}

fn label(tracer: Option<Tracer>) -> &'static str {
    tracer.map_or("storm alone", Tracer::name)
}

/// A scratch file for a tracer's output: on tmpfs when there is one, so that writing it costs
/// about what writing to /dev/null does, not a disk's time.
fn scratch_file(name: &str) -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm.join(format!("tcptrace-bench-{}-{name}", std::process::id()))
    } else {
        output_dir().join(name)
    }
}

/// A free port on loopback for the storm's listener, chosen before the storm so a tracer can
/// be told to filter on it.
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("cannot bind a loopback port for the storm")?;
    Ok(listener.local_addr()?.port())
}

/// What the smoke check's `trace --json` run counted, for one summary line per kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmokeCounts {
    /// Transitions of the storm's connections in the output.
    pub seen: u64,
    /// Transitions the storm made.
    pub expected: u64,
    /// Of those, the two of each socket last seen in FIN_WAIT1, which the kernel ran no BPF
    /// program for (see [`Seen`]): `seen + unmade == expected`.
    pub unmade: u64,
    /// Lost to the ring buffer or skipped by the kernel and not recorded.
    pub lost: u64,
    /// Transitions recorded by tcptrace's nested program (the kernel skipped the main one).
    pub nested: u64,
}

/// The correctness check: under tcptrace, every transition of every storm connection is seen
/// and nothing is lost. Its scratch files go to `dir`.
pub fn smoke(dir: &Path) -> anyhow::Result<SmokeCounts> {
    // `trace --json`, unfiltered in the kernel: count the lines of the storm's connections,
    // both sides (the client's remote port or the server's local port is the listener's).
    let port = free_port()?;
    let storm = StormArgs {
        connections: SMOKE_CONNECTIONS,
        threads: 4,
        rate: None,
        port,
    };
    let out = dir.join("smoke-trace.jsonl");
    let (report, finished) = run_once(
        Some(Tracer::TraceJson),
        &[],
        Output::File(out.clone()),
        &storm,
    )?;
    let finished = finished.context("the tracer's result is missing")?;
    ensure!(report.complete(), "smoke: {}", report.shortfall());
    let seen = seen_in_trace(&out, port)?;
    check(
        "tcptrace trace --json",
        &report,
        &finished,
        &seen,
        report.expected_transitions,
    )
    .with_context(|| format!("output kept in {}", out.display()))?;
    let _ = fs::remove_file(&out);
    let counts = SmokeCounts {
        seen: seen.transitions,
        expected: report.expected_transitions,
        unmade: 2 * seen.stuck_in_fin_wait1,
        lost: finished.lost.unwrap_or(0) + finished.kernel_misses,
        nested: finished.nested_caught.unwrap_or(0),
    };

    // `transitions`, filtered in the kernel to the listener's port: the server side only.
    let (mut passed, mut skipped) = (1, 0);
    match Tracer::Transitions.available() {
        Err(why) => {
            eprintln!("smoke: tcptrace transitions: skipped: {why}");
            skipped += 1;
        }
        Ok(()) => {
            let port = free_port()?;
            let storm = StormArgs { port, ..storm };
            let out = dir.join("smoke-transitions.jsonl");
            let (report, finished) = run_once(
                Some(Tracer::Transitions),
                &["--lport".to_owned(), port.to_string(), "--json".to_owned()],
                Output::File(out.clone()),
                &storm,
            )?;
            let finished = finished.context("the tracer's result is missing")?;
            ensure!(report.complete(), "smoke: {}", report.shortfall());
            let seen = seen_in_transitions(&out)?;
            ensure!(
                Some(seen.transitions) == finished.observed,
                "smoke: transitions' rows add up to {}, its summary says {:?}",
                seen.transitions,
                finished.observed
            );
            check(
                "tcptrace transitions (server side)",
                &report,
                &finished,
                &seen,
                report.expected_server_transitions,
            )
            .with_context(|| format!("output kept in {}", out.display()))?;
            let _ = fs::remove_file(&out);
            passed += 1;
        }
    }
    // A failed check has returned its error above: what is left passed or was skipped.
    println!("smoke: {passed} passed, 0 failed, {skipped} skipped");
    Ok(counts)
}

/// Every expected transition seen, exactly; none lost to a full ring buffer, none skipped by
/// the kernel without tcptrace recording it anyway. The only shortfall allowed is the two
/// transitions of each socket last seen in FIN_WAIT1, which the kernel ran no BPF program for
/// (see [`Seen`]), and it is shown.
fn check(
    what: &str,
    report: &StormReport,
    finished: &tracer::Finished,
    seen: &Seen,
    expected: u64,
) -> anyhow::Result<()> {
    let lost = finished.lost.unwrap_or(0);
    let unmade = 2 * seen.stuck_in_fin_wait1;
    ensure!(
        lost == 0 && finished.kernel_misses == 0 && seen.transitions + unmade == expected,
        "smoke: {what} saw {} of the storm's {expected} transitions ({} sockets left in \
         FIN_WAIT1), {lost} lost to the ring buffer, {} skipped by the kernel",
        seen.transitions,
        seen.stuck_in_fin_wait1,
        finished.kernel_misses
    );
    eprintln!(
        "smoke: {what}: {} connections, {} of {expected} transitions seen, 0 lost{}: ok",
        report.connections,
        seen.transitions,
        if unmade > 0 {
            format!(
                " ({} sockets last seen in FIN_WAIT1: {unmade} transitions the kernel ran no \
                 BPF program for)",
                seen.stuck_in_fin_wait1
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

/// What a tracer saw of the storm's connections.
#[derive(Default)]
struct Seen {
    transitions: u64,
    /// Sockets seen entering FIN_WAIT1 and never leaving it. Rarely (a few in a million
    /// connections here), the kernel fires the tracepoint for a socket's →FIN_WAIT2 and →CLOSE
    /// in a softirq but runs no BPF program for them and counts no miss: ftrace's own event
    /// records them, every BPF tracer misses them (bpftrace too), and nothing can count them.
    stuck_in_fin_wait1: u64,
}

impl Seen {
    fn add(&mut self, from: &str, to: &str, count: u64) {
        self.transitions += count;
        if to == "FIN_WAIT1" {
            self.stuck_in_fin_wait1 += count;
        }
        if from == "FIN_WAIT1" {
            self.stuck_in_fin_wait1 = self.stuck_in_fin_wait1.saturating_sub(count);
        }
    }
}

fn json_lines(path: &PathBuf) -> anyhow::Result<Vec<serde_json::Value>> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(number, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not JSON", path.display(), number + 1))
        })
        .collect()
}

fn text<'a>(value: &'a serde_json::Value, key: &str) -> &'a str {
    value.get(key).and_then(|v| v.as_str()).unwrap_or("")
}

/// The inode of this process's network namespace, where the storm runs.
fn own_netns() -> anyhow::Result<u64> {
    let link = fs::read_link("/proc/self/ns/net").context("cannot read /proc/self/ns/net")?;
    let link = link.to_string_lossy();
    link.strip_prefix("net:[")
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inode| inode.parse().ok())
        .with_context(|| format!("/proc/self/ns/net is {link}"))
}

/// Transitions in a `trace --json` output that belong to connections with the listener's port,
/// in the storm's network namespace: another namespace's sockets may use the same port number
/// (those of earlier tests, closing in their own time).
fn seen_in_trace(path: &PathBuf, port: u16) -> anyhow::Result<Seen> {
    let netns = own_netns()?;
    let mut seen = Seen::default();
    for value in json_lines(path)? {
        let is_port = |key: &str| value.get(key).and_then(|p| p.as_u64()) == Some(port.into());
        let in_netns = value.get("netns").and_then(|n| n.as_u64()) == Some(netns);
        if text(&value, "type") == "transition"
            && in_netns
            && (is_port("lport") || is_port("rport"))
        {
            seen.add(text(&value, "from"), text(&value, "to"), 1);
        }
    }
    Ok(seen)
}

/// Transitions in the final object of a `transitions --json` output.
fn seen_in_transitions(path: &PathBuf) -> anyhow::Result<Seen> {
    let values = json_lines(path)?;
    let last = values
        .iter()
        .rev()
        .find(|v| v.get("final").and_then(|f| f.as_bool()) == Some(true))
        .with_context(|| format!("{}: no final object", path.display()))?;
    let mut seen = Seen::default();
    for row in last
        .get("transitions")
        .and_then(|t| t.as_array())
        .into_iter()
        .flatten()
    {
        // A FIN_WAIT2→CLOSE into TIME_WAIT shows as its inferred FIN_WAIT2→TIME_WAIT row.
        let count = row.get("count").and_then(|c| c.as_u64()).unwrap_or(0);
        seen.add(text(row, "from"), text(row, "to"), count);
    }
    Ok(seen)
}

/// 1,000,000 connections through each tcptrace command; peak memory.
fn memory(args: &BenchArgs) -> anyhow::Result<()> {
    let storm = StormArgs {
        connections: MEMORY_CONNECTIONS,
        threads: args.threads as usize,
        rate: args.rate,
        port: 0,
    };
    let mut rows = Vec::new();
    for tracer in [Tracer::Transitions, Tracer::TraceJson] {
        if let Err(why) = tracer.available() {
            eprintln!("xtask: {}: skipped: {why}", tracer.name());
            continue;
        }
        eprintln!(
            "xtask: {} connections under {}…",
            MEMORY_CONNECTIONS,
            tracer.name()
        );
        let (report, finished) = run_once(Some(tracer), &[], Output::Null, &storm)?;
        let finished = finished.context("the tracer's result is missing")?;
        if !report.complete() {
            bail!("{}: {}", tracer.name(), report.shortfall());
        }
        rows.push(RunResult::new(1, Some(tracer), report, Some(finished)));
    }
    let table = report::memory_markdown(&rows);
    println!("{table}");
    let json_path = output_dir().join("memory.json");
    fs::write(&json_path, serde_json::to_string_pretty(&rows)?)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    eprintln!("xtask: wrote {}", json_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_left_in_fin_wait1_are_those_that_entered_and_never_left() {
        let mut seen = Seen::default();
        seen.add("ESTABLISHED", "FIN_WAIT1", 3);
        seen.add("SYN_RECV", "FIN_WAIT1", 1);
        seen.add("FIN_WAIT1", "FIN_WAIT2", 2);
        seen.add("FIN_WAIT1", "CLOSING", 1);
        seen.add("FIN_WAIT2", "CLOSE", 2);
        assert_eq!((seen.transitions, seen.stuck_in_fin_wait1), (9, 1));
    }
}
