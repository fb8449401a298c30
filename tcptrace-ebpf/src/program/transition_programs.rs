//! The three programs on `sock:inet_sock_set_state`, and why there are three.

use aya_ebpf::{
    macros::{btf_tracepoint, map},
    maps::PerCpuArray,
    programs::BtfTracePointContext,
};
use tcptrace_ebpf::{
    counter,
    firing_protocol::{ENTER_MARK, IDLE, MAIN_MARK, NESTED_MARK, nested_records},
};

use super::{maps::bump, transition::on_set_state};

/// Per-CPU progress of one firing of the tracepoint through its three programs, which the
/// kernel runs in the order they were attached: [`inet_sock_set_state_enter`] marks it pending,
/// [`inet_sock_set_state`] marks it taken and records the transition, and
/// [`inet_sock_set_state_nested`] records it only if it is still pending, then resets it. The
/// marks and the decision are `tcptrace_ebpf::firing_protocol`, tested on the host against a model
/// of the kernel's dispatch interrupted at every point.
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
    set_firing(ENTER_MARK);
    0
}

/// Every transition, unless the kernel skipped it (see [`FIRING`]).
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: BtfTracePointContext) -> i32 {
    set_firing(MAIN_MARK);
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
    if nested_records(firing()) {
        bump(counter::NESTED_CAUGHT);
        on_set_state(
            &ctx,
            ctx.arg::<*const u8>(0),
            ctx.arg::<i32>(1),
            ctx.arg::<i32>(2),
        );
    }
    set_firing(NESTED_MARK);
    0
}
