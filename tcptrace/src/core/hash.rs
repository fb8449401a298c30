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
}
