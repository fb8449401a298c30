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
    core::{
        clock,
        decode::decode,
        event::{Record, Signal, Transition},
        filter::EventFilter,
        peer_fill::PeerFill,
        sockets::Lifecycles,
    },
    kernel::{
        probe::{Probe, ProbeConfig},
        source::{KernelCounters, Session},
    },
};

/// How long a transition waits for its socket's next one to fill in a zero port.
const FILL_HOLD_NS: u64 = 250_000_000;
/// How often the ring buffer is drained and held transitions are checked, at the least: the
/// kernel side wakes us only once enough data waits, so this bounds the delay on a quiet host.
pub const DRAIN_EVERY: Duration = Duration::from_millis(50);

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
    /// Sockets forgotten because the per-socket table was full: their later transitions lack
    /// a time in state.
    pub untracked_sockets: u64,
}

pub struct StreamConfig {
    pub probe: ProbeConfig,
    pub filter: EventFilter,
    /// The command's redraw interval; `None`: no [`Update::Tick`].
    pub interval: Option<Duration>,
    pub duration: Option<Duration>,
}

impl Totals {
    /// The final line for stderr: `N transitions, M lost` and any other loss.
    pub fn summary_line(&self) -> String {
        let mut line = format!(
            "{} transitions, {} lost",
            self.transitions,
            self.kernel.lost()
        );
        if self.kernel.lost() > 0 {
            // Comma-separated like the rest, so that scripts can split the line.
            line.push_str(&format!(
                ", {} (a BPF program was running)",
                self.kernel.loss_breakdown()
            ));
        }
        if self.invalid > 0 {
            line.push_str(&format!(", {} invalid records", self.invalid));
        }
        if self.untracked_sockets > 0 {
            line.push_str(&format!(
                ", {} sockets untracked (table full)",
                self.untracked_sockets
            ));
        }
        line
    }
}

/// Loads the probe and runs the loop until Ctrl-C, SIGTERM or the duration; returns the final
/// totals.
pub async fn run(
    config: StreamConfig,
    mut on_update: impl FnMut(Update<'_>) -> io::Result<()>,
) -> anyhow::Result<Totals> {
    let probe = Probe::load(&config.probe)?;
    let mut session = Session::new(probe).context("reading the probe's maps")?;
    let mut lifecycles = Lifecycles::default();
    let mut fill = PeerFill::new(FILL_HOLD_NS);
    let mut totals = Totals::default();
    let filter = config.filter;

    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let deadline = config.duration.map(|d| Instant::now() + d);
    let mut drain_tick = interval(DRAIN_EVERY);
    drain_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);

    // The command takes its baselines (kernel counters) first: whoever waits for this line
    // to start a workload must find them taken.
    on_update(Update::Started)?;
    log::info!("probe attached to sock:inet_sock_set_state");
    let mut user_tick = interval(config.interval.unwrap_or(Duration::from_secs(3600)));
    user_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    user_tick.reset();
    let mut ready: Vec<Record> = Vec::with_capacity(1024);
    let mut decoded: Vec<Record> = Vec::with_capacity(1024);

    loop {
        let mut stop = false;
        let mut user_ticked = false;
        let mut drain_ticked = false;
        tokio::select! {
            biased;
            _ = sigint.recv() => stop = true,
            _ = sigterm.recv() => stop = true,
            _ = async { sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => stop = true,
            read = session.events.read(|bytes| decode_into(bytes, &mut decoded, &mut totals.invalid)) => {
                read.context("reading the event ring buffer")?;
            }
            forwarded = async { session.log.as_mut().expect("guarded").forward().await }, if session.log.is_some() => {
                forwarded.context("reading the kernel log")?;
            }
            _ = drain_tick.tick() => drain_ticked = true,
            _ = user_tick.tick(), if config.interval.is_some() => user_ticked = true,
        }
        if stop || drain_ticked {
            session
                .events
                .drain(|bytes| decode_into(bytes, &mut decoded, &mut totals.invalid));
        }
        for mut record in decoded.drain(..) {
            if let Record::Transition(t) = &mut record {
                lifecycles.apply(t);
            }
            fill.push(record, &mut |r| ready.push(r));
        }
        let now_ns = clock::monotonic_ns();
        if stop {
            fill.flush(&mut |t| ready.push(t));
        } else {
            fill.expire(now_ns, &mut |t| ready.push(t));
        }
        let handed_before = totals.transitions;
        for record in ready.drain(..) {
            match record {
                Record::Transition(t) if filter.matches(&t) => {
                    totals.transitions += 1;
                    on_update(Update::Transition(&t))?;
                }
                Record::Transition(t) => {
                    // Ports that fail here were unknown to the kernel's filter: a connecting
                    // socket's local port, learned only after CLOSE→SYN_SENT. The kernel drops
                    // its later transitions, so its →CLOSE would never free its entry.
                    if !filter.ports_match(&t) {
                        lifecycles.forget(t.sk, t.ts_ns);
                    }
                }
                Record::Signal(signal) => on_update(Update::Signal(&signal))?,
            }
        }
        if totals.transitions != handed_before {
            on_update(Update::BatchEnd)?;
        }
        if user_ticked || stop {
            totals.kernel = session.counters().context("reading the probe's counters")?;
            totals.now_ns = now_ns;
            totals.untracked_sockets = lifecycles.untracked();
        }
        if user_ticked {
            on_update(Update::Tick(&totals))?;
        }
        if stop {
            break;
        }
    }
    // With `sysctl kernel.bpf_stats_enabled=1` the kernel times every run: the probe's own cost.
    if let Ok(stats) = session.program_stats()
        && stats.run_count > 0
    {
        log::info!(
            "kernel probe: {} runs, {} ns per run on average",
            stats.run_count,
            stats.run_time_ns / stats.run_count
        );
    }
    log::info!(
        "{} sockets followed at the end, {} forgotten (table full)",
        lifecycles.tracked(),
        lifecycles.untracked()
    );
    log::info!(
        "kernel: {} transitions recorded by the nested program; {} ring buffer full, {} skipped \
         and not recorded",
        totals.kernel.nested_caught,
        totals.kernel.ringbuf_full,
        totals.kernel.skipped_by_kernel
    );
    Ok(totals)
}

/// Decodes one raw record into `records`, counting what is invalid.
fn decode_into(bytes: &[u8], records: &mut Vec<Record>, invalid: &mut u64) {
    match decode(bytes) {
        Ok(record) => records.push(record),
        Err(err) => {
            *invalid += 1;
            log::debug!("invalid record: {err}");
        }
    }
}
