//! `tcptrace states --json`: one object per snapshot, every state present, typed findings.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::{
    census::{
        CloseWaitAge, Counted, Finding, Holder, Window,
        counts::Counts,
        live::{Check, SNAPSHOT_ONLY},
    },
    core::state::TcpState,
    os::owners::Owner,
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

fn owners_json(owners: &[Owner]) -> Value {
    owners
        .iter()
        .map(|o| json!({"pid": o.pid, "comm": o.comm}))
        .collect()
}

fn counted_json(counted: &Counted) -> Value {
    let c = &counted.counters;
    let (window, window_s) = match counted.window {
        Window::SinceBoot => ("boot", None),
        Window::Between { ns } => ("snapshots", Some(ns as f64 / 1e9)),
    };
    json!({
        "window": window,
        "window_s": window_s,
        "listen_overflows": c.listen_overflows,
        "listen_drops": c.listen_drops,
        "syncookies_sent": c.syncookies_sent,
        "syncookies_recv": c.syncookies_recv,
        "syncookies_failed": c.syncookies_failed,
        "req_q_full_do_cookies": c.req_q_full_do_cookies,
        "req_q_full_drop": c.req_q_full_drop,
    })
}

fn close_wait_json(
    holder: &Holder,
    count: u64,
    age: Option<&CloseWaitAge>,
    threshold_ns: u64,
) -> Value {
    let threshold_s = threshold_ns as f64 / 1e9;
    let (kind, pid, comm, listener, holders) = match holder {
        Holder::Process { pid, comm } => ("process", Some(*pid), Some(comm.clone()), None, None),
        Holder::NotAccepted { listener, holders } => (
            "not_accepted",
            None,
            None,
            listener.map(|l| l.to_string()),
            Some(owners_json(holders)),
        ),
        Holder::Unknown { .. } => ("unknown", None, None, None, None),
    };
    let age = age.map(|a| {
        json!({
            "timed": a.timed,
            "oldest_s": a.oldest_ns as f64 / 1e9,
            "oldest_exact": a.oldest_source.exact(),
            "oldest_source": a.oldest_source.name(),
            "old": a.old,
            "old_threshold_s": threshold_s,
        })
    });
    json!({
        "kind": "close_wait", "holder": kind, "pid": pid, "comm": comm, "listener": listener,
        "holders": holders, "count": count, "age": age, "old_threshold_s": threshold_s,
    })
}

fn finding_json(finding: &Finding) -> Value {
    let mut value = match finding {
        Finding::CloseWait {
            holder,
            count,
            age,
            threshold_ns,
        } => close_wait_json(holder, *count, age.as_ref(), *threshold_ns),
        Finding::AcceptQueue(queue) => json!({
            "kind": "accept_queue",
            "laddr": queue.listener.ip().to_string(),
            "lport": queue.listener.port(),
            "holders": owners_json(&queue.holders),
            "queue": queue.queue,
            "backlog": queue.backlog,
            "full": queue.is_full(),
            "sharing": queue.sharing,
            "waiting": {
                "ESTABLISHED": queue.waiting_established,
                "CLOSE_WAIT": queue.waiting_close_wait,
            },
            "counters": queue.overflows.as_ref().map(counted_json),
        }),
        Finding::ListenOverflows(counted) => {
            json!({"kind": "listen_overflows", "counters": counted_json(counted)})
        }
        Finding::SynCookies { counted, sysctl } => json!({
            "kind": "syn_cookies", "tcp_syncookies": sysctl, "counters": counted_json(counted),
        }),
        Finding::TimeWaitPorts {
            total,
            local,
            remote,
            count,
            range,
            reuse,
        } => json!({
            "kind": "time_wait_ports", "total": total, "laddr": local.to_string(),
            "raddr": remote.ip().to_string(), "rport": remote.port(), "count": count,
            "port_range": [range.low, range.high],
            "tcp_tw_reuse": reuse.sysctl, "tcp_timestamps": reuse.timestamps,
            "tcp_tw_reuse_delay_ms": reuse.delay_ms, "loopback": reuse.loopback,
            "reuse_applies": reuse.applies(),
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
            let verdict = match s.difference() {
                0 if check.verified() => "agrees",
                0 => "unverified",
                _ => "differs",
            };
            let mut value = json!({
                "verdict": verdict, "stream": s.stream(), "min": s.min, "max": s.max,
                "snapshot": s.snapshot, "difference": s.difference(),
            });
            if s.state == TcpState::TimeWait {
                value["unexplained"] = json!(s.unexplained);
            }
            (s.state.name().to_owned(), value)
        })
        .collect();
    json!({
        "agrees": check.agrees(),
        "verified": check.verified(),
        "unchecked": check.unchecked,
        "states": states,
        "transitions": check.transitions,
        "during_snapshot": check.during_snapshot,
        "moved_during_snapshots": {
            "resolved": check.resolved, "uncertain": check.uncertain,
            "conflicting": check.conflicting,
        },
        "gaps": check.gaps,
        "handovers": check.handovers,
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
        "netns": census.kernel.and_then(|k| k.netns),
        "live": frame.live.map(live_json),
    });
    serde_json::to_writer(&mut *out, &value)?;
    out.write_all(b"\n")
}
