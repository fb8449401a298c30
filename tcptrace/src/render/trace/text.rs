//! `tcptrace trace` as a table, one line per transition, like libbpf-tools' tcpstates.
//!
//! Two layouts. The default fits an 80-column terminal for IPv4: the address and command columns
//! start at the width of what is usually shown and grow to the widest value seen so far (never
//! shrink, so a column moves at most a few times, and the header is repeated when one does, so
//! that the lines below a header are aligned with it), the time in the old state is written with a
//! unit that fits (`41.5us`, `2.03s`, `5m12s`), and the time of day is shown only when asked
//! (`-T`), as in bcc's tools. The wide layout (`-w`) has fixed columns wide enough for any IPv6
//! address, the full command name, the time of day to the microsecond and the time in the old
//! state in milliseconds, as tcpstates prints it: lines that never move, for files and `grep`.

use std::io::{self, Write};

use crate::{
    core::{clock::WallClock, event::Transition},
    render::{endpoint, units},
};

/// Which columns, and how wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// 80 columns for IPv4; `time` adds the time of day (to the millisecond).
    Narrow { time: bool },
    /// Fixed widths; `ipv4_only` narrows the address columns to IPv4's.
    Wide { ipv4_only: bool },
}

/// Widths of the wide layout's address columns: `[ffff:...:ffff]:65535` is 47 characters.
const WIDE_ADDRESS: usize = 47;
const WIDE_IPV4_ADDRESS: usize = 21;
/// Starting widths of the narrow layout's growing columns: a 5-digit pid, a 9-letter command,
/// `127.0.0.1:40000`. With the fixed ones they make 79 columns, so that one address of 16
/// characters (`10.0.12.34:54321`) still fits 80.
const NARROW_PID: usize = 5;
const NARROW_COMM: usize = 9;
const NARROW_ADDRESS: usize = 15;
/// The longest state name, `ESTABLISHED`.
const STATE: usize = 11;
/// `12.3ms`, `5m12s`, `123h59m`: a duration from `units::duration` fits in 7.
const NARROW_HELD: usize = 7;
/// Enough for the largest pid (`pid_max` is at most 4194304).
const WIDE_PID: usize = 7;

pub struct TraceText {
    clock: WallClock,
    layout: Layout,
    pid: usize,
    comm: usize,
    local: usize,
    remote: usize,
}

impl TraceText {
    pub fn new(clock: WallClock, layout: Layout) -> Self {
        let (pid, comm, address) = match layout {
            Layout::Narrow { .. } => (NARROW_PID, NARROW_COMM, NARROW_ADDRESS),
            Layout::Wide { ipv4_only: true } => (WIDE_PID, 16, WIDE_IPV4_ADDRESS),
            Layout::Wide { ipv4_only: false } => (WIDE_PID, 16, WIDE_ADDRESS),
        };
        Self {
            clock,
            layout,
            pid,
            comm,
            local: address,
            remote: address,
        }
    }

    pub fn header(&self, out: &mut impl Write) -> io::Result<()> {
        match self.layout {
            Layout::Narrow { time } => {
                if time {
                    write!(out, "{:<12} ", "TIME")?;
                }
                writeln!(
                    out,
                    "{:>p$} {:<c$} {:<l$} {:<r$} {:<STATE$} {:<STATE$} {:>NARROW_HELD$}",
                    "PID",
                    "COMM",
                    "LOCAL",
                    "REMOTE",
                    "OLD",
                    "NEW",
                    "IN_OLD",
                    p = self.pid,
                    c = self.comm,
                    l = self.local,
                    r = self.remote,
                )
            }
            Layout::Wide { .. } => writeln!(
                out,
                "{:<15} {:>p$} {:<c$} {:<w$} {:<w$} {:>STATE$}    {:<STATE$} {:>10}",
                "TIME",
                "PID",
                "COMM",
                "LOCAL",
                "REMOTE",
                "OLD",
                "NEW",
                "MS",
                p = self.pid,
                c = self.comm,
                w = self.local,
            ),
        }
    }

    pub fn line(&mut self, out: &mut impl Write, t: &Transition) -> io::Result<()> {
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
        let local = endpoint(&t.laddr, t.lport);
        let remote = endpoint(&t.raddr, t.rport);
        match self.layout {
            Layout::Narrow { time } => {
                let widths = (self.pid, self.comm, self.local, self.remote);
                self.pid = self.pid.max(pid.len());
                self.comm = self.comm.max(comm.chars().count());
                self.local = self.local.max(local.len());
                self.remote = self.remote.max(remote.len());
                if widths != (self.pid, self.comm, self.local, self.remote) {
                    self.header(out)?;
                }
                if time {
                    // The time of day to the millisecond: `12:34:56.789`.
                    let mut of_day = self.clock.time_of_day(t.ts_ns);
                    of_day.truncate(12);
                    write!(out, "{of_day} ")?;
                }
                let held = t
                    .time_in_from_ns
                    .map_or_else(|| "-".to_owned(), units::duration);
                writeln!(
                    out,
                    "{pid:>p$} {comm:<c$} {local:<l$} {remote:<r$} {:<STATE$} {:<STATE$} {held:>NARROW_HELD$}",
                    t.from,
                    t.to,
                    p = self.pid,
                    c = self.comm,
                    l = self.local,
                    r = self.remote,
                )
            }
            Layout::Wide { .. } => {
                let ms = t
                    .time_in_from_ns
                    .map_or_else(|| "-".to_owned(), |ns| format!("{:.3}", ns as f64 / 1e6));
                writeln!(
                    out,
                    "{:<15} {pid:>p$} {comm:<c$} {local:<w$} {remote:<w$} {:>STATE$} -> {:<STATE$} {ms:>10}",
                    self.clock.time_of_day(t.ts_ns),
                    t.from,
                    t.to,
                    p = self.pid,
                    c = self.comm,
                    w = self.local,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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

    fn render(layout: Layout, transitions: &[Transition]) -> String {
        let clock = WallClock {
            mono_to_unix_ns: 0,
            utc_offset_s: 0,
        };
        let mut printer = TraceText::new(clock, layout);
        let mut out = Vec::new();
        printer.header(&mut out).unwrap();
        for t in transitions {
            printer.line(&mut out, t).unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    const NARROW: Layout = Layout::Narrow { time: false };

    #[test]
    fn the_narrow_table_fits_80_columns_for_addresses_of_16_characters() {
        let server = Transition {
            pid: Some(31_337),
            comm: "postgres".into(),
            laddr: IpAddr::V4(Ipv4Addr::new(10, 0, 12, 34)),
            lport: 5432,
            raddr: IpAddr::V4(Ipv4Addr::new(10, 0, 12, 35)),
            rport: 54321,
            time_in_from_ns: Some(7_200_000_000_000),
            ..Transition::fixture(1, 2, TcpState::Established, TcpState::CloseWait)
        };
        let text = render(NARROW, &[transition(), server]);
        // The remote address of 16 characters widens its column: the header is repeated.
        assert_eq!(
            text,
            "  PID COMM      LOCAL           REMOTE          OLD         NEW          IN_OLD\n\
             \x201234 curl      127.0.0.1:40000 127.0.0.1:8080  SYN_SENT    ESTABLISHED  41.5us\n\
             \x20 PID COMM      LOCAL           REMOTE           OLD         NEW          IN_OLD\n\
             31337 postgres  10.0.12.34:5432 10.0.12.35:54321 ESTABLISHED CLOSE_WAIT    2h00m\n"
        );
        for line in text.lines() {
            assert!(line.len() <= 80, "{} columns: {line}", line.len());
        }
    }

    #[test]
    fn narrow_columns_grow_to_the_widest_value_and_stay_under_a_new_header() {
        let long = Transition {
            comm: "kworker/u4:2".into(),
            laddr: IpAddr::V4(Ipv4Addr::new(255, 255, 255, 255)),
            lport: 65535,
            ..transition()
        };
        let text = render(NARROW, &[long, transition()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[1].starts_with("  PID COMM         LOCAL  "), "{text}");
        // The short line after the long one keeps its columns, under the repeated header.
        assert_eq!(lines[1].len(), lines[2].len(), "{text}");
        assert_eq!(lines[2].len(), lines[3].len(), "{text}");
        assert!(
            lines[3].contains(" curl         127.0.0.1:40000       127.0.0.1"),
            "{text}"
        );
        // The pid column grows too, right-aligned.
        let big = Transition {
            pid: Some(4_194_304),
            ..transition()
        };
        let text = render(NARROW, &[big, transition()]);
        assert!(
            text.lines().nth(3).unwrap().starts_with("   1234 curl "),
            "{text}"
        );
    }

    #[test]
    fn the_time_of_day_is_there_when_asked_to_the_millisecond() {
        let text = render(Layout::Narrow { time: true }, &[transition()]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("TIME           PID "), "{text}");
        assert!(lines[1].starts_with("00:00:01.000  1234 curl "), "{text}");
    }

    #[test]
    fn wide_ipv4_table_is_tcpstates_like_with_fixed_columns() {
        assert_eq!(
            render(Layout::Wide { ipv4_only: true }, &[transition()]),
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
        let text = render(NARROW, &[t]);
        let line = text.lines().last().unwrap();
        assert!(line.starts_with("1234+4 curl "), "{line}");
    }

    #[test]
    fn unknown_owner_and_time_and_ipv6_width() {
        let mut t = transition();
        t.pid = None;
        t.comm = Comm::default();
        t.time_in_from_ns = None;
        t.family = Family::Inet6;
        t.laddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 2, 3, 4, 5, 6, 7));
        for layout in [NARROW, Layout::Wide { ipv4_only: false }] {
            let text = render(layout, std::slice::from_ref(&t));
            let line = text.lines().last().unwrap();
            assert!(line.contains(" - - "), "{line}");
            assert!(line.contains("[fd00:1:2:3:4:5:6:7]:40000"), "{line}");
            assert!(line.ends_with(" -"), "{line}");
        }
        let wide = render(Layout::Wide { ipv4_only: false }, &[t]);
        let lines: Vec<&str> = wide.lines().collect();
        assert_eq!(lines[0].len(), lines[1].len());
    }
}
