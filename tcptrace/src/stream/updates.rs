//! The sink every displaying command uses, live or replayed: raw records through the pure
//! [`Pipeline`], handed to the command as typed [`Update`]s.

use std::io;

use crate::{
    core::{
        counters::TcpCounters,
        event::{PacketDrop, Signal, Transition},
        losses::Losses,
        pipeline::{Output, Pipeline, PipelineConfig},
        seed::SocketSeed,
        sockets::{Entry, TableStats},
    },
    stream::sink::{Origin, RawSink, Reading},
};

/// What the stream hands to the command.
pub enum Update<'a, X> {
    /// Tracing started: events from now on are seen.
    Started(&'a Origin, &'a Totals),
    /// A complete transition that passed the filter, with its socket's entry in the table.
    Transition(&'a Transition, &'a mut Entry<X>),
    /// A reset or retransmission (only when the probe attaches the cause tracepoints), with its
    /// socket's entry when the table follows it. Not filtered: the socket it concerns decides.
    Signal(&'a Signal, Option<&'a mut Entry<X>>),
    /// A packet dropped for a request socket's fate or a closed port (only when the probe
    /// attaches `skb:kfree_skb`), filtered.
    Drop(&'a PacketDrop),
    /// The transitions of one wake-up were handed out: a good moment to flush output.
    BatchEnd,
    /// The command's interval elapsed: redraw.
    Tick(&'a Totals),
}

/// Running totals of the stream, as of the last reading.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Transitions handed to the command.
    pub transitions: u64,
    pub losses: Losses,
    pub table: TableStats,
    /// Kernel monotonic time of the reading.
    pub now_ns: u64,
    /// The kernel's TCP counters, when read.
    pub tcp: Option<TcpCounters>,
}

impl Totals {
    /// The final line for stderr: `N transitions, M lost` and any other loss.
    pub fn summary_line(&self) -> String {
        format!("{} transitions, {}", self.transitions, self.losses.line())
    }
}

pub struct Updates<X, F> {
    pipeline: Pipeline<X>,
    on_update: F,
    totals: Totals,
    /// Transitions handed out at the end of the last wake-up.
    handed_at_wakeup: u64,
}

impl<X, F> Updates<X, F>
where
    X: Default,
    F: FnMut(Update<'_, X>) -> io::Result<()>,
{
    pub fn new(config: PipelineConfig, on_update: F) -> Self {
        Self {
            pipeline: Pipeline::new(config),
            on_update,
            totals: Totals::default(),
            handed_at_wakeup: 0,
        }
    }

    /// The totals as of the last reading.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    fn read(&mut self, reading: &Reading) {
        self.totals = Totals {
            transitions: self.pipeline.transitions(),
            losses: self.pipeline.losses(reading.kernel),
            table: self.pipeline.table(),
            now_ns: reading.now_ns,
            tcp: reading.tcp,
        };
    }

    /// Hands the pipeline's outputs to the command, keeping the first error.
    fn emit(on_update: &mut F, failed: &mut Option<io::Error>, output: Output<'_, X>) {
        if failed.is_some() {
            return;
        }
        let result = match output {
            Output::Transition(t, entry) => on_update(Update::Transition(t, entry)),
            Output::Signal(s, entry) => on_update(Update::Signal(s, entry)),
            Output::Drop(d) => on_update(Update::Drop(d)),
        };
        if let Err(err) = result {
            *failed = Some(err);
        }
    }

    fn batch_end(&mut self) -> io::Result<()> {
        let handed = self.pipeline.transitions();
        if handed != self.handed_at_wakeup {
            self.handed_at_wakeup = handed;
            (self.on_update)(Update::BatchEnd)?;
        }
        Ok(())
    }
}

impl<X, F> RawSink for Updates<X, F>
where
    X: Default,
    F: FnMut(Update<'_, X>) -> io::Result<()>,
{
    fn seed(&mut self, seed: &SocketSeed) -> io::Result<()> {
        self.pipeline.seed(*seed);
        Ok(())
    }

    fn started(&mut self, origin: &Origin, reading: &Reading) -> io::Result<()> {
        self.read(reading);
        (self.on_update)(Update::Started(origin, &self.totals))
    }

    fn record(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut failed = None;
        let on_update = &mut self.on_update;
        self.pipeline.push_bytes(bytes, &mut |output| {
            Self::emit(on_update, &mut failed, output)
        });
        failed.map_or(Ok(()), Err)
    }

    fn wakeup_end(&mut self, now_ns: u64) -> io::Result<()> {
        let mut failed = None;
        let on_update = &mut self.on_update;
        self.pipeline.tick(now_ns, &mut |output| {
            Self::emit(on_update, &mut failed, output)
        });
        failed.map_or(Ok(()), Err)?;
        self.batch_end()
    }

    fn tick(&mut self, reading: &Reading) -> io::Result<()> {
        self.read(reading);
        (self.on_update)(Update::Tick(&self.totals))
    }

    fn stopped(&mut self, reading: &Reading) -> io::Result<()> {
        let mut failed = None;
        let on_update = &mut self.on_update;
        self.pipeline
            .flush(&mut |output| Self::emit(on_update, &mut failed, output));
        failed.map_or(Ok(()), Err)?;
        self.batch_end()?;
        self.read(reading);
        Ok(())
    }
}
