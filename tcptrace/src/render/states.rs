//! `tcptrace states`: counts per state (or per group and state), the change since the previous
//! snapshot, and the findings; as a table or as one JSON object per snapshot.

use std::{
    collections::BTreeMap,
    io::{self, Write},
};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::{
    census::{Census, Counts, Finding, GroupBy, GroupKey},
    state::TcpState,
};

/// What one redraw shows.
pub struct Frame<'a> {
    pub census: &'a Census,
    /// The previous snapshot of a watch: changes are shown against it.
    pub previous: Option<&'a Census>,
    pub by: Option<GroupBy>,
    /// The kernel flagged the dump as changed while it was taken.
    pub interrupted: bool,
}

fn signed(n: i64) -> String {
    if n > 0 {
        format!("+{n}")
    } else {
        n.to_string()
    }
}

fn diff(now: u64, before: u64) -> i64 {
    now as i64 - before as i64
}

fn by_name(by: GroupBy) -> &'static str {
    match by {
        GroupBy::Port => "PORT",
        GroupBy::Process => "PID/PROGRAM",
        GroupBy::Remote => "REMOTE",
    }
}

pub fn text(out: &mut impl Write, frame: &Frame<'_>) -> io::Result<()> {
    match (&frame.census.groups, frame.by) {
        (Some(groups), Some(by)) => group_table(out, frame, groups, by)?,
        _ => state_table(out, frame)?,
    }
    if frame.interrupted {
        writeln!(
            out,
            "(sockets changed while they were counted: counts may be off by those that moved)"
        )?;
    }
    if !frame.census.findings.is_empty() {
        writeln!(out, "\nFindings:")?;
        for finding in &frame.census.findings {
            let mark = if finding.is_risk() { "!" } else { "-" };
            writeln!(out, "  {mark} {}", describe(finding))?;
        }
    }
    Ok(())
}

fn state_table(out: &mut impl Write, frame: &Frame<'_>) -> io::Result<()> {
    let now = &frame.census.total;
    let before = frame.previous.map(|p| &p.total);
    write!(out, "{:<12} {:>8}", "STATE", "COUNT")?;
    if before.is_some() {
        write!(out, " {:>8}", "CHANGE")?;
    }
    writeln!(out)?;
    let row = |out: &mut dyn Write, name: &str, n: u64, b: Option<u64>| -> io::Result<()> {
        write!(out, "{name:<12} {n:>8}")?;
        if let Some(b) = b {
            write!(out, " {:>8}", signed(diff(n, b)))?;
        }
        writeln!(out)
    };
    for (state, n) in now.iter() {
        let b = before.map(|b| b.get(state));
        if n > 0 || b.is_some_and(|b| b > 0) {
            row(out, state.name(), n, b)?;
        }
    }
    row(out, "TOTAL", now.total(), before.map(Counts::total))
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

/// One finding in a sentence.
pub fn describe(finding: &Finding) -> String {
    match finding {
        Finding::CloseWait {
            owner: GroupKey::Process { pid, comm },
            count,
        } => format!(
            "CLOSE_WAIT: {pid}/{comm} holds {} whose peer closed; it never closed {} itself \
             (CLOSE_WAIT never times out: a leak in the application)",
            plural(*count, "socket", "sockets"),
            if *count == 1 { "it" } else { "them" }
        ),
        Finding::CloseWait { count, .. } => format!(
            "CLOSE_WAIT: {} whose owner is unknown (run as root to see all processes)",
            plural(*count, "socket", "sockets")
        ),
        Finding::TimeWaitPorts {
            total,
            local,
            remote,
            count,
            range,
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

fn state_map(counts: &Counts, all: bool) -> Map<String, Value> {
    counts
        .iter()
        .filter(|(_, n)| all || *n > 0)
        .map(|(s, n)| (s.name().to_owned(), json!(n)))
        .collect()
}

#[derive(Serialize)]
struct JsonGroup {
    key: String,
    total: u64,
    states: Map<String, Value>,
}

fn finding_json(finding: &Finding) -> Value {
    let mut value = match finding {
        Finding::CloseWait { owner, count } => {
            let (pid, comm) = match owner {
                GroupKey::Process { pid, comm } => (Some(*pid), Some(comm.clone())),
                _ => (None, None),
            };
            json!({"kind": "close_wait", "pid": pid, "comm": comm, "count": count})
        }
        Finding::TimeWaitPorts {
            total,
            local,
            remote,
            count,
            range,
        } => json!({
            "kind": "time_wait_ports", "total": total, "laddr": local.to_string(),
            "raddr": remote.ip().to_string(), "rport": remote.port(), "count": count,
            "port_range": [range.low, range.high],
        }),
        Finding::SynRecv {
            port,
            count,
            growth,
        } => json!({"kind": "syn_recv", "lport": port, "count": count, "growth": growth}),
    };
    value["risk"] = json!(finding.is_risk());
    value["text"] = json!(describe(finding));
    value
}

/// One JSON object per snapshot.
pub fn json_line(out: &mut impl Write, frame: &Frame<'_>) -> io::Result<()> {
    let census = frame.census;
    let changes = frame.previous.map(|p| {
        census
            .total
            .iter()
            .map(|(s, n)| (s.name().to_owned(), json!(diff(n, p.total.get(s)))))
            .collect::<Map<_, _>>()
    });
    let groups = census.groups.as_ref().map(|groups| {
        groups
            .iter()
            .map(|(key, counts)| JsonGroup {
                key: key.label(),
                total: counts.total(),
                states: state_map(counts, false),
            })
            .collect::<Vec<_>>()
    });
    let value = json!({
        "type": "states",
        "total": census.total.total(),
        "states": state_map(&census.total, true),
        "changes": changes,
        "by": frame.by.map(|b| by_name(b).to_ascii_lowercase()),
        "groups": groups,
        "findings": census.findings.iter().map(finding_json).collect::<Vec<_>>(),
        "interrupted": frame.interrupted,
    });
    serde_json::to_writer(&mut *out, &value)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::census::{
        Context, PortRange, count,
        tests::{owners, population, sock},
    };

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
  ! CLOSE_WAIT: 101/nginx holds 1 socket whose peer closed; it never closed it itself (CLOSE_WAIT never times out: a leak in the application)
  ! CLOSE_WAIT: 102/worker holds 1 socket whose peer closed; it never closed it itself (CLOSE_WAIT never times out: a leak in the application)
  - TIME_WAIT: 3 sockets; the busiest destination, 10.0.0.1 -> 10.0.0.5:5432, holds 2 of the 28232 ephemeral ports (32768-60999), 0%
  ! SYN_RECV: 2 half-open connections on port 80, +1 since the last snapshot (a SYN flood, lost ACKs or a slow accept loop?)
"
        );
    }

    #[test]
    fn the_group_table() {
        let ctx = Context {
            owners: None,
            port_range: None,
        };
        let census = count(&population(), Some(GroupBy::Port), &ctx, None);
        let frame = Frame {
            census: &census,
            previous: None,
            by: Some(GroupBy::Port),
            interrupted: true,
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
  ! CLOSE_WAIT: 2 sockets whose owner is unknown (run as root to see all processes)
  - SYN_RECV: 1 half-open connection on port 80
"
        );
    }

    #[test]
    fn json_has_every_state_and_typed_findings() {
        let ctx = Context {
            owners: None,
            port_range: None,
        };
        let census = count(&population(), Some(GroupBy::Remote), &ctx, None);
        let mut out = Vec::new();
        json_line(
            &mut out,
            &Frame {
                census: &census,
                previous: None,
                by: Some(GroupBy::Remote),
                interrupted: false,
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
