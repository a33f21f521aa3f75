//! Compact JWS (JWT) signing and verification, with time passed in.
//!
//! Verification order: size, shape, header, algorithm, key, signature — and only then the
//! payload is parsed, so nothing an unauthenticated party wrote is interpreted beyond the
//! header. Registered claims are checked by the callers with [`check_times`], against the
//! `now` the runtime supplied.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::keys::{Algorithm, SigningKey, VerificationKey};
use crate::Entropy;

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 8192;

/// Why a token was refused. Safe to show the client (it holds the token) and to log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenError {
    TooLong,
    Malformed(&'static str),
    /// `alg: none`.
    AlgorithmNone,
    /// An algorithm no configured key uses (HS256, ES384, ...).
    AlgorithmNotAllowed(String),
    /// A `crit` header: extensions berth does not understand must be refused (RFC 7515 4.1.11).
    CriticalHeader,
    /// No configured key verifies the signature.
    BadSignature,
    Expired {
        exp: u64,
        now: u64,
    },
    NotYetValid {
        nbf: u64,
        now: u64,
    },
    WrongIssuer(String),
    WrongAudience,
    MissingClaim(&'static str),
    /// A serverless-registry token whose `capabilities` name neither pull nor push.
    NoCapabilities,
}

impl core::fmt::Display for TokenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TokenError::TooLong => write!(f, "token longer than {MAX_TOKEN_LEN} bytes"),
            TokenError::Malformed(why) => write!(f, "malformed token: {why}"),
            TokenError::AlgorithmNone => f.write_str("unsigned token (alg none)"),
            TokenError::AlgorithmNotAllowed(alg) => {
                write!(f, "algorithm {alg:?} is not accepted")
            }
            TokenError::CriticalHeader => f.write_str("token has a crit header"),
            TokenError::BadSignature => f.write_str("signature does not verify"),
            TokenError::Expired { exp, now } => write!(f, "token expired at {exp} (now {now})"),
            TokenError::NotYetValid { nbf, now } => {
                write!(f, "token not valid before {nbf} (now {now})")
            }
            TokenError::WrongIssuer(iss) => write!(f, "token issuer {iss:?} is not trusted"),
            TokenError::WrongAudience => f.write_str("token audience is not this registry"),
            TokenError::MissingClaim(claim) => write!(f, "token lacks the {claim:?} claim"),
            TokenError::NoCapabilities => f.write_str("token grants no capabilities"),
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

/// A token whose signature verified: the payload JSON and which key verified it.
pub(crate) struct Verified {
    pub key_index: usize,
    pub payload: Vec<u8>,
}

/// Verifies a compact JWS against `keys` and returns its payload.
///
/// Only keys whose algorithm is the header's are tried; if the header names a `kid` that one
/// of them has, only those are tried. Embedded keys (`jwk`, `jku`, `x5u`, `x5c`) are ignored.
pub(crate) fn verify(token: &str, keys: &[&VerificationKey]) -> Result<Verified, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("not three dot-separated parts"));
    };
    let header = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| TokenError::Malformed("header is not base64url"))?;
    let header: Header = serde_json::from_slice(&header)
        .map_err(|_| TokenError::Malformed("header is not a JSON object with \"alg\""))?;
    if header.alg.eq_ignore_ascii_case("none") {
        return Err(TokenError::AlgorithmNone);
    }
    if header.crit.is_some() {
        return Err(TokenError::CriticalHeader);
    }
    let algorithm = Algorithm::from_jose(&header.alg)
        .ok_or_else(|| TokenError::AlgorithmNotAllowed(truncate(&header.alg)))?;
    let candidates: Vec<usize> = (0..keys.len())
        .filter(|&i| keys[i].algorithm() == algorithm)
        .collect();
    if candidates.is_empty() {
        return Err(TokenError::AlgorithmNotAllowed(header.alg));
    }
    let by_kid: Vec<usize> = match &header.kid {
        Some(kid) => candidates
            .iter()
            .copied()
            .filter(|&i| keys[i].key_id() == kid)
            .collect(),
        None => Vec::new(),
    };
    let candidates = if by_kid.is_empty() {
        candidates
    } else {
        by_kid
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| TokenError::Malformed("signature is not base64url"))?;
    let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
    let key_index = candidates
        .into_iter()
        .find(|&i| keys[i].verify(signed.as_bytes(), &signature))
        .ok_or(TokenError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| TokenError::Malformed("payload is not base64url"))?;
    Ok(Verified { key_index, payload })
}

fn truncate(text: &str) -> String {
    text.chars().take(32).collect()
}

/// Signs `claims` (a JSON object) with `key`.
pub(crate) fn sign(claims: &impl serde::Serialize, key: &SigningKey, entropy: &Entropy) -> String {
    let header = serde_json::json!({
        "alg": key.algorithm().as_str(),
        "typ": "JWT",
        "kid": key.verification_key().key_id(),
    });
    let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap_or_default());
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let signed = format!("{header}.{payload}");
    let signature = URL_SAFE_NO_PAD.encode(key.sign(signed.as_bytes(), entropy));
    format!("{signed}.{signature}")
}

/// A NumericDate claim: JSON numbers, integer or not; negative ones count as 0.
pub(crate) fn numeric_date(value: &Option<serde_json::Number>) -> Option<u64> {
    let n = value.as_ref()?;
    if let Some(u) = n.as_u64() {
        return Some(u);
    }
    if n.as_i64().is_some() {
        return Some(0);
    }
    let f = n.as_f64()?;
    if f.is_nan() || f <= 0.0 {
        Some(0)
    } else if f >= u64::MAX as f64 {
        Some(u64::MAX)
    } else {
        Some(f as u64)
    }
}

/// Checks `exp` and `nbf` against `now`, allowing `leeway` seconds of clock skew: valid while
/// `now < exp + leeway` and `now + leeway >= nbf`.
pub(crate) fn check_times(
    exp: Option<u64>,
    nbf: Option<u64>,
    now: u64,
    leeway: u64,
) -> Result<(), TokenError> {
    let exp = exp.ok_or(TokenError::MissingClaim("exp"))?;
    if now >= exp.saturating_add(leeway) {
        return Err(TokenError::Expired { exp, now });
    }
    if let Some(nbf) = nbf
        && now.saturating_add(leeway) < nbf
    {
        return Err(TokenError::NotYetValid { nbf, now });
    }
    Ok(())
}

/// `aud` as a string or an array of strings.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Audience::One(a) => a == audience,
            Audience::Many(all) => all.iter().any(|a| a == audience),
        }
    }
}
