//! Running the `tcp-storm` connection generator (tests/src/bin/tcp-storm.rs) and reading its
//! report.

use std::{path::PathBuf, process::Command, time::Duration};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::run::workspace_root;

pub fn binary() -> PathBuf {
    workspace_root().join("target/release/tcp-storm")
}

/// What to ask of the storm.
#[derive(Clone, Debug, Serialize)]
pub struct StormArgs {
    pub connections: u64,
    pub threads: usize,
    /// Connections per second; `None`: as fast as possible.
    pub rate: Option<f64>,
    /// The listener's port; 0: any free port.
    pub port: u16,
}

/// The storm's JSON report (see tcp-storm's documentation).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct StormReport {
    pub connections: u64,
    pub failed: u64,
    pub timed_out: bool,
    pub first_error: Option<String>,
    pub elapsed_s: f64,
    pub conn_per_s: f64,
    pub port: u16,
    pub expected_transitions: u64,
    pub expected_server_transitions: u64,
}

impl StormReport {
    /// Every connection done, none failed.
    pub fn complete(&self) -> bool {
        self.failed == 0 && !self.timed_out
    }

    /// Why the storm fell short, for an error message.
    pub fn shortfall(&self) -> String {
        format!(
            "the storm fell short: {} connections done, {} failed{}{}",
            self.connections,
            self.failed,
            if self.timed_out { ", timed out" } else { "" },
            self.first_error
                .as_deref()
                .map(|e| format!(" (first error: {e})"))
                .unwrap_or_default()
        )
    }
}

/// Runs one storm to its end. A storm that fell short still reports; the caller decides.
pub fn run(args: &StormArgs) -> anyhow::Result<StormReport> {
    // Bounded: 30 s plus the time the connections take at 2,000 per second, far below any
    // rate seen here even under the slowest tracer.
    let timeout = Duration::from_secs(30 + args.connections / 2_000);
    let mut cmd = Command::new(binary());
    cmd.args(["--connections", &args.connections.to_string()])
        .args(["--threads", &args.threads.to_string()])
        .args(["--port", &args.port.to_string()])
        .args(["--timeout", &timeout.as_secs().to_string()]);
    if let Some(rate) = args.rate {
        cmd.args(["--rate", &rate.to_string()]);
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {}", binary().display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match serde_json::from_str::<StormReport>(stdout.trim()) {
        Ok(report) => Ok(report),
        Err(err) => bail!(
            "tcp-storm ({}) gave no report ({err}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}
