//! The sysctls the census weighs its findings against, read from the caller's network namespace.

use std::fs;

/// The local port range ephemeral ports come from (`net.ipv4.ip_local_port_range`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub low: u16,
    pub high: u16,
}

impl PortRange {
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split_whitespace().map(str::parse::<u16>);
        let (Some(Ok(low)), Some(Ok(high)), None) = (parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        (low <= high).then_some(Self { low, high })
    }

    pub fn size(&self) -> u32 {
        u32::from(self.high) - u32::from(self.low) + 1
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.low..=self.high).contains(&port)
    }
}

/// The TCP sysctls the findings explain themselves by, of the caller's network namespace
/// (`net.ipv4.*` files under /proc/sys answer for the namespace of the process reading them).
/// `None` where the file is missing or unreadable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSysctls {
    /// `net.ipv4.tcp_syncookies`: 0 never, 1 when a SYN queue is full, 2 always.
    pub syncookies: Option<u8>,
    /// `net.ipv4.tcp_tw_reuse`: 0 never, 1 always, 2 loopback only (the default since 4.19).
    pub tw_reuse: Option<u8>,
    /// `net.ipv4.tcp_tw_reuse_delay` (ms; in 6.18, not in 6.1): how long a TIME_WAIT socket
    /// stays unavailable to reuse; without it, reuse waits for its last timestamp to be from an
    /// earlier second (`tcp_twsk_unique()`).
    pub tw_reuse_delay_ms: Option<u32>,
    /// `net.ipv4.tcp_timestamps`: reuse needs them (0 turns them off).
    pub timestamps: Option<u8>,
}

fn read_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

/// The TCP sysctls of this network namespace.
pub fn tcp_sysctls() -> TcpSysctls {
    TcpSysctls {
        syncookies: read_number("tcp_syncookies"),
        tw_reuse: read_number("tcp_tw_reuse"),
        tw_reuse_delay_ms: read_number("tcp_tw_reuse_delay"),
        timestamps: read_number("tcp_timestamps"),
    }
}

/// The ephemeral port range of this network namespace; `None` when unreadable.
pub fn port_range() -> Option<PortRange> {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| PortRange::parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_namespace() {
        // Every kernel tcptrace supports has these three; the delay is newer than 6.1.
        let sysctls = tcp_sysctls();
        assert!(sysctls.syncookies.is_some_and(|v| v <= 2), "{sysctls:?}");
        assert!(sysctls.tw_reuse.is_some_and(|v| v <= 2), "{sysctls:?}");
        assert!(sysctls.timestamps.is_some(), "{sysctls:?}");
        assert_eq!(read_number::<u8>("no_such_sysctl"), None);
    }
}
