//! `tcptrace transitions`: every transition aggregated along the paths of the TCP state
//! diagram, shown full-screen on a terminal (or redrawn as text with `--plain`, or printed for
//! a pipe or a file), with a final summary.

use std::{
    io::{self, IsTerminal, Write},
    sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError},
    thread,
    time::Duration,
};

use crate::{
    aggregate::{Aggregator, Config, SocketState},
    census::{self, Context},
    cli::TransitionsArgs,
    core::{clock::WallClock, pipeline::PipelineConfig},
    kernel::probe::ProbeConfig,
    os::{clock, diag::DiagSocket, owners, sysctl},
    render::{
        states::{
            frame::Frame,
            text::{frame_header, text as states_text, time_of_day},
        },
        terminal::CLEAR,
        transitions::{json, text},
        tui::{
            app::{App, Mode, describe_filter},
            run::{Input, View},
        },
    },
    stream::{
        self, LiveConfig, Update,
        aggregating::{self, Fed},
        snapshot::census_snapshot,
    },
};

/// How the intervals are written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    Json,
    /// Plain tables, one after the other (not a terminal).
    Text,
    /// Redrawn in place (`--plain` on a terminal).
    Terminal,
    /// The full-screen view.
    Tui,
}

/// How often the states tab takes its snapshot of the sockets.
const STATES_EVERY: Duration = Duration::from_secs(2);

pub async fn run(args: TransitionsArgs) -> anyhow::Result<()> {
    let filter = args.filter.to_filter();
    let output = if args.json {
        Output::Json
    } else if !io::stdout().is_terminal() {
        Output::Text
    } else if args.plain {
        Output::Terminal
    } else {
        Output::Tui
    };
    // A terminal is redrawn every second; a pipe or a file gets the final summary only, unless
    // an interval is asked for.
    let interval = args.interval.or_else(|| {
        matches!(output, Output::Terminal | Output::Tui).then_some(Duration::from_secs(1))
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // Whether the states tab is shown, from the view to the thread that takes its snapshots.
    let (shown, shown_changes) = mpsc::channel::<bool>();
    let view = match output {
        Output::Tui => Some(View::start(
            App::new(Mode::Transitions, describe_filter(&filter)),
            move || {
                let _ = stop.send(true);
            },
            move |states_shown| {
                let _ = shown.send(states_shown);
            },
        )?),
        _ => None,
    };
    // The states tab: snapshots of this namespace's sockets, on a thread of their own, taken
    // only while the tab is shown (a dump of a busy host's sockets is not free).
    if let Some(view) = &view {
        let tab = view.sender();
        if args.replay.is_some() {
            let _ = tab.try_send(Input::States(vec![
                "A replay shows the recorded transitions; the states tab shows this host's \
                 sockets and is not taken for it: see `tcptrace states`."
                    .to_owned(),
            ]));
        } else {
            let args = args.clone();
            thread::spawn(move || {
                states_tab(&args, &tab, &shown_changes);
            });
        }
    }
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
        stop: view.is_some().then_some(stopped),
        drop_capabilities: false,
    };
    let pipeline = PipelineConfig {
        filter: filter.clone(),
        max_sockets: args.max_sockets,
        ..PipelineConfig::default()
    };
    let mut aggregator = Aggregator::new(Config {
        top_signatures: args.top,
        top_keys: args.top,
        exemplars: args.exemplars,
        // The view shows any of them at a key's press.
        breakdowns: args.by.is_some() || matches!(output, Output::Tui),
        ..Config::default()
    });
    // The full-screen view writes to the terminal from its thread: stdout is not held then.
    let mut out: Box<dyn Write> = match output {
        Output::Tui => Box::new(io::sink()),
        _ => Box::new(io::BufWriter::with_capacity(64 * 1024, io::stdout().lock())),
    };
    // The recording host's clock when replaying; this one's when live.
    let mut wall = WallClock::default();

    let on_update = |update: Update<'_, SocketState>| -> io::Result<()> {
        match aggregating::feed(&mut aggregator, &filter, update) {
            Fed::Started(origin, _) => {
                wall = origin.wall;
            }
            Fed::Taken => {}
            // Not a terminal and no --interval: the final summary only.
            Fed::Tick(_) if interval.is_none() => {}
            Fed::Tick(totals) => {
                let snapshot = aggregating::snapshot(&mut aggregator, totals);
                match output {
                    Output::Json => json::interval(&mut out, &snapshot, false, &wall, args.by)?,
                    Output::Text => {
                        text::interval(&mut out, &snapshot, args.by)?;
                        writeln!(out)?;
                    }
                    Output::Terminal => {
                        out.write_all(CLEAR)?;
                        text::interval(&mut out, &snapshot, args.by)?;
                    }
                    Output::Tui => {
                        if let Some(view) = &view {
                            // Never waits: a view that falls behind misses a snapshot.
                            view.send(Input::Snapshot(Box::new(snapshot)));
                        }
                    }
                }
                out.flush()?;
            }
        }
        Ok(())
    };
    let streamed = match &args.replay {
        Some(path) => stream::run_replay(path, pipeline, on_update),
        None => stream::run(live, pipeline, on_update)
            .await
            .map(|totals| (totals, None)),
    };
    let (totals, damage) = match streamed {
        Ok(streamed) => streamed,
        Err(err) => {
            // The terminal first, so that the error is readable.
            if let Some(view) = view {
                let _ = view.finish(None);
            }
            return Err(err);
        }
    };

    let snapshot = aggregating::snapshot(&mut aggregator, &totals);
    match output {
        Output::Json => json::interval(&mut out, &snapshot, true, &wall, args.by)?,
        Output::Text => text::summary(&mut out, &snapshot, args.by)?,
        Output::Terminal => {
            out.write_all(CLEAR)?;
            text::summary(&mut out, &snapshot, args.by)?;
        }
        Output::Tui => {
            if let Some(view) = view {
                // A replay stays on screen until the user quits; live tracing ended already.
                let last = args.replay.is_some().then(|| snapshot.clone());
                view.finish(last)?;
            }
            let mut stdout = io::stdout().lock();
            text::summary(&mut stdout, &snapshot, args.by)?;
            stdout.flush()?;
        }
    }
    out.flush()?;
    eprintln!("{}", totals.summary_line());
    // A damaged recording replays up to the damage, then says where it is.
    damage.map_or(Ok(()), |err| Err(err.into()))
}

/// The states tab's loop: while the tab is shown (as `shown` last said), a snapshot of the
/// sockets every [`STATES_EVERY`], each drawn as `states` draws it; ends with the view.
fn states_tab(args: &TransitionsArgs, tab: &SyncSender<Input>, shown: &mpsc::Receiver<bool>) {
    let send = |lines: Vec<String>| match tab.try_send(Input::States(lines)) {
        Ok(()) | Err(TrySendError::Full(_)) => true,
        Err(TrySendError::Disconnected(_)) => false,
    };
    let mut diag = match DiagSocket::open() {
        Ok(diag) => diag,
        Err(err) => {
            send(vec![format!("no snapshot of the sockets: {err:#}")]);
            return;
        }
    };
    let selection = args.filter.selection(None);
    let range = sysctl::port_range();
    let wall = clock::wall_clock();
    let mut previous: Option<census::Census> = None;
    let mut showing = false;
    loop {
        if !showing {
            match shown.recv() {
                Ok(now) => {
                    showing = now;
                    continue;
                }
                Err(_) => return,
            }
        }
        let at_ns = clock::monotonic_ns();
        let lines = match census_snapshot(&mut diag, &selection, args.filter.families(), false) {
            Ok(snapshot) => {
                let ctx = Context {
                    owners: snapshot.owners.as_ref(),
                    port_range: range,
                    sees_every_process: owners::sees_every_process(),
                    kernel: Some(snapshot.kernel),
                    ..Context::default()
                };
                let census = census::count(&snapshot.sockets, None, &ctx, previous.as_ref());
                let mut out = Vec::new();
                let what =
                    format!("snapshot of this network namespace's sockets, every {STATES_EVERY:?}");
                let drawn = frame_header(&mut out, false, false, &time_of_day(&wall, at_ns), &what)
                    .and_then(|()| {
                        states_text(
                            &mut out,
                            &Frame {
                                census: &census,
                                previous: previous.as_ref(),
                                by: None,
                                interrupted: snapshot.interrupted,
                                live: None,
                            },
                        )
                    });
                previous = Some(census);
                match drawn {
                    Ok(()) => String::from_utf8_lossy(&out)
                        .lines()
                        .map(str::to_owned)
                        .collect(),
                    Err(err) => vec![format!("cannot draw the states: {err}")],
                }
            }
            Err(err) => vec![format!("no snapshot of the sockets: {err:#}")],
        };
        if !send(lines) {
            return;
        }
        match shown.recv_timeout(STATES_EVERY) {
            Ok(now) => showing = now,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
