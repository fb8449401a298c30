//! The ring-buffer edge: a loaded probe turned into a stream of raw records, its kernel-side
//! counters and its kernel log, read through tokio.

use std::{io, os::fd::AsRawFd};

use aya::maps::{MapData, PerCpuArray, RingBuf};
use aya_log::EbpfLogger;
use tcptrace_ebpf::{counter, names};
use tokio::io::{Interest, unix::AsyncFd};

use crate::{core::losses::KernelCounters, kernel::probe::Probe};

/// Everything read from a running probe. Fields are separate so that one event loop can wait on
/// the events and the log at once.
pub struct Session {
    pub events: EventReader,
    pub log: Option<LogReader>,
    counters: PerCpuArray<MapData, u64>,
    // Last: dropping it detaches the program after the readers are gone.
    probe: Probe,
}

pub struct EventReader {
    ring: AsyncFd<RingBuf<MapData>>,
}

pub struct LogReader {
    logger: AsyncFd<EbpfLogger<&'static dyn log::Log>>,
}

/// Registers a map-backed reader with the tokio reactor, for readability only.
fn register<T: AsRawFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: `inner` owns its map's file descriptor and keeps returning that same open fd until
    // it is dropped, which happens only with the `AsyncFd`.
    unsafe { AsyncFd::register_with_interest(inner, Interest::READABLE) }
        .map_err(|err| io::Error::other(err.to_string()))
}

fn missing(name: &str) -> io::Error {
    io::Error::other(format!("the BPF object has no map {name}"))
}

impl Session {
    pub fn new(mut probe: Probe) -> io::Result<Self> {
        let ebpf = &mut probe.ebpf;
        let ring = RingBuf::try_from(
            ebpf.take_map(names::EVENTS)
                .ok_or_else(|| missing(names::EVENTS))?,
        )
        .map_err(io::Error::other)?;
        let counters = PerCpuArray::try_from(
            ebpf.take_map(names::COUNTERS)
                .ok_or_else(|| missing(names::COUNTERS))?,
        )
        .map_err(io::Error::other)?;
        // The kernel log is a diagnostic aid: without it, tracing still works.
        let log = match EbpfLogger::init(ebpf) {
            Ok(logger) => Some(LogReader {
                logger: register(logger)?,
            }),
            Err(err) => {
                log::debug!("kernel log unavailable: {err}");
                None
            }
        };
        Ok(Self {
            events: EventReader {
                ring: register(ring)?,
            },
            log,
            counters,
            probe,
        })
    }

    /// Reads the kernel's counters.
    pub fn counters(&self) -> io::Result<KernelCounters> {
        let get = |index: u32| -> io::Result<u64> {
            let values = self.counters.get(&index, 0).map_err(io::Error::other)?;
            Ok(values.iter().sum())
        };
        let misses = self.probe.misses()?;
        let nested_caught = get(counter::NESTED_CAUGHT)?;
        log::debug!(
            "main program skipped {} times, nested program caught {nested_caught}",
            misses.transitions
        );
        Ok(KernelCounters {
            ringbuf_full: get(counter::RINGBUF_FULL)?,
            skipped_by_kernel: misses.unrecovered(nested_caught),
            nested_caught,
            listener_update_failed: get(counter::LISTENER_UPDATE_FAILED)?,
        })
    }

    /// Whether the program on `skb:kfree_skb` is attached.
    pub fn drops_attached(&self) -> bool {
        self.probe.drops_attached()
    }

    /// The kernel's statistics of the program on `skb:kfree_skb`, when attached.
    pub fn drop_program_stats(&self) -> Option<io::Result<crate::kernel::probe::ProgramStats>> {
        self.probe.drop_stats()
    }

    /// The kernel's statistics of the attached programs.
    pub fn program_stats(&self) -> io::Result<crate::kernel::probe::ProgramStats> {
        self.probe.stats()
    }
}

impl EventReader {
    /// Waits until records are ready, then hands every ready record to `sink`. Cancel-safe:
    /// nothing is consumed before the wait completes.
    pub async fn read(&mut self, mut sink: impl FnMut(&[u8])) -> io::Result<usize> {
        let mut guard = self.ring.readable_mut().await?;
        let count = drain(guard.get_inner_mut(), &mut sink);
        guard.clear_ready();
        Ok(count)
    }

    /// Hands every record already in the ring to `sink`, without waiting.
    pub fn drain(&mut self, mut sink: impl FnMut(&[u8])) -> usize {
        drain(self.ring.get_mut(), &mut sink)
    }
}

fn drain(ring: &mut RingBuf<MapData>, sink: &mut impl FnMut(&[u8])) -> usize {
    let mut count = 0;
    while let Some(item) = ring.next() {
        sink(&item);
        count += 1;
    }
    count
}

impl LogReader {
    /// Waits for kernel log records and forwards them to the `log` crate.
    pub async fn forward(&mut self) -> io::Result<()> {
        let mut guard = self.logger.readable_mut().await?;
        guard.get_inner_mut().flush();
        guard.clear_ready();
        Ok(())
    }
}
