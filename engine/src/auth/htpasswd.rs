//! htpasswd files with bcrypt hashes, as the reference registry reads them.
//!
//! The runtime reads the file and passes its text; this module parses it and verifies
//! passwords. Only bcrypt (`$2y$`, `$2b$`, `$2a$`) is accepted — the reference registry accepts
//! nothing else either — and other schemes (`$apr1$`, `{SHA}`, crypt) are refused with a
//! message that says how to regenerate the entry. Verification uses the `bcrypt` crate's raw
//! function only, so no random source (salt generation) is linked.

use base64::Engine as _;
use base64::alphabet::BCRYPT;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use subtle::ConstantTimeEq as _;

use super::config::AuthConfigError;

const BCRYPT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &BCRYPT,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

/// A bcrypt hash: `$2y$<cost>$<22 characters of salt><31 characters of hash>`.
#[derive(Clone, PartialEq, Eq)]
pub struct BcryptHash {
    cost: u32,
    salt: [u8; 16],
    hash: [u8; 23],
}

impl core::fmt::Debug for BcryptHash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "BcryptHash(cost {})", self.cost)
    }
}

impl BcryptHash {
    /// Parses a bcrypt hash; the error says what the text is instead.
    pub fn parse(text: &str) -> Result<BcryptHash, String> {
        let text = text.trim();
        let scheme = if let Some(rest) = text.strip_prefix('$') {
            rest.split('$').next().unwrap_or("")
        } else {
            ""
        };
        match scheme {
            "2a" | "2b" | "2y" => {}
            "2x" => {
                return Err("$2x$ bcrypt hashes (an old buggy variant) are not supported".into());
            }
            _ => {
                let what = if text.starts_with("$apr1$") {
                    "an Apache MD5 ($apr1$) hash"
                } else if text.starts_with("{SHA}") {
                    "a SHA-1 ({SHA}) hash"
                } else if text.starts_with("$1$") {
                    "an MD5-crypt ($1$) hash"
                } else if text.starts_with("$5$") || text.starts_with("$6$") {
                    "a SHA-crypt ($5$/$6$) hash"
                } else if text.starts_with('$') {
                    "an unknown hash scheme"
                } else {
                    "not a bcrypt hash (plain text or DES crypt)"
                };
                return Err(format!(
                    "{what}: only bcrypt ($2y$, $2b$, $2a$) is accepted; \
                     regenerate the entry with `htpasswd -B`"
                ));
            }
        }
        let malformed = || "malformed bcrypt hash (expected $2y$NN$ and 53 characters)".to_owned();
        // The scheme matched, so `text` is `$2y` followed by `$` or by nothing at all.
        let rest = text.get(4..).ok_or_else(malformed)?;
        let (cost, encoded) = rest.split_once('$').ok_or_else(malformed)?;
        if cost.len() != 2 || !cost.bytes().all(|b| b.is_ascii_digit()) {
            return Err(malformed());
        }
        let cost: u32 = cost.parse().map_err(|_| malformed())?;
        if !(4..=31).contains(&cost) {
            return Err(format!("bcrypt cost {cost} is outside 4..=31"));
        }
        if encoded.len() != 53 || !encoded.is_ascii() {
            return Err(malformed());
        }
        let mut salt = [0u8; 16];
        let mut hash = [0u8; 23];
        let salt_len = BCRYPT_BASE64
            .decode_slice(&encoded[..22], &mut salt)
            .map_err(|_| malformed())?;
        let hash_len = BCRYPT_BASE64
            .decode_slice(&encoded[22..], &mut hash)
            .map_err(|_| malformed())?;
        if salt_len != 16 || hash_len != 23 {
            return Err(malformed());
        }
        Ok(BcryptHash { cost, salt, hash })
    }

    /// A hash at `cost` that no password is expected to match, for the dummy verification that
    /// makes refusing an unknown user cost as much as checking a known one. The salt is fixed
    /// (the engine has no randomness, and a dummy needs none); the result is never trusted.
    pub(crate) fn dummy(cost: u32) -> BcryptHash {
        BcryptHash {
            cost: cost.clamp(4, 31),
            salt: *b"berth dummy salt",
            hash: [0; 23],
        }
    }

    /// The work factor: each step doubles the time a verification takes (cost 10: about
    /// 90 ms natively, 110 ms in WebAssembly; `htpasswd -B` defaults to 5).
    pub fn cost(&self) -> u32 {
        self.cost
    }

    /// Whether `password` hashes to this hash, compared in constant time. As in every common
    /// implementation, only the first 72 bytes of the password count.
    pub fn verify(&self, password: &[u8]) -> bool {
        let mut key = Vec::with_capacity(password.len().min(72) + 1);
        key.extend_from_slice(&password[..password.len().min(72)]);
        if key.len() < 72 {
            key.push(0);
        }
        let output = bcrypt::bcrypt(self.cost, self.salt, &key);
        key.fill(0);
        output[..23].ct_eq(&self.hash).into()
    }
}

/// Parses htpasswd text: `user:hash` lines; blank lines and `#` comments are skipped, as are
/// spaces around a line. Every entry must be bcrypt; a user may appear once.
pub fn parse_htpasswd(text: &str) -> Result<Vec<(String, BcryptHash)>, AuthConfigError> {
    let mut entries: Vec<(String, BcryptHash)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            return Err(AuthConfigError::new(format!(
                "htpasswd line {number}: expected user:hash"
            )));
        };
        if user.is_empty() {
            return Err(AuthConfigError::new(format!(
                "htpasswd line {number}: empty user name"
            )));
        }
        let hash = BcryptHash::parse(hash).map_err(|why| {
            AuthConfigError::new(format!("htpasswd line {number}: user {user:?}: {why}"))
        })?;
        if entries.iter().any(|(u, _)| u == user) {
            return Err(AuthConfigError::new(format!(
                "htpasswd line {number}: user {user:?} appears twice"
            )));
        }
        entries.push((user.to_owned(), hash));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_htpasswd_and_python_hashes() {
        // `htpasswd -nbB -C 4 bob 'p@ss:word with spaces'`
        let h = BcryptHash::parse("$2y$04$xO/QdPOLlA8B6.cyhk/d0uUyrrpkODt.YGzh3KcBDgw8d46bNbOrG")
            .unwrap();
        assert!(h.verify(b"p@ss:word with spaces"));
        assert!(!h.verify(b"p@ss:word with spaces "));
        assert!(!h.verify(b""));
        // Python's bcrypt.hashpw(b"python-secret", gensalt(4))
        let h = BcryptHash::parse("$2b$04$n5hvPuUT30kyjJDUmxyVMOkufApUqjNQmNo1yzqYAm4Qtcls4Efba")
            .unwrap();
        assert!(h.verify(b"python-secret"));
        assert!(!h.verify(b"python-secreT"));
    }

    #[test]
    fn refuses_other_schemes() {
        for (hash, expect) in [
            ("$apr1$rZzqKjD.$OAI3t7EUFOAp7Ry19IflL/", "$apr1$"),
            ("{SHA}z0jT3TdveclVlHs5WCpg5cPeIe8=", "{SHA}"),
            ("$6$salt$hash", "$5$/$6$"),
            ("plaintext", "plain text"),
            ("$2y$04$short", "malformed"),
            (
                "$2y$99$xO/QdPOLlA8B6.cyhk/d0uUyrrpkODt.YGzh3KcBDgw8d46bNbOrG",
                "outside",
            ),
        ] {
            let err = BcryptHash::parse(hash).unwrap_err();
            assert!(err.contains(expect), "{hash}: {err}");
        }
    }

    #[test]
    fn truncated_hashes_are_refused_not_panicked_on() {
        let full = "$2y$04$xO/QdPOLlA8B6.cyhk/d0uUyrrpkODt.YGzh3KcBDgw8d46bNbOrG";
        for scheme in ["$2a", "$2b", "$2y"] {
            let err = BcryptHash::parse(scheme).unwrap_err();
            assert!(err.contains("malformed"), "{scheme}: {err}");
        }
        // Every prefix of a valid hash, and the valid hash with a non-ASCII character at each
        // position: refused with a message, never a panic on a char boundary.
        for end in 0..full.len() {
            assert!(BcryptHash::parse(&full[..end]).is_err(), "{}", &full[..end]);
        }
        for at in 0..full.len() {
            let text = format!("{}é{}", &full[..at], &full[at + 1..]);
            assert!(BcryptHash::parse(&text).is_err(), "{text}");
        }
        let err = parse_htpasswd("dave:$2y\n").unwrap_err();
        assert!(err.to_string().contains("malformed"), "{err}");
    }

    #[test]
    fn htpasswd_file() {
        let text =
            "# users\n\n  bob:$2y$04$xO/QdPOLlA8B6.cyhk/d0uUyrrpkODt.YGzh3KcBDgw8d46bNbOrG  \n";
        let entries = parse_htpasswd(text).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0, "bob");
        let err = parse_htpasswd("carol:$apr1$rZzqKjD.$OAI3t7EUFOAp7Ry19IflL/\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
        assert!(err.to_string().contains("htpasswd -B"), "{err}");
        assert!(parse_htpasswd("nocolon\n").is_err());
    }
}
