//! Signing and verification keys for JWTs, read from PEM or JWK.
//!
//! Each key has exactly one algorithm, fixed by its type: P-256 EC keys sign ES256, RSA keys
//! RS256, Ed25519 keys EdDSA. A token is checked only against keys of the algorithm its header
//! names, so algorithm confusion (an RSA or EC public key used as an HMAC secret, `alg: none`)
//! has nothing to work with: there are no HMAC keys, and no key without an algorithm.
//!
//! Signing never reads a random source: ES256 nonces are derived from the key and message
//! (RFC 6979), Ed25519 is deterministic by construction, and RSA signing (PKCS#1 v1.5 is
//! deterministic too) is blinded with a generator seeded from the caller's [`Entropy`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::traits::PublicKeyParts as _;
use serde::Deserialize;
use sha2::Digest as _;

use crate::Entropy;

/// The signature algorithms berth accepts and issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// Ed25519.
    EdDsa,
}

impl Algorithm {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::Rs256 => "RS256",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    pub(crate) fn from_jose(name: &str) -> Option<Algorithm> {
        match name {
            "ES256" => Some(Algorithm::Es256),
            "RS256" => Some(Algorithm::Rs256),
            "EdDSA" => Some(Algorithm::EdDsa),
            _ => None,
        }
    }
}

impl core::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key that could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyError(pub String);

impl core::fmt::Display for KeyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

fn key_error(message: impl Into<String>) -> KeyError {
    KeyError(message.into())
}

/// Smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;

#[derive(Clone)]
enum Public {
    Es256(p256::ecdsa::VerifyingKey),
    Rs256(Box<rsa::RsaPublicKey>),
    EdDsa(ed25519_dalek::VerifyingKey),
}

/// A public key that verifies tokens.
#[derive(Clone)]
pub struct VerificationKey {
    key: Public,
    /// The JWK `kid` it was configured with, else its RFC 7638 thumbprint.
    kid: String,
    thumbprint: String,
}

impl PartialEq for VerificationKey {
    fn eq(&self, other: &VerificationKey) -> bool {
        self.thumbprint == other.thumbprint && self.kid == other.kid
    }
}

impl Eq for VerificationKey {}

impl core::fmt::Debug for VerificationKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VerificationKey")
            .field("alg", &self.algorithm())
            .field("kid", &self.kid)
            .finish()
    }
}

impl VerificationKey {
    fn new(key: Public, kid: Option<String>) -> VerificationKey {
        let thumbprint = thumbprint(&key);
        VerificationKey {
            key,
            kid: kid.unwrap_or_else(|| thumbprint.clone()),
            thumbprint,
        }
    }

    /// Reads one public key: a PEM block (`PUBLIC KEY` — SPKI for P-256, RSA or Ed25519 — or
    /// `RSA PUBLIC KEY`), or a JWK (`{"kty":"EC","crv":"P-256",...}`, `RSA`, `OKP`/`Ed25519`).
    /// A private key in either form is accepted too, and its public half kept.
    pub fn parse(text: &str) -> Result<VerificationKey, KeyError> {
        let mut keys = VerificationKey::parse_all(text)?;
        match keys.len() {
            1 => Ok(keys.remove(0)),
            n => Err(key_error(format!("expected one key, found {n}"))),
        }
    }

    /// Reads every key in `text`: one or more PEM blocks, a JWK, or a JWK Set (`{"keys":[...]}`).
    pub fn parse_all(text: &str) -> Result<Vec<VerificationKey>, KeyError> {
        let text = text.trim();
        if text.starts_with('{') {
            let value: serde_json::Value = serde_json::from_str(text)
                .map_err(|e| key_error(format!("key is not valid JSON: {e}")))?;
            if let Some(keys) = value.get("keys") {
                let keys = keys
                    .as_array()
                    .ok_or_else(|| key_error("JWK Set \"keys\" is not an array"))?;
                return keys.iter().map(VerificationKey::from_jwk_value).collect();
            }
            return Ok(vec![VerificationKey::from_jwk_value(&value)?]);
        }
        let blocks = pem_blocks(text)?;
        blocks
            .iter()
            .map(|block| VerificationKey::from_pem(block))
            .collect()
    }

    fn from_jwk_value(value: &serde_json::Value) -> Result<VerificationKey, KeyError> {
        let jwk = Jwk::deserialize(value).map_err(|e| key_error(format!("invalid JWK: {e}")))?;
        let (key, _) = jwk.keys(false)?;
        Ok(VerificationKey::new(key, jwk.kid.clone()))
    }

    fn from_pem(pem: &str) -> Result<VerificationKey, KeyError> {
        let label = pem_label(pem)?;
        match label {
            "PUBLIC KEY" => {
                use ed25519_dalek::pkcs8::DecodePublicKey as _;
                use rsa::pkcs8::DecodePublicKey as _;
                if let Ok(key) = p256::ecdsa::VerifyingKey::from_public_key_pem(pem) {
                    return Ok(VerificationKey::new(Public::Es256(key), None));
                }
                if let Ok(key) = ed25519_dalek::VerifyingKey::from_public_key_pem(pem) {
                    return Ok(VerificationKey::new(Public::EdDsa(key), None));
                }
                match rsa::RsaPublicKey::from_public_key_pem(pem) {
                    Ok(key) => Ok(VerificationKey::new(rsa_public(key)?, None)),
                    Err(_) => Err(key_error(
                        "unsupported public key: expected a P-256 EC, Ed25519 or RSA key",
                    )),
                }
            }
            "RSA PUBLIC KEY" => {
                use rsa::pkcs1::DecodeRsaPublicKey as _;
                let key = rsa::RsaPublicKey::from_pkcs1_pem(pem)
                    .map_err(|e| key_error(format!("invalid RSA PUBLIC KEY: {e}")))?;
                Ok(VerificationKey::new(rsa_public(key)?, None))
            }
            _ => Ok(SigningKey::from_pem(pem)?.public),
        }
    }

    /// The algorithm tokens checked with this key must name.
    pub fn algorithm(&self) -> Algorithm {
        match self.key {
            Public::Es256(_) => Algorithm::Es256,
            Public::Rs256(_) => Algorithm::Rs256,
            Public::EdDsa(_) => Algorithm::EdDsa,
        }
    }

    /// The key id: the JWK's `kid` if it had one, else the RFC 7638 thumbprint.
    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// Replaces the key id (tokens signed with this key carry it in their header).
    pub fn with_key_id(mut self, kid: impl Into<String>) -> VerificationKey {
        self.kid = kid.into();
        self
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// The public key as a JWK, with `kid`, `alg` and `use`.
    pub fn to_jwk(&self) -> serde_json::Value {
        let mut jwk = match &self.key {
            Public::Es256(key) => {
                let (x, y) = ec_coordinates(key);
                serde_json::json!({"kty": "EC", "crv": "P-256", "x": x, "y": y})
            }
            Public::Rs256(key) => {
                let (n, e) = rsa_parameters(key);
                serde_json::json!({"kty": "RSA", "n": n, "e": e})
            }
            Public::EdDsa(key) => serde_json::json!({
                "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(key.as_bytes()),
            }),
        };
        jwk["kid"] = self.kid.clone().into();
        jwk["alg"] = self.algorithm().as_str().into();
        jwk["use"] = "sig".into();
        jwk
    }

    /// Checks `signature` (JOSE form: raw `r||s` for ES256) over `message`.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match &self.key {
            Public::Es256(key) => {
                use p256::ecdsa::signature::Verifier as _;
                match p256::ecdsa::Signature::from_slice(signature) {
                    Ok(sig) => key.verify(message, &sig).is_ok(),
                    Err(_) => false,
                }
            }
            Public::Rs256(key) => {
                use rsa::signature::Verifier as _;
                if signature.len() != key.size() {
                    return false;
                }
                let verifier =
                    rsa::pkcs1v15::VerifyingKey::<rsa::sha2::Sha256>::new((**key).clone());
                match rsa::pkcs1v15::Signature::try_from(signature) {
                    Ok(sig) => verifier.verify(message, &sig).is_ok(),
                    Err(_) => false,
                }
            }
            Public::EdDsa(key) => match ed25519_dalek::Signature::from_slice(signature) {
                Ok(sig) => key.verify_strict(message, &sig).is_ok(),
                Err(_) => false,
            },
        }
    }
}

#[derive(Clone)]
enum Private {
    Es256(p256::ecdsa::SigningKey),
    Rs256(Box<rsa::RsaPrivateKey>),
    EdDsa(Box<ed25519_dalek::SigningKey>),
}

/// A private key that signs the tokens berth issues.
#[derive(Clone)]
pub struct SigningKey {
    key: Private,
    public: VerificationKey,
}

impl PartialEq for SigningKey {
    fn eq(&self, other: &SigningKey) -> bool {
        self.public == other.public
    }
}

impl Eq for SigningKey {}

impl core::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.public.algorithm())
            .field("kid", &self.public.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    fn new(key: Private, kid: Option<String>) -> SigningKey {
        let public = match &key {
            Private::Es256(k) => Public::Es256(*k.verifying_key()),
            Private::Rs256(k) => Public::Rs256(Box::new(k.to_public_key())),
            Private::EdDsa(k) => Public::EdDsa(k.verifying_key()),
        };
        SigningKey {
            key,
            public: VerificationKey::new(public, kid),
        }
    }

    /// Reads a private key: PEM (`PRIVATE KEY` — PKCS#8 for P-256, RSA or Ed25519 —,
    /// `EC PRIVATE KEY`, `RSA PRIVATE KEY`) or a private JWK (with `d`; RSA needs `p` and `q`).
    pub fn parse(text: &str) -> Result<SigningKey, KeyError> {
        let text = text.trim();
        if text.starts_with('{') {
            let jwk: Jwk =
                serde_json::from_str(text).map_err(|e| key_error(format!("invalid JWK: {e}")))?;
            let (_, private) = jwk.keys(true)?;
            let private = private.ok_or_else(|| key_error("JWK has no private part (\"d\")"))?;
            return Ok(SigningKey::new(private, jwk.kid.clone()));
        }
        let blocks = pem_blocks(text)?;
        match blocks.as_slice() {
            [one] => SigningKey::from_pem(one),
            _ => Err(key_error(format!(
                "expected one private key, found {} PEM blocks",
                blocks.len()
            ))),
        }
    }

    fn from_pem(pem: &str) -> Result<SigningKey, KeyError> {
        match pem_label(pem)? {
            "PRIVATE KEY" => {
                use ed25519_dalek::pkcs8::DecodePrivateKey as _;
                use rsa::pkcs8::DecodePrivateKey as _;
                if let Ok(key) = p256::SecretKey::from_pkcs8_pem(pem) {
                    return Ok(SigningKey::new(Private::Es256(key.into()), None));
                }
                if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
                    return Ok(SigningKey::new(Private::EdDsa(Box::new(key)), None));
                }
                match rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
                    Ok(key) => Ok(SigningKey::new(rsa_private(key)?, None)),
                    Err(_) => Err(key_error(
                        "unsupported private key: expected a P-256 EC, Ed25519 or RSA key",
                    )),
                }
            }
            "EC PRIVATE KEY" => {
                let key = p256::SecretKey::from_pem(pem).map_err(|e| {
                    key_error(format!(
                        "invalid EC PRIVATE KEY (only P-256 is supported): {e}"
                    ))
                })?;
                Ok(SigningKey::new(Private::Es256(key.into()), None))
            }
            "RSA PRIVATE KEY" => {
                use rsa::pkcs1::DecodeRsaPrivateKey as _;
                let key = rsa::RsaPrivateKey::from_pkcs1_pem(pem)
                    .map_err(|e| key_error(format!("invalid RSA PRIVATE KEY: {e}")))?;
                Ok(SigningKey::new(rsa_private(key)?, None))
            }
            "ENCRYPTED PRIVATE KEY" => Err(key_error(
                "encrypted private keys are not supported: decrypt it first \
                 (openssl pkcs8 -in key.pem -out plain.pem)",
            )),
            other => Err(key_error(format!("unsupported PEM block {other:?}"))),
        }
    }

    /// A P-256 key from its 32-byte secret scalar (for tests and generated keys).
    pub fn es256_from_bytes(secret: &[u8; 32]) -> Result<SigningKey, KeyError> {
        let key = p256::ecdsa::SigningKey::from_slice(secret)
            .map_err(|_| key_error("not a valid P-256 secret scalar"))?;
        Ok(SigningKey::new(Private::Es256(key), None))
    }

    /// An Ed25519 key from its 32-byte seed (for tests and generated keys).
    pub fn ed25519_from_seed(seed: &[u8; 32]) -> SigningKey {
        SigningKey::new(
            Private::EdDsa(Box::new(ed25519_dalek::SigningKey::from_bytes(seed))),
            None,
        )
    }

    /// Replaces the key id written into the header of the tokens it signs.
    pub fn with_key_id(mut self, kid: impl Into<String>) -> SigningKey {
        self.public.kid = kid.into();
        self
    }

    pub fn algorithm(&self) -> Algorithm {
        self.public.algorithm()
    }

    /// The public half, which verifies what this key signs.
    pub fn verification_key(&self) -> &VerificationKey {
        &self.public
    }

    /// Signs `message`; the JOSE signature bytes. `entropy` only blinds RSA (the output does
    /// not depend on it).
    pub(crate) fn sign(&self, message: &[u8], entropy: &Entropy) -> Vec<u8> {
        match &self.key {
            Private::Es256(key) => {
                use p256::ecdsa::signature::Signer as _;
                let signature: p256::ecdsa::Signature = key.sign(message);
                signature.to_bytes().to_vec()
            }
            Private::Rs256(key) => {
                use rand_chacha::rand_core::SeedableRng as _;
                use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};
                let seed: [u8; 32] = sha2::Sha256::new()
                    .chain_update(b"berth rsa blinding\0")
                    .chain_update(entropy.0)
                    .finalize()
                    .into();
                let mut rng = rand_chacha::ChaCha20Rng::from_seed(seed);
                let signer = rsa::pkcs1v15::SigningKey::<rsa::sha2::Sha256>::new((**key).clone());
                signer.sign_with_rng(&mut rng, message).to_vec()
            }
            Private::EdDsa(key) => {
                use ed25519_dalek::Signer as _;
                key.sign(message).to_bytes().to_vec()
            }
        }
    }
}

fn rsa_public(key: rsa::RsaPublicKey) -> Result<Public, KeyError> {
    let bits = key.size() * 8;
    if bits < MIN_RSA_BITS {
        return Err(key_error(format!(
            "RSA key of {bits} bits is too small (at least {MIN_RSA_BITS})"
        )));
    }
    Ok(Public::Rs256(Box::new(key)))
}

fn rsa_private(key: rsa::RsaPrivateKey) -> Result<Private, KeyError> {
    rsa_public(key.to_public_key())?;
    key.validate()
        .map_err(|e| key_error(format!("invalid RSA private key: {e}")))?;
    Ok(Private::Rs256(Box::new(key)))
}

fn ec_coordinates(key: &p256::ecdsa::VerifyingKey) -> (String, String) {
    let point = key.to_sec1_bytes();
    // Uncompressed SEC1: 0x04 || x (32) || y (32).
    (
        URL_SAFE_NO_PAD.encode(&point[1..33]),
        URL_SAFE_NO_PAD.encode(&point[33..65]),
    )
}

fn rsa_parameters(key: &rsa::RsaPublicKey) -> (String, String) {
    (
        URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
    )
}

/// RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace.
fn thumbprint(key: &Public) -> String {
    let canonical = match key {
        Public::Es256(key) => {
            let (x, y) = ec_coordinates(key);
            format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#)
        }
        Public::Rs256(key) => {
            let (n, e) = rsa_parameters(key);
            format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#)
        }
        Public::EdDsa(key) => format!(
            r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(key.as_bytes())
        ),
    };
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(canonical.as_bytes()))
}

/// The members of a JWK berth reads. Unknown members (`ext`, `key_ops`, ...) are ignored:
/// WebCrypto's exports carry them.
#[derive(Deserialize)]
struct Jwk {
    kty: String,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    d: Option<String>,
    n: Option<String>,
    e: Option<String>,
    p: Option<String>,
    q: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
}

fn jwk_bytes(field: &Option<String>, name: &str) -> Result<Vec<u8>, KeyError> {
    let text = field
        .as_deref()
        .ok_or_else(|| key_error(format!("JWK lacks \"{name}\"")))?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| key_error(format!("JWK \"{name}\" is not base64url")))
}

impl Jwk {
    /// The public key, and the private key if `d` is present and `want_private`.
    fn keys(&self, want_private: bool) -> Result<(Public, Option<Private>), KeyError> {
        if let Some(use_) = &self.use_
            && use_ != "sig"
        {
            return Err(key_error(format!("JWK \"use\" is {use_:?}, not \"sig\"")));
        }
        let (public, private, algorithm) = match (self.kty.as_str(), self.crv.as_deref()) {
            ("EC", Some("P-256")) => {
                let x = jwk_bytes(&self.x, "x")?;
                let y = jwk_bytes(&self.y, "y")?;
                if x.len() != 32 || y.len() != 32 {
                    return Err(key_error("P-256 JWK coordinates must be 32 bytes"));
                }
                let mut point = vec![4u8];
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let public = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                    .map_err(|_| key_error("P-256 JWK is not a point on the curve"))?;
                let private = if want_private && self.d.is_some() {
                    let d = jwk_bytes(&self.d, "d")?;
                    let key = p256::ecdsa::SigningKey::from_slice(&d)
                        .map_err(|_| key_error("P-256 JWK \"d\" is not a valid scalar"))?;
                    if *key.verifying_key() != public {
                        return Err(key_error("P-256 JWK \"d\" does not match \"x\"/\"y\""));
                    }
                    Some(Private::Es256(key))
                } else {
                    None
                };
                (Public::Es256(public), private, Algorithm::Es256)
            }
            ("EC", crv) => {
                return Err(key_error(format!(
                    "EC curve {crv:?} is not supported (only P-256, for ES256)"
                )));
            }
            ("OKP", Some("Ed25519")) => {
                let x = jwk_bytes(&self.x, "x")?;
                let x: [u8; 32] = x
                    .try_into()
                    .map_err(|_| key_error("Ed25519 JWK \"x\" must be 32 bytes"))?;
                let public = ed25519_dalek::VerifyingKey::from_bytes(&x)
                    .map_err(|_| key_error("Ed25519 JWK \"x\" is not a valid point"))?;
                let private = if want_private && self.d.is_some() {
                    let d = jwk_bytes(&self.d, "d")?;
                    let d: [u8; 32] = d
                        .try_into()
                        .map_err(|_| key_error("Ed25519 JWK \"d\" must be 32 bytes"))?;
                    let key = ed25519_dalek::SigningKey::from_bytes(&d);
                    if key.verifying_key() != public {
                        return Err(key_error("Ed25519 JWK \"d\" does not match \"x\""));
                    }
                    Some(Private::EdDsa(Box::new(key)))
                } else {
                    None
                };
                (Public::EdDsa(public), private, Algorithm::EdDsa)
            }
            ("OKP", crv) => {
                return Err(key_error(format!(
                    "OKP curve {crv:?} is not supported (only Ed25519, for EdDSA)"
                )));
            }
            ("RSA", _) => {
                let n = rsa::BigUint::from_bytes_be(&jwk_bytes(&self.n, "n")?);
                let e = rsa::BigUint::from_bytes_be(&jwk_bytes(&self.e, "e")?);
                let public = rsa::RsaPublicKey::new(n.clone(), e.clone())
                    .map_err(|err| key_error(format!("invalid RSA JWK: {err}")))?;
                let public = rsa_public(public)?;
                let private = if want_private && self.d.is_some() {
                    let d = rsa::BigUint::from_bytes_be(&jwk_bytes(&self.d, "d")?);
                    let p = rsa::BigUint::from_bytes_be(&jwk_bytes(&self.p, "p")?);
                    let q = rsa::BigUint::from_bytes_be(&jwk_bytes(&self.q, "q")?);
                    let key = rsa::RsaPrivateKey::from_components(n, e, d, vec![p, q])
                        .map_err(|err| key_error(format!("invalid RSA private JWK: {err}")))?;
                    Some(rsa_private(key)?)
                } else {
                    None
                };
                (public, private, Algorithm::Rs256)
            }
            (kty, _) => {
                return Err(key_error(format!(
                    "JWK key type {kty:?} is not supported (EC P-256, RSA, OKP Ed25519); \
                     symmetric (oct) keys are refused on purpose"
                )));
            }
        };
        if let Some(alg) = &self.alg
            && alg != algorithm.as_str()
        {
            return Err(key_error(format!(
                "JWK \"alg\" is {alg:?} but the key is for {algorithm}"
            )));
        }
        Ok((public, private))
    }
}

/// Splits text into its PEM blocks (`-----BEGIN X-----` … `-----END X-----`).
fn pem_blocks(text: &str) -> Result<Vec<String>, KeyError> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let Some(end_marker) = block.find("-----END ") else {
            return Err(key_error("PEM block without an END line"));
        };
        let after_end = &block[end_marker + "-----END ".len()..];
        let Some(close) = after_end.find("-----") else {
            return Err(key_error("PEM END line is not terminated"));
        };
        let len = end_marker + "-----END ".len() + close + "-----".len();
        blocks.push(format!("{}\n", block[..len].trim()));
        rest = &block[len..];
    }
    if blocks.is_empty() {
        return Err(key_error(
            "not a key: expected a PEM block (-----BEGIN ...) or a JWK ({\"kty\": ...})",
        ));
    }
    Ok(blocks)
}

fn pem_label(pem: &str) -> Result<&str, KeyError> {
    let rest = pem
        .strip_prefix("-----BEGIN ")
        .ok_or_else(|| key_error("PEM block must start with -----BEGIN"))?;
    let end = rest
        .find("-----")
        .ok_or_else(|| key_error("PEM BEGIN line is not terminated"))?;
    Ok(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn es256_sign_verify_and_jwk_round_trip() {
        let key = SigningKey::es256_from_bytes(&[7; 32]).unwrap();
        let sig = key.sign(b"hello", &Entropy([0; 32]));
        assert_eq!(sig.len(), 64);
        // Deterministic: the same message gives the same signature whatever the entropy.
        assert_eq!(sig, key.sign(b"hello", &Entropy([1; 32])));
        assert!(key.verification_key().verify(b"hello", &sig));
        assert!(!key.verification_key().verify(b"hellO", &sig));
        let jwk = key.verification_key().to_jwk().to_string();
        let back = VerificationKey::parse(&jwk).unwrap();
        assert!(back.verify(b"hello", &sig));
        assert_eq!(back.thumbprint(), key.verification_key().thumbprint());
    }

    #[test]
    fn eddsa_sign_verify() {
        let key = SigningKey::ed25519_from_seed(&[9; 32]);
        let sig = key.sign(b"m", &Entropy([0; 32]));
        assert!(key.verification_key().verify(b"m", &sig));
        let back = VerificationKey::parse(&key.verification_key().to_jwk().to_string()).unwrap();
        assert_eq!(back.algorithm(), Algorithm::EdDsa);
        assert!(back.verify(b"m", &sig));
    }

    #[test]
    fn refuses_symmetric_and_mismatched_jwks() {
        assert!(VerificationKey::parse(r#"{"kty":"oct","k":"c2VjcmV0"}"#).is_err());
        let key = SigningKey::es256_from_bytes(&[7; 32]).unwrap();
        let mut jwk = key.verification_key().to_jwk();
        jwk["alg"] = "HS256".into();
        assert!(VerificationKey::parse(&jwk.to_string()).is_err());
        assert!(VerificationKey::parse("not a key").is_err());
    }

    #[test]
    fn rfc7638_thumbprint_example() {
        // The RSA example of RFC 7638 section 3.1.
        let jwk = r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#;
        let key = VerificationKey::parse(jwk).unwrap();
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        assert_eq!(key.key_id(), "2011-04-29");
    }
}
