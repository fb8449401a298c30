//! Writing a transition's record into the ring buffer.

use core::ptr::addr_of_mut;

use tcptrace_ebpf::{Event, counter, flags, kind};

use super::{
    maps::{EVENTS, bump, wakeup_flags},
    socket::{self, CloseDetails},
    tcp_states::TCP_CLOSE,
    transition::Transition,
};

/// Writes the record of `transition` into the ring buffer, or counts it lost when the buffer
/// is full.
#[inline(always)]
pub(crate) fn write(transition: &Transition<'_>) {
    let Some(mut entry) = EVENTS.reserve::<Event>(0) else {
        bump(counter::RINGBUF_FULL);
        return;
    };
    let event_flags = if transition.owner.tgid == 0 {
        flags::OWNER_UNKNOWN
    } else {
        0
    };
    let close = if transition.new == TCP_CLOSE {
        socket::close_details(transition.sk)
    } else {
        CloseDetails::default()
    };
    let event = entry.as_mut_ptr();
    // Fields are written in place, not built on the stack and copied.
    // SAFETY: `event` points to a reserved, exclusively owned, 8-byte aligned slot of
    // `size_of::<Event>()` bytes; every field is written before submit.
    unsafe {
        addr_of_mut!((*event).ts_ns).write(transition.ts_ns);
        addr_of_mut!((*event).skaddr).write(transition.sk as u64);
        let (saddr, daddr) = socket::addresses(transition.sk, transition.family);
        // Addresses are read as words and stored as bytes.
        addr_of_mut!((*event).saddr)
            .cast::<[u32; 4]>()
            .write_unaligned(saddr);
        addr_of_mut!((*event).daddr)
            .cast::<[u32; 4]>()
            .write_unaligned(daddr);
        addr_of_mut!((*event).comm).write(transition.owner.comm);
        addr_of_mut!((*event).tgid).write(transition.owner.tgid);
        addr_of_mut!((*event).netns).write(transition.netns);
        addr_of_mut!((*event).sport).write(transition.sport);
        addr_of_mut!((*event).dport).write(transition.dport);
        addr_of_mut!((*event).family).write(transition.family);
        addr_of_mut!((*event).kind).write(kind::TRANSITION);
        addr_of_mut!((*event).flags).write(event_flags);
        addr_of_mut!((*event).oldstate).write(clamp_state(transition.old));
        addr_of_mut!((*event).newstate).write(clamp_state(transition.new));
        addr_of_mut!((*event).holders).write(transition.owner.holders);
        addr_of_mut!((*event).cookie).write(socket::cookie(transition.sk));
        addr_of_mut!((*event).sk_err).write(close.sk_err);
        addr_of_mut!((*event).sk_err_soft).write(close.sk_err_soft);
        addr_of_mut!((*event).retransmits).write(close.retransmits);
        addr_of_mut!((*event).probes_out).write(close.probes_out);
        addr_of_mut!((*event).close_flags).write(close.flags);
        addr_of_mut!((*event)._pad_close).write(0);
        addr_of_mut!((*event).reset_reason).write(0);
    }
    entry.submit(wakeup_flags());
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
