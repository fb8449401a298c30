//! The project's test command: formatting, module layout, lints, unit tests, bounded fuzzing,
//! end-to-end tests.

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, ExitCode, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};

use crate::{
    bench, fuzz, layout,
    run::{self, workspace_root},
    setup::status,
};

/// The fuzz targets' time in the test command, split over them.
const FUZZ_BUDGET: Duration = Duration::from_secs(60);

fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root()).args(args);
    cmd
}

pub fn run(e2e_args: &[String]) -> anyhow::Result<ExitCode> {
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
    status(
        cargo(&["test", "--package", "tcptrace-tests", "--"])
            .args(e2e_args)
            .env("TCPTRACE_BIN", run::binary()),
    )?;
    smoke()?;
    Ok(ExitCode::SUCCESS)
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
fn smoke() -> anyhow::Result<()> {
    if !run::is_root() {
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            bail!("the bench smoke check must run as root in CI");
        }
        eprintln!("SKIPPED bench smoke check: needs root to load the BPF probe");
        return Ok(());
    }
    eprintln!("xtask: bench smoke check");
    bench::build()?;
    std::fs::create_dir_all(bench::output_dir())?;
    bench::smoke()
}
