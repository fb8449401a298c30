//! The listener map: the owner of every listening socket, from →LISTEN to LISTEN→CLOSE, for
//! the children it accepts to inherit.

use aya_ebpf::{macros::map, maps::HashMap, programs::BtfTracePointContext};
use aya_log_ebpf::error;
use tcptrace_ebpf::{LISTENER_MAP_ENTRIES, Owner, counter, listener_key};

use super::{
    maps::bump,
    tcp_states::{TCP_CLOSE, TCP_LISTEN},
    transition::Transition,
};

/// Owners of listening sockets, keyed by network namespace and local port
/// ([`listener_key`]): a passively opened child is created in softirq, where the current task
/// is whoever the CPU interrupted, so it inherits this owner. Userspace seeds the listeners
/// that predate tracing at start, without overwriting what the programs wrote meanwhile.
#[map]
static LISTENERS: HashMap<u64, Owner> = HashMap::with_max_entries(LISTENER_MAP_ENTRIES, 0);

/// The owner of the socket listening on `port` in `netns`, if it is in the map.
#[inline(always)]
pub(crate) fn owner(netns: u32, port: u16) -> Option<Owner> {
    // SAFETY: the value is copied out at once: another CPU may update or remove the entry, so
    // no reference into the map is kept.
    unsafe { LISTENERS.get(listener_key(netns, port)) }.copied()
}

/// Keeps the map in step with a transition: a socket's owner is recorded when it starts
/// listening, forgotten when it stops.
#[inline(always)]
pub(crate) fn update(ctx: &BtfTracePointContext, transition: &Transition<'_>) {
    let Transition {
        old,
        new,
        netns,
        sport,
        owner,
        ..
    } = *transition;
    if new == TCP_LISTEN {
        if LISTENERS
            .insert(listener_key(netns, sport), owner, 0)
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
}
