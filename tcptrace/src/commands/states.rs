//! `tcptrace states`: counts per state from inet_diag snapshots, once or redrawn with changes.
//!
//! `--watch` takes a fresh snapshot each interval and shows the difference with the previous
//! one: exact at each snapshot, whatever happened in between.

use std::{
    fs,
    io::{self, IsTerminal as _, Write},
};

use tokio::{
    signal::unix::{SignalKind, signal},
    time::{MissedTickBehavior, interval},
};

use crate::{
    census::{self, Census, Context, GroupBy, PortRange},
    cli::StatesArgs,
    clock::{self, WallClock},
    commands::sockets::{selected_snapshot, selection},
    diag::DiagSocket,
    render::states::{Frame, json_line, text},
    state::TcpState,
};

/// The ephemeral port range of this network namespace; `None` when unreadable.
fn port_range() -> Option<PortRange> {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| PortRange::parse(&text))
}

pub async fn run(args: StatesArgs) -> anyhow::Result<()> {
    let selection = selection(args.state.as_ref(), &args.filter);
    let mut diag = DiagSocket::open()?;
    let range = port_range();
    let stdout = io::stdout();
    let terminal = stdout.is_terminal();
    let mut out = io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    let Some(every) = args.watch else {
        let census = take(&mut diag, &args, &selection, range, None)?;
        draw(&mut out, &args, &census, None)?;
        return Ok(out.flush()?);
    };

    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut ticks = interval(every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let wall = WallClock::read();
    let mut previous: Option<Census> = None;
    let mut taken = 0;
    loop {
        tokio::select! {
            biased;
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = ticks.tick() => {}
        }
        let census = take(&mut diag, &args, &selection, range, previous.as_ref())?;
        if !args.json {
            if terminal {
                // Clear the screen and go home: a plain redraw, no full-screen mode.
                write!(out, "\x1b[H\x1b[2J")?;
            } else if taken > 0 {
                writeln!(out)?;
            }
            let time = wall.time_of_day(clock::monotonic_ns());
            let time = time.split('.').next().unwrap_or(&time);
            writeln!(out, "{time}  every {:.1?}\n", every)?;
        }
        draw(&mut out, &args, &census, previous.as_ref())?;
        out.flush()?;
        previous = Some(census);
        taken += 1;
        if args.count.is_some_and(|n| taken >= n) {
            break;
        }
    }
    Ok(out.flush()?)
}

fn take(
    diag: &mut DiagSocket,
    args: &StatesArgs,
    selection: &crate::select::Selection,
    range: Option<PortRange>,
    previous: Option<&Census>,
) -> anyhow::Result<Census> {
    let (sockets, owners, interrupted) =
        selected_snapshot(diag, selection, &args.filter, false, false)?;
    // Owners are looked up only when they are shown: grouping by process, or processes holding
    // CLOSE_WAIT sockets (their inodes only).
    let owners = match owners {
        Some(owners) => Some(owners),
        None if args.by == Some(GroupBy::Process) => Some(crate::diag::owners::Owners::scan(
            &sockets
                .iter()
                .map(|s| s.inode)
                .filter(|i| *i != 0)
                .collect(),
        )),
        None => {
            let close_wait: std::collections::HashSet<u32> = sockets
                .iter()
                .filter(|s| s.state == TcpState::CloseWait && s.inode != 0)
                .map(|s| s.inode)
                .collect();
            (!close_wait.is_empty()).then(|| crate::diag::owners::Owners::scan(&close_wait))
        }
    };
    let ctx = Context {
        owners: owners.as_ref(),
        port_range: range,
    };
    let mut census = census::count(&sockets, args.by, &ctx, previous);
    census.interrupted = interrupted;
    Ok(census)
}

fn draw(
    out: &mut impl Write,
    args: &StatesArgs,
    census: &Census,
    previous: Option<&Census>,
) -> io::Result<()> {
    let frame = Frame {
        census,
        previous,
        by: args.by,
        interrupted: census.interrupted,
    };
    if args.json {
        json_line(out, &frame)
    } else {
        text(out, &frame)
    }
}
