//! The programs on `skb:kfree_skb`: the fates of request sockets and closed ports, told by the
//! packets the kernel drops for them, attributed to the listener's port and the peer.
//!
//! They run for every dropped packet of the machine, so they return at once unless the drop
//! reason is one they look for; then they read the packet's own IP and TCP headers (the
//! addresses, ports and flags), which every kernel has, and the receiving socket `rx_sk` where
//! the tracepoint passes it (Linux 6.12 and later).
//!
//! Which drop is which fate: `tcptrace_ebpf::drop_fates`, tested on the host.
//!
//! A SYN dropped because the accept queue is full is *consumed*, not dropped (tcp_conn_request
//! counts ListenOverflows and the SYN goes to `consume_skb`), and SYN cookies drop nothing:
//! neither passes here.

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use tcptrace_ebpf::{
    COMM_LEN, DropLayout, Event, NO_REASON, counter,
    drop_fates::{Reasons, fate_of},
    fate, flags, kind,
};

use super::{
    listeners,
    maps::{EVENTS, bump, wakeup_flags},
    settings::{SOCK_LAYOUT, sk_field},
    socket::netns_of,
    tcp_states::TCP_LISTEN,
};

/// Set by userspace from the kernel's BTF and /proc/kallsyms.
#[unsafe(no_mangle)]
pub(crate) static DROP_LAYOUT: DropLayout = DropLayout {
    reason_not_specified: NO_REASON,
    reason_no_socket: NO_REASON,
    reason_listen_overflow: NO_REASON,
    skb_head: 0,
    skb_network_header: 0,
    skb_transport_header: 0,
    skb_protocol: 0,
    skb_dev: 0,
    dev_net: 0,
    _pad: 0,
    rcv_v4: [0; 2],
    rcv_v6: [0; 2],
};

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPPROTO_TCP: u8 = 6;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// Reads `T` at `at` in kernel memory; zeroes when it faults.
#[inline(always)]
fn read<T: Copy + Default>(at: *const u8) -> T {
    // SAFETY: bpf_probe_read_kernel checks the address.
    unsafe { bpf_probe_read_kernel(at.cast::<T>()) }.unwrap_or_default()
}

/// Whether a code address lies in `[range[0], range[1])`; never for an unknown range.
#[inline(always)]
fn within(location: u64, range: &[u64; 2]) -> bool {
    let start = global_field!(range[0]);
    let end = global_field!(range[1]);
    start != 0 && location >= start && location < end
}

/// A drop by the TCP receive function itself, not by the code it calls.
#[inline(always)]
fn in_tcp_receive(location: u64) -> bool {
    within(location, &DROP_LAYOUT.rcv_v4) || within(location, &DROP_LAYOUT.rcv_v6)
}

#[inline(always)]
fn reasons() -> Reasons {
    Reasons {
        not_specified: global_field!(DROP_LAYOUT.reason_not_specified),
        no_socket: global_field!(DROP_LAYOUT.reason_no_socket),
        listen_overflow: global_field!(DROP_LAYOUT.reason_listen_overflow),
    }
}

/// The network namespace of the device the packet came in on.
#[inline(always)]
fn netns_of_device(skb: *const u8) -> u32 {
    let dev_net = global_field!(DROP_LAYOUT.dev_net);
    if dev_net == 0 {
        return 0;
    }
    let dev: *const u8 = sk_field(skb, global_field!(DROP_LAYOUT.skb_dev));
    if dev.is_null() {
        return 0;
    }
    let net: *const u8 = read(dev.wrapping_add(dev_net as usize));
    if net.is_null() {
        return 0;
    }
    read(net.wrapping_add(global_field!(SOCK_LAYOUT.net_inum) as usize))
}

/// The body of both programs: `rx_sk` is null where the tracepoint has no such argument.
#[inline(always)]
fn on_drop(skb: *const u8, location: u64, reason: u32, rx_sk: *const u8, has_rx_sk: bool) {
    // The cheap test first: most drops of a machine are of other reasons.
    let reasons = reasons();
    if !reasons.wanted(reason) {
        return;
    }
    let protocol = u16::from_be(sk_field::<u16>(
        skb,
        global_field!(DROP_LAYOUT.skb_protocol),
    ));
    let family = match protocol {
        ETH_P_IP => AF_INET,
        ETH_P_IPV6 => AF_INET6,
        _ => return,
    };
    let head: *const u8 = sk_field(skb, global_field!(DROP_LAYOUT.skb_head));
    let network: u16 = sk_field(skb, global_field!(DROP_LAYOUT.skb_network_header));
    let transport: u16 = sk_field(skb, global_field!(DROP_LAYOUT.skb_transport_header));
    let ip = head.wrapping_add(network as usize);
    // Addresses as words, as `Event` takes them: (source, destination).
    let (src, dst) = if family == AF_INET {
        if read::<u8>(ip.wrapping_add(9)) != IPPROTO_TCP {
            return;
        }
        (
            [read::<u32>(ip.wrapping_add(12)), 0, 0, 0],
            [read::<u32>(ip.wrapping_add(16)), 0, 0, 0],
        )
    } else {
        // Only packets whose first next header is TCP: UDP drops its packets to closed ports
        // as NO_SOCKET too. (TCP behind IPv6 extension headers is left out.)
        if read::<u8>(ip.wrapping_add(6)) != IPPROTO_TCP {
            return;
        }
        (
            read::<[u32; 4]>(ip.wrapping_add(8)),
            read::<[u32; 4]>(ip.wrapping_add(24)),
        )
    };
    let tcp = head.wrapping_add(transport as usize);
    let ports: [u16; 2] = read(tcp);
    let tcp_flags: u8 = read(tcp.wrapping_add(13));
    let rx_listens = if has_rx_sk && !rx_sk.is_null() {
        Some(sk_field::<u8>(rx_sk, global_field!(SOCK_LAYOUT.state)) as i32 == TCP_LISTEN)
    } else {
        None
    };
    let fate = fate_of(
        &reasons,
        reason,
        in_tcp_receive(location),
        tcp_flags,
        rx_listens,
    );
    if fate == 0 {
        return;
    }
    let netns = if rx_listens.is_some() {
        netns_of(rx_sk)
    } else {
        netns_of_device(skb)
    };
    let (peer_port, local_port) = (u16::from_be(ports[0]), u16::from_be(ports[1]));
    let owner = if fate == fate::CLOSED_PORT {
        None
    } else {
        listeners::owner(netns, local_port)
    };
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        bump(counter::RINGBUF_FULL);
        return;
    };
    let (tgid, comm, event_flags) = match owner {
        Some(owner) => (owner.tgid, owner.comm, 0),
        None => (0, [0; COMM_LEN], flags::OWNER_UNKNOWN),
    };
    let event = Event {
        // SAFETY: helper without preconditions.
        ts_ns: unsafe { bpf_ktime_get_ns() },
        skaddr: rx_sk as u64,
        // SAFETY: `[u32; 4]` and `[u8; 16]` have the same size, every bit pattern valid.
        saddr: unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(dst) },
        // SAFETY: as above.
        daddr: unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(src) },
        comm,
        tgid,
        netns,
        sport: local_port,
        dport: peer_port,
        family,
        kind: kind::DROP,
        flags: event_flags,
        oldstate: u16::from(tcp_flags),
        newstate: fate,
        holders: reason,
        ..Event::empty()
    };
    entry.write(event);
    entry.submit(wakeup_flags());
}

/// `skb:kfree_skb` with `rx_sk` (Linux 6.12 and later): `(skb, location, reason, rx_sk)`.
#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb_rx_sk(ctx: BtfTracePointContext) -> i32 {
    on_drop(
        ctx.arg::<*const u8>(0),
        ctx.arg::<u64>(1),
        ctx.arg::<u32>(2),
        ctx.arg::<*const u8>(3),
        true,
    );
    0
}

/// `skb:kfree_skb` without it: `(skb, location, reason)`.
#[btf_tracepoint(function = "kfree_skb")]
pub fn kfree_skb(ctx: BtfTracePointContext) -> i32 {
    on_drop(
        ctx.arg::<*const u8>(0),
        ctx.arg::<u64>(1),
        ctx.arg::<u32>(2),
        core::ptr::null(),
        false,
    );
    0
}
