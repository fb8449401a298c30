//! The kernel↔user ABI of tcptrace, compiled into both the BPF program (this crate's binary) and
//! the userspace tool (this library, with the `user` feature for `aya::Pod`).
//!
//! Every type here is `#[repr(C)]` with explicit padding and a compile-time size check: the two
//! sides are built by different compilers for different targets and must agree to the byte.
//! States and families travel as raw integers; userspace validates them on decode.
//!
//! Beside the ABI, [`firing_protocol`]: the protocol of the programs on one tracepoint, and
//! [`drop_fates`]: which fate a dropped packet stands for, both kept here so that the host's
//! tests run the very code the kernel side runs.

#![cfg_attr(not(test), no_std)]

pub mod drop_fates;
pub mod firing_protocol;

/// Kinds of record in the event ring buffer (`Event::kind`).
pub mod kind {
    /// A `sock:inet_sock_set_state` transition.
    pub const TRANSITION: u8 = 1;
    /// `tcp:tcp_receive_reset`: the socket received a RST.
    pub const RESET_RECEIVED: u8 = 2;
    /// `tcp:tcp_send_reset`: the kernel sent a RST on this socket.
    pub const RESET_SENT: u8 = 3;
    /// `tcp:tcp_retransmit_skb`: a segment (a SYN, in SYN_SENT) was retransmitted.
    pub const RETRANSMIT: u8 = 4;
    /// `tcp:tcp_retransmit_synack`: a request socket retransmitted its SYN-ACK.
    pub const RETRANSMIT_SYNACK: u8 = 5;
    /// `skb:kfree_skb`: the kernel dropped a received TCP segment for one of the [`super::fate`]s
    /// of a request socket or a closed port. The fields say what the packet said, seen from
    /// this host: `saddr`/`sport` its destination (the listener's address and port),
    /// `daddr`/`dport` its source (the peer); `newstate` the [`super::fate`], `oldstate` the
    /// segment's TCP flags byte, `holders` the kernel's raw `enum skb_drop_reason` value (it
    /// differs between kernel versions), `skaddr` the receiving socket (`rx_sk`, 0 where the
    /// tracepoint has none), `tgid`/`comm` the listener's owner from the listener map (0 when
    /// not known, and for a closed port).
    pub const DROP: u8 = 6;
}

/// What a [`kind::DROP`] record says befell the packet (its `newstate`): a value of tcptrace's
/// own, stable across kernels, unlike the kernel's drop reasons.
pub mod fate {
    /// A reset killed a request socket (SYN_RECV → LISTEN on RST; TcpExt EmbryonicRsts).
    pub const EMBRYONIC_RESET: u16 = 1;
    /// The final ACK of a handshake found the listener's accept queue full, so no child was
    /// created (TcpExt ListenOverflows, the part of it that drops a packet).
    pub const LISTEN_OVERFLOW: u16 = 2;
    /// A SYN to a port nothing listens on: the server's side of a refused connect.
    pub const CLOSED_PORT: u16 = 3;
}

/// Bits of `Event::flags`.
pub mod flags {
    /// The owner (tgid, comm) is not in the event: the transition ran outside a syscall of
    /// the socket's owner (in softirq, say). Userspace carries the owner over from the socket's
    /// earlier transitions.
    pub const OWNER_UNKNOWN: u8 = 1 << 0;
}

/// Bits of `Event::close_flags`: what the kernel knew of the socket at a →CLOSE, and whether a
/// reset record carries its reason. Kept apart from [`flags`] so that the two sets grow
/// independently.
pub mod close {
    /// `sk_err`, `sk_err_soft`, `retransmits`, `probes_out` and the bits below were read: a
    /// →CLOSE transition of ABI 3 or later. Without it (other transitions, records of ABI 2)
    /// nothing is known of the close beyond the signals seen.
    pub const DETAILS: u8 = 1 << 0;
    /// `SOCK_DEAD` was set: the owner had already closed the socket (an orphan), so that a
    /// timer, not the application, ended it.
    pub const ORPHAN: u8 = 1 << 1;
    /// `SOCK_KEEPOPEN` was set (`SO_KEEPALIVE`).
    pub const KEEPALIVE: u8 = 1 << 2;
    /// `icsk_user_timeout` was not 0 (`TCP_USER_TIMEOUT`): it bounded the retransmissions.
    pub const USER_TIMEOUT: u8 = 1 << 3;
    /// A [`super::kind::RESET_SENT`] record: `reset_reason` holds the kernel's
    /// `enum sk_rst_reason` (the tracepoint carries it since Linux 6.10).
    pub const RESET_REASON: u8 = 1 << 4;
}

/// Length of a task's comm, as in the kernel's `TASK_COMM_LEN`.
pub const COMM_LEN: usize = 16;

/// One record of the event ring buffer: 104 bytes, 8-byte aligned as the ring buffer requires.
/// The kernel keeps no state per socket: the time in the old state is the difference between
/// a socket's consecutive timestamps, taken in userspace, which sees every transition in order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the event fired.
    pub ts_ns: u64,
    /// The kernel address of the socket: the identity of a connection while it lives.
    pub skaddr: u64,
    /// Local address: IPv4 in the first 4 bytes (network order), or IPv6.
    pub saddr: [u8; 16],
    /// Remote address, as `saddr`.
    pub daddr: [u8; 16],
    /// Owner's comm (NUL-padded).
    pub comm: [u8; COMM_LEN],
    /// Owner's process id (tgid), 0 when unknown.
    pub tgid: u32,
    /// Network namespace inode of the socket, 0 when unknown.
    pub netns: u32,
    /// Local port, host order.
    pub sport: u16,
    /// Remote port, host order.
    pub dport: u16,
    /// `AF_INET` or `AF_INET6`.
    pub family: u16,
    /// One of [`kind`].
    pub kind: u8,
    /// Bits of [`flags`].
    pub flags: u8,
    /// Raw kernel state before (`TCP_*`), or the socket's state for non-transition kinds.
    /// u16 rather than u8 so that an out-of-range kernel value is carried, not truncated.
    pub oldstate: u16,
    /// Raw kernel state after.
    pub newstate: u16,
    /// The owner's [`Owner::holders`] when it came from the listener map (LISTEN→SYN_RECV),
    /// else 0. u32 so that the cookie after it is 8-byte aligned without implicit padding.
    pub holders: u32,
    /// The socket's cookie (`__sk_common.skc_cookie`): the kernel's own id of a socket, which
    /// inet_diag reports as `idiag_cookie`. 0 until something asks for it (inet_diag, the
    /// `SO_COOKIE` option, a BPF helper), which fixes it for the socket's life; 0 as well when
    /// the kernel's BTF has no such field, and for the other kinds. Userspace joins the
    /// transitions of sockets that predate tracing to their owners, found at start by a census
    /// through inet_diag, by it: the socket's address `skaddr` is not in inet_diag's answer.
    /// Appended after the fields of version 1, so that their offsets stay put.
    pub cookie: u64,
    // Appended in version 3: what the kernel knew at a →CLOSE, and a reset's reason. Zero in
    // every other record; records of version 2 read as if these were zero.
    /// →CLOSE: the socket's `sk_err`, the error the kernel reports to the owner (ECONNREFUSED,
    /// ECONNRESET, ETIMEDOUT, …), 0 when none; values past 255 (never an errno) read as 255.
    pub sk_err: u8,
    /// →CLOSE: `sk_err_soft`, the last soft error (an ICMP error the retransmissions outlived),
    /// which a timeout reports in place of ETIMEDOUT.
    pub sk_err_soft: u8,
    /// →CLOSE: `icsk_retransmits`, the retransmission timeouts in a row before the close (SYN
    /// retransmissions in SYN_SENT).
    pub retransmits: u8,
    /// →CLOSE: `icsk_probes_out`, the keepalive or zero-window probes unanswered.
    pub probes_out: u8,
    /// Bits of [`close`].
    pub close_flags: u8,
    pub _pad_close: u8,
    /// [`kind::RESET_SENT`] with [`close::RESET_REASON`]: the kernel's `enum sk_rst_reason`;
    /// its names come from the kernel's BTF, as they differ between versions.
    pub reset_reason: u16,
}

impl Event {
    /// Every field zero: the base that a record is filled in from (`..Event::empty()`), so that a field appended to the ABI reads as zero wherever a program or a test does not
    /// set it, as the ABI promises. A `const fn` rather than a `const` item: in the BPF
    /// programs, `..CONST` copies the 16-byte arrays out of the constant in `.rodata` (more
    /// instructions, a map read and a stack slot each), where the inlined function's
    /// literal is folded into the stores the program makes anyway.
    #[inline(always)]
    pub const fn empty() -> Self {
        Self {
            ts_ns: 0,
            skaddr: 0,
            saddr: [0; 16],
            daddr: [0; 16],
            comm: [0; COMM_LEN],
            tgid: 0,
            netns: 0,
            sport: 0,
            dport: 0,
            family: 0,
            kind: 0,
            flags: 0,
            oldstate: 0,
            newstate: 0,
            holders: 0,
            cookie: 0,
            sk_err: 0,
            sk_err_soft: 0,
            retransmits: 0,
            probes_out: 0,
            close_flags: 0,
            _pad_close: 0,
            reset_reason: 0,
        }
    }
}

const _: () = assert!(core::mem::size_of::<Event>() == 104);
const _: () = assert!(core::mem::align_of::<Event>() == 8);

/// Version of [`Event`]'s layout and meaning, bumped whenever either changes (a field added,
/// moved or reinterpreted, a new [`flags`] bit; a new [`kind`] needs none, see below). Recordings of the raw event stream
/// (`tcptrace record`) carry it, so that a replay by a tcptrace built against another layout
/// refuses the file instead of decoding its bytes as the wrong fields.
///
/// 2: `holders` (was reserved) and `cookie` (appended, 88 → 96 bytes).
/// 3: the close details and the reset reason (appended, 96 → 104 bytes), and the
/// [`kind::DROP`] record (a reader that predates a kind rejects its records one by one as
/// invalid, counted, never decodes them as another).
pub const ABI_VERSION: u16 = 3;

/// The size of an event of ABI version 2: a reader widens such records to [`Event`], their
/// appended fields zero.
pub const EVENT_SIZE_V2: usize = 96;

/// Indices of the per-CPU counter array `COUNTERS`.
pub mod counter {
    /// `bpf_ringbuf_reserve` failed: an event was lost.
    pub const RINGBUF_FULL: u32 = 0;
    /// Inserting into the listener map failed.
    pub const LISTENER_UPDATE_FAILED: u32 = 1;
    /// Events submitted to the ring buffer (paces the wake-up checks).
    pub const EVENTS_SUBMITTED: u32 = 2;
    /// Transitions taken by the nested program: the kernel skipped the main one for them.
    pub const NESTED_CAUGHT: u32 = 3;
    /// Number of counters.
    pub const COUNT: u32 = 4;
}

/// Byte offsets of the `struct sock` fields the probe reads, and of the namespace inode in
/// `struct net`, resolved from the kernel's BTF at load time: struct layouts differ between
/// kernel versions and builds, so no offset is compiled in. The BTF-typed tracepoint hands the
/// program the socket itself, and the verifier checks every load against these same types.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockLayout {
    /// `__sk_common.skc_family` (u16).
    pub family: u32,
    /// `sk_protocol` (u16).
    pub protocol: u32,
    /// `__sk_common.skc_state` (u8).
    pub state: u32,
    /// `__sk_common.skc_num`: the local port, host order (u16). Zeroed when the port is
    /// released, just before →CLOSE.
    pub num: u32,
    /// `inet_sport` in `struct inet_sock` (which begins with the `struct sock`): the local
    /// port, network order (u16), kept after the port is released.
    pub inet_sport: u32,
    /// `__sk_common.skc_dport`: the remote port, network order (u16).
    pub dport: u32,
    /// `__sk_common.skc_rcv_saddr` (4 bytes).
    pub rcv_saddr: u32,
    /// `__sk_common.skc_daddr` (4 bytes).
    pub daddr: u32,
    /// `__sk_common.skc_v6_rcv_saddr` (16 bytes).
    pub v6_rcv_saddr: u32,
    /// `__sk_common.skc_v6_daddr` (16 bytes).
    pub v6_daddr: u32,
    /// `__sk_common.skc_net.net`: a `struct net *`.
    pub net: u32,
    /// `ns.inum` in `struct net` (u32).
    pub net_inum: u32,
    /// 0 when the kernel has no network namespaces (`skc_net` is empty): events carry netns 0.
    pub has_netns: u32,
    /// `__sk_common.skc_cookie` (an `atomic64_t`), or 0 when the kernel's BTF has no such
    /// field (it is never at offset 0): events then carry cookie 0.
    pub cookie: u32,
    // Read at →CLOSE only.
    /// `sk_err` (int).
    pub sk_err: u32,
    /// `sk_err_soft` (int).
    pub sk_err_soft: u32,
    /// `__sk_common.skc_flags` (`sk_flags`, an unsigned long), whose bits are `enum sock_flags`.
    pub sk_flags: u32,
    /// The bits of `SOCK_DEAD` and `SOCK_KEEPOPEN` in `sk_flags`, from the kernel's BTF.
    pub sock_dead_bit: u32,
    pub sock_keepopen_bit: u32,
    /// `icsk_retransmits`, `icsk_probes_out` (u8) and `icsk_user_timeout` (u32) in
    /// `struct inet_connection_sock`: past `struct sock`, read as `inet_sport` is.
    pub icsk_retransmits: u32,
    pub icsk_probes_out: u32,
    pub icsk_user_timeout: u32,
    /// 1 when `tcp:tcp_send_reset` has the reset's reason as its third argument (Linux 6.10
    /// and later), from the tracepoint's BTF prototype; the program reads it only then.
    pub reset_reason_arg: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<SockLayout>() == 96);

/// What the program on `skb:kfree_skb` needs of this kernel, resolved at load time: the values of
/// the drop reasons it looks for (from the BTF of `enum skb_drop_reason`, whose values change
/// between versions), the offsets of the `struct sk_buff` fields it reads, and the code ranges of
/// the TCP receive functions (from /proc/kallsyms) whose reasonless drops it tells apart.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropLayout {
    /// `SKB_DROP_REASON_NOT_SPECIFIED`: what a reset to a request socket and (before Linux
    /// 6.10) a final ACK that overflows the accept queue are freed with.
    pub reason_not_specified: u32,
    /// `SKB_DROP_REASON_NO_SOCKET`.
    pub reason_no_socket: u32,
    /// `SKB_DROP_REASON_TCP_LISTEN_OVERFLOW`, or [`NO_REASON`] where the kernel has none.
    pub reason_listen_overflow: u32,
    /// `sk_buff.head` (a pointer), `network_header` and `transport_header` (u16 offsets from
    /// head), `protocol` (__be16), `dev` (a `struct net_device *`).
    pub skb_head: u32,
    pub skb_network_header: u32,
    pub skb_transport_header: u32,
    pub skb_protocol: u32,
    pub skb_dev: u32,
    /// `net_device.nd_net.net`: a `struct net *` (0: no network namespaces).
    pub dev_net: u32,
    pub _pad: u32,
    /// `[start, end)` of `tcp_v4_rcv` and `tcp_v6_rcv`; 0, 0 when unknown: reasonless drops
    /// are then not told apart (the drop's `location` must lie in one of them).
    pub rcv_v4: [u64; 2],
    pub rcv_v6: [u64; 2],
}

const _: () = assert!(core::mem::size_of::<DropLayout>() == 72);

/// A drop reason this kernel does not have: no `u32` reason the kernel passes is this large.
pub const NO_REASON: u32 = u32::MAX;

/// Maximum number of ports in each of the load-time port filters.
pub const MAX_FILTER_PORTS: usize = 16;

/// Filters fixed at load time; read-only data, so the verifier prunes what they disable.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// `AF_INET`, `AF_INET6`, or 0 for both.
    pub family: u16,
    /// How many of `lports` are in use; 0 = any local port.
    pub lport_count: u16,
    /// How many of `rports` are in use; 0 = any remote port.
    pub rport_count: u16,
    pub _pad: u16,
    pub lports: [u16; MAX_FILTER_PORTS],
    pub rports: [u16; MAX_FILTER_PORTS],
}

const _: () = assert!(core::mem::size_of::<Filter>() == 72);

/// Value of the listener map (keyed by [`listener_key`]): the owner a passively opened child
/// inherits.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub comm: [u8; COMM_LEN],
    pub tgid: u32,
    /// 0 when the kernel side recorded the owner itself (its listen()). Userspace seeds the
    /// entries of listeners that predate tracing from the processes found holding them
    /// (`/proc/PID/fd`): then the number of those processes, `tgid` being the lowest of them.
    /// With more than one (a pre-forked server, an `SO_REUSEPORT` group), which one accepts a
    /// child is known only once it makes a syscall on it.
    pub holders: u32,
}

const _: () = assert!(core::mem::size_of::<Owner>() == 24);

/// Key of the listener map: the network namespace inode and the local port. The namespace is
/// in the key because every container listens on :80.
#[inline(always)]
pub const fn listener_key(netns: u32, port: u16) -> u64 {
    ((netns as u64) << 16) | port as u64
}

/// Entries of the listener map.
pub const LISTENER_MAP_ENTRIES: u32 = 65_536;

/// Names of the globals and maps, shared so that a rename breaks the build rather than a run.
pub mod names {
    pub const SOCK_LAYOUT: &str = "SOCK_LAYOUT";
    pub const DROP_LAYOUT: &str = "DROP_LAYOUT";
    pub const FILTER: &str = "FILTER";
    pub const EVENTS: &str = "EVENTS";
    pub const COUNTERS: &str = "COUNTERS";
    pub const LISTENERS: &str = "LISTENERS";
    pub const WAKEUP_BYTES: &str = "WAKEUP_BYTES";
    /// The program on `sock:inet_sock_set_state`.
    pub const PROGRAM: &str = "inet_sock_set_state";
    /// The programs attached before and after [`PROGRAM`] on the same tracepoint, so that a
    /// transition that fires while it runs on the same CPU (and which the kernel skips it for)
    /// is still recorded.
    pub const ENTER_PROGRAM: &str = "inet_sock_set_state_enter";
    pub const NESTED_PROGRAM: &str = "inet_sock_set_state_nested";
    /// The programs that explain transitions, on the `tcp:` tracepoints of the same names.
    /// Every program is named after its tracepoint but the enter and nested programs.
    pub const SIGNAL_PROGRAMS: [&str; 4] = [
        "tcp_receive_reset",
        "tcp_send_reset",
        "tcp_retransmit_skb",
        "tcp_retransmit_synack",
    ];
    /// The tracepoint of dropped packets, and its two programs: for kernels whose tracepoint
    /// passes the receiving socket (`rx_sk`, Linux 6.12 and later) and for those before.
    pub const DROP_TRACEPOINT: &str = "kfree_skb";
    pub const DROP_PROGRAM_RX_SK: &str = "kfree_skb_rx_sk";
    pub const DROP_PROGRAM: &str = "kfree_skb";
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` integers and byte arrays with explicit padding: every bit
    // pattern is valid and there are no implicit padding bytes.
    unsafe impl aya::Pod for super::Event {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SockLayout {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Filter {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Owner {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DropLayout {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fields_of_version_1_stay_where_they_were() {
        use core::mem::offset_of;
        assert_eq!(offset_of!(Event, tgid), 64);
        assert_eq!(offset_of!(Event, newstate), 82);
        assert_eq!(offset_of!(Event, holders), 84);
        assert_eq!(offset_of!(Event, cookie), 88);
        // Version 3 only appended.
        assert_eq!(offset_of!(Event, sk_err), EVENT_SIZE_V2);
        assert_eq!(offset_of!(Event, reset_reason), 102);
    }

    #[test]
    fn the_empty_event_is_zero_to_the_byte() {
        // SAFETY: `Event` has no implicit padding: all its 104 bytes are initialized.
        let bytes: [u8; 104] = unsafe { core::mem::transmute(Event::empty()) };
        assert_eq!(bytes, [0; 104]);
    }

    #[test]
    fn listener_keys_keep_namespace_and_port_apart() {
        assert_eq!(listener_key(4026531840, 80), (4026531840 << 16) | 80);
        assert_ne!(listener_key(1, 80), listener_key(2, 80));
        assert_ne!(listener_key(1, 80), listener_key(1, 81));
    }
}
