//! The kernel side of tcptrace: one program on `sock:inet_sock_set_state` that streams every TCP
//! state transition into a ring buffer, with the time spent in the old state and the socket's
//! owner computed here, in the kernel.
//!
//! Why in the kernel: if the timestamp of the previous transition lived in userspace, one lost
//! event would corrupt the next sample of that socket. Here a lost event costs one sample only.

#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program;

// Built for the host (as a workspace member, e.g. by `cargo clippy --workspace`), the binary is
// empty: the program only exists for the BPF target.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
