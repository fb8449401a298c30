//! The kernel's own TCP counters that tcptrace uses (`Tcp:` of /proc/net/snmp, `TcpExt:` of
//! /proc/net/netstat): the fate of request sockets, which the tracepoint never sees, and a
//! witness to check the stream against. Read by `os::procfs`.

/// The counters tcptrace uses, as read at one moment (or as a difference of two readings).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpCounters {
    /// `Tcp: ActiveOpens`: CLOSE→SYN_SENT (`tcp_connect()`).
    pub active_opens: u64,
    /// `Tcp: PassiveOpens`: children created, LISTEN→SYN_RECV.
    pub passive_opens: u64,
    /// `Tcp: EstabResets`: ESTABLISHED or CLOSE_WAIT → CLOSE (`tcp_set_state()`).
    pub estab_resets: u64,
    /// `TcpExt: EmbryonicRsts`: a RST on a request socket, SYN_RECV→LISTEN.
    pub embryonic_rsts: u64,
    pub listen_overflows: u64,
    pub listen_drops: u64,
    /// `TcpExt: TCPReqQFullDrop`: SYNs dropped because the request queue was full.
    pub req_q_full_drop: u64,
    /// `TcpExt: TCPReqQFullDoCookies`: SYN cookies used because the request queue was full.
    pub req_q_full_do_cookies: u64,
    pub syncookies_sent: u64,
    /// `TcpExt: TCPSynRetrans`: SYN and SYN-ACK retransmissions.
    pub syn_retrans: u64,
}

/// The counters of [`TcpCounters`] in field order, listed once: the struct literal in
/// `from_array` names every field, so that a counter added to the struct breaks the build until
/// it is placed here (and the recording format follows).
macro_rules! tcp_counters_in_order {
    ($($field:ident),* $(,)?) => {
        impl TcpCounters {
            /// How many counters there are.
            pub const LEN: usize = [$(stringify!($field)),*].len();

            /// The counters in field order (the recording format's too).
            pub fn to_array(&self) -> [u64; Self::LEN] {
                [$(self.$field),*]
            }

            /// The counters from [`Self::to_array`]'s order.
            pub fn from_array([$($field),*]: [u64; Self::LEN]) -> Self {
                Self { $($field),* }
            }
        }
    };
}

tcp_counters_in_order!(
    active_opens,
    passive_opens,
    estab_resets,
    embryonic_rsts,
    listen_overflows,
    listen_drops,
    req_q_full_drop,
    req_q_full_do_cookies,
    syncookies_sent,
    syn_retrans,
);

impl TcpCounters {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &TcpCounters) -> TcpCounters {
        let (now, then) = (self.to_array(), earlier.to_array());
        Self::from_array(std::array::from_fn(|i| now[i].saturating_sub(then[i])))
    }
}

/// The namespace's counters behind the listener and SYN-queue findings of `states`, as read at
/// one moment (or as a difference of two readings). Kept apart from [`TcpCounters`], whose
/// layout the recording format fixes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ListenCounters {
    /// `TcpExt: ListenOverflows`: SYNs and final ACKs dropped because a listener's accept
    /// queue was full (`sk_acceptq_is_full()` in `tcp_conn_request()` and
    /// `tcp_v4_syn_recv_sock()`).
    pub listen_overflows: u64,
    /// `TcpExt: ListenDrops`: every drop at a listener, overflows included.
    pub listen_drops: u64,
    /// `TcpExt: SyncookiesSent`: SYN-ACKs carrying a cookie instead of a request socket.
    pub syncookies_sent: u64,
    /// `TcpExt: SyncookiesRecv`: final ACKs whose cookie checked out.
    pub syncookies_recv: u64,
    /// `TcpExt: SyncookiesFailed`: final ACKs whose cookie did not.
    pub syncookies_failed: u64,
    /// `TcpExt: TCPReqQFullDoCookies`: SYNs answered with a cookie because the SYN queue was
    /// full, or always when `net.ipv4.tcp_syncookies = 2` (`tcp_syn_flood_action()`).
    pub req_q_full_do_cookies: u64,
    /// `TcpExt: TCPReqQFullDrop`: SYNs dropped because the SYN queue was full and cookies are
    /// off.
    pub req_q_full_drop: u64,
}

impl ListenCounters {
    /// What happened between `earlier` and `self` (0 where a counter went backwards).
    pub fn since(&self, earlier: &ListenCounters) -> ListenCounters {
        ListenCounters {
            listen_overflows: self
                .listen_overflows
                .saturating_sub(earlier.listen_overflows),
            listen_drops: self.listen_drops.saturating_sub(earlier.listen_drops),
            syncookies_sent: self.syncookies_sent.saturating_sub(earlier.syncookies_sent),
            syncookies_recv: self.syncookies_recv.saturating_sub(earlier.syncookies_recv),
            syncookies_failed: self
                .syncookies_failed
                .saturating_sub(earlier.syncookies_failed),
            req_q_full_do_cookies: self
                .req_q_full_do_cookies
                .saturating_sub(earlier.req_q_full_do_cookies),
            req_q_full_drop: self.req_q_full_drop.saturating_sub(earlier.req_q_full_drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_counters_keep_their_order_through_an_array() {
        let counters: [u64; TcpCounters::LEN] = std::array::from_fn(|i| 10 + i as u64);
        let tcp = TcpCounters::from_array(counters);
        assert_eq!((tcp.active_opens, tcp.syn_retrans), (10, 19));
        assert_eq!(tcp.to_array(), counters);
    }

    #[test]
    fn tcp_counters_since_an_earlier_reading_never_go_below_zero() {
        let earlier = TcpCounters::from_array(std::array::from_fn(|i| i as u64));
        let later = TcpCounters {
            active_opens: 5,
            syn_retrans: 2,
            ..earlier
        };
        let since = later.since(&earlier);
        assert_eq!(since.active_opens, 5);
        // 2 after 9: the counter went backwards (a namespace's counters were reset).
        assert_eq!(since.syn_retrans, 0);
        assert_eq!(since.passive_opens, 0);
    }
}
