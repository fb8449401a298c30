//! What the programs read of a socket besides its state: ports, addresses, network namespace,
//! cookie, and at its close what the kernel knew of it.

use aya_ebpf::helpers::bpf_probe_read_kernel;
use tcptrace_ebpf::close;

use super::settings::{SOCK_LAYOUT, sk_field};

const AF_INET6: u16 = 10;

/// The socket's local port, host order, or 0 before it has one (CLOSE→SYN_SENT).
#[inline(always)]
pub(crate) fn local_port(sk: *const u8) -> u16 {
    let num: u16 = sk_field(sk, global_field!(SOCK_LAYOUT.num));
    if num != 0 {
        return num;
    }
    // Released just before →CLOSE, while `inet_sport` keeps it. That field lies past
    // `struct sock`, out of reach of a BTF-checked load: a helper reads it.
    let offset = global_field!(SOCK_LAYOUT.inet_sport) as usize;
    // SAFETY: bpf_probe_read_kernel checks the address.
    let sport = unsafe { bpf_probe_read_kernel(sk.add(offset).cast::<u16>()) };
    u16::from_be(sport.unwrap_or(0))
}

/// The socket's remote port, host order.
#[inline(always)]
pub(crate) fn remote_port(sk: *const u8) -> u16 {
    u16::from_be(sk_field(sk, global_field!(SOCK_LAYOUT.dport)))
}

/// The socket's local and remote addresses, as words (the fields are 4-byte aligned): an IPv4
/// address in the first word, the others zero.
#[inline(always)]
pub(crate) fn addresses(sk: *const u8, family: u16) -> ([u32; 4], [u32; 4]) {
    if family == AF_INET6 {
        (
            sk_field(sk, global_field!(SOCK_LAYOUT.v6_rcv_saddr)),
            sk_field(sk, global_field!(SOCK_LAYOUT.v6_daddr)),
        )
    } else {
        (
            [sk_field(sk, global_field!(SOCK_LAYOUT.rcv_saddr)), 0, 0, 0],
            [sk_field(sk, global_field!(SOCK_LAYOUT.daddr)), 0, 0, 0],
        )
    }
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

/// The socket's cookie, 0 when none was asked for yet or the kernel has no such field. One
/// BTF-checked load; the offset test is on a frozen global, so the verifier keeps one branch.
#[inline(always)]
pub(crate) fn cookie(sk: *const u8) -> u64 {
    let offset = global_field!(SOCK_LAYOUT.cookie);
    if offset == 0 {
        return 0;
    }
    sk_field(sk, offset)
}

/// A field of the `struct inet_connection_sock` that begins with the socket: past
/// `struct sock`, out of reach of a BTF-checked load, so a helper reads it (0 if it faults).
#[inline(always)]
fn icsk_field<T: Copy + Default>(sk: *const u8, offset: u32) -> T {
    // SAFETY: bpf_probe_read_kernel checks the address.
    unsafe { bpf_probe_read_kernel(sk.add(offset as usize).cast::<T>()) }.unwrap_or_default()
}

/// An errno as one byte: errnos are below 256, anything else reads as 255.
#[inline(always)]
fn errno_byte(value: i32) -> u8 {
    if (0..=255).contains(&value) {
        value as u8
    } else {
        255
    }
}

/// What the kernel knew of a socket at its →CLOSE: the error it reports, the timer counts and
/// the flags that tell which timer or who ended it.
#[derive(Clone, Copy, Default)]
pub(crate) struct CloseDetails {
    pub(crate) sk_err: u8,
    pub(crate) sk_err_soft: u8,
    pub(crate) retransmits: u8,
    pub(crate) probes_out: u8,
    pub(crate) flags: u8,
}

/// Reads the [`CloseDetails`] of a socket going to CLOSE. Only then: three helper calls and
/// three loads that the other transitions do not pay for.
#[inline(always)]
pub(crate) fn close_details(sk: *const u8) -> CloseDetails {
    let sk_err: i32 = sk_field(sk, global_field!(SOCK_LAYOUT.sk_err));
    let sk_err_soft: i32 = sk_field(sk, global_field!(SOCK_LAYOUT.sk_err_soft));
    let sk_flags: u64 = sk_field(sk, global_field!(SOCK_LAYOUT.sk_flags));
    let user_timeout: u32 = icsk_field(sk, global_field!(SOCK_LAYOUT.icsk_user_timeout));
    let mut flags = close::DETAILS;
    if (sk_flags >> (global_field!(SOCK_LAYOUT.sock_dead_bit) & 63)) & 1 != 0 {
        flags |= close::ORPHAN;
    }
    if (sk_flags >> (global_field!(SOCK_LAYOUT.sock_keepopen_bit) & 63)) & 1 != 0 {
        flags |= close::KEEPALIVE;
    }
    if user_timeout != 0 {
        flags |= close::USER_TIMEOUT;
    }
    CloseDetails {
        sk_err: errno_byte(sk_err),
        sk_err_soft: errno_byte(sk_err_soft),
        retransmits: icsk_field(sk, global_field!(SOCK_LAYOUT.icsk_retransmits)),
        probes_out: icsk_field(sk, global_field!(SOCK_LAYOUT.icsk_probes_out)),
        flags,
    }
}
