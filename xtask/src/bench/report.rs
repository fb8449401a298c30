//! The bench's results: medians over rounds, a markdown table and JSON.

use std::fs;

use serde::Serialize;

use super::{
    BenchArgs,
    micro::MicroResult,
    storm::{StormArgs, StormReport},
    tracer::{Finished, Tracer},
};

/// One storm, with or without a tracer.
#[derive(Debug, Serialize)]
pub struct RunResult {
    pub round: u32,
    pub tracer: Option<Tracer>,
    pub label: &'static str,
    pub storm: StormReport,
    pub tracer_result: Option<Finished>,
}

impl RunResult {
    pub fn new(
        round: u32,
        tracer: Option<Tracer>,
        storm: StormReport,
        tracer_result: Option<Finished>,
    ) -> Self {
        Self {
            round,
            tracer,
            label: super::label(tracer),
            storm,
            tracer_result,
        }
    }

    fn expected_per_s(&self) -> f64 {
        self.storm.expected_transitions as f64 / self.storm.elapsed_s
    }

    fn observed_per_s(&self) -> Option<f64> {
        let observed = self.tracer_result.as_ref()?.observed?;
        Some(observed as f64 / self.storm.elapsed_s)
    }

    /// Tracer CPU seconds per million transitions of the workload (the storm's expected count,
    /// the same denominator for every tracer whatever it saw or lost).
    fn cpu_s_per_million(&self) -> Option<f64> {
        let cpu = self.tracer_result.as_ref()?.cpu_s;
        Some(cpu / (self.storm.expected_transitions as f64 / 1e6))
    }

    fn peak_rss_mib(&self) -> Option<f64> {
        Some(self.tracer_result.as_ref()?.peak_rss_kib as f64 / 1024.0)
    }

    fn rss_mib(&self) -> Option<f64> {
        Some(self.tracer_result.as_ref()?.rss_kib as f64 / 1024.0)
    }
}

/// Medians over the rounds of one configuration.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub label: &'static str,
    pub tracer: Option<Tracer>,
    pub rounds: usize,
    pub conn_per_s: f64,
    /// Median over rounds of conn/s divided by the same round's untraced conn/s.
    pub ratio_to_alone: Option<f64>,
    pub observed_transitions_per_s: Option<f64>,
    pub expected_transitions_per_s: f64,
    /// Lost events, summed over the rounds; `None` when the tracer cannot tell.
    pub lost: Option<u64>,
    /// Runs of the tracer's programs the kernel skipped (nested BPF), summed over the rounds.
    pub kernel_misses: Option<u64>,
    pub cpu_s_per_million_transitions: Option<f64>,
    /// The largest over the rounds.
    pub peak_rss_mib: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cpus: usize,
    pub memory_gib: f64,
    pub kernel: String,
}

impl Machine {
    fn read() -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name")?.split_once(':'))
            .map_or_else(|| "unknown CPU".to_owned(), |(_, v)| v.trim().to_owned());
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        Self {
            cpu,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: memory_kib / (1024.0 * 1024.0),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{}, {} CPUs, {:.0} GiB, Linux {}",
            self.cpu, self.cpus, self.memory_gib, self.kernel
        )
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub rounds: u32,
    pub storm: StormArgs,
    pub summary: Vec<Summary>,
    pub micro: Option<Vec<MicroResult>>,
    pub runs: Vec<RunResult>,
}

pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

impl Report {
    pub fn new(
        args: &BenchArgs,
        storm: &StormArgs,
        runs: Vec<RunResult>,
        micro: Option<Vec<MicroResult>>,
    ) -> Self {
        let mut labels: Vec<(&'static str, Option<Tracer>)> = Vec::new();
        for run in &runs {
            if !labels.iter().any(|(label, _)| *label == run.label) {
                labels.push((run.label, run.tracer));
            }
        }
        let alone = |round: u32| {
            runs.iter()
                .find(|r| r.round == round && r.tracer.is_none())
                .map(|r| r.storm.conn_per_s)
        };
        let summary = labels
            .into_iter()
            .map(|(label, tracer)| {
                let mine: Vec<&RunResult> = runs.iter().filter(|r| r.label == label).collect();
                let all = |f: &dyn Fn(&RunResult) -> Option<f64>| {
                    median(mine.iter().filter_map(|r| f(r)).collect())
                };
                Summary {
                    label,
                    tracer,
                    rounds: mine.len(),
                    conn_per_s: all(&|r| Some(r.storm.conn_per_s)).unwrap_or(0.0),
                    ratio_to_alone: all(&|r| Some(r.storm.conn_per_s / alone(r.round)?)),
                    observed_transitions_per_s: all(&|r| r.observed_per_s()),
                    expected_transitions_per_s: all(&|r| Some(r.expected_per_s())).unwrap_or(0.0),
                    lost: mine
                        .iter()
                        .map(|r| r.tracer_result.as_ref().and_then(|t| t.lost))
                        .sum(),
                    kernel_misses: mine
                        .iter()
                        .map(|r| r.tracer_result.as_ref().map(|t| t.kernel_misses))
                        .sum(),
                    cpu_s_per_million_transitions: all(&|r| r.cpu_s_per_million()),
                    peak_rss_mib: mine
                        .iter()
                        .filter_map(|r| r.peak_rss_mib())
                        .max_by(f64::total_cmp),
                }
            })
            .collect();
        Self {
            machine: Machine::read(),
            rounds: args.rounds,
            storm: storm.clone(),
            summary,
            micro,
            runs,
        }
    }

    pub fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string_pretty(self)
    }

    pub fn markdown(&self) -> String {
        let rate = self
            .storm
            .rate
            .map_or("as fast as possible".to_owned(), |r| {
                format!("{} conn/s", thousands(r))
            });
        let mut out = format!(
            "Machine: {}. Storm: {} connections on loopback, {} client threads, {}; median of \
             {} interleaved rounds.\n\n",
            self.machine.describe(),
            thousands(self.storm.connections as f64),
            self.storm.threads,
            rate,
            self.rounds
        );
        out.push_str(
            "| run | storm conn/s | vs. alone | transitions/s seen | expected | lost | skipped by the kernel | tracer CPU s / M transitions | tracer peak RSS |\n\
             | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        );
        for s in &self.summary {
            let tracing = s.tracer.is_some();
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                s.label,
                thousands(s.conn_per_s),
                s.ratio_to_alone.map_or("-".into(), |r| format!("{r:.2}")),
                opt(s.observed_transitions_per_s.map(thousands)),
                if tracing {
                    thousands(s.expected_transitions_per_s)
                } else {
                    "-".into()
                },
                match (tracing, s.lost) {
                    (false, _) => "-".into(),
                    (true, Some(lost)) => thousands(lost as f64),
                    (true, None) => "n/a".into(),
                },
                opt(s.kernel_misses.map(|n| thousands(n as f64))),
                opt(s.cpu_s_per_million_transitions.map(|c| format!("{c:.2}"))),
                opt(s.peak_rss_mib.map(|m| format!("{m:.1} MiB"))),
            ));
        }
        if let Some(micro) = &self.micro {
            out.push('\n');
            for m in micro {
                out.push_str(&format!(
                    "Microbenchmark `{}`: {} events/s on one core.\n",
                    m.benchmark,
                    thousands(m.events_per_s)
                ));
            }
        }
        out
    }
}

/// The memory run's table.
pub fn memory_markdown(rows: &[RunResult]) -> String {
    let mut out = format!(
        "Machine: {}.\n\n| run | connections | storm conn/s | transitions seen | expected | lost | skipped by the kernel | tracer peak RSS | tracer RSS at the end |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        Machine::read().describe()
    );
    for r in rows {
        let t = r.tracer_result.as_ref();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.label,
            thousands(r.storm.connections as f64),
            thousands(r.storm.conn_per_s),
            opt(t.and_then(|t| t.observed).map(|n| thousands(n as f64))),
            thousands(r.storm.expected_transitions as f64),
            opt(t.and_then(|t| t.lost).map(|n| thousands(n as f64))),
            opt(t.map(|t| thousands(t.kernel_misses as f64))),
            opt(r.peak_rss_mib().map(|m| format!("{m:.1} MiB"))),
            opt(r.rss_mib().map(|m| format!("{m:.1} MiB"))),
        ));
    }
    out
}

fn opt(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".into())
}

/// 1234567.8 → "1,234,568".
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < -0.5 {
        out.insert(0, '-');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1234567.8), "1,234,568");
        assert_eq!(thousands(-12345.0), "-12,345");
    }
}
