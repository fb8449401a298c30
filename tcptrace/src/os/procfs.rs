//! The kernel's own TCP counters (`Tcp:` of /proc/net/snmp, `TcpExt:` of /proc/net/netstat), for
//! the fate of request sockets that the tracepoint never sees and to check the stream against.
//! [`read`] reads the files; [`parse`] is pure, for tests.

use std::{fs, io};

use thiserror::Error;

use crate::core::counters::{ListenCounters, TcpCounters};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("no `{0}` header and values lines")]
    MissingSection(&'static str),
    #[error("`{section}` has {names} names but {values} values")]
    Mismatch {
        section: &'static str,
        names: usize,
        values: usize,
    },
    #[error("`{section} {name}` is missing")]
    MissingCounter {
        section: &'static str,
        name: &'static str,
    },
    #[error("`{section} {name}` is not a number: `{value}`")]
    BadValue {
        section: &'static str,
        name: &'static str,
        value: String,
    },
}

/// The `name value` pairs of one section: a line of names followed by a line of values, both
/// starting with `section:`.
fn section<'a>(
    text: &'a str,
    section: &'static str,
) -> Result<Vec<(&'a str, &'a str)>, ParseError> {
    let prefix = format!("{section}:");
    let mut lines = text
        .lines()
        .filter_map(|line| line.strip_prefix(prefix.as_str()));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return Err(ParseError::MissingSection(section));
    };
    let names: Vec<&str> = names.split_whitespace().collect();
    let values: Vec<&str> = values.split_whitespace().collect();
    if names.len() != values.len() {
        return Err(ParseError::Mismatch {
            section,
            names: names.len(),
            values: values.len(),
        });
    }
    Ok(names.into_iter().zip(values).collect())
}

/// The value of `name`; `required` ones must exist, the others count 0 on kernels without them.
fn value(
    pairs: &[(&str, &str)],
    section: &'static str,
    name: &'static str,
    required: bool,
) -> Result<u64, ParseError> {
    match pairs.iter().find(|(n, _)| *n == name) {
        Some((_, value)) => value.parse().map_err(|_| ParseError::BadValue {
            section,
            name,
            value: (*value).to_owned(),
        }),
        None if required => Err(ParseError::MissingCounter { section, name }),
        None => Ok(0),
    }
}

/// Parses the contents of /proc/net/snmp and /proc/net/netstat.
pub fn parse(snmp: &str, netstat: &str) -> Result<TcpCounters, ParseError> {
    let tcp = section(snmp, "Tcp")?;
    let ext = section(netstat, "TcpExt")?;
    let t = |name| value(&tcp, "Tcp", name, true);
    let e = |name| value(&ext, "TcpExt", name, false);
    Ok(TcpCounters {
        active_opens: t("ActiveOpens")?,
        passive_opens: t("PassiveOpens")?,
        estab_resets: t("EstabResets")?,
        embryonic_rsts: e("EmbryonicRsts")?,
        listen_overflows: e("ListenOverflows")?,
        listen_drops: e("ListenDrops")?,
        req_q_full_drop: e("TCPReqQFullDrop")?,
        req_q_full_do_cookies: e("TCPReqQFullDoCookies")?,
        syncookies_sent: e("SyncookiesSent")?,
        syn_retrans: e("TCPSynRetrans")?,
    })
}

/// Parses the listener and SYN-queue counters of /proc/net/netstat; counters a kernel lacks
/// count 0.
pub fn parse_listen(netstat: &str) -> Result<ListenCounters, ParseError> {
    let ext = section(netstat, "TcpExt")?;
    let e = |name| value(&ext, "TcpExt", name, false);
    Ok(ListenCounters {
        listen_overflows: e("ListenOverflows")?,
        listen_drops: e("ListenDrops")?,
        syncookies_sent: e("SyncookiesSent")?,
        syncookies_recv: e("SyncookiesRecv")?,
        syncookies_failed: e("SyncookiesFailed")?,
        req_q_full_do_cookies: e("TCPReqQFullDoCookies")?,
        req_q_full_drop: e("TCPReqQFullDrop")?,
    })
}

/// Reads the listener and SYN-queue counters of the calling process's network namespace.
pub fn read_listen() -> io::Result<ListenCounters> {
    let netstat = fs::read_to_string("/proc/net/netstat")?;
    parse_listen(&netstat).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
}

/// Reads the counters of the calling process's network namespace.
pub fn read() -> io::Result<TcpCounters> {
    let snmp = fs::read_to_string("/proc/net/snmp")?;
    let netstat = fs::read_to_string("/proc/net/netstat")?;
    parse(&snmp, &netstat).map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))
}

/// The inode of the calling process's network namespace, from `/proc/self/ns/net`
/// (`net:[4026531840]`).
pub fn own_netns() -> io::Result<u32> {
    let link = fs::read_link("/proc/self/ns/net")?;
    parse_netns_link(&link.to_string_lossy()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected /proc/self/ns/net link `{}`", link.display()),
        )
    })
}

fn parse_netns_link(link: &str) -> Option<u32> {
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNMP: &str = "\
Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 12345
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails EstabResets CurrEstab
Tcp: 1 200 120000 -1 1021 977 12 31 4
Udp: InDatagrams NoPorts
Udp: 1 2
";
    const NETSTAT: &str = "\
TcpExt: SyncookiesSent SyncookiesRecv EmbryonicRsts ListenOverflows ListenDrops TCPReqQFullDoCookies TCPReqQFullDrop TCPSynRetrans
TcpExt: 3 1 7 5 6 2 8 9
IpExt: InNoRoutes InTruncatedPkts
IpExt: 0 0
";

    #[test]
    fn parses_the_sections() {
        let c = parse(SNMP, NETSTAT).unwrap();
        assert_eq!(
            c,
            TcpCounters {
                active_opens: 1021,
                passive_opens: 977,
                estab_resets: 31,
                embryonic_rsts: 7,
                listen_overflows: 5,
                listen_drops: 6,
                req_q_full_drop: 8,
                req_q_full_do_cookies: 2,
                syncookies_sent: 3,
                syn_retrans: 9,
            }
        );
    }

    #[test]
    fn parses_the_listener_counters() {
        let netstat = "\
TcpExt: SyncookiesSent SyncookiesRecv SyncookiesFailed ListenOverflows ListenDrops TCPReqQFullDoCookies TCPReqQFullDrop
TcpExt: 3 1 4 5 6 2 8
";
        assert_eq!(
            parse_listen(netstat).unwrap(),
            ListenCounters {
                listen_overflows: 5,
                listen_drops: 6,
                syncookies_sent: 3,
                syncookies_recv: 1,
                syncookies_failed: 4,
                req_q_full_do_cookies: 2,
                req_q_full_drop: 8,
            }
        );
        let fewer = parse_listen("TcpExt: ListenOverflows\nTcpExt: 7\n").unwrap();
        assert_eq!((fewer.listen_overflows, fewer.syncookies_recv), (7, 0));
        assert_eq!(
            parse_listen("Ip: A\nIp: 1\n"),
            Err(ParseError::MissingSection("TcpExt"))
        );
        let later = ListenCounters {
            listen_overflows: 9,
            ..fewer
        };
        assert_eq!(later.since(&fewer).listen_overflows, 2);
        assert_eq!(fewer.since(&later).listen_overflows, 0);
        assert!(read_listen().is_ok());
    }

    #[test]
    fn missing_extended_counters_count_zero() {
        let netstat = "TcpExt: SyncookiesSent\nTcpExt: 4\n";
        let c = parse(SNMP, netstat).unwrap();
        assert_eq!(c.syncookies_sent, 4);
        assert_eq!(c.embryonic_rsts, 0);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(parse("", NETSTAT), Err(ParseError::MissingSection("Tcp")));
        assert_eq!(
            parse(SNMP, "TcpExt: A\n"),
            Err(ParseError::MissingSection("TcpExt"))
        );
        assert!(matches!(
            parse("Tcp: ActiveOpens PassiveOpens\nTcp: 1\n", NETSTAT),
            Err(ParseError::Mismatch { .. })
        ));
        assert!(matches!(
            parse("Tcp: ActiveOpens\nTcp: 1\n", NETSTAT),
            Err(ParseError::MissingCounter {
                name: "PassiveOpens",
                ..
            })
        ));
        assert!(matches!(
            parse(
                "Tcp: ActiveOpens PassiveOpens EstabResets\nTcp: 1 x 3\n",
                NETSTAT
            ),
            Err(ParseError::BadValue {
                name: "PassiveOpens",
                ..
            })
        ));
    }

    #[test]
    fn differences_never_underflow() {
        let a = parse(SNMP, NETSTAT).unwrap();
        let b = TcpCounters {
            active_opens: a.active_opens + 5,
            ..a
        };
        assert_eq!(b.since(&a).active_opens, 5);
        assert_eq!(b.since(&a).passive_opens, 0);
        assert_eq!(a.since(&b).active_opens, 0);
    }

    #[test]
    fn netns_links() {
        assert_eq!(parse_netns_link("net:[4026531840]"), Some(4026531840));
        assert_eq!(parse_netns_link("net:[x]"), None);
        assert_eq!(parse_netns_link("mnt:[1]"), None);
    }

    #[test]
    fn reads_this_machine() {
        // /proc is always there on Linux; the test only needs it to be readable and parseable.
        let counters = read().unwrap();
        let again = read().unwrap();
        assert!(again.active_opens >= counters.active_opens);
        assert!(own_netns().unwrap() > 0);
    }
}
