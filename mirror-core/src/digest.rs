//! Content digests (`sha256:<64 hex>`) and a hasher that verifies content while it streams.
//!
//! Only `sha256` is produced; `sha512` digests are accepted and verified too because the OCI
//! image spec registers both.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

use crate::error::{Error, Result};

/// A digest algorithm registered by the OCI image spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, 64 lowercase hex characters.
    Sha256,
    /// SHA-512, 128 lowercase hex characters.
    Sha512,
}

impl Algorithm {
    /// The name as written in a digest (`sha256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated content digest such as `sha256:e3b0c442…`.
///
/// Ordering and equality are on the text, which is canonical (lowercase hex).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses and validates `algorithm:hex`.
    pub fn parse(input: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidDigest {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let (alg, hex) = input
            .split_once(':')
            .ok_or_else(|| invalid("expected <algorithm>:<hex>"))?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err(invalid("unsupported algorithm (expected sha256 or sha512)")),
        };
        if hex.len() != algorithm.hex_len() {
            return Err(invalid(&format!(
                "{} digests have {} hex characters, got {}",
                algorithm.as_str(),
                algorithm.hex_len(),
                hex.len()
            )));
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid("the hex part must be lowercase hexadecimal"));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    /// The SHA-256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Self {
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(Sha256::digest(data)),
        }
    }

    /// The digest of `data` with this digest's algorithm.
    pub fn compute_like(&self, data: &[u8]) -> Digest {
        let mut h = Hasher::new(self.algorithm);
        h.update(data);
        h.finish()
    }

    /// Checks that `data` hashes to this digest.
    pub fn verify(&self, data: &[u8]) -> Result<()> {
        let actual = self.compute_like(data);
        if &actual == self {
            Ok(())
        } else {
            Err(Error::DigestMismatch {
                expected: self.clone(),
                actual,
            })
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex-encoded hash.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// A short form for humans: the first 12 hex characters.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An incremental hasher for one algorithm; [`Hasher::finish`] yields the [`Digest`].
#[derive(Clone)]
pub(crate) enum Hasher {
    /// SHA-256 state.
    Sha256(Sha256),
    /// SHA-512 state.
    Sha512(Sha512),
}

impl Hasher {
    /// A fresh hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest {
                algorithm: Algorithm::Sha256,
                hex: hex::encode(h.finalize()),
            },
            Hasher::Sha512(h) => Digest {
                algorithm: Algorithm::Sha512,
                hex: hex::encode(h.finalize()),
            },
        }
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Hasher")
    }
}

/// Verifies a stream of chunks against an expected digest and size.
///
/// Feed every chunk with [`Verifier::update`] (which fails early once more bytes than expected
/// arrive) and call [`Verifier::finish`] at the end of the stream.
#[derive(Debug)]
pub(crate) struct Verifier {
    expected: Digest,
    expected_size: Option<u64>,
    /// `None`: the size alone is checked ([`Verifier::size_only`]).
    hasher: Option<Hasher>,
    seen: u64,
}

impl Verifier {
    /// A verifier for content named `expected`, optionally of a known size.
    pub fn new(expected: Digest, expected_size: Option<u64>) -> Self {
        let hasher = Some(Hasher::new(expected.algorithm()));
        Verifier {
            expected,
            expected_size,
            hasher,
            seen: 0,
        }
    }

    /// A verifier of the size alone, for content whose receiver checks the digest itself (a
    /// registry refuses a blob that does not hash to its name).
    pub fn size_only(expected: Digest, expected_size: u64) -> Self {
        Verifier {
            expected,
            expected_size: Some(expected_size),
            hasher: None,
            seen: 0,
        }
    }

    /// Feeds one chunk; fails as soon as the content exceeds the expected size.
    pub fn update(&mut self, chunk: &[u8]) -> Result<()> {
        self.seen += chunk.len() as u64;
        if let Some(size) = self.expected_size {
            if self.seen > size {
                return Err(Error::SizeMismatch {
                    digest: self.expected.clone(),
                    expected: size,
                    actual: self.seen,
                });
            }
        }
        if let Some(h) = &mut self.hasher {
            h.update(chunk);
        }
        Ok(())
    }

    /// True once exactly the expected number of bytes has been seen.
    pub fn is_complete(&self) -> bool {
        self.expected_size == Some(self.seen)
    }

    /// Checks size and digest once the stream has ended.
    pub fn finish(self) -> Result<()> {
        if let Some(size) = self.expected_size {
            if self.seen != size {
                return Err(Error::SizeMismatch {
                    digest: self.expected,
                    expected: size,
                    actual: self.seen,
                });
            }
        }
        let Some(hasher) = self.hasher else {
            return Ok(());
        };
        let actual = hasher.finish();
        if actual != self.expected {
            return Err(Error::DigestMismatch {
                expected: self.expected,
                actual,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn sha256_of_empty_matches_the_well_known_value() {
        assert_eq!(Digest::sha256_of(b"").to_string(), EMPTY);
        assert_eq!(Digest::parse(EMPTY).unwrap(), Digest::sha256_of(b""));
    }

    #[test]
    fn malformed_digests_are_rejected_with_a_reason() {
        for bad in [
            "",
            "sha256",
            "md5:abc",
            "sha256:abc",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:zzb0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            let err = Digest::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidDigest { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn verifier_reports_expected_and_actual_digest() {
        let expected = Digest::sha256_of(b"hello");
        let mut v = Verifier::new(expected.clone(), Some(5));
        v.update(b"hellO").unwrap();
        match v.finish().unwrap_err() {
            Error::DigestMismatch {
                expected: e,
                actual,
            } => {
                assert_eq!(e, expected);
                assert_eq!(actual, Digest::sha256_of(b"hellO"));
            }
            other => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn verifier_stops_on_oversized_content() {
        let mut v = Verifier::new(Digest::sha256_of(b"abc"), Some(3));
        assert!(matches!(
            v.update(b"abcd"),
            Err(Error::SizeMismatch { actual: 4, .. })
        ));
        let mut v = Verifier::new(Digest::sha256_of(b"abc"), Some(3));
        v.update(b"ab").unwrap();
        assert!(matches!(
            v.finish(),
            Err(Error::SizeMismatch { actual: 2, .. })
        ));
    }
}
