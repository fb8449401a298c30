//! `tcptrace transitions`: every transition aggregated along the paths of the TCP state
//! diagram, redrawn each interval, with a final summary.

use std::io::{self, IsTerminal, Write};

use crate::{
    aggregate::{Aggregator, Config, Losses},
    cli::TransitionsArgs,
    core::counters::TcpCounters,
    core::{clock, filter::EventFilter},
    kernel::probe::ProbeConfig,
    os::procfs,
    render::transitions::{json, text},
    stream::{self, StreamConfig, Totals, Update},
};

/// Clears the screen and homes the cursor: each interval redraws in place on a terminal.
const CLEAR: &[u8] = b"\x1b[H\x1b[2J";

/// How the intervals are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    Json,
    /// Plain tables, one after the other (not a terminal).
    Text,
    /// Redrawn in place.
    Terminal,
}

/// Reads the kernel's TCP counters, warning once if they cannot be read: the request-socket
/// rows and the check against the kernel then go missing, and the user must know why.
struct CounterReader {
    warned: bool,
}

impl CounterReader {
    fn read(&mut self) -> Option<TcpCounters> {
        match procfs::read() {
            Ok(counters) => Some(counters),
            Err(err) => {
                if !self.warned {
                    self.warned = true;
                    log::warn!(
                        "cannot read /proc/net/snmp or /proc/net/netstat ({err}): no request-socket rows and no check against the kernel's counters"
                    );
                }
                None
            }
        }
    }
}

fn losses(totals: &Totals) -> Losses {
    Losses {
        // A full ring buffer and runs the kernel skipped lose transitions alike.
        lost_events: totals.kernel.lost(),
        skipped_by_kernel: totals.kernel.skipped_by_kernel,
        invalid_records: totals.invalid,
        untracked_sockets: totals.untracked_sockets,
    }
}

pub async fn run(args: TransitionsArgs) -> anyhow::Result<()> {
    let filter = args.filter.to_filter();
    let own_netns = procfs::own_netns().unwrap_or_else(|err| {
        log::warn!("cannot read /proc/self/ns/net ({err}): the kernel check assumes every socket is in this namespace");
        0
    });
    let mut aggregator = Aggregator::new(Config {
        max_sockets: args.max_sockets,
        own_netns,
        // The check counts only this namespace anyway: `--netns` naming it filters nothing the
        // kernel counters would see.
        filtered: EventFilter {
            netns: filter.netns.filter(|netns| *netns != own_netns),
            ..filter.clone()
        } != EventFilter::default(),
        top_signatures: args.top,
    });
    let config = StreamConfig {
        probe: ProbeConfig {
            filter: filter.kernel(),
            // The causes of abnormal closes: the reset and retransmission tracepoints.
            causes: true,
            ..ProbeConfig::default()
        },
        filter,
        interval: Some(args.interval),
        duration: args.duration,
    };
    let output = if args.json {
        Output::Json
    } else if io::stdout().is_terminal() {
        Output::Terminal
    } else {
        Output::Text
    };
    let mut counters = CounterReader { warned: false };
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());

    let totals = stream::run(config, |update| {
        match update {
            Update::Started => {
                aggregator.start(clock::monotonic_ns());
                if let Some(c) = counters.read() {
                    aggregator.feed_kernel_counters(c);
                }
            }
            Update::Transition(t) => aggregator.feed_transition(t),
            Update::Signal(signal) => aggregator.feed_signal(signal),
            Update::BatchEnd => aggregator.end_batch(),
            Update::Tick(totals) => {
                if let Some(c) = counters.read() {
                    aggregator.feed_kernel_counters(c);
                }
                aggregator.set_losses(losses(totals));
                let snapshot = aggregator.snapshot(totals.now_ns);
                match output {
                    Output::Json => json::interval(&mut out, &snapshot, false)?,
                    Output::Text => {
                        text::interval(&mut out, &snapshot)?;
                        writeln!(out)?;
                    }
                    Output::Terminal => {
                        out.write_all(CLEAR)?;
                        text::interval(&mut out, &snapshot)?;
                    }
                }
                out.flush()?;
            }
        }
        Ok(())
    })
    .await?;

    // The probe is detached: the kernel counters read now cover the whole window.
    if let Some(c) = counters.read() {
        aggregator.feed_kernel_counters(c);
    }
    aggregator.set_losses(losses(&totals));
    let snapshot = aggregator.snapshot(totals.now_ns.max(clock::monotonic_ns()));
    match output {
        Output::Json => json::interval(&mut out, &snapshot, true)?,
        Output::Text => text::summary(&mut out, &snapshot)?,
        Output::Terminal => {
            out.write_all(CLEAR)?;
            text::summary(&mut out, &snapshot)?;
        }
    }
    out.flush()?;
    eprintln!("{}", totals.summary_line());
    Ok(())
}
