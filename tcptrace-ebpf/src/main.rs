//! The kernel side of tcptrace: programs on the BTF-typed `sock:inet_sock_set_state` tracepoint
//! that stream every TCP state transition into a ring buffer (three of them, so that none is
//! skipped: see `program/transition_programs.rs`), and on the `tcp:*` tracepoints that explain
//! transitions.
//!
//! It keeps no state per socket: that cost more than everything else together. Userspace sees
//! every transition of a socket in order and takes the time in each state from the timestamps.

#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program;

// Built for the host (as a workspace member, e.g. by `cargo clippy --workspace`), the binary is
// empty: the program only exists for the BPF target.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
