//! How the suite talks to a registry: any [`Transport`], plus Basic and Docker-token auth.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use http::{HeaderValue, Request, Response, header};

use crate::headers::repository_of;
pub use crate::headers::{Challenge, parse_challenge};

/// A transport failure (not an HTTP error status: those are responses).
#[derive(Debug, Clone)]
pub struct TransportError(pub String);

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Sends one request and returns the response with its whole body. Requests carry a path and
/// query (`/v2/...`); the transport knows where the registry is.
pub trait Transport: Send + Sync {
    fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError>;
}

/// Bodies from this size on are sent with `Expect: 100-continue`.
const EXPECT_CONTINUE_FROM: usize = 1024 * 1024;

/// HTTP(S) to a registry at a base URL, following no redirects on its own (the suite follows
/// the ones the spec lets a registry send, and checks the rest).
pub struct HttpTransport {
    base: String,
    agent: ureq::Agent,
}

impl HttpTransport {
    pub fn new(base_url: &str) -> HttpTransport {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .allow_non_standard_methods(true)
            .timeout_global(Some(std::time::Duration::from_secs(300)))
            .build();
        HttpTransport {
            base: base_url.trim_end_matches('/').to_owned(),
            agent: ureq::Agent::new_with_config(config),
        }
    }
}

impl Transport for HttpTransport {
    fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
        let (mut parts, body) = request.into_parts();
        let target = if parts.uri.scheme().is_some() {
            parts.uri.to_string()
        } else {
            format!(
                "{}{}",
                self.base,
                parts.uri.path_and_query().map_or("/", |p| p.as_str())
            )
        };
        parts.uri = target
            .parse()
            .map_err(|e| TransportError(format!("{target}: {e}")))?;
        // A registry may refuse a chunk (416, 400) without reading it and close the
        // connection; a client still writing a large body then sees a broken pipe instead of
        // the answer. `Expect: 100-continue` (RFC 9110 §10.1.1) lets the server answer first,
        // as curl does for large bodies.
        if body.len() >= EXPECT_CONTINUE_FROM && !parts.headers.contains_key(header::EXPECT) {
            parts
                .headers
                .insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        }
        let request = Request::from_parts(parts, body);
        let response = self
            .agent
            .run(request)
            .map_err(|e| TransportError(e.to_string()))?;
        let (parts, mut body) = response.into_parts();
        let bytes = body
            .with_config()
            .limit(1 << 31)
            .read_to_vec()
            .map_err(|e| TransportError(e.to_string()))?;
        Ok(Response::from_parts(parts, bytes))
    }
}

/// Credentials for registries that require them.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Credentials {
    fn basic(&self) -> Option<HeaderValue> {
        let user = self.username.as_deref()?;
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(format!("{user}:{}", self.password.as_deref().unwrap_or("")));
        HeaderValue::from_str(&format!("Basic {encoded}")).ok()
    }
}

/// An authenticating layer over any [`Transport`]: Basic credentials when configured, and the
/// Docker token flow when the registry answers 401 with a `Bearer` challenge.
///
/// Tokens are cached per challenge (realm, service and scope), and each kind of request (a
/// repository's reads, a repository's writes, the registry itself) remembers which challenge
/// it last needed, so later requests carry the right token up front instead of paying a 401
/// each time. A cached token that is refused is fetched anew once.
pub struct Client<'t> {
    transport: &'t dyn Transport,
    credentials: Credentials,
    auth: Mutex<AuthCache>,
}

#[derive(Default)]
struct AuthCache {
    /// Token by challenge key (realm, service, scope).
    tokens: HashMap<String, String>,
    /// Challenge key by route (see [`route_key`]).
    challenge_for_route: HashMap<String, String>,
}

/// What a request needs access to, as registries scope tokens: `repository:<name>:pull` for
/// reads, `...:push` for writes, and the registry for the rest.
fn route_key(request: &Request<Vec<u8>>) -> String {
    let access = if matches!(request.method().as_str(), "GET" | "HEAD") {
        "pull"
    } else {
        "push"
    };
    match repository_of(request.uri().path()) {
        Some(name) => format!("repository:{name}:{access}"),
        None => format!("registry:{access}"),
    }
}

fn challenge_key(challenge: &Challenge) -> String {
    let param = |name: &str| challenge.params.get(name).map_or("", String::as_str);
    format!("{} {} {}", param("realm"), param("service"), param("scope"))
}

impl<'t> Client<'t> {
    pub fn new(transport: &'t dyn Transport, credentials: Credentials) -> Client<'t> {
        Client {
            transport,
            credentials,
            auth: Mutex::new(AuthCache::default()),
        }
    }

    /// Sends a request to the registry, authenticating as configured.
    pub fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
        let route = route_key(&request);
        let retry = clone_request(&request);
        let sent_token = self.cached_token(&route);
        let first = self
            .transport
            .send(self.authorize(request, sent_token.as_deref()))?;
        if first.status() != 401 {
            return Ok(first);
        }
        let Some(challenge) = first
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(parse_challenge)
            .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
        else {
            return Ok(first);
        };
        let key = challenge_key(&challenge);
        let cached = self.lock().tokens.get(&key).cloned();
        let token = match cached {
            // Another route already holds a token for this challenge that we did not send.
            Some(token) if Some(&token) != sent_token.as_ref() => token,
            _ => match self.fetch_token(&challenge)? {
                Some(token) => token,
                None => return Ok(first),
            },
        };
        {
            let mut cache = self.lock();
            cache.tokens.insert(key.clone(), token.clone());
            cache.challenge_for_route.insert(route, key);
        }
        self.transport.send(self.authorize(retry, Some(&token)))
    }

    /// Sends a request without any credentials: for URLs outside the registry (a redirect to
    /// another host), to which the spec forbids forwarding `Authorization`.
    pub fn send_anonymous(
        &self,
        request: Request<Vec<u8>>,
    ) -> Result<Response<Vec<u8>>, TransportError> {
        self.transport.send(request)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, AuthCache> {
        // The cache holds no invariant a panic could break; a poisoned lock is still usable.
        self.auth
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cached_token(&self, route: &str) -> Option<String> {
        let cache = self.lock();
        let key = cache.challenge_for_route.get(route)?;
        cache.tokens.get(key).cloned()
    }

    fn authorize(&self, mut request: Request<Vec<u8>>, token: Option<&str>) -> Request<Vec<u8>> {
        let value = match token {
            Some(token) => HeaderValue::from_str(&format!("Bearer {token}")).ok(),
            None => self.credentials.basic(),
        };
        if let Some(value) = value {
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        request
    }

    /// GETs the challenge's realm with its service and each of its space-separated scopes as
    /// query parameters, with the Basic credentials if configured (anonymously otherwise), and
    /// takes `token` or `access_token` from the JSON answer.
    fn fetch_token(&self, challenge: &Challenge) -> Result<Option<String>, TransportError> {
        let Some(realm) = challenge.params.get("realm") else {
            return Ok(None);
        };
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(service) = challenge.params.get("service") {
            query.append_pair("service", service);
        }
        if let Some(scope) = challenge.params.get("scope") {
            for scope in scope.split_whitespace() {
                query.append_pair("scope", scope);
            }
        }
        let query = query.finish();
        let url = match (query.is_empty(), realm.contains('?')) {
            (true, _) => realm.clone(),
            (false, true) => format!("{realm}&{query}"),
            (false, false) => format!("{realm}?{query}"),
        };
        let mut request = Request::get(url)
            .body(Vec::new())
            .map_err(|e| TransportError(format!("token request to {realm}: {e}")))?;
        if let Some(basic) = self.credentials.basic() {
            request.headers_mut().insert(header::AUTHORIZATION, basic);
        }
        let response = self.transport.send(request)?;
        if response.status() != 200 {
            return Ok(None);
        }
        let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap_or_default();
        Ok(json
            .get("token")
            .or_else(|| json.get("access_token"))
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_owned))
    }
}

/// A copy of a request, to resend it with credentials after a 401.
fn clone_request(request: &Request<Vec<u8>>) -> Request<Vec<u8>> {
    let mut copy = Request::new(request.body().clone());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A registry that wants a token per repository and access, and its token server.
    struct TokenRegistry {
        token_requests: AtomicUsize,
        registry_requests: AtomicUsize,
        seen_token_queries: Mutex<Vec<String>>,
    }

    impl TokenRegistry {
        fn new() -> TokenRegistry {
            TokenRegistry {
                token_requests: AtomicUsize::new(0),
                registry_requests: AtomicUsize::new(0),
                seen_token_queries: Mutex::new(Vec::new()),
            }
        }
    }

    impl Transport for TokenRegistry {
        fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
            let auth = request
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap().to_owned());
            let uri = request.uri().to_string();
            if let Some(query) = uri.strip_prefix("https://auth.example/token?") {
                self.token_requests.fetch_add(1, Ordering::SeqCst);
                self.seen_token_queries
                    .lock()
                    .unwrap()
                    .push(query.to_owned());
                assert_eq!(
                    auth.as_deref(),
                    Some("Basic dXNlcjpwYXNz"),
                    "token realm gets Basic credentials"
                );
                let scopes: Vec<String> = form_urlencoded::parse(query.as_bytes())
                    .filter(|(k, _)| k == "scope")
                    .map(|(_, v)| v.into_owned())
                    .collect();
                let body = format!(r#"{{"access_token":"tok:{}"}}"#, scopes.join("+"));
                return Ok(Response::builder()
                    .status(200)
                    .body(body.into_bytes())
                    .unwrap());
            }
            self.registry_requests.fetch_add(1, Ordering::SeqCst);
            let path = request.uri().path().to_owned();
            let name = repository_of(&path).unwrap_or("");
            let access = if request.method() == "GET" {
                "pull"
            } else {
                "pull,push"
            };
            let scope = format!("repository:{name}:{access}");
            if auth.as_deref() == Some(&format!("Bearer tok:{scope}")) {
                return Ok(Response::builder().status(200).body(Vec::new()).unwrap());
            }
            let challenge = format!(
                r#"Bearer realm="https://auth.example/token",service="reg",scope="{scope}""#
            );
            Ok(Response::builder()
                .status(401)
                .header(header::WWW_AUTHENTICATE, challenge)
                .body(Vec::new())
                .unwrap())
        }
    }

    fn get(path: &str) -> Request<Vec<u8>> {
        Request::get(path).body(Vec::new()).unwrap()
    }

    #[test]
    fn bearer_tokens_are_fetched_once_per_scope_and_reused() {
        let registry = TokenRegistry::new();
        let credentials = Credentials {
            username: Some("user".into()),
            password: Some("pass".into()),
        };
        let client = Client::new(&registry, credentials);
        for _ in 0..3 {
            let response = client.send(get("/v2/a/manifests/latest")).unwrap();
            assert_eq!(response.status(), 200);
        }
        assert_eq!(registry.token_requests.load(Ordering::SeqCst), 1);
        // One 401, then one authorised retry, then two requests that carry the token up front.
        assert_eq!(registry.registry_requests.load(Ordering::SeqCst), 4);

        let push = Request::put("/v2/a/blobs/uploads/x").body(vec![1]).unwrap();
        assert_eq!(client.send(push).unwrap().status(), 200);
        assert_eq!(client.send(get("/v2/b/tags/list")).unwrap().status(), 200);
        assert_eq!(registry.token_requests.load(Ordering::SeqCst), 3);
        let queries = registry.seen_token_queries.lock().unwrap().clone();
        assert_eq!(queries[0], "service=reg&scope=repository%3Aa%3Apull");
        assert_eq!(queries[1], "service=reg&scope=repository%3Aa%3Apull%2Cpush");
    }

    #[test]
    fn several_scopes_in_one_challenge_become_several_scope_parameters() {
        struct Multi(Mutex<Option<String>>);
        impl Transport for Multi {
            fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
                let uri = request.uri().to_string();
                if let Some(query) = uri.strip_prefix("https://auth.example/t?") {
                    *self.0.lock().unwrap() = Some(query.to_owned());
                    assert!(
                        request.headers().get(header::AUTHORIZATION).is_none(),
                        "anonymous without credentials"
                    );
                    return Ok(Response::builder()
                        .status(200)
                        .body(br#"{"token":"t"}"#.to_vec())
                        .unwrap());
                }
                if request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .is_some_and(|v| v == "Bearer t")
                {
                    return Ok(Response::builder().status(201).body(Vec::new()).unwrap());
                }
                Ok(Response::builder()
                    .status(401)
                    .header(header::WWW_AUTHENTICATE, r#"Bearer realm="https://auth.example/t",scope="repository:a:pull,push repository:b:pull""#)
                    .body(Vec::new())
                    .unwrap())
            }
        }
        let transport = Multi(Mutex::new(None));
        let client = Client::new(&transport, Credentials::default());
        let mount = Request::post("/v2/a/blobs/uploads/?mount=sha256:1&from=b")
            .body(Vec::new())
            .unwrap();
        assert_eq!(client.send(mount).unwrap().status(), 201);
        assert_eq!(
            transport.0.lock().unwrap().as_deref(),
            Some("scope=repository%3Aa%3Apull%2Cpush&scope=repository%3Ab%3Apull")
        );
    }

    #[test]
    fn basic_credentials_are_sent_without_a_challenge_and_a_refused_token_ends_in_the_401() {
        struct Refusing;
        impl Transport for Refusing {
            fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
                if request
                    .uri()
                    .to_string()
                    .starts_with("https://auth.example")
                {
                    return Ok(Response::builder().status(403).body(Vec::new()).unwrap());
                }
                assert_eq!(request.headers()[header::AUTHORIZATION], "Basic dTo=");
                Ok(Response::builder()
                    .status(401)
                    .header(
                        header::WWW_AUTHENTICATE,
                        r#"Bearer realm="https://auth.example/t""#,
                    )
                    .body(Vec::new())
                    .unwrap())
            }
        }
        let credentials = Credentials {
            username: Some("u".into()),
            password: None,
        };
        let client = Client::new(&Refusing, credentials);
        assert_eq!(client.send(get("/v2/")).unwrap().status(), 401);
    }
}
