//! `cargo xtask bench --fates`: what the program on `skb:kfree_skb` (the request-socket fates
//! by listener) costs. It runs for every packet the machine drops, not for every transition,
//! so it is measured where drops abound: the storm (whose closes free queued segments) and a
//! SYN flood from a raw socket (each SYN's SYN-ACK is refused with a reset, which kills the
//! request socket: two drops per SYN, one of them recorded). Each round runs each workload
//! alone, then under `tcptrace transitions`, with the kernel's BPF statistics on
//! (`kernel.bpf_stats_enabled`), which time every run of the program.

use std::{
    fs,
    net::{Ipv4Addr, TcpListener},
    process::Command,
};

use anyhow::{Context as _, bail};

use super::{
    BenchArgs, output_dir,
    report::median,
    scratch_file,
    storm::{self, StormArgs},
    tracer::{Finished, Output, Running, Tracer},
};
use crate::run::workspace_root;

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Turns the kernel's BPF run-time statistics on for its life, then back as they were.
struct BpfStats {
    before: String,
}

impl BpfStats {
    fn enable() -> anyhow::Result<Self> {
        let before = fs::read_to_string(BPF_STATS)
            .with_context(|| format!("cannot read {BPF_STATS}"))?
            .trim()
            .to_owned();
        fs::write(BPF_STATS, "1").with_context(|| format!("cannot write {BPF_STATS}"))?;
        Ok(Self { before })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = fs::write(BPF_STATS, &self.before);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Workload {
    Storm,
    SynFlood,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Self::Storm => "storm (connections)",
            Self::SynFlood => "SYN flood (SYNs)",
        }
    }
}

/// One run of a workload: how many units (connections, SYNs) at what rate.
struct Done {
    units: u64,
    per_s: f64,
}

/// The SYN flood: `syns` bare SYNs from a raw socket to a listener on loopback that never
/// accepts (the handshakes never complete: each request socket dies of the kernel's reset).
fn syn_flood(syns: u64) -> anyhow::Result<Done> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("cannot bind a loopback port for the SYN flood")?;
    let port = listener.local_addr()?.port();
    let binary = workspace_root().join("target/release/raw-syn");
    let out = Command::new(&binary)
        .args(["127.0.0.1", &port.to_string(), &syns.to_string(), "--quiet"])
        .output()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "raw-syn ({}) gave no report: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    drop(listener);
    Ok(Done {
        units: report["sent"].as_u64().unwrap_or(0),
        per_s: report["syn_per_s"].as_f64().unwrap_or(0.0),
    })
}

fn run_workload(workload: Workload, args: &BenchArgs) -> anyhow::Result<Done> {
    match workload {
        Workload::Storm => {
            let report = storm::run(&StormArgs {
                connections: args.connections,
                threads: args.threads as usize,
                rate: args.rate,
                port: 0,
            })?;
            if !report.complete() {
                bail!("{}", report.shortfall());
            }
            Ok(Done {
                units: report.connections,
                per_s: report.conn_per_s,
            })
        }
        Workload::SynFlood => syn_flood(args.syns),
    }
}

/// The drop program's statistics from tcptrace's `-v` log: (runs, ns in all).
fn drop_program_stats(stderr: &str) -> Option<(u64, u64)> {
    let line = stderr
        .lines()
        .find(|l| l.contains("skb:kfree_skb program:"))?;
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    // "N runs, X ns per run on average, T ns in all"
    match numbers[..] {
        [runs, _, total] => Some((runs, total)),
        _ => None,
    }
}

/// The fates recorded, from the final JSON object.
fn records(path: &std::path::Path) -> anyhow::Result<u64> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap_or("{}"))?;
    let total = &last["request_socket_fates"]["total"];
    if !total.is_object() {
        bail!(
            "tcptrace transitions traced no request-socket fates (skb:kfree_skb did not attach?)"
        );
    }
    Ok(["embryonic_reset", "listen_overflow", "closed_port"]
        .iter()
        .filter_map(|fate| total[fate].as_u64())
        .sum())
}

struct Round {
    alone: f64,
    traced: f64,
    runs_per_unit: f64,
    ns_per_run: f64,
    records_per_unit: f64,
    /// The program's run time over the workload's elapsed time: the share of one CPU.
    cpu_share: f64,
}

fn traced_run(workload: Workload, args: &BenchArgs) -> anyhow::Result<(Done, Finished, u64)> {
    let out = scratch_file("fates.jsonl");
    let running = Running::start(
        Tracer::Transitions,
        &["--json".to_owned()],
        Output::File(out.clone()),
    )?;
    let done = run_workload(workload, args)?;
    let finished = running.stop()?;
    let records = records(&out);
    let _ = fs::remove_file(&out);
    Ok((done, finished, records?))
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let _stats = BpfStats::enable()?;
    let mut rows = Vec::new();
    for workload in [Workload::Storm, Workload::SynFlood] {
        let mut rounds = Vec::new();
        for round in 1..=args.rounds {
            let alone = run_workload(workload, args)?;
            let (traced, finished, records) = traced_run(workload, args)?;
            let (runs, ns) = drop_program_stats(&finished.stderr).with_context(|| {
                format!(
                    "tcptrace logged no statistics of its skb:kfree_skb program: {}",
                    finished.stderr.trim()
                )
            })?;
            let elapsed_s = traced.units as f64 / traced.per_s.max(1e-9);
            let units = traced.units.max(1) as f64;
            let r = Round {
                alone: alone.per_s,
                traced: traced.per_s,
                runs_per_unit: runs as f64 / units,
                ns_per_run: ns as f64 / runs.max(1) as f64,
                records_per_unit: records as f64 / units,
                cpu_share: ns as f64 / 1e9 / elapsed_s.max(1e-9),
            };
            eprintln!(
                "xtask: round {round}/{}: {}: {:.0}/s alone, {:.0}/s traced; kfree_skb program \
                 {:.2} runs and {:.2} records per unit, {:.0} ns per run",
                args.rounds,
                workload.name(),
                r.alone,
                r.traced,
                r.runs_per_unit,
                r.records_per_unit,
                r.ns_per_run
            );
            rounds.push(r);
        }
        rows.push((workload, rounds));
    }
    let table = markdown(args, &rows);
    println!("{table}");
    let path = output_dir().join("fates.md");
    fs::write(&path, &table).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("xtask: wrote {}", path.display());
    Ok(())
}

fn markdown(args: &BenchArgs, rows: &[(Workload, Vec<Round>)]) -> String {
    let m = |rounds: &[Round], f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let mut out = format!(
        "Storm: {} connections, {} client threads; SYN flood: {} SYNs from a raw socket; median of \
         {} rounds, kernel.bpf_stats_enabled=1.\n\n\
         | workload | alone /s | under `transitions` /s | vs. alone | kfree_skb runs per unit | \
         ns per run | records per unit | program's share of one CPU |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        args.connections, args.threads, args.syns, args.rounds
    );
    for (workload, rounds) in rows {
        let ratio = m(rounds, |r| r.traced / r.alone.max(1e-9)).unwrap_or(0.0);
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {ratio:.2} | {:.2} | {:.0} | {:.2} | {:.2}% |\n",
            workload.name(),
            m(rounds, |r| r.alone).unwrap_or(0.0),
            m(rounds, |r| r.traced).unwrap_or(0.0),
            m(rounds, |r| r.runs_per_unit).unwrap_or(0.0),
            m(rounds, |r| r.ns_per_run).unwrap_or(0.0),
            m(rounds, |r| r.records_per_unit).unwrap_or(0.0),
            100.0 * m(rounds, |r| r.cpu_share).unwrap_or(0.0),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drop_programs_line_is_read() {
        let stderr = "tcptrace: info: kernel probe: 10 runs, 300 ns per run on average\n\
                      tcptrace: info: skb:kfree_skb program: 4000 runs, 95 ns per run on average, \
                      380000 ns in all\n";
        assert_eq!(drop_program_stats(stderr), Some((4000, 380000)));
        assert_eq!(drop_program_stats("nothing"), None);
    }
}
