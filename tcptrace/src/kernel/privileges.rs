//! Whether this process may load and attach BPF tracing programs, checked up front so that the
//! user reads how to fix it rather than a raw EPERM.

use std::fs;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capability set, from `/proc/self/status`.
fn effective_capabilities() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    parse_cap_eff(&status)
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// True when the capabilities allow tracing: CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON.
fn can_trace(caps: u64) -> bool {
    let has = |cap: u32| caps & (1 << cap) != 0;
    has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))
}

/// `Err` with the message to show when this process cannot trace.
pub fn check() -> Result<(), String> {
    match effective_capabilities() {
        Some(caps) if can_trace(caps) => Ok(()),
        // Unknown (no procfs): let the kernel decide; a refusal is reported at load.
        None => Ok(()),
        Some(_) => Err(denied_message()),
    }
}

pub fn denied_message() -> String {
    "tcptrace needs root (or CAP_BPF and CAP_PERFMON) to load its kernel probe: run it with sudo"
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_split_capabilities_can_trace() {
        assert!(can_trace(0x000001ffffffffff));
        assert!(can_trace(1 << CAP_SYS_ADMIN));
        assert!(can_trace((1 << CAP_BPF) | (1 << CAP_PERFMON)));
        assert!(!can_trace(1 << CAP_BPF));
        assert!(!can_trace(0));
    }

    #[test]
    fn parses_the_status_line() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_cap_eff(status), Some(0x1ffffffffff));
        assert_eq!(parse_cap_eff("Name: x\n"), None);
    }
}
