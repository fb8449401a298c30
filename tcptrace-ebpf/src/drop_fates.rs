//! Which [`crate::fate`] a dropped TCP segment stands for, from what the program on
//! `skb:kfree_skb` knows of it: the kernel's drop reason, whether the TCP receive function itself
//! dropped it, the segment's flags and, where the tracepoint passes it (6.12 and later), whether
//! the receiving socket is a listener. Here, outside the BPF-only code, so that the host's tests
//! run the very rules the kernel side runs.
//!
//! What the kernel frees with which reason (seen on 6.1 and 6.18, `tcp_check_req`,
//! `tcp_v4_rcv`, `tcp_conn_request`):
//! - a reset to a request socket (an embryonic reset): `NOT_SPECIFIED`, by `tcp_v4_rcv` /
//!   `tcp_v6_rcv` themselves, the listener as `rx_sk`;
//! - the final ACK of a handshake that finds the accept queue full: `TCP_LISTEN_OVERFLOW` (6.10
//!   and later), `NOT_SPECIFIED` in the same place before;
//! - a SYN to a port nothing listens on: `NO_SOCKET`.

use crate::{NO_REASON, fate};

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// This kernel's values of the drop reasons looked for ([`NO_REASON`] where it has none).
#[derive(Clone, Copy, Debug)]
pub struct Reasons {
    pub not_specified: u32,
    pub no_socket: u32,
    pub listen_overflow: u32,
}

impl Reasons {
    /// Whether a drop of this reason may be a fate: the one test made of every drop.
    #[inline(always)]
    pub fn wanted(&self, reason: u32) -> bool {
        reason == self.not_specified || reason == self.no_socket || reason == self.listen_overflow
    }
}

/// The fate of a dropped segment, 0 for none. `by_tcp_receive`: the drop's location lies in
/// `tcp_v4_rcv` or `tcp_v6_rcv`; `rx_listens`: whether the receiving socket is a listener,
/// `None` where it is not known.
#[inline(always)]
pub fn fate_of(
    reasons: &Reasons,
    reason: u32,
    by_tcp_receive: bool,
    flags: u8,
    rx_listens: Option<bool>,
) -> u16 {
    let handshake = flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN);
    if reason == reasons.no_socket {
        // A SYN-ACK or a stray segment to a closed port is no connection attempt.
        return if handshake == TCP_SYN {
            fate::CLOSED_PORT
        } else {
            0
        };
    }
    if reason == reasons.listen_overflow {
        return fate::LISTEN_OVERFLOW;
    }
    // Reasonless drops: only the receive function's own, and only of a listener's (a TIME_WAIT
    // socket's segments are freed the same way).
    if reason != reasons.not_specified || !by_tcp_receive || rx_listens == Some(false) {
        return 0;
    }
    if flags & TCP_RST != 0 {
        return fate::EMBRYONIC_RESET;
    }
    // Without a reason of its own (before 6.10), a bare ACK dropped there is the final ACK of a
    // handshake that found the accept queue full.
    if handshake == TCP_ACK && reasons.listen_overflow == NO_REASON {
        return fate::LISTEN_OVERFLOW;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values of Linux 6.18 and of 6.1 (which has no TCP_LISTEN_OVERFLOW).
    const V6_18: Reasons = Reasons {
        not_specified: 2,
        no_socket: 3,
        listen_overflow: 40,
    };
    const V6_1: Reasons = Reasons {
        not_specified: 2,
        no_socket: 3,
        listen_overflow: NO_REASON,
    };
    const RST_ACK: u8 = TCP_RST | TCP_ACK;

    #[test]
    fn an_embryonic_reset_is_a_reset_dropped_by_the_receive_function_for_a_listener() {
        for reasons in [V6_18, V6_1] {
            assert_eq!(
                fate_of(&reasons, 2, true, TCP_RST, Some(true)),
                fate::EMBRYONIC_RESET
            );
            assert_eq!(
                fate_of(&reasons, 2, true, RST_ACK, None),
                fate::EMBRYONIC_RESET
            );
            // Dropped elsewhere (the functions it calls give reasons), or for another socket.
            assert_eq!(fate_of(&reasons, 2, false, TCP_RST, Some(true)), 0);
            assert_eq!(fate_of(&reasons, 2, true, TCP_RST, Some(false)), 0);
        }
    }

    #[test]
    fn a_listen_overflow_has_its_reason_or_before_610_is_a_bare_ack() {
        assert_eq!(
            fate_of(&V6_18, 40, false, TCP_ACK, None),
            fate::LISTEN_OVERFLOW
        );
        // On 6.18 a reasonless bare ACK is something else (TCP_DEFER_ACCEPT's, say).
        assert_eq!(fate_of(&V6_18, 2, true, TCP_ACK, Some(true)), 0);
        assert_eq!(
            fate_of(&V6_1, 2, true, TCP_ACK, None),
            fate::LISTEN_OVERFLOW
        );
        // A FIN or data-less segment with other flags is not a final ACK.
        assert_eq!(fate_of(&V6_1, 2, true, TCP_ACK | TCP_FIN, None), 0);
        assert_eq!(fate_of(&V6_1, 2, true, TCP_SYN, None), 0);
        // The sentinel never matches a reason the kernel passes... nor does 0 match it.
        assert_eq!(fate_of(&V6_1, 0, true, TCP_ACK, None), 0);
    }

    #[test]
    fn a_closed_port_is_a_syn_without_a_socket() {
        for reasons in [V6_18, V6_1] {
            assert_eq!(fate_of(&reasons, 3, true, TCP_SYN, None), fate::CLOSED_PORT);
            // The SYN-ACK of a handshake nobody started, a stray ACK or reset: not counted.
            assert_eq!(fate_of(&reasons, 3, true, TCP_SYN | TCP_ACK, None), 0);
            assert_eq!(fate_of(&reasons, 3, true, TCP_ACK, None), 0);
            assert_eq!(fate_of(&reasons, 3, true, TCP_RST, None), 0);
        }
    }

    #[test]
    fn other_reasons_are_not_wanted() {
        assert!(V6_18.wanted(2) && V6_18.wanted(3) && V6_18.wanted(40));
        assert!(!V6_18.wanted(45) && !V6_1.wanted(40));
        assert_eq!(fate_of(&V6_18, 45, true, TCP_RST, Some(true)), 0);
    }
}
