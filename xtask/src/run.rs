//! Building and running tcptrace.

use std::{
    path::PathBuf,
    process::{Command, ExitCode},
};

use crate::setup::status;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

pub fn binary() -> PathBuf {
    workspace_root().join("target/release/tcptrace")
}

pub fn build() -> anyhow::Result<ExitCode> {
    status(Command::new("cargo").current_dir(workspace_root()).args([
        "build",
        "--release",
        "--package",
        "tcptrace",
    ]))?;
    Ok(ExitCode::SUCCESS)
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Builds, then runs tcptrace with `args`, through sudo when not already root.
pub fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    build()?;
    let mut cmd = if is_root() {
        Command::new(binary())
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg(binary());
        sudo
    };
    let status = cmd.args(args).status()?;
    Ok(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}
