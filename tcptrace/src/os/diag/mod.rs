//! Snapshots of every TCP socket through NETLINK_SOCK_DIAG (inet_diag), the source `ss` uses:
//! exact, including TIME_WAIT and request sockets, without parsing /proc/net/tcp.

pub mod netlink;
pub mod parse;

pub use netlink::{ALL_STATES, DiagError, DiagSocket, DumpRequest};
pub use parse::{SocketEntry, Timer};

/// Which address families to dump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Families {
    pub inet: bool,
    pub inet6: bool,
}

impl Families {
    pub const BOTH: Self = Self {
        inet: true,
        inet6: true,
    };

    pub fn from_flags(ipv4: bool, ipv6: bool) -> Self {
        match (ipv4, ipv6) {
            (true, false) => Self {
                inet: true,
                inet6: false,
            },
            (false, true) => Self {
                inet: false,
                inet6: true,
            },
            _ => Self::BOTH,
        }
    }
}

/// One snapshot of the TCP sockets of the chosen families.
pub struct Snapshot {
    pub sockets: Vec<SocketEntry>,
    /// The kernel saw the tables change during the dump.
    pub interrupted: bool,
}

/// Dumps every TCP socket of the chosen families.
pub fn snapshot(
    socket: &mut DiagSocket,
    families: Families,
    tcp_info: bool,
) -> Result<Snapshot, DiagError> {
    snapshot_of_states(socket, families, tcp_info, ALL_STATES)
}

/// Dumps the TCP sockets of the chosen families in the chosen states (one bit per `TCP_*`).
pub fn snapshot_of_states(
    socket: &mut DiagSocket,
    families: Families,
    tcp_info: bool,
    states: u32,
) -> Result<Snapshot, DiagError> {
    let mut sockets = Vec::new();
    let mut interrupted = false;
    for (wanted, family) in [
        (families.inet, libc::AF_INET),
        (families.inet6, libc::AF_INET6),
    ] {
        if wanted {
            interrupted |= socket.dump(
                DumpRequest {
                    family: family as u8,
                    tcp_info,
                    states,
                },
                &mut sockets,
            )?;
        }
    }
    Ok(Snapshot {
        sockets,
        interrupted,
    })
}

/// Dumps the TCP sockets of the chosen families in the chosen states, for the start-up census:
/// both families in one walk of the kernel's socket tables when both are wanted. The tables
/// are the host's, shared by every namespace, so each dump walks all of the host's sockets:
/// one walk instead of two halves the cost where there are many. A kernel that refuses the
/// first interface's request gets one request per family.
pub fn census_dump(
    socket: &mut DiagSocket,
    families: Families,
    states: u32,
) -> Result<Snapshot, DiagError> {
    if families == Families::BOTH {
        let mut sockets = Vec::new();
        match socket.dump_both_families(states, &mut sockets) {
            Ok(interrupted) => {
                return Ok(Snapshot {
                    sockets,
                    interrupted,
                });
            }
            Err(DiagError::Parse(parse::ParseError::Kernel(err))) => {
                log::debug!("inet_diag refused the dump of both families at once ({err})");
            }
            Err(err) => return Err(err),
        }
    }
    snapshot_of_states(socket, families, false, states)
}

/// inet_diag answers for the caller's own network namespace only: `--netns` naming another one
/// would be silently ignored, so it is refused with the way to get there.
pub fn ensure_own_netns(wanted: Option<u32>) -> anyhow::Result<()> {
    let Some(wanted) = wanted else {
        return Ok(());
    };
    let own = crate::os::procfs::own_netns()
        .map_err(|err| anyhow::anyhow!("cannot read /proc/self/ns/net: {err}"))?;
    if wanted != own {
        anyhow::bail!(
            "snapshots read the sockets of tcptrace's own network namespace ({own}); for \
             namespace {wanted}, run tcptrace inside it (`ip netns exec NAME tcptrace …` or \
             `nsenter --net=/proc/PID/ns/net tcptrace …`)"
        );
    }
    Ok(())
}
