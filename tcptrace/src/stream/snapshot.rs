//! Snapshots of the sockets for `states` and `sockets`: one inet_diag dump, kept to the
//! selected sockets, with their owners looked up where they are shown or selected on.

use std::collections::HashSet;

use anyhow::Context as _;

use crate::{
    census::selection::Selection,
    os::{
        diag::{self, DiagSocket, Families, SocketEntry},
        owners::Owners,
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
