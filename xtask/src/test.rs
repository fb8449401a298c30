//! The project's test command: formatting, lints, unit tests, end-to-end tests.

use std::process::{Command, ExitCode};

use crate::{
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
    eprintln!("xtask: end-to-end tests");
    run::build()?;
    status(
        cargo(&["test", "--package", "tcptrace-tests", "--"])
            .args(e2e_args)
            .env("TCPTRACE_BIN", run::binary()),
    )?;
    Ok(ExitCode::SUCCESS)
}
