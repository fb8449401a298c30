//! `tcptrace trace`: every transition, one line each, as it happens.

use std::{
    io::{self, Write},
    time::Duration,
};

use crate::{
    cli::TraceArgs,
    core::{clock::WallClock, pipeline::PipelineConfig},
    kernel::probe::ProbeConfig,
    render::trace::{
        json,
        text::{Layout, TraceText},
    },
    stream::{self, LiveConfig, Update},
};

pub async fn run(args: TraceArgs) -> anyhow::Result<()> {
    let filter = args.filter.to_filter();
    let live = LiveConfig {
        probe: ProbeConfig {
            filter: filter.kernel(),
            ..ProbeConfig::default()
        },
        // Once a second, to report lost events while they happen, not only at the end.
        interval: Some(Duration::from_secs(1)),
        duration: args.duration,
        tcp_counters: false,
        census: Some(filter.clone()),
        stop: None,
        drop_capabilities: false,
    };
    let pipeline = PipelineConfig {
        filter,
        ..PipelineConfig::default()
    };
    let layout = if args.wide {
        Layout::Wide {
            ipv4_only: args.filter.ipv4,
        }
    } else {
        Layout::Narrow { time: args.time }
    };
    let mut text = TraceText::new(WallClock::default(), layout);
    let mut wall = WallClock::default();
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut reported_lost = 0;
    let on_update = |update: Update<'_, ()>| match update {
        Update::Started(origin, _) => {
            text = TraceText::new(origin.wall, layout);
            wall = origin.wall;
            if args.json {
                return Ok(());
            }
            text.header(&mut out).and_then(|()| out.flush())
        }
        Update::Transition(t, _) if args.json => json::line(&mut out, t, &wall),
        Update::Transition(t, _) => text.line(&mut out, t),
        // Lines are flushed once per wake-up, not per line.
        Update::BatchEnd => out.flush(),
        Update::Tick(totals) => {
            let lost = totals.losses.lost_events();
            if lost > reported_lost {
                eprintln!(
                    "tcptrace: {lost} events lost so far, {}",
                    totals.losses.breakdown()
                );
                reported_lost = lost;
            }
            Ok(())
        }
        Update::Signal(..) | Update::Drop(..) => Ok(()),
    };
    let (totals, damage) = match &args.replay {
        Some(path) => stream::run_replay(path, pipeline, on_update)?,
        None => (stream::run(live, pipeline, on_update).await?, None),
    };
    out.flush()?;
    eprintln!("{}", totals.summary_line());
    // A damaged recording replays up to the damage, then says where it is.
    damage.map_or(Ok(()), |err| Err(err.into()))
}
