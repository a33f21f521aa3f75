//! Content digests (`algorithm:encoded`) and the resumable hash behind them.
//!
//! berth supports the two algorithms the OCI image spec registers: `sha256` and `sha512`.
//! An upload may span many requests, each possibly served by a different replica, so the
//! running hash must survive between requests: [`ResumableHash`] serializes the hasher's
//! internal block state (`sha2`'s `SerializableState`) rather than any bytes seen so far.

use core::fmt;

use sha2::digest::common::hazmat::SerializableState;
use sha2::{Digest as _, Sha256, Sha512};

/// A digest algorithm registered with the OCI image spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// The algorithm that is not this one: berth implements two.
    pub fn other(self) -> Algorithm {
        match self {
            Algorithm::Sha256 => Algorithm::Sha512,
            Algorithm::Sha512 => Algorithm::Sha256,
        }
    }

    /// Number of hex characters in an encoded digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn parse(name: &str) -> Option<Algorithm> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated digest: a supported algorithm and its lowercase hex encoding.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

/// Why a string is not a digest berth can use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DigestError {
    /// Not of the grammar `algorithm ":" encoded` of the image spec.
    Malformed,
    /// Well formed, but an algorithm berth does not implement.
    UnsupportedAlgorithm(String),
    /// A supported algorithm with an encoding of the wrong length or alphabet.
    BadEncoding,
}

impl fmt::Display for DigestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DigestError::Malformed => f.write_str("not a digest of the form algorithm:encoded"),
            DigestError::UnsupportedAlgorithm(a) => {
                write!(
                    f,
                    "digest algorithm {a:?} is not supported (sha256, sha512 are)"
                )
            }
            DigestError::BadEncoding => {
                f.write_str("digest encoding must be lowercase hex of the algorithm's length")
            }
        }
    }
}

impl Digest {
    /// Parses `algorithm:encoded` per the image spec's digest grammar, then requires a
    /// supported algorithm and a canonical (lowercase hex, exact length) encoding.
    pub fn parse(text: &str) -> Result<Digest, DigestError> {
        let (algorithm, encoded) = text.split_once(':').ok_or(DigestError::Malformed)?;
        if !is_algorithm_grammar(algorithm) || !is_encoded_grammar(encoded) {
            return Err(DigestError::Malformed);
        }
        let algorithm = Algorithm::parse(algorithm)
            .ok_or_else(|| DigestError::UnsupportedAlgorithm(algorithm.to_owned()))?;
        if encoded.len() != algorithm.hex_len()
            || !encoded
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(DigestError::BadEncoding);
        }
        Ok(Digest {
            algorithm,
            hex: encoded.to_owned(),
        })
    }

    /// Digest of `bytes` in one shot.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Digest {
        let mut hash = ResumableHash::new(algorithm);
        hash.update(bytes);
        hash.finish()
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

/// `algorithm-component (algorithm-separator algorithm-component)*`, components `[a-z0-9]+`,
/// separators `[+._-]`.
fn is_algorithm_grammar(s: &str) -> bool {
    !s.is_empty()
        && s.split(['+', '.', '_', '-']).all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// `[a-zA-Z0-9=_-]+`
fn is_encoded_grammar(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'))
}

/// A running hash that can be frozen into bytes and thawed in another process.
#[derive(Clone)]
pub enum ResumableHash {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl fmt::Debug for ResumableHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResumableHash({})", self.algorithm())
    }
}

impl ResumableHash {
    pub fn new(algorithm: Algorithm) -> ResumableHash {
        match algorithm {
            Algorithm::Sha256 => ResumableHash::Sha256(Sha256::new()),
            Algorithm::Sha512 => ResumableHash::Sha512(Sha512::new()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            ResumableHash::Sha256(_) => Algorithm::Sha256,
            ResumableHash::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            ResumableHash::Sha256(h) => h.update(bytes),
            ResumableHash::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed so far. The running hash is left untouched.
    pub fn finish(&self) -> Digest {
        let (algorithm, hex) = match self {
            ResumableHash::Sha256(h) => (Algorithm::Sha256, hex::encode(h.clone().finalize())),
            ResumableHash::Sha512(h) => (Algorithm::Sha512, hex::encode(h.clone().finalize())),
        };
        Digest { algorithm, hex }
    }

    /// The hasher's internal state: 104 bytes for SHA-256, 208 for SHA-512.
    pub fn serialize(&self) -> Vec<u8> {
        match self {
            ResumableHash::Sha256(h) => h.serialize().to_vec(),
            ResumableHash::Sha512(h) => h.serialize().to_vec(),
        }
    }

    /// Restores a state produced by [`ResumableHash::serialize`]; `None` if the bytes are not
    /// one (wrong length, or a block counter the hasher rejects).
    pub fn deserialize(algorithm: Algorithm, state: &[u8]) -> Option<ResumableHash> {
        match algorithm {
            Algorithm::Sha256 => {
                let state = state.try_into().ok()?;
                Sha256::deserialize(state).ok().map(ResumableHash::Sha256)
            }
            Algorithm::Sha512 => {
                let state = state.try_into().ok()?;
                Sha512::deserialize(state).ok().map(ResumableHash::Sha512)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_canonical_digests_and_rejects_others() {
        let d = Digest::of(Algorithm::Sha256, b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(Digest::parse(&d.to_string()), Ok(d));
        assert_eq!(Digest::parse("sha256"), Err(DigestError::Malformed));
        assert_eq!(Digest::parse("SHA256:00"), Err(DigestError::Malformed));
        assert_eq!(
            Digest::parse("md5:d41d8cd98f00b204e9800998ecf8427e"),
            Err(DigestError::UnsupportedAlgorithm("md5".into()))
        );
        assert_eq!(Digest::parse("sha256:ABC"), Err(DigestError::BadEncoding));
        assert_eq!(
            Digest::parse("sha256:../../etc"),
            Err(DigestError::Malformed)
        );
    }

    #[test]
    fn serialized_state_sizes_match_the_design() {
        assert_eq!(ResumableHash::new(Algorithm::Sha256).serialize().len(), 104);
        assert_eq!(ResumableHash::new(Algorithm::Sha512).serialize().len(), 208);
    }

    #[test]
    fn garbage_state_is_refused_not_a_panic() {
        assert!(ResumableHash::deserialize(Algorithm::Sha256, &[0u8; 3]).is_none());
        // Arbitrary bytes of the right length either restore or are refused; never a panic.
        let _ = ResumableHash::deserialize(Algorithm::Sha512, &[0xffu8; 208]);
    }
}
