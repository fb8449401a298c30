//! The event loop every tracing command runs: one owner of the state, waiting at once on the ring
//! buffer, the kernel log, a tick, the deadline and the signals, and handing typed
//! [`Update`]s to the command.

use std::{io, time::Duration};

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    time::{Instant, MissedTickBehavior, interval, sleep_until},
};

use crate::{
    clock,
    decode::decode,
    event::{Record, Signal, Transition},
    filter::EventFilter,
    peer_fill::PeerFill,
    probe::{Probe, ProbeConfig},
    source::{KernelCounters, Session},
};

/// How long a transition waits for its socket's next one to fill in a zero port.
const FILL_HOLD_NS: u64 = 250_000_000;
/// How often held transitions are checked, at the least.
const FILL_TICK: Duration = Duration::from_millis(100);

/// What the loop hands to the command.
pub enum Update<'a> {
    /// A complete transition that passed the filter.
    Transition(&'a Transition),
    /// A reset or retransmission (only when the probe attaches the cause tracepoints). Not
    /// filtered: the socket it concerns decides, and only the command tracks sockets.
    Signal(&'a Signal),
    /// The command's interval elapsed: redraw.
    Tick(&'a Totals),
    /// The probe is attached: events from now on are seen.
    Started,
    /// The transitions of one wake-up were handed out: a good moment to flush output.
    BatchEnd,
}

/// Running totals of the stream.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    /// Transitions handed to the command.
    pub transitions: u64,
    /// Records the decoder rejected.
    pub invalid: u64,
    /// The kernel's own counters, as of the last tick.
    pub kernel: KernelCounters,
    /// Kernel monotonic time of the last tick.
    pub now_ns: u64,
}

pub struct StreamConfig {
    pub probe: ProbeConfig,
    pub filter: EventFilter,
    /// The command's redraw interval; `None`: no [`Update::Tick`].
    pub interval: Option<Duration>,
    pub duration: Option<Duration>,
}

/// What is left at the end.
pub struct Summary {
    pub totals: Totals,
    /// Sockets the kernel still tracked at the end.
    pub tracked_sockets: usize,
}

impl Summary {
    /// `N transitions, M lost` and any other loss, for stderr.
    pub fn line(&self) -> String {
        let t = &self.totals;
        let mut line = format!(
            "{} transitions, {} lost",
            t.transitions, t.kernel.ringbuf_full
        );
        if t.invalid > 0 {
            line.push_str(&format!(", {} invalid records", t.invalid));
        }
        // Every socket the kernel inserted leaves its map on →CLOSE or is still there; the rest
        // were evicted, and their next transitions lack a time in state.
        let evicted = t
            .kernel
            .sock_inserted
            .saturating_sub(t.kernel.sock_removed)
            .saturating_sub(self.tracked_sockets as u64);
        if evicted > 0 {
            line.push_str(&format!(
                ", {evicted} sockets evicted from the kernel's map"
            ));
        }
        if t.kernel.sock_update_failed > 0 {
            line.push_str(&format!(
                ", {} socket-map updates failed",
                t.kernel.sock_update_failed
            ));
        }
        line
    }
}

/// Loads the probe and runs the loop until Ctrl-C, SIGTERM or the duration.
pub async fn run(
    config: StreamConfig,
    mut on_update: impl FnMut(Update<'_>) -> io::Result<()>,
) -> anyhow::Result<Summary> {
    let probe = Probe::load(&config.probe)?;
    let mut session = Session::new(probe).context("reading the probe's maps")?;
    let mut fill = PeerFill::new(FILL_HOLD_NS);
    let mut totals = Totals::default();
    let filter = config.filter;

    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let deadline = config.duration.map(|d| Instant::now() + d);
    let mut fill_tick = interval(FILL_TICK);
    fill_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);

    log::info!("probe attached to sock:inet_sock_set_state");
    on_update(Update::Started)?;
    let mut user_tick = interval(config.interval.unwrap_or(Duration::from_secs(3600)));
    user_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    user_tick.reset();
    let mut signals: Vec<Signal> = Vec::new();
    let mut ready: Vec<Transition> = Vec::with_capacity(1024);
    let mut decoded: Vec<Transition> = Vec::with_capacity(1024);

    loop {
        let mut stop = false;
        let mut user_ticked = false;
        tokio::select! {
            biased;
            _ = sigint.recv() => stop = true,
            _ = sigterm.recv() => stop = true,
            _ = async { sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => stop = true,
            read = session.events.read(|bytes| sort_record(bytes, &mut decoded, &mut signals, &mut totals.invalid)) => {
                read.context("reading the event ring buffer")?;
            }
            forwarded = async { session.log.as_mut().expect("guarded").forward().await }, if session.log.is_some() => {
                forwarded.context("reading the kernel log")?;
            }
            _ = fill_tick.tick() => {}
            _ = user_tick.tick(), if config.interval.is_some() => user_ticked = true,
        }
        if stop {
            session
                .events
                .drain(|bytes| sort_record(bytes, &mut decoded, &mut signals, &mut totals.invalid));
        }
        // Signals go first: a reset is traced before the transition it causes.
        for signal in signals.drain(..) {
            on_update(Update::Signal(&signal))?;
        }
        for t in decoded.drain(..) {
            fill.push(t, &mut |t| ready.push(t));
        }
        let now_ns = clock::monotonic_ns();
        if stop {
            fill.flush(&mut |t| ready.push(t));
        } else {
            fill.expire(now_ns, &mut |t| ready.push(t));
        }
        let handed_before = totals.transitions;
        for t in ready.drain(..) {
            if filter.matches(&t) {
                totals.transitions += 1;
                on_update(Update::Transition(&t))?;
            }
        }
        if totals.transitions != handed_before {
            on_update(Update::BatchEnd)?;
        }
        if user_ticked || stop {
            totals.kernel = session.counters().context("reading the probe's counters")?;
            totals.now_ns = now_ns;
        }
        if user_ticked {
            on_update(Update::Tick(&totals))?;
        }
        if stop {
            break;
        }
    }
    let tracked_sockets = session.tracked_sockets();
    Ok(Summary {
        totals,
        tracked_sockets,
    })
}

/// Decodes one raw record into `transitions` or `signals`, counting what is invalid.
fn sort_record(
    bytes: &[u8],
    transitions: &mut Vec<Transition>,
    signals: &mut Vec<Signal>,
    invalid: &mut u64,
) {
    match decode(bytes) {
        Ok(Record::Transition(t)) => transitions.push(t),
        Ok(Record::Signal(signal)) => signals.push(signal),
        Err(err) => {
            *invalid += 1;
            log::debug!("invalid record: {err}");
        }
    }
}
