//! The TIME_WAIT finding: the destination whose TIME_WAIT sockets hold the most ephemeral
//! ports, against the range, and what `net.ipv4.tcp_tw_reuse` does for them.
//!
//! A TIME_WAIT socket keeps its 4-tuple for 60 s: a new connection from the same local address
//! to the same destination cannot take its local port, so the risk is per destination, against
//! the size of the ephemeral range. Unless connect() may reuse it (`tcp_twsk_unique()`,
//! net/ipv4/tcp_ipv4.c): with `tcp_tw_reuse` 1 (or 2 and a loopback address on either side),
//! for a connection that used TCP timestamps, once the socket has been in TIME_WAIT for
//! `tcp_tw_reuse_delay` (1 s, in 6.18; in 6.1, once its last timestamp is from an earlier
//! second). Reuse is
//! connect()'s alone: ports an application bind()s itself are not reused.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

use crate::{
    core::state::TcpState,
    os::{
        diag::SocketEntry,
        sysctl::{PortRange, TcpSysctls},
    },
};

/// What `net.ipv4.tcp_tw_reuse` does for the TIME_WAIT sockets of one destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TwReuse {
    pub sysctl: Option<u8>,
    pub timestamps: Option<u8>,
    pub delay_ms: Option<u32>,
    /// The destination or the local address is loopback (what `tcp_tw_reuse = 2` requires).
    pub loopback: bool,
}

impl TwReuse {
    /// True when connect() may take these ports over (`tcp_twsk_unique()`): reuse on for this
    /// destination, and timestamps on, since only a connection that used them can be reused.
    pub fn applies(&self) -> bool {
        let on = match self.sysctl {
            Some(1) => true,
            Some(2) => self.loopback,
            _ => false,
        };
        on && self.timestamps.is_some_and(|t| t != 0)
    }
}

/// The destination whose TIME_WAIT sockets hold the most ephemeral ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Busiest {
    /// TIME_WAIT sockets of the snapshot, towards any destination.
    pub total: u64,
    pub local: IpAddr,
    pub remote: SocketAddr,
    /// Its TIME_WAIT sockets whose local port is an ephemeral one.
    pub count: u64,
    pub reuse: TwReuse,
}

/// The busiest destination, when any TIME_WAIT socket holds an ephemeral port.
pub fn busiest(sockets: &[SocketEntry], range: PortRange, sysctls: TcpSysctls) -> Option<Busiest> {
    let mut per_destination: HashMap<(IpAddr, SocketAddr), u64> = HashMap::new();
    let mut total = 0;
    for socket in sockets.iter().filter(|s| s.state == TcpState::TimeWait) {
        total += 1;
        if range.contains(socket.local.port()) {
            *per_destination
                .entry((socket.local.ip(), socket.remote))
                .or_default() += 1;
        }
    }
    let ((local, remote), count) = per_destination
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))?;
    Some(Busiest {
        total,
        local,
        remote,
        count,
        reuse: TwReuse {
            sysctl: sysctls.tw_reuse,
            timestamps: sysctls.timestamps,
            delay_ms: sysctls.tw_reuse_delay_ms,
            loopback: local.to_canonical().is_loopback()
                || remote.ip().to_canonical().is_loopback(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::census::{Context, Finding, KernelView, count, tests::sock};

    /// The finding of a census of 6 TIME_WAIT sockets towards `remote`, in a range of 10.
    fn finding(remote: &str, tw_reuse: Option<u8>, timestamps: Option<u8>) -> Finding {
        let range = PortRange {
            low: 40000,
            high: 40009,
        };
        let sockets: Vec<_> = (40000..40006)
            .map(|p| sock(TcpState::TimeWait, &format!("10.0.0.1:{p}"), remote, 0))
            .collect();
        let ctx = Context {
            port_range: Some(range),
            kernel: Some(KernelView {
                sysctls: TcpSysctls {
                    tw_reuse,
                    timestamps,
                    ..TcpSysctls::default()
                },
                ..KernelView::default()
            }),
            ..Context::default()
        };
        count(&sockets, None, &ctx, None).findings.remove(0)
    }

    #[test]
    fn reuse_takes_the_risk_away_only_where_it_applies() {
        // 6 of 10 ports: a risk unless connect() may reuse them.
        assert!(finding("10.0.0.5:80", Some(0), Some(1)).is_risk());
        assert!(!finding("10.0.0.5:80", Some(1), Some(1)).is_risk());
        // 2: loopback only.
        assert!(finding("10.0.0.5:80", Some(2), Some(1)).is_risk());
        assert!(!finding("127.0.0.1:80", Some(2), Some(1)).is_risk());
        // Without timestamps nothing is reused.
        assert!(finding("10.0.0.5:80", Some(1), Some(0)).is_risk());
        // Unknown sysctls: the risk stands.
        assert!(finding("10.0.0.5:80", None, None).is_risk());
        let Finding::TimeWaitPorts { reuse, count, .. } = finding("127.0.0.1:80", Some(2), Some(1))
        else {
            panic!("not a TIME_WAIT finding")
        };
        assert_eq!(count, 6);
        assert!(reuse.loopback && reuse.applies());
    }
}
