//! `tcptrace transitions`: every transition aggregated along the paths of the TCP state
//! diagram, redrawn each interval, with a final summary.

use std::{
    io::{self, IsTerminal, Write},
    time::Duration,
};

use crate::{
    aggregate::{Aggregator, Config, SocketState, snapshot::Snapshot},
    cli::TransitionsArgs,
    core::{clock::WallClock, filter::EventFilter, pipeline::PipelineConfig},
    kernel::probe::ProbeConfig,
    render::{
        terminal::CLEAR,
        transitions::{json, text},
    },
    stream::{self, LiveConfig, Totals, Update},
};

/// How the intervals are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    Json,
    /// Plain tables, one after the other (not a terminal).
    Text,
    /// Redrawn in place.
    Terminal,
}

/// Hands the stream's totals to the aggregator and takes its snapshot.
fn snapshot(aggregator: &mut Aggregator, totals: &Totals, now_ns: u64) -> Snapshot {
    if let Some(counters) = totals.tcp {
        aggregator.feed_kernel_counters(counters);
    }
    aggregator.set_stream(totals.losses, totals.table);
    aggregator.snapshot(now_ns)
}

pub async fn run(args: TransitionsArgs) -> anyhow::Result<()> {
    let filter = args.filter.to_filter();
    let output = if args.json {
        Output::Json
    } else if io::stdout().is_terminal() {
        Output::Terminal
    } else {
        Output::Text
    };
    // A terminal is redrawn every second; a pipe or a file gets the final summary only, unless
    // an interval is asked for.
    let interval = args
        .interval
        .or_else(|| (output == Output::Terminal).then_some(Duration::from_secs(1)));
    let live = LiveConfig {
        probe: ProbeConfig {
            filter: filter.kernel(),
            // The causes of abnormal closes: the reset and retransmission tracepoints.
            causes: true,
            // Request-socket fates and SYNs to closed ports, by listener and peer.
            drops: true,
            ..ProbeConfig::default()
        },
        interval,
        duration: args.duration,
        tcp_counters: true,
        census: Some(filter.clone()),
    };
    let pipeline = PipelineConfig {
        filter: filter.clone(),
        max_sockets: args.max_sockets,
        ..PipelineConfig::default()
    };
    let mut aggregator = Aggregator::new(Config {
        top_signatures: args.top,
        ..Config::default()
    });
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    // The recording host's clock when replaying; this one's when live.
    let mut wall = WallClock::default();

    let on_update = |update: Update<'_, SocketState>| -> io::Result<()> {
        match update {
            Update::Started(origin, totals) => {
                wall = origin.wall;
                let own_netns = origin.own_netns.unwrap_or(0);
                aggregator.set_own_netns(
                    own_netns,
                    // The check counts only this namespace anyway: `--netns` naming it filters
                    // nothing the kernel counters would see.
                    EventFilter {
                        netns: filter.netns.filter(|netns| *netns != own_netns),
                        ..filter.clone()
                    } != EventFilter::default(),
                );
                aggregator.set_reset_reasons(origin.reset_reasons.clone());
                aggregator.start(origin.start_ns);
                if origin.fates {
                    aggregator.trace_fates();
                }
                if let Some(counters) = totals.tcp {
                    aggregator.feed_kernel_counters(counters);
                }
            }
            Update::Transition(t, socket) => aggregator.feed_transition(t, socket),
            Update::Signal(signal, socket) => aggregator.feed_signal(signal, socket),
            Update::Drop(drop) => aggregator.feed_drop(drop),
            Update::BatchEnd => aggregator.end_batch(),
            // Not a terminal and no --interval: the final summary only.
            Update::Tick(_) if interval.is_none() => {}
            Update::Tick(totals) => {
                let snapshot = snapshot(&mut aggregator, totals, totals.now_ns);
                match output {
                    Output::Json => json::interval(&mut out, &snapshot, false, &wall)?,
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
    };
    let (totals, damage) = match &args.replay {
        Some(path) => stream::run_replay(path, pipeline, on_update)?,
        None => (stream::run(live, pipeline, on_update).await?, None),
    };

    let snapshot = snapshot(&mut aggregator, &totals, totals.now_ns);
    match output {
        Output::Json => json::interval(&mut out, &snapshot, true, &wall)?,
        Output::Text => text::summary(&mut out, &snapshot)?,
        Output::Terminal => {
            out.write_all(CLEAR)?;
            text::summary(&mut out, &snapshot)?;
        }
    }
    out.flush()?;
    eprintln!("{}", totals.summary_line());
    // A damaged recording replays up to the damage, then says where it is.
    damage.map_or(Ok(()), |err| Err(err.into()))
}
