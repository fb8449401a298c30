//! Whether this process may load and attach BPF tracing programs, checked up front so that the
//! user reads how to fix it rather than a raw EPERM.

use caps::{CapSet, Capability};

/// The effective capability set of this thread, as a mask by capability number.
fn effective_capabilities() -> Option<u64> {
    let effective = caps::read(None, CapSet::Effective).ok()?;
    Some(effective.iter().fold(0, |mask, cap| mask | cap.bitmask()))
}

/// True when the capabilities allow tracing: CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON.
fn can_trace(mask: u64) -> bool {
    let has = |cap: Capability| mask & cap.bitmask() != 0;
    has(Capability::CAP_SYS_ADMIN) || (has(Capability::CAP_BPF) && has(Capability::CAP_PERFMON))
}

/// `Err` with the message to show when this process cannot trace.
pub fn check() -> Result<(), String> {
    match effective_capabilities() {
        Some(caps) if can_trace(caps) => Ok(()),
        // Unknown (capget refused): let the kernel decide; a refusal is reported at load.
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
        let bit = |cap: Capability| cap.bitmask();
        assert!(can_trace(0x000001ffffffffff));
        assert!(can_trace(bit(Capability::CAP_SYS_ADMIN)));
        assert!(can_trace(
            bit(Capability::CAP_BPF) | bit(Capability::CAP_PERFMON)
        ));
        assert!(!can_trace(bit(Capability::CAP_BPF)));
        assert!(!can_trace(0));
    }
}
