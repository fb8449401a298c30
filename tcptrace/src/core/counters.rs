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

impl TcpCounters {
    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &TcpCounters) -> TcpCounters {
        TcpCounters {
            active_opens: self.active_opens.saturating_sub(earlier.active_opens),
            passive_opens: self.passive_opens.saturating_sub(earlier.passive_opens),
            estab_resets: self.estab_resets.saturating_sub(earlier.estab_resets),
            embryonic_rsts: self.embryonic_rsts.saturating_sub(earlier.embryonic_rsts),
            listen_overflows: self
                .listen_overflows
                .saturating_sub(earlier.listen_overflows),
            listen_drops: self.listen_drops.saturating_sub(earlier.listen_drops),
            req_q_full_drop: self.req_q_full_drop.saturating_sub(earlier.req_q_full_drop),
            req_q_full_do_cookies: self
                .req_q_full_do_cookies
                .saturating_sub(earlier.req_q_full_do_cookies),
            syncookies_sent: self.syncookies_sent.saturating_sub(earlier.syncookies_sent),
            syn_retrans: self.syn_retrans.saturating_sub(earlier.syn_retrans),
        }
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
