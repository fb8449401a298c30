//! Seeding the kernel's listener map with the owners of the listeners that predate tracing, so
//! that their children inherit an owner from their very first transition (LISTEN→SYN_RECV),
//! as those of listeners that start under tracing do.

use std::io;

use aya::maps::{HashMap, MapError};
use tcptrace_ebpf::{COMM_LEN, Owner, listener_key, names};

use crate::{core::seed::ListenerSeed, kernel::probe::Probe};

/// `BPF_NOEXIST`: insert only where the key is absent.
const BPF_NOEXIST: u64 = 1;

/// What became of the seeds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seeded {
    /// Written into the map.
    pub written: usize,
    /// Left alone: the probe recorded a listen() on that key since it attached, a fresher word.
    pub recorded_since: usize,
    /// Refused by the kernel (the map is full, say): those children carry no owner.
    pub failed: usize,
}

/// The map's value for a seed.
pub fn owner(seed: &ListenerSeed) -> Owner {
    let mut comm = [0u8; COMM_LEN];
    let name = seed.holders.comm.as_str().as_bytes();
    let len = name.len().min(COMM_LEN - 1);
    comm[..len].copy_from_slice(&name[..len]);
    Owner {
        comm,
        tgid: seed.holders.pid,
        holders: seed.holders.count,
    }
}

/// Writes the seeds into the attached probe's listener map, without overwriting an entry the
/// programs wrote since they attached.
pub fn seed(probe: &mut Probe, seeds: &[ListenerSeed]) -> io::Result<Seeded> {
    let map = probe.ebpf.map_mut(names::LISTENERS).ok_or_else(|| {
        io::Error::other(format!("the BPF object has no map {}", names::LISTENERS))
    })?;
    let mut listeners: HashMap<_, u64, Owner> = HashMap::try_from(map).map_err(io::Error::other)?;
    let mut seeded = Seeded::default();
    for seed in seeds {
        let key = listener_key(seed.netns, seed.port);
        match listeners.insert(key, owner(seed), BPF_NOEXIST) {
            Ok(()) => seeded.written += 1,
            Err(MapError::SyscallError(err))
                if err.io_error.raw_os_error() == Some(libc::EEXIST) =>
            {
                seeded.recorded_since += 1;
            }
            Err(err) => {
                if seeded.failed == 0 {
                    log::warn!(
                        "cannot seed the listener map ({err}): children of listeners that \
                         predate tracing carry no owner"
                    );
                }
                seeded.failed += 1;
            }
        }
    }
    Ok(seeded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::seed::Holders;

    #[test]
    fn a_seed_becomes_the_map_value_the_programs_copy() {
        let seed = ListenerSeed {
            netns: 4026531840,
            port: 80,
            holders: Holders {
                pid: 812,
                comm: "nginx".into(),
                count: 5,
            },
        };
        let value = owner(&seed);
        assert_eq!((value.tgid, value.holders), (812, 5));
        assert_eq!(&value.comm[..6], b"nginx\0");
        // A comm of 16 bytes keeps a NUL at the end, as the kernel's do.
        let long = ListenerSeed {
            holders: Holders {
                comm: "full-sixteen-chr".into(),
                ..seed.holders
            },
            ..seed
        };
        assert_eq!(&owner(&long).comm, b"full-sixteen-ch\0");
    }
}
