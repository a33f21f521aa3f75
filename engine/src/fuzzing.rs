//! Entry points of the fuzz targets, shared with the test that replays their seed corpora
//! under `cargo test`, so a crash found by a fuzzer becomes a stable regression test.
//!
//! Each function takes arbitrary bytes and must neither panic nor break an invariant; the
//! assertions inside are the invariants.

use crate::digest::Digest;
use crate::testing::{Driver, MemoryStore, request};
use crate::upload::state::UploadState;
use crate::{Config, Registry};

/// Manifest parsing and validation, with the content type taken from the first line.
pub fn manifest(data: &[u8]) {
    let (content_type, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (std::str::from_utf8(&data[..i]).ok(), &data[i + 1..]),
        None => (None, data),
    };
    if let Ok(manifest) = crate::manifest::parse(content_type, body) {
        // A manifest that parses has a supported media type and well-formed descriptors.
        assert!(!manifest.media_type.is_empty());
        for descriptor in manifest.references.iter().chain(manifest.config.iter()) {
            assert_eq!(
                Digest::parse(&descriptor.digest.to_string()).as_ref(),
                Ok(&descriptor.digest)
            );
        }
    }
}

/// `Content-Range` and `Range` parsing against an object size from the first 8 bytes.
pub fn ranges(data: &[u8]) {
    let size = data
        .get(..8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let text = String::from_utf8_lossy(data.get(8..).unwrap_or_default());
    if let Some(range) = crate::range::parse_content_range(&text) {
        assert!(range.first <= range.last);
    }
    if let crate::range::RangeRequest::Partial(range) = crate::range::parse_range(Some(&text), size)
    {
        assert!(range.first <= range.last && range.last < size);
    }
}

/// Decoding a stored upload state record: any bytes are refused or give a consistent record,
/// which encodes back to a record that decodes to the same state.
pub fn upload_state(data: &[u8]) {
    if let Ok((state, hash)) = UploadState::decode(data) {
        assert_eq!(hash.algorithm(), state.algorithm);
        if !state.is_legacy_publishing() {
            let tail = state.tail.as_ref().map_or(0, |t| t.len);
            assert_eq!(
                state.offset,
                state.parts.len() as u64 * state.part_size + tail
            );
        }
        let encoded = state.encode().expect("a decoded record encodes");
        let (again, _) = UploadState::decode(&encoded).expect("an encoded record decodes");
        assert_eq!(again, state);
    }
}

/// Routing of an arbitrary request: the first line is the method, the second the URI, then
/// headers (`name: value` lines) until an empty line, then the body. Whatever arrives, the
/// answer is a response below 500 (the memory store never fails).
pub fn request_routing(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let (Some(method), Some(uri)) = (lines.next(), lines.next()) else {
        return;
    };
    let mut builder = http::Request::builder()
        .method(method.trim())
        .uri(uri.trim());
    let mut body = String::new();
    let mut in_body = false;
    for line in lines {
        if in_body {
            body.push_str(line);
            body.push('\n');
        } else if line.trim().is_empty() {
            in_body = true;
        } else if let Some((name, value)) = line.split_once(':') {
            builder = builder.header(name.trim(), value.trim());
        }
    }
    let Ok(request) = builder.body(body.into_bytes()) else {
        return;
    };
    let mut driver = default_driver();
    let response = driver.send(request);
    assert!(
        response.status().as_u16() < 500,
        "{}: {:?}",
        response.status(),
        response.body()
    );
}

fn default_driver() -> Driver {
    Driver::new(Registry::new(Config::default()).expect("the default configuration is valid"))
}

/// A whole-engine session: each byte pair picks an operation and its parameter from a small
/// vocabulary of pushes, pulls, chunks, deletes and races on a few repositories. After the
/// session, nothing in the store is readable under a digest its bytes do not hash to, and no
/// request got a 500.
pub fn engine_session(data: &[u8]) {
    let mut driver = default_driver();
    driver.chunk_size = 7;
    let repos = ["a", "b/c", "d"];
    let mut uploads: Vec<(String, Vec<u8>)> = Vec::new();
    let mut manifests: Vec<String> = Vec::new();
    for pair in data.chunks(2).take(64) {
        let (op, arg) = (pair[0], *pair.get(1).unwrap_or(&0));
        let repo = repos[arg as usize % repos.len()];
        let blob: Vec<u8> = (0..arg % 40).map(|i| i.wrapping_mul(arg)).collect();
        let digest = Digest::of(crate::digest::Algorithm::Sha256, &blob).to_string();
        let response = match op % 12 {
            0 => {
                let r = driver.send(request(
                    "POST",
                    &format!("/v2/{repo}/blobs/uploads/"),
                    &[],
                    vec![],
                ));
                if let Some(location) = r.headers().get("location").and_then(|l| l.to_str().ok()) {
                    uploads.push((location.to_owned(), Vec::new()));
                }
                r
            }
            1 | 2 => {
                let index = arg as usize % uploads.len().max(1);
                let Some((url, sent)) = uploads.get_mut(index) else {
                    continue;
                };
                let skew = if op % 12 == 2 { arg as usize % 3 } else { 0 };
                let start = sent.len() + skew;
                let range = format!("{}-{}", start, start + blob.len().max(1) - 1);
                let r = driver.send(request(
                    "PATCH",
                    url,
                    &[("content-range", &range)],
                    blob.clone(),
                ));
                if r.status() == 202 {
                    sent.extend_from_slice(&blob);
                }
                r
            }
            3 => {
                let Some((url, sent)) = uploads.get(arg as usize % uploads.len().max(1)).cloned()
                else {
                    continue;
                };
                let honest = Digest::of(crate::digest::Algorithm::Sha256, &sent).to_string();
                let claimed = if arg % 4 == 0 { digest.clone() } else { honest };
                driver.send(request(
                    "PUT",
                    &format!("{url}?digest={claimed}"),
                    &[],
                    vec![],
                ))
            }
            4 => driver.send(request(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
                &[],
                blob.clone(),
            )),
            5 => driver.send(request(
                "GET",
                &format!("/v2/{repo}/blobs/{digest}"),
                &[("range", "bytes=1-3")],
                vec![],
            )),
            6 => {
                let config = Digest::of(crate::digest::Algorithm::Sha256, b"{}");
                let manifest = format!(
                    r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{config}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{digest}","size":{}}}]}}"#,
                    blob.len()
                );
                manifests.push(
                    Digest::of(crate::digest::Algorithm::Sha256, manifest.as_bytes()).to_string(),
                );
                driver.send(request(
                    "PUT",
                    &format!("/v2/{repo}/manifests/t{arg}"),
                    &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
                    manifest,
                ))
            }
            7 => driver.send(request(
                "POST",
                &format!(
                    "/v2/{repo}/blobs/uploads/?digest={}",
                    Digest::of(crate::digest::Algorithm::Sha256, b"{}")
                ),
                &[],
                b"{}".to_vec(),
            )),
            8 => {
                let Some(m) = manifests.get(arg as usize % manifests.len().max(1)) else {
                    continue;
                };
                driver.send(request(
                    "DELETE",
                    &format!("/v2/{repo}/manifests/{m}"),
                    &[],
                    vec![],
                ))
            }
            9 => driver.send(request(
                "DELETE",
                &format!("/v2/{repo}/blobs/{digest}"),
                &[],
                vec![],
            )),
            10 => driver.send(request(
                "POST",
                &format!(
                    "/v2/{repo}/blobs/uploads/?mount={digest}&from={}",
                    repos[(arg as usize + 1) % 3]
                ),
                &[],
                vec![],
            )),
            _ => driver.send(request(
                "GET",
                &format!("/v2/{repo}/tags/list?n={}", arg % 5),
                &[],
                vec![],
            )),
        };
        assert!(
            response.status().as_u16() < 500,
            "{}: {:?}",
            response.status(),
            response.body()
        );
    }
    assert_store_is_verified(&driver.store);
}

/// Invariants 1 and 7 over a whole store: every blob a repository serves (its link, and the
/// pointer at the content address that reads follow) has data that exists and hashes to its
/// digest, and every manifest is stored under its true digest. A pointer marked lost reads as
/// absent, so it promises nothing.
pub fn assert_store_is_verified(store: &MemoryStore) {
    for key in store.keys() {
        let parts: Vec<&str> = key.split('/').collect();
        let blob = match parts.as_slice() {
            ["_blobs", alg, hex] => Some((*alg, *hex)),
            ["repositories", .., "_layers", alg, hex] => Some((*alg, *hex)),
            _ => None,
        };
        if let Some((alg, hex)) = blob {
            let digest = Digest::parse(&format!("{alg}:{hex}")).expect("keys hold valid digests");
            let pointer_key = format!("_blobs/{alg}/{hex}");
            let pointer: serde_json::Value =
                serde_json::from_slice(&store.read(&pointer_key, None).unwrap_or_default())
                    .unwrap_or_else(|_| panic!("{key}: a linked blob has a pointer"));
            if pointer["lost"].as_bool() == Some(true) {
                continue;
            }
            let data_key = pointer["data"].as_str().expect("pointer names its data");
            let data = store
                .read(data_key, None)
                .unwrap_or_else(|| panic!("{key}: published data {data_key} exists"));
            assert_eq!(Digest::of(digest.algorithm(), &data), digest, "{key}");
        }
        if let ["repositories", .., "_manifests", alg, hex] = parts.as_slice() {
            let digest = Digest::parse(&format!("{alg}:{hex}")).expect("keys hold valid digests");
            let stored = store.read(key, None).unwrap_or_default();
            let body = &stored[stored.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1)..];
            assert_eq!(Digest::of(digest.algorithm(), body), digest, "{key}");
        }
    }
}

/// The authenticator the `auth` target decides with: a plaintext user, a bcrypt user, a
/// scoped user, anonymous pull of `public/*`, JWT passwords and bearer tokens verified with
/// berth's own key, and another issuer's ES256 key. berth's own key is Ed25519, the cheapest
/// to sign and verify with, so that the fuzzer spends its time on parsing, not bignums.
fn fuzz_authenticator() -> &'static crate::auth::Authenticator {
    use crate::auth::{
        AuthConfig, Authenticator, Grant, SigningKey, TokenConfig, User, VerificationKey,
    };
    static AUTH: std::sync::OnceLock<Authenticator> = std::sync::OnceLock::new();
    AUTH.get_or_init(|| {
        let own = SigningKey::ed25519_from_seed(&[9; 32]);
        let other = SigningKey::es256_from_bytes(&[7; 32]).expect("a valid P-256 scalar");
        let grant = |text| Grant::parse(text).expect("a valid grant");
        let mut config = AuthConfig::default();
        config
            .users
            .push(User::plain("admin", "adm1n-pw", vec![grant("*:*")]));
        config.users.push(User::plain(
            "alice",
            "alice-pw",
            vec![grant("team-a/*:pull,push")],
        ));
        config
            .add_htpasswd(
                "erin:$2b$04$n5hvPuUT30kyjJDUmxyVMOkufApUqjNQmNo1yzqYAm4Qtcls4Efba\n",
                &[grant("*:pull")],
            )
            .expect("a valid htpasswd line");
        config.anonymous.push(grant("public/*:pull"));
        config.password_jwt_keys = vec![own.verification_key().clone()];
        let mut token = TokenConfig::new("https://registry.test/token", "registry.test", "berth")
            .with_signing_key(own);
        token.trusted_keys = vec![VerificationKey::clone(other.verification_key())];
        config.token = Some(token);
        Authenticator::new(config).expect("a valid configuration")
    })
}

/// A JWS over `claims` (any bytes) signed with the fuzz authenticator's own key.
fn fuzz_sign(header: &[u8], claims: &[u8]) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let Some(token) = &fuzz_authenticator().config().token else {
        return String::new();
    };
    let Some(key) = &token.signing_key else {
        return String::new();
    };
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let signature = URL_SAFE_NO_PAD.encode(key.sign(signed.as_bytes(), &crate::Entropy([3; 32])));
    format!("{signed}.{signature}")
}

/// `Authorization` headers and JWTs. The first byte picks the request (method and path) and
/// how the rest is used: as the raw `Authorization` value; as Basic `user:password` (the
/// password marked with a BEL byte, which must never show in a refusal or an identity); as
/// the claims of a token signed with berth's own key (sent as Bearer, and as a Basic password);
/// or as a token request (query line, then an OAuth2 form body) sent through the engine.
/// Refusals are 401 with a challenge or 403; a token the endpoint issues opens `/v2/`.
pub fn auth(data: &[u8]) {
    use crate::auth::Identity;
    use crate::route::{Query, route};
    use http::{HeaderMap, HeaderValue, Method, header};

    const NOW: crate::UnixTime = crate::UnixTime(1_800_000_000);
    const REQUESTS: [(&str, &str); 8] = [
        ("GET", "/v2/"),
        ("GET", "/v2/_catalog"),
        ("HEAD", "/v2/public/base/manifests/latest"),
        (
            "GET",
            "/v2/team-a/app/blobs/sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
        ("PUT", "/v2/team-a/app/manifests/v1"),
        ("DELETE", "/v2/team-b/app/manifests/v1"),
        (
            "POST",
            "/v2/team-a/app/blobs/uploads/?mount=sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855&from=team-b/x",
        ),
        ("PATCH", "/v2/x/blobs/uploads/0123"),
    ];
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let auth = fuzz_authenticator();
    let (method, uri) = REQUESTS[usize::from(selector >> 2) % REQUESTS.len()];
    let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
    let uri: http::Uri = uri.parse().unwrap_or_default();
    let Ok(route) = route(uri.path()) else {
        return;
    };
    let query = Query::parse(uri.query());
    let decide = |value: &[u8]| -> Option<Result<Identity, crate::auth::AuthError>> {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_bytes(value).ok()?);
        let decision = auth.authorize(&headers, &route, &method, &query, NOW);
        match &decision {
            Ok(identity) => {
                for name in ["public/base", "team-a/app", "team-b/app", "x"] {
                    let _ = auth.can_see(identity, name);
                    let _ = auth.can_mount_from(identity, Some(name));
                }
                let _ = auth.can_mount_from(identity, None);
            }
            Err(e) => {
                let status = e.error.status.as_u16();
                assert!(status == 401 || status == 403, "refused with {status}");
                assert_eq!(
                    status == 401,
                    e.error
                        .headers
                        .iter()
                        .any(|(name, _)| name == header::WWW_AUTHENTICATE),
                    "a 401, and only a 401, challenges"
                );
            }
        }
        Some(decision)
    };
    match selector % 4 {
        0 => {
            decide(rest);
        }
        1 => {
            use base64::Engine as _;
            // `user:password`, the password marked with BEL (never in the user name).
            let (user, password) = match rest.iter().position(|&b| b == b':') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &b""[..]),
            };
            let mut credentials: Vec<u8> = user.iter().copied().filter(|&b| b != 7).collect();
            credentials.push(b':');
            credentials.extend_from_slice(password);
            credentials.push(7);
            let value = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(&credentials)
            );
            let leaked = |text: &str| text.contains('\u{7}') || text.contains("\\u{7}");
            match decide(value.as_bytes()) {
                Some(Ok(identity)) => assert!(!leaked(&format!("{identity} {identity:?}"))),
                Some(Err(e)) => {
                    assert!(!leaked(&format!("{e} {:?} {:?}", e.failure, e.error)));
                }
                None => {}
            }
        }
        2 => {
            let header: &[u8] = if rest.first() == Some(&b'!') {
                br#"{"alg":"EdDSA"}"#
            } else {
                br#"{"alg":"EdDSA","typ":"JWT"}"#
            };
            let token = fuzz_sign(header, rest);
            decide(format!("Bearer {token}").as_bytes());
            use base64::Engine as _;
            let basic = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("x:{token}"))
            );
            decide(basic.as_bytes());
        }
        _ => {
            let config = Config {
                auth: Some(std::sync::Arc::new(auth.clone())),
                ..Config::default()
            };
            let mut driver = Driver::new(Registry::new(config).expect("a valid configuration"));
            driver.now = NOW;
            let (line, form) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &b""[..]),
            };
            let query: String = String::from_utf8_lossy(line)
                .chars()
                .filter(|c| c.is_ascii_graphic() && *c != '#')
                .collect();
            let basic = "Basic YWRtaW46YWRtMW4tcHc="; // admin:adm1n-pw
            let mut responses = Vec::new();
            if let Ok(get) = http::Request::builder()
                .method("GET")
                .uri(format!("/token?{query}"))
                .header("authorization", basic)
                .body(Vec::new())
            {
                responses.push(driver.send(get));
            }
            responses.push(driver.send(request("POST", "/token", &[], form.to_vec())));
            for response in responses {
                assert!(response.status().as_u16() < 500, "{}", response.status());
                if response.status() == 200 {
                    let body: serde_json::Value =
                        serde_json::from_slice(response.body()).expect("a token response is JSON");
                    let token = body["token"]
                        .as_str()
                        .expect("a token response has a token");
                    let mut headers = HeaderMap::new();
                    headers.insert(
                        header::AUTHORIZATION,
                        HeaderValue::from_str(&format!("Bearer {token}"))
                            .expect("tokens are header-safe"),
                    );
                    assert!(
                        auth.authorize(
                            &headers,
                            &crate::route::Route::Base,
                            &Method::GET,
                            &Query::default(),
                            NOW
                        )
                        .is_ok(),
                        "an issued token opens /v2/"
                    );
                }
            }
        }
    }
}
