//! `cargo xtask fuzz`: runs the fuzz targets of the parsers of kernel data (`tcptrace/fuzz`),
//! each for a bounded time on a working copy of its committed seeds, and fails on anything
//! libFuzzer finds: a crash (panic, overflow, bad memory access), a hang or an allocation past
//! the limit.

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Args;

use crate::{
    run::workspace_root,
    setup::{output, status},
};

/// The cargo-fuzz that builds and runs on this toolchain (0.13.2 builds on Rust 1.95).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// An input that takes longer than this is a hang: parsing a few KB takes microseconds, even
/// instrumented and on a loaded machine.
const TIMEOUT_SECONDS: u32 = 5;
/// The largest single allocation allowed: far above what a parser needs for an input of a few
/// KB, so an allocation sized from a length field of the input fails the run.
const MALLOC_LIMIT_MB: u32 = 256;
/// The resident set allowed: a parser that keeps allocating fails the run.
const RSS_LIMIT_MB: u32 = 1024;
/// The shortest run worth starting: libFuzzer spends the first second loading the corpus.
const MIN_SECONDS: u64 = 5;

#[derive(Debug, Args)]
pub struct FuzzArgs {
    /// Seconds to run each target.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Targets to run (default: every target listed in tcptrace/fuzz/Cargo.toml).
    pub targets: Vec<String>,
}

fn fuzz_dir() -> PathBuf {
    workspace_root().join("tcptrace/fuzz")
}

/// `cargo fuzz` in the fuzz crate. libFuzzer's instrumentation and the sanitizer take `-Z`
/// flags, which RUSTC_BOOTSTRAP allows on a stable toolchain.
fn cargo_fuzz(args: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(fuzz_dir())
        .arg("fuzz")
        .args(args)
        .env("RUSTC_BOOTSTRAP", "1");
    cmd
}

/// Installs cargo-fuzz when it is missing or of another version.
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let wanted = format!("cargo-fuzz {CARGO_FUZZ_VERSION}");
    let installed = output(Command::new("cargo").args(["fuzz", "--version"]));
    if installed.is_ok_and(|version| version.trim() == wanted) {
        return Ok(());
    }
    eprintln!(
        "xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION} (builds and runs the fuzz targets)"
    );
    status(Command::new("cargo").args([
        "install",
        "--locked",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
    ]))
}

/// The fuzz crate's targets, as listed in its manifest.
fn targets() -> anyhow::Result<Vec<String>> {
    let list = output(&mut cargo_fuzz(&["list"]))?;
    let targets: Vec<String> = list
        .lines()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    if targets.is_empty() {
        bail!(
            "`cargo fuzz list` names no target in {}",
            fuzz_dir().display()
        );
    }
    Ok(targets)
}

/// The files of a directory (none when it does not exist).
fn files(dir: &Path) -> BTreeSet<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.is_file())
                .collect()
        })
        .unwrap_or_default()
}

fn shown(path: &Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// What one run of a target did.
struct Outcome {
    target: String,
    executions: Option<u64>,
    seconds: u64,
    corpus: usize,
    new: usize,
    /// The inputs libFuzzer wrote for what it found.
    artifacts: Vec<PathBuf>,
    failed: bool,
    log: PathBuf,
}

impl Outcome {
    fn found(&self) -> bool {
        self.failed || !self.artifacts.is_empty()
    }

    fn summary(&self) -> String {
        let executions = self
            .executions
            .map_or_else(|| "? executions".to_owned(), |n| format!("{n} executions"));
        let found = if self.artifacts.is_empty() && !self.failed {
            "nothing found".to_owned()
        } else if self.artifacts.is_empty() {
            format!("FAILED without an artifact, see {}", shown(&self.log))
        } else {
            let artifacts: Vec<String> = self.artifacts.iter().map(|a| shown(a)).collect();
            format!("FOUND {}", artifacts.join(", "))
        };
        format!(
            "fuzz {}: {executions} in {} s, corpus {} inputs ({} new), {found}",
            self.target, self.seconds, self.corpus, self.new
        )
    }
}

/// libFuzzer's count of executions: its final statistics, else its last status line
/// (`#123456 pulse ...`).
fn executions(log: &str) -> Option<u64> {
    let stat = log.lines().find_map(|line| {
        line.strip_prefix("stat::number_of_executed_units:")
            .and_then(|n| n.trim().parse().ok())
    });
    stat.or_else(|| {
        log.lines().rev().find_map(|line| {
            line.strip_prefix('#')
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
    })
}

/// How long libFuzzer ran (`Done 812345 runs in 15 second(s)`), when it got to its end.
fn seconds_run(log: &str) -> Option<u64> {
    log.lines().find_map(|line| {
        line.strip_prefix("Done ")?
            .split_once(" runs in ")?
            .1
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// Runs one target for `seconds` on its working corpus, `corpus/<target>`: the committed seeds
/// are copied into it, and what libFuzzer adds stays there, out of git, so that seeds change
/// only by a deliberate commit.
fn run_target(target: &str, seconds: u64) -> anyhow::Result<Outcome> {
    let dir = fuzz_dir();
    let seeds = dir.join("seeds").join(target);
    let corpus = dir.join("corpus").join(target);
    let artifacts = dir.join("artifacts").join(target);
    let logs = dir.join("target/fuzz-logs");
    for dir in [&corpus, &artifacts, &logs] {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    for seed in files(&seeds) {
        let name = seed.file_name().context("a seed without a name")?;
        fs::copy(&seed, corpus.join(name))
            .with_context(|| format!("cannot copy {} into {}", seed.display(), corpus.display()))?;
    }
    let before = files(&corpus).len();
    let old_artifacts = files(&artifacts);
    let log = logs.join(format!("{target}.log"));
    let log_file =
        fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let corpus_arg = corpus.to_string_lossy().into_owned();
    let flags = [
        format!("-max_total_time={seconds}"),
        format!("-timeout={TIMEOUT_SECONDS}"),
        format!("-rss_limit_mb={RSS_LIMIT_MB}"),
        format!("-malloc_limit_mb={MALLOC_LIMIT_MB}"),
        "-print_final_stats=1".to_owned(),
    ];
    let mut args = vec!["run", target, corpus_arg.as_str(), "--"];
    args.extend(flags.iter().map(String::as_str));
    let started = Instant::now();
    let run = cargo_fuzz(&args)
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .stdin(Stdio::null())
        .status()
        .context("cannot start cargo fuzz")?;
    let text = fs::read_to_string(&log).unwrap_or_default();
    let after = files(&corpus).len();
    Ok(Outcome {
        target: target.to_owned(),
        executions: executions(&text),
        seconds: seconds_run(&text).unwrap_or_else(|| started.elapsed().as_secs()),
        corpus: after,
        new: after.saturating_sub(before),
        artifacts: files(&artifacts)
            .difference(&old_artifacts)
            .cloned()
            .collect(),
        failed: !run.success(),
        log,
    })
}

/// The lines of a libFuzzer log that say what it found: the panic and its message, the
/// sanitizer's or libFuzzer's report, the input's path.
fn finding(log: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut after_panic = false;
    for line in log.lines() {
        if after_panic || line.contains("panicked at") {
            lines.push(line);
            after_panic = !after_panic;
        } else if ["ERROR: ", "SUMMARY: ", "Test unit written to"]
            .iter()
            .any(|mark| line.contains(mark))
        {
            lines.push(line);
        }
    }
    lines
}

/// Builds every target, then runs each for `seconds`; one summary line per target at the end.
fn run_targets(targets: &[String], seconds: u64) -> anyhow::Result<()> {
    eprintln!("xtask: building the fuzz targets (instrumented, address sanitizer)");
    status(&mut cargo_fuzz(&["build"]))?;
    let mut outcomes = Vec::new();
    for target in targets {
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        let outcome = run_target(target, seconds)?;
        if outcome.found() {
            let log = fs::read_to_string(&outcome.log).unwrap_or_default();
            for line in finding(&log) {
                eprintln!("  {line}");
            }
            eprintln!("  full log: {}", shown(&outcome.log));
            for artifact in &outcome.artifacts {
                eprintln!(
                    "  reproduce: (cd tcptrace/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run {target} {})",
                    artifact
                        .strip_prefix(fuzz_dir())
                        .unwrap_or(artifact)
                        .display()
                );
            }
        }
        outcomes.push(outcome);
    }
    for outcome in &outcomes {
        println!("{}", outcome.summary());
    }
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|outcome| outcome.found())
        .map(|outcome| outcome.target.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("fuzzing found failures in {}", failed.join(", "));
    }
    Ok(())
}

/// `cargo xtask fuzz`.
pub fn run(args: &FuzzArgs) -> anyhow::Result<ExitCode> {
    ensure_cargo_fuzz()?;
    let known = targets()?;
    if let Some(unknown) = args.targets.iter().find(|t| !known.contains(t)) {
        bail!(
            "no fuzz target {unknown}: the targets are {}",
            known.join(", ")
        );
    }
    let targets = if args.targets.is_empty() {
        known
    } else {
        args.targets.clone()
    };
    run_targets(&targets, args.seconds.max(MIN_SECONDS))?;
    Ok(ExitCode::SUCCESS)
}

/// Every target within `budget` in all, split evenly: a new target shortens the others' runs
/// instead of lengthening the test command.
pub fn run_within(budget: Duration) -> anyhow::Result<()> {
    ensure_cargo_fuzz()?;
    let targets = targets()?;
    let seconds = (budget.as_secs() / targets.len() as u64).max(MIN_SECONDS);
    run_targets(&targets, seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executions_come_from_the_final_stats_or_the_last_status_line() {
        let done = "#2\tINITED cov: 10 ft: 10 corp: 3/120b\n#5000\tpulse  cov: 12\nDone 812345 runs in 15 second(s)\nstat::number_of_executed_units: 812345\nstat::average_exec_per_sec:     54156\n";
        assert_eq!(executions(done), Some(812_345));
        let crashed = "#2\tINITED cov: 10\n#4096\tpulse  cov: 12\n#6001\tNEW    cov: 13\n==12==ERROR: libFuzzer: deadly signal\n";
        assert_eq!(executions(crashed), Some(6001));
        assert_eq!(executions("error: could not compile"), None);
        assert_eq!(seconds_run(done), Some(15));
        assert_eq!(seconds_run(crashed), None);
    }

    #[test]
    fn a_finding_is_shown_by_its_panic_report_and_input() {
        let log = "#1\tINITED\nthread '<unnamed>' (1) panicked at src/btf.rs:182:13:\nattempt to add with overflow\nstack backtrace:\n   0: rust_begin_unwind\n==1== ERROR: libFuzzer: deadly signal\nSUMMARY: libFuzzer: deadly signal\nartifact_prefix='a/'; Test unit written to a/crash-1\n";
        assert_eq!(
            finding(log),
            [
                "thread '<unnamed>' (1) panicked at src/btf.rs:182:13:",
                "attempt to add with overflow",
                "==1== ERROR: libFuzzer: deadly signal",
                "SUMMARY: libFuzzer: deadly signal",
                "artifact_prefix='a/'; Test unit written to a/crash-1",
            ]
        );
    }
}
