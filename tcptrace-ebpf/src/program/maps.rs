//! The maps every program shares, and when a submit to the ring buffer wakes the reader.

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use tcptrace_ebpf::counter;

use super::settings::{WAKEUP_BYTES, global};

/// Transition records. Userspace may resize it at load time.
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Per-CPU counters, indexed by [`counter`].
#[map]
pub(crate) static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Adds one to a per-CPU counter; returns its value before.
#[inline(always)]
pub(crate) fn bump(index: u32) -> u64 {
    match COUNTERS.get_ptr_mut(index) {
        Some(slot) => {
            // SAFETY: per-CPU slot; BPF programs do not migrate between CPUs while running.
            unsafe {
                let previous = *slot;
                *slot = previous + 1;
                previous
            }
        }
        None => 0,
    }
}

/// Whether this submit wakes the reader. Waking (and even asking how much data waits) reads
/// the consumer's position, a cache line the reader writes on another CPU: measured here, that
/// tripled the program's run time. So the reader is not woken, drains the ring on a short
/// timer, and only every [`WAKEUP_CHECK_EVERY`]th event per CPU looks whether a burst filled
/// the ring past the threshold and wakes it early.
#[inline(always)]
pub(crate) fn wakeup_flags() -> u64 {
    let threshold = global(&WAKEUP_BYTES);
    if threshold == 0 {
        return 0;
    }
    let submitted = bump(counter::EVENTS_SUBMITTED);
    if submitted % WAKEUP_CHECK_EVERY == WAKEUP_CHECK_EVERY - 1
        && EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= threshold
    {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// How often (in events per CPU) the program checks whether the reader should be woken.
const WAKEUP_CHECK_EVERY: u64 = 256;
