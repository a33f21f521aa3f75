//! How the suite talks to a registry: any [`Transport`], plus Basic and Docker-token auth.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use http::{HeaderValue, Request, Response, header};

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

/// HTTP(S) to a registry at a base URL, following no redirects on its own.
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

/// A `WWW-Authenticate` challenge: scheme and parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: HashMap<String, String>,
}

/// Parses `Scheme k="v",k2="v2"` (quoted values may contain commas).
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let mut params = HashMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (val, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            after.split_once(',').map_or((after, ""), |(v, r)| (v, r))
        };
        params.insert(key.trim().to_ascii_lowercase(), val.to_owned());
        rest = remaining.trim_start_matches([',', ' ']).trim();
    }
    Some(Challenge {
        scheme: scheme.to_owned(),
        params,
    })
}

/// A transport that authenticates: Basic when configured, and the Docker token flow when the
/// registry answers 401 with a `Bearer` challenge (tokens are cached per scope).
pub struct Client<'t> {
    transport: &'t dyn Transport,
    credentials: Credentials,
    tokens: Mutex<HashMap<String, String>>,
}

impl<'t> Client<'t> {
    pub fn new(transport: &'t dyn Transport, credentials: Credentials) -> Client<'t> {
        Client {
            transport,
            credentials,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    pub fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, TransportError> {
        let scope_key = request.uri().path().to_owned();
        let retry = clone_request(&request);
        let first = self.transport.send(self.authorize(request, &scope_key))?;
        if first.status() != 401 {
            return Ok(first);
        }
        let Some(challenge) = first
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge)
        else {
            return Ok(first);
        };
        if !challenge.scheme.eq_ignore_ascii_case("bearer") {
            return Ok(first);
        }
        let Some(token) = self.fetch_token(&challenge)? else {
            return Ok(first);
        };
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(scope_key, token.clone());
        }
        let mut retry = retry;
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {token}")) {
            retry.headers_mut().insert(header::AUTHORIZATION, value);
        }
        self.transport.send(retry)
    }

    fn authorize(&self, mut request: Request<Vec<u8>>, scope_key: &str) -> Request<Vec<u8>> {
        let cached = self
            .tokens
            .lock()
            .ok()
            .and_then(|t| t.get(scope_key).cloned());
        let value = match cached {
            Some(token) => HeaderValue::from_str(&format!("Bearer {token}")).ok(),
            None => self.credentials.basic(),
        };
        if let Some(value) = value {
            request.headers_mut().insert(header::AUTHORIZATION, value);
        }
        request
    }

    fn fetch_token(&self, challenge: &Challenge) -> Result<Option<String>, TransportError> {
        let Some(realm) = challenge.params.get("realm") else {
            return Ok(None);
        };
        let mut query = form_urlencoded::Serializer::new(String::new());
        for key in ["service", "scope"] {
            if let Some(value) = challenge.params.get(key) {
                query.append_pair(key, value);
            }
        }
        let separator = if realm.contains('?') { '&' } else { '?' };
        let mut request = Request::get(format!("{realm}{separator}{}", query.finish()))
            .body(Vec::new())
            .map_err(|e| TransportError(e.to_string()))?;
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
            .map(str::to_owned))
    }
}

fn clone_request(request: &Request<Vec<u8>>) -> Request<Vec<u8>> {
    let mut builder = Request::builder()
        .method(request.method().clone())
        .uri(request.uri().clone());
    for (name, value) in request.headers() {
        builder = builder.header(name, value);
    }
    builder.body(request.body().clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse_with_commas_inside_quotes() {
        let c = parse_challenge(r#"Bearer realm="https://auth.example/token",service="registry",scope="repository:a/b:pull,push""#).unwrap();
        assert_eq!(c.scheme, "Bearer");
        assert_eq!(c.params["realm"], "https://auth.example/token");
        assert_eq!(c.params["scope"], "repository:a/b:pull,push");
        let basic = parse_challenge(r#"Basic realm="berth""#).unwrap();
        assert_eq!(basic.params["realm"], "berth");
    }
}
