//! [`Digest`]: the 128-bit content digest that travels with an object (XXH3-128).
//!
//! A store computes it once, when the value is stored (fused with its copy where it makes
//! one), keeps it beside the value and reports it in [`ObjectMeta::digest`](crate::ObjectMeta);
//! a gateway forwards it without recomputing and checks it as the bytes land in the receiving
//! reservation; the final reader can check what it holds with [`Digest::verify`].
//!
//! XXH3-128 was chosen by measurement (`cargo bench -p gos-benches --bench digest`): over
//! 100 MiB it costs a fraction of the copy it rides on, where the CRC-32 it replaces cost more
//! than the copy. It detects accidental damage (a flipped bit, a truncated or misplaced chunk),
//! not a forger: the transport (TLS) and the allow-list keep hostile bytes out.
//!
//! ```
//! use gos_store::{Digest, DigestHasher};
//!
//! let whole = Digest::of(b"weights of round 42");
//! let mut h = DigestHasher::new();
//! h.update(b"weights of ");
//! h.update(b"round 42");
//! assert_eq!(h.finish(), whole);
//! assert_eq!(whole.to_string().len(), 32);
//! assert_eq!(whole.to_string().parse::<Digest>(), Ok(whole));
//! assert!(whole.verify(b"weights of round 42").is_ok());
//! assert!(whole.verify(b"weights of round 43").is_err());
//! ```

use std::fmt;
use std::str::FromStr;

use xxhash_rust::xxh3::Xxh3;

use crate::error::Error;

/// The XXH3-128 digest of an object's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(u128);

impl Digest {
    /// Length of a digest on the wire, in bytes.
    pub const LEN: usize = 16;

    /// The digest of `bytes`, in one pass.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(xxhash_rust::xxh3::xxh3_128(bytes))
    }

    /// The digest as 16 little-endian bytes (its wire and on-disk form).
    pub fn to_bytes(self) -> [u8; Digest::LEN] {
        self.0.to_le_bytes()
    }

    /// A digest from its 16 little-endian bytes.
    pub fn from_bytes(bytes: [u8; Digest::LEN]) -> Digest {
        Digest(u128::from_le_bytes(bytes))
    }

    /// The digest as a number.
    pub fn as_u128(self) -> u128 {
        self.0
    }

    /// A digest from its numeric value.
    pub fn from_u128(value: u128) -> Digest {
        Digest(value)
    }

    /// `Ok` when `bytes` have this digest, [`Error::Corrupted`] naming both digests otherwise.
    pub fn verify(self, bytes: &[u8]) -> Result<(), Error> {
        self.check(Digest::of(bytes))
    }

    /// `Ok` when `actual` is this digest, [`Error::Corrupted`] naming both otherwise.
    pub fn check(self, actual: Digest) -> Result<(), Error> {
        if actual == self {
            Ok(())
        } else {
            Err(Error::Corrupted(format!(
                "digest mismatch: expected {self}, the bytes have {actual}"
            )))
        }
    }
}

impl fmt::Display for Digest {
    /// 32 lowercase hexadecimal digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

/// Why a text is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a digest is 32 hexadecimal digits")]
pub struct ParseDigestError;

impl FromStr for Digest {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseDigestError);
        }
        u128::from_str_radix(s, 16)
            .map(Digest)
            .map_err(|_| ParseDigestError)
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_u128(self.0)
        }
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            u128::deserialize(d).map(Digest)
        }
    }
}

/// Computes a [`Digest`] over bytes given in pieces (the same digest as [`Digest::of`] over
/// their concatenation), so that it can ride along a copy chunk by chunk.
#[derive(Clone)]
pub struct DigestHasher(Box<Xxh3>);

impl DigestHasher {
    /// A hasher over no bytes yet.
    pub fn new() -> Self {
        DigestHasher(Box::new(Xxh3::new()))
    }

    /// Adds the next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The digest of every byte given so far.
    pub fn finish(&self) -> Digest {
        Digest(self.0.digest128())
    }

    /// Copies `src` into `dst` (equal lengths) and adds it, a cache-sized chunk at a time, so
    /// that each chunk is hashed while it is still in cache: the digest rides on the copy.
    pub fn copy_and_update(&mut self, dst: &mut [u8], src: &[u8]) {
        assert_eq!(dst.len(), src.len(), "copy_and_update needs equal lengths");
        for (d, s) in dst.chunks_mut(FUSED_CHUNK).zip(src.chunks(FUSED_CHUNK)) {
            d.copy_from_slice(s);
            self.0.update(d);
        }
    }
}

/// The chunk of a fused copy and hash: small enough to stay in L2 between the two passes.
const FUSED_CHUNK: usize = 256 << 10;

impl Default for DigestHasher {
    fn default() -> Self {
        DigestHasher::new()
    }
}

impl fmt::Debug for DigestHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigestHasher").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_value_of_the_empty_input() {
        // XXH3-128 of no bytes, seed 0 (the reference implementation's test vector).
        assert_eq!(
            Digest::of(b"").as_u128(),
            0x99aa06d3014798d86001c324468d497f
        );
    }

    #[test]
    fn parse_refuses_what_is_not_32_hex_digits() {
        for bad in [
            "",
            "00",
            "g0000000000000000000000000000000",
            &"0".repeat(33),
            "+0000000000000000000000000000000",
        ] {
            assert_eq!(bad.parse::<Digest>(), Err(ParseDigestError), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn pieces_and_fused_copies_give_the_whole_digest(
            data in proptest::collection::vec(any::<u8>(), 0..70_000),
            cut in any::<proptest::sample::Index>(),
        ) {
            let whole = Digest::of(&data);
            let at = cut.index(data.len() + 1);
            let mut h = DigestHasher::new();
            h.update(&data[..at]);
            h.update(&data[at..]);
            prop_assert_eq!(h.finish(), whole);
            let mut dst = vec![0u8; data.len()];
            let mut f = DigestHasher::new();
            f.copy_and_update(&mut dst, &data);
            prop_assert_eq!(&dst, &data);
            prop_assert_eq!(f.finish(), whole);
            prop_assert_eq!(Digest::from_bytes(whole.to_bytes()), whole);
            prop_assert_eq!(whole.to_string().parse::<Digest>().unwrap(), whole);
        }

        #[test]
        fn a_flipped_bit_changes_the_digest(
            data in proptest::collection::vec(any::<u8>(), 1..4096),
            at in any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let mut bad = data.clone();
            let i = at.index(bad.len());
            bad[i] ^= 1 << bit;
            prop_assert!(Digest::of(&data).verify(&bad).is_err());
        }
    }
}
