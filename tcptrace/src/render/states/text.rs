//! `tcptrace states` as text: counts per state (or per group and state), the change since the
//! previous snapshot, and the findings. When tracing, each snapshot also shows the stream's
//! check against it, and between snapshots the counts kept current from the stream are
//! redrawn.

use std::{
    collections::BTreeMap,
    io::{self, Write},
    net::SocketAddr,
};

use crate::{
    census::{
        AcceptQueue, CloseWaitAge, Counted, Finding, GroupBy, GroupKey, Holder, TwReuse, Window,
        close_wait::AgeSource,
        counts::Counts,
        live::{Check, MAX_WINDOW_STEPS, SNAPSHOT_ONLY},
    },
    core::{clock::WallClock, state::TcpState},
    os::owners::Owner,
    render::{
        states::frame::{Frame, LiveFrame},
        terminal::CLEAR,
        units,
    },
};

/// Why some counts come from snapshots only, for the footnotes.
const SNAPSHOT_ONLY_WHY: &str = "request sockets (half-open connections, counted as \
    SYN_RECV) never pass through the tracepoint, and a socket in CLOSE has left the tables a \
    snapshot reads";

/// How the live count of timewait sockets is kept, for the footnotes.
const TIMEWAIT_HOW: &str = "timewait sockets: the last snapshot's, plus those handed over \
    since (FIN_WAIT2 -> CLOSE, CLOSING -> CLOSE), less those past their 60 s (Linux never \
    reports TIME_WAIT through the tracepoint, nor its end, which may come sooner: a reset, a \
    reuse); those still in FIN_WAIT2, waiting for the peer's FIN, are counted there";

fn signed(n: i64) -> String {
    if n > 0 {
        format!("+{n}")
    } else {
        n.to_string()
    }
}

pub fn diff(now: u64, before: u64) -> i64 {
    now as i64 - before as i64
}

pub fn by_name(by: GroupBy) -> &'static str {
    match by {
        GroupBy::Port => "PORT",
        GroupBy::Process => "PID/PROGRAM",
        GroupBy::Remote => "REMOTE",
    }
}

pub fn text(out: &mut impl Write, frame: &Frame<'_>) -> io::Result<()> {
    let check = frame.live.and_then(|l| l.check);
    match (&frame.census.groups, frame.by) {
        (Some(groups), Some(by)) => {
            group_table(out, frame, groups, by)?;
            if let Some(check) = check {
                check_line(out, check)?;
            }
        }
        _ => state_table(out, frame, check)?,
    }
    if let Some(check) = check {
        check_notes(out, check)?;
    }
    if frame.interrupted {
        writeln!(
            out,
            "(sockets changed while they were counted: counts may be off by those that moved)"
        )?;
    }
    findings(out, &frame.census.findings, "Findings:")
}

fn findings(out: &mut impl Write, findings: &[Finding], title: &str) -> io::Result<()> {
    if !findings.is_empty() {
        writeln!(out, "\n{title}")?;
        for finding in findings {
            let mark = if finding.is_risk() { "!" } else { "-" };
            writeln!(out, "  {mark} {}", describe(finding))?;
        }
    }
    Ok(())
}

/// A check's word for one state.
fn verdict(check: &Check, state: TcpState) -> String {
    match check.states.iter().find(|s| s.state == state) {
        Some(s) if s.difference() != 0 => format!("differs by {}", signed(s.difference())),
        Some(_) if !check.verified() => "unverified".to_owned(),
        Some(_) => "agrees".to_owned(),
        None if check.unchecked => "unchecked".to_owned(),
        None => "snapshot only".to_owned(),
    }
}

fn state_table(out: &mut impl Write, frame: &Frame<'_>, check: Option<&Check>) -> io::Result<()> {
    let now = &frame.census.total;
    let before = frame.previous.map(|p| &p.total);
    write!(out, "{:<12} {:>8}", "STATE", "COUNT")?;
    if before.is_some() {
        write!(out, " {:>8}", "CHANGE")?;
    }
    if check.is_some() {
        write!(out, "  STREAM")?;
    }
    writeln!(out)?;
    let row = |out: &mut dyn Write,
               name: &str,
               n: u64,
               b: Option<u64>,
               word: Option<String>|
     -> io::Result<()> {
        write!(out, "{name:<12} {n:>8}")?;
        if let Some(b) = b {
            write!(out, " {:>8}", signed(diff(n, b)))?;
        }
        if let Some(word) = word {
            write!(out, "  {word}")?;
        }
        writeln!(out)
    };
    for (state, n) in now.iter() {
        let b = before.map(|b| b.get(state));
        let differs = check.is_some_and(|c| {
            c.states
                .iter()
                .any(|s| s.state == state && s.difference() != 0)
        });
        if n > 0 || b.is_some_and(|b| b > 0) || differs {
            row(out, state.name(), n, b, check.map(|c| verdict(c, state)))?;
        }
    }
    row(out, "TOTAL", now.total(), before.map(Counts::total), None)
}

/// The check in one line, under a group table.
fn check_line(out: &mut impl Write, check: &Check) -> io::Result<()> {
    let differing: Vec<String> = check
        .states
        .iter()
        .filter(|s| s.difference() != 0)
        .map(|s| format!("{} differs by {}", s.state.name(), signed(s.difference())))
        .collect();
    if check.unchecked {
        writeln!(out, "STREAM: unchecked")
    } else if differing.is_empty() && !check.verified() {
        writeln!(out, "STREAM: unverified")
    } else if differing.is_empty() {
        writeln!(out, "STREAM: agrees")
    } else {
        writeln!(out, "STREAM: {}", differing.join(", "))
    }
}

/// What the check compared, and what may explain a difference.
fn check_notes(out: &mut impl Write, check: &Check) -> io::Result<()> {
    let moved = match (check.resolved + check.conflicting, check.uncertain) {
        (0, 0) => String::new(),
        (found, 0) => format!(
            "; {} moved while a snapshot was taken, each counted as that snapshot lists it",
            plural(found, "socket", "sockets")
        ),
        (found, uncertain) => format!(
            "; {} moved while a snapshot was taken, {found} counted as that snapshot lists them, \
             {uncertain} not found in it: a count agrees when it lies within what they allow",
            plural(found + uncertain, "socket", "sockets")
        ),
    };
    writeln!(
        out,
        "STREAM: the previous snapshot plus the {} since, against this snapshot{moved}. \
         TIME_WAIT: every timewait socket listed (FIN_WAIT2 ones too) was listed before or \
         handed over since ({}). {} come from snapshots only: {SNAPSHOT_ONLY_WHY}.",
        plural(check.transitions, "transition", "transitions"),
        plural(check.handovers, "hand-over", "hand-overs"),
        SNAPSHOT_ONLY.map(TcpState::name).join(", "),
    )?;
    if check.lost > 0 {
        writeln!(
            out,
            "(unverified: {} lost by the kernel over the window)",
            plural(check.lost, "transition", "transitions")
        )?;
    } else if check.gaps > 0 {
        writeln!(
            out,
            "(unverified: {} skip a state, though the kernel counted no loss: one in between \
             was missed)",
            plural(check.gaps, "transition", "transitions")
        )?;
    } else if check.unchecked {
        writeln!(
            out,
            "(unchecked: more than {MAX_WINDOW_STEPS} transitions between the snapshots)"
        )?;
    } else if !check.agrees() {
        writeln!(
            out,
            "(no transition was lost by the kernel: the stream missed a change of these \
             sockets)"
        )?;
    }
    Ok(())
}

/// A redraw between snapshots: counts kept current from the stream, with the change since the
/// last snapshot.
pub fn live_text(out: &mut impl Write, frame: &LiveFrame<'_>) -> io::Result<()> {
    let before = &frame.snapshot.total;
    writeln!(out, "{:<12} {:>8} {:>8}", "STATE", "COUNT", "CHANGE")?;
    let (mut starred, mut timewait) = (false, false);
    for (state, n) in frame.counts.iter() {
        let b = before.get(state);
        if n > 0 || b > 0 {
            let name = if SNAPSHOT_ONLY.contains(&state) {
                starred = true;
                format!("{}*", state.name())
            } else if state == TcpState::TimeWait {
                timewait = true;
                format!("{}~", state.name())
            } else {
                state.name().to_owned()
            };
            writeln!(out, "{name:<12} {n:>8} {:>8}", signed(diff(n, b)))?;
        }
    }
    writeln!(
        out,
        "{:<12} {:>8} {:>8}",
        "TOTAL",
        frame.counts.total(),
        signed(diff(frame.counts.total(), before.total()))
    )?;
    if starred {
        writeln!(
            out,
            "* as the last snapshot found them: {SNAPSHOT_ONLY_WHY}."
        )?;
    }
    if timewait {
        writeln!(out, "~ {TIMEWAIT_HOW}.")?;
    }
    findings(
        out,
        &frame.snapshot.findings,
        "Findings (at the last snapshot):",
    )
}

fn group_table(
    out: &mut impl Write,
    frame: &Frame<'_>,
    groups: &BTreeMap<GroupKey, Counts>,
    by: GroupBy,
) -> io::Result<()> {
    let states: Vec<TcpState> = frame
        .census
        .total
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, _)| s)
        .collect();
    let before = frame.previous.and_then(|p| p.groups.as_ref());
    let key_width = groups
        .keys()
        .map(|k| k.label().len())
        .chain([by_name(by).len(), "TOTAL".len()])
        .max()
        .unwrap_or(5);
    write!(out, "{:<key_width$}", by_name(by))?;
    for state in &states {
        write!(out, " {:>w$}", state.name(), w = state.name().len().max(6))?;
    }
    write!(out, " {:>8}", "TOTAL")?;
    if before.is_some() {
        write!(out, " {:>8}", "CHANGE")?;
    }
    writeln!(out)?;
    let row = |out: &mut dyn Write, label: &str, counts: &Counts, b: Option<u64>| {
        write!(out, "{label:<key_width$}")?;
        for state in &states {
            write!(
                out,
                " {:>w$}",
                counts.get(*state),
                w = state.name().len().max(6)
            )?;
        }
        write!(out, " {:>8}", counts.total())?;
        if let Some(b) = b {
            write!(out, " {:>8}", signed(diff(counts.total(), b)))?;
        }
        writeln!(out)
    };
    for (key, counts) in groups {
        let b = before.map(|b| b.get(key).map_or(0, Counts::total));
        row(out, &key.label(), counts, b)?;
    }
    row(
        out,
        "TOTAL",
        &frame.census.total,
        frame.previous.map(|p| p.total.total()),
    )
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A threshold as the flag takes it: `60 s`, or a duration when not whole seconds.
fn threshold(ns: u64) -> String {
    if ns.is_multiple_of(1_000_000_000) {
        format!("{} s", ns / 1_000_000_000)
    } else {
        units::duration(ns)
    }
}

/// `12.0s` when exact (seen entering the state), `≥ 5m12s (...)` for a lower bound.
fn age(ns: u64, source: AgeSource) -> String {
    match source {
        AgeSource::Stream => format!("{} (seen entering)", units::duration(ns)),
        AgeSource::Kernel => format!(
            "≥ {} (since the last ACK the kernel received)",
            units::duration(ns)
        ),
        AgeSource::FirstSnapshot => {
            format!("≥ {} (since the first snapshot)", units::duration(ns))
        }
    }
}

/// `, 2 for 60 s or more; the oldest 5m12s (...)` or `, none for 60 s yet; the oldest ...`.
fn age_text(age: Option<&CloseWaitAge>, count: u64, threshold_ns: u64) -> String {
    let Some(age) = age.filter(|a| a.timed > 0) else {
        return ", for how long is unknown (no tcp_info)".to_owned();
    };
    let threshold = threshold(threshold_ns);
    // The first snapshot of a watch without the kernel's bound knows nothing yet.
    if age.oldest_source == AgeSource::FirstSnapshot && age.oldest_ns < 1_000_000_000 {
        return ", already in CLOSE_WAIT when tracing started: timed from now on".to_owned();
    }
    let oldest = self::age(age.oldest_ns, age.oldest_source);
    let mut text = match (age.old, count) {
        (0, 1) => format!(", not for {threshold} yet: {oldest}"),
        (0, _) => format!(", none for {threshold} yet; the oldest {oldest}"),
        (_, 1) => format!(", for {threshold} or more: {oldest}"),
        (old, _) => format!(", {old} for {threshold} or more; the oldest {oldest}"),
    };
    if age.timed < count {
        text.push_str(&format!("; {} of {count} timed", age.timed));
    }
    text
}

/// `812/nginx`, `812/nginx, 813/nginx and 3 more`.
fn holders_text(holders: &[Owner]) -> Option<String> {
    const SHOWN: usize = 2;
    let names: Vec<String> = holders
        .iter()
        .take(SHOWN)
        .map(|o| format!("{}/{}", o.pid, o.comm))
        .collect();
    match holders.len() {
        0 => None,
        n if n <= SHOWN => Some(names.join(", ")),
        n => Some(format!("{} and {} more", names.join(", "), n - SHOWN)),
    }
}

/// `since boot` or `in the last 2.00s`, and the sign counts take in that window.
fn window_text(window: Window) -> String {
    match window {
        Window::SinceBoot => "since boot (or the namespace's creation)".to_owned(),
        Window::Between { ns } => format!("in the {} since the last snapshot", units::duration(ns)),
    }
}

fn counter(n: u64, window: Window) -> String {
    match window {
        Window::SinceBoot => n.to_string(),
        Window::Between { .. } => format!("+{n}"),
    }
}

fn close_wait_text(
    holder: &Holder,
    count: u64,
    age: Option<&CloseWaitAge>,
    threshold_ns: u64,
    risk: bool,
) -> String {
    let ages = age_text(age, count, threshold_ns);
    let sockets = plural(count, "socket", "sockets");
    let them = if count == 1 { "it" } else { "them" };
    match holder {
        Holder::Process { pid, comm } if risk => format!(
            "CLOSE_WAIT: {pid}/{comm} holds {sockets} whose peer closed{ages}; it never closed \
             {them} itself, and CLOSE_WAIT never times out: a leak in the application"
        ),
        Holder::Process { pid, comm } => format!(
            "CLOSE_WAIT: {pid}/{comm} holds {sockets} whose peer closed{ages}; a server \
             closing {them} in its own time, not a leak unless {} past --close-wait-age",
            if count == 1 { "it stays" } else { "they stay" }
        ),
        Holder::NotAccepted { listener, holders } => {
            let by = holders_text(holders).unwrap_or_else(|| match listener {
                Some(_) => "its listener's holder (unknown: run as root to see it)".to_owned(),
                None => "any process".to_owned(),
            });
            let queue = match listener {
                Some(listener) => format!("the accept queue of {listener}"),
                None => "an accept queue".to_owned(),
            };
            let connections = plural(count, "connection", "connections");
            let why = if risk {
                format!("nothing accepted {them} for that long: a stuck or overloaded accept loop")
            } else {
                format!("not a leak: accept() takes {them}, or closing the listener resets {them}")
            };
            let whose = if count == 1 {
                "whose peer closed"
            } else {
                "whose peers closed"
            };
            format!(
                "CLOSE_WAIT: {connections} not yet accepted by {by}, {whose} while waiting in \
                 {queue}{ages}; {why}"
            )
        }
        Holder::Unknown { hidden: true } => format!(
            "CLOSE_WAIT: {sockets} whose owner is unknown (run as root to see all \
             processes){ages}"
        ),
        Holder::Unknown { hidden: false } => format!(
            "CLOSE_WAIT: {sockets} with no holder found in /proc (it exited while /proc was \
             read, or holds {them} from outside this PID namespace){ages}"
        ),
    }
}

fn accept_queue_text(queue: &AcceptQueue) -> String {
    let of = holders_text(&queue.holders)
        .map(|h| format!(" of {h}"))
        .unwrap_or_default();
    let mut text = format!(
        "LISTEN {}{of}: accept queue {}/{}",
        queue.listener, queue.queue, queue.backlog
    );
    if queue.is_full() {
        text.push_str(", full: the kernel drops new connections' SYNs and final ACKs");
    } else {
        text.push_str(&format!(
            ": {} waiting for accept()",
            plural(u64::from(queue.queue), "connection", "connections")
        ));
    }
    let mut waiting = Vec::new();
    if queue.waiting_established > 0 {
        waiting.push(format!("{} ESTABLISHED", queue.waiting_established));
    }
    if queue.waiting_close_wait > 0 {
        waiting.push(format!(
            "{} CLOSE_WAIT whose peer gave up",
            queue.waiting_close_wait
        ));
    }
    if !waiting.is_empty() {
        text.push_str(&format!("; waiting: {}", waiting.join(", ")));
        if queue.sharing > 1 {
            text.push_str(&format!(
                " (over the {} listeners of {})",
                queue.sharing, queue.listener
            ));
        }
    }
    if let Some(Counted { counters, window }) = queue.overflows {
        text.push_str(&format!(
            "; ListenOverflows {}, ListenDrops {} {} in this network namespace",
            counter(counters.listen_overflows, window),
            counter(counters.listen_drops, window),
            window_text(window)
        ));
    }
    text
}

fn listen_overflows_text(Counted { counters, window }: &Counted) -> String {
    let now = match window {
        Window::SinceBoot => "; no accept queue is full now",
        Window::Between { .. } => {
            "; no accept queue is full at this snapshot: one filled up in between (a burst, or \
             a slow accept loop)"
        }
    };
    format!(
        "ListenOverflows: {} {} (ListenDrops {}) in this network namespace{now}",
        counter(counters.listen_overflows, *window),
        window_text(*window),
        counter(counters.listen_drops, *window),
    )
}

fn syn_cookies_text(Counted { counters, window }: &Counted, sysctl: Option<u8>) -> String {
    let c = counters;
    let mut parts = Vec::new();
    if c.syncookies_sent + c.syncookies_recv + c.syncookies_failed > 0 {
        parts.push(format!(
            "SYN cookies: {} sent, {} came back valid, {} invalid",
            counter(c.syncookies_sent, *window),
            counter(c.syncookies_recv, *window),
            counter(c.syncookies_failed, *window)
        ));
    }
    if c.req_q_full_drop > 0 {
        parts.push(format!(
            "{} SYNs dropped for a full SYN queue (TCPReqQFullDrop)",
            counter(c.req_q_full_drop, *window)
        ));
    }
    let head = if parts.is_empty() {
        "SYN queue".to_owned()
    } else {
        parts.join("; ")
    };
    let why = match sysctl {
        Some(2) => {
            "net.ipv4.tcp_syncookies = 2 sends them for every SYN, whether or not a SYN queue \
             is full: not a sign of overflow"
        }
        Some(1) => {
            "net.ipv4.tcp_syncookies = 1 sends them only when a listener's SYN queue is full: \
             the SYN queue overflowed (a SYN flood, or a backlog too small for the rate of new \
             connections; the kernel logs \"Possible SYN flooding on port\")"
        }
        Some(0) => {
            "net.ipv4.tcp_syncookies = 0: no cookies, SYNs beyond a full SYN queue are dropped"
        }
        _ => "net.ipv4.tcp_syncookies unknown",
    };
    format!(
        "{head} {} in this network namespace; {why}",
        window_text(*window)
    )
}

/// What tcp_tw_reuse does for the ports of a TIME_WAIT finding.
fn tw_reuse_text(reuse: &TwReuse, remote: SocketAddr) -> Option<String> {
    let sysctl = reuse.sysctl?;
    let held = "they stay taken for the 60 s of TIME_WAIT";
    Some(match sysctl {
        0 => format!("net.ipv4.tcp_tw_reuse = 0: connect() never reuses them, {held}"),
        2 if !reuse.loopback => format!(
            "net.ipv4.tcp_tw_reuse = 2 reuses TIME_WAIT ports of loopback connections only, \
             not towards {remote}: {held}"
        ),
        _ if reuse.timestamps == Some(0) => format!(
            "net.ipv4.tcp_tw_reuse = {sysctl} needs TCP timestamps, which \
             net.ipv4.tcp_timestamps = 0 turns off: {held}"
        ),
        _ => {
            let which = if sysctl == 2 {
                "2 (loopback only, as here)".to_owned()
            } else {
                sysctl.to_string()
            };
            let after = match reuse.delay_ms {
                Some(ms) => format!("{ms} ms in TIME_WAIT (net.ipv4.tcp_tw_reuse_delay)"),
                None => "a second without a timestamp from the peer".to_owned(),
            };
            format!(
                "net.ipv4.tcp_tw_reuse = {which}: connect() takes such a port over after \
                 {after} if the connection used TCP timestamps, so new outgoing connections to \
                 it need not fail (a port an application bind()s itself is not reused)"
            )
        }
    })
}

/// One finding in a sentence.
pub fn describe(finding: &Finding) -> String {
    match finding {
        Finding::CloseWait {
            holder,
            count,
            age,
            threshold_ns,
        } => close_wait_text(
            holder,
            *count,
            age.as_ref(),
            *threshold_ns,
            finding.is_risk(),
        ),
        Finding::AcceptQueue(queue) => accept_queue_text(queue),
        Finding::ListenOverflows(counted) => listen_overflows_text(counted),
        Finding::SynCookies { counted, sysctl } => syn_cookies_text(counted, *sysctl),
        Finding::TimeWaitPorts {
            total,
            local,
            remote,
            count,
            range,
            reuse,
        } => {
            let percent = count * 100 / u64::from(range.size());
            let mut text = format!(
                "TIME_WAIT: {}; the busiest destination, {local} -> {remote}, holds {count} of \
                 the {} ephemeral ports ({}-{}), {percent}%",
                plural(*total, "socket", "sockets"),
                range.size(),
                range.low,
                range.high
            );
            if let Some(reuse) = tw_reuse_text(reuse, *remote) {
                text.push_str("; ");
                text.push_str(&reuse);
            }
            if finding.is_risk() {
                text.push_str(
                    ": new connections to it may fail (EADDRNOTAVAIL); reuse connections or \
                     widen net.ipv4.ip_local_port_range",
                );
            }
            text
        }
        Finding::SynRecv {
            port,
            count,
            growth,
        } => {
            let mut text = format!(
                "SYN_RECV: {} on port {port}",
                plural(*count, "half-open connection", "half-open connections")
            );
            if let Some(growth) = growth {
                text.push_str(&format!(", {} since the last snapshot", signed(*growth)));
                if *growth > 0 {
                    text.push_str(" (a SYN flood, lost ACKs or a slow accept loop?)");
                }
            }
            text
        }
    }
}

/// `HH:MM:SS` of a kernel timestamp, in local time.
pub fn time_of_day(wall: &WallClock, ns: u64) -> String {
    let time = wall.time_of_day(ns);
    time.split('.').next().unwrap_or(&time).to_owned()
}

/// The line above each table: the screen is cleared on a terminal, tables are separated by a
/// blank line otherwise.
pub fn frame_header(
    out: &mut impl Write,
    terminal: bool,
    after_another: bool,
    time: &str,
    what: &str,
) -> io::Result<()> {
    if terminal {
        out.write_all(CLEAR)?;
    } else if after_another {
        writeln!(out)?;
    }
    writeln!(out, "{time}  {what}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        census::{
            Census, Context, count,
            counts::Counts,
            tests::{owners, population, sock},
        },
        os::sysctl::PortRange,
        render::states::{frame::LiveInfo, json::json_line},
    };
    use serde_json::{Value, json};

    fn render(frame: &Frame<'_>) -> String {
        let mut out = Vec::new();
        text(&mut out, frame).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_state_table_with_changes_and_findings() {
        let owners = owners();
        let ctx = Context {
            owners: Some(&owners),
            port_range: Some(PortRange {
                low: 32768,
                high: 60999,
            }),
            ..Context::default()
        };
        let mut sockets = population();
        let before = count(&sockets, None, &ctx, None);
        sockets.retain(|s| s.state != TcpState::Established);
        sockets.push(sock(TcpState::NewSynRecv, "10.0.0.1:80", "10.0.0.3:1", 0));
        let now = count(&sockets, None, &ctx, Some(&before));
        let frame = Frame {
            census: &now,
            previous: Some(&before),
            by: None,
            interrupted: false,
            live: None,
        };
        assert_eq!(
            render(&frame),
            "\
STATE           COUNT   CHANGE
ESTABLISHED         0       -2
SYN_RECV            2       +1
TIME_WAIT           3        0
CLOSE_WAIT          2        0
LISTEN              1        0
TOTAL               8       -1

Findings:
  - CLOSE_WAIT: 101/nginx holds 1 socket whose peer closed, for how long is unknown (no tcp_info); a server closing it in its own time, not a leak unless it stays past --close-wait-age
  - CLOSE_WAIT: 102/worker holds 1 socket whose peer closed, for how long is unknown (no tcp_info); a server closing it in its own time, not a leak unless it stays past --close-wait-age
  - TIME_WAIT: 3 sockets; the busiest destination, 10.0.0.1 -> 10.0.0.5:5432, holds 2 of the 28232 ephemeral ports (32768-60999), 0%
  ! SYN_RECV: 2 half-open connections on port 80, +1 since the last snapshot (a SYN flood, lost ACKs or a slow accept loop?)
"
        );
    }

    #[test]
    fn the_group_table() {
        let ctx = Context::default();
        let census = count(&population(), Some(GroupBy::Port), &ctx, None);
        let frame = Frame {
            census: &census,
            previous: None,
            by: Some(GroupBy::Port),
            interrupted: true,
            live: None,
        };
        assert_eq!(
            render(&frame),
            "\
PORT  ESTABLISHED SYN_RECV TIME_WAIT CLOSE_WAIT LISTEN    TOTAL
80              1        1         0          2      1        5
5432            1        0         3          0      0        4
TOTAL           2        1         3          2      1        9
(sockets changed while they were counted: counts may be off by those that moved)

Findings:
  - CLOSE_WAIT: 2 sockets whose owner is unknown (run as root to see all processes), for how long is unknown (no tcp_info)
  - SYN_RECV: 1 half-open connection on port 80
"
        );
    }

    /// A watch while tracing: a first snapshot at 100 s, transitions, a second at 102 s.
    fn traced() -> (Census, Census, Check, Counts) {
        use crate::{
            census::{
                close_wait::CloseWaitAges,
                live::{LiveCensus, Split},
            },
            core::event::Transition,
            os::owners::Owners,
        };
        const S: u64 = 1_000_000_000;
        let owners = owners();
        let mut ages = CloseWaitAges::default();
        let mut live = LiveCensus::new();
        let mut first = population();
        for socket in first.iter_mut().filter(|s| s.state == TcpState::TimeWait) {
            socket.timer = crate::os::diag::Timer::TimeWait;
            socket.expires_ms = 50_000;
        }
        ages.snapshot(&first, 100 * S);
        fn ctx<'a>(owners: &'a Owners, ages: &'a CloseWaitAges, at: u64) -> Context<'a> {
            Context {
                owners: Some(owners),
                close_wait_ages: Some((ages, at)),
                ..Context::default()
            }
        }
        let before = count(&first, None, &ctx(&owners, &ages, 100 * S), None);
        live.rebase(Split::of(&first), 100 * S, 100 * S + 1000, 0);
        let moved = |ts_ns, lport, rport, from, to| Transition {
            pid: Some(101),
            comm: "nginx".into(),
            laddr: "10.0.0.1".parse().unwrap(),
            lport,
            raddr: "10.0.0.9".parse().unwrap(),
            rport,
            ..Transition::fixture(u64::from(rport), ts_ns, from, to)
        };
        use TcpState::*;
        // 80 <- 40000 goes to CLOSE_WAIT; a connection the stream lost the start of closes.
        for t in [
            moved(101 * S, 80, 40000, Established, CloseWait),
            moved(101 * S, 80, 40005, Established, Close),
        ] {
            live.apply(&t);
            ages.apply(&t);
        }
        let live_counts = live.counts(101 * S);
        let mut second = first.clone();
        second[1].state = CloseWait;
        ages.snapshot(&second, 102 * S);
        let now = count(&second, None, &ctx(&owners, &ages, 102 * S), Some(&before));
        live.rebase(Split::of(&second), 102 * S, 102 * S + 1000, 1);
        let check = live.settle(103 * S, S / 2, 1).remove(0);
        (before, now, check, live_counts)
    }

    #[test]
    fn a_snapshot_with_the_streams_check_and_close_wait_ages() {
        let (before, now, check, _) = traced();
        let frame = Frame {
            census: &now,
            previous: Some(&before),
            by: None,
            interrupted: false,
            live: Some(LiveInfo {
                snapshot_ns: 102_000_000_000,
                check: Some(&check),
            }),
        };
        assert_eq!(
            render(&frame),
            "\
STATE           COUNT   CHANGE  STREAM
ESTABLISHED         1       -1  differs by -1
SYN_RECV            1        0  snapshot only
TIME_WAIT           3        0  unverified
CLOSE_WAIT          3       +1  unverified
LISTEN              1        0  unverified
TOTAL               9        0
STREAM: the previous snapshot plus the 2 transitions since, against this snapshot. TIME_WAIT: every timewait socket listed (FIN_WAIT2 ones too) was listed before or handed over since (0 hand-overs). SYN_RECV, CLOSE come from snapshots only: request sockets (half-open connections, counted as SYN_RECV) never pass through the tracepoint, and a socket in CLOSE has left the tables a snapshot reads.
(unverified: 1 transition lost by the kernel over the window)

Findings:
  - CLOSE_WAIT: 101/nginx holds 2 sockets whose peer closed, none for 60 s yet; the oldest ≥ 2.00s (since the first snapshot); a server closing them in its own time, not a leak unless they stay past --close-wait-age
  - CLOSE_WAIT: 102/worker holds 1 socket whose peer closed, not for 60 s yet: ≥ 2.00s (since the first snapshot); a server closing it in its own time, not a leak unless it stays past --close-wait-age
  - SYN_RECV: 1 half-open connection on port 80, 0 since the last snapshot
"
        );
        // The first snapshot: its CLOSE_WAIT sockets are timed from the start of tracing.
        let first = Frame {
            census: &before,
            previous: None,
            by: None,
            interrupted: false,
            live: Some(LiveInfo {
                snapshot_ns: 100_000_000_000,
                check: None,
            }),
        };
        assert!(render(&first).contains(
            "peer closed, already in CLOSE_WAIT when tracing started: timed from now on; a server closing it"
        ));
    }

    #[test]
    fn live_counts_between_snapshots() {
        let (before, _, _, counts) = traced();
        let mut out = Vec::new();
        live_text(
            &mut out,
            &LiveFrame {
                counts: &counts,
                snapshot: &before,
            },
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\
STATE           COUNT   CHANGE
ESTABLISHED         0       -2
SYN_RECV*           1        0
TIME_WAIT~          3        0
CLOSE_WAIT          3       +1
LISTEN              1        0
TOTAL               8       -1
* as the last snapshot found them: request sockets (half-open connections, counted as SYN_RECV) never pass through the tracepoint, and a socket in CLOSE has left the tables a snapshot reads.
~ timewait sockets: the last snapshot's, plus those handed over since (FIN_WAIT2 -> CLOSE, CLOSING -> CLOSE), less those past their 60 s (Linux never reports TIME_WAIT through the tracepoint, nor its end, which may come sooner: a reset, a reuse); those still in FIN_WAIT2, waiting for the peer's FIN, are counted there.

Findings (at the last snapshot):
  - CLOSE_WAIT: 101/nginx holds 1 socket whose peer closed, already in CLOSE_WAIT when tracing started: timed from now on; a server closing it in its own time, not a leak unless it stays past --close-wait-age
  - CLOSE_WAIT: 102/worker holds 1 socket whose peer closed, already in CLOSE_WAIT when tracing started: timed from now on; a server closing it in its own time, not a leak unless it stays past --close-wait-age
  - SYN_RECV: 1 half-open connection on port 80
"
        );
    }

    #[test]
    fn json_carries_the_check_and_the_ages() {
        let (before, now, check, _) = traced();
        let mut out = Vec::new();
        json_line(
            &mut out,
            &Frame {
                census: &now,
                previous: Some(&before),
                by: None,
                interrupted: false,
                live: Some(LiveInfo {
                    snapshot_ns: 102_000_000_000,
                    check: Some(&check),
                }),
            },
        )
        .unwrap();
        let value: Value = serde_json::from_slice(&out).unwrap();
        let live = &value["live"];
        assert_eq!(live["snapshot_ns"], 102_000_000_000u64);
        assert_eq!(live["snapshot_only"], json!(["SYN_RECV", "CLOSE"]));
        assert_eq!(live["check"]["agrees"], false);
        assert_eq!(live["check"]["verified"], false);
        assert_eq!(live["check"]["lost"], 1);
        assert_eq!(live["check"]["transitions"], 2);
        assert_eq!(
            live["check"]["states"]["ESTABLISHED"],
            json!({"verdict": "differs", "stream": 0, "min": 0, "max": 0, "snapshot": 1,
                   "difference": -1})
        );
        assert_eq!(
            live["check"]["states"]["TIME_WAIT"],
            json!({"verdict": "unverified", "stream": 3, "min": 0, "max": 3, "snapshot": 3,
                   "difference": 0, "unexplained": 0})
        );
        assert_eq!(live["check"]["states"]["SYN_RECV"], Value::Null);
        assert_eq!(
            value["findings"][0]["age"],
            json!({"timed": 2, "oldest_s": 2.0, "oldest_exact": false, "oldest_source": "first_snapshot", "old": 0, "old_threshold_s": 60.0})
        );
    }

    #[test]
    fn json_has_every_state_and_typed_findings() {
        let ctx = Context::default();
        let census = count(&population(), Some(GroupBy::Remote), &ctx, None);
        let mut out = Vec::new();
        json_line(
            &mut out,
            &Frame {
                census: &census,
                previous: None,
                by: Some(GroupBy::Remote),
                interrupted: false,
                live: None,
            },
        )
        .unwrap();
        let value: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["type"], "states");
        assert_eq!(value["total"], 9);
        assert_eq!(value["states"].as_object().unwrap().len(), 11);
        assert_eq!(value["states"]["TIME_WAIT"], 3);
        assert_eq!(value["states"]["CLOSING"], 0);
        assert_eq!(value["changes"], Value::Null);
        assert_eq!(value["by"], "remote");
        assert_eq!(
            value["groups"][0],
            json!({"key": "10.0.0.5", "total": 3, "states": {"ESTABLISHED": 1, "TIME_WAIT": 2}})
        );
        assert_eq!(value["findings"][0]["kind"], "close_wait");
        assert_eq!(value["findings"][0]["pid"], Value::Null);
        assert_eq!(value["findings"][1]["kind"], "syn_recv");
        assert_eq!(value["findings"][1]["risk"], false);
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
    }
}
