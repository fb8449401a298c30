//! `tcptrace trace`: every transition, one line each, as it happens.

use std::{
    io::{self, Write},
    time::Duration,
};

use crate::{
    cli::TraceArgs,
    core::clock::WallClock,
    kernel::probe::ProbeConfig,
    render::trace::{json, text::TraceText},
    stream::{self, StreamConfig, Update},
};

pub async fn run(args: TraceArgs) -> anyhow::Result<()> {
    let filter = args.filter.to_filter();
    let config = StreamConfig {
        probe: ProbeConfig {
            filter: filter.kernel(),
            ..ProbeConfig::default()
        },
        filter,
        // Once a second, to report lost events while they happen, not only at the end.
        interval: Some(Duration::from_secs(1)),
        duration: args.duration,
    };
    let text = TraceText::new(WallClock::read(), args.filter.ipv4);
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let mut reported_lost = 0;
    let totals = stream::run(config, |update| match update {
        Update::Started if !args.json => text.header(&mut out).and_then(|()| out.flush()),
        Update::Transition(t) if args.json => json::line(&mut out, t),
        Update::Transition(t) => text.line(&mut out, t),
        // Lines are flushed once per wake-up, not per line.
        Update::BatchEnd => out.flush(),
        Update::Tick(totals) => {
            let lost = totals.kernel.lost();
            if lost > reported_lost {
                eprintln!(
                    "tcptrace: {lost} events lost so far, {}",
                    totals.kernel.loss_breakdown()
                );
                reported_lost = lost;
            }
            Ok(())
        }
        Update::Started | Update::Signal(_) => Ok(()),
    })
    .await?;
    out.flush()?;
    eprintln!("{}", totals.summary_line());
    Ok(())
}
