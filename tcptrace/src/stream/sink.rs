//! What a source of records feeds: the raw records, the end of each wake-up and each reading
//! of the counters, in the order the live loop met them (a replay feeds the same).

use std::io;

use crate::core::{
    clock::WallClock, counters::TcpCounters, losses::KernelCounters, reset_reason::ResetReasons,
    seed::SocketSeed,
};

/// What is known of the traced machine when tracing starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origin {
    /// tcptrace's own network namespace, whose kernel counters are read; `None` if unknown.
    pub own_netns: Option<u32>,
    pub wall: WallClock,
    /// Kernel time at the start.
    pub start_ns: u64,
    /// The names of the traced kernel's reset reasons (empty before Linux 6.10).
    pub reset_reasons: ResetReasons,
    /// BPF programs the probe attached (0 when replaying).
    pub programs_attached: u32,
    /// Whether the program on `skb:kfree_skb` is attached (live), or was (a recording that
    /// says so): the fates of request sockets and closed ports are seen.
    pub fates: bool,
}

/// One reading of the counters: the probe's, and the kernel's TCP counters when asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reading {
    pub now_ns: u64,
    pub kernel: KernelCounters,
    pub tcp: Option<TcpCounters>,
}

/// What the live loop (or a replay) feeds.
pub trait RawSink {
    /// The owner of a socket that predates tracing, as the start-up census found it; every
    /// one comes before [`Self::started`].
    fn seed(&mut self, seed: &SocketSeed) -> io::Result<()>;
    /// The probe is attached: events from now on are seen; `reading` is the baseline.
    fn started(&mut self, origin: &Origin, reading: &Reading) -> io::Result<()>;
    /// One raw record, as the probe wrote it.
    fn record(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// The records of one wake-up were handed over; it is `now_ns`.
    fn wakeup_end(&mut self, now_ns: u64) -> io::Result<()>;
    /// The command's interval elapsed.
    fn tick(&mut self, reading: &Reading) -> io::Result<()>;
    /// Tracing stopped; `reading` is the final one, taken with the probe detached.
    fn stopped(&mut self, reading: &Reading) -> io::Result<()>;
}
