//! One transition: filtered, attributed to its owner (`owner`), kept in the listener map
//! (`listeners`), written to the ring buffer (`record`).

use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::BtfTracePointContext};
use tcptrace_ebpf::{MAX_FILTER_PORTS, Owner};

use super::{
    listeners,
    owner::owner_of,
    record,
    settings::{FILTER, SOCK_LAYOUT, sk_field},
    socket::{local_port, netns_of, remote_port},
};

const IPPROTO_TCP: u16 = 6;

/// A transition as the program read it; the addresses are read only once its record has room.
pub(crate) struct Transition<'a> {
    pub(crate) sk: *const u8,
    pub(crate) ts_ns: u64,
    pub(crate) family: u16,
    pub(crate) sport: u16,
    pub(crate) dport: u16,
    pub(crate) netns: u32,
    /// By reference: the listener map takes the owner's address, and a struct holding it by
    /// value would then be copied or kept whole on the stack rather than in registers.
    pub(crate) owner: &'a Owner,
    pub(crate) old: i32,
    pub(crate) new: i32,
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

/// The body of the main and the nested program (`transition_programs`): socket `sk` goes from
/// state `old` to `new`. Out of line, a BPF-to-BPF call from each: one body of ~1,200
/// instructions in the object rather than two, the shape its run time (~350 ns) was measured in.
/// Everything it calls is inlined into it.
#[inline(never)]
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
    let dport = remote_port(sk);
    // SAFETY: helper without preconditions.
    let ts_ns = unsafe { bpf_ktime_get_ns() };
    let netns = netns_of(sk);
    let owner = owner_of(old, new, netns, sport);
    let transition = Transition {
        sk,
        ts_ns,
        family,
        sport,
        dport,
        netns,
        owner: &owner,
        old,
        new,
    };

    listeners::update(ctx, &transition);

    if !port_allowed(sport, global_field!(FILTER.lport_count), &FILTER.lports)
        || !port_allowed(dport, global_field!(FILTER.rport_count), &FILTER.rports)
    {
        return;
    }
    record::write(&transition);
}
