//! Who owns the socket of a transition, as far as the kernel side can tell.

use aya_ebpf::helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid};
use tcptrace_ebpf::{COMM_LEN, Owner};

use super::{
    listeners,
    tcp_states::{
        TCP_CLOSE, TCP_CLOSE_WAIT, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_LAST_ACK, TCP_LISTEN,
        TCP_SYN_RECV, TCP_SYN_SENT,
    },
};

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
        holders: 0,
    }
}

/// The owner of the socket (local port `sport` in namespace `netns`) that goes from `old` to
/// `new`, or tgid 0 when it is not known here. It is known only in a syscall of the owner, or
/// for a passively opened child, from its listener: other transitions run in softirq, on
/// whatever task the CPU interrupted. Userspace carries it over to the socket's later
/// transitions.
#[inline(always)]
pub(crate) fn owner_of(old: i32, new: i32, netns: u32, sport: u16) -> Owner {
    let mut owner = Owner {
        comm: [0; COMM_LEN],
        tgid: 0,
        holders: 0,
    };
    if in_owner_context(old, new) {
        owner = current_owner();
    } else if old == TCP_LISTEN
        && new == TCP_SYN_RECV
        && let Some(listener) = listeners::owner(netns, sport)
    {
        owner = listener;
    }
    owner
}
