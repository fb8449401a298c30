use core::ptr::addr_of_mut;

use aya_ebpf::{
    EbpfContext as _,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_buf,
    },
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use aya_log_ebpf::error;
use tcptrace_ebpf::{
    COMM_LEN, Event, Filter, MAX_FILTER_PORTS, NO_FIELD, NetnsOffsets, Owner, RECORD_BYTES,
    RECORD_OFFSET_LIMIT, SignalLayout, SockState, TIME_UNKNOWN, TracepointLayout, counter, flags,
    kind,
};

/// Field offsets of the tracepoint record, set by userspace from the `format` file.
#[unsafe(no_mangle)]
static LAYOUT: TracepointLayout = TracepointLayout {
    skaddr: 0,
    oldstate: 0,
    newstate: 0,
    sport: 0,
    dport: 0,
    family: 0,
    protocol: 0,
    protocol_size: 0,
    saddr: 0,
    daddr: 0,
    saddr_v6: 0,
    daddr_v6: 0,
};

/// How to read a socket's network namespace, set by userspace from the kernel's BTF.
#[unsafe(no_mangle)]
static NETNS: NetnsOffsets = NetnsOffsets {
    sk_net: 0,
    net_inum: 0,
    valid: 0,
};

/// Record layouts of the `tcp:*` tracepoints that explain transitions.
#[unsafe(no_mangle)]
static LAYOUT_RESET_RECEIVED: SignalLayout = SignalLayout {
    skaddr: 0,
    state: NO_FIELD,
};
#[unsafe(no_mangle)]
static LAYOUT_RESET_SENT: SignalLayout = SignalLayout {
    skaddr: 0,
    state: NO_FIELD,
};
#[unsafe(no_mangle)]
static LAYOUT_RETRANSMIT: SignalLayout = SignalLayout {
    skaddr: 0,
    state: NO_FIELD,
};
#[unsafe(no_mangle)]
static LAYOUT_RETRANSMIT_SYNACK: SignalLayout = SignalLayout {
    skaddr: 0,
    state: NO_FIELD,
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

/// Per-socket state, keyed by socket address. LRU so that sockets whose →CLOSE we never see
/// (none should exist, but a tracer must not trust that) cannot fill it for good.
#[map]
static SOCKETS: LruHashMap<u64, SockState> = LruHashMap::with_max_entries(262_144, 0);

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

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    // Errors are reads of the tracepoint record that failed: nothing sensible to emit.
    let _ = try_inet_sock_set_state(&ctx);
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

#[inline(always)]
fn read<T>(ctx: &TracePointContext, offset: u32) -> Result<T, i32> {
    // SAFETY: the offsets come from the tracepoint's own format file; the helper checks bounds.
    unsafe { ctx.read_at::<T>(offset as usize) }
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

/// A field of the copied record. The mask keeps the access provably inside the buffer for
/// the verifier; userspace checked that every offset is below the limit.
#[inline(always)]
fn field<T: Copy>(record: &[u8; RECORD_BYTES], offset: u32) -> T {
    let offset = (offset & (RECORD_OFFSET_LIMIT - 1)) as usize;
    // SAFETY: offset < 64 and size_of::<T>() <= 16, so the read stays within the 80 bytes.
    unsafe { core::ptr::read_unaligned(record.as_ptr().add(offset).cast::<T>()) }
}

fn try_inet_sock_set_state(ctx: &TracePointContext) -> Result<(), i32> {
    // One copy of the record instead of a helper call per field: the program's run time is
    // what decides how often a softirq interrupts it and the kernel skips a nested run.
    let mut record = [0u8; RECORD_BYTES];
    // SAFETY: the tracepoint record lives in a per-CPU buffer larger than RECORD_BYTES.
    unsafe { bpf_probe_read_kernel_buf(ctx.as_ptr().cast::<u8>(), &mut record) }?;
    let protocol: u16 = if global_field!(LAYOUT.protocol_size) == 1 {
        field::<u8>(&record, global_field!(LAYOUT.protocol)) as u16
    } else {
        field::<u16>(&record, global_field!(LAYOUT.protocol))
    };
    if protocol != IPPROTO_TCP {
        return Ok(());
    }
    let family: u16 = field(&record, global_field!(LAYOUT.family));
    let wanted_family: u16 = global_field!(FILTER.family);
    if wanted_family != 0 && family != wanted_family {
        return Ok(());
    }
    let skaddr: u64 = field(&record, global_field!(LAYOUT.skaddr));
    let old: i32 = field(&record, global_field!(LAYOUT.oldstate));
    let new: i32 = field(&record, global_field!(LAYOUT.newstate));
    let sport: u16 = field(&record, global_field!(LAYOUT.sport));
    let dport: u16 = field(&record, global_field!(LAYOUT.dport));
    // SAFETY: helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };

    let mut event_flags = 0u8;
    let mut time_in_old = TIME_UNKNOWN;
    let owner_here = in_owner_context(old, new);
    let mut owner = Owner {
        comm: [0; COMM_LEN],
        tgid: 0,
    };
    let netns: u32;

    // The per-socket map is kept for every TCP socket of the family, before the port filters:
    // a connecting socket only learns its local port after CLOSE→SYN_SENT.
    // A birth always starts afresh: an entry found here belongs to an earlier socket at the
    // same address whose →CLOSE was never seen (the kernel skipped the program).
    let born = old == TCP_CLOSE || (old == TCP_LISTEN && new == TCP_SYN_RECV);
    let existing = SOCKETS.get_ptr_mut(&skaddr);
    if born && existing.is_some() {
        bump(counter::STALE_REPLACED);
    }
    match existing.filter(|_| !born) {
        Some(state) => {
            // SAFETY: pointer into a map value returned by the kernel for this key.
            let state = unsafe { &mut *state };
            time_in_old = now.saturating_sub(state.entered_ns);
            if owner_here {
                let current = current_owner();
                state.comm = current.comm;
                state.tgid = current.tgid;
            }
            owner.comm = state.comm;
            owner.tgid = state.tgid;
            netns = state.netns;
            if new == TCP_CLOSE {
                if SOCKETS.remove(&skaddr).is_ok() {
                    bump(counter::SOCK_REMOVED);
                }
            } else {
                state.entered_ns = now;
            }
        }
        None => {
            if !born {
                event_flags |= flags::FIRST_SEEN;
                bump(counter::FIRST_SEEN);
            }
            netns = netns_of(skaddr);
            if owner_here {
                owner = current_owner();
            } else if old == TCP_LISTEN && new == TCP_SYN_RECV {
                // SAFETY: read-only copy of the value out of the map.
                if let Some(listener) = unsafe { LISTENERS.get(listener_key(netns, sport)) } {
                    owner = *listener;
                }
            }
            if new != TCP_CLOSE {
                let state = SockState {
                    entered_ns: now,
                    comm: owner.comm,
                    tgid: owner.tgid,
                    netns,
                };
                if SOCKETS.insert(&skaddr, &state, 0).is_ok() {
                    bump(counter::SOCK_INSERTED);
                } else if bump(counter::SOCK_UPDATE_FAILED) == 0 {
                    error!(
                        ctx,
                        "tcptrace: per-socket map update failed; times will be missing"
                    );
                }
            }
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

    if owner.tgid == 0 {
        event_flags |= flags::OWNER_UNKNOWN;
    }

    if !port_allowed(sport, global_field!(FILTER.lport_count), &FILTER.lports)
        || !port_allowed(dport, global_field!(FILTER.rport_count), &FILTER.rports)
    {
        return Ok(());
    }

    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        bump(counter::RINGBUF_FULL);
        return Ok(());
    };
    let event = entry.as_mut_ptr();
    // Fields are written in place: an `Event` built on the stack as well would not fit the
    // 512-byte BPF stack next to the record copy.
    // SAFETY: `event` points to a reserved, exclusively owned, 8-byte aligned slot of
    // `size_of::<Event>()` bytes; every field is written before submit.
    unsafe {
        addr_of_mut!((*event).ts_ns).write(now);
        addr_of_mut!((*event).skaddr).write(skaddr);
        addr_of_mut!((*event).time_in_old_ns).write(time_in_old);
        if family == AF_INET6 {
            addr_of_mut!((*event).saddr).write(field(&record, global_field!(LAYOUT.saddr_v6)));
            addr_of_mut!((*event).daddr).write(field(&record, global_field!(LAYOUT.daddr_v6)));
        } else {
            let mut v4 = [0u8; 16];
            v4[..4].copy_from_slice(&field::<[u8; 4]>(&record, global_field!(LAYOUT.saddr)));
            addr_of_mut!((*event).saddr).write(v4);
            v4[..4].copy_from_slice(&field::<[u8; 4]>(&record, global_field!(LAYOUT.daddr)));
            addr_of_mut!((*event).daddr).write(v4);
        }
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
    Ok(())
}

const AF_INET6: u16 = 10;

/// The inode of the socket's network namespace, or 0 when it cannot be read.
#[inline(always)]
fn netns_of(skaddr: u64) -> u32 {
    if global_field!(NETNS.valid) == 0 || skaddr == 0 {
        return 0;
    }
    // SAFETY: bpf_probe_read_kernel checks the addresses; offsets come from the kernel's BTF.
    unsafe {
        let net: u64 = match bpf_probe_read_kernel(
            (skaddr + global_field!(NETNS.sk_net) as u64) as *const u64,
        ) {
            Ok(net) => net,
            Err(_) => return 0,
        };
        if net == 0 {
            return 0;
        }
        bpf_probe_read_kernel((net + global_field!(NETNS.net_inum) as u64) as *const u32)
            .unwrap_or(0)
    }
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

/// Emits a record that explains transitions: a reset, a retransmission.
#[inline(always)]
fn emit_signal(ctx: &TracePointContext, layout: SignalLayout, signal: u8) -> Result<(), i32> {
    let skaddr: u64 = read(ctx, layout.skaddr)?;
    if skaddr == 0 {
        // A reset sent for no socket (e.g. a SYN to a closed port): nothing to explain.
        return Ok(());
    }
    let state = if layout.state == NO_FIELD {
        0
    } else {
        clamp_state(read::<i32>(ctx, layout.state)?)
    };
    let event = Event {
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        skaddr,
        time_in_old_ns: TIME_UNKNOWN,
        saddr: [0; 16],
        daddr: [0; 16],
        comm: [0; COMM_LEN],
        tgid: 0,
        netns: netns_of(skaddr),
        sport: 0,
        dport: 0,
        family: 0,
        kind: signal,
        flags: flags::OWNER_UNKNOWN,
        oldstate: state,
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
    Ok(())
}

#[tracepoint(category = "tcp", name = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    let _ = emit_signal(&ctx, global(&LAYOUT_RESET_RECEIVED), kind::RESET_RECEIVED);
    0
}

#[tracepoint(category = "tcp", name = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    let _ = emit_signal(&ctx, global(&LAYOUT_RESET_SENT), kind::RESET_SENT);
    0
}

#[tracepoint(category = "tcp", name = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    let _ = emit_signal(&ctx, global(&LAYOUT_RETRANSMIT), kind::RETRANSMIT);
    0
}

#[tracepoint(category = "tcp", name = "tcp_retransmit_synack")]
pub fn tcp_retransmit_synack(ctx: TracePointContext) -> u32 {
    let _ = emit_signal(
        &ctx,
        global(&LAYOUT_RETRANSMIT_SYNACK),
        kind::RETRANSMIT_SYNACK,
    );
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
