//! The project's test command: formatting, module layout, lints, unit tests, bounded fuzzing,
//! end-to-end tests.

use std::{
    process::{Command, ExitCode},
    time::Duration,
};

/// The fuzz targets' time in the test command, split over them.
const FUZZ_BUDGET: Duration = Duration::from_secs(60);

use anyhow::bail;

use crate::{
    bench, fuzz, layout,
    run::{self, workspace_root},
    setup::status,
};

fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root()).args(args);
    cmd
}

pub fn run(e2e_args: &[String]) -> anyhow::Result<ExitCode> {
    eprintln!("xtask: cargo fmt --check");
    status(&mut cargo(&["fmt", "--all", "--check"]))?;
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
    eprintln!("xtask: unit tests");
    status(&mut cargo(&[
        "test",
        "--workspace",
        "--exclude",
        "tcptrace-tests",
    ]))?;
    eprintln!("xtask: fuzzing the parsers of kernel data, about a minute in all");
    fuzz::run_within(FUZZ_BUDGET)?;
    eprintln!("xtask: end-to-end tests");
    run::build()?;
    status(
        cargo(&["test", "--package", "tcptrace-tests", "--"])
            .args(e2e_args)
            .env("TCPTRACE_BIN", run::binary()),
    )?;
    smoke()?;
    Ok(ExitCode::SUCCESS)
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
