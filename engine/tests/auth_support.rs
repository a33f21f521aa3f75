//! Shared setup for the auth tests (`#[path]`-included by `auth.rs` and `auth_matrix.rs`).
#![allow(dead_code)]

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use berth_engine::auth::{
    AuthConfig, AuthError, Authenticator, Grant, Identity, SigningKey, TokenConfig, VerificationKey,
};
use berth_engine::route::{self, Query};
use berth_engine::{Entropy, UnixTime};
use http::{HeaderMap, HeaderValue, Method};

pub const NOW: UnixTime = UnixTime(1_800_000_000);
pub const REALM: &str = "https://registry.example.com/token";
pub const SERVICE: &str = "registry.example.com";
pub const ISSUER: &str = "berth";

pub const HTPASSWD: &str = include_str!("data/auth/htpasswd");
pub const EC_PKCS8: &str = include_str!("data/auth/ec-pkcs8.pem");
pub const EC_SEC1: &str = include_str!("data/auth/ec-sec1.pem");
pub const EC_PUBLIC: &str = include_str!("data/auth/ec-public.pem");
pub const RSA_PKCS8: &str = include_str!("data/auth/rsa-pkcs8.pem");
pub const RSA_PKCS1: &str = include_str!("data/auth/rsa-pkcs1.pem");
pub const RSA_PUBLIC: &str = include_str!("data/auth/rsa-public.pem");
pub const RSA1024_PUBLIC: &str = include_str!("data/auth/rsa1024-public.pem");
pub const ED25519_PKCS8: &str = include_str!("data/auth/ed25519-pkcs8.pem");
pub const ED25519_PUBLIC: &str = include_str!("data/auth/ed25519-public.pem");

/// cloudflare/serverless-registry's key and tokens (see data/auth/README.md).
pub struct Serverless {
    pub public_key: String,
    pub pull: String,
    pub pull_push: String,
    pub push: String,
    pub expired: String,
}

pub fn serverless() -> Serverless {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("data/auth/serverless-registry.json")).unwrap();
    let s = |k: &str| v[k].as_str().unwrap().to_owned();
    Serverless {
        public_key: s("JWT_REGISTRY_TOKENS_PUBLIC_KEY"),
        pull: s("pull"),
        pull_push: s("pull_push"),
        push: s("push"),
        expired: s("expired"),
    }
}

pub fn grant(text: &str) -> Grant {
    Grant::parse(text).unwrap()
}

/// The configuration the matrix and most tests use:
/// - `reader` / `r3ad`: pull everything; `writer` / `wr1te`: pull, push, delete everything;
/// - `alice` (htpasswd, bcrypt) : pull and push `team-a/*`; `bob`, `erin`: nothing extra;
/// - anonymous: pull `public/*`;
/// - JWT passwords verified with serverless-registry's key;
/// - tokens: issued by berth (ES256, `ec-pkcs8.pem`), realm/service/issuer above.
pub fn config() -> AuthConfig {
    let mut config = AuthConfig::default();
    config.users.push(berth_engine::auth::User::plain(
        "reader",
        "r3ad",
        vec![grant("*:pull")],
    ));
    config.users.push(berth_engine::auth::User::plain(
        "writer",
        "wr1te",
        vec![grant("*:*")],
    ));
    config.add_htpasswd(HTPASSWD, &[]).unwrap();
    for user in &mut config.users {
        if user.name == "alice" {
            user.grants = vec![grant("team-a/*:pull,push")];
        }
    }
    config.anonymous.push(grant("public/*:pull"));
    config.password_jwt_keys = vec![
        AuthConfig::from_serverless_registry_env(|name| {
            (name == "JWT_REGISTRY_TOKENS_PUBLIC_KEY").then(|| serverless().public_key)
        })
        .unwrap()
        .password_jwt_keys
        .remove(0),
    ];
    config.token = Some(
        TokenConfig::new(REALM, SERVICE, ISSUER)
            .with_signing_key(SigningKey::parse(EC_PKCS8).unwrap()),
    );
    config
}

pub fn authenticator() -> Authenticator {
    Authenticator::new(config()).unwrap()
}

pub fn basic(user: &str, password: &str) -> HeaderMap {
    authorization(&format!(
        "Basic {}",
        STANDARD.encode(format!("{user}:{password}"))
    ))
}

pub fn bearer(token: &str) -> HeaderMap {
    authorization(&format!("Bearer {token}"))
}

pub fn authorization(value: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_str(value).unwrap(),
    );
    headers
}

/// `authorize` for a request line like `GET /v2/a/manifests/latest`.
pub fn authorize(
    auth: &Authenticator,
    method: &str,
    uri: &str,
    headers: &HeaderMap,
    now: UnixTime,
) -> Result<Identity, AuthError> {
    let uri: http::Uri = uri.parse().unwrap();
    let route = route::route(uri.path()).unwrap();
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    auth.authorize(headers, &route, &method, &Query::parse(uri.query()), now)
}

/// The status `authorize` decides: 200 when allowed.
pub fn status(auth: &Authenticator, method: &str, uri: &str, headers: &HeaderMap) -> u16 {
    match authorize(auth, method, uri, headers, NOW) {
        Ok(_) => 200,
        Err(e) => e.error.status.as_u16(),
    }
}

/// The token body of a token-endpoint response.
pub fn token_from(response: &berth_engine::Response) -> serde_json::Value {
    match response.body() {
        berth_engine::Body::Bytes(b) => serde_json::from_slice(b).unwrap(),
        other => panic!("unexpected body {other:?}"),
    }
}

/// GETs a token from the endpoint.
pub fn get_token(
    auth: &Authenticator,
    headers: &HeaderMap,
    query: &str,
    now: UnixTime,
) -> Result<String, AuthError> {
    let response = auth.issue_token(
        &Method::GET,
        headers,
        &Query::parse(Some(query)),
        b"",
        now,
        &Entropy([42; 32]),
    )?;
    Ok(token_from(&response)["token"].as_str().unwrap().to_owned())
}

/// The decoded payload of a JWT (unverified).
pub fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Builds a JWS from raw header and claims with `sign` over `header.payload`.
pub fn forge(
    header: &serde_json::Value,
    claims: &serde_json::Value,
    sign: impl Fn(&[u8]) -> Vec<u8>,
) -> String {
    let h = URL_SAFE_NO_PAD.encode(header.to_string());
    let c = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{h}.{c}");
    let signature = URL_SAFE_NO_PAD.encode(sign(signed.as_bytes()));
    format!("{signed}.{signature}")
}

/// HMAC-SHA256 (RFC 2104), for forging HS256 tokens.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = sha2::Sha256::new()
        .chain_update(&ipad)
        .chain_update(message)
        .finalize();
    sha2::Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// Valid registry claims for `sub`, issued at `now`, with `access`.
pub fn registry_claims(sub: &str, access: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "iss": ISSUER, "sub": sub, "aud": SERVICE,
        "exp": NOW.0 + 300, "nbf": NOW.0, "iat": NOW.0, "jti": "x",
        "access": access,
    })
}

pub fn public_key() -> VerificationKey {
    SigningKey::parse(EC_PKCS8)
        .unwrap()
        .verification_key()
        .clone()
}
