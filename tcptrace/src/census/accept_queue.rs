//! Listeners and the connections waiting in their accept queues.
//!
//! inet_diag reports a listener's accept queue in `idiag_rqueue` (`sk_ack_backlog`) and its
//! backlog in `idiag_wqueue` (`sk_max_ack_backlog`, listen()'s argument capped by
//! net.core.somaxconn). The kernel calls the queue full when it holds more than the backlog
//! (`sk_acceptq_is_full()`: `ack_backlog > max_ack_backlog`), and then drops SYNs and final
//! ACKs, counting each in ListenOverflows.
//!
//! A child waiting in the queue is a full socket (ESTABLISHED, or CLOSE_WAIT when its peer gave
//! up) without a file: accept() creates the file, so until then the socket's inode is 0 and no
//! process holds it. Those are told apart from sockets whose holder we could not see.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

use crate::{
    core::state::TcpState,
    os::{diag::SocketEntry, owners::Owner, owners::Owners},
};

/// The listening sockets of a snapshot, by port.
pub struct Listeners<'a> {
    by_port: HashMap<u16, Vec<&'a SocketEntry>>,
}

/// How closely a listening address matches a child's local address: the kernel prefers a
/// listener bound to the address itself over a wildcard one (`compute_score()`).
fn specificity(listener: IpAddr, local: IpAddr) -> Option<u8> {
    let (listener, local) = (listener.to_canonical(), local.to_canonical());
    if listener == local {
        return Some(2);
    }
    match listener {
        // 0.0.0.0 takes IPv4 connections only; [::] takes both unless IPV6_V6ONLY, which
        // inet_diag does not report.
        IpAddr::V4(any) if any.is_unspecified() => local.is_ipv4().then_some(1),
        IpAddr::V6(any) if any.is_unspecified() => Some(1),
        _ => None,
    }
}

impl<'a> Listeners<'a> {
    pub fn of(sockets: &'a [SocketEntry]) -> Self {
        let mut by_port: HashMap<u16, Vec<&SocketEntry>> = HashMap::new();
        for socket in sockets.iter().filter(|s| s.state == TcpState::Listen) {
            by_port.entry(socket.local.port()).or_default().push(socket);
        }
        Self { by_port }
    }

    /// True for a socket that can only be a child waiting in an accept queue: a full
    /// connection without a file. (Closing sockets without a file are orphans: their process
    /// closed them.)
    pub fn is_unaccepted(socket: &SocketEntry) -> bool {
        socket.inode == 0 && matches!(socket.state, TcpState::Established | TcpState::CloseWait)
    }

    /// The listening address whose accept queue a child waits in: of the listeners of its
    /// port with a non-empty queue, the one bound most closely to its local address.
    pub fn queue_of(&self, child: &SocketEntry) -> Option<SocketAddr> {
        self.by_port
            .get(&child.local.port())?
            .iter()
            .filter(|l| l.recv_q > 0)
            .filter_map(|l| Some((specificity(l.local.ip(), child.local.ip())?, l.local)))
            .max_by_key(|(score, addr)| (*score, std::cmp::Reverse(*addr)))
            .map(|(_, addr)| addr)
    }

    /// The processes holding a listening address (every socket of an `SO_REUSEPORT` group),
    /// lowest pid first.
    pub fn holders(&self, addr: SocketAddr, owners: Option<&Owners>) -> Vec<Owner> {
        let Some(owners) = owners else {
            return Vec::new();
        };
        let mut holders: Vec<Owner> = self
            .by_port
            .get(&addr.port())
            .into_iter()
            .flatten()
            .filter(|l| l.local == addr)
            .flat_map(|l| owners.all(l.inode).iter().cloned())
            .collect();
        holders.sort();
        holders.dedup();
        holders
    }

    /// Listening sockets on exactly this address (more than one: an `SO_REUSEPORT` group).
    pub fn sharing(&self, addr: SocketAddr) -> u64 {
        self.by_port
            .get(&addr.port())
            .map_or(0, |ls| ls.iter().filter(|l| l.local == addr).count() as u64)
    }

    /// Every listening socket with connections waiting for accept(), in address order.
    pub fn with_queue(&self) -> Vec<&'a SocketEntry> {
        let mut queued: Vec<&SocketEntry> = self
            .by_port
            .values()
            .flatten()
            .filter(|l| l.recv_q > 0)
            .copied()
            .collect();
        queued.sort_by_key(|l| (l.local, l.inode));
        queued
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::census::tests::sock;

    fn listener(local: &str, queue: u32, inode: u32) -> SocketEntry {
        SocketEntry {
            recv_q: queue,
            send_q: 128,
            ..sock(TcpState::Listen, local, "0.0.0.0:0", inode)
        }
    }

    #[test]
    fn children_wait_on_the_most_specific_listener_with_a_queue() {
        let sockets = vec![
            listener("0.0.0.0:80", 3, 1),
            listener("10.0.0.1:80", 1, 2),
            listener("[::]:443", 1, 3),
            listener("0.0.0.0:8080", 0, 4),
            listener("[2001:db8::1]:80", 1, 5),
        ];
        let listeners = Listeners::of(&sockets);
        let child = |local: &str| sock(TcpState::Established, local, "10.0.0.9:4000", 0);
        let queue = |local: &str| listeners.queue_of(&child(local));
        assert_eq!(queue("10.0.0.1:80"), Some("10.0.0.1:80".parse().unwrap()));
        assert_eq!(queue("10.0.0.2:80"), Some("0.0.0.0:80".parse().unwrap()));
        // An IPv4 connection to a dual-stack listener has IPv4-mapped addresses.
        assert_eq!(
            queue("[::ffff:10.0.0.1]:443"),
            Some("[::]:443".parse().unwrap())
        );
        assert_eq!(queue("10.0.0.1:443"), Some("[::]:443".parse().unwrap()));
        // An empty queue holds no child; 0.0.0.0 takes no IPv6 connection.
        assert_eq!(queue("10.0.0.1:8080"), None);
        assert_eq!(
            queue("[2001:db8::2]:80"),
            None,
            "neither 0.0.0.0 nor another IPv6 address"
        );
        assert_eq!(queue("10.0.0.1:22"), None);
        assert_eq!(
            listeners
                .with_queue()
                .iter()
                .map(|l| l.local.to_string())
                .collect::<Vec<_>>(),
            ["0.0.0.0:80", "10.0.0.1:80", "[::]:443", "[2001:db8::1]:80"]
        );
    }

    #[test]
    fn only_full_sockets_without_a_file_are_unaccepted() {
        use TcpState::*;
        assert!(Listeners::is_unaccepted(&sock(
            Established,
            "10.0.0.1:80",
            "10.0.0.9:1",
            0
        )));
        assert!(Listeners::is_unaccepted(&sock(
            CloseWait,
            "10.0.0.1:80",
            "10.0.0.9:1",
            0
        )));
        assert!(!Listeners::is_unaccepted(&sock(
            CloseWait,
            "10.0.0.1:80",
            "10.0.0.9:1",
            7
        )));
        // An orphan: its process closed it.
        assert!(!Listeners::is_unaccepted(&sock(
            FinWait1,
            "10.0.0.1:80",
            "10.0.0.9:1",
            0
        )));
        assert!(!Listeners::is_unaccepted(&sock(
            TimeWait,
            "10.0.0.1:80",
            "10.0.0.9:1",
            0
        )));
    }

    #[test]
    fn holders_of_a_reuseport_group_are_all_its_processes() {
        let sockets = vec![
            listener("0.0.0.0:80", 2, 1),
            listener("0.0.0.0:80", 0, 2),
            listener("0.0.0.0:81", 0, 3),
        ];
        let owner = |pid, comm: &str| Owner {
            pid,
            comm: comm.to_owned(),
        };
        let owners = Owners::from_map(HashMap::from([
            (1, vec![owner(10, "nginx"), owner(11, "nginx")]),
            (2, vec![owner(11, "nginx"), owner(12, "nginx")]),
            (3, vec![owner(99, "other")]),
        ]));
        let listeners = Listeners::of(&sockets);
        let addr = "0.0.0.0:80".parse().unwrap();
        assert_eq!(
            listeners.holders(addr, Some(&owners)),
            [owner(10, "nginx"), owner(11, "nginx"), owner(12, "nginx")]
        );
        assert_eq!(listeners.holders(addr, None), []);
        assert_eq!(listeners.sharing(addr), 2);
    }
}
