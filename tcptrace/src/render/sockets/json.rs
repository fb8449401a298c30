//! `tcptrace sockets --json`: one JSON object per socket (JSON Lines).

use std::io::{self, Write};

use serde::Serialize;

use crate::{
    core::state::TcpState,
    os::{diag::SocketEntry, owners::Owner},
    render::sockets::text::send_q,
};

#[derive(Serialize)]
struct JsonTimer {
    kind: String,
    expires_ms: u32,
    retransmits: u8,
    probes: u8,
}

#[derive(Serialize)]
struct JsonSocket<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    /// When the dump began (RFC 3339, UTC).
    time: &'a str,
    family: &'static str,
    state: &'static str,
    laddr: String,
    lport: u16,
    raddr: String,
    rport: u16,
    recv_q: u32,
    send_q: u32,
    /// A listener's backlog limit.
    backlog: Option<u32>,
    pid: Option<u32>,
    comm: Option<&'a str>,
    uid: u32,
    inode: u32,
    cookie: String,
    timer: JsonTimer,
}

/// One JSON object per socket.
pub fn json_line(
    out: &mut impl Write,
    socket: &SocketEntry,
    owner: Option<&Owner>,
    time: &str,
) -> io::Result<()> {
    let listen = socket.state == TcpState::Listen;
    let line = JsonSocket {
        kind: "socket",
        time,
        family: socket.family.name(),
        state: socket.shown_state().name(),
        laddr: socket.local.ip().to_string(),
        lport: socket.local.port(),
        raddr: socket.remote.ip().to_string(),
        rport: socket.remote.port(),
        recv_q: socket.recv_q,
        send_q: send_q(socket),
        backlog: listen.then_some(socket.send_q),
        pid: owner.map(|o| o.pid),
        comm: owner.map(|o| o.comm.as_str()),
        uid: socket.uid,
        inode: socket.inode,
        cookie: format!("{:#x}", socket.cookie),
        timer: JsonTimer {
            kind: socket.timer.name(),
            expires_ms: socket.expires_ms,
            retransmits: socket.retransmits(),
            probes: socket.probes(),
        },
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}
