//! `cargo xtask bench --scrape`: how long a scrape of `tcptrace export` takes with 1 and with
//! 100 network namespaces labelled (its `--netns-limit`): each namespace gets a few
//! connections of its own, so that it has series of its own, then /metrics is fetched over
//! and over in the text format Prometheus asks for by default and in the protobuf format of
//! native histograms; the median and the slowest, beside the size of what was served.

use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};

use super::{
    storm,
    tracer::{self, OPENMETRICS, Output, Running, Tracer},
};
use crate::setup::status;

/// Scrapes timed per format and count of namespaces.
const SCRAPES: usize = 50;

const PROTOBUF: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7";

/// A namespace of the benchmark, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(n: usize) -> anyhow::Result<Self> {
        let name = format!("tcptrace-bench-scrape-{}-{n}", std::process::id());
        status(Command::new("ip").args(["netns", "add", &name]))?;
        let netns = Self(name);
        status(Command::new("ip").args(["-n", &netns.0, "link", "set", "lo", "up"]))?;
        Ok(netns)
    }

    /// A short storm inside: the namespace's transitions.
    fn connections(&self) -> anyhow::Result<()> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .arg(storm::binary())
            .args(["--connections", "4", "--threads", "1", "--timeout", "20"])
            .output()
            .context("tcp-storm in a namespace")?;
        ensure!(
            out.status.success(),
            "tcp-storm in {}: {}",
            self.0,
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Median and slowest of the timed scrapes, ms; and the size of the last body.
fn timed(port: u16, accept: &str) -> anyhow::Result<(f64, f64)> {
    let mut took: Vec<f64> = (0..SCRAPES)
        .map(|_| {
            let t = tracer::scrape(port, accept).map(millis);
            // Apart, as scrapes are: not a benchmark of back-to-back requests.
            thread::sleep(Duration::from_millis(20));
            t
        })
        .collect::<Option<_>>()
        .context("a scrape failed")?;
    took.sort_by(f64::total_cmp);
    Ok((took[took.len() / 2], took[took.len() - 1]))
}

pub fn run() -> anyhow::Result<()> {
    println!(
        "| labelled namespaces | samples served | text (OpenMetrics) median | slowest | protobuf median | slowest |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for count in [1, 100] {
        let running = Running::start(Tracer::Export, &[], Output::Null)?;
        let port = running.port().context("the exporter's port")?;
        // The host's own namespace is one; the others are made here.
        let namespaces = (1..count)
            .map(Netns::new)
            .collect::<anyhow::Result<Vec<_>>>()?;
        for netns in &namespaces {
            netns.connections()?;
        }
        storm::run(&storm::StormArgs {
            connections: 4,
            threads: 1,
            rate: None,
            port: 0,
        })?;
        // Two refreshes: every namespace's transitions are in the snapshot.
        let settled = Instant::now();
        while settled.elapsed() < Duration::from_millis(2500) {
            thread::sleep(Duration::from_millis(100));
        }
        let (samples, labelled) = tracer::served(port)?;
        ensure!(
            labelled >= count.min(100),
            "{labelled} namespaces labelled, {count} made"
        );
        let (text_median, text_slowest) = timed(port, OPENMETRICS)?;
        let (proto_median, proto_slowest) = timed(port, PROTOBUF)?;
        println!(
            "| {labelled} | {samples} | {text_median:.1} ms | {text_slowest:.1} ms | {proto_median:.1} ms | {proto_slowest:.1} ms |"
        );
        drop(namespaces);
        running.stop()?;
    }
    Ok(())
}
