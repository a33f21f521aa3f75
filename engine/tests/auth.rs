//! Authentication and authorization: hostile input, the token endpoint, serverless-registry
//! compatibility, key formats, catalog visibility and mounts.

#[path = "auth_support.rs"]
mod support;

use berth_engine::auth::{
    Action, AuthConfig, Authenticator, FailureReason, Principal, Requirement, SigningKey,
    TokenError, User, VerificationKey, requirement,
};
use berth_engine::route::{self, Query};
use berth_engine::{Entropy, ErrorCode, UnixTime};
use http::{HeaderMap, HeaderValue, Method};
use proptest::prelude::*;
use support::*;

fn www_authenticate(error: &berth_engine::RegistryError) -> String {
    error
        .headers
        .iter()
        .find(|(name, _)| name == http::header::WWW_AUTHENTICATE)
        .map(|(_, v)| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

fn alice_token(auth: &Authenticator, now: UnixTime) -> String {
    get_token(
        auth,
        &basic("alice", "wonderland"),
        "service=registry.example.com&scope=repository:team-a/app:pull,push",
        now,
    )
    .unwrap()
}

/// The refusal reason of a bearer token on `GET /v2/team-a/app/manifests/latest`.
fn token_refusal(auth: &Authenticator, token: &str) -> (u16, FailureReason, String) {
    let e = authorize(
        auth,
        "GET",
        "/v2/team-a/app/manifests/latest",
        &bearer(token),
        NOW,
    )
    .unwrap_err();
    (
        e.error.status.as_u16(),
        e.failure.reason.clone(),
        www_authenticate(&e.error),
    )
}

fn invalid(token_error: TokenError) -> FailureReason {
    FailureReason::InvalidToken(token_error)
}

// ── Challenges ───────────────────────────────────────────────────────────────────────────

#[test]
fn missing_credentials_get_a_bearer_challenge_with_the_scope() {
    let auth = authenticator();
    let e = authorize(
        &auth,
        "PUT",
        "/v2/team-a/app/manifests/v1",
        &HeaderMap::new(),
        NOW,
    )
    .unwrap_err();
    assert_eq!(e.error.status, 401);
    assert_eq!(e.error.code, ErrorCode::Unauthorized);
    assert_eq!(e.failure.reason, FailureReason::MissingCredentials);
    assert_eq!(
        www_authenticate(&e.error),
        r#"Bearer realm="https://registry.example.com/token",service="registry.example.com",scope="repository:team-a/app:pull,push""#
    );
    let e = authorize(&auth, "GET", "/v2/", &HeaderMap::new(), NOW).unwrap_err();
    assert_eq!(
        www_authenticate(&e.error),
        r#"Bearer realm="https://registry.example.com/token",service="registry.example.com""#
    );
    let e = authorize(
        &auth,
        "DELETE",
        "/v2/team-a/app/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
        &HeaderMap::new(),
        NOW,
    )
    .unwrap_err();
    assert!(www_authenticate(&e.error).ends_with(r#"scope="repository:team-a/app:delete""#));
}

#[test]
fn catalog_and_mount_challenges() {
    let mut config = config();
    config.anonymous.clear();
    let auth = Authenticator::new(config).unwrap();
    let e = authorize(&auth, "GET", "/v2/_catalog", &HeaderMap::new(), NOW).unwrap_err();
    assert!(www_authenticate(&e.error).ends_with(r#"scope="registry:catalog:*""#));
    let e = authorize(
        &auth,
        "POST",
        "/v2/team-a/app/blobs/uploads/?mount=sha256:0000000000000000000000000000000000000000000000000000000000000000&from=team-b/base",
        &HeaderMap::new(),
        NOW,
    )
    .unwrap_err();
    assert!(
        www_authenticate(&e.error)
            .ends_with(r#"scope="repository:team-a/app:pull,push repository:team-b/base:pull""#),
        "{}",
        www_authenticate(&e.error)
    );
}

#[test]
fn basic_only_configuration_gets_a_basic_challenge() {
    let config = AuthConfig::from_serverless_registry_env(|name| match name {
        "USERNAME" => Some("hello".into()),
        "PASSWORD" => Some("world".into()),
        _ => None,
    })
    .unwrap();
    let auth = Authenticator::new(config).unwrap();
    let e = authorize(&auth, "GET", "/v2/", &HeaderMap::new(), NOW).unwrap_err();
    assert_eq!(e.error.status, 401);
    assert_eq!(
        www_authenticate(&e.error),
        r#"Basic realm="berth",charset="UTF-8""#
    );
}

// ── Hostile Authorization headers ────────────────────────────────────────────────────────

#[test]
fn malformed_authorization_headers_are_401_not_panics() {
    let auth = authenticator();
    let cases: Vec<(&str, HeaderMap)> = vec![
        ("no scheme", authorization("d3JpdGVyOndyMXRl")),
        ("scheme only", authorization("Basic")),
        ("bad base64", authorization("Basic !!!not-base64!!!")),
        ("no colon", basic_raw(b"writerwr1te")),
        ("control characters", basic_raw(b"writer:wr\n1te")),
        ("non-UTF-8 user", basic_raw(b"\xff\xfe:wr1te")),
        (
            "unknown scheme",
            authorization("Digest username=\"writer\""),
        ),
        ("bearer with spaces", authorization("Bearer a b c")),
        ("empty bearer", authorization("Bearer ")),
        (
            "huge header",
            authorization(&format!("Basic {}", "QUFB".repeat(4096))),
        ),
        ("huge bearer", bearer(&"a".repeat(9000))),
        ("bearer junk", bearer("not.a.jwt")),
        ("bearer four parts", bearer("a.b.c.d")),
    ];
    for (name, headers) in cases {
        let e = authorize(
            &auth,
            "GET",
            "/v2/public/base/manifests/latest",
            &headers,
            NOW,
        )
        .expect_err(name);
        assert_eq!(e.error.status, 401, "{name}");
        assert!(!www_authenticate(&e.error).is_empty(), "{name}");
    }
    // Non-visible-ASCII bytes and two Authorization headers.
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::AUTHORIZATION,
        HeaderValue::from_bytes(b"Basic \xe9\xe9").unwrap(),
    );
    let e = authorize(&auth, "GET", "/v2/", &headers, NOW).unwrap_err();
    assert_eq!(e.error.status, 401);
    let mut headers = basic("writer", "wr1te");
    headers.append(
        http::header::AUTHORIZATION,
        HeaderValue::from_static("Basic cmVhZGVyOnIzYWQ="),
    );
    let e = authorize(&auth, "GET", "/v2/", &headers, NOW).unwrap_err();
    assert_eq!(
        e.failure.reason,
        FailureReason::MalformedAuthorization("more than one Authorization header")
    );
}

fn basic_raw(credentials: &[u8]) -> HeaderMap {
    use base64::Engine as _;
    authorization(&format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    ))
}

#[test]
fn failures_name_the_user_but_never_the_password() {
    let auth = authenticator();
    let e = authorize(&auth, "GET", "/v2/", &basic("writer", "hunter2"), NOW).unwrap_err();
    assert_eq!(e.failure.user.as_deref(), Some("writer"));
    assert_eq!(e.failure.reason, FailureReason::WrongPassword);
    let logged = format!("{} {:?} {}", e.failure, e.failure, e);
    assert!(!logged.contains("hunter2"), "{logged}");
    assert_eq!(e.failure.to_string(), "user \"writer\": wrong password");
    // The client is not told which of user or password was wrong.
    let unknown = authorize(&auth, "GET", "/v2/", &basic("nobody", "x"), NOW).unwrap_err();
    assert_eq!(unknown.error.message, e.error.message);
    // Long user names are cut for the log.
    let long = "u".repeat(500);
    let e = authorize(&auth, "GET", "/v2/", &basic(&long, "x"), NOW).unwrap_err();
    assert_eq!(e.failure.user.unwrap().len(), 64);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_authorization_values_are_refused(value in proptest::collection::vec(any::<u8>(), 0..300)) {
        let auth = authenticator();
        if let Ok(value) = HeaderValue::from_bytes(&value) {
            let mut headers = HeaderMap::new();
            headers.insert(http::header::AUTHORIZATION, value);
            let route = route::route("/v2/team-a/app/manifests/latest").unwrap();
            let result = auth.authorize(&headers, &route, &Method::GET, &Query::default(), NOW);
            prop_assert_eq!(result.unwrap_err().error.status.as_u16(), 401);
        }
    }

    #[test]
    fn arbitrary_bearer_tokens_are_refused(token in "[A-Za-z0-9_.-]{1,400}") {
        let auth = authenticator();
        let route = route::route("/v2/public/base/manifests/latest").unwrap();
        let result = auth.authorize(&bearer(&token), &route, &Method::GET, &Query::default(), NOW);
        prop_assert_eq!(result.unwrap_err().error.status.as_u16(), 401);
    }
}

// ── Hostile tokens ───────────────────────────────────────────────────────────────────────

#[test]
fn expired_and_not_yet_valid_tokens() {
    let auth = authenticator();
    let leeway = auth.config().leeway_secs;
    let token = alice_token(&auth, NOW);
    // Valid through exp + leeway.
    let just_valid = UnixTime(NOW.0 + 300 + leeway - 1);
    assert!(
        authorize(
            &auth,
            "GET",
            "/v2/team-a/app/manifests/latest",
            &bearer(&token),
            just_valid
        )
        .is_ok()
    );
    let later = UnixTime(NOW.0 + 300 + leeway);
    let e = authorize(
        &auth,
        "GET",
        "/v2/team-a/app/manifests/latest",
        &bearer(&token),
        later,
    )
    .unwrap_err();
    assert_eq!(e.error.status, 401);
    assert_eq!(
        e.failure.reason,
        invalid(TokenError::Expired {
            exp: NOW.0 + 300,
            now: later.0
        })
    );
    assert!(www_authenticate(&e.error).ends_with(r#",error="invalid_token""#));
    let earlier = UnixTime(NOW.0 - leeway - 1);
    let e = authorize(
        &auth,
        "GET",
        "/v2/team-a/app/manifests/latest",
        &bearer(&token),
        earlier,
    )
    .unwrap_err();
    assert_eq!(
        e.failure.reason,
        invalid(TokenError::NotYetValid {
            nbf: NOW.0,
            now: earlier.0
        })
    );
    // Within the leeway before nbf: accepted.
    let skewed = UnixTime(NOW.0 - leeway);
    assert!(
        authorize(
            &auth,
            "GET",
            "/v2/team-a/app/manifests/latest",
            &bearer(&token),
            skewed
        )
        .is_ok()
    );
}

#[test]
fn wrong_audience_issuer_and_key() {
    let auth = authenticator();
    let key = fixture_p256();
    let access =
        serde_json::json!([{"type": "repository", "name": "team-a/app", "actions": ["pull"]}]);
    let header = serde_json::json!({"alg": "ES256", "typ": "JWT"});
    let sign_with = |claims: &serde_json::Value, key: &p256::ecdsa::SigningKey| {
        forge(&header, claims, |m| es256(key, m))
    };
    let good = sign_with(&registry_claims("alice", access.clone()), &key);
    assert_eq!(
        status(
            &auth,
            "GET",
            "/v2/team-a/app/manifests/latest",
            &bearer(&good)
        ),
        200
    );

    let mut claims = registry_claims("alice", access.clone());
    claims["aud"] = "other.example.com".into();
    assert_eq!(
        token_refusal(&auth, &sign_with(&claims, &key)).1,
        invalid(TokenError::WrongAudience)
    );
    claims["aud"] = serde_json::json!(["other.example.com", SERVICE]);
    assert_eq!(
        status(
            &auth,
            "GET",
            "/v2/team-a/app/manifests/latest",
            &bearer(&sign_with(&claims, &key))
        ),
        200
    );
    claims.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        token_refusal(&auth, &sign_with(&claims, &key)).1,
        invalid(TokenError::MissingClaim("aud"))
    );

    let mut claims = registry_claims("alice", access.clone());
    claims["iss"] = "evil".into();
    assert_eq!(
        token_refusal(&auth, &sign_with(&claims, &key)).1,
        invalid(TokenError::WrongIssuer("evil".into()))
    );
    let mut claims = registry_claims("alice", access.clone());
    claims.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        token_refusal(&auth, &sign_with(&claims, &key)).1,
        invalid(TokenError::MissingClaim("exp"))
    );

    // Another P-256 key: the signature does not verify.
    let other = p256::ecdsa::SigningKey::from_slice(&[3; 32]).unwrap();
    let (status_code, reason, challenge) = token_refusal(
        &auth,
        &sign_with(&registry_claims("alice", access.clone()), &other),
    );
    assert_eq!(
        (status_code, reason),
        (401, invalid(TokenError::BadSignature))
    );
    assert!(challenge.contains(r#"error="invalid_token""#));
    // A token signed by an Ed25519 key: no configured key has that algorithm.
    let forged = forge(
        &serde_json::json!({"alg": "EdDSA"}),
        &registry_claims("alice", access.clone()),
        |m| eddsa_seed(5, m),
    );
    assert_eq!(
        token_refusal(&auth, &forged).1,
        invalid(TokenError::AlgorithmNotAllowed("EdDSA".into()))
    );
    // The attacker's own key embedded in the header is ignored.
    let mut header = serde_json::json!({"alg": "ES256"});
    header["jwk"] = SigningKey::es256_from_bytes(&[3; 32])
        .unwrap()
        .verification_key()
        .to_jwk();
    header["kid"] = auth.jwks()["keys"][0]["kid"].clone();
    let forged = forge(&header, &registry_claims("alice", access), |m| {
        es256(&other, m)
    });
    assert_eq!(
        token_refusal(&auth, &forged).1,
        invalid(TokenError::BadSignature)
    );
}

/// The fixture P-256 key (`ec-pkcs8.pem`, berth's signing key in `config()`), for forging.
fn fixture_p256() -> p256::ecdsa::SigningKey {
    use p256::pkcs8::DecodePrivateKey as _;
    p256::SecretKey::from_pkcs8_pem(EC_PKCS8).unwrap().into()
}

fn es256(key: &p256::ecdsa::SigningKey, message: &[u8]) -> Vec<u8> {
    use p256::ecdsa::signature::Signer as _;
    let signature: p256::ecdsa::Signature = key.sign(message);
    signature.to_bytes().to_vec()
}

/// Signs with the P-256 key whose secret scalar is `[byte; 32]` (berth's
/// `SigningKey::es256_from_bytes(&[byte; 32])`).
fn es256_seed(byte: u8, message: &[u8]) -> Vec<u8> {
    es256(
        &p256::ecdsa::SigningKey::from_slice(&[byte; 32]).unwrap(),
        message,
    )
}

/// Signs with the Ed25519 key of seed `[byte; 32]` (berth's `SigningKey::ed25519_from_seed`).
fn eddsa_seed(byte: u8, message: &[u8]) -> Vec<u8> {
    use ed25519_dalek::Signer as _;
    ed25519_dalek::SigningKey::from_bytes(&[byte; 32])
        .sign(message)
        .to_bytes()
        .to_vec()
}

#[test]
fn alg_none_and_hmac_with_the_public_key_are_refused() {
    let auth = authenticator();
    let access =
        serde_json::json!([{"type": "repository", "name": "team-a/app", "actions": ["*"]}]);
    let claims = registry_claims("writer", access);
    for alg in ["none", "None", "NONE"] {
        let token = forge(&serde_json::json!({"alg": alg}), &claims, |_| Vec::new());
        assert_eq!(
            token_refusal(&auth, &token).1,
            invalid(TokenError::AlgorithmNone)
        );
        // And without a signature part at all.
        let two_parts = token.trim_end_matches('.').to_owned();
        assert_eq!(
            token_refusal(&auth, &two_parts).1,
            invalid(TokenError::Malformed("not three dot-separated parts"))
        );
    }
    // HS256 keyed with every public form of the verification key.
    let public = public_key();
    let jwk = public.to_jwk().to_string();
    let point = {
        use p256::pkcs8::DecodePublicKey as _;
        p256::ecdsa::VerifyingKey::from_public_key_pem(EC_PUBLIC)
            .unwrap()
            .to_sec1_bytes()
            .to_vec()
    };
    for secret in [EC_PUBLIC.as_bytes(), jwk.as_bytes(), &point] {
        for alg in ["HS256", "HS384", "HS512"] {
            let token = forge(
                &serde_json::json!({"alg": alg, "typ": "JWT"}),
                &claims,
                |m| hmac_sha256(secret, m),
            );
            assert_eq!(
                token_refusal(&auth, &token).1,
                invalid(TokenError::AlgorithmNotAllowed(alg.into()))
            );
        }
    }
    // Other unsupported algorithms and a crit header.
    for alg in ["ES384", "PS256", "RS512", ""] {
        let token = forge(&serde_json::json!({"alg": alg}), &claims, |_| vec![0; 64]);
        assert!(matches!(
            token_refusal(&auth, &token).1,
            FailureReason::InvalidToken(TokenError::AlgorithmNotAllowed(_))
        ));
    }
    let key = fixture_p256();
    let token = forge(
        &serde_json::json!({"alg": "ES256", "crit": ["exp"]}),
        &claims,
        |m| es256(&key, m),
    );
    assert_eq!(
        token_refusal(&auth, &token).1,
        invalid(TokenError::CriticalHeader)
    );
}

#[test]
fn tampered_tokens_are_refused() {
    let auth = authenticator();
    let token = alice_token(&auth, NOW);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims = claims(&token);
    claims["access"][0]["name"] = "team-b/app".into();
    {
        use base64::Engine as _;
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    }
    let tampered = parts.join(".");
    assert_eq!(
        token_refusal(&auth, &tampered).1,
        invalid(TokenError::BadSignature)
    );
    // A flipped signature bit.
    let mut bytes = token.into_bytes();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(bytes).unwrap();
    assert_eq!(token_refusal(&auth, &flipped).0, 401);
}

#[test]
fn a_token_scoped_to_another_repository() {
    let auth = authenticator();
    let token = alice_token(&auth, NOW);
    // alice may push team-a/*: her token for team-a/app on team-a/other → 401
    // insufficient_scope, so the client fetches a token for team-a/other.
    let e = authorize(
        &auth,
        "GET",
        "/v2/team-a/other/manifests/latest",
        &bearer(&token),
        NOW,
    )
    .unwrap_err();
    assert_eq!(e.error.status, 401);
    assert!(matches!(
        e.failure.reason,
        FailureReason::InsufficientScope { .. }
    ));
    assert_eq!(
        www_authenticate(&e.error),
        r#"Bearer realm="https://registry.example.com/token",service="registry.example.com",scope="repository:team-a/other:pull",error="insufficient_scope""#
    );
    // ... but she could never get team-b/app: 403.
    let e = authorize(
        &auth,
        "GET",
        "/v2/team-b/app/manifests/latest",
        &bearer(&token),
        NOW,
    )
    .unwrap_err();
    assert_eq!(e.error.status, 403);
    assert_eq!(e.error.code, ErrorCode::Denied);
    assert_eq!(e.failure.user.as_deref(), Some("alice"));
    // A token from another issuer's key (trusted) lacking the scope: only the issuer knows,
    // so 401 insufficient_scope.
    let external = SigningKey::ed25519_from_seed(&[5; 32]);
    let mut config = support::config();
    config.token.as_mut().unwrap().trusted_keys = vec![external.verification_key().clone()];
    let auth = Authenticator::new(config).unwrap();
    let access =
        serde_json::json!([{"type": "repository", "name": "team-a/app", "actions": ["pull"]}]);
    let token = forge(
        &serde_json::json!({"alg": "EdDSA"}),
        &registry_claims("someone", access),
        |m| eddsa_seed(5, m),
    );
    assert_eq!(
        status(
            &auth,
            "GET",
            "/v2/team-a/app/manifests/latest",
            &bearer(&token)
        ),
        200
    );
    assert_eq!(
        status(
            &auth,
            "PUT",
            "/v2/team-a/app/manifests/latest",
            &bearer(&token)
        ),
        401
    );
    assert_eq!(
        status(
            &auth,
            "GET",
            "/v2/team-b/app/manifests/latest",
            &bearer(&token)
        ),
        401
    );
}

#[test]
fn bearer_without_token_configuration() {
    let config = AuthConfig::from_serverless_registry_env(|name| match name {
        "USERNAME" => Some("hello".into()),
        "PASSWORD" => Some("world".into()),
        _ => None,
    })
    .unwrap();
    let auth = Authenticator::new(config).unwrap();
    let e = authorize(&auth, "GET", "/v2/", &bearer("a.b.c"), NOW).unwrap_err();
    assert_eq!(e.failure.reason, FailureReason::BearerNotConfigured);
}

// ── Token endpoint ───────────────────────────────────────────────────────────────────────

#[test]
fn issued_token_verifies_and_has_the_registry_claims() {
    let auth = authenticator();
    assert!(auth.is_token_endpoint("/token"));
    assert!(!auth.is_token_endpoint("/v2/token"));
    let response = auth
        .issue_token(
            &Method::GET,
            &basic("alice", "wonderland"),
            &Query::parse(Some(
                "service=registry.example.com&scope=repository:team-a/app:pull,push&account=alice",
            )),
            b"",
            NOW,
            &Entropy([42; 32]),
        )
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body = token_from(&response);
    assert_eq!(body["token"], body["access_token"]);
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["issued_at"], "2027-01-15T08:00:00Z");
    let token = body["token"].as_str().unwrap();
    let claims = claims(token);
    assert_eq!(
        claims,
        serde_json::json!({
            "iss": "berth", "sub": "alice", "aud": "registry.example.com",
            "exp": NOW.0 + 300, "nbf": NOW.0, "iat": NOW.0,
            "jti": "2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a",
            "access": [{"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]}],
        })
    );
    let identity = authorize(
        &auth,
        "PUT",
        "/v2/team-a/app/manifests/v1",
        &bearer(token),
        NOW,
    )
    .unwrap();
    assert_eq!(
        identity.principal(),
        &Principal::Bearer {
            subject: "alice".into(),
            issuer: "berth".into(),
            token_id: Some("2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a2a".into())
        }
    );
    // Deterministic: same inputs, same bytes.
    let again = get_token(
        &auth,
        &basic("alice", "wonderland"),
        "service=registry.example.com&scope=repository:team-a/app:pull,push&account=alice",
        NOW,
    )
    .unwrap();
    assert_eq!(again, token);
}

#[test]
fn requested_scope_beyond_permissions_is_trimmed() {
    let auth = authenticator();
    let token = get_token(
        &auth,
        &basic("alice", "wonderland"),
        "service=registry.example.com\
         &scope=repository:team-a/app:pull,push,delete\
         &scope=repository:team-b/app:pull\
         &scope=repository:public/base:push,pull repository:team-a/app:pull\
         &scope=registry:catalog:*&scope=unknown:thing:x",
        NOW,
    )
    .unwrap();
    assert_eq!(
        claims(&token)["access"],
        serde_json::json!([
            {"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]},
            {"type": "repository", "name": "public/base", "actions": ["pull"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ])
    );
    assert_eq!(
        status(
            &auth,
            "DELETE",
            "/v2/team-a/app/manifests/v1",
            &bearer(&token)
        ),
        403
    );
    assert_eq!(status(&auth, "GET", "/v2/_catalog", &bearer(&token)), 200);
    // `*` expands to what is permitted.
    let token = get_token(
        &auth,
        &basic("writer", "wr1te"),
        "scope=repository:team-b/app:*",
        NOW,
    )
    .unwrap();
    assert_eq!(
        claims(&token)["access"][0]["actions"],
        serde_json::json!(["pull", "push", "delete"])
    );
}

#[test]
fn anonymous_gets_only_anonymous_grants() {
    let auth = authenticator();
    let token = get_token(
        &auth,
        &HeaderMap::new(),
        "service=registry.example.com&scope=repository:public/base:pull,push&scope=repository:team-a/app:pull",
        NOW,
    )
    .unwrap();
    let claims = claims(&token);
    assert_eq!(claims["sub"], "");
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type": "repository", "name": "public/base", "actions": ["pull"]}])
    );
    // Without anonymous grants there is no anonymous token.
    let mut config = config();
    config.anonymous.clear();
    let auth = Authenticator::new(config).unwrap();
    let e = get_token(
        &auth,
        &HeaderMap::new(),
        "scope=repository:public/base:pull",
        NOW,
    )
    .unwrap_err();
    assert_eq!(e.error.status, 401);
    assert_eq!(e.failure.reason, FailureReason::MissingCredentials);
}

#[test]
fn token_endpoint_refusals() {
    let auth = authenticator();
    let e = get_token(
        &auth,
        &basic("alice", "nope"),
        "scope=repository:team-a/app:pull",
        NOW,
    )
    .unwrap_err();
    assert_eq!(e.error.status, 401);
    assert_eq!(
        www_authenticate(&e.error),
        r#"Basic realm="berth",charset="UTF-8""#
    );
    assert_eq!(e.failure.reason, FailureReason::WrongPassword);
    let e = get_token(&auth, &bearer("a.b.c"), "", NOW).unwrap_err();
    assert_eq!(e.error.status, 401);
    let e = get_token(
        &auth,
        &basic("alice", "wonderland"),
        "service=elsewhere",
        NOW,
    )
    .unwrap_err();
    assert_eq!(e.error.status, 400);
    let e = get_token(
        &auth,
        &basic("alice", "wonderland"),
        "scope=repository:UPPER:pull",
        NOW,
    )
    .unwrap_err();
    assert_eq!(e.error.status, 400);
    let e = get_token(&auth, &basic("alice", "wonderland"), "scope=garbage", NOW).unwrap_err();
    assert_eq!(e.error.status, 400);
    let many = (0..65)
        .map(|i| format!("scope=repository:r{i}:pull"))
        .collect::<Vec<_>>()
        .join("&");
    assert_eq!(
        get_token(&auth, &basic("alice", "wonderland"), &many, NOW)
            .unwrap_err()
            .error
            .status,
        400
    );
    let e = auth
        .issue_token(
            &Method::DELETE,
            &HeaderMap::new(),
            &Query::default(),
            b"",
            NOW,
            &Entropy([0; 32]),
        )
        .unwrap_err();
    assert_eq!(e.error.status, 405);
    // No signing key: berth issues no tokens.
    let mut config = config();
    let key = config.token.as_mut().unwrap().signing_key.take().unwrap();
    config.token.as_mut().unwrap().trusted_keys = vec![key.verification_key().clone()];
    let verifier = Authenticator::new(config).unwrap();
    assert!(!verifier.is_token_endpoint("/token"));
    assert_eq!(
        get_token(&verifier, &basic("alice", "wonderland"), "", NOW)
            .unwrap_err()
            .error
            .status,
        404
    );
    // ... but still verifies berth's tokens from elsewhere (as an external issuer's).
    let token = alice_token(&auth, NOW);
    assert_eq!(
        status(
            &verifier,
            "GET",
            "/v2/team-a/app/manifests/latest",
            &bearer(&token)
        ),
        200
    );
}

#[test]
fn oauth2_post_password_grant() {
    let auth = authenticator();
    let form = b"grant_type=password&username=alice&password=wonderland&service=registry.example.com&scope=repository%3Ateam-a%2Fapp%3Apull+repository%3Ateam-b%2Fapp%3Apull&client_id=containerd-client";
    let response = auth
        .issue_token(
            &Method::POST,
            &HeaderMap::new(),
            &Query::default(),
            form,
            NOW,
            &Entropy([1; 32]),
        )
        .unwrap();
    let token = token_from(&response)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        claims(&token)["access"],
        serde_json::json!([{"type": "repository", "name": "team-a/app", "actions": ["pull"]}])
    );
    // refresh_token (and anything else) is a 400, on which containerd falls back to GET.
    let e = auth
        .issue_token(
            &Method::POST,
            &HeaderMap::new(),
            &Query::default(),
            b"grant_type=refresh_token&refresh_token=x",
            NOW,
            &Entropy([1; 32]),
        )
        .unwrap_err();
    assert_eq!(e.error.status, 400);
    let e = auth
        .issue_token(
            &Method::POST,
            &HeaderMap::new(),
            &Query::default(),
            b"grant_type=password&username=alice&password=bad",
            NOW,
            &Entropy([1; 32]),
        )
        .unwrap_err();
    assert_eq!(e.error.status, 401);
}

#[test]
fn tokens_signed_with_rsa_and_ed25519_keys_verify() {
    for pem in [RSA_PKCS8, RSA_PKCS1, ED25519_PKCS8, EC_SEC1] {
        let mut config = config();
        config.token.as_mut().unwrap().signing_key = Some(SigningKey::parse(pem).unwrap());
        config.token.as_mut().unwrap().ttl_secs = 60;
        let auth = Authenticator::new(config).unwrap();
        let token = alice_token(&auth, NOW);
        assert_eq!(claims(&token)["exp"], NOW.0 + 60);
        assert_eq!(
            status(&auth, "PUT", "/v2/team-a/app/manifests/v1", &bearer(&token)),
            200
        );
        // A verifier that only has the public PEM accepts it too.
        let public = match pem {
            RSA_PKCS8 | RSA_PKCS1 => RSA_PUBLIC,
            ED25519_PKCS8 => ED25519_PUBLIC,
            _ => EC_PUBLIC,
        };
        let mut config = support::config();
        let token_config = config.token.as_mut().unwrap();
        token_config.signing_key = None;
        token_config.trusted_keys = vec![VerificationKey::parse(public).unwrap()];
        let verifier = Authenticator::new(config).unwrap();
        assert_eq!(
            status(
                &verifier,
                "PUT",
                "/v2/team-a/app/manifests/v1",
                &bearer(&token)
            ),
            200
        );
    }
}

// ── serverless-registry compatibility ────────────────────────────────────────────────────

#[test]
fn serverless_registry_jwt_public_key_and_tokens_work_unchanged() {
    let sr = serverless();
    let env = |name: &str| match name {
        "JWT_REGISTRY_TOKENS_PUBLIC_KEY" => Some(sr.public_key.clone()),
        // Ignored when the JWT key is set, as in serverless-registry.
        "USERNAME" => Some("hello".into()),
        "PASSWORD" => Some("world".into()),
        _ => None,
    };
    let config = AuthConfig::from_serverless_registry_env(env).unwrap();
    assert!(config.users.is_empty());
    assert_eq!(config.password_jwt_keys.len(), 1);
    let auth = Authenticator::new(config).unwrap();
    let m = "/v2/any/repo/manifests/latest";
    // The user name is ignored; the password is the token.
    let pull = basic("whatever", &sr.pull);
    assert_eq!(status(&auth, "GET", "/v2/", &pull), 200);
    assert_eq!(status(&auth, "GET", m, &pull), 200);
    assert_eq!(status(&auth, "PUT", m, &pull), 403);
    assert_eq!(status(&auth, "DELETE", m, &pull), 403);
    let push = basic("v0", &sr.pull_push);
    for method in ["GET", "HEAD", "PUT", "DELETE"] {
        assert_eq!(status(&auth, method, m, &push), 200, "{method}");
    }
    assert_eq!(
        status(&auth, "POST", "/v2/any/repo/blobs/uploads/", &push),
        200
    );
    let push_only = basic("v0", &sr.push);
    assert_eq!(status(&auth, "HEAD", m, &push_only), 200);
    assert_eq!(status(&auth, "GET", m, &push_only), 403);
    let identity = authorize(&auth, "GET", m, &pull, NOW).unwrap();
    assert_eq!(
        identity.principal(),
        &Principal::PasswordJwt {
            username: Some("v0".into()),
            account_id: Some("acct-1234".into())
        }
    );
    let e = authorize(&auth, "GET", m, &basic("v0", &sr.expired), NOW).unwrap_err();
    assert_eq!(e.error.status, 401);
    assert!(matches!(
        e.failure.reason,
        FailureReason::InvalidToken(TokenError::Expired {
            exp: 1_700_000_000,
            ..
        })
    ));
    assert_eq!(
        www_authenticate(&e.error),
        r#"Basic realm="berth",charset="UTF-8""#
    );
    // "hello"/"world" do not work: the password is not a token.
    assert_eq!(status(&auth, "GET", m, &basic("hello", "world")), 401);
    // A token signed with another key.
    let forged = forge(
        &serde_json::json!({"alg": "ES256", "typ": "JWT"}),
        &serde_json::json!({"username": "v0", "capabilities": ["pull", "push"], "exp": 4102444800u64}),
        |msg| es256_seed(3, msg),
    );
    assert_eq!(status(&auth, "GET", m, &basic("v0", &forged)), 401);
}

#[test]
fn serverless_registry_token_claims_edge_cases() {
    let key = SigningKey::es256_from_bytes(&[3; 32]).unwrap();
    let auth = Authenticator::new(AuthConfig {
        password_jwt_keys: vec![key.verification_key().clone()],
        ..AuthConfig::default()
    })
    .unwrap();
    let token = |claims: serde_json::Value| {
        basic(
            "v0",
            &forge(&serde_json::json!({"alg": "ES256"}), &claims, |m| {
                es256_seed(3, m)
            }),
        )
    };
    let m = "/v2/a/manifests/latest";
    let reason = |headers: &HeaderMap| {
        authorize(&auth, "GET", m, headers, NOW)
            .unwrap_err()
            .failure
            .reason
    };
    assert_eq!(
        reason(&token(serde_json::json!({"capabilities": ["pull"]}))),
        invalid(TokenError::MissingClaim("exp"))
    );
    assert_eq!(
        reason(&token(serde_json::json!({"exp": 4102444800u64}))),
        invalid(TokenError::MissingClaim("capabilities"))
    );
    assert_eq!(
        reason(&token(
            serde_json::json!({"exp": 4102444800u64, "capabilities": ["admin"]})
        )),
        invalid(TokenError::NoCapabilities)
    );
    assert_eq!(
        reason(&token(
            serde_json::json!({"exp": 4102444800u64, "nbf": 4102444000u64, "capabilities": ["pull"]})
        )),
        invalid(TokenError::NotYetValid {
            nbf: 4102444000,
            now: NOW.0
        })
    );
    // Fractional and far-future dates are numbers too.
    assert_eq!(
        status(
            &auth,
            "GET",
            m,
            &token(serde_json::json!({"exp": 4102444800.5, "capabilities": ["pull"]}))
        ),
        200
    );
}

#[test]
fn serverless_registry_users() {
    let env = |name: &str| match name {
        "USERNAME" => Some("hello".into()),
        "PASSWORD" => Some("world".into()),
        "READONLY_USERNAME" => Some("ro".into()),
        "READONLY_PASSWORD" => Some("only".into()),
        "JWT_REGISTRY_TOKENS_PUBLIC_KEY" => Some(String::new()),
        _ => None,
    };
    let auth = Authenticator::new(AuthConfig::from_serverless_registry_env(env).unwrap()).unwrap();
    let m = "/v2/ns/hello/manifests/latest";
    assert_eq!(status(&auth, "PUT", m, &basic("hello", "world")), 200);
    assert_eq!(status(&auth, "DELETE", m, &basic("hello", "world")), 200);
    assert_eq!(status(&auth, "GET", m, &basic("ro", "only")), 200);
    assert_eq!(status(&auth, "PUT", m, &basic("ro", "only")), 403);
    assert_eq!(status(&auth, "GET", m, &basic("ro", "world")), 401);
    assert_eq!(status(&auth, "GET", m, &HeaderMap::new()), 401);
    // Empty variables count as unset: nothing configured.
    let none = AuthConfig::from_serverless_registry_env(|name| match name {
        "USERNAME" | "PASSWORD" => Some(String::new()),
        _ => None,
    })
    .unwrap();
    assert!(!none.is_configured());
    // Half of a pair (an empty variable counting as unset) is an error, not a user dropped.
    for (set, unset) in [
        ("USERNAME", "PASSWORD"),
        ("PASSWORD", "USERNAME"),
        ("READONLY_USERNAME", "READONLY_PASSWORD"),
        ("READONLY_PASSWORD", "READONLY_USERNAME"),
    ] {
        let e = AuthConfig::from_serverless_registry_env(|name| match name {
            n if n == set => Some("x".into()),
            n if n == unset => Some(String::new()),
            _ => None,
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{set} is set without {unset}: set both or neither"),
        );
    }
    // Keys that are not base64 of a key are refused with the variable's name.
    let e = AuthConfig::from_serverless_registry_env(|name| {
        (name == "JWT_REGISTRY_TOKENS_PUBLIC_KEY").then(|| "bm90IGEga2V5".to_owned())
    })
    .unwrap_err();
    assert!(
        e.to_string().contains("JWT_REGISTRY_TOKENS_PUBLIC_KEY"),
        "{e}"
    );
    // The public key as raw JWK text, or as (base64 of) PEM, works too.
    for value in [public_key().to_jwk().to_string(), EC_PUBLIC.to_owned(), {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(EC_PUBLIC)
    }] {
        let config = AuthConfig::from_serverless_registry_env(|name| {
            (name == "JWT_REGISTRY_TOKENS_PUBLIC_KEY").then(|| value.clone())
        })
        .unwrap();
        assert_eq!(
            config.password_jwt_keys[0].thumbprint(),
            public_key().thumbprint()
        );
    }
}

// ── Configuration states ─────────────────────────────────────────────────────────────────

#[test]
fn unconfigured_refuses_everything_and_open_allows_everything() {
    let config = AuthConfig::default();
    assert!(!config.is_configured());
    let auth = Authenticator::new(config).unwrap();
    for (method, uri) in [
        ("GET", "/v2/"),
        ("GET", "/v2/a/manifests/x"),
        ("PUT", "/v2/a/manifests/x"),
    ] {
        let e = authorize(&auth, method, uri, &HeaderMap::new(), NOW).unwrap_err();
        assert_eq!(e.error.status, 401);
        assert_eq!(e.failure.reason, FailureReason::NotConfigured);
    }
    let auth = Authenticator::new(AuthConfig::open()).unwrap();
    for (method, uri) in [
        ("GET", "/v2/"),
        ("GET", "/v2/_catalog"),
        ("PUT", "/v2/a/manifests/x"),
        ("DELETE", "/v2/a/manifests/x"),
    ] {
        assert_eq!(
            status(&auth, method, uri, &HeaderMap::new()),
            200,
            "{method} {uri}"
        );
    }
    // Anonymous pull only, nobody else: /v2/ answers anonymously.
    let auth = Authenticator::new(AuthConfig {
        anonymous: vec![grant("*:pull")],
        ..AuthConfig::default()
    })
    .unwrap();
    assert_eq!(status(&auth, "GET", "/v2/", &HeaderMap::new()), 200);
    assert_eq!(
        status(&auth, "PUT", "/v2/a/manifests/x", &HeaderMap::new()),
        401
    );
}

#[test]
fn invalid_configurations_are_refused() {
    let mut config = config();
    config.users.push(User::plain("writer", "again", vec![]));
    assert!(
        Authenticator::new(config)
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
    let mut config = config_without_users();
    config.users.push(User::plain("a:b", "x", vec![]));
    assert!(Authenticator::new(config).is_err());
    let mut config = support::config();
    config.token.as_mut().unwrap().path = "/v2/token".into();
    assert!(Authenticator::new(config).is_err());
    let mut config = support::config();
    config.token.as_mut().unwrap().realm = "https://x/\"token".into();
    assert!(Authenticator::new(config).is_err());
    let mut config = support::config();
    config.token.as_mut().unwrap().signing_key = None;
    assert!(Authenticator::new(config).is_err());
    let mut config = support::config();
    config.token.as_mut().unwrap().ttl_secs = 0;
    assert!(Authenticator::new(config).is_err());
}

fn config_without_users() -> AuthConfig {
    let mut config = config();
    config.users.clear();
    config
}

// ── Keys and htpasswd ────────────────────────────────────────────────────────────────────

#[test]
fn key_formats() {
    use berth_engine::auth::Algorithm;
    for (pem, alg) in [
        (EC_PKCS8, Algorithm::Es256),
        (EC_SEC1, Algorithm::Es256),
        (RSA_PKCS8, Algorithm::Rs256),
        (RSA_PKCS1, Algorithm::Rs256),
        (ED25519_PKCS8, Algorithm::EdDsa),
    ] {
        let key = SigningKey::parse(pem).unwrap();
        assert_eq!(key.algorithm(), alg);
        // A private PEM also serves as a verification key.
        assert_eq!(
            VerificationKey::parse(pem).unwrap().thumbprint(),
            key.verification_key().thumbprint()
        );
        // JWK round trip of the public half.
        let jwk = key.verification_key().to_jwk();
        assert_eq!(jwk["alg"], alg.as_str());
        assert_eq!(
            VerificationKey::parse(&jwk.to_string())
                .unwrap()
                .thumbprint(),
            key.verification_key().thumbprint()
        );
    }
    for (pem, alg) in [
        (EC_PUBLIC, Algorithm::Es256),
        (RSA_PUBLIC, Algorithm::Rs256),
        (ED25519_PUBLIC, Algorithm::EdDsa),
    ] {
        assert_eq!(VerificationKey::parse(pem).unwrap().algorithm(), alg);
    }
    // Too small an RSA key.
    assert!(
        VerificationKey::parse(RSA1024_PUBLIC)
            .unwrap_err()
            .to_string()
            .contains("too small")
    );
    // A public key is not a signing key; several PEM blocks make a key set.
    assert!(SigningKey::parse(EC_PUBLIC).is_err());
    let set =
        VerificationKey::parse_all(&format!("{EC_PUBLIC}{RSA_PUBLIC}{ED25519_PUBLIC}")).unwrap();
    assert_eq!(set.len(), 3);
    let jwks = serde_json::json!({"keys": set.iter().map(|k| k.to_jwk()).collect::<Vec<_>>()});
    assert_eq!(
        VerificationKey::parse_all(&jwks.to_string()).unwrap().len(),
        3
    );
    assert!(VerificationKey::parse(&jwks.to_string()).is_err());
    // A private JWK (WebCrypto's export form) signs.
    let ec = SigningKey::es256_from_bytes(&[7; 32]).unwrap();
    let mut jwk = ec.verification_key().to_jwk();
    {
        use base64::Engine as _;
        jwk["d"] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode([7u8; 32])
            .into();
    }
    jwk["ext"] = true.into();
    jwk["key_ops"] = serde_json::json!(["sign"]);
    assert_eq!(
        SigningKey::parse(&jwk.to_string())
            .unwrap()
            .verification_key()
            .thumbprint(),
        ec.verification_key().thumbprint()
    );
    assert!(
        SigningKey::parse(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"
        )
        .unwrap_err()
        .to_string()
        .contains("encrypted")
    );
}

#[test]
fn htpasswd_users_log_in_with_bcrypt() {
    let auth = authenticator();
    // alice ($2y$, cost 5), bob ($2y$, password with ':' and spaces), erin ($2b$).
    assert_eq!(
        status(&auth, "GET", "/v2/", &basic("alice", "wonderland")),
        200
    );
    assert_eq!(
        status(&auth, "GET", "/v2/", &basic("bob", "p@ss:word with spaces")),
        200
    );
    assert_eq!(
        status(&auth, "GET", "/v2/", &basic("erin", "python-secret")),
        200
    );
    assert_eq!(
        status(&auth, "GET", "/v2/", &basic("alice", "Wonderland")),
        401
    );
    let mut config = AuthConfig::default();
    let e = config
        .add_htpasswd("carol:$apr1$rZzqKjD.$OAI3t7EUFOAp7Ry19IflL/\n", &[])
        .unwrap_err();
    assert!(
        e.to_string().contains("carol") && e.to_string().contains("htpasswd -B"),
        "{e}"
    );
}

// ── Requirements, catalog visibility, mounts ─────────────────────────────────────────────

#[test]
fn route_and_method_map_to_actions() {
    let digest = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    let cases = [
        ("GET", "/v2/".to_owned(), None),
        ("GET", "/v2/_catalog".to_owned(), None),
        ("GET", format!("/v2/r/blobs/{digest}"), Some(Action::Pull)),
        ("HEAD", format!("/v2/r/blobs/{digest}"), Some(Action::Pull)),
        (
            "DELETE",
            format!("/v2/r/blobs/{digest}"),
            Some(Action::Delete),
        ),
        ("GET", "/v2/r/manifests/t".to_owned(), Some(Action::Pull)),
        ("PUT", "/v2/r/manifests/t".to_owned(), Some(Action::Push)),
        (
            "DELETE",
            "/v2/r/manifests/t".to_owned(),
            Some(Action::Delete),
        ),
        ("GET", "/v2/r/tags/list".to_owned(), Some(Action::Pull)),
        (
            "GET",
            format!("/v2/r/referrers/{digest}"),
            Some(Action::Pull),
        ),
        (
            "POST",
            "/v2/r/blobs/uploads/".to_owned(),
            Some(Action::Push),
        ),
        (
            "GET",
            "/v2/r/blobs/uploads/0123456789abcdef0123456789abcdef".to_owned(),
            Some(Action::Push),
        ),
        (
            "PATCH",
            "/v2/r/blobs/uploads/0123456789abcdef0123456789abcdef".to_owned(),
            Some(Action::Push),
        ),
        (
            "PUT",
            "/v2/r/blobs/uploads/0123456789abcdef0123456789abcdef".to_owned(),
            Some(Action::Push),
        ),
        (
            "DELETE",
            "/v2/r/blobs/uploads/0123456789abcdef0123456789abcdef".to_owned(),
            Some(Action::Push),
        ),
    ];
    for (method, path, expected) in cases {
        let route = route::route(&path).unwrap();
        let got = requirement(&route, &Method::from_bytes(method.as_bytes()).unwrap());
        match (got, expected) {
            (Requirement::Repository { name, action }, Some(expected)) => {
                assert_eq!((name.as_str(), action), ("r", expected), "{method} {path}");
            }
            (Requirement::Base | Requirement::Catalog, None) => {}
            (got, expected) => panic!("{method} {path}: {got:?} vs {expected:?}"),
        }
    }
}

#[test]
fn catalog_shows_only_what_the_caller_may_see() {
    let auth = authenticator();
    let repos = ["public/base", "team-a/app", "team-a/lib", "team-b/app"];
    let visible = |headers: &HeaderMap| {
        let identity = authorize(&auth, "GET", "/v2/_catalog", headers, NOW).unwrap();
        repos
            .iter()
            .filter(|r| auth.can_see(&identity, r))
            .copied()
            .collect::<Vec<_>>()
    };
    assert_eq!(visible(&HeaderMap::new()), ["public/base"]);
    assert_eq!(
        visible(&basic("alice", "wonderland")),
        ["public/base", "team-a/app", "team-a/lib"]
    );
    assert_eq!(visible(&basic("reader", "r3ad")), repos);
    // A catalog token berth issued to alice sees what alice may see.
    let token = get_token(
        &auth,
        &basic("alice", "wonderland"),
        "scope=registry:catalog:*",
        NOW,
    )
    .unwrap();
    assert_eq!(
        visible(&bearer(&token)),
        ["public/base", "team-a/app", "team-a/lib"]
    );
    // Anonymous catalog without anonymous grants: 401.
    let auth = Authenticator::new(config_without_anonymous()).unwrap();
    assert_eq!(status(&auth, "GET", "/v2/_catalog", &HeaderMap::new()), 401);
}

fn config_without_anonymous() -> AuthConfig {
    let mut config = config();
    config.anonymous.clear();
    config
}

#[test]
fn mounts_need_pull_on_the_source() {
    let auth = authenticator();
    let mount = "/v2/team-a/app/blobs/uploads/?mount=sha256:0000000000000000000000000000000000000000000000000000000000000000&from=team-b/app";
    let alice = authorize(&auth, "POST", mount, &basic("alice", "wonderland"), NOW).unwrap();
    assert!(!auth.can_mount_from(&alice, Some("team-b/app")));
    assert!(auth.can_mount_from(&alice, Some("team-a/lib")));
    assert!(auth.can_mount_from(&alice, Some("public/base")));
    // Without `from` the blob may come from anywhere: only for who may pull everything.
    assert!(!auth.can_mount_from(&alice, None));
    let writer = authorize(&auth, "POST", mount, &basic("writer", "wr1te"), NOW).unwrap();
    assert!(auth.can_mount_from(&writer, Some("team-b/app")));
    assert!(auth.can_mount_from(&writer, None));
    // Push on the target is authorize's job.
    assert_eq!(status(&auth, "POST", mount, &basic("reader", "r3ad")), 403);
    assert!(auth.can(&writer, Action::Delete, "team-b/app"));
    assert!(!auth.can(&alice, Action::Delete, "team-a/app"));
}
