use core::ptr::addr_of_mut;

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::{btf_tracepoint, map},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::BtfTracePointContext,
};
use aya_log_ebpf::error;
use tcptrace_ebpf::{
    COMM_LEN, Event, Filter, MAX_FILTER_PORTS, Owner, SockLayout, counter, flags, kind,
};

/// Where the probe finds the socket's fields, set by userspace from the kernel's BTF.
#[unsafe(no_mangle)]
static SOCK_LAYOUT: SockLayout = SockLayout {
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
    _pad: 0,
};

/// Wake userspace early once this many bytes wait in the ring buffer (0: the kernel's own
/// policy, a wake-up whenever the reader has caught up). Userspace drains the ring on a short
/// timer anyway, so events are never stale.
#[unsafe(no_mangle)]
static WAKEUP_BYTES: u64 = 0;

/// Load-time filters, set by userspace.
#[unsafe(no_mangle)]
static FILTER: Filter = Filter {
    family: 0,
    lport_count: 0,
    rport_count: 0,
    _pad: 0,
    lports: [0; MAX_FILTER_PORTS],
    rports: [0; MAX_FILTER_PORTS],
};

/// Transition records. Userspace may resize it at load time.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 << 20, 0);

/// Per-CPU counters, indexed by [`counter`].
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Owners of listening sockets, keyed by network namespace and local port: a passively opened
/// child is created in softirq, where the current task is whoever the CPU interrupted, so it
/// inherits this owner. The namespace is in the key because every container listens on :80.
#[map]
static LISTENERS: HashMap<u64, Owner> = HashMap::with_max_entries(65_536, 0);

#[inline(always)]
fn listener_key(netns: u32, port: u16) -> u64 {
    (u64::from(netns) << 16) | u64::from(port)
}

const IPPROTO_TCP: u16 = 6;

// Kernel TCP states (include/net/tcp_states.h).
const TCP_ESTABLISHED: i32 = 1;
const TCP_SYN_SENT: i32 = 2;
const TCP_SYN_RECV: i32 = 3;
const TCP_FIN_WAIT1: i32 = 4;
const TCP_CLOSE: i32 = 7;
const TCP_CLOSE_WAIT: i32 = 8;
const TCP_LAST_ACK: i32 = 9;
const TCP_LISTEN: i32 = 10;

/// Per-CPU progress of one firing of the tracepoint through its three programs, which the
/// kernel runs in the order they were attached: [`inet_sock_set_state_enter`] marks it
/// [`PENDING`], [`inet_sock_set_state`] marks it [`TAKEN`] and records the transition, and
/// [`inet_sock_set_state_nested`] records it only if it is still pending, then resets it.
///
/// Why three: the kernel runs a tracepoint program at most once per CPU at a time. When a softirq
/// interrupts the main program (a hardware interrupt on its way out runs the network stack) and
/// changes another socket's state, the kernel skips the main program for that transition and
/// only counts the miss. The firing nested in it still runs the first and last programs, which
/// were not running, and the last one finds it pending. A nested firing that interrupts the first
/// or last program instead finds the main one free to run, and the last one sees it taken (or
/// is skipped itself). One shared slot suffices: every path leaves the interrupted firing's slot
/// either taken or reset, never pending, once its main program has run.
#[map]
static FIRING: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

const IDLE: u32 = 0;
const PENDING: u32 = 1;
const TAKEN: u32 = 2;

#[inline(always)]
fn set_firing(value: u32) {
    if let Some(slot) = FIRING.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; the program cannot migrate while it runs.
        unsafe { core::ptr::write_volatile(slot, value) };
    }
}

#[inline(always)]
fn firing() -> u32 {
    match FIRING.get_ptr(0) {
        // SAFETY: as in `set_firing`.
        Some(slot) => unsafe { core::ptr::read_volatile(slot) },
        None => IDLE,
    }
}

/// First of the three programs: see [`FIRING`].
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_enter(_ctx: BtfTracePointContext) -> i32 {
    set_firing(PENDING);
    0
}

/// Every transition, unless the kernel skipped it (see [`FIRING`]).
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: BtfTracePointContext) -> i32 {
    set_firing(TAKEN);
    on_set_state(
        &ctx,
        ctx.arg::<*const u8>(0),
        ctx.arg::<i32>(1),
        ctx.arg::<i32>(2),
    );
    0
}

/// The transitions the kernel skipped [`inet_sock_set_state`] for (see [`FIRING`]).
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_nested(ctx: BtfTracePointContext) -> i32 {
    if firing() == PENDING {
        bump(counter::NESTED_CAUGHT);
        on_set_state(
            &ctx,
            ctx.arg::<*const u8>(0),
            ctx.arg::<i32>(1),
            ctx.arg::<i32>(2),
        );
    }
    set_firing(IDLE);
    0
}

/// Reads a global that userspace rewrote at load time. A plain read would let the compiler fold
/// the compiled-in default value.
#[inline(always)]
fn global<T: Copy>(value: &'static T) -> T {
    // SAFETY: `value` is a valid, aligned static; volatile only forbids constant folding.
    unsafe { core::ptr::read_volatile(value) }
}

/// Reads one field of a global rewritten at load time, without copying the whole struct onto
/// the 512-byte BPF stack.
macro_rules! global_field {
    ($place:expr) => {{
        // SAFETY: a field of a valid, aligned static; volatile only forbids constant folding.
        #[allow(unused_unsafe, reason = "the macro is also used inside unsafe blocks")]
        let value = unsafe { core::ptr::read_volatile(core::ptr::addr_of!($place)) };
        value
    }};
}

/// A field of the socket, at an offset from [`SOCK_LAYOUT`]. The offset is a constant to the
/// verifier (read-only data, frozen at load), which checks the load against the kernel's BTF
/// of `struct sock`: a plain load, no helper call.
#[inline(always)]
fn sk_field<T: Copy>(sk: *const u8, offset: u32) -> T {
    // SAFETY: `sk` is the BTF-typed socket of the tracepoint; the verifier turns the load into
    // a checked kernel memory read (a faulting one reads zero).
    unsafe { core::ptr::read(sk.add(offset as usize).cast::<T>()) }
}

#[inline(always)]
fn bump(index: u32) -> u64 {
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

/// Transitions that only happen in a syscall of the socket's owner (connect, listen, close,
/// shutdown), so that the current task *is* the owner. Everything else may run in softirq.
#[inline(always)]
fn in_owner_context(old: i32, new: i32) -> bool {
    matches!(
        (old, new),
        (TCP_CLOSE, TCP_SYN_SENT)
            | (TCP_CLOSE, TCP_LISTEN)
            | (TCP_LISTEN, TCP_CLOSE)
            | (TCP_ESTABLISHED, TCP_FIN_WAIT1)
            | (TCP_SYN_RECV, TCP_FIN_WAIT1)
            | (TCP_CLOSE_WAIT, TCP_LAST_ACK)
    )
}

#[inline(always)]
fn current_owner() -> Owner {
    Owner {
        comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
    }
}

#[inline(always)]
fn port_allowed(port: u16, count: u16, ports: &'static [u16; MAX_FILTER_PORTS]) -> bool {
    // Port 0 is "not known yet" (a connecting socket before its port is bound, a child on
    // older kernels): let it through, userspace fills it in and filters again.
    if count == 0 || port == 0 {
        return true;
    }
    let mut i = 0;
    while i < MAX_FILTER_PORTS {
        if i < count as usize && global_field!(ports[i]) == port {
            return true;
        }
        i += 1;
    }
    false
}

fn on_set_state(ctx: &BtfTracePointContext, sk: *const u8, old: i32, new: i32) {
    let protocol: u16 = sk_field(sk, global_field!(SOCK_LAYOUT.protocol));
    if protocol != IPPROTO_TCP {
        return;
    }
    let family: u16 = sk_field(sk, global_field!(SOCK_LAYOUT.family));
    let wanted_family: u16 = global_field!(FILTER.family);
    if wanted_family != 0 && family != wanted_family {
        return;
    }
    let sport = local_port(sk);
    let dport = u16::from_be(sk_field(sk, global_field!(SOCK_LAYOUT.dport)));
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };

    let netns = netns_of(sk);
    // The owner is known here only in a syscall of the owner, or for a passively opened child,
    // from its listener: the transition runs in softirq, on whatever task the CPU interrupted.
    // Userspace carries it over to the socket's later transitions.
    let mut owner = Owner {
        comm: [0; COMM_LEN],
        tgid: 0,
    };
    if in_owner_context(old, new) {
        owner = current_owner();
    } else if old == TCP_LISTEN && new == TCP_SYN_RECV {
        // SAFETY: read-only copy of the value out of the map.
        if let Some(listener) = unsafe { LISTENERS.get(listener_key(netns, sport)) } {
            owner = *listener;
        }
    }

    if new == TCP_LISTEN {
        if LISTENERS
            .insert(listener_key(netns, sport), &owner, 0)
            .is_err()
            && bump(counter::LISTENER_UPDATE_FAILED) == 0
        {
            error!(
                ctx,
                "tcptrace: listener map update failed; children lose their owner"
            );
        }
    } else if old == TCP_LISTEN && new == TCP_CLOSE {
        let _ = LISTENERS.remove(listener_key(netns, sport));
    }

    let event_flags = if owner.tgid == 0 {
        flags::OWNER_UNKNOWN
    } else {
        0
    };

    if !port_allowed(sport, global_field!(FILTER.lport_count), &FILTER.lports)
        || !port_allowed(dport, global_field!(FILTER.rport_count), &FILTER.rports)
    {
        return;
    }

    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        bump(counter::RINGBUF_FULL);
        return;
    };
    let event = entry.as_mut_ptr();
    // Fields are written in place, not built on the stack and copied.
    // SAFETY: `event` points to a reserved, exclusively owned, 8-byte aligned slot of
    // `size_of::<Event>()` bytes; every field is written before submit.
    unsafe {
        addr_of_mut!((*event).ts_ns).write(now);
        addr_of_mut!((*event).skaddr).write(sk as u64);
        let (saddr, daddr): ([u32; 4], [u32; 4]) = if family == AF_INET6 {
            (
                sk_field(sk, global_field!(SOCK_LAYOUT.v6_rcv_saddr)),
                sk_field(sk, global_field!(SOCK_LAYOUT.v6_daddr)),
            )
        } else {
            (
                [sk_field(sk, global_field!(SOCK_LAYOUT.rcv_saddr)), 0, 0, 0],
                [sk_field(sk, global_field!(SOCK_LAYOUT.daddr)), 0, 0, 0],
            )
        };
        // Addresses are read as words (the fields are 4-byte aligned) and stored as bytes.
        addr_of_mut!((*event).saddr)
            .cast::<[u32; 4]>()
            .write_unaligned(saddr);
        addr_of_mut!((*event).daddr)
            .cast::<[u32; 4]>()
            .write_unaligned(daddr);
        addr_of_mut!((*event).comm).write(owner.comm);
        addr_of_mut!((*event).tgid).write(owner.tgid);
        addr_of_mut!((*event).netns).write(netns);
        addr_of_mut!((*event).sport).write(sport);
        addr_of_mut!((*event).dport).write(dport);
        addr_of_mut!((*event).family).write(family);
        addr_of_mut!((*event).kind).write(kind::TRANSITION);
        addr_of_mut!((*event).flags).write(event_flags);
        addr_of_mut!((*event).oldstate).write(clamp_state(old));
        addr_of_mut!((*event).newstate).write(clamp_state(new));
        addr_of_mut!((*event)._reserved).write(0);
    }
    entry.submit(wakeup_flags());
}

const AF_INET6: u16 = 10;

/// The socket's local port, host order, or 0 before it has one (CLOSE→SYN_SENT).
#[inline(always)]
fn local_port(sk: *const u8) -> u16 {
    let num: u16 = sk_field(sk, global_field!(SOCK_LAYOUT.num));
    if num != 0 {
        return num;
    }
    // Released just before →CLOSE, while `inet_sport` keeps it. That field lies past
    // `struct sock`, out of reach of a BTF-checked load: a helper reads it.
    // SAFETY: bpf_probe_read_kernel checks the address.
    let sport = unsafe {
        bpf_probe_read_kernel(
            sk.add(global_field!(SOCK_LAYOUT.inet_sport) as usize)
                .cast::<u16>(),
        )
    };
    u16::from_be(sport.unwrap_or(0))
}

/// The inode of the socket's network namespace, or 0 when the kernel has none.
#[inline(always)]
fn netns_of(sk: *const u8) -> u32 {
    if global_field!(SOCK_LAYOUT.has_netns) == 0 {
        return 0;
    }
    let net: *const u8 = sk_field(sk, global_field!(SOCK_LAYOUT.net));
    // A null `net` (never seen on a live socket) reads as 0 through the checked load.
    sk_field(net, global_field!(SOCK_LAYOUT.net_inum))
}

/// Whether this submit wakes the reader. Waking (and even asking how much data waits) reads
/// the consumer's position, a cache line the reader writes on another CPU: measured here, that
/// tripled the program's run time. So the reader is not woken, drains the ring on a short
/// timer, and only every [`WAKEUP_CHECK_EVERY`]th event per CPU looks whether a burst filled
/// the ring past the threshold and wakes it early.
#[inline(always)]
fn wakeup_flags() -> u64 {
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

/// Emits a record that explains transitions: a reset, a retransmission. Every one of these
/// tracepoints has the socket as its first argument.
#[inline(always)]
fn emit_signal(ctx: &BtfTracePointContext, signal: u8) {
    let sk: *const u8 = ctx.arg(0);
    if sk.is_null() {
        // A reset sent for no socket (e.g. a SYN to a closed port): nothing to explain.
        return;
    }
    let state: u8 = sk_field(sk, global_field!(SOCK_LAYOUT.state));
    let event = Event {
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        skaddr: sk as u64,
        saddr: [0; 16],
        daddr: [0; 16],
        comm: [0; COMM_LEN],
        tgid: 0,
        netns: netns_of(sk),
        sport: 0,
        dport: 0,
        family: 0,
        kind: signal,
        flags: flags::OWNER_UNKNOWN,
        oldstate: u16::from(state),
        newstate: 0,
        _reserved: 0,
    };
    match EVENTS.reserve::<Event>(0) {
        Some(mut entry) => {
            entry.write(event);
            entry.submit(wakeup_flags());
        }
        None => {
            bump(counter::RINGBUF_FULL);
        }
    }
}

#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: BtfTracePointContext) -> i32 {
    emit_signal(&ctx, kind::RESET_RECEIVED);
    0
}

#[btf_tracepoint(function = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: BtfTracePointContext) -> i32 {
    emit_signal(&ctx, kind::RESET_SENT);
    0
}

#[btf_tracepoint(function = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb(ctx: BtfTracePointContext) -> i32 {
    emit_signal(&ctx, kind::RETRANSMIT);
    0
}

#[btf_tracepoint(function = "tcp_retransmit_synack")]
pub fn tcp_retransmit_synack(ctx: BtfTracePointContext) -> i32 {
    emit_signal(&ctx, kind::RETRANSMIT_SYNACK);
    0
}

/// Carries any kernel state value to userspace; an impossible one arrives as itself (if it fits)
/// or as `u16::MAX`, and is rejected there as invalid.
#[inline(always)]
fn clamp_state(state: i32) -> u16 {
    if (0..u16::MAX as i32).contains(&state) {
        state as u16
    } else {
        u16::MAX
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
