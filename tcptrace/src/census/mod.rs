//! Counting a socket snapshot: per state, per group, the change since the previous snapshot,
//! and the findings operators look for; and the start-up census of the tracing commands
//! (`seeds`). Pure: typed sockets in, typed tables out.

pub mod close_wait;
pub mod counts;
pub mod live;
pub mod seeds;
pub mod selection;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::{IpAddr, SocketAddr},
};

use crate::{
    census::{close_wait::CloseWaitAges, counts::Counts},
    core::state::TcpState,
    os::{diag::SocketEntry, owners::Owners, sysctl::PortRange},
};

/// How `--by` groups sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupBy {
    /// The service port: the local port when a listener holds it, else the remote port.
    Port,
    /// The process holding the socket (TIME_WAIT and request sockets have none: `-`).
    Process,
    /// The remote address.
    Remote,
}

/// A group's key, ordered so that tables are stable.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupKey {
    Port(u16),
    Process { pid: u32, comm: String },
    NoProcess,
    Remote(IpAddr),
    NoRemote,
}

impl GroupKey {
    pub fn label(&self) -> String {
        match self {
            Self::Port(port) => port.to_string(),
            Self::Process { pid, comm } => format!("{pid}/{comm}"),
            Self::NoProcess | Self::NoRemote => "-".to_owned(),
            Self::Remote(addr) => addr.to_string(),
        }
    }
}

/// What the census looks at besides the sockets themselves.
pub struct Context<'a> {
    /// Socket owners, when they were looked up.
    pub owners: Option<&'a Owners>,
    pub port_range: Option<PortRange>,
    /// When tracing: when CLOSE_WAIT sockets entered the state, and the time of the snapshot
    /// (kernel monotonic) their ages are measured at.
    pub close_wait_ages: Option<(&'a CloseWaitAges, u64)>,
}

/// CLOSE_WAIT sockets held longer than this are counted apart in the findings: a connection
/// the application should have closed long ago.
pub const CLOSE_WAIT_OLD_NS: u64 = 60_000_000_000;

/// How long one process's CLOSE_WAIT sockets have been there, when tracing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseWaitAge {
    /// Sockets with a known age (the others were not timed: too many to follow).
    pub timed: u64,
    /// The oldest socket's time in CLOSE_WAIT.
    pub oldest_ns: u64,
    /// False when the oldest was already in CLOSE_WAIT when first seen (at tracing start, or
    /// its transition was lost): it has been there at least `oldest_ns`.
    pub oldest_exact: bool,
    /// Sockets in CLOSE_WAIT for at least [`CLOSE_WAIT_OLD_NS`].
    pub old: u64,
}

/// Something worth an operator's attention, printed under the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// A process holds sockets whose peer closed and that it never closed itself.
    CloseWait {
        owner: GroupKey,
        count: u64,
        /// When tracing: how long they have been there.
        age: Option<CloseWaitAge>,
    },
    /// TIME_WAIT sockets towards one destination hold this many of the ephemeral ports.
    TimeWaitPorts {
        total: u64,
        local: IpAddr,
        remote: SocketAddr,
        count: u64,
        range: PortRange,
    },
    /// Half-open connections (request sockets) waiting on a listening port.
    SynRecv {
        port: u16,
        count: u64,
        /// Change since the previous snapshot.
        growth: Option<i64>,
    },
}

/// One snapshot, counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Census {
    pub total: Counts,
    /// Per group, when grouping was asked for, in key order.
    pub groups: Option<BTreeMap<GroupKey, Counts>>,
    pub findings: Vec<Finding>,
    /// The kernel flagged the dump as changed while it was taken.
    pub interrupted: bool,
}

/// Share of the ephemeral range one destination's TIME_WAIT sockets may use before it is
/// reported as a risk; below it, TIME_WAIT is normal traffic.
pub const TIME_WAIT_RISK_PERCENT: u64 = 50;

/// Counts a snapshot. `previous` (the last census of a watch) feeds the SYN_RECV growth.
pub fn count(
    sockets: &[SocketEntry],
    by: Option<GroupBy>,
    ctx: &Context<'_>,
    previous: Option<&Census>,
) -> Census {
    let mut total = Counts::default();
    for socket in sockets {
        total.add(socket.state);
    }
    let groups = by.map(|by| group(sockets, by, ctx));
    let findings = findings(sockets, ctx, previous);
    Census {
        total,
        groups,
        findings,
        interrupted: false,
    }
}

fn owner_key(owners: Option<&Owners>, inode: u32) -> GroupKey {
    match owners.and_then(|o| o.first(inode)) {
        Some(owner) if inode != 0 => GroupKey::Process {
            pid: owner.pid,
            comm: owner.comm.clone(),
        },
        _ => GroupKey::NoProcess,
    }
}

fn group(sockets: &[SocketEntry], by: GroupBy, ctx: &Context<'_>) -> BTreeMap<GroupKey, Counts> {
    let listening: HashSet<u16> = sockets
        .iter()
        .filter(|s| s.state == TcpState::Listen)
        .map(|s| s.local.port())
        .collect();
    let mut groups: BTreeMap<GroupKey, Counts> = BTreeMap::new();
    for socket in sockets {
        let key = match by {
            GroupBy::Port if listening.contains(&socket.local.port()) => {
                GroupKey::Port(socket.local.port())
            }
            GroupBy::Port => GroupKey::Port(socket.remote.port()),
            GroupBy::Process => owner_key(ctx.owners, socket.inode),
            GroupBy::Remote if socket.remote.ip().is_unspecified() => GroupKey::NoRemote,
            GroupBy::Remote => GroupKey::Remote(socket.remote.ip()),
        };
        groups.entry(key).or_default().add(socket.state);
    }
    groups
}

fn findings(sockets: &[SocketEntry], ctx: &Context<'_>, previous: Option<&Census>) -> Vec<Finding> {
    let mut found = Vec::new();

    let mut close_wait: HashMap<GroupKey, (u64, Option<CloseWaitAge>)> = HashMap::new();
    for socket in sockets.iter().filter(|s| s.state == TcpState::CloseWait) {
        let (count, age) = close_wait
            .entry(owner_key(ctx.owners, socket.inode))
            .or_default();
        *count += 1;
        if let Some((ages, now_ns)) = ctx.close_wait_ages {
            let age = age.get_or_insert(CloseWaitAge {
                timed: 0,
                oldest_ns: 0,
                oldest_exact: true,
                old: 0,
            });
            if let Some(since) = ages.get(socket) {
                let held = now_ns.saturating_sub(since.ns);
                age.timed += 1;
                if held > age.oldest_ns || age.timed == 1 {
                    age.oldest_ns = held;
                    age.oldest_exact = since.exact;
                }
                if held >= CLOSE_WAIT_OLD_NS {
                    age.old += 1;
                }
            }
        }
    }
    let mut close_wait: Vec<_> = close_wait.into_iter().collect();
    close_wait.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(&b.0)));
    found.extend(
        close_wait
            .into_iter()
            .map(|(owner, (count, age))| Finding::CloseWait { owner, count, age }),
    );

    // A TIME_WAIT socket keeps its 4-tuple: a new connection from the same local address to
    // the same destination cannot take its local port (unless tcp_tw_reuse allows it), so the
    // risk is per destination, against the size of the ephemeral range.
    if let Some(range) = ctx.port_range {
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
        if let Some(((local, remote), count)) = per_destination
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
        {
            found.push(Finding::TimeWaitPorts {
                total,
                local,
                remote,
                count,
                range,
            });
        }
    }

    let listening: HashSet<u16> = sockets
        .iter()
        .filter(|s| s.state == TcpState::Listen)
        .map(|s| s.local.port())
        .collect();
    let mut syn_recv: BTreeMap<u16, u64> = BTreeMap::new();
    for socket in sockets
        .iter()
        .filter(|s| matches!(s.state, TcpState::SynRecv | TcpState::NewSynRecv))
        .filter(|s| listening.contains(&s.local.port()))
    {
        *syn_recv.entry(socket.local.port()).or_default() += 1;
    }
    let before: HashMap<u16, u64> = previous
        .map(|p| {
            p.findings
                .iter()
                .filter_map(|f| match f {
                    Finding::SynRecv { port, count, .. } => Some((*port, *count)),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    found.extend(syn_recv.into_iter().map(|(port, count)| Finding::SynRecv {
        port,
        count,
        growth: previous.map(|_| count as i64 - before.get(&port).copied().unwrap_or(0) as i64),
    }));
    found
}

impl Finding {
    /// True when the finding is a problem rather than information.
    pub fn is_risk(&self) -> bool {
        match self {
            Self::CloseWait { .. } => true,
            Self::TimeWaitPorts { count, range, .. } => {
                count * 100 >= u64::from(range.size()) * TIME_WAIT_RISK_PERCENT
            }
            Self::SynRecv { growth, .. } => growth.is_some_and(|g| g > 0),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::{
        core::event::Family,
        os::{diag::Timer, owners::Owner},
    };

    pub fn sock(state: TcpState, local: &str, remote: &str, inode: u32) -> SocketEntry {
        SocketEntry {
            family: Family::Inet,
            state,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            recv_q: 0,
            send_q: 0,
            timer: Timer::Off,
            expires_ms: 0,
            retrans: 0,
            info: None,
            uid: 0,
            inode,
            cookie: 0,
        }
    }

    pub fn population() -> Vec<SocketEntry> {
        use TcpState::*;
        vec![
            sock(Listen, "0.0.0.0:80", "0.0.0.0:0", 1),
            sock(Established, "10.0.0.1:80", "10.0.0.9:40000", 2),
            sock(CloseWait, "10.0.0.1:80", "10.0.0.9:40001", 3),
            sock(CloseWait, "10.0.0.1:80", "10.0.0.8:40002", 4),
            sock(NewSynRecv, "10.0.0.1:80", "10.0.0.7:40003", 0),
            sock(TimeWait, "10.0.0.1:33000", "10.0.0.5:5432", 0),
            sock(TimeWait, "10.0.0.1:33001", "10.0.0.5:5432", 0),
            sock(TimeWait, "10.0.0.1:33002", "10.0.0.6:5432", 0),
            sock(Established, "10.0.0.1:33003", "10.0.0.5:5432", 5),
        ]
    }

    pub fn owners() -> Owners {
        let owner = |pid, comm: &str| {
            vec![Owner {
                pid,
                comm: comm.to_owned(),
            }]
        };
        Owners::from_map(HashMap::from([
            (1, owner(100, "nginx")),
            (2, owner(101, "nginx")),
            (3, owner(101, "nginx")),
            (4, owner(102, "worker")),
            (5, owner(200, "app")),
        ]))
    }

    #[test]
    fn counts_per_state_with_request_sockets_as_syn_recv() {
        let census = count(
            &population(),
            None,
            &Context {
                owners: None,
                port_range: None,
                close_wait_ages: None,
            },
            None,
        );
        let counts: Vec<_> = census.total.iter().filter(|(_, n)| *n > 0).collect();
        assert_eq!(
            counts,
            [
                (TcpState::Established, 2),
                (TcpState::SynRecv, 1),
                (TcpState::TimeWait, 3),
                (TcpState::CloseWait, 2),
                (TcpState::Listen, 1),
            ]
        );
        assert_eq!(census.total.total(), 9);
        assert!(census.groups.is_none());
    }

    #[test]
    fn groups_by_service_port_process_and_remote() {
        let owners = owners();
        let ctx = Context {
            owners: Some(&owners),
            port_range: None,
            close_wait_ages: None,
        };
        let keys = |by| -> Vec<(String, u64)> {
            count(&population(), Some(by), &ctx, None)
                .groups
                .unwrap()
                .iter()
                .map(|(k, c)| (k.label(), c.total()))
                .collect()
        };
        assert_eq!(
            keys(GroupBy::Port),
            [("80".to_owned(), 5), ("5432".to_owned(), 4)]
        );
        assert_eq!(
            keys(GroupBy::Process),
            [
                ("100/nginx".to_owned(), 1),
                ("101/nginx".to_owned(), 2),
                ("102/worker".to_owned(), 1),
                ("200/app".to_owned(), 1),
                ("-".to_owned(), 4),
            ]
        );
        assert_eq!(
            keys(GroupBy::Remote),
            [
                ("10.0.0.5".to_owned(), 3),
                ("10.0.0.6".to_owned(), 1),
                ("10.0.0.7".to_owned(), 1),
                ("10.0.0.8".to_owned(), 1),
                ("10.0.0.9".to_owned(), 2),
                ("-".to_owned(), 1),
            ]
        );
    }

    #[test]
    fn findings_name_close_wait_holders_time_wait_destinations_and_syn_recv() {
        let owners = owners();
        let ctx = Context {
            owners: Some(&owners),
            port_range: PortRange::parse("32768\t60999\n"),
            close_wait_ages: None,
        };
        let census = count(&population(), None, &ctx, None);
        assert_eq!(
            census.findings,
            [
                Finding::CloseWait {
                    owner: GroupKey::Process {
                        pid: 101,
                        comm: "nginx".into()
                    },
                    count: 1,
                    age: None,
                },
                Finding::CloseWait {
                    owner: GroupKey::Process {
                        pid: 102,
                        comm: "worker".into()
                    },
                    count: 1,
                    age: None,
                },
                Finding::TimeWaitPorts {
                    total: 3,
                    local: "10.0.0.1".parse().unwrap(),
                    remote: "10.0.0.5:5432".parse().unwrap(),
                    count: 2,
                    range: PortRange {
                        low: 32768,
                        high: 60999
                    },
                },
                Finding::SynRecv {
                    port: 80,
                    count: 1,
                    growth: None
                },
            ]
        );
        assert!(!census.findings[2].is_risk());
        assert!(census.findings[0].is_risk());
    }

    #[test]
    fn close_wait_findings_say_how_long_when_tracing() {
        use crate::{census::close_wait::CloseWaitAges, core::event::Transition};
        const S: u64 = 1_000_000_000;
        let owners = owners();
        let mut sockets = population();
        sockets.push(sock(TcpState::CloseWait, "10.0.0.1:80", "10.0.0.4:1", 2));
        // Seen at the first snapshot (t = 100 s): at least since then.
        let mut ages = CloseWaitAges::default();
        ages.snapshot(&sockets[..4], 100 * S);
        // Entered CLOSE_WAIT while tracing, at t = 150 s.
        ages.apply(&Transition {
            pid: Some(101),
            comm: "nginx".into(),
            laddr: "10.0.0.1".parse().unwrap(),
            lport: 80,
            raddr: "10.0.0.4".parse().unwrap(),
            rport: 1,
            ..Transition::fixture(1, 150 * S, TcpState::Established, TcpState::CloseWait)
        });
        let ctx = Context {
            owners: Some(&owners),
            port_range: None,
            close_wait_ages: Some((&ages, 170 * S)),
        };
        let census = count(&sockets, None, &ctx, None);
        let close_wait: Vec<_> = census
            .findings
            .iter()
            .filter_map(|f| match f {
                Finding::CloseWait { owner, count, age } => Some((owner.label(), *count, *age)),
                _ => None,
            })
            .collect();
        assert_eq!(
            close_wait,
            [
                (
                    "101/nginx".to_owned(),
                    2,
                    Some(CloseWaitAge {
                        timed: 2,
                        oldest_ns: 70 * S,
                        oldest_exact: false,
                        old: 1
                    })
                ),
                (
                    "102/worker".to_owned(),
                    1,
                    Some(CloseWaitAge {
                        timed: 1,
                        oldest_ns: 70 * S,
                        oldest_exact: false,
                        old: 1
                    })
                ),
            ]
        );
    }

    #[test]
    fn syn_recv_growth_is_measured_against_the_previous_census() {
        let ctx = Context {
            owners: None,
            port_range: None,
            close_wait_ages: None,
        };
        let mut sockets = population();
        let first = count(&sockets, None, &ctx, None);
        sockets.push(sock(TcpState::NewSynRecv, "10.0.0.1:80", "10.0.0.3:1", 0));
        sockets.push(sock(TcpState::NewSynRecv, "10.0.0.1:80", "10.0.0.3:2", 0));
        let second = count(&sockets, None, &ctx, Some(&first));
        let syn = second
            .findings
            .iter()
            .find(|f| matches!(f, Finding::SynRecv { .. }))
            .unwrap();
        assert_eq!(
            *syn,
            Finding::SynRecv {
                port: 80,
                count: 3,
                growth: Some(2)
            }
        );
        assert!(syn.is_risk());
    }

    #[test]
    fn time_wait_near_the_range_size_is_a_risk() {
        let range = PortRange {
            low: 40000,
            high: 40009,
        };
        let sockets: Vec<_> = (40000..40006)
            .map(|p| {
                sock(
                    TcpState::TimeWait,
                    &format!("10.0.0.1:{p}"),
                    "10.0.0.5:80",
                    0,
                )
            })
            .collect();
        let census = count(
            &sockets,
            None,
            &Context {
                owners: None,
                port_range: Some(range),
                close_wait_ages: None,
            },
            None,
        );
        assert!(census.findings[0].is_risk(), "{:?}", census.findings);
    }

    #[test]
    fn port_ranges_parse() {
        assert_eq!(
            PortRange::parse("32768 60999"),
            Some(PortRange {
                low: 32768,
                high: 60999
            })
        );
        assert_eq!(PortRange::parse("32768 60999").unwrap().size(), 28232);
        for bad in ["", "1", "2 1", "a b", "1 2 3", "1 70000"] {
            assert_eq!(PortRange::parse(bad), None, "{bad}");
        }
    }
}
