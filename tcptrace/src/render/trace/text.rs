//! `tcptrace trace` as a table, one line per transition, like libbpf-tools' tcpstates.

use std::io::{self, Write};

use crate::{
    core::{clock::WallClock, event::Transition},
    render::endpoint,
};

/// Widths of the address columns: `[ffff:...:ffff]:65535` is 47 characters.
const WIDE: usize = 47;
const NARROW: usize = 21;

pub struct TraceText {
    clock: WallClock,
    width: usize,
}

impl TraceText {
    /// `ipv4_only` narrows the address columns.
    pub fn new(clock: WallClock, ipv4_only: bool) -> Self {
        Self {
            clock,
            width: if ipv4_only { NARROW } else { WIDE },
        }
    }

    pub fn header(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(
            out,
            "{:<15} {:>7} {:<16} {:<w$} {:<w$} {:>11}    {:<11} {:>10}",
            "TIME",
            "PID",
            "COMM",
            "LOCAL",
            "REMOTE",
            "OLD",
            "NEW",
            "MS",
            w = self.width
        )
    }

    pub fn line(&self, out: &mut impl Write, t: &Transition) -> io::Result<()> {
        // `812+4`: pid 812 and 4 more processes hold the socket, or the listener it came from.
        let pid = match (t.pid, t.owner_kind.holders()) {
            (None, _) => "-".to_owned(),
            (Some(pid), None) => pid.to_string(),
            (Some(pid), Some(holders)) => format!("{pid}+{}", holders.saturating_sub(1)),
        };
        let comm = if t.comm.is_empty() {
            "-"
        } else {
            t.comm.as_str()
        };
        let ms = t
            .time_in_from_ns
            .map_or_else(|| "-".to_owned(), |ns| format!("{:.3}", ns as f64 / 1e6));
        writeln!(
            out,
            "{:<15} {:>7} {:<16} {:<w$} {:<w$} {:>11} -> {:<11} {:>10}",
            self.clock.time_of_day(t.ts_ns),
            pid,
            comm,
            endpoint(&t.laddr, t.lport),
            endpoint(&t.raddr, t.rport),
            t.from,
            t.to,
            ms,
            w = self.width
        )
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv6Addr};

    use super::*;
    use crate::core::{
        event::{Comm, Family, OwnerKind},
        state::TcpState,
    };

    fn transition() -> Transition {
        Transition {
            pid: Some(1234),
            comm: "curl".into(),
            lport: 40000,
            rport: 8080,
            time_in_from_ns: Some(41_500),
            ..Transition::fixture(
                0xffff_8880_0000_0001,
                1_000_000_000,
                TcpState::SynSent,
                TcpState::Established,
            )
        }
    }

    fn render(ipv4_only: bool, t: &Transition) -> String {
        let clock = WallClock {
            mono_to_unix_ns: 0,
            utc_offset_s: 0,
        };
        let printer = TraceText::new(clock, ipv4_only);
        let mut out = Vec::new();
        printer.header(&mut out).unwrap();
        printer.line(&mut out, t).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn ipv4_table() {
        assert_eq!(
            render(true, &transition()),
            "TIME                PID COMM             LOCAL                 REMOTE                        OLD    NEW                 MS\n\
             00:00:01.000000    1234 curl             127.0.0.1:40000       127.0.0.1:8080           SYN_SENT -> ESTABLISHED      0.042\n"
        );
    }

    #[test]
    fn an_owner_standing_for_the_holders_of_a_listener_shows_how_many() {
        let t = Transition {
            owner_kind: OwnerKind::ListenerHolders(5),
            ..transition()
        };
        let text = render(true, &t);
        let line = text.lines().nth(1).unwrap();
        assert!(line.contains("  1234+4 curl "), "{line}");
    }

    #[test]
    fn unknown_owner_and_time_and_ipv6_width() {
        let mut t = transition();
        t.pid = None;
        t.comm = Comm::default();
        t.time_in_from_ns = None;
        t.family = Family::Inet6;
        t.laddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 2, 3, 4, 5, 6, 7));
        let text = render(false, &t);
        let line = text.lines().nth(1).unwrap();
        assert!(line.contains("      - - "), "{line}");
        assert!(line.contains("[fd00:1:2:3:4:5:6:7]:40000"), "{line}");
        assert!(line.ends_with(" -"), "{line}");
        assert_eq!(text.lines().next().unwrap().len(), line.len());
    }
}
