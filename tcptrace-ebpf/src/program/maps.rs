//! The maps every program shares.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, PerCpuArray, RingBuf},
};
use tcptrace_ebpf::{Owner, counter};

/// Transition records. Userspace may resize it at load time.
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Per-CPU counters, indexed by [`counter`].
#[map]
pub(crate) static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Owners of listening sockets, keyed by network namespace and local port: a passively opened
/// child is created in softirq, where the current task is whoever the CPU interrupted, so it
/// inherits this owner. The namespace is in the key because every container listens on :80.
#[map]
pub(crate) static LISTENERS: HashMap<u64, Owner> = HashMap::with_max_entries(65_536, 0);

#[inline(always)]
pub(crate) fn listener_key(netns: u32, port: u16) -> u64 {
    (u64::from(netns) << 16) | u64::from(port)
}

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
