//! What userspace sets at load time (read-only data, frozen: constants to the verifier), and
//! how the programs read it, the socket's fields included.

use tcptrace_ebpf::{Filter, MAX_FILTER_PORTS, SockLayout};

/// Where the probe finds the socket's fields, set by userspace from the kernel's BTF.
#[unsafe(no_mangle)]
pub(crate) static SOCK_LAYOUT: SockLayout = SockLayout {
    family: 0,
    protocol: 0,
    state: 0,
    num: 0,
    inet_sport: 0,
    dport: 0,
    rcv_saddr: 0,
    daddr: 0,
    v6_rcv_saddr: 0,
    v6_daddr: 0,
    net: 0,
    net_inum: 0,
    has_netns: 0,
    cookie: 0,
    sk_err: 0,
    sk_err_soft: 0,
    sk_flags: 0,
    sock_dead_bit: 0,
    sock_keepopen_bit: 0,
    icsk_retransmits: 0,
    icsk_probes_out: 0,
    icsk_user_timeout: 0,
    reset_reason_arg: 0,
    _pad: 0,
};

/// Wake userspace early once this many bytes wait in the ring buffer (0: the kernel's own
/// policy, a wake-up whenever the reader has caught up). Userspace drains the ring on a short
/// timer anyway, so events are never stale.
#[unsafe(no_mangle)]
pub(crate) static WAKEUP_BYTES: u64 = 0;

/// Load-time filters, set by userspace.
#[unsafe(no_mangle)]
pub(crate) static FILTER: Filter = Filter {
    family: 0,
    lport_count: 0,
    rport_count: 0,
    _pad: 0,
    lports: [0; MAX_FILTER_PORTS],
    rports: [0; MAX_FILTER_PORTS],
};

/// Reads a global that userspace rewrote at load time. A plain read would let the compiler fold
/// the compiled-in default value.
#[inline(always)]
pub(crate) fn global<T: Copy>(value: &'static T) -> T {
    // SAFETY: `value` is a valid, aligned static; volatile only forbids constant folding.
    unsafe { core::ptr::read_volatile(value) }
}

/// Reads one field of a global rewritten at load time, without copying the whole struct onto
/// the 512-byte BPF stack. Not for use inside an `unsafe` block: its own would be unused.
macro_rules! global_field {
    ($place:expr) => {{
        // SAFETY: a field of a valid, aligned static; volatile only forbids constant folding.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!($place)) }
    }};
}

/// A field of the socket, at an offset from [`SOCK_LAYOUT`]. The offset is a constant to the
/// verifier (read-only data, frozen at load), which checks the load against the kernel's BTF
/// of `struct sock`: a plain load, no helper call.
#[inline(always)]
pub(crate) fn sk_field<T: Copy>(sk: *const u8, offset: u32) -> T {
    // SAFETY: `sk` is the BTF-typed socket of the tracepoint; the verifier turns the load into
    // a checked kernel memory read (a faulting one reads zero).
    unsafe { core::ptr::read(sk.add(offset as usize).cast::<T>()) }
}
