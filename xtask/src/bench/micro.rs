//! The criterion microbenchmark of decoding (tcptrace/benches/decode.rs), and its results read
//! back from criterion's own files.

use std::{fs, path::Path, process::Command};

use anyhow::Context as _;
use serde::Serialize;

use crate::{run::workspace_root, setup::status};

#[derive(Clone, Debug, Serialize)]
pub struct MicroResult {
    pub benchmark: String,
    /// Events per second on one core (criterion's mean time per iteration).
    pub events_per_s: f64,
}

/// The benchmarks whose throughput is reported, as `group/function` of criterion.
const BENCHMARKS: [&str; 2] = ["decode/synthetic_stream", "pipeline/decode_fill_aggregate"];

pub fn run() -> anyhow::Result<Vec<MicroResult>> {
    eprintln!("xtask: cargo bench -p tcptrace (criterion)");
    status(Command::new("cargo").current_dir(workspace_root()).args([
        "bench",
        "--package",
        "tcptrace",
        "--bench",
        "decode",
    ]))?;
    let dir = workspace_root().join("target/criterion");
    BENCHMARKS
        .iter()
        .map(|name| {
            read(&dir.join(name).join("new"))
                .with_context(|| format!("reading criterion's results of {name}"))
                .map(|events_per_s| MicroResult {
                    benchmark: (*name).to_owned(),
                    events_per_s,
                })
        })
        .collect()
}

/// Events per second from criterion's `benchmark.json` (elements per iteration) and
/// `estimates.json` (mean nanoseconds per iteration).
fn read(dir: &Path) -> anyhow::Result<f64> {
    let json = |name: &str| -> anyhow::Result<serde_json::Value> {
        let path = dir.join(name);
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
    };
    let elements = json("benchmark.json")?
        .pointer("/throughput/Elements")
        .and_then(|v| v.as_f64())
        .context("no element throughput in benchmark.json")?;
    let mean_ns = json("estimates.json")?
        .pointer("/mean/point_estimate")
        .and_then(|v| v.as_f64())
        .filter(|ns| *ns > 0.0)
        .context("no mean estimate in estimates.json")?;
    Ok(elements / (mean_ns / 1e9))
}
