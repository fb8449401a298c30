//! `tcptrace sockets`: one snapshot of the TCP sockets, listed like `netstat -tanpo`.

use std::{
    collections::HashSet,
    io::{self, Write},
};

use anyhow::Context as _;

use crate::{
    census::selection::Selection,
    cli::{FilterArgs, SocketsArgs, StateList},
    os::{
        diag::{self, DiagSocket, Families, SocketEntry},
        owners::Owners,
    },
    render::sockets::text::{SocketsText, json_line},
};

/// The selection the shared flags describe.
pub fn selection(states: Option<&StateList>, filter: &FilterArgs) -> Selection {
    let f = filter.to_filter();
    Selection {
        states: states.map(|s| s.0.clone()).unwrap_or_default(),
        family: f.family,
        lports: f.lports,
        rports: f.rports,
        pid: f.pid,
        comm: f.comm,
    }
}

/// Takes a snapshot and keeps the selected sockets; looks owners up when `owners` is asked or
/// the selection needs them. Owners are looked up for the sockets that pass the other filters
/// only, so a narrow listing on a busy host reads few /proc entries.
pub fn selected_snapshot(
    socket: &mut DiagSocket,
    selection: &Selection,
    filter: &FilterArgs,
    tcp_info: bool,
    owners: bool,
) -> anyhow::Result<(Vec<SocketEntry>, Option<Owners>, bool)> {
    let families = Families::from_flags(filter.ipv4, filter.ipv6);
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
    Ok((sockets, owners, snapshot.interrupted))
}

pub fn run(args: SocketsArgs) -> anyhow::Result<()> {
    crate::os::diag::ensure_own_netns(args.filter.netns)?;
    let selection = selection(args.state.as_ref(), &args.filter);
    let mut diag = DiagSocket::open()?;
    let (sockets, owners, _) = selected_snapshot(
        &mut diag,
        &selection,
        &args.filter,
        args.timers || args.json,
        true,
    )?;
    let owners = owners.unwrap_or_default();
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let text = SocketsText {
        timers: args.timers,
    };
    if !args.json {
        text.header(&mut out)?;
    }
    for socket in &sockets {
        let owner = owners.first(socket.inode);
        if args.json {
            json_line(&mut out, socket, owner)?;
        } else {
            text.line(&mut out, socket, owner)?;
        }
    }
    out.flush()?;
    Ok(())
}
