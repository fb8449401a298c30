//! The project's test command: formatting, module layout, lints, unit tests, bounded fuzzing,
//! end-to-end tests, the smoke check, then the same two inside each kernel of the matrix.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    bench, fuzz, layout,
    matrix::{self, MatrixArgs, TestCounts},
    run::{self, workspace_root},
    setup::{self, status},
};

/// The fuzz targets' time in the test command, split over them.
const FUZZ_BUDGET: Duration = Duration::from_secs(60);

fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root()).args(args);
    cmd
}

pub fn run(e2e_args: &[String], matrix_args: Option<&MatrixArgs>) -> anyhow::Result<ExitCode> {
    eprintln!("xtask: cargo fmt --check");
    status(&mut cargo(&["fmt", "--all", "--check"]))?;
    // The fuzz crate is a workspace of its own, out of `--all`.
    status(&mut cargo(&[
        "fmt",
        "--manifest-path",
        "tcptrace/fuzz/Cargo.toml",
        "--check",
    ]))?;
    eprintln!("xtask: layout check");
    layout::run()?;
    eprintln!("xtask: cargo clippy -D warnings");
    status(&mut cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    status(&mut cargo(&[
        "clippy",
        "--manifest-path",
        "tcptrace/fuzz/Cargo.toml",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    eprintln!("xtask: unit tests");
    status(&mut cargo(&[
        "test",
        "--workspace",
        "--exclude",
        "tcptrace-tests",
    ]))?;
    eprintln!("xtask: fuzzing the parsers of kernel data, about a minute in all");
    fuzz::run_within(FUZZ_BUDGET)?;
    eprintln!("xtask: cargo build --release, which must print no warning");
    build_without_warnings()?;
    eprintln!("xtask: end-to-end tests");
    let host_started = Instant::now();
    let e2e = e2e_counting(
        cargo(&["test", "--package", "tcptrace-tests", "--"])
            .args(e2e_args)
            .env("TCPTRACE_BIN", run::binary())
            .env("KUBERNETES_VALIDATE", setup::ensure_kubernetes_validate()?),
    )?;
    let smoke = smoke()?;
    let host = matrix::host_line(e2e, smoke.as_ref(), host_started.elapsed());
    let Some(matrix_args) = matrix_args else {
        println!("{host}");
        eprintln!("xtask: the kernel matrix was skipped (--no-matrix)");
        return Ok(ExitCode::SUCCESS);
    };
    eprintln!("xtask: the kernel matrix");
    let matrix_started = Instant::now();
    let outcomes = matrix::run(matrix_args, e2e_args)?;
    println!("\n{host}");
    matrix::finish(&outcomes, matrix_started.elapsed())?;
    Ok(ExitCode::SUCCESS)
}

/// Runs the end-to-end tests, passing their output through, and adds up libtest's result
/// lines for the host's summary line.
fn e2e_counting(cmd: &mut Command) -> anyhow::Result<TestCounts> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let stdout = child.stdout.take().context("cargo's stdout is not piped")?;
    let mut counts = TestCounts::default();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("cannot read the tests' output")?;
        println!("{line}");
        counts.add_line(&line);
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(counts)
}

/// Builds what the end-to-end tests run, as `run::build` does, and fails if cargo printed a
/// warning: the release build should print cargo's progress and nothing else, the kernel
/// program's nested build included (tcptrace/build.rs). Only what is compiled is checked: on a
/// fresh clone, as in CI, that is everything.
fn build_without_warnings() -> anyhow::Result<()> {
    let mut cmd = cargo(&["build", "--release", "--package", "tcptrace"]);
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let stderr = child.stderr.take().context("cargo's stderr is not piped")?;
    let mut warnings = 0;
    for line in BufReader::new(stderr).lines() {
        let line = line.context("cannot read cargo's output")?;
        eprintln!("{line}");
        if line.starts_with("warning") {
            warnings += 1;
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    if warnings > 0 {
        bail!("the release build printed {warnings} warning line(s), above");
    }
    Ok(())
}

/// The benchmark's smoke check: every transition of a few thousand connections seen, none
/// lost. Needs root like the end-to-end tests, and like them fails in CI rather than skip.
fn smoke() -> anyhow::Result<Option<bench::SmokeCounts>> {
    if !run::is_root() {
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            bail!("the bench smoke check must run as root in CI");
        }
        eprintln!("SKIPPED bench smoke check: needs root to load the BPF probe");
        return Ok(None);
    }
    eprintln!("xtask: bench smoke check");
    bench::build()?;
    let dir = bench::output_dir();
    std::fs::create_dir_all(&dir)?;
    bench::smoke(&dir).map(Some)
}
