//! The start-up census of the tracing commands, its pure part: the sockets inet_diag found in
//! each network namespace and the processes found holding them (`/proc/PID/fd`, as `ss -p`),
//! joined into the owners of the sockets that predate tracing ([`crate::core::seed`]).
//!
//! Listeners are seeded by namespace and port, the key of the kernel's listener map, with the
//! holders of every listener on that key (an `SO_REUSEPORT` group, one listener per address);
//! the other sockets by cookie. A socket no process holds (an orphan closing on its own, a
//! TIME_WAIT socket) has no owner to seed.

use std::collections::BTreeMap;

use crate::{
    core::{
        event::Comm,
        filter::EventFilter,
        seed::{Holders, ListenerSeed, SocketSeed},
        state::TcpState,
    },
    os::{diag::SocketEntry, owners::Owners},
};

/// The states the census asks inet_diag for (one bit per `TCP_*`): those of full sockets whose
/// later transitions need an owner. Not TIME_WAIT and request sockets, which have no owner and
/// no more transitions of their own (and are most of the sockets of a busy server), nor CLOSE.
pub const STATES: u32 = {
    let mut bits = 0;
    let states = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
    ];
    let mut i = 0;
    while i < states.len() {
        bits |= 1 << states[i] as u32;
        i += 1;
    }
    bits
};

/// The sockets of one network namespace, as one dump found them.
#[derive(Clone, Debug, Default)]
pub struct NamespaceSockets {
    pub netns: u32,
    pub sockets: Vec<SocketEntry>,
}

/// What the census found to seed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seeds {
    /// One per namespace and port, in that order.
    pub listeners: Vec<ListenerSeed>,
    /// In dump order.
    pub sockets: Vec<SocketSeed>,
    /// Sockets the filter kept, seeded or not.
    pub considered: usize,
    /// Sockets the filter kept that no process holds.
    pub without_holder: usize,
}

/// The holders of a socket: the lowest pid of them stands for them all.
fn holders<'a>(mut processes: impl Iterator<Item = (u32, &'a str)>, count: usize) -> Holders {
    let (pid, comm) = processes.next().unwrap_or((0, ""));
    Holders {
        pid,
        comm: Comm::from(comm),
        count: u32::try_from(count).unwrap_or(u32::MAX),
    }
}

fn wanted(filter: &EventFilter, netns: u32, socket: &SocketEntry) -> bool {
    let (lport, rport) = (socket.local.port(), socket.remote.port());
    filter.family.is_none_or(|wanted| wanted == socket.family)
        && filter.netns.is_none_or(|wanted| wanted == netns)
        && (filter.lports.is_empty() || filter.lports.contains(&lport))
        // A listener has no remote port: its children's are their clients'.
        && (socket.state == TcpState::Listen
            || filter.rports.is_empty()
            || filter.rports.contains(&rport))
}

/// Joins the sockets of each namespace to the processes holding them, keeping what `filter`
/// would show (its family, ports and namespace; not its owner, which the seeds are for).
pub fn seeds(namespaces: &[NamespaceSockets], owners: &Owners, filter: &EventFilter) -> Seeds {
    let mut found = Seeds::default();
    // (namespace, port) → pid → comm: the holders of every listener on the key.
    let mut listeners: BTreeMap<(u32, u16), BTreeMap<u32, &str>> = BTreeMap::new();
    for namespace in namespaces {
        for socket in &namespace.sockets {
            if STATES & (1 << socket.state as u32) == 0 || !wanted(filter, namespace.netns, socket)
            {
                continue;
            }
            found.considered += 1;
            let held = owners.all(socket.inode);
            if socket.inode == 0 || held.is_empty() {
                found.without_holder += 1;
                continue;
            }
            if socket.state == TcpState::Listen {
                let key = (namespace.netns, socket.local.port());
                let processes = listeners.entry(key).or_default();
                for owner in held {
                    processes.entry(owner.pid).or_insert(owner.comm.as_str());
                }
            } else if socket.cookie != 0 {
                found.sockets.push(SocketSeed {
                    cookie: socket.cookie,
                    holders: holders(held.iter().map(|o| (o.pid, o.comm.as_str())), held.len()),
                });
            }
        }
    }
    found.listeners = listeners
        .into_iter()
        .map(|((netns, port), processes)| ListenerSeed {
            netns,
            port,
            holders: holders(
                processes.iter().map(|(pid, comm)| (*pid, *comm)),
                processes.len(),
            ),
        })
        .collect();
    found
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::{census::tests::sock, core::event::Family, os::owners::Owner};

    fn with_cookie(mut socket: SocketEntry, cookie: u64) -> SocketEntry {
        socket.cookie = cookie;
        socket
    }

    fn owner(pid: u32, comm: &str) -> Owner {
        Owner {
            pid,
            comm: comm.into(),
        }
    }

    fn holders(pid: u32, comm: &str, count: u32) -> Holders {
        Holders {
            pid,
            comm: comm.into(),
            count,
        }
    }

    /// A pre-forked server (master 100, workers 101 and 102) listening on :80 twice (IPv4 and
    /// IPv6), one of its connections, an orphan, a TIME_WAIT socket, and a python server in
    /// another namespace on the same port.
    fn census() -> (Vec<NamespaceSockets>, Owners) {
        use TcpState::*;
        let host = NamespaceSockets {
            netns: 1,
            sockets: vec![
                sock(Listen, "0.0.0.0:80", "0.0.0.0:0", 10),
                sock(Listen, "0.0.0.0:80", "0.0.0.0:0", 11),
                with_cookie(sock(Established, "10.0.0.1:80", "10.0.0.9:5000", 12), 900),
                with_cookie(sock(FinWait2, "10.0.0.1:80", "10.0.0.9:5001", 0), 901),
                sock(TimeWait, "10.0.0.1:80", "10.0.0.9:5002", 0),
                with_cookie(sock(CloseWait, "10.0.0.1:22", "10.0.0.9:6000", 13), 902),
            ],
        };
        let container = NamespaceSockets {
            netns: 2,
            sockets: vec![sock(Listen, "0.0.0.0:80", "0.0.0.0:0", 20)],
        };
        let nginx = [
            owner(100, "nginx"),
            owner(101, "nginx"),
            owner(102, "nginx"),
        ];
        let owners = Owners::from_map(HashMap::from([
            (10, nginx.to_vec()),
            (11, vec![owner(100, "nginx"), owner(103, "nginx")]),
            (12, vec![owner(101, "nginx")]),
            (13, vec![owner(300, "sshd"), owner(301, "sshd")]),
            (20, vec![owner(200, "python3")]),
        ]));
        (vec![host, container], owners)
    }

    #[test]
    fn listeners_by_namespace_and_port_with_all_their_holders_and_sockets_by_cookie() {
        let (namespaces, owners) = census();
        let seeds = seeds(&namespaces, &owners, &EventFilter::default());
        assert_eq!(
            seeds.listeners,
            [
                ListenerSeed {
                    netns: 1,
                    port: 80,
                    holders: holders(100, "nginx", 4),
                },
                ListenerSeed {
                    netns: 2,
                    port: 80,
                    holders: holders(200, "python3", 1),
                },
            ]
        );
        assert_eq!(
            seeds.sockets,
            [
                SocketSeed {
                    cookie: 900,
                    holders: holders(101, "nginx", 1),
                },
                SocketSeed {
                    cookie: 902,
                    holders: holders(300, "sshd", 2),
                },
            ]
        );
        // The TIME_WAIT socket is not asked for; the orphan has no holder.
        assert_eq!((seeds.considered, seeds.without_holder), (6, 1));
    }

    #[test]
    fn the_filter_keeps_what_it_would_show() {
        let (namespaces, owners) = census();
        let only = |filter: EventFilter| {
            let seeds = seeds(&namespaces, &owners, &filter);
            (
                seeds
                    .listeners
                    .iter()
                    .map(|l| (l.netns, l.port))
                    .collect::<Vec<_>>(),
                seeds.sockets.iter().map(|s| s.cookie).collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            only(EventFilter {
                lports: vec![22],
                ..EventFilter::default()
            }),
            (vec![], vec![902])
        );
        // Listeners pass a remote-port filter: their children's remote ports are the clients'.
        assert_eq!(
            only(EventFilter {
                rports: vec![5000],
                ..EventFilter::default()
            }),
            (vec![(1, 80), (2, 80)], vec![900])
        );
        assert_eq!(
            only(EventFilter {
                netns: Some(2),
                ..EventFilter::default()
            }),
            (vec![(2, 80)], vec![])
        );
        assert_eq!(
            only(EventFilter {
                family: Some(Family::Inet6),
                ..EventFilter::default()
            }),
            (vec![], vec![])
        );
        // The owner filter is not the census's: seeds name the owners it then selects on.
        assert_eq!(
            only(EventFilter {
                pid: Some(1),
                ..EventFilter::default()
            })
            .1,
            [900, 902]
        );
    }

    #[test]
    fn the_states_asked_for_leave_out_time_wait_request_sockets_and_close() {
        for state in TcpState::ALL {
            let asked = STATES & (1 << state as u32) != 0;
            let expected = !matches!(
                state,
                TcpState::TimeWait | TcpState::NewSynRecv | TcpState::Close
            );
            assert_eq!(asked, expected, "{state}");
        }
    }
}
