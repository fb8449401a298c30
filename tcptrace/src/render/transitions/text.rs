//! `tcptrace transitions` as text: the live tables of each interval and the final summary with
//! bcc-style log2 histograms. Takes a [`Snapshot`]; reads no clock and knows no terminal.

use std::io::{self, Write};

use crate::{
    aggregate::{
        causes::Cause,
        fates::{FateCounts, ListenerFates},
        snapshot::{RowSnapshot, Snapshot},
    },
    core::state::Side,
    render::{
        histogram::{bar, log2_histogram},
        units::{duration, rate},
    },
};

pub const TIME_WAIT_NOTE: &str = "* TIME_WAIT inferred: Linux reports the hand-over of a FIN_WAIT2 or CLOSING socket \
     to its timewait socket as ->CLOSE (no reset was seen on these sockets).";
pub const SYN_RECV_NOTE: &str = "SYN_RECV of an accepted child lasts from the final ACK to ESTABLISHED, not the \
     handshake: the handshake lives on the request socket (see REQUEST SOCKETS).";

/// Header and all tables of one interval.
pub fn interval(out: &mut impl Write, snap: &Snapshot) -> io::Result<()> {
    header(out, snap)?;
    for side in Side::ALL {
        let rows: Vec<&RowSnapshot> = snap
            .rows
            .iter()
            .filter(|r| r.side == side && !r.abnormal)
            .collect();
        if rows.is_empty() {
            continue;
        }
        writeln!(out)?;
        table_header(out, side_title(side))?;
        for r in &rows {
            row(out, r, "")?;
        }
        if rows.iter().any(|r| r.inferred) {
            writeln!(out, "  {TIME_WAIT_NOTE}")?;
        }
        if side == Side::Server
            && rows
                .iter()
                .any(|r| r.from == crate::core::state::TcpState::SynRecv)
        {
            writeln!(out, "  {SYN_RECV_NOTE}")?;
        }
    }
    let abnormal: Vec<&RowSnapshot> = snap.rows.iter().filter(|r| r.abnormal).collect();
    if !abnormal.is_empty() {
        writeln!(out)?;
        table_header(out, "ABNORMAL (side: transition)")?;
        for r in abnormal {
            let causes: Vec<String> = r
                .causes
                .iter()
                .map(|(cause, n)| cause_text(r, *cause, *n))
                .chain(r.retransmits.iter().map(|(retries, n)| {
                    format!("{n} after {retries}{} retransmits", plus(*retries))
                }))
                .collect();
            row(out, r, &causes.join(", "))?;
        }
    }
    request_sockets(out, snap)?;
    fates(out, snap)?;
    witness(out, snap)?;
    namespaces(out, snap)
}

/// Shown once a second namespace appears: with one, it would repeat the totals.
fn namespaces(out: &mut impl Write, snap: &Snapshot) -> io::Result<()> {
    let ns = &snap.namespaces;
    // Hidden only when it would say nothing: every transition in tcptrace's own namespace.
    // Transitions of another namespace, even a single one, are always shown.
    let only_own = ns.other.transitions == 0 && ns.rows.iter().all(|r| r.own);
    if only_own {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<28} {:>11} {:>9} {:>9} {:>9} {:>9}",
        "NETWORK NAMESPACES", "TRANSITIONS", "+NEW", "ACTIVE", "PASSIVE", "ABNORMAL"
    )?;
    const SHOWN: usize = 10;
    for r in ns.rows.iter().take(SHOWN) {
        let name = match (r.netns, r.own) {
            (0, _) => "unknown".to_owned(),
            (inode, true) => format!("{inode} (this one)"),
            (inode, false) => inode.to_string(),
        };
        writeln!(
            out,
            "  {:<26} {:>11} {:>9} {:>9} {:>9} {:>9}",
            name,
            r.counts.transitions,
            r.interval_transitions,
            r.counts.active_opens,
            r.counts.passive_opens,
            r.counts.abnormal
        )?;
    }
    let hidden = ns.rows.len().saturating_sub(SHOWN);
    if hidden > 0 || ns.other.transitions > 0 {
        let rest = ns
            .rows
            .iter()
            .skip(SHOWN)
            .fold(ns.other.transitions, |sum, r| sum + r.counts.transitions);
        writeln!(
            out,
            "  ({hidden} more namespaces{}: {rest} transitions; --json lists them)",
            if ns.other.transitions > 0 {
                " and the ones past the cap"
            } else {
                ""
            }
        )?;
    }
    Ok(())
}

/// `timeout 2 (syn_retries 2)`, `reset_sent 1 (tcp_abort_on_linger 1)`: a cause with the
/// timers or reset reasons the kernel told of it.
fn cause_text(r: &RowSnapshot, cause: Cause, n: u64) -> String {
    let details: Vec<String> = match cause {
        Cause::Timeout => r
            .timers
            .iter()
            .map(|(timer, k)| format!("{} {k}", timer.name()))
            .collect(),
        Cause::ResetSent => r
            .reset_reasons
            .iter()
            .map(|(reason, k)| format!("{reason} {k}"))
            .collect(),
        _ => Vec::new(),
    };
    if details.is_empty() {
        format!("{} {n}", cause.name())
    } else {
        format!("{} {n} ({})", cause.name(), details.join(", "))
    }
}

fn plus(retries: u32) -> &'static str {
    if retries as usize >= crate::aggregate::snapshot::RETRANSMIT_SLOTS - 1 {
        "+"
    } else {
        ""
    }
}

fn side_title(side: Side) -> &'static str {
    match side {
        Side::Client => "CLIENT PATH (active open)",
        Side::Server => "SERVER PATH (passive open)",
        Side::Listener => "LISTENERS",
        Side::Unknown => "FIRST SEEN MID-LIFE (open unknown)",
    }
}

fn header(out: &mut impl Write, snap: &Snapshot) -> io::Result<()> {
    let s = &snap.sockets;
    writeln!(
        out,
        "tcptrace transitions: {} elapsed, {} events/s, {} transitions, {}",
        duration(snap.elapsed_ns),
        rate(snap.events_per_s),
        snap.transitions,
        snap.losses.line()
    )?;
    writeln!(
        out,
        "sockets: {} tracked (max {}), {} forgotten (table full), {} first seen mid-life, {} replaced unclosed, {} gaps",
        s.tracked, s.max, s.forgotten, s.first_seen_midlife, s.replaced_unclosed, s.gaps,
    )
}

fn table_header(out: &mut impl Write, title: &str) -> io::Result<()> {
    writeln!(
        out,
        "{title:<36} {:>9} {:>7} {:>8} {:>7} {:>7} {:>7} {:>7}  10us..1ks",
        "COUNT", "+NEW", "RATE/s", "P50", "P90", "P99", "MAX"
    )
}

fn label(r: &RowSnapshot) -> String {
    let mark = if r.inferred {
        "*"
    } else if r.unusual {
        " (unusual)"
    } else {
        ""
    };
    let side = if r.abnormal {
        format!("{}: ", r.side.name())
    } else {
        String::new()
    };
    format!("{side}{} -> {}{mark}", r.from.name(), r.to.name())
}

fn row(out: &mut impl Write, r: &RowSnapshot, extra: &str) -> io::Result<()> {
    let stat = |f: fn(&crate::aggregate::histogram::TimeStats) -> u64| {
        r.time
            .stats
            .as_ref()
            .map_or("-".to_owned(), |s| duration(f(s)))
    };
    let line = format!(
        "  {:<34} {:>9} {:>7} {:>8} {:>7} {:>7} {:>7} {:>7}  {}  {extra}",
        label(r),
        r.count,
        r.interval_count,
        rate(r.rate_per_s),
        stat(|s| s.p50),
        stat(|s| s.p90),
        stat(|s| s.p99),
        stat(|s| s.max),
        bar(&r.time),
    );
    writeln!(out, "{}", line.trim_end())
}

fn request_sockets(out: &mut impl Write, snap: &Snapshot) -> io::Result<()> {
    let Some(rs) = &snap.request_sockets else {
        return Ok(());
    };
    writeln!(out)?;
    writeln!(
        out,
        "{:<52} {:>9} {:>7}",
        "REQUEST SOCKETS (kernel counters: counted, no latency)", "COUNT", "+NEW"
    )?;
    for (name, total, new) in request_rows(rs) {
        writeln!(out, "  {name:<50} {total:>9} {new:>7}")?;
    }
    Ok(())
}

/// What the fates section says of what it does not see.
pub const FATES_NOTE: &str = "From the packets the kernel drops (skb:kfree_skb). Not seen here: SYNs \
     refused on a full accept queue (consumed, not dropped: in ListenOverflows only), SYN cookies, \
     embryonic resets by a SYN.";

/// The listener as shown: `127.0.0.1:8080`, `*:8080` when reached at several addresses, with
/// its namespace when it is not tcptrace's own.
pub fn listener_label(l: &ListenerFates) -> String {
    let addr = match l.laddr {
        Some(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
        Some(addr) => addr.to_string(),
        None => "*".to_owned(),
    };
    let mut label = format!("{addr}:{}", l.port);
    if !l.own {
        label.push_str(&format!(" (netns {})", l.netns));
    }
    label
}

fn fate_columns(counts: &FateCounts) -> String {
    format!("{:>9} {:>9} {:>9}", counts[0], counts[1], counts[2])
}

/// The request-socket fates by listener and peer: a table once any was seen.
fn fates(out: &mut impl Write, snap: &Snapshot) -> io::Result<()> {
    let Some(fates) = &snap.fates else {
        return Ok(());
    };
    if fates.total.iter().all(|n| *n == 0) {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<52} {:>9} {:>9} {:>9}",
        "REQUEST-SOCKET FATES BY LISTENER (dropped packets)", "EMBRYONIC", "OVERFLOW", "CLOSED"
    )?;
    for l in &fates.listeners {
        let owner = match l.pid {
            Some(pid) => format!("  {}/{pid}", l.comm),
            None => String::new(),
        };
        let name = format!("{}{owner}", listener_label(l));
        writeln!(out, "  {name:<50} {}", fate_columns(&l.counts))?;
        for (addr, counts) in &l.peers {
            let peer = format!("from {addr}");
            writeln!(out, "    {peer:<48} {}", fate_columns(counts))?;
        }
        if l.other_peers.iter().any(|n| *n > 0) {
            writeln!(
                out,
                "    {:<48} {}",
                "from other peers",
                fate_columns(&l.other_peers)
            )?;
        }
    }
    if fates.other_listeners.iter().any(|n| *n > 0) {
        writeln!(
            out,
            "  {:<50} {}",
            "other listeners",
            fate_columns(&fates.other_listeners)
        )?;
    }
    if let Some(rs) = &snap.request_sockets {
        let own = &fates.own_namespace;
        writeln!(
            out,
            "  This namespace: {} of EmbryonicRsts {}; {} of ListenOverflows {} (the rest: SYNs \
             refused on a full accept queue).",
            own[0], rs.total.embryonic_rsts, own[1], rs.total.listen_overflows
        )?;
    }
    writeln!(out, "  {FATES_NOTE}")
}

/// The request-socket rows: name (with its source), total, interval.
pub fn request_rows(
    rs: &crate::aggregate::snapshot::RequestSockets,
) -> Vec<(&'static str, u64, u64)> {
    let (t, i) = (&rs.total, &rs.interval);
    vec![
        (
            "SYN_RECV -> LISTEN on RST (EmbryonicRsts)",
            t.embryonic_rsts,
            i.embryonic_rsts,
        ),
        (
            "listen queue overflows (ListenOverflows)",
            t.listen_overflows,
            i.listen_overflows,
        ),
        ("listen drops (ListenDrops)", t.listen_drops, i.listen_drops),
        (
            "request queue full, dropped (TCPReqQFullDrop)",
            t.req_q_full_drop,
            i.req_q_full_drop,
        ),
        (
            "request queue full, cookies (TCPReqQFullDoCookies)",
            t.req_q_full_do_cookies,
            i.req_q_full_do_cookies,
        ),
        (
            "SYN cookies sent (SyncookiesSent)",
            t.syncookies_sent,
            i.syncookies_sent,
        ),
        (
            "SYN-ACK retransmits (tcp_retransmit_synack)",
            rs.synack_retransmits,
            rs.synack_retransmits_interval,
        ),
        (
            "SYN and SYN-ACK retransmits (TCPSynRetrans)",
            t.syn_retrans,
            i.syn_retrans,
        ),
    ]
}

/// "agrees" or "differs by N" (N > 0: the kernel counted more than the stream showed).
pub fn verdict(difference: i64) -> String {
    if difference == 0 {
        "agrees".to_owned()
    } else {
        format!("differs by {difference:+}")
    }
}

fn witness(out: &mut impl Write, snap: &Snapshot) -> io::Result<()> {
    let Some(w) = &snap.witness else {
        return Ok(());
    };
    writeln!(out)?;
    writeln!(
        out,
        "{:<60} {:>9} {:>9}  CHECK",
        "KERNEL AS WITNESS (this network namespace)", "KERNEL", "SEEN"
    )?;
    for r in &w.rows {
        let check = if w.comparable {
            verdict(r.difference())
        } else {
            "not comparable: transitions are filtered".to_owned()
        };
        writeln!(
            out,
            "  {:<58} {:>9} {:>9}  {check}",
            format!("{} = {}", r.counter, r.stream),
            r.kernel,
            r.seen
        )?;
    }
    if w.netns_unknown > 0 {
        writeln!(
            out,
            "  ({} transitions without a reported namespace were assumed to be in this one)",
            w.netns_unknown
        )?;
    }
    Ok(())
}

/// The final summary: the last interval's tables, a log2 histogram per transition, the top path
/// signatures and every loss.
pub fn summary(out: &mut impl Write, snap: &Snapshot) -> io::Result<()> {
    // The tables of a summary give rates over the whole run, not its last interval.
    interval(out, &snap.over_the_run())?;
    for r in snap.rows.iter().filter(|r| r.time.samples > 0) {
        writeln!(out)?;
        let kind = if r.abnormal { ", abnormal" } else { "" };
        writeln!(
            out,
            "{} -> {}{} ({}{kind}): time in {}, {} samples",
            r.from.name(),
            r.to.name(),
            if r.inferred { "*" } else { "" },
            r.side.name(),
            r.from.name(),
            r.time.samples
        )?;
        log2_histogram(out, &r.time)?;
    }
    if !snap.signatures.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "{:<10} {:>9} {:>9} {:>9}  PATH (lifetime from birth to close)",
            "TOP PATHS", "COUNT", "P50", "MAX"
        )?;
        for s in &snap.signatures {
            let stat = |f: fn(&crate::aggregate::histogram::TimeStats) -> u64| {
                s.lifetime
                    .stats
                    .as_ref()
                    .map_or("-".to_owned(), |st| duration(f(st)))
            };
            writeln!(
                out,
                "{:<10} {:>9} {:>9} {:>9}  {}",
                "",
                s.count,
                stat(|st| st.p50),
                stat(|st| st.max),
                s.path
            )?;
        }
        if snap.signatures_other > 0 {
            writeln!(
                out,
                "{:<10} {:>9}  (other paths)",
                "", snap.signatures_other
            )?;
        }
    }
    writeln!(out)?;
    writeln!(out, "{}", losses_line(snap))
}

/// Every loss on one line, as on stderr: `N transitions, M lost, …`.
pub fn losses_line(snap: &Snapshot) -> String {
    let mut line = format!("{} transitions, {}", snap.transitions, snap.losses.line());
    if snap.sockets.signals_unmatched > 0 {
        line.push_str(&format!(
            ", {} signals unmatched",
            snap.sockets.signals_unmatched
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts() {
        assert_eq!(verdict(0), "agrees");
        assert_eq!(verdict(3), "differs by +3");
        assert_eq!(verdict(-2), "differs by -2");
    }
}
