//! The sysctls the census weighs its findings against.

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

/// The ephemeral port range of this network namespace; `None` when unreadable.
pub fn port_range() -> Option<PortRange> {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| PortRange::parse(&text))
}
