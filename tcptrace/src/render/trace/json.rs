//! `tcptrace trace --json`: one JSON object per line (JSON Lines).

use std::io::{self, Write};

use serde::Serialize;

use crate::core::{
    clock::WallClock,
    event::{CloseDetails, Transition},
    reset_reason::errno_name,
};

#[derive(Serialize)]
struct Line<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    time: String,
    ts_ns: u64,
    sk: String,
    pid: Option<u32>,
    comm: &'a str,
    /// Only when `pid` stands for several processes: `listener_holders` or `holders`.
    #[serde(skip_serializing_if = "Option::is_none")]
    owner_kind: Option<&'static str>,
    /// How many, with `owner_kind`.
    #[serde(skip_serializing_if = "Option::is_none")]
    holders: Option<u32>,
    family: &'static str,
    laddr: String,
    lport: u16,
    raddr: String,
    rport: u16,
    from: &'static str,
    to: &'static str,
    time_in_from_ns: Option<u64>,
    netns: u32,
    first_seen: bool,
    /// →CLOSE: what the kernel knew of the socket as it closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    close: Option<Close>,
}

/// The kernel's facts of a close, as `--json` shows them.
#[derive(Serialize)]
struct Close {
    /// The socket's error (`ETIMEDOUT`, `ECONNREFUSED`, …); null when none.
    error: Option<String>,
    /// The last soft error (an ICMP error); null when none.
    soft_error: Option<String>,
    /// Retransmission timeouts in a row (SYN retransmissions in SYN_SENT).
    retransmits: u8,
    /// Keepalive or zero-window probes unanswered.
    probes_out: u8,
    /// The owner had already closed the socket: a timer ended it.
    orphan: bool,
    keepalive: bool,
    user_timeout: bool,
}

impl From<&CloseDetails> for Close {
    fn from(d: &CloseDetails) -> Self {
        let errno = |e: u8| (e != 0).then(|| errno_name(e));
        Self {
            error: errno(d.err),
            soft_error: errno(d.err_soft),
            retransmits: d.retransmits,
            probes_out: d.probes_out,
            orphan: d.orphan,
            keepalive: d.keepalive,
            user_timeout: d.user_timeout,
        }
    }
}

/// One transition; `clock` gives its wall-clock `time`.
pub fn line(out: &mut impl Write, t: &Transition, clock: &WallClock) -> io::Result<()> {
    let line = Line {
        kind: "transition",
        time: clock.rfc3339(t.ts_ns),
        ts_ns: t.ts_ns,
        sk: format!("{:#x}", t.sk),
        pid: t.pid,
        comm: t.comm.as_str(),
        owner_kind: t.owner_kind.name(),
        holders: t.owner_kind.holders(),
        family: t.family.name(),
        laddr: t.laddr.to_string(),
        lport: t.lport,
        raddr: t.raddr.to_string(),
        rport: t.rport,
        from: t.from.name(),
        to: t.to.name(),
        time_in_from_ns: t.time_in_from_ns,
        netns: t.netns,
        first_seen: t.first_seen_midlife,
        close: t.close.as_ref().map(Close::from),
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{
        event::{Family, OwnerKind},
        state::TcpState,
    };

    #[test]
    fn one_object_per_line_with_the_documented_keys() {
        let t = Transition {
            family: Family::Inet6,
            laddr: "::1".parse().unwrap(),
            lport: 8080,
            rport: 40000,
            first_seen_midlife: true,
            ..Transition::fixture(
                0xffff_8880_0000_00ff,
                5,
                TcpState::Established,
                TcpState::CloseWait,
            )
        };
        let mut out = Vec::new();
        let clock = WallClock {
            mono_to_unix_ns: 1_700_000_000 * 1_000_000_000,
            utc_offset_s: 0,
        };
        line(&mut out, &t, &clock).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"type\":\"transition\",\"time\":\"2023-11-14T22:13:20.000000Z\",\"ts_ns\":5,\"sk\":\"0xffff8880000000ff\",\"pid\":null,\
             \"comm\":\"\",\"family\":\"inet6\",\"laddr\":\"::1\",\"lport\":8080,\
             \"raddr\":\"127.0.0.1\",\"rport\":40000,\"from\":\"ESTABLISHED\",\
             \"to\":\"CLOSE_WAIT\",\"time_in_from_ns\":null,\"netns\":0,\"first_seen\":true}\n"
        );
    }

    #[test]
    fn a_close_carries_the_kernel_s_facts_when_the_probe_read_them() {
        let t = Transition {
            close: Some(CloseDetails {
                err: 110,
                retransmits: 2,
                user_timeout: true,
                ..CloseDetails::default()
            }),
            ..Transition::fixture(1, 5, TcpState::SynSent, TcpState::Close)
        };
        let mut out = Vec::new();
        line(&mut out, &t, &WallClock::default()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with(
                "\"first_seen\":false,\"close\":{\"error\":\"ETIMEDOUT\",\"soft_error\":null,\
                 \"retransmits\":2,\"probes_out\":0,\"orphan\":false,\"keepalive\":false,\
                 \"user_timeout\":true}}\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn an_owner_standing_for_several_holders_says_so() {
        let t = Transition {
            pid: Some(812),
            comm: "nginx".into(),
            owner_kind: OwnerKind::ListenerHolders(5),
            ..Transition::fixture(1, 5, TcpState::Listen, TcpState::SynRecv)
        };
        let mut out = Vec::new();
        line(&mut out, &t, &WallClock::default()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                "\"pid\":812,\"comm\":\"nginx\",\"owner_kind\":\"listener_holders\",\"holders\":5,"
            ),
            "{text}"
        );
    }
}
