//! The Bloom filters of a segment: whether an id or a contact may be in it. No IO.
//!
//! Written here rather than taken from a crate because the filters are on disk: the
//! hash and the probe sequence are part of the file format, and a library that changed
//! either between versions would make old filters answer "absent" for keys they hold,
//! which for ids means storing a duplicate. The hash is XXH3-64, a published algorithm.

use serde::{Deserialize, Serialize};

/// Bits per key: 10 gives about 1 % of false "maybe"s with 7 probes.
const BITS_PER_KEY: usize = 10;
const PROBES: u32 = 7;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Bloom {
    /// The bit array, in 64-bit words.
    words: Vec<u64>,
}

impl Bloom {
    /// A filter sized for `keys_len` keys.
    pub fn with_keys(keys_len: usize) -> Bloom {
        let bits = (keys_len.max(1) * BITS_PER_KEY).next_multiple_of(64);
        Bloom {
            words: vec![0; bits / 64],
        }
    }

    /// A filter of the keys of these hashes (`Bloom::hash`), sized for them: what a
    /// writer that meets each key more than once, and knows how many there are only at
    /// the end, collects.
    pub fn from_hashes(hashes: &[u64]) -> Bloom {
        let mut bloom = Bloom::with_keys(hashes.len());
        for hash in hashes {
            bloom.insert_hash(*hash);
        }
        bloom
    }

    pub fn hash(key: &[u8]) -> u64 {
        xxhash_rust::xxh3::xxh3_64(key)
    }

    fn probes(&self, hash: u64) -> impl Iterator<Item = usize> + use<> {
        // Double hashing (Kirsch and Mitzenmacher): two halves of one 64-bit hash give
        // every probe.
        let (first, second) = (hash as u32, (hash >> 32) as u32 | 1);
        let bits = (self.words.len() * 64) as u64;
        (0..PROBES).map(move |probe| {
            (u64::from(first.wrapping_add(probe.wrapping_mul(second))) % bits) as usize
        })
    }

    pub fn insert(&mut self, key: &[u8]) {
        self.insert_hash(Bloom::hash(key));
    }

    fn insert_hash(&mut self, hash: u64) {
        for bit in self.probes(hash) {
            self.words[bit / 64] |= 1 << (bit % 64);
        }
    }

    /// False only for a key never inserted.
    pub fn may_hold(&self, key: &[u8]) -> bool {
        !self.words.is_empty()
            && self
                .probes(Bloom::hash(key))
                .all(|bit| self.words[bit / 64] & (1 << (bit % 64)) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_every_key_inserted_and_few_others() {
        let mut bloom = Bloom::with_keys(10_000);
        for key in 0..10_000u32 {
            bloom.insert(&key.to_le_bytes());
        }
        assert!((0..10_000u32).all(|key| bloom.may_hold(&key.to_le_bytes())));
        let false_maybes = (10_000..110_000u32)
            .filter(|key| bloom.may_hold(&key.to_le_bytes()))
            .count();
        assert!(false_maybes < 2_000, "{false_maybes} of 100,000");
    }

    #[test]
    fn the_probes_are_those_of_the_file_format() {
        // A filter written by one build must be read the same by every later one.
        let mut bloom = Bloom::with_keys(1);
        bloom.insert(b"contact-1");
        assert_eq!(bloom.words.len(), 1);
        assert!(bloom.may_hold(b"contact-1"));
        assert_eq!(xxhash_rust::xxh3::xxh3_64(b""), 0x2d06_8005_38d3_94c2);
    }
}
