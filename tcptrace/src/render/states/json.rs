//! `tcptrace states --json`: one object per snapshot, every state present, typed findings.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::{
    census::{
        CLOSE_WAIT_OLD_NS, Finding, GroupKey,
        counts::Counts,
        live::{Check, SNAPSHOT_ONLY},
    },
    core::state::TcpState,
    render::states::{
        frame::{Frame, LiveInfo},
        text::{by_name, describe, diff},
    },
};

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
        Finding::CloseWait { owner, count, age } => {
            let (pid, comm) = match owner {
                GroupKey::Process { pid, comm } => (Some(*pid), Some(comm.clone())),
                _ => (None, None),
            };
            let age = age.map(|a| {
                json!({
                    "timed": a.timed,
                    "oldest_s": a.oldest_ns as f64 / 1e9,
                    "oldest_exact": a.oldest_exact,
                    "old": a.old,
                    "old_threshold_s": CLOSE_WAIT_OLD_NS / 1_000_000_000,
                })
            });
            json!({"kind": "close_wait", "pid": pid, "comm": comm, "count": count, "age": age})
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

fn check_json(check: &Check) -> Value {
    let states: Map<String, Value> = check
        .states
        .iter()
        .map(|s| {
            (
                s.state.name().to_owned(),
                json!({"stream": s.stream, "snapshot": s.snapshot, "difference": s.difference()}),
            )
        })
        .collect();
    json!({
        "agrees": check.agrees(),
        "states": states,
        "transitions": check.transitions,
        "during_snapshot": check.during_snapshot,
        "lost": check.lost,
    })
}

fn live_json(live: LiveInfo<'_>) -> Value {
    json!({
        "snapshot_ns": live.snapshot_ns,
        "check": live.check.map(check_json),
        "snapshot_only": SNAPSHOT_ONLY.map(TcpState::name),
    })
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
        "live": frame.live.map(live_json),
    });
    serde_json::to_writer(&mut *out, &value)?;
    out.write_all(b"\n")
}
