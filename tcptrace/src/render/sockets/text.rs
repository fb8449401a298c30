//! `tcptrace sockets` as text: a listing in `netstat -tanpo`'s layout.

use std::io::{self, Write};

use crate::render::endpoint;
use crate::{
    core::event::Family,
    os::{
        diag::{SocketEntry, Timer},
        owners::Owner,
    },
};

/// netstat's Timer column: `kind (seconds/retransmissions/probes)`, net-tools netstat.c
/// tcp_do_one. The seconds are the time until the timer fires, in the hundredths of a second
/// /proc/net/tcp reports (USER_HZ), truncated as the kernel's jiffies_delta_to_clock_t does.
pub fn timer(socket: &SocketEntry) -> String {
    let (retransmits, probes) = (socket.retransmits(), socket.probes());
    if socket.timer == Timer::Off {
        return format!("off (0.00/{retransmits}/{probes})");
    }
    let hundredths = socket.expires_ms / 10;
    format!(
        "{} ({}.{:02}/{retransmits}/{probes})",
        socket.timer.name(),
        hundredths / 100,
        hundredths % 100
    )
}

fn proto(family: Family) -> &'static str {
    match family {
        Family::Inet => "tcp",
        Family::Inet6 => "tcp6",
    }
}

/// netstat prints a listener's accept-queue length as Recv-Q and 0 as Send-Q; the backlog
/// limit inet_diag reports in its place is in the JSON output only.
pub fn send_q(socket: &SocketEntry) -> u32 {
    if socket.state == crate::core::state::TcpState::Listen {
        0
    } else {
        socket.send_q
    }
}

/// The foreign address as netstat writes it: a listener's unspecified peer is `0.0.0.0:*`.
fn foreign(socket: &SocketEntry) -> String {
    let (ip, port) = (socket.remote.ip(), socket.remote.port());
    if port == 0 && ip.is_unspecified() {
        match ip {
            std::net::IpAddr::V4(v4) => format!("{v4}:*"),
            std::net::IpAddr::V6(v6) => format!("[{v6}]:*"),
        }
    } else {
        endpoint(&ip, port)
    }
}

/// The netstat-style table.
pub struct SocketsText {
    pub timers: bool,
}

impl SocketsText {
    pub fn header(&self, out: &mut impl Write) -> io::Result<()> {
        write!(
            out,
            "Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name    "
        )?;
        if self.timers {
            write!(out, " Timer")?;
        }
        writeln!(out)
    }

    pub fn line(
        &self,
        out: &mut impl Write,
        socket: &SocketEntry,
        owner: Option<&Owner>,
    ) -> io::Result<()> {
        let program = owner.map_or_else(|| "-".to_owned(), |o| format!("{}/{}", o.pid, o.comm));
        let line = format!(
            "{:<4}  {:>6} {:>6} {:<23} {:<23} {:<11} {:<20}",
            proto(socket.family),
            socket.recv_q,
            send_q(socket),
            endpoint(&socket.local.ip(), socket.local.port()),
            foreign(socket),
            socket.shown_state().name(),
            program,
        );
        if self.timers {
            writeln!(out, "{line} {}", timer(socket))
        } else {
            writeln!(out, "{}", line.trim_end())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::sockets::json::json_line;
    use crate::{census::tests::sock, core::state::TcpState, os::diag::parse::TcpInfoCounters};

    fn timed(timer: Timer, expires_ms: u32, info: Option<(u8, u8)>) -> SocketEntry {
        SocketEntry {
            timer,
            expires_ms,
            info: info.map(|(retransmits, probes)| TcpInfoCounters {
                retransmits,
                probes,
                ..TcpInfoCounters::default()
            }),
            ..sock(TcpState::Established, "127.0.0.1:1", "127.0.0.1:2", 1)
        }
    }

    #[test]
    fn timers_in_netstat_format() {
        assert_eq!(
            timer(&timed(Timer::Keepalive, 576_479, Some((0, 0)))),
            "keepalive (576.47/0/0)"
        );
        assert_eq!(
            timer(&timed(Timer::On, 2_289, Some((5, 2)))),
            "on (2.28/5/2)"
        );
        assert_eq!(
            timer(&timed(Timer::TimeWait, 48_320, None)),
            "timewait (48.32/0/0)"
        );
        assert_eq!(timer(&timed(Timer::Off, 0, Some((0, 0)))), "off (0.00/0/0)");
        assert_eq!(
            timer(&timed(Timer::Probe, 5, Some((0, 3)))),
            "probe (0.00/0/3)"
        );
        assert_eq!(
            timer(&timed(Timer::Unknown(7), 1_000, None)),
            "unkn-7 (1.00/0/0)"
        );
    }

    #[test]
    fn the_table_lines_up_like_netstat() {
        let text = SocketsText { timers: true };
        let mut out = Vec::new();
        text.header(&mut out).unwrap();
        let mut listener = sock(TcpState::Listen, "0.0.0.0:22", "0.0.0.0:0", 7);
        listener.send_q = 128;
        let owner = Owner {
            pid: 812,
            comm: "sshd".into(),
        };
        text.line(&mut out, &listener, Some(&owner)).unwrap();
        let mut est = timed(Timer::Keepalive, 7_199_990, Some((0, 0)));
        est.family = Family::Inet6;
        est.local = "[::1]:22".parse().unwrap();
        est.remote = "[::1]:51234".parse().unwrap();
        est.send_q = 36;
        text.line(&mut out, &est, None).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "\
Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name     Timer
tcp        0      0 0.0.0.0:22              0.0.0.0:*               LISTEN      812/sshd             off (0.00/0/0)
tcp6       0     36 [::1]:22                [::1]:51234             ESTABLISHED -                    keepalive (7199.99/0/0)
"
        );
        let mut out = Vec::new();
        SocketsText { timers: false }
            .line(&mut out, &listener, Some(&owner))
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "tcp        0      0 0.0.0.0:22              0.0.0.0:*               LISTEN      812/sshd\n"
        );
    }

    #[test]
    fn unspecified_peers_are_stars() {
        let v4 = sock(TcpState::Listen, "0.0.0.0:22", "0.0.0.0:0", 7);
        assert_eq!(foreign(&v4), "0.0.0.0:*");
        let mut v6 = v4.clone();
        v6.remote = "[::]:0".parse().unwrap();
        assert_eq!(foreign(&v6), "[::]:*");
        let mut connected = v4;
        connected.remote = "10.0.0.1:0".parse().unwrap();
        assert_eq!(foreign(&connected), "10.0.0.1:0");
    }

    #[test]
    fn json_lines_carry_every_field() {
        let mut listener = sock(TcpState::Listen, "0.0.0.0:22", "0.0.0.0:0", 7);
        listener.send_q = 128;
        let owner = Owner {
            pid: 812,
            comm: "sshd".into(),
        };
        let mut out = Vec::new();
        json_line(
            &mut out,
            &listener,
            Some(&owner),
            "2026-12-01T11:42:03.123456Z",
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"type":"socket","time":"2026-12-01T11:42:03.123456Z","family":"inet","state":"LISTEN","laddr":"0.0.0.0","lport":22,"raddr":"0.0.0.0","rport":0,"recv_q":0,"send_q":0,"backlog":128,"pid":812,"comm":"sshd","uid":0,"inode":7,"cookie":"0x0","timer":{"kind":"off","expires_ms":0,"retransmits":0,"probes":0}}
"#
        );
    }
}
