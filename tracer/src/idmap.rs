//! Maps keyed by numbers the kernel hands out (thread ids, socket inodes,
//! ports): hashed with one multiply and rotate, not SipHash. SipHash guards
//! keys an attacker picks; these are counters the kernel picks, looked up
//! and inserted several times per trapped call (SipHash was 1-2 % of the
//! supervisor's time per connect, docs/PERFORMANCE.md, issue 11).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A HashMap keyed by kernel-chosen numbers.
pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// The Fx hash (rustc's), its result rotated as rustc-hash 2 does.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl IdHasher {
    fn add(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(K);
    }
}

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        // The product's high bits are the well-mixed ones: rotated down,
        // so that keys a program can space out (inodes 1024 apart) do not
        // share the low bits the table indexes by (rustc-hash 2 does the same).
        self.0.rotate_left(26)
    }
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            self.add(u64::from_le_bytes(b));
        }
    }
    fn write_u8(&mut self, n: u8) {
        self.add(n.into());
    }
    fn write_u16(&mut self, n: u16) {
        self.add(n.into());
    }
    fn write_u32(&mut self, n: u32) {
        self.add(n.into());
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    fn write_i32(&mut self, n: i32) {
        self.add(n as u32 as u64);
    }
    fn write_i64(&mut self, n: i64) {
        self.add(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_keys_spread_and_stay_distinct() {
        let mut m: IdMap<u64, u64> = IdMap::default();
        for i in 0..10_000u64 {
            m.insert(1_000_000 + i, i);
        }
        assert_eq!(m.len(), 10_000);
        assert!((0..10_000u64).all(|i| m.get(&(1_000_000 + i)) == Some(&i)));
        // Keys spaced out as a program can space its sockets' inodes still
        // spread over the table's low bits (no pile-up in a few buckets).
        let h = |k: u64| {
            let mut s = IdHasher::default();
            s.write_u64(k);
            s.finish()
        };
        for stride in [1u64, 1024, 4096, 1 << 16] {
            let low: std::collections::HashSet<u64> = (0..1024)
                .map(|k| h(5_000_000 + k * stride) & 1023)
                .collect();
            assert!(
                low.len() > 256,
                "stride {stride}: {} buckets of 1024",
                low.len()
            );
        }
    }
}
