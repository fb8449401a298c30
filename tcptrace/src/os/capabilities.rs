//! Giving up the capabilities that only loading and attaching the probe needs, for a
//! long-running tcptrace (the exporter) that keeps reading other processes' /proc entries.
//!
//! Capabilities belong to a thread, not to the process: capset(2) changes the calling thread's
//! sets alone, and a new thread starts with its creator's. So each thread that starts before
//! the probe is attached drops for itself, and [`threads_holding_more`] finds any thread that
//! did not, to be said rather than assumed.

use std::{fs, io};

use caps::{CapSet, Capability, CapsHashSet};

/// What a thread keeps after the attach: reading `/proc/PID/fd` and `/proc/PID/ns/net` of
/// other users' processes (the owners of sockets, the namespaces of processes).
pub const AFTER_ATTACH: [Capability; 2] =
    [Capability::CAP_SYS_PTRACE, Capability::CAP_DAC_READ_SEARCH];

/// Capabilities that may read the probe's maps on kernels whose bpf(2) still refuses an
/// unprivileged map lookup (before 5.19, with `kernel.unprivileged_bpf_disabled`).
pub const MAP_ACCESS: [Capability; 2] = [Capability::CAP_BPF, Capability::CAP_SYS_ADMIN];

fn error(what: &str, err: caps::errors::CapsError) -> io::Error {
    io::Error::other(format!("{what}: {err}"))
}

/// Whether the calling thread's effective set holds `cap`; `false` when it cannot be read.
pub fn holds(cap: Capability) -> bool {
    caps::has_cap(None, CapSet::Effective, cap).unwrap_or(false)
}

/// The calling thread's permitted set.
pub fn permitted() -> io::Result<CapsHashSet> {
    caps::read(None, CapSet::Permitted).map_err(|err| error("reading the capabilities", err))
}

/// Lowers the calling thread's effective set to those of `keep` it holds, leaving the permitted
/// set as it is: the others can be raised again by [`restore_effective`].
pub fn lower_effective(keep: &[Capability]) -> io::Result<CapsHashSet> {
    let before = caps::read(None, CapSet::Effective)
        .map_err(|err| error("reading the capabilities", err))?;
    let lowered = before
        .iter()
        .copied()
        .filter(|cap| keep.contains(cap))
        .collect();
    caps::set(None, CapSet::Effective, &lowered)
        .map_err(|err| error("lowering the capabilities", err))?;
    Ok(before)
}

/// Raises the calling thread's effective set back to `effective` (within its permitted set).
pub fn restore_effective(effective: &CapsHashSet) -> io::Result<()> {
    caps::set(None, CapSet::Effective, effective)
        .map_err(|err| error("raising the capabilities again", err))
}

/// What [`keep_only`] left and took.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Kept, sorted by number.
    pub kept: Vec<Capability>,
    /// Given up, sorted by number.
    pub dropped: Vec<Capability>,
    /// Whether the bounding set was lowered too (that needs CAP_SETPCAP, which a service
    /// given only what it needs does not have: its bounding set is its unit's then).
    pub bounding: bool,
}

/// Makes the calling thread hold those of `keep` it holds now and nothing else: effective and
/// permitted sets, an empty inheritable and ambient set, and the bounding set too where the
/// thread may lower it. New threads it starts inherit the result.
pub fn keep_only(keep: &[Capability]) -> io::Result<Dropped> {
    let permitted = permitted()?;
    let kept_set: CapsHashSet = permitted
        .iter()
        .copied()
        .filter(|cap| keep.contains(cap))
        .collect();
    // The bounding set first: lowering it takes CAP_SETPCAP, which the next steps give up.
    let bounding = caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)
        .map_err(|err| error("reading the capabilities", err))?;
    if bounding {
        let held = caps::read(None, CapSet::Bounding)
            .map_err(|err| error("reading the bounding set", err))?;
        for cap in held.iter().filter(|cap| !keep.contains(cap)) {
            caps::drop(None, CapSet::Bounding, *cap)
                .map_err(|err| error("lowering the bounding set", err))?;
        }
    }
    // The ambient set must lie within the permitted one: cleared before that shrinks.
    caps::clear(None, CapSet::Ambient).map_err(|err| error("clearing the ambient set", err))?;
    caps::clear(None, CapSet::Inheritable)
        .map_err(|err| error("clearing the inheritable set", err))?;
    // Effective before permitted: the effective set must always lie within the permitted.
    caps::set(None, CapSet::Effective, &kept_set)
        .map_err(|err| error("lowering the capabilities", err))?;
    caps::set(None, CapSet::Permitted, &kept_set)
        .map_err(|err| error("giving up the capabilities", err))?;
    Ok(Dropped {
        kept: sorted(kept_set.iter().copied()),
        dropped: sorted(permitted.difference(&kept_set).copied()),
        bounding,
    })
}

fn sorted(caps: impl Iterator<Item = Capability>) -> Vec<Capability> {
    let mut caps: Vec<_> = caps.collect();
    caps.sort_by_key(|cap| cap.index());
    caps
}

/// Threads of this process whose permitted set holds more than `keep`: their names.
pub fn threads_holding_more(keep: &[Capability]) -> io::Result<Vec<String>> {
    let allowed = keep.iter().fold(0u64, |mask, cap| mask | cap.bitmask());
    let mut holding = Vec::new();
    for task in fs::read_dir("/proc/self/task")? {
        let task = task?.path();
        // A thread that ended since the listing holds nothing.
        let Ok(status) = fs::read_to_string(task.join("status")) else {
            continue;
        };
        let Some(permitted) = status_field(&status, "CapPrm:") else {
            continue;
        };
        if permitted & !allowed != 0 {
            let name = status_text(&status, "Name:").unwrap_or("?");
            holding.push(format!(
                "{name} ({})",
                names(permitted & !allowed).join(", ")
            ));
        }
    }
    Ok(holding)
}

fn status_text<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .map(str::trim)
}

/// A hexadecimal capability mask of `/proc/PID/status`.
fn status_field(status: &str, key: &str) -> Option<u64> {
    u64::from_str_radix(status_text(status, key)?, 16).ok()
}

/// The names of the capabilities in `mask`, by number.
pub fn names(mask: u64) -> Vec<String> {
    let known = caps::all();
    (0..64u8)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| {
            known
                .iter()
                .find(|cap| cap.index() == bit)
                .map_or_else(|| format!("capability {bit}"), Capability::to_string)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_known_and_unknown_capabilities() {
        let mask = Capability::CAP_SYS_PTRACE.bitmask() | Capability::CAP_BPF.bitmask() | 1 << 63;
        assert_eq!(
            names(mask),
            ["CAP_SYS_PTRACE", "CAP_BPF", "capability 63"].map(str::to_owned)
        );
        assert!(names(0).is_empty());
    }

    /// On a thread of its own (capabilities are a thread's): the test harness's are untouched.
    #[test]
    fn a_thread_keeps_what_it_is_told_and_can_lower_its_effective_set_for_a_while() {
        if !permitted().unwrap().contains(&Capability::CAP_SYS_ADMIN) {
            // CI runs as root: there the test must run.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "not root in CI: nothing to give up"
            );
            eprintln!("SKIPPED: not root, nothing to give up");
            return;
        }
        assert!(holds(Capability::CAP_SYS_ADMIN));
        std::thread::spawn(|| {
            let before = lower_effective(&AFTER_ATTACH).unwrap();
            assert!(before.contains(&Capability::CAP_BPF));
            let effective = caps::read(None, CapSet::Effective).unwrap();
            assert_eq!(effective, AFTER_ATTACH.into_iter().collect());
            assert!(permitted().unwrap().contains(&Capability::CAP_BPF));
            restore_effective(&before).unwrap();
            assert!(caps::has_cap(None, CapSet::Effective, Capability::CAP_BPF).unwrap());

            let dropped = keep_only(&AFTER_ATTACH).unwrap();
            assert_eq!(
                dropped.kept,
                [Capability::CAP_DAC_READ_SEARCH, Capability::CAP_SYS_PTRACE]
            );
            assert!(dropped.dropped.contains(&Capability::CAP_BPF));
            assert!(dropped.bounding);
            let status = fs::read_to_string("/proc/thread-self/status").unwrap();
            let allowed =
                Capability::CAP_SYS_PTRACE.bitmask() | Capability::CAP_DAC_READ_SEARCH.bitmask();
            for key in ["CapPrm:", "CapEff:", "CapBnd:"] {
                assert_eq!(status_field(&status, key), Some(allowed), "{key} {status}");
            }
            assert_eq!(status_field(&status, "CapAmb:"), Some(0));
            // Gone for good: the effective set cannot be raised past the permitted one.
            assert!(restore_effective(&before).is_err());
        })
        .join()
        .unwrap();
        assert!(caps::has_cap(None, CapSet::Effective, Capability::CAP_BPF).unwrap());
    }

    #[test]
    fn reads_the_masks_of_a_status_file() {
        let status = "Name:\ttcptrace-http\nCapInh:\t0000000000000000\nCapPrm:\t0000000000080004\n";
        assert_eq!(status_text(status, "Name:"), Some("tcptrace-http"));
        let allowed = AFTER_ATTACH
            .iter()
            .fold(0, |mask, cap| mask | cap.bitmask());
        assert_eq!(status_field(status, "CapPrm:"), Some(allowed));
        assert_eq!(status_field(status, "CapEff:"), None);
    }
}
