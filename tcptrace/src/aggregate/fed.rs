//! Test support: the aggregator fed as the stream feeds it, through the stream's per-socket
//! table (times, owners, births), so that tests hand it transitions as the kernel emits them.

use super::{Aggregator, Config, SocketState, snapshot::Snapshot};
use crate::core::{
    event::{Signal, Transition},
    losses::Losses,
    sockets::{DEFAULT_MAX_SOCKETS, Follow, SocketTable},
};

pub struct Fed {
    pub agg: Aggregator,
    table: SocketTable<SocketState>,
    losses: Losses,
}

impl Fed {
    pub fn new(max_sockets: usize, config: Config) -> Self {
        Self {
            agg: Aggregator::new(config),
            table: SocketTable::new(max_sockets),
            losses: Losses::default(),
        }
    }

    pub fn with(config: Config) -> Self {
        Self::new(DEFAULT_MAX_SOCKETS, config)
    }

    pub fn start(&mut self, now_ns: u64) {
        self.agg.start(now_ns);
    }

    pub fn feed_transition(&mut self, t: &Transition) {
        let agg = &mut self.agg;
        self.table.apply(&mut t.clone(), |t, entry| {
            agg.feed_transition(t, entry);
            Follow::Keep
        });
    }

    pub fn feed_signal(&mut self, signal: &Signal) {
        self.agg.feed_signal(signal, self.table.get_mut(signal.sk));
    }

    pub fn trace_fates(&mut self) {
        self.agg.trace_fates();
    }

    pub fn feed_drop(&mut self, drop: &crate::core::event::PacketDrop) {
        self.agg.feed_drop(drop);
    }

    pub fn end_batch(&mut self) {
        self.agg.end_batch();
    }

    pub fn set_losses(&mut self, losses: Losses) {
        self.losses = losses;
    }

    pub fn feed_kernel_counters(&mut self, counters: crate::core::counters::TcpCounters) {
        self.agg.feed_kernel_counters(counters);
    }

    pub fn snapshot(&mut self, now_ns: u64) -> Snapshot {
        let table = self.table.stats();
        self.agg.set_stream(
            Losses {
                sockets_forgotten: table.forgotten,
                ..self.losses
            },
            table,
        );
        self.agg.snapshot(now_ns)
    }
}
