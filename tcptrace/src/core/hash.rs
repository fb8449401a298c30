//! The hasher of the per-socket tables, keyed by kernel socket addresses.

use std::hash::{BuildHasherDefault, Hasher};

/// A multiplicative hash for `u64` keys. Socket addresses come from the kernel, not from an
/// adversary, so SipHash's flood resistance buys nothing and costs a third of the hot path.
#[derive(Default, Clone, Copy)]
pub struct U64Hasher(u64);

impl Hasher for U64Hasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.write_u64(self.0 ^ n as u64);
        self.write_u64(self.0 ^ (n >> 64) as u64);
    }

    // Small integers (ports, pids, namespace inodes, enum tags) as one word each, not a
    // multiplication per byte.
    fn write_u8(&mut self, n: u8) {
        self.write_u64(self.0 ^ u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.write_u64(self.0 ^ u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(self.0 ^ u64::from(n));
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(self.0 ^ n as u64);
    }

    fn write_u64(&mut self, n: u64) {
        // Fold the high half in: slab addresses differ in their middle bits.
        let x = (n ^ (n >> 29)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 32);
    }
}

pub type FastHash = BuildHasherDefault<U64Hasher>;

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn hasher_spreads_aligned_addresses() {
        let build = FastHash::default();
        let mut low_bits = std::collections::HashSet::new();
        for i in 0..1024u64 {
            low_bits.insert(build.hash_one(0xffff_8880_0000_0000 + i * 2048) & 0x3ff);
        }
        assert!(low_bits.len() > 500, "{}", low_bits.len());
    }

    #[test]
    fn hasher_spreads_small_integers_and_tuples() {
        let build = FastHash::default();
        let ports: std::collections::HashSet<u64> =
            (0..1024u16).map(|p| build.hash_one(p) & 0x3ff).collect();
        assert!(ports.len() > 500, "{}", ports.len());
        let pids: std::collections::HashSet<u64> = (0..1024u32)
            .map(|pid| build.hash_one((Some(pid), "nginx")) & 0x3ff)
            .collect();
        assert!(pids.len() > 500, "{}", pids.len());
    }
}
