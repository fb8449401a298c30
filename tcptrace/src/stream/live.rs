//! The live loop: one owner of the state, waiting at once on the ring buffer, the kernel log,
//! a tick, the deadline and the signals, and feeding a [`RawSink`]; before it, the start-up
//! census of the sockets that predate tracing ([`census`]).

use std::{io, path::Path, time::Duration};

use anyhow::Context as _;
use tokio::{
    signal::unix::{SignalKind, signal},
    time::{Instant, MissedTickBehavior, interval, sleep_until},
};

use crate::{
    core::{
        counters::TcpCounters,
        filter::EventFilter,
        losses::KernelCounters,
        pipeline::PipelineConfig,
        record::{Reader, RecordError},
        reset_reason::ResetReasons,
    },
    kernel::{
        probe::{Probe, ProbeConfig},
        source::Session,
    },
    os::{clock, host, procfs, record_file},
    stream::{
        census, privileges,
        replay::{ReplayError, replay},
        sink::{Origin, RawSink, Reading},
        updates::{Totals, Update, Updates},
    },
};

/// How often the ring buffer is drained and held transitions are checked, at the least: the
/// kernel side wakes us only once enough data waits, so this bounds the delay on a quiet host.
pub const DRAIN_EVERY: Duration = Duration::from_millis(50);

pub struct LiveConfig {
    pub probe: ProbeConfig,
    /// The command's interval; `None`: no [`RawSink::tick`].
    pub interval: Option<Duration>,
    pub duration: Option<Duration>,
    /// Also read the kernel's TCP counters (/proc/net/snmp, /proc/net/netstat) at each reading.
    pub tcp_counters: bool,
    /// Take the start-up census of the sockets that predate tracing, of what this filter shows
    /// (its family, ports and namespace), to seed their owners; `None`: no census.
    pub census: Option<EventFilter>,
    /// Ends tracing as Ctrl-C does once it holds true or its sender is dropped: the
    /// full-screen view's quit, which in raw mode comes as a key, not a signal.
    pub stop: Option<tokio::sync::watch::Receiver<bool>>,
    /// Give up, once the probe is attached and the census taken, every capability the loop no
    /// longer needs (a long-running exporter's hardening).
    pub drop_capabilities: bool,
}

/// Reads the kernel's TCP counters, warning once if they cannot be read: the request-socket
/// rows and the check against the kernel then go missing, and the user must know why.
struct TcpCounterReader {
    wanted: bool,
    warned: bool,
}

impl TcpCounterReader {
    fn read(&mut self) -> Option<TcpCounters> {
        if !self.wanted {
            return None;
        }
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

/// The origin of live tracing on this machine, now.
pub fn live_origin() -> Origin {
    let own_netns = match procfs::own_netns() {
        Ok(netns) => Some(netns),
        Err(err) => {
            log::warn!(
                "cannot read /proc/self/ns/net ({err}): every socket is assumed to be in this namespace"
            );
            None
        }
    };
    Origin {
        own_netns,
        wall: clock::wall_clock(),
        start_ns: clock::monotonic_ns(),
        reset_reasons: ResetReasons::default(),
        programs_attached: 0,
        fates: false,
    }
}

/// Runs the live stream through the pipeline, handing each [`Update`] to the command; returns
/// the final totals.
pub async fn run<X: Default>(
    config: LiveConfig,
    pipeline: PipelineConfig,
    on_update: impl FnMut(Update<'_, X>) -> io::Result<()>,
) -> anyhow::Result<Totals> {
    let mut updates = Updates::new(pipeline, on_update);
    run_live(config, &mut updates).await?;
    Ok(updates.totals().clone())
}

/// Replays a `tcptrace record` file through the pipeline, handing each [`Update`] to the
/// command; returns the final totals, and the damage that ended the file early, if any (every
/// frame before it was replayed).
pub fn run_replay<X: Default>(
    path: &Path,
    pipeline: PipelineConfig,
    on_update: impl FnMut(Update<'_, X>) -> io::Result<()>,
) -> anyhow::Result<(Totals, Option<RecordError>)> {
    let input = record_file::open(path)?;
    let (reader, header) = Reader::new(input).map_err(|err| record_error(err, path))?;
    // What the recorder's kernel filtered, the replay filters too.
    let pipeline = PipelineConfig {
        filter: pipeline.filter.with_recorded(&header.filter),
        ..pipeline
    };
    let mut updates = Updates::new(pipeline, on_update);
    let replayed = replay(reader, header, &mut updates).map_err(|err| match err {
        ReplayError::Record(err) => record_error(err, path),
        ReplayError::Sink(err) => err.into(),
    })?;
    Ok((updates.totals().clone(), replayed.damage))
}

fn record_error(err: RecordError, path: &Path) -> anyhow::Error {
    anyhow::Error::new(err).context(path.display().to_string())
}

/// Loads the probe and feeds `sink` until Ctrl-C, SIGTERM or the duration.
pub async fn run_live(mut config: LiveConfig, sink: &mut impl RawSink) -> anyhow::Result<()> {
    let mut probe = Probe::load(&config.probe, host::kernel_release().as_deref())?;
    // Attached, not yet announced: the owners of what exists now, before anyone starts more.
    let seeds = match &config.census {
        Some(filter) => census::take(&mut probe, filter).0,
        None => Vec::new(),
    };
    let reset_reasons = probe.reset_reasons.clone();
    let programs_attached = u32::try_from(probe.attached().len()).unwrap_or(u32::MAX);
    let mut session = Session::new(probe).context("reading the probe's maps")?;
    for seed in &seeds {
        sink.seed(seed)?;
    }
    drop(seeds);
    if config.drop_capabilities {
        privileges::drop_after_attach(&session);
    }
    let mut tcp = TcpCounterReader {
        wanted: config.tcp_counters,
        warned: false,
    };

    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    // An ssh session that drops sends SIGHUP: end as on Ctrl-C, with the summary, not killed.
    let mut sighup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let deadline = config.duration.map(|d| Instant::now() + d);
    let mut drain_tick = interval(DRAIN_EVERY);
    drain_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);

    // The sink takes its baselines first: whoever waits for the "attached" line to start a
    // workload must find them taken.
    let origin = Origin {
        reset_reasons,
        programs_attached,
        fates: session.drops_attached(),
        ..live_origin()
    };
    let reading = Reading {
        now_ns: origin.start_ns,
        kernel: session.counters().context("reading the probe's counters")?,
        tcp: tcp.read(),
    };
    sink.started(&origin, &reading)?;
    log::info!("probe attached to sock:inet_sock_set_state");
    let mut user_tick = interval(config.interval.unwrap_or(Duration::from_secs(3600)));
    user_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    user_tick.reset();
    // A sink's error inside the ring buffer's callback, kept until the callback returns.
    let mut failed: Option<io::Error> = None;

    loop {
        let mut stop = false;
        let mut user_ticked = false;
        let mut drain_ticked = false;
        tokio::select! {
            biased;
            _ = sigint.recv() => stop = true,
            _ = sigterm.recv() => stop = true,
            _ = sighup.recv() => stop = true,
            _ = async { sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => stop = true,
            _ = stop_requested(config.stop.as_mut()), if config.stop.is_some() => stop = true,
            read = session.events.read(|bytes| forward(sink, bytes, &mut failed)) => {
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
                .drain(|bytes| forward(sink, bytes, &mut failed));
        }
        if let Some(err) = failed.take() {
            return Err(err.into());
        }
        let now_ns = clock::monotonic_ns();
        sink.wakeup_end(now_ns)?;
        if stop {
            break;
        }
        if user_ticked {
            let reading = Reading {
                now_ns,
                kernel: session.counters().context("reading the probe's counters")?,
                tcp: tcp.read(),
            };
            sink.tick(&reading)?;
        }
    }
    let kernel = session.counters().context("reading the probe's counters")?;
    log_probe_stats(&session, &kernel);
    // Detach before the final reading: the kernel counters read now cover the whole window.
    drop(session);
    let reading = Reading {
        now_ns: clock::monotonic_ns(),
        kernel,
        tcp: tcp.read(),
    };
    sink.stopped(&reading)?;
    Ok(())
}

/// Resolves once `stop` holds true or its sender is gone (never without one).
pub async fn stop_requested(stop: Option<&mut tokio::sync::watch::Receiver<bool>>) {
    match stop {
        Some(stop) => {
            let _ = stop.wait_for(|stop| *stop).await;
        }
        None => std::future::pending().await,
    }
}

fn forward(sink: &mut impl RawSink, bytes: &[u8], failed: &mut Option<io::Error>) {
    if failed.is_none()
        && let Err(err) = sink.record(bytes)
    {
        *failed = Some(err);
    }
}

fn log_probe_stats(session: &Session, kernel: &KernelCounters) {
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
    if let Some(Ok(stats)) = session.drop_program_stats()
        && stats.run_count > 0
    {
        log::info!(
            "skb:kfree_skb program: {} runs, {} ns per run on average, {} ns in all",
            stats.run_count,
            stats.run_time_ns / stats.run_count,
            stats.run_time_ns
        );
    }
    log::info!(
        "kernel: {} transitions recorded by the nested program; {} ring buffer full, {} skipped \
         and not recorded",
        kernel.nested_caught,
        kernel.ringbuf_full,
        kernel.skipped_by_kernel
    );
}
