//! `tcptrace trace`: every transition, one line each, as it happens.

use std::io::{self, Write};

use crate::{
    cli::TraceArgs,
    clock::WallClock,
    probe::ProbeConfig,
    render::{trace_json, trace_text::TraceText},
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
        duration: args.duration,
    };
    let text = TraceText::new(WallClock::read(), args.filter.ipv4);
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let summary = stream::run(config, |update| match update {
        Update::Started if !args.json => text.header(&mut out).and_then(|()| out.flush()),
        Update::Transition(t) if args.json => trace_json::line(&mut out, t),
        Update::Transition(t) => text.line(&mut out, t),
        // Lines are flushed once per wake-up, not per line.
        Update::BatchEnd => out.flush(),
        Update::Started => Ok(()),
    })
    .await?;
    out.flush()?;
    eprintln!("{}", summary.line());
    Ok(())
}
