//! Snapshots of the sockets for `states`, `sockets` and `export`: one inet_diag dump, kept to
//! the selected sockets, with their owners looked up where they are shown or selected on; for
//! a census, the namespace's counters and sysctls beside it and the CLOSE_WAIT sockets'
//! tcp_info.

use std::collections::{HashMap, HashSet};

use anyhow::Context as _;

use crate::{
    census::{KernelView, selection::Selection},
    core::state::TcpState,
    os::{
        clock,
        diag::{self, DiagSocket, Families, SocketEntry},
        owners::Owners,
        procfs, sysctl,
    },
};

/// The selected sockets of one snapshot, their owners when looked up, and whether the dump
/// was interrupted (the kernel's tables changed under it).
pub struct Selected {
    pub sockets: Vec<SocketEntry>,
    pub owners: Option<Owners>,
    pub interrupted: bool,
}

/// Takes a snapshot and keeps the selected sockets; looks owners up when `owners` is asked or
/// the selection needs them. Owners are looked up for the sockets that pass the other filters
/// only, so a narrow listing on a busy host reads few /proc entries.
pub fn selected(
    socket: &mut DiagSocket,
    selection: &Selection,
    families: Families,
    tcp_info: bool,
    owners: bool,
) -> anyhow::Result<Selected> {
    let snapshot =
        diag::snapshot(socket, families, tcp_info).context("taking the socket snapshot")?;
    let without_owner = Selection {
        pid: None,
        comm: None,
        ..selection.clone()
    };
    let mut sockets = snapshot.sockets;
    sockets.retain(|s| without_owner.matches(s, None));
    let owners = (owners || selection.needs_owners()).then(|| {
        let wanted: HashSet<u32> = sockets
            .iter()
            .map(|s| s.inode)
            .filter(|i| *i != 0)
            .collect();
        Owners::scan(&wanted)
    });
    if selection.needs_owners() {
        sockets.retain(|s| selection.matches(s, owners.as_ref()));
    }
    Ok(Selected {
        sockets,
        owners,
        interrupted: snapshot.interrupted,
    })
}

/// A snapshot for a census: the selected sockets (CLOSE_WAIT ones with their tcp_info), their
/// owners where the census shows them, and what the kernel says beside it.
pub struct CensusSnapshot {
    pub sockets: Vec<SocketEntry>,
    pub owners: Option<Owners>,
    pub interrupted: bool,
    pub kernel: KernelView,
}

/// `TCP_CLOSE_WAIT`'s bit in a dump request's states.
const CLOSE_WAIT_BIT: u32 = 1 << TcpState::CloseWait as u32;

/// Takes a snapshot for a census. `every_owner`: look up the owners of every socket (grouping
/// by process), not only of those the findings name.
pub fn census_snapshot(
    diag: &mut DiagSocket,
    selection: &Selection,
    families: Families,
    every_owner: bool,
) -> anyhow::Result<CensusSnapshot> {
    let Selected {
        mut sockets,
        owners,
        interrupted,
    } = selected(diag, selection, families, false, false)?;
    let kernel = KernelView {
        netns: procfs::own_netns().ok(),
        at_ns: clock::monotonic_ns(),
        counters: procfs::read_listen()
            .map_err(|err| log::warn!("cannot read /proc/net/netstat: {err}"))
            .ok(),
        sysctls: sysctl::tcp_sysctls(),
    };
    with_close_wait_info(diag, families, &mut sockets);
    // Owners are looked up only where they are shown: grouping by process, the holders of
    // CLOSE_WAIT sockets, and those of listeners with connections waiting for accept().
    let owners = match owners {
        Some(owners) => Some(owners),
        None if every_owner => Some(Owners::scan(
            &sockets
                .iter()
                .map(|s| s.inode)
                .filter(|i| *i != 0)
                .collect(),
        )),
        None => {
            let wanted: HashSet<u32> = sockets
                .iter()
                .filter(|s| {
                    s.state == TcpState::CloseWait || (s.state == TcpState::Listen && s.recv_q > 0)
                })
                .map(|s| s.inode)
                .filter(|i| *i != 0)
                .collect();
            (!wanted.is_empty()).then(|| Owners::scan(&wanted))
        }
    };
    Ok(CensusSnapshot {
        sockets,
        owners,
        interrupted,
        kernel,
    })
}

/// Adds tcp_info to the CLOSE_WAIT sockets, for their age: a second dump of that state only,
/// which costs a walk of the socket tables where tcp_info for every socket would triple the
/// bytes of the main one. A socket gone meanwhile keeps no age; a failed dump, none at all.
fn with_close_wait_info(diag: &mut DiagSocket, families: Families, sockets: &mut [SocketEntry]) {
    if !sockets.iter().any(|s| s.state == TcpState::CloseWait) {
        return;
    }
    let infos = match diag::snapshot_of_states(diag, families, true, CLOSE_WAIT_BIT) {
        Ok(dump) => dump.sockets,
        Err(err) => {
            log::warn!(
                "cannot read the CLOSE_WAIT sockets' tcp_info ({err}): their ages are unknown"
            );
            return;
        }
    };
    let by_cookie: HashMap<u64, _> = infos
        .into_iter()
        .filter_map(|s| Some((s.cookie, s.info?)))
        .collect();
    for socket in sockets
        .iter_mut()
        .filter(|s| s.state == TcpState::CloseWait)
    {
        if let Some(info) = by_cookie.get(&socket.cookie) {
            socket.info = Some(*info);
        }
    }
}
