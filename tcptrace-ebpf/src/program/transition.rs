//! One transition: read from the socket, attributed to its owner, filtered, written to the
//! ring buffer.

use core::ptr::addr_of_mut;

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    programs::BtfTracePointContext,
};
use aya_log_ebpf::error;
use tcptrace_ebpf::{COMM_LEN, Event, MAX_FILTER_PORTS, Owner, counter, flags, kind};

use super::{
    maps::{EVENTS, LISTENERS, bump, listener_key, wakeup_flags},
    settings::{FILTER, SOCK_LAYOUT, sk_field},
};

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

pub(crate) fn on_set_state(ctx: &BtfTracePointContext, sk: *const u8, old: i32, new: i32) {
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
pub(crate) fn netns_of(sk: *const u8) -> u32 {
    if global_field!(SOCK_LAYOUT.has_netns) == 0 {
        return 0;
    }
    let net: *const u8 = sk_field(sk, global_field!(SOCK_LAYOUT.net));
    // A null `net` (never seen on a live socket) reads as 0 through the checked load.
    sk_field(net, global_field!(SOCK_LAYOUT.net_inum))
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
