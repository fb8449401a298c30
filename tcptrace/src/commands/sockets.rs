//! `tcptrace sockets`: one snapshot of the TCP sockets, listed like `netstat -tanpo`.

use std::io::{self, Write};

use crate::{
    cli::SocketsArgs,
    os::{
        clock::{monotonic_ns, wall_clock},
        diag::{self, DiagSocket},
    },
    render::sockets::{json::json_line, text::SocketsText},
    stream::snapshot::{self, Selected},
};

pub fn run(args: SocketsArgs) -> anyhow::Result<()> {
    diag::ensure_own_netns(args.filter.netns)?;
    let selection = args.filter.selection(args.states().as_ref());
    let mut diag = DiagSocket::open()?;
    // Every line carries the time the dump began, as every JSON line of tcptrace has a time.
    let time = wall_clock().rfc3339(monotonic_ns());
    let Selected {
        sockets, owners, ..
    } = snapshot::selected(
        &mut diag,
        &selection,
        args.filter.families(),
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
            json_line(&mut out, socket, owner, &time)?;
        } else {
            text.line(&mut out, socket, owner)?;
        }
    }
    out.flush()?;
    Ok(())
}
