//! `tcptrace states`: counts per state from inet_diag snapshots, once or redrawn with changes.
//!
//! `--watch` takes a fresh snapshot each interval and shows the difference with the previous
//! one: exact at each snapshot, whatever happened in between. When the probe loads, the
//! transition stream keeps the counts current between snapshots (redrawn every second), each
//! snapshot checks them, and CLOSE_WAIT sockets are timed from the transition that put them
//! there. Without the probe, the snapshots alone are shown.

use std::{
    collections::VecDeque,
    io::{self, IsTerminal as _, Write},
    time::Duration,
};

use tokio::{
    signal::unix::{SignalKind, signal},
    time::{MissedTickBehavior, interval},
};

use crate::{
    census::{
        self, Census, Context, GroupBy,
        close_wait::CloseWaitAges,
        live::{Check, LiveCensus, Split},
        selection::Selection,
    },
    cli::StatesArgs,
    core::{clock::WallClock, pipeline::PipelineConfig},
    kernel::probe::ProbeConfig,
    os::{
        clock,
        diag::{self, DiagSocket},
        owners::{self},
        procfs,
        sysctl::{self, PortRange},
    },
    render::{
        states::{
            frame::{Frame, LiveFrame, LiveInfo},
            json::json_line,
            text::{frame_header, live_text, text, time_of_day},
        },
        tui::{
            app::{App, Mode, describe_filter},
            run::{Frames, View},
        },
    },
    stream::{
        self, LiveConfig, Update,
        live::stop_requested,
        snapshot::{CensusSnapshot, census_snapshot},
    },
};

/// How often the loop looks at the clock when tracing: snapshots are taken, checks settled and
/// live counts redrawn on these ticks.
const TICK: Duration = Duration::from_millis(100);
/// How often the live counts are redrawn between snapshots (text only).
const REDRAW_NS: u64 = 1_000_000_000;
/// How long after a snapshot every transition before it has reached us: the stream holds a
/// transition with a zero port up to 250 ms for its socket's next one (core::pipeline::FILL_HOLD_NS)
/// and drains the ring buffer every 50 ms at the latest.
const SETTLE_NS: u64 = 500_000_000;

pub async fn run(args: StatesArgs) -> anyhow::Result<()> {
    diag::ensure_own_netns(args.filter.netns)?;
    let selection = args.filter.selection(args.state.as_ref());
    let mut diag = DiagSocket::open()?;
    let range = sysctl::port_range();
    let stdout = io::stdout();
    let terminal = stdout.is_terminal();
    let Some(every) = args.watch else {
        let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
        let taken = census_snapshot(
            &mut diag,
            &selection,
            args.filter.families(),
            args.by == Some(GroupBy::Process),
        )?;
        let census = count(&taken, &args, range, None, None);
        draw(&mut out, &args, &census, None, None)?;
        return Ok(out.flush()?);
    };
    // On a terminal, the frames go to the full-screen view's states tab, which writes to the
    // terminal from its own thread: stdout is not held then.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let view = if terminal && !args.json && !args.plain {
        Some(View::start(
            App::new(Mode::States, describe_filter(&args.filter.to_filter())),
            move || {
                let _ = stop.send(true);
            },
            // Its frames come from the watch, which runs whatever is shown.
            |_| {},
        )?)
    } else {
        None
    };
    let mut out: Box<dyn Write> = match &view {
        Some(view) => Box::new(Frames::new(view.sender())),
        None => Box::new(io::BufWriter::with_capacity(64 * 1024, stdout.lock())),
    };
    let result = watch(
        &args, &selection, &mut diag, range, every, terminal, &mut out, stopped,
    )
    .await;
    drop(out);
    if let Some(view) = view {
        view.finish(None)?;
    }
    result
}

#[expect(
    clippy::too_many_arguments,
    reason = "the watch's settings, passed on once"
)]
async fn watch(
    args: &StatesArgs,
    selection: &Selection,
    diag: &mut DiagSocket,
    range: Option<PortRange>,
    every: Duration,
    terminal: bool,
    out: &mut Box<dyn Write>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    if selection.needs_owners() {
        log::warn!(
            "--pid and --comm select sockets by the processes holding them now, which the \
             transition stream does not know: --watch shows snapshots only"
        );
    } else {
        let mut watch = LiveWatch {
            args,
            selection,
            diag,
            range,
            every,
            terminal,
            out,
            wall: clock::wall_clock(),
            live: LiveCensus::only(&selection.states),
            ages: CloseWaitAges::default(),
            started: false,
            previous: None,
            waiting: VecDeque::new(),
            next_snapshot_ns: 0,
            last_draw_ns: 0,
            taken: 0,
            drawn: 0,
        };
        let result = watch_live(&mut watch, stopped.clone()).await;
        let started = watch.started;
        match result {
            Ok(()) => return Ok(out.flush()?),
            Err(err) if is_done(&err) => return Ok(out.flush()?),
            // The probe did not load: the snapshots still tell the counts, exactly.
            Err(err) if !started => log::warn!(
                "--watch shows snapshots only, without live counts between them: {err:#}"
            ),
            Err(err) => return Err(err),
        }
    }
    watch_snapshots(
        diag,
        args,
        selection,
        range,
        every,
        terminal,
        out,
        Some(&mut stopped),
    )
    .await
}

/// Snapshots only: one per interval, each with the change since the previous one.
#[expect(
    clippy::too_many_arguments,
    reason = "the watch's settings, passed on once"
)]
async fn watch_snapshots(
    diag: &mut DiagSocket,
    args: &StatesArgs,
    selection: &Selection,
    range: Option<PortRange>,
    every: Duration,
    terminal: bool,
    out: &mut impl Write,
    mut stopped: Option<&mut tokio::sync::watch::Receiver<bool>>,
) -> anyhow::Result<()> {
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut ticks = interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let wall = clock::wall_clock();
    let mut previous: Option<Census> = None;
    let mut taken = 0;
    loop {
        tokio::select! {
            biased;
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => break,
            _ = stop_requested(stopped.as_deref_mut()) => break,
            _ = ticks.tick() => {}
        }
        let snap = census_snapshot(
            diag,
            selection,
            args.filter.families(),
            args.by == Some(GroupBy::Process),
        )?;
        let census = count(&snap, args, range, previous.as_ref(), None);
        if !args.json {
            header(
                out,
                terminal,
                taken > 0,
                &wall,
                clock::monotonic_ns(),
                &format!("every {every:.1?}"),
            )?;
        }
        draw(out, args, &census, previous.as_ref(), None)?;
        out.flush()?;
        previous = Some(census);
        taken += 1;
        if args.count.is_some_and(|n| taken >= n) {
            break;
        }
    }
    Ok(out.flush()?)
}

/// The state of a watch kept live by the transition stream; owned by the stream's loop.
struct LiveWatch<'a, W: Write> {
    args: &'a StatesArgs,
    selection: &'a Selection,
    diag: &'a mut DiagSocket,
    range: Option<PortRange>,
    every: Duration,
    terminal: bool,
    out: &'a mut W,
    wall: WallClock,
    live: LiveCensus,
    ages: CloseWaitAges,
    /// The probe is attached.
    started: bool,
    /// The last snapshot drawn.
    previous: Option<Census>,
    /// Snapshots taken and not drawn yet: each waits for its check, with its dump's start.
    waiting: VecDeque<(u64, Census)>,
    next_snapshot_ns: u64,
    last_draw_ns: u64,
    taken: u64,
    drawn: u64,
}

/// `--count` snapshots were drawn: ends the stream's loop from inside a callback, which can
/// only stop it with an error.
#[derive(Debug, thiserror::Error)]
#[error("the requested snapshots were shown")]
struct Done;

fn is_done(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .is_some_and(|inner| inner.is::<Done>())
    })
}

async fn watch_live<W: Write>(
    watch: &mut LiveWatch<'_, W>,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut filter = watch.args.filter.to_filter();
    // inet_diag lists this namespace's sockets only; the probe sees every namespace.
    match procfs::own_netns() {
        Ok(netns) => filter.netns = Some(netns),
        Err(err) => log::warn!(
            "cannot read /proc/self/ns/net ({err}): the live counts include every namespace"
        ),
    }
    let live = LiveConfig {
        probe: ProbeConfig {
            filter: filter.kernel(),
            ..ProbeConfig::default()
        },
        interval: Some(TICK),
        duration: None,
        tcp_counters: false,
        census: Some(filter.clone()),
        stop: Some(stopped),
        drop_capabilities: false,
    };
    let pipeline = PipelineConfig {
        filter,
        ..PipelineConfig::default()
    };
    stream::run::<()>(live, pipeline, |update| match update {
        Update::Started(origin, _) => {
            watch.started = true;
            watch.next_snapshot_ns = origin.start_ns;
            watch.take(0)?;
            watch.settle(origin.start_ns, 0)
        }
        Update::Transition(t, _) => {
            watch.live.apply(t);
            watch.ages.apply(t);
            Ok(())
        }
        Update::Tick(totals) => watch.tick(totals.now_ns, totals.losses.lost_events()),
        Update::Signal(..) | Update::Drop(..) | Update::BatchEnd => Ok(()),
    })
    .await?;
    Ok(())
}

impl<W: Write> LiveWatch<'_, W> {
    fn wanted(&self) -> bool {
        self.args.count.is_none_or(|n| self.taken < n)
    }

    fn tick(&mut self, now_ns: u64, lost: u64) -> io::Result<()> {
        self.settle(now_ns, lost)?;
        if self.wanted() && now_ns + TICK.as_nanos() as u64 / 2 >= self.next_snapshot_ns {
            return self.take(lost);
        }
        if !self.args.json
            && self.waiting.is_empty()
            && now_ns.saturating_sub(self.last_draw_ns) >= REDRAW_NS
            && let Some(previous) = &self.previous
        {
            let counts = self.live.counts(now_ns);
            let what = format!(
                "live: {} since the snapshot of {}; snapshots every {:.1?}",
                plural(self.live.transitions_since(), "transition", "transitions"),
                time_of_day(&self.wall, self.live.base_ns()),
                self.every
            );
            header(self.out, self.terminal, true, &self.wall, now_ns, &what)?;
            live_text(
                self.out,
                &LiveFrame {
                    counts: &counts,
                    snapshot: previous,
                },
            )?;
            self.out.flush()?;
            self.last_draw_ns = now_ns;
        }
        Ok(())
    }

    /// Takes a snapshot: the new base of the live counts. It is drawn once checked.
    fn take(&mut self, lost: u64) -> io::Result<()> {
        let start_ns = clock::monotonic_ns();
        let taken = census_snapshot(
            self.diag,
            self.selection,
            self.args.filter.families(),
            self.args.by == Some(GroupBy::Process),
        )
        .map_err(io::Error::other)?;
        let end_ns = clock::monotonic_ns();
        self.ages.snapshot(&taken.sockets, start_ns);
        let census = count(
            &taken,
            self.args,
            self.range,
            self.waiting
                .back()
                .map(|(_, c)| c)
                .or(self.previous.as_ref()),
            Some((&self.ages, start_ns)),
        );
        self.live
            .rebase(Split::of(&taken.sockets), start_ns, end_ns, lost);
        self.waiting.push_back((start_ns, census));
        self.taken += 1;
        let every = self.every.as_nanos() as u64;
        self.next_snapshot_ns = (self.next_snapshot_ns + every).max(start_ns + every / 2);
        Ok(())
    }

    /// Draws the snapshots whose check is complete; the first one has none and is drawn at once.
    fn settle(&mut self, now_ns: u64, lost: u64) -> io::Result<()> {
        let checks = self.live.settle(now_ns, SETTLE_NS, lost);
        if self.previous.is_none()
            && let Some((at_ns, census)) = self.waiting.pop_front()
        {
            self.draw(at_ns, census, None)?;
        }
        for check in checks {
            let Some(i) = self.waiting.iter().position(|(at, _)| *at == check.at_ns) else {
                continue;
            };
            let (at_ns, census) = self.waiting.remove(i).expect("just found");
            self.draw(at_ns, census, Some(&check))?;
        }
        Ok(())
    }

    fn draw(&mut self, at_ns: u64, census: Census, check: Option<&Check>) -> io::Result<()> {
        if !self.args.json {
            let what = format!("snapshot, every {:.1?}", self.every);
            header(
                self.out,
                self.terminal,
                self.drawn > 0,
                &self.wall,
                at_ns,
                &what,
            )?;
        }
        let live = LiveInfo {
            snapshot_ns: at_ns,
            check,
        };
        draw(
            self.out,
            self.args,
            &census,
            self.previous.as_ref(),
            Some(live),
        )?;
        self.out.flush()?;
        self.previous = Some(census);
        self.drawn += 1;
        self.last_draw_ns = at_ns.max(self.last_draw_ns);
        if self.args.count.is_some_and(|n| self.drawn >= n) {
            return Err(io::Error::other(Done));
        }
        Ok(())
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The line above each table, at kernel time `ns`.
fn header(
    out: &mut impl Write,
    terminal: bool,
    after_another: bool,
    wall: &WallClock,
    ns: u64,
    what: &str,
) -> io::Result<()> {
    frame_header(out, terminal, after_another, &time_of_day(wall, ns), what)
}

/// One snapshot of the selected sockets, with what its findings need: owners where they are
/// shown, CLOSE_WAIT sockets' tcp_info, the namespace's counters and sysctls.
fn count(
    taken: &CensusSnapshot,
    args: &StatesArgs,
    range: Option<PortRange>,
    previous: Option<&Census>,
    close_wait_ages: Option<(&CloseWaitAges, u64)>,
) -> Census {
    let ctx = Context {
        owners: taken.owners.as_ref(),
        port_range: range,
        close_wait_ages,
        close_wait_threshold_ns: args.close_wait_age.as_nanos() as u64,
        sees_every_process: owners::sees_every_process(),
        kernel: Some(taken.kernel),
    };
    let mut census = census::count(&taken.sockets, args.by, &ctx, previous);
    census.interrupted = taken.interrupted;
    census
}

fn draw(
    out: &mut impl Write,
    args: &StatesArgs,
    census: &Census,
    previous: Option<&Census>,
    live: Option<LiveInfo<'_>>,
) -> io::Result<()> {
    let frame = Frame {
        census,
        previous,
        by: args.by,
        interrupted: census.interrupted,
        live,
    };
    if args.json {
        json_line(out, &frame)
    } else {
        text(out, &frame)
    }
}
