//! Counting a socket snapshot: per state, per group, the change since the previous snapshot,
//! and the findings operators look for; and the start-up census of the tracing commands
//! (`seeds`). Pure: typed sockets in, typed tables out.

pub mod accept_queue;
pub mod close_wait;
pub mod counts;
pub mod live;
pub mod reconcile;
pub mod seeds;
pub mod selection;
pub mod time_wait_ports;
pub mod timewait_sockets;

pub use time_wait_ports::TwReuse;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::{IpAddr, SocketAddr},
};

use crate::{
    census::{
        accept_queue::Listeners,
        close_wait::{AgeSource, CloseWaitAges},
        counts::Counts,
    },
    core::{counters::ListenCounters, state::TcpState},
    os::{
        diag::SocketEntry,
        owners::{Owner, Owners},
        sysctl::{PortRange, TcpSysctls},
    },
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
    /// CLOSE_WAIT sockets held this long are a leak (`--close-wait-age`).
    pub close_wait_threshold_ns: u64,
    /// Every process's descriptors could be read: a socket with a file and no holder found is
    /// not hidden from us.
    pub sees_every_process: bool,
    /// The namespace's counters and sysctls at the snapshot, when read.
    pub kernel: Option<KernelView>,
}

impl Default for Context<'_> {
    fn default() -> Self {
        Self {
            owners: None,
            port_range: None,
            close_wait_ages: None,
            close_wait_threshold_ns: CLOSE_WAIT_OLD_NS,
            sees_every_process: false,
            kernel: None,
        }
    }
}

/// The namespace's counters and sysctls, read beside a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelView {
    /// The network namespace they are of (inode), when known.
    pub netns: Option<u32>,
    /// When they were read (kernel monotonic): the next snapshot's window starts here.
    pub at_ns: u64,
    /// `None` when /proc/net/netstat could not be read.
    pub counters: Option<ListenCounters>,
    pub sysctls: TcpSysctls,
}

/// The default of `--close-wait-age`: CLOSE_WAIT sockets held this long are a leak. A server
/// closes a connection its peer closed within milliseconds of reading the end of file, and
/// even a worker busy with a slow request within seconds; a minute without close() is code
/// that never will.
pub const CLOSE_WAIT_OLD_NS: u64 = 60_000_000_000;

/// How long one holder's CLOSE_WAIT sockets have been there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseWaitAge {
    /// Sockets with a known age, exact or a lower bound (the others were not timed).
    pub timed: u64,
    /// The oldest socket's time in CLOSE_WAIT.
    pub oldest_ns: u64,
    /// How the oldest's time is known: exactly (the stream saw it enter), or as a lower bound.
    pub oldest_source: AgeSource,
    /// Sockets in CLOSE_WAIT for at least the threshold (by their exact age or lower bound).
    pub old: u64,
}

/// Who holds CLOSE_WAIT sockets.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Holder {
    /// The process holding them (the lowest pid when several do).
    Process { pid: u32, comm: String },
    /// Nobody yet: children waiting in an accept queue, which no process has accepted. The
    /// listening address, when a listener of the snapshot has them in its queue, and the
    /// processes holding it.
    NotAccepted {
        listener: Option<SocketAddr>,
        holders: Vec<Owner>,
    },
    /// They have a file but no holder was found: `hidden` when this process cannot read
    /// every process's descriptors.
    Unknown { hidden: bool },
}

/// Kernel counters over a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// Since the counters began: boot, or the namespace's creation (a single snapshot).
    SinceBoot,
    /// Between the previous snapshot and this one, `ns` apart.
    Between { ns: u64 },
}

/// The namespace's listener counters over a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counted {
    pub counters: ListenCounters,
    pub window: Window,
}

/// A listener with connections waiting for accept().
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptQueue {
    pub listener: SocketAddr,
    /// The processes holding the listening address (every socket of an SO_REUSEPORT group).
    pub holders: Vec<Owner>,
    /// Connections waiting for accept() (`idiag_rqueue`).
    pub queue: u32,
    /// Its limit (`idiag_wqueue`: listen()'s backlog, capped by net.core.somaxconn).
    pub backlog: u32,
    /// Listening sockets on this address (more than one: an SO_REUSEPORT group, whose
    /// waiting children are counted together).
    pub sharing: u64,
    /// Children of the address in the snapshot, not accepted yet, by state.
    pub waiting_established: u64,
    pub waiting_close_wait: u64,
    /// ListenOverflows and ListenDrops of the namespace over the window, when read.
    pub overflows: Option<Counted>,
}

impl AcceptQueue {
    /// `sk_acceptq_is_full()`: the kernel drops SYNs and final ACKs past the backlog.
    pub fn is_full(&self) -> bool {
        self.queue > self.backlog
    }
}

/// Something worth an operator's attention, printed under the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Sockets whose peer closed and that their holder has not closed.
    CloseWait {
        holder: Holder,
        count: u64,
        /// How long they have been there, when known.
        age: Option<CloseWaitAge>,
        /// `--close-wait-age`: from this age on, they are a leak.
        threshold_ns: u64,
    },
    /// A listener with connections waiting for accept().
    AcceptQueue(AcceptQueue),
    /// The namespace's accept queues overflowed, and no accept queue of the snapshot is full.
    ListenOverflows(Counted),
    /// SYN cookies sent (or SYNs dropped for a full SYN queue) in the namespace.
    SynCookies {
        counted: Counted,
        /// `net.ipv4.tcp_syncookies`.
        sysctl: Option<u8>,
    },
    /// TIME_WAIT sockets towards one destination hold this many of the ephemeral ports.
    TimeWaitPorts {
        total: u64,
        local: IpAddr,
        remote: SocketAddr,
        count: u64,
        range: PortRange,
        reuse: TwReuse,
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
    /// The counters read beside the snapshot: the start of the next one's window.
    pub kernel: Option<KernelView>,
}

/// Share of the ephemeral range one destination's TIME_WAIT sockets may use before it is
/// reported as a risk; below it, TIME_WAIT is normal traffic.
pub const TIME_WAIT_RISK_PERCENT: u64 = 50;

/// Counts a snapshot. `previous` (the last census of a watch) feeds the SYN_RECV growth and
/// the window of the kernel's counters.
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
        kernel: ctx.kernel,
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

/// The namespace's counters over this snapshot's window: since the previous snapshot's reading
/// when there is one, else since boot.
fn counted(ctx: &Context<'_>, previous: Option<&Census>) -> Option<Counted> {
    let now = ctx.kernel?;
    let counters = now.counters?;
    Some(match previous.and_then(|p| p.kernel) {
        Some(KernelView {
            at_ns,
            counters: Some(before),
            ..
        }) => Counted {
            counters: counters.since(&before),
            window: Window::Between {
                ns: now.at_ns.saturating_sub(at_ns),
            },
        },
        _ => Counted {
            counters,
            window: Window::SinceBoot,
        },
    })
}

fn holder(socket: &SocketEntry, ctx: &Context<'_>, listeners: &Listeners<'_>) -> Holder {
    if Listeners::is_unaccepted(socket) {
        let listener = listeners.queue_of(socket);
        return Holder::NotAccepted {
            listener,
            holders: listener
                .map(|l| listeners.holders(l, ctx.owners))
                .unwrap_or_default(),
        };
    }
    match ctx.owners.and_then(|o| o.first(socket.inode)) {
        Some(owner) => Holder::Process {
            pid: owner.pid,
            comm: owner.comm.clone(),
        },
        None => Holder::Unknown {
            hidden: !ctx.sees_every_process,
        },
    }
}

fn close_wait_findings(
    sockets: &[SocketEntry],
    ctx: &Context<'_>,
    listeners: &Listeners<'_>,
) -> Vec<Finding> {
    let mut close_wait: HashMap<Holder, (u64, Option<CloseWaitAge>)> = HashMap::new();
    for socket in sockets.iter().filter(|s| s.state == TcpState::CloseWait) {
        let (count, age) = close_wait
            .entry(holder(socket, ctx, listeners))
            .or_default();
        *count += 1;
        let Some((held, source)) = close_wait::age_of(socket, ctx.close_wait_ages) else {
            continue;
        };
        let age = age.get_or_insert(CloseWaitAge {
            timed: 0,
            oldest_ns: held,
            oldest_source: source,
            old: 0,
        });
        age.timed += 1;
        if held > age.oldest_ns {
            age.oldest_ns = held;
            age.oldest_source = source;
        }
        if held >= ctx.close_wait_threshold_ns {
            age.old += 1;
        }
    }
    let mut close_wait: Vec<_> = close_wait.into_iter().collect();
    close_wait.sort_by(|a, b| b.1.0.cmp(&a.1.0).then_with(|| a.0.cmp(&b.0)));
    close_wait
        .into_iter()
        .map(|(holder, (count, age))| Finding::CloseWait {
            holder,
            count,
            age,
            threshold_ns: ctx.close_wait_threshold_ns,
        })
        .collect()
}

fn accept_queue_findings(
    sockets: &[SocketEntry],
    ctx: &Context<'_>,
    listeners: &Listeners<'_>,
    counted: Option<Counted>,
) -> Vec<Finding> {
    let mut waiting: HashMap<SocketAddr, (u64, u64)> = HashMap::new();
    for socket in sockets.iter().filter(|s| Listeners::is_unaccepted(s)) {
        if let Some(listener) = listeners.queue_of(socket) {
            let (established, close_wait) = waiting.entry(listener).or_default();
            match socket.state {
                TcpState::CloseWait => *close_wait += 1,
                _ => *established += 1,
            }
        }
    }
    let mut found: Vec<Finding> = listeners
        .with_queue()
        .into_iter()
        .map(|l| {
            let (established, close_wait) = waiting.get(&l.local).copied().unwrap_or_default();
            Finding::AcceptQueue(AcceptQueue {
                listener: l.local,
                holders: ctx
                    .owners
                    .map(|o| o.all(l.inode).to_vec())
                    .unwrap_or_default(),
                queue: l.recv_q,
                backlog: l.send_q,
                sharing: listeners.sharing(l.local),
                waiting_established: established,
                waiting_close_wait: close_wait,
                overflows: counted,
            })
        })
        .collect();
    // Overflows no full queue accounts for: a burst between snapshots, or long ago.
    if let Some(counted) = counted
        && counted.counters.listen_overflows > 0
        && !found.iter().any(Finding::is_risk)
    {
        found.push(Finding::ListenOverflows(counted));
    }
    found
}

fn syn_cookie_findings(ctx: &Context<'_>, counted: Option<Counted>) -> Option<Finding> {
    let counted = counted?;
    let c = counted.counters;
    (c.syncookies_sent + c.syncookies_recv + c.syncookies_failed + c.req_q_full_drop > 0).then(
        || Finding::SynCookies {
            counted,
            sysctl: ctx.kernel.and_then(|k| k.sysctls.syncookies),
        },
    )
}

fn findings(sockets: &[SocketEntry], ctx: &Context<'_>, previous: Option<&Census>) -> Vec<Finding> {
    let listeners = Listeners::of(sockets);
    let counted = counted(ctx, previous);
    let mut found = close_wait_findings(sockets, ctx, &listeners);
    found.extend(accept_queue_findings(sockets, ctx, &listeners, counted));
    found.extend(syn_cookie_findings(ctx, counted));
    if let Some(range) = ctx.port_range {
        let sysctls = ctx.kernel.map(|k| k.sysctls).unwrap_or_default();
        found.extend(time_wait_ports::busiest(sockets, range, sysctls).map(|b| {
            Finding::TimeWaitPorts {
                total: b.total,
                local: b.local,
                remote: b.remote,
                count: b.count,
                range,
                reuse: b.reuse,
            }
        }));
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
            // Young CLOSE_WAIT sockets are a server at work: a leak is one known to be old.
            // (Every full socket has tcp_info, so an unknown age is rare: its dump failed.)
            Self::CloseWait { age, .. } => age.is_some_and(|a| a.old > 0),
            // Full, or overflowing between two snapshots while at its limit (the namespace's
            // counter may be another listener's).
            Self::AcceptQueue(queue) => {
                queue.is_full()
                    || queue.overflows.is_some_and(|o| {
                        matches!(o.window, Window::Between { .. })
                            && o.counters.listen_overflows > 0
                            && queue.queue >= queue.backlog
                    })
            }
            Self::ListenOverflows(counted) => matches!(counted.window, Window::Between { .. }),
            // Cookies sent because a SYN queue was full (with 2 they always are), or SYNs
            // dropped for it, between two snapshots; since boot they may be long over.
            Self::SynCookies { counted, sysctl } => {
                matches!(counted.window, Window::Between { .. })
                    && ((counted.counters.syncookies_sent > 0 && *sysctl != Some(2))
                        || counted.counters.req_q_full_drop > 0)
            }
            Self::TimeWaitPorts {
                count,
                range,
                reuse,
                ..
            } => {
                count * 100 >= u64::from(range.size()) * TIME_WAIT_RISK_PERCENT && !reuse.applies()
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
        let census = count(&population(), None, &Context::default(), None);
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
            ..Context::default()
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
            ..Context::default()
        };
        let census = count(&population(), None, &ctx, None);
        assert_eq!(
            census.findings,
            [
                Finding::CloseWait {
                    holder: Holder::Process {
                        pid: 101,
                        comm: "nginx".into()
                    },
                    count: 1,
                    age: None,
                    threshold_ns: CLOSE_WAIT_OLD_NS,
                },
                Finding::CloseWait {
                    holder: Holder::Process {
                        pid: 102,
                        comm: "worker".into()
                    },
                    count: 1,
                    age: None,
                    threshold_ns: CLOSE_WAIT_OLD_NS,
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
                    reuse: TwReuse {
                        sysctl: None,
                        timestamps: None,
                        delay_ms: None,
                        loopback: false,
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
        // Of unknown age (no tcp_info): not known to be a leak.
        assert!(!census.findings[0].is_risk());
    }

    const S: u64 = 1_000_000_000;

    /// A socket as a dump with tcp_info gives it, `last_ack_s` after the last ACK arrived.
    fn with_last_ack(socket: SocketEntry, last_ack_s: u32) -> SocketEntry {
        SocketEntry {
            info: Some(crate::os::diag::parse::TcpInfoCounters {
                last_ack_recv_ms: Some(last_ack_s * 1000),
                ..Default::default()
            }),
            ..socket
        }
    }

    fn close_wait_of(census: &Census) -> Vec<(Holder, u64, Option<CloseWaitAge>)> {
        census
            .findings
            .iter()
            .filter_map(|f| match f {
                Finding::CloseWait {
                    holder, count, age, ..
                } => Some((holder.clone(), *count, *age)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn close_wait_is_a_leak_only_past_the_threshold() {
        let owners = owners();
        let sockets = vec![
            with_last_ack(sock(TcpState::CloseWait, "10.0.0.1:80", "10.0.0.9:1", 3), 5),
            with_last_ack(
                sock(TcpState::CloseWait, "10.0.0.1:80", "10.0.0.9:2", 3),
                312,
            ),
            with_last_ack(sock(TcpState::CloseWait, "10.0.0.1:80", "10.0.0.9:3", 4), 1),
        ];
        let at = |threshold_s: u64| {
            count(
                &sockets,
                None,
                &Context {
                    owners: Some(&owners),
                    close_wait_threshold_ns: threshold_s * S,
                    ..Context::default()
                },
                None,
            )
        };
        let census = at(60);
        let nginx = Holder::Process {
            pid: 101,
            comm: "nginx".into(),
        };
        assert_eq!(
            close_wait_of(&census),
            [
                (
                    nginx.clone(),
                    2,
                    Some(CloseWaitAge {
                        timed: 2,
                        oldest_ns: 312 * S,
                        oldest_source: AgeSource::Kernel,
                        old: 1
                    })
                ),
                (
                    Holder::Process {
                        pid: 102,
                        comm: "worker".into()
                    },
                    1,
                    Some(CloseWaitAge {
                        timed: 1,
                        oldest_ns: S,
                        oldest_source: AgeSource::Kernel,
                        old: 0
                    })
                ),
            ]
        );
        assert!(census.findings[0].is_risk());
        assert!(!census.findings[1].is_risk());
        // A larger threshold: nothing is old enough.
        assert!(at(600).findings.iter().all(|f| !f.is_risk()));
        assert!(at(1).findings.iter().all(Finding::is_risk));
    }

    fn full_queue() -> Vec<SocketEntry> {
        use TcpState::*;
        vec![
            SocketEntry {
                recv_q: 3,
                send_q: 2,
                ..sock(Listen, "0.0.0.0:80", "0.0.0.0:0", 1)
            },
            sock(Established, "10.0.0.1:80", "10.0.0.9:40000", 0),
            sock(Established, "10.0.0.1:80", "10.0.0.9:40001", 0),
            with_last_ack(sock(CloseWait, "10.0.0.1:80", "10.0.0.8:40002", 0), 2),
            // Accepted, then its peer closed: held by its process.
            with_last_ack(sock(CloseWait, "10.0.0.1:80", "10.0.0.8:40003", 4), 2),
            // A file nobody was found to hold.
            with_last_ack(sock(CloseWait, "10.0.0.1:80", "10.0.0.8:40004", 77), 2),
        ]
    }

    #[test]
    fn children_in_a_full_accept_queue_are_not_yet_accepted() {
        let owners = owners();
        let at = |sees_every_process| {
            count(
                &full_queue(),
                None,
                &Context {
                    owners: Some(&owners),
                    sees_every_process,
                    ..Context::default()
                },
                None,
            )
        };
        let census = at(true);
        let nginx = Owner {
            pid: 100,
            comm: "nginx".into(),
        };
        let holders: Vec<_> = close_wait_of(&census)
            .into_iter()
            .map(|(holder, count, _)| (holder, count))
            .collect();
        assert_eq!(
            holders,
            [
                (
                    Holder::Process {
                        pid: 102,
                        comm: "worker".into()
                    },
                    1
                ),
                (
                    Holder::NotAccepted {
                        listener: Some("0.0.0.0:80".parse().unwrap()),
                        holders: vec![nginx.clone()],
                    },
                    1
                ),
                (Holder::Unknown { hidden: false }, 1),
            ]
        );
        let queue = census
            .findings
            .iter()
            .find_map(|f| match f {
                Finding::AcceptQueue(q) => Some(q.clone()),
                _ => None,
            })
            .expect("an accept queue finding");
        assert_eq!(
            queue,
            AcceptQueue {
                listener: "0.0.0.0:80".parse().unwrap(),
                holders: vec![nginx],
                queue: 3,
                backlog: 2,
                sharing: 1,
                waiting_established: 2,
                waiting_close_wait: 1,
                overflows: None,
            }
        );
        assert!(queue.is_full());
        assert!(Finding::AcceptQueue(queue).is_risk());
        // Without the right to read every process, a file without a holder may be hidden.
        assert!(
            close_wait_of(&at(false))
                .iter()
                .any(|(h, _, _)| *h == Holder::Unknown { hidden: true })
        );
    }

    fn counters(overflows: u64, sent: u64, dropped: u64) -> ListenCounters {
        ListenCounters {
            listen_overflows: overflows,
            listen_drops: overflows,
            syncookies_sent: sent,
            syncookies_recv: sent / 2,
            req_q_full_drop: dropped,
            ..ListenCounters::default()
        }
    }

    fn view(at_s: u64, counters: ListenCounters, syncookies: u8) -> KernelView {
        KernelView {
            netns: Some(4026531840),
            at_ns: at_s * S,
            counters: Some(counters),
            sysctls: TcpSysctls {
                syncookies: Some(syncookies),
                ..TcpSysctls::default()
            },
        }
    }

    fn kernel_findings(census: &Census) -> Vec<&Finding> {
        census
            .findings
            .iter()
            .filter(|f| matches!(f, Finding::ListenOverflows(_) | Finding::SynCookies { .. }))
            .collect()
    }

    #[test]
    fn kernel_counters_count_since_boot_then_between_snapshots() {
        let at = |kernel, previous: Option<&Census>| {
            count(
                &population(),
                None,
                &Context {
                    kernel: Some(kernel),
                    ..Context::default()
                },
                previous,
            )
        };
        // Since boot: told, not a risk (it may be long over).
        let first = at(view(10, counters(7, 4, 0), 1), None);
        assert_eq!(
            kernel_findings(&first),
            [
                &Finding::ListenOverflows(Counted {
                    counters: counters(7, 4, 0),
                    window: Window::SinceBoot
                }),
                &Finding::SynCookies {
                    counted: Counted {
                        counters: counters(7, 4, 0),
                        window: Window::SinceBoot
                    },
                    sysctl: Some(1)
                },
            ]
        );
        assert!(kernel_findings(&first).iter().all(|f| !f.is_risk()));
        // Two seconds later, three more overflows and cookies: risks.
        let second = at(view(12, counters(10, 10, 0), 1), Some(&first));
        let found = kernel_findings(&second);
        assert_eq!(
            found[0],
            &Finding::ListenOverflows(Counted {
                counters: counters(3, 6, 0),
                window: Window::Between { ns: 2 * S }
            })
        );
        assert!(found.iter().all(|f| f.is_risk()), "{found:?}");
        // Nothing new: no finding.
        let third = at(view(14, counters(10, 10, 0), 1), Some(&second));
        assert!(kernel_findings(&third).is_empty());
        // With tcp_syncookies = 2 cookies are always sent: no sign of overflow.
        let always = at(view(16, counters(10, 20, 0), 2), Some(&third));
        let found = kernel_findings(&always);
        assert!(
            matches!(found[..], [Finding::SynCookies { .. }]),
            "{found:?}"
        );
        assert!(!found[0].is_risk());
        // SYNs dropped for a full SYN queue are, whatever the setting.
        let dropped = at(view(18, counters(10, 20, 5), 0), Some(&always));
        assert!(kernel_findings(&dropped)[0].is_risk());
        // No counters read: no window, no finding.
        let unread = KernelView {
            counters: None,
            ..view(20, counters(0, 0, 0), 1)
        };
        assert!(kernel_findings(&at(unread, Some(&dropped))).is_empty());
    }

    #[test]
    fn an_accept_queue_at_its_limit_is_a_risk_when_the_namespace_overflows() {
        let mut sockets = full_queue();
        sockets[0].recv_q = 2;
        let ctx = |kernel| Context {
            kernel: Some(kernel),
            ..Context::default()
        };
        let first = count(&sockets, None, &ctx(view(10, counters(7, 0, 0), 1)), None);
        let queue = |census: &Census| {
            census
                .findings
                .iter()
                .find(|f| matches!(f, Finding::AcceptQueue(_)))
                .cloned()
                .unwrap()
        };
        // 2/2 is not full yet; overflows since boot say nothing of now.
        assert!(!queue(&first).is_risk());
        assert!(
            kernel_findings(&first).len() == 1,
            "the overflows are told apart"
        );
        let second = count(
            &sockets,
            None,
            &ctx(view(12, counters(9, 0, 0), 1)),
            Some(&first),
        );
        assert!(queue(&second).is_risk());
        // Told with the queue that is at its limit, not apart.
        assert!(kernel_findings(&second).is_empty());
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
            close_wait_ages: Some((&ages, 170 * S)),
            ..Context::default()
        };
        let census = count(&sockets, None, &ctx, None);
        let close_wait: Vec<_> = census
            .findings
            .iter()
            .filter_map(|f| match f {
                Finding::CloseWait {
                    holder: Holder::Process { pid, comm },
                    count,
                    age,
                    ..
                } => Some((format!("{pid}/{comm}"), *count, *age)),
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
                        oldest_source: AgeSource::FirstSnapshot,
                        old: 1
                    })
                ),
                (
                    "102/worker".to_owned(),
                    1,
                    Some(CloseWaitAge {
                        timed: 1,
                        oldest_ns: 70 * S,
                        oldest_source: AgeSource::FirstSnapshot,
                        old: 1
                    })
                ),
            ]
        );
    }

    #[test]
    fn syn_recv_growth_is_measured_against_the_previous_census() {
        let ctx = Context::default();
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
                port_range: Some(range),
                ..Context::default()
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
