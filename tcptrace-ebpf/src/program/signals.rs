//! The programs that explain transitions: resets and retransmissions.

use aya_ebpf::{helpers::bpf_ktime_get_ns, macros::btf_tracepoint, programs::BtfTracePointContext};
use tcptrace_ebpf::{Event, close, counter, flags, kind};

use super::{
    maps::{EVENTS, bump, wakeup_flags},
    settings::{SOCK_LAYOUT, sk_field},
    socket::netns_of,
};

/// Emits a record that explains transitions: a reset, a retransmission. Every one of these
/// tracepoints has the socket as its first argument. `reset_reason`: the reason of a reset
/// sent, where the tracepoint carries one.
#[inline(always)]
fn emit_signal(ctx: &BtfTracePointContext, signal: u8, reset_reason: Option<u16>) {
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
        netns: netns_of(sk),
        kind: signal,
        flags: flags::OWNER_UNKNOWN,
        oldstate: u16::from(state),
        close_flags: if reset_reason.is_some() {
            close::RESET_REASON
        } else {
            0
        },
        reset_reason: reset_reason.unwrap_or(0),
        ..Event::empty()
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
    emit_signal(&ctx, kind::RESET_RECEIVED, None);
    0
}

#[btf_tracepoint(function = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: BtfTracePointContext) -> i32 {
    // The third argument, `enum sk_rst_reason`, exists since Linux 6.10: read only where the
    // BTF says so, a frozen setting, so that the verifier never sees the access elsewhere.
    let reason = if global_field!(SOCK_LAYOUT.reset_reason_arg) != 0 {
        let raw: u64 = ctx.arg(2);
        Some(raw.min(u64::from(u16::MAX)) as u16)
    } else {
        None
    };
    emit_signal(&ctx, kind::RESET_SENT, reason);
    0
}

#[btf_tracepoint(function = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb(ctx: BtfTracePointContext) -> i32 {
    emit_signal(&ctx, kind::RETRANSMIT, None);
    0
}

#[btf_tracepoint(function = "tcp_retransmit_synack")]
pub fn tcp_retransmit_synack(ctx: BtfTracePointContext) -> i32 {
    emit_signal(&ctx, kind::RETRANSMIT_SYNACK, None);
    0
}
